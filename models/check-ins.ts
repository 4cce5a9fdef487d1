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
  },
  { versionKey: false },
);
unknownSerialSchema.index({ lastAt: -1 });

export const UnknownSerial = mongoose.model('UnknownSerial', unknownSerialSchema);
