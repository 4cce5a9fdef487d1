import mongoose, { Schema } from 'mongoose';

/**
 * One document per background job: which instance holds the job's lease and until when.
 * `_id` is the job's name, so acquiring, renewing and releasing are single-document updates
 * guarded by the holder or the expiry, and exactly one instance wins a lease.
 */
const leaseChangeSchema = new Schema(
  { holder: { type: String, required: true }, from: { type: Date, required: true }, reason: { type: String, enum: ['first', 'expired', 'released'], required: true } },
  { _id: false },
);

const jobLeaseSchema = new Schema(
  {
    _id: { type: String, required: true },
    holder: { type: String, required: true },
    acquiredAt: { type: Date, required: true },
    expiresAt: { type: Date, required: true },
    renewedAt: { type: Date, required: true },
    lastRunAt: { type: Date, default: null },
    lastRunMs: { type: Number, default: null },
    lastError: { type: String, default: null },
    /** The most recent holders, newest last: who ran the job when (bounded). */
    history: { type: [leaseChangeSchema], default: [] },
  },
  { versionKey: false, collection: 'jobleases' },
);

export const JobLease = mongoose.model('JobLease', jobLeaseSchema);
