import { UnitCheckInHistory } from '../../models/catalogue';
import type { CheckInRun } from '../domain/catalogue';
import { byIds } from './by-ids';
import { chunksOf, type Engine } from './engine';
import { guardedBulkWrite } from './guarded-writes';

/**
 * A unit's check-in history, bucketed per calendar year (models/catalogue.ts,
 * UnitCheckInHistory): `_id` = `<unitId>:<YYYY>`. The unit's summary names its periods, so
 * every read is by `_id` (one `$in` on MongoDB, parallel `_id` reads on FerretDB: see byIds).
 * A year, not a month: a bucket holds runs (a country and firmware held over many check-ins),
 * not check-ins, so even a busy unit's year is a few hundred runs at most; and the heaviest
 * bench unit (5,000 check-ins over four years) is four reads instead of 45.
 */

export interface HistoryBucket {
  _id: string;
  unitId: string;
  period: string;
  count: number;
  runs: CheckInRun[];
  batchIds: string[];
}

/** A bucket as the summariser wants it after a fold, guarded by the count it was computed from. */
export interface BucketWrite {
  unitId: string;
  period: string;
  /** The bucket's count when read (0 and `exists: false` for a bucket still to create). */
  countSeen: number;
  exists: boolean;
  added: number;
  runs: CheckInRun[];
  batchIds: string[];
}

/** The calendar year (UTC) a check-in's bucket is: `YYYY`. */
export const periodOf = (at: Date) => at.toISOString().slice(0, 4);
export const bucketId = (unitId: string, period: string) => `${unitId}:${period}`;

/**
 * The buckets' runs as one history, oldest first: a run that went on past the end of a year
 * continues as the first run of the next year's bucket, and is joined back here (consecutive
 * runs from one country are one run by definition).
 */
export function joinBuckets(buckets: ReadonlyArray<Pick<HistoryBucket, 'period' | 'runs'> | null>): CheckInRun[] {
  const runs: CheckInRun[] = [];
  const ordered = buckets.filter((b) => b !== null).sort((a, b) => a.period.localeCompare(b.period));
  for (const bucket of ordered) {
    bucket.runs.forEach((run, i) => {
      const last = runs.at(-1);
      if (i === 0 && last && last.country === run.country) {
        runs[runs.length - 1] = { ...last, count: last.count + run.count, lastAt: run.lastAt, lastFirmware: run.lastFirmware };
      } else {
        runs.push({ country: run.country, count: run.count, firstAt: run.firstAt, lastAt: run.lastAt, firstFirmware: run.firstFirmware ?? '', lastFirmware: run.lastFirmware ?? '' });
      }
    });
  }
  return runs;
}

export function createCheckInHistoryStore(engine: Engine) {
  const bucketsByIds = (ids: readonly string[]) => byIds<HistoryBucket>(engine, UnitCheckInHistory as never, ids);

  /** A unit's runs, oldest first, from the buckets its summary names. */
  async function runsOf(unit: { _id: string; checkIns?: { periods?: string[] | null } | null }): Promise<CheckInRun[]> {
    const periods = unit.checkIns?.periods ?? [];
    return joinBuckets(await bucketsByIds(periods.map((p) => bucketId(unit._id, p))));
  }

  /**
   * The newest `n` runs, oldest first, reading the newest buckets first and older ones only
   * while fewer than `n + 1` runs were found (the oldest run read may continue from an older
   * bucket, so one more than shown is read to leave it out).
   */
  async function recentRunsOf(unit: { _id: string; checkIns?: { periods?: string[] | null } | null }, n: number): Promise<CheckInRun[]> {
    const periods = [...(unit.checkIns?.periods ?? [])].sort();
    const read: Array<HistoryBucket | null> = [];
    let count = 0;
    for (let end = periods.length; end > 0 && count <= n; end -= 2) {
      const batch = await bucketsByIds(periods.slice(Math.max(0, end - 2), end).map((p) => bucketId(unit._id, p)));
      read.push(...batch);
      count += batch.reduce((sum, b) => sum + (b?.runs.length ?? 0), 0);
    }
    return joinBuckets(read).slice(-n);
  }

  return {
    /** The buckets with these `_id`s (null where none yet), in that order. */
    buckets: bucketsByIds,

    runsOf,
    recentRunsOf,

    /**
     * Writes the buckets a fold changed, each with one guarded single-document write: an
     * existing bucket only if its count is still the one read (else someone folded into it
     * meanwhile), a new one by insert (a concurrent creator wins by the unique `_id`). The
     * runs are set whole rather than `$push`ed: a fold may extend the bucket's last run as
     * well as append runs, and MongoDB refuses both paths of one array in one update.
     * Returns the `_id`s of the buckets that changed under the fold (to read and fold again).
     */
    write: (writes: readonly BucketWrite[]): Promise<string[]> =>
      guardedBulkWrite(
        UnitCheckInHistory.collection,
        writes.map((w) => {
          const id = bucketId(w.unitId, w.period);
          return w.exists
            ? { id, update: { filter: { _id: id, count: w.countSeen }, update: { $set: { runs: w.runs, batchIds: w.batchIds }, $inc: { count: w.added } } } }
            : { id, insert: { _id: id, unitId: w.unitId, period: w.period, count: w.added, runs: w.runs, batchIds: w.batchIds } };
        }),
      ),

    /**
     * Creates the buckets of a unit converted from an older stored shape (migrations): a bucket
     * already there is left as it is, so a conversion run again changes nothing.
     */
    async createIfAbsent(buckets: ReadonlyArray<Omit<HistoryBucket, '_id'>>) {
      for (const chunk of chunksOf(buckets)) {
        await UnitCheckInHistory.bulkWrite(
          chunk.map((b) => ({ updateOne: { filter: { _id: bucketId(b.unitId, b.period) }, update: { $setOnInsert: b }, upsert: true } })) as never,
          { ordered: false },
        );
      }
    },
  };
}

export type CheckInHistoryStore = ReturnType<typeof createCheckInHistoryStore>;
