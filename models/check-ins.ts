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
