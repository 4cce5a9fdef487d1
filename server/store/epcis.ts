import type { CaptureStatus } from '../domain/epcis';
import { EpcisCapture, EpcisCaptureChunk, EpcisEvent, EpcisLocation, UnitEpcisEvents } from '../../models/epcis';
import { Unit } from '../../models/catalogue';
import { byIds } from './by-ids';
import { chunksOf, type Engine, isDuplicateKey } from './engine';

/**
 * EPCIS captures, captured events, a unit's captured events and the location master data.
 * Captured events are keyed by their eventID, so a capture sent again inserts nothing; a
 * unit's list is one document per unit, pushed to with a guard on the event id.
 */

export interface StoredCapture {
  _id: string;
  apiKeyId: string;
  status: CaptureStatus;
  errorBehaviour: 'rollback' | 'proceed';
  chunks: number;
  chunksDone: number;
  counts: { events: number; processed: number; stored: number; duplicates: number; rejected: number; matchedUnits: number };
  eventErrors: Array<{ index: number; eventID: string | null; field: string; message: string }>;
  createdAt: Date;
  finishedAt: Date | null;
}

export interface StoredEpcisEvent {
  _id: string;
  captureId: string;
  type: string;
  eventTime: Date;
  recordTime: Date;
  action: string | null;
  bizStep: string | null;
  disposition: string | null;
  epcs: string[];
  unitIds: string[];
  bizLocation: string | null;
  readPoint: string | null;
  sources: Array<{ type: string; id: string }>;
  destinations: Array<{ type: string; id: string }>;
  country: string | null;
  /** The event as captured, with its eventID and recordTime. */
  event: Record<string, unknown>;
}

/** A captured event as a unit's summary keeps it. */
export interface UnitEpcisEntry {
  eventId: string;
  at: Date;
  type: string;
  bizStep: string;
  disposition: string;
  country: string;
}

export interface CaptureChunk {
  _id: string;
  captureId: string;
  events: Array<{ index: number; event: unknown }>;
}


export interface EventFilter {
  eventTypes?: string[];
  from?: Date;
  before?: Date;
  bizSteps?: string[];
  bizLocations?: string[];
  /** Events after this one in (eventTime, id) order. */
  after?: { at: Date; id: string };
}

export function createEpcisStore(engine: Engine) {
  return {
    // ----- captures -----

    async insertCapture(doc: Omit<StoredCapture, 'chunksDone'>, chunks: readonly CaptureChunk[]) {
      // Chunks first: a capture is only queued once all its events are stored.
      for (const group of chunksOf(chunks, 10)) await EpcisCaptureChunk.insertMany(group, { ordered: false });
      await EpcisCapture.create(doc);
    },

    captureById: (id: string) => EpcisCapture.findById(id).lean<StoredCapture>(),

    /** Captures the job has not finished, oldest first (a small collection: scanned on the embedded engine). */
    unfinishedCaptures: (limit: number) => EpcisCapture.find({ status: { $in: ['queued', 'running'] } }, { _id: 1 }).sort({ createdAt: 1 }).limit(limit).lean(),

    chunk: (id: string) => EpcisCaptureChunk.findById(id).lean<CaptureChunk>(),

    /** Records one chunk as done, guarded by the chunks done so far: a chunk counted once even if folded twice. */
    async chunkDone(captureId: string, chunk: number, inc: Record<string, number>): Promise<boolean> {
      const res = await EpcisCapture.updateOne(
        { _id: captureId, chunksDone: chunk },
        { $set: { status: 'running' }, $inc: { chunksDone: 1, ...Object.fromEntries(Object.entries(inc).map(([k, v]) => [`counts.${k}`, v])) } },
      );
      return res.modifiedCount === 1;
    },

    async finishCapture(captureId: string, status: CaptureStatus, at: Date) {
      await EpcisCapture.updateOne({ _id: captureId, status: { $in: ['queued', 'running'] } }, { $set: { status, finishedAt: at } });
      await EpcisCaptureChunk.deleteMany({ captureId });
    },

    // ----- captured events -----

    /** Inserts events; per event whether it is new (false: an event with its id was captured before). */
    async insertEvents(docs: readonly StoredEpcisEvent[]): Promise<boolean[]> {
      const inserted = docs.map(() => true);
      for (let at = 0; at < docs.length; at += 50) {
        const group = docs.slice(at, at + 50);
        try {
          await EpcisEvent.collection.insertMany(group as never[], { ordered: false });
        } catch (err) {
          const writeErrors = (err as { writeErrors?: Array<{ index: number; code?: number }> | { index: number; code?: number } }).writeErrors;
          const list = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : null;
          if (!list?.length || !list.every(isDuplicateKey)) throw err;
          for (const e of list) inserted[at + e.index] = false;
        }
      }
      return inserted;
    },

    /** The capture that stored each event (null: none): a chunk processed again after a crash finds its own. */
    async capturesOfEvents(ids: readonly string[]): Promise<Array<string | null>> {
      return (await byIds<{ _id: string; captureId: string }>(engine, EpcisEvent as never, ids, { captureId: 1 })).map((e) => e?.captureId ?? null);
    },

    eventsByIds: (ids: readonly string[]) => byIds<StoredEpcisEvent>(engine, EpcisEvent as never, ids),

    /**
     * Captured events in (eventTime, id) order. On MongoDB the indexes answer it; on the
     * embedded engine it is a scan of the captured events (queries naming an EPC are read by `_id`).
     */
    async events(filter: EventFilter, limit: number): Promise<StoredEpcisEvent[]> {
      const and: Record<string, unknown>[] = [];
      if (filter.eventTypes?.length) and.push({ type: { $in: filter.eventTypes } });
      if (filter.from) and.push({ eventTime: { $gte: filter.from } });
      if (filter.before) and.push({ eventTime: { $lt: filter.before } });
      if (filter.bizSteps?.length) and.push({ bizStep: { $in: filter.bizSteps } });
      if (filter.bizLocations?.length) and.push({ bizLocation: { $in: filter.bizLocations } });
      if (filter.after) and.push({ $or: [{ eventTime: { $gt: filter.after.at } }, { eventTime: filter.after.at, _id: { $gt: filter.after.id } }] });
      return EpcisEvent.find(and.length ? { $and: and } : {}).sort({ eventTime: 1, _id: 1 }).limit(limit).lean<StoredEpcisEvent[]>();
    },

    // ----- a unit's captured events -----

    /**
     * Adds events to units' lists, each once: per unit one write, guarded by the count of events
     * read, so a concurrent writer's events are read again and never lost or doubled.
     */
    async appendUnitEvents(perUnit: ReadonlyMap<string, readonly UnitEpcisEntry[]>): Promise<void> {
      let todo = [...perUnit];
      for (let attempt = 0; todo.length; attempt++) {
        if (attempt === 5) throw new Error(`unit EPCIS events: ${todo.length} units kept changing`);
        const docs = await byIds<{ _id: string; count?: number; events: UnitEpcisEntry[] }>(engine, UnitEpcisEvents as never, todo.map(([id]) => id), { count: 1, 'events.eventId': 1 });
        const conflicts: typeof todo = [];
        await Promise.all(
          todo.map(async ([unitId, entries], i) => {
            const doc = docs[i];
            const held = new Set((doc?.events ?? []).map((e) => e.eventId));
            const fresh = entries.filter((e) => !held.has(e.eventId));
            if (!fresh.length) return;
            try {
              // Plain `$push`/`$each`: FerretDB v1 has no `$slice`/`$sort` modifiers; readers sort by time.
              const res = await UnitEpcisEvents.updateOne({ _id: unitId, count: doc?.count ?? 0 }, { $push: { events: { $each: fresh } }, $inc: { count: fresh.length } }, { upsert: !doc });
              if (res.matchedCount + res.upsertedCount === 0) conflicts.push([unitId, entries]);
            } catch (err) {
              // Two first writers: the second one's upsert meets the first one's document.
              if (!isDuplicateKey(err)) throw err;
              conflicts.push([unitId, entries]);
            }
          }),
        );
        todo = conflicts;
      }
    },

    unitEvents: (unitId: string) => UnitEpcisEvents.findById(unitId).lean<{ _id: string; events: UnitEpcisEntry[] }>(),

    // ----- location master data -----

    async countriesOfLocations(ids: readonly string[]): Promise<Array<string | null>> {
      return (await byIds<{ _id: string; country: string }>(engine, EpcisLocation as never, ids)).map((l) => l?.country ?? null);
    },

    setLocation: (id: string, country: string, name: string, at: Date) => EpcisLocation.findOneAndUpdate({ _id: id }, { $set: { country, name, updatedAt: at } }, { upsert: true, new: true }).lean(),

    async listLocations(page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([EpcisLocation.find({}).sort({ _id: 1 }).skip(page.skip).limit(page.limit).lean(), EpcisLocation.countDocuments({})]);
      return { items, total };
    },

    // Reads/writes of units: move to server/store/catalogue.ts at merge

    /** The unit's first sale, from a shipment, when it has none yet (false: it had one). */
    async recordFirstSale(unitId: string, country: string, at: Date): Promise<boolean> {
      const res = await Unit.updateOne(
        { _id: unitId, 'firstSale.soldAt': null, 'firstSale.shipToCountry': null },
        { $set: { 'firstSale.shipToCountry': country, 'firstSale.soldAt': at, updatedAt: at } },
      );
      return res.modifiedCount === 1;
    },

    /** A country the unit was told to be in (by a shipment), added once to its country history. */
    async addUnitCountry(unitId: string, country: string, source: 'first-sale' | 'transfer', at: Date) {
      await Unit.updateOne({ _id: unitId, 'countries.country': { $ne: country } }, { $push: { countries: { country, source, firstSeen: at, lastSeen: at } } });
    },
  };
}

export type EpcisStore = ReturnType<typeof createEpcisStore>;
