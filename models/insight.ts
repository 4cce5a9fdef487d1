import mongoose, { Schema } from 'mongoose';

/**
 * Insight read models (schemas only; every read and write is in server/store/insight.ts).
 *
 * `UnitTally`, one document per product model (`_id` = the model's SKU, a few dozen documents):
 * where the units are, kept on write so the dashboard never aggregates the units collection
 * (one `$group` over 100,000 units took ~35 s on the embedded database, which scans for
 * anything but an `_id` lookup).
 *  - `units`: units in the catalogue;
 *  - `registered`: units whose status is not `unregistered` (so `transfer-pending` counts);
 *  - `transferPending`: units whose status is `transfer-pending`;
 *  - `withCheckIns`: units that have checked in at least once (`checkIns.lastCountry` set);
 *  - `byRegisteredCountry`: units per `current.country` (ISO code → n; entries may be 0);
 *  - `byCheckInCountry`: units per `checkIns.lastCountry`;
 *  - `writes`: tally writes so far, so a rebuild can tell how many writes it overlapped.
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
    writes: { type: Number, default: 0 },
  },
  { versionKey: false },
);
export const UnitTally = mongoose.model('UnitTally', unitTallySchema);

/**
 * One document, `_id` = UNIT_TALLIES: the tallies' rebuild, a guarded transition
 * (absent) → `building` → `ready` shared by every app instance. `heartbeatAt` moves while a
 * rebuild runs, so another instance can take over one whose process died.
 * Documents written before `status` existed hold only `rebuiltAt`: they mean `ready`.
 */
const insightStateSchema = new Schema(
  {
    _id: { type: String, required: true },
    status: { type: String, enum: ['building', 'ready'] },
    startedAt: Date,
    heartbeatAt: Date,
    rebuiltAt: Date,
    units: Number,
    /** Tally writes (by any instance) that the rebuild overlapped (see rebuildUnitTallies). */
    concurrentChanges: { type: Number, default: 0 },
  },
  { versionKey: false },
);
export const InsightState = mongoose.model('InsightState', insightStateSchema);
export const UNIT_TALLIES = 'unit-tallies';

/**
 * Figures computed from scans of the small collections (flags, reports, cases), shared by
 * every app instance, two documents per key (`dashboard`, `transparency:2026-Q1`): the head
 * (`_id` = the key: `computedAt`, `refreshingSince`, `figuresId`) and the figures (`_id` = key
 * + `#figures`: `computedAt`, `figuresId`, `figures`). Whoever finds the head stale claims the
 * refresh (`refreshingSince`, a guarded update) and writes the figures, then the head; everyone
 * else serves the stored figures meanwhile, fetching them again only when the head names
 * other ones.
 */
const insightSnapshotSchema = new Schema(
  {
    _id: { type: String, required: true },
    computedAt: Date,
    refreshingSince: Date,
    figuresId: String,
    figures: { type: Schema.Types.Mixed },
  },
  { versionKey: false, minimize: false },
);
export const InsightSnapshot = mongoose.model('InsightSnapshot', insightSnapshotSchema);
