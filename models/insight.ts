import mongoose, { Schema } from 'mongoose';
import { Unit } from './catalogue';

/**
 * Insight read models: where the units are, counted per product model and kept on write, so
 * the dashboard never aggregates the units collection (one `$group` over 100,000 units took
 * ~35 s on FerretDB v1, which scans for anything but an `_id` lookup).
 *
 * `UnitTally`, one document per model (`_id` = the model's SKU, a few dozen documents):
 *  - `units`: units in the catalogue;
 *  - `registered`: units whose status is not `unregistered` (so `transfer-pending` counts);
 *  - `transferPending`: units whose status is `transfer-pending`;
 *  - `withCheckIns`: units that have checked in at least once (`checkIns.lastCountry` set);
 *  - `byRegisteredCountry`: units per `current.country` (ISO code → n; entries may be 0);
 *  - `byCheckInCountry`: units per `checkIns.lastCountry`.
 * Writers call `tallyUnits` after they change a unit; `rebuildUnitTallies` recomputes every
 * tally from the units (a streamed scan) and records that it did in `InsightState`, whose
 * absence means the tallies were never built on this database (first start of this version).
 */

const countsMap = { type: Map, of: Number, default: {} };

const unitTallySchema = new Schema(
  {
    _id: { type: String, required: true }, // the model's normalised SKU
    units: { type: Number, default: 0 },
    registered: { type: Number, default: 0 },
    transferPending: { type: Number, default: 0 },
    withCheckIns: { type: Number, default: 0 },
    byRegisteredCountry: countsMap,
    byCheckInCountry: countsMap,
  },
  { versionKey: false },
);
export const UnitTally = mongoose.model('UnitTally', unitTallySchema);

/** One document, `_id` = UNIT_TALLIES: when the tallies were last rebuilt from the units. */
const insightStateSchema = new Schema(
  {
    _id: { type: String, required: true },
    rebuiltAt: { type: Date, required: true },
    units: { type: Number, required: true },
    /** tallyUnits calls made by this process while the rebuild ran (see rebuildUnitTallies). */
    concurrentChanges: { type: Number, default: 0 },
  },
  { versionKey: false },
);
export const InsightState = mongoose.model('InsightState', insightStateSchema);
export const UNIT_TALLIES = 'unit-tallies';

export type UnitStatus = 'unregistered' | 'registered' | 'transfer-pending';

/** One unit's change of the tallied facts, as deltas (all optional, negative to remove). */
export interface UnitTallyChange {
  modelId: string;
  units?: number;
  registered?: number;
  transferPending?: number;
  withCheckIns?: number;
  /** The unit's `current.country` went from → to (null: none); the same value is no change. */
  registeredCountry?: { from: string | null; to: string | null };
  /** The unit's `checkIns.lastCountry` went from → to (null: it had never checked in). */
  checkInCountry?: { from: string | null; to: string | null };
}

/**
 * The tally change for one unit whose status and/or registered country changed, from what the
 * unit was before the write to what it is after (read the old values from the write itself,
 * e.g. `findOneAndUpdate` with `new: false`, so a concurrent write cannot skew them).
 */
export function unitStateChange(modelId: string, before: { status: string | null | undefined; country: string | null | undefined }, after: { status: string; country: string | null }): UnitTallyChange {
  const registered = (s: string | null | undefined) => (s && s !== 'unregistered' ? 1 : 0);
  const pending = (s: string | null | undefined) => (s === 'transfer-pending' ? 1 : 0);
  return {
    modelId,
    registered: registered(after.status) - registered(before.status),
    transferPending: pending(after.status) - pending(before.status),
    registeredCountry: { from: before.country ?? null, to: after.country },
  };
}

/**
 * The tally change for one unit whose last check-in country went from `before` (null: its
 * first check-in) to `after`: what the check-ins service passes on per unit and batch.
 */
export function unitCheckInChange(modelId: string, before: string | null | undefined, after: string): UnitTallyChange {
  return { modelId, withCheckIns: before ? 0 : 1, checkInCountry: { from: before ?? null, to: after } };
}

/** tallyUnits calls while a rebuild runs in this process (see rebuildUnitTallies). */
let rebuildsRunning = 0;
let changesDuringRebuild = 0;
/** Bumped by every tally write in this process: readers cache what they read under it. */
let tallyVersion = 0;
/** The version of the tallies as this process last wrote them (see `readUnitTallies`). */
export const unitTallyVersion = () => tallyVersion;

/**
 * Applies unit changes to the per-model tallies: the changes are summed per model and each
 * model's tally gets ONE `$inc` update by `_id` (upserted), so a batch of any size costs one
 * round trip per model it touches (FerretDB serialises updates per collection; see
 * server/db/ferretdb-updates.ts).
 *
 * Contract for writers (call it AFTER the unit write succeeded, only for changes that took
 * effect, with the values the write actually replaced):
 *  - unit created: `{ modelId, units: 1 }` (plus its country/status if created with them);
 *    unit deleted: the negatives of everything it counted in;
 *  - status changed: `registered` ±1 when it crosses `unregistered` ↔ anything else,
 *    `transferPending` ±1 when it enters/leaves `transfer-pending` (`unitStateChange` does both);
 *  - `current.country` changed: `registeredCountry: { from: old, to: new }`;
 *  - check-ins (`checkIns.lastCountry` old → new): `checkInCountry: { from: old, to: new }`,
 *    and on a unit's FIRST check-in (old null) also `withCheckIns: 1`.
 * Never throws on an empty list. Not transactional with the unit write: a crash in between
 * leaves the tallies off until `npm run insight:rebuild` recomputes them.
 */
export async function tallyUnits(changes: readonly UnitTallyChange[]): Promise<void> {
  const perModel = new Map<string, Record<string, number>>();
  const add = (inc: Record<string, number>, path: string, n: number | undefined) => {
    if (n) inc[path] = (inc[path] ?? 0) + n;
  };
  for (const c of changes) {
    const inc = perModel.get(c.modelId) ?? {};
    perModel.set(c.modelId, inc);
    add(inc, 'units', c.units);
    add(inc, 'registered', c.registered);
    add(inc, 'transferPending', c.transferPending);
    add(inc, 'withCheckIns', c.withCheckIns);
    for (const [field, move] of [['byRegisteredCountry', c.registeredCountry], ['byCheckInCountry', c.checkInCountry]] as const) {
      if (!move || move.from === move.to) continue;
      if (move.from) add(inc, `${field}.${move.from}`, -1);
      if (move.to) add(inc, `${field}.${move.to}`, 1);
    }
  }
  for (const [modelId, inc] of perModel) {
    for (const [k, v] of Object.entries(inc)) if (v === 0) delete inc[k];
    if (!Object.keys(inc).length) continue;
    if (rebuildsRunning) changesDuringRebuild++;
    tallyVersion++;
    // The driver, not Mongoose: a `$inc` of a Map entry (`byCheckInCountry.KE`) needs no
    // casting; an upserted document holds only the fields incremented so far.
    await UnitTally.collection.updateOne({ _id: modelId as never }, { $inc: inc }, { upsert: true });
    tallyVersion++; // again once written: a read that overlapped the write is not kept
  }
}

export interface TallyFigures {
  units: number;
  registered: number;
  transferPending: number;
  withCheckIns: number;
  byRegisteredCountry: Record<string, number>;
  byCheckInCountry: Record<string, number>;
}

/** Every model's tally (a few dozen `_id`-keyed documents), as plain numbers. */
export async function readUnitTallies(): Promise<Array<TallyFigures & { modelId: string }>> {
  const docs = await UnitTally.collection.find({}).toArray();
  return docs.map((d) => ({
    modelId: String(d._id),
    units: Number(d.units ?? 0),
    registered: Number(d.registered ?? 0),
    transferPending: Number(d.transferPending ?? 0),
    withCheckIns: Number(d.withCheckIns ?? 0),
    byRegisteredCountry: { ...((d.byRegisteredCountry as Record<string, number> | undefined) ?? {}) },
    byCheckInCountry: { ...((d.byCheckInCountry as Record<string, number> | undefined) ?? {}) },
  }));
}

/** When the tallies were last rebuilt, or null if never on this database. */
export async function unitTallyState() {
  return InsightState.findById(UNIT_TALLIES).lean();
}

const REBUILD_BATCH = 1000;

/**
 * Recomputes every model's tally from the units: one streamed cursor over the units with only
 * the tallied fields projected (memory holds one batch and the per-model counts, never the
 * units), then one replacing write per model, tallies of models without units removed, and
 * the `InsightState` record written last.
 *
 * Writes during a rebuild: a unit changed after the cursor passed it has its `tallyUnits`
 * delta overwritten by the rebuild's final write, so it is missing until the next rebuild; a
 * unit changed before the cursor reaches it is counted right. Run it with no writers (the
 * portal stopped, as for the other maintenance commands) for exact figures; the app runs it
 * itself only when no rebuild was ever recorded, and counts the changes it overlapped
 * (`concurrentChanges`, logged) so one can tell whether a second run is needed.
 */
export async function rebuildUnitTallies(opts: { now: Date; progress?: (units: number) => void; progressEvery?: number }): Promise<{ units: number; models: number; concurrentChanges: number; ms: number }> {
  const started = performance.now();
  rebuildsRunning++;
  const changesBefore = changesDuringRebuild;
  try {
    const tallies = new Map<string, TallyFigures>();
    let units = 0;
    const every = opts.progressEvery ?? 10_000;
    const cursor = Unit.collection.find({}, { projection: { modelId: 1, status: 1, 'current.country': 1, 'checkIns.lastCountry': 1 }, batchSize: REBUILD_BATCH });
    for await (const u of cursor) {
      const modelId = String(u.modelId);
      let t = tallies.get(modelId);
      if (!t) tallies.set(modelId, (t = { units: 0, registered: 0, transferPending: 0, withCheckIns: 0, byRegisteredCountry: {}, byCheckInCountry: {} }));
      t.units++;
      const status = (u.status as string | undefined) ?? 'unregistered';
      if (status !== 'unregistered') t.registered++;
      if (status === 'transfer-pending') t.transferPending++;
      const country = (u.current as { country?: string | null } | undefined)?.country;
      if (country) t.byRegisteredCountry[country] = (t.byRegisteredCountry[country] ?? 0) + 1;
      const checkIn = (u.checkIns as { lastCountry?: string | null } | undefined)?.lastCountry;
      if (checkIn) {
        t.withCheckIns++;
        t.byCheckInCountry[checkIn] = (t.byCheckInCountry[checkIn] ?? 0) + 1;
      }
      if (++units % every === 0) opts.progress?.(units);
    }
    tallyVersion++;
    for (const [modelId, t] of tallies) await UnitTally.collection.replaceOne({ _id: modelId as never }, t, { upsert: true });
    // Few documents: the `$nin` stays far below SQLite's variable limit (one per model).
    await UnitTally.collection.deleteMany({ _id: { $nin: [...tallies.keys()] as never[] } });
    tallyVersion++;
    const concurrentChanges = changesDuringRebuild - changesBefore;
    await InsightState.collection.replaceOne({ _id: UNIT_TALLIES as never }, { rebuiltAt: opts.now, units, concurrentChanges }, { upsert: true });
    opts.progress?.(units);
    return { units, models: tallies.size, concurrentChanges, ms: performance.now() - started };
  } finally {
    rebuildsRunning--;
  }
}
