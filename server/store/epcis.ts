import type { CaptureStatus } from '../domain/epcis';
import { EpcisCapture, EpcisCaptureChunk, EpcisEvent, EpcisLocation, UnitEpcisEvents } from '../../models/epcis';
import { byIds } from './by-ids';
import { chunksOf, duplicatesIn, type Engine, isDuplicateKey, STATEMENTS_PER_COMMAND } from './engine';

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

/**
 * Bulk commands one write keeps in flight: enough to overlap round trips, few enough that the
 * embedded engine's single writer is not swamped (more timed out under load).
 */
const COMMANDS_IN_FLIGHT = 4;

/** Runs `write` over the commands, `COMMANDS_IN_FLIGHT` at a time. */
async function inFlight<T>(commands: readonly T[], write: (command: T, n: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < commands.length) {
      const n = next++;
      await write(commands[n]!, n);
    }
  };
  await Promise.all(Array.from({ length: Math.min(COMMANDS_IN_FLIGHT, commands.length) }, worker));
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

    /**
     * Inserts events; per event whether it is new (false: an event with its id was captured
     * before: the duplicate key is the idempotency check). Commands of 50, a few in flight at once.
     */
    async insertEvents(docs: readonly StoredEpcisEvent[]): Promise<boolean[]> {
      const inserted = docs.map(() => true);
      await inFlight(chunksOf(docs), async (group, n) => {
        for (const index of await duplicatesIn(() => EpcisEvent.collection.insertMany(group as never[], { ordered: false }))) inserted[n * STATEMENTS_PER_COMMAND + index] = false;
      });
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
     * Adds events to units' lists, each once, without reading them: per unit one `$push`
     * guarded by none of its events being there yet (an upsert for a unit's first events), in
     * bulk commands side by side. A guard that fails (some of the events are there: a step run
     * again, or the same event twice in one capture) falls back to one guarded push per event.
     */
    async appendUnitEvents(perUnit: ReadonlyMap<string, readonly UnitEpcisEntry[]>): Promise<void> {
      const units = [...perUnit];
      const refused: Array<[string, readonly UnitEpcisEntry[]]> = [];
      await inFlight(chunksOf(units), async (group) => {
        const ops = group.map(([unitId, entries]) => ({
          updateOne: { filter: { _id: unitId, 'events.eventId': { $nin: entries.map((e) => e.eventId) } }, update: { $push: { events: { $each: entries } }, $inc: { count: entries.length } }, upsert: true },
        }));
        for (const index of await duplicatesIn(() => UnitEpcisEvents.collection.bulkWrite(ops as never[], { ordered: false }))) refused.push(group[index]!);
      });
      const one = async (unitId: string, entry: UnitEpcisEntry) => {
        try {
          await UnitEpcisEvents.collection.updateOne({ _id: unitId, 'events.eventId': { $ne: entry.eventId } } as never, { $push: { events: entry }, $inc: { count: 1 } } as never, { upsert: true });
        } catch (err) {
          // The event is there already (the upsert met the unit's list).
          if (!isDuplicateKey(err)) throw err;
        }
      };
      for (const [unitId, entries] of refused) for (const entry of entries) await one(unitId, entry);
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
  };
}

export type EpcisStore = ReturnType<typeof createEpcisStore>;
