import { Unit } from '../../../models/catalogue';
import type { CheckInRun } from '../../domain/catalogue';
import { createCheckInHistoryStore, periodOf, type HistoryBucket } from '../check-in-history';
import { chunksOf, type Engine } from '../engine';
import type { Migration } from './index';

/**
 * Units written before the check-in history moved into yearly buckets carry their runs on the
 * unit: `checkIns.runsJson` (one JSON string) or, older still, the `checkIns.runs` array. Each
 * such unit gets its buckets (a run goes to the year it started in; readers join a run that
 * goes on into the next year), then one write guarded by the old field still being there
 * sets the summary's `lastRun` and `periods` and removes the old field (guarded by the count
 * read, so a fold meanwhile is not overwritten). Buckets are created
 * only if absent and the unit write only matches an unconverted unit, so the conversion may
 * be interrupted and run again at any point.
 */

// Through the driver: the fields are gone from the schema, and Mongoose (strictQuery) would
// drop them from filters and projections, matching every unit.
const LEGACY = { $or: [{ 'checkIns.runsJson': { $exists: true } }, { 'checkIns.runs': { $exists: true } }] } as never;
const BATCH = 500;
/** Passes over units a concurrent fold kept changing before giving up with an error. */
const MAX_PASSES = 5;

type LegacyUnit = { _id: string; checkIns?: { count?: number; runsJson?: string | null; runs?: CheckInRun[] | null } | null };

function legacyRuns(checkIns: LegacyUnit['checkIns']): CheckInRun[] {
  if (typeof checkIns?.runsJson === 'string') {
    return (JSON.parse(checkIns.runsJson) as Array<CheckInRun & { firstAt: string; lastAt: string }>).map((r) => ({ ...r, firstAt: new Date(r.firstAt), lastAt: new Date(r.lastAt) }));
  }
  return [...(checkIns?.runs ?? [])];
}

/** The unit's runs as yearly buckets, oldest first. */
function bucketsOf(unitId: string, runs: readonly CheckInRun[]): Array<Omit<HistoryBucket, '_id'>> {
  const byPeriod = new Map<string, CheckInRun[]>();
  for (const run of runs) {
    const period = periodOf(run.firstAt);
    byPeriod.set(period, [...(byPeriod.get(period) ?? []), run]);
  }
  return [...byPeriod].sort(([a], [b]) => a.localeCompare(b)).map(([period, list]) => ({ unitId, period, count: list.reduce((n, r) => n + r.count, 0), runs: list, batchIds: [] }));
}

export function checkInHistoryMigration(engine: Engine): Migration {
  const history = createCheckInHistoryStore(engine);
  return {
    id: '001-check-in-history',
    description: 'unit check-in runs → yearly history buckets',
    unit: 'units',

    /** Units still to convert: a scan, run only while this migration is not recorded as applied. */
    remaining: () => Unit.collection.countDocuments(LEGACY),

    async run(progress) {
      let done = 0;
      const convert = async (units: LegacyUnit[]) => {
        const converted = units.map((unit) => ({ unit, runs: legacyRuns(unit.checkIns) })).map(({ unit, runs }) => ({ unit, runs, buckets: bucketsOf(unit._id, runs) }));
        await history.createIfAbsent(converted.flatMap((c) => c.buckets));
        for (const chunk of chunksOf(converted)) {
          await Unit.collection.bulkWrite(
            chunk.map(({ unit, runs, buckets }) => ({
              updateOne: {
                // Guarded by the count it was read with, as the summariser's own writes are.
                filter: { _id: unit._id as never, 'checkIns.count': unit.checkIns?.count ?? { $in: [0, null] } },
                update: { $set: { 'checkIns.lastRun': runs.at(-1) ?? null, 'checkIns.periods': buckets.map((b) => b.period) }, $unset: { 'checkIns.runsJson': '', 'checkIns.runs': '' } },
              },
            })),
            { ordered: false },
          );
        }
        done += units.length;
        progress(done);
      };
      // One streamed pass: a query per batch would rescan the converted units each time, which
      // on the embedded engine (no secondary index) is quadratic in the number of units.
      // A unit folded meanwhile misses its guard and stays for the next pass.
      for (let pass = 1; ; pass++) {
        const before = done;
        let batch: LegacyUnit[] = [];
        const cursor = Unit.collection.find(LEGACY, { projection: { 'checkIns.count': 1, 'checkIns.runsJson': 1, 'checkIns.runs': 1 }, batchSize: BATCH });
        for await (const unit of cursor) {
          batch.push(unit as unknown as LegacyUnit);
          if (batch.length >= BATCH) {
            await convert(batch);
            batch = [];
          }
        }
        if (batch.length) await convert(batch);
        if (done === before) return done;
        if (pass >= MAX_PASSES) throw new Error('check-in history: units stay unconverted');
      }
    },
  };
}
