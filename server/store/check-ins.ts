import { Unit } from '../../models/catalogue';
import { CheckIn, CheckInBatch, UnknownSerial, WITHHELD_UNITS_ID, WithheldUnits } from '../../models/check-ins';
import { tallyUnits, unitCheckInChange } from './insight';
import type { CheckInRun } from '../domain/catalogue';
import { byIds } from './by-ids';
import { chunksOf, duplicatesIn, type Engine, isDuplicateKey } from './engine';
import { guardedBulkWrite } from './guarded-writes';

/**
 * The check-in log, the summariser's outbox (CheckInBatch), unknown-serial summaries, the
 * withheld-units registry, and the check-in part of the unit summary. Every write is a
 * single-document atomic update, guarded where it was computed from a read.
 */

/** What ingest and the summariser read of a unit: the summary they update and the facts the rules need. */
export interface UnitFacts {
  _id: string;
  modelId: string;
  serial: string;
  status: string;
  current?: { country?: string | null } | null;
  countries?: Array<{ country: string; source: string }>;
  checkIns?: { count?: number; lastAt?: Date | null; lastCountry?: string | null; lastFirmware?: string | null; lastRun?: CheckInRun | null; countries?: string[]; periods?: string[]; batchIds?: string[] } | null;
  controls?: { updates?: 'allowed' | 'withheld' } | null;
}
const UNIT_FACTS = { modelId: 1, serial: 1, status: 1, current: 1, countries: 1, checkIns: 1, controls: 1 } as const;

export interface StoredBatch {
  _id: string;
  receivedAt: Date;
  size: number;
  logIds: string[];
}

/** A log entry as the summariser folds it (`batchId`: the batch that stored it). */
export type LoggedEntry = Pick<LogEntry, '_id' | 'unitId' | 'modelSku' | 'serial' | 'firmware' | 'observedAt' | 'country' | 'batchId'>;
const LOGGED_ENTRY = { unitId: 1, modelSku: 1, serial: 1, firmware: 1, observedAt: 1, country: 1, batchId: 1 } as const;

export interface LogEntry {
  _id: string;
  unitId: string | null;
  modelSku: string;
  serial: string;
  firmware: string;
  observedAt: Date;
  receivedAt: Date;
  country: string;
  apiKeyId: string;
  answer: 'allowed' | 'withheld';
  flags: string[];
  batchId: string;
}

/** A unit's check-in summary after a fold, guarded by the count it was computed from. */
export interface SummaryWrite {
  unitId: string;
  countSeen: number;
  count: number;
  lastRun: CheckInRun;
  countries: string[];
  periods: string[];
  batchIds: string[];
  /** The newest check-in, when newer than the one the summary had. */
  latest: { at: Date; country: string; firmware: string } | null;
}

export interface UnknownSerialSummary {
  _id: string;
  count: number;
  firstAt: Date;
  lastAt: Date;
  lastCountry: string;
  lastFirmware: string;
  batchIds?: string[];
}


export function createCheckInsStore(engine: Engine) {
  return {
    // ----- units, as ingest and the summariser see them -----

    unitFacts: (ids: readonly string[]) => byIds<UnitFacts>(engine, Unit as never, ids, UNIT_FACTS),

    /**
     * Each unit's check-in summary after a fold: one update by `_id` guarded by the count it
     * was computed from (absolute values, not `$inc`: a fold repeated after a crash must not
     * count twice). Returns the units that changed under the fold.
     */
    writeSummaries: (writes: readonly SummaryWrite[]) =>
      guardedBulkWrite(
        Unit.collection,
        writes.map((w) => ({
          id: w.unitId,
          update: {
            filter: { _id: w.unitId, 'checkIns.count': w.countSeen ? w.countSeen : { $in: [0, null] } },
            update: {
              $set: {
                'checkIns.count': w.count,
                'checkIns.lastRun': w.lastRun,
                'checkIns.countries': w.countries,
                'checkIns.periods': w.periods,
                'checkIns.batchIds': w.batchIds,
                ...(w.latest ? { 'checkIns.lastAt': w.latest.at, 'checkIns.lastCountry': w.latest.country, 'checkIns.lastFirmware': w.latest.firmware } : {}),
              },
            },
          },
        })),
      ),

    /** The dashboard's tallies follow each unit's last check-in country (owned by insight). */
    async tallyLastCountryMoves(moves: ReadonlyArray<{ modelId: string; from: string | null | undefined; to: string }>) {
      await tallyUnits(moves.map((m) => unitCheckInChange(m.modelId, m.from, m.to)));
    },

    // ----- the log -----

    /** Inserts log entries; returns, per entry, whether it was new (the rest were already stored). */
    async insertLog(docs: readonly LogEntry[]): Promise<boolean[]> {
      const inserted = docs.map(() => true);
      for (const i of await duplicatesIn(() => CheckIn.collection.insertMany(docs as never[], { ordered: false }))) inserted[i] = false;
      return inserted;
    },

    /** These log entries, in order (null: not in the log, or not yet). */
    loggedEntries: (ids: readonly string[]) => byIds<LoggedEntry>(engine, CheckIn as never, ids, LOGGED_ENTRY),

    /** Re-points log entries whose unit ingest guessed wrong. */
    async correctLogUnits(corrections: ReadonlyArray<{ id: string; unitId: string | null; modelSku: string }>) {
      for (const chunk of chunksOf(corrections)) {
        await CheckIn.bulkWrite(chunk.map((c) => ({ updateOne: { filter: { _id: c.id }, update: { $set: { unitId: c.unitId, modelSku: c.modelSku } } } })), { ordered: false });
      }
    },

    /** Records on log entries the rules they raised (one bulk command per chunk). */
    async markLogFlags(marks: ReadonlyArray<{ id: string; rules: readonly string[] }>) {
      for (const chunk of chunksOf(marks)) {
        await CheckIn.bulkWrite(chunk.map((m) => ({ updateOne: { filter: { _id: m.id }, update: { $set: { flags: [...m.rules] } } } })), { ordered: false });
      }
    },

    // ----- the summariser's outbox -----

    async insertBatch(doc: StoredBatch & { apiKeyId: string }) {
      await CheckInBatch.collection.insertOne(doc as never);
    },

    batches: (ids: readonly string[]) => byIds<StoredBatch>(engine, CheckInBatch as never, ids),

    /** Every waiting batch, oldest first, without its payload: the outbox is drained continuously, so it stays small. */
    waitingBatches: () => CheckInBatch.find({}, { receivedAt: 1, size: 1 }).sort({ receivedAt: 1 }).lean(),

    async deleteBatches(ids: readonly string[]) {
      await Promise.all(ids.map((_id) => CheckInBatch.deleteOne({ _id })));
    },

    // ----- unknown serials -----

    unknownSerial: (key: string): Promise<UnknownSerialSummary | null> => UnknownSerial.findById(key).lean(),

    /** Unknown-serial summaries after a fold (upserts by `_id`). */
    async writeUnknownSerials(
      writes: ReadonlyArray<{ key: string; count: number; batchIds: string[]; latest: { at: Date; country: string; firmware: string } | null; first: { at: Date; modelSku: string; serial: string } }>,
    ) {
      for (const chunk of chunksOf(writes)) {
        await UnknownSerial.bulkWrite(
          chunk.map((w) => ({
            updateOne: {
              filter: { _id: w.key },
              update: {
                $set: { count: w.count, batchIds: w.batchIds, ...(w.latest ? { lastAt: w.latest.at, lastCountry: w.latest.country, lastFirmware: w.latest.firmware } : {}) },
                $setOnInsert: { modelSku: w.first.modelSku, serial: w.first.serial, firstAt: w.first.at },
              },
              upsert: true,
            },
          })),
          { ordered: false },
        );
      }
    },

    // ----- unit controls -----

    /** The units whose updates are withheld: one document read by `_id` per ingest batch. */
    async withheldUnitIds(): Promise<string[]> {
      return (await WithheldUnits.findById(WITHHELD_UNITS_ID).lean())?.unitIds ?? [];
    },

    async addToWithheld(unitIds: readonly string[]) {
      await WithheldUnits.updateOne({ _id: WITHHELD_UNITS_ID }, { $addToSet: { unitIds: { $each: [...unitIds] } } }, { upsert: true }).catch((err: { code?: number }) => {
        // Two first writers of the registry: the loser's retry is an update.
        if (!isDuplicateKey(err)) throw err;
        return WithheldUnits.updateOne({ _id: WITHHELD_UNITS_ID }, { $addToSet: { unitIds: { $each: [...unitIds] } } });
      });
    },

    async removeFromWithheld(unitIds: readonly string[]) {
      if (unitIds.length) await WithheldUnits.updateOne({ _id: WITHHELD_UNITS_ID }, { $pullAll: { unitIds: [...unitIds] } });
    },

    /** Marks a unit withheld by a case; false when there is no such unit. */
    async withholdUnit(unitId: string, caseId: string): Promise<boolean> {
      const res = await Unit.updateOne({ _id: unitId }, { $addToSet: { 'controls.withheldByCaseIds': caseId }, $set: { 'controls.updates': 'withheld' } });
      return res.matchedCount === 1;
    },

    /** Takes a case's hold off a unit; false when there is no such unit. */
    async releaseUnit(unitId: string, caseId: string): Promise<boolean> {
      const res = await Unit.updateOne({ _id: unitId }, { $pull: { 'controls.withheldByCaseIds': caseId } });
      return res.matchedCount === 1;
    },

    /** Allows updates again, in one write guarded by no case holding the unit; true if it did. */
    async allowIfNoHold(unitId: string): Promise<boolean> {
      const res = await Unit.updateOne({ _id: unitId, 'controls.withheldByCaseIds': { $size: 0 } }, { $set: { 'controls.updates': 'allowed' } });
      return res.matchedCount === 1;
    },

    /** Whether the unit is withheld now (re-checked after a lift, see liftWithholding). */
    async isWithheld(unitId: string): Promise<boolean> {
      return (await Unit.findById(unitId, { 'controls.updates': 1 }).lean())?.controls?.updates === 'withheld';
    },
  };
}

export type CheckInsStore = ReturnType<typeof createCheckInsStore>;
