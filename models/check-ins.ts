import mongoose, { Schema } from 'mongoose';

/**
 * The check-in log: append-only, the big collection (tens of millions). Pages never query it
 * for summaries: they read the unit's summary (models/catalogue.ts). The log serves the unit
 * timeline's detail view, audit and export.
 *
 * `_id` carries idempotency: `${apiKeyId}:${clientEventId}` when the caller sent an event id,
 * so a retried batch inserts nothing twice (duplicate-key errors are the "already have it").
 */
const checkInSchema = new Schema(
  {
    _id: { type: String, required: true },
    unitId: { type: String, default: null }, // null: serial not in the catalogue
    modelSku: { type: String, default: '' },
    serial: { type: String, required: true },
    firmware: { type: String, default: '' },
    observedAt: { type: Date, required: true },
    receivedAt: { type: Date, required: true },
    country: { type: String, required: true },
    apiKeyId: { type: String, required: true },
    answer: { type: String, enum: ['allowed', 'withheld'], required: true },
    flags: { type: [String], default: [] },
    /** The ingest batch that stored it: how a recovering summariser tells its own entries from older duplicates. */
    batchId: { type: String, default: null },
  },
  { versionKey: false },
);
checkInSchema.index({ unitId: 1, observedAt: 1 });

export const CheckIn = mongoose.model('CheckIn', checkInSchema);

/**
 * A serial that checks in but is not in the catalogue: its own small summary (by `_id`), so
 * `unknown-serial` is raised when a run of its check-ins starts, not on every check-in.
 */
const unknownSerialSchema = new Schema(
  {
    _id: { type: String, required: true }, // `${SKU or '-'}:${SERIAL}`, normalised
    modelSku: { type: String, default: '' },
    serial: { type: String, required: true },
    count: { type: Number, default: 0 },
    firstAt: { type: Date, required: true },
    lastAt: { type: Date, required: true },
    lastCountry: { type: String, required: true },
    lastFirmware: { type: String, default: '' },
    /** The latest ingest batches folded in: a batch folded again after a crash is skipped. */
    batchIds: { type: [String], default: [] },
  },
  { versionKey: false },
);
unknownSerialSchema.index({ lastAt: -1 });

export const UnknownSerial = mongoose.model('UnknownSerial', unknownSerialSchema);

/**
 * The summariser's outbox: one document per ingested batch, written before the log entries
 * and deleted once every unit summary, unknown-serial summary and red flag of the batch is
 * done. Ingest then only appends (this document and the log), and the per-unit summary
 * writes, which cost milliseconds each on the embedded engine, happen in the background where many
 * batches are folded together. The fold is idempotent (units remember the batches they
 * hold, flags have ids derived from the check-in and rule), so a batch still here after a
 * crash is simply folded again.
 *
 * The batch names its log entries by `_id` only (`logIds`); the summariser reads them from the
 * log, where an entry stored by THIS batch carries its `batchId` (a duplicate of an earlier
 * batch's entry carries that batch's). Copying the entries here as well cost ingest a third
 * more per batch on the embedded engine (an array of 1,000 subdocuments is encoded field by
 * field), against a few `_id` reads per entry in the fold, which runs in the background.
 */
const checkInBatchSchema = new Schema(
  {
    _id: { type: String, required: true }, // cib_<random>
    apiKeyId: { type: String, required: true },
    receivedAt: { type: Date, required: true },
    /** Entries in the batch: the summariser sizes its folds by it without reading them. */
    size: { type: Number, required: true },
    /** The log entries' `_id`s, in the batch's order: the summariser reads the entries from the log. */
    logIds: { type: [String], required: true },
  },
  { versionKey: false },
);

export const CheckInBatch = mongoose.model('CheckInBatch', checkInBatchSchema);

/**
 * The units whose firmware updates are withheld, in one document read by `_id` per ingest
 * batch: the answer to a check-in then needs no read of the unit. Written by the check-ins
 * service's `withholdUpdates`/`liftWithholding` (the only writers of `controls.updates`):
 * added before the unit is marked, removed after the unit is cleared, so a crash in between
 * errs on the side of withholding.
 */
const withheldUnitsSchema = new Schema(
  {
    _id: { type: String, required: true }, // always WITHHELD_UNITS_ID
    unitIds: { type: [String], default: [] },
  },
  { versionKey: false },
);

export const WITHHELD_UNITS_ID = 'withheld-units';
export const WithheldUnits = mongoose.model('WithheldUnits', withheldUnitsSchema);
