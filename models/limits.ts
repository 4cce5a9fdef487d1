import mongoose, { Schema } from 'mongoose';

/**
 * Rate-limit windows and used one-time tokens, shared by every app instance (server/store/limits.ts).
 *
 * `_id` carries everything a request looks up: `<limiter>:<subject>:<window start>` for a
 * counter, `nonce:<nonce>` for a used form token. The subject is a keyed hash of the client
 * address, never the address. `expiresAt` is when the document stops mattering; expired ones
 * are deleted by a periodic small scan (the embedded engine has no TTL expiry).
 */
const limitSchema = new Schema(
  {
    _id: { type: String, required: true },
    count: { type: Number, default: 0 },
    /** The latest hit, for limiters whose wait grows with each failure (receipt guessing). */
    last: { type: Date, default: null },
    expiresAt: { type: Date, required: true },
  },
  { versionKey: false },
);
// The sweep's filter. Not a TTL index: the embedded engine refuses the option, and one schema
// serves both engines (server/store/limits.ts says more).
limitSchema.index({ expiresAt: 1 });

export const Limit = mongoose.model('Limit', limitSchema);
