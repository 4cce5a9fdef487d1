import { JobLease } from '../../models/jobs';
import { type Engine, isDuplicateKey } from './engine';

/** How many holder changes a lease keeps, newest last. */
export const LEASE_HISTORY = 50;

export interface LeaseState {
  job: string;
  holder: string;
  acquiredAt: Date;
  expiresAt: Date;
  lastRunAt: Date | null;
  lastRunMs: number | null;
  lastError: string | null;
  history: Array<{ holder: string; from: Date; reason: 'first' | 'expired' | 'released' }>;
}

/**
 * Job leases. Acquiring is one upsert whose filter matches only a lease that is free (expired)
 * or already ours: when another instance holds a live lease the filter matches nothing, the
 * upsert tries to insert the job's `_id` again and the unique `_id` refuses it.
 */
export function createJobsStore(_engine: Engine) {
  return {
    /** Takes or renews the lease; true when `holder` holds it until `now + ttlMs`. */
    async acquire(job: string, holder: string, now: Date, ttlMs: number): Promise<boolean> {
      const expiresAt = new Date(now.getTime() + ttlMs);
      let before: { holder?: string; expiresAt?: Date } | null;
      try {
        before = await JobLease.findOneAndUpdate(
          { _id: job, $or: [{ holder }, { expiresAt: { $lte: now } }] },
          { $set: { holder, expiresAt, renewedAt: now }, $setOnInsert: { acquiredAt: now } },
          // No projection: FerretDB v1 refuses one on findAndModify, and the document is small.
          { upsert: true, new: false },
        ).lean();
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
      if (before?.holder === holder) return true;
      // A change of holder: recorded on the lease we now hold, so its history shows who ran when.
      const reason = !before ? 'first' : before.expiresAt && before.expiresAt.getTime() === 0 ? 'released' : 'expired';
      await JobLease.updateOne(
        { _id: job, holder },
        { $set: { acquiredAt: now }, $push: { history: { $each: [{ holder, from: now, reason }], $slice: -LEASE_HISTORY } } },
      );
      return true;
    },

    /** Extends a lease still held; false when it was lost (expired and taken by another). */
    async renew(job: string, holder: string, now: Date, ttlMs: number): Promise<boolean> {
      const res = await JobLease.updateOne({ _id: job, holder }, { $set: { expiresAt: new Date(now.getTime() + ttlMs), renewedAt: now } });
      return res.matchedCount === 1;
    },

    async recordRun(job: string, holder: string, at: Date, ms: number, error: string | null): Promise<void> {
      await JobLease.updateOne({ _id: job, holder }, { $set: { lastRunAt: at, lastRunMs: ms, lastError: error } });
    },

    /** Frees the lease at once (an instance shutting down), so another takes over without waiting. */
    async release(job: string, holder: string): Promise<void> {
      await JobLease.updateOne({ _id: job, holder }, { $set: { expiresAt: new Date(0) } });
    },

    async lease(job: string): Promise<LeaseState | null> {
      const doc = await JobLease.findById(job).lean();
      if (!doc) return null;
      return {
        job: doc._id,
        holder: doc.holder,
        acquiredAt: doc.acquiredAt,
        expiresAt: doc.expiresAt,
        lastRunAt: doc.lastRunAt ?? null,
        lastRunMs: doc.lastRunMs ?? null,
        lastError: doc.lastError ?? null,
        history: (doc.history ?? []).map((h) => ({ holder: h.holder, from: h.from, reason: h.reason as 'first' | 'expired' | 'released' })),
      };
    },
  };
}

export type JobsStore = ReturnType<typeof createJobsStore>;
