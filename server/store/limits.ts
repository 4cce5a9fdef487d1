import { Limit } from '../../models/limits';
import { type Engine, isDuplicateKey } from './engine';

/**
 * Rate-limit counters and used one-time tokens, in the database so that every app instance
 * behind a load balancer sees the same ones.
 *
 * Why not rate-limiter-flexible's MongoDB store (it is installed): it creates a TTL index to forget
 * its counters, which FerretDB v1.24 refuses ("Index option expireAfterSeconds is not
 * implemented yet") and would never apply, so every client's key would be kept for ever; and it reads the wall clock (`Date.now()`), where the portal's limits run on
 * the injected clock. So these are fixed windows, one document each under
 * `_id = <limiter>:<subject>:<window start>`, raised by one atomic `$inc` upsert (an `_id`
 * lookup on every engine). The window start in the key means an old window is never updated
 * again: it only waits to be deleted.
 *
 * Subjects are keyed hashes of client addresses (server/middleware/rate-limit.ts `clientKey`):
 * nothing here can be turned back into an address, and nothing outlives its window by more
 * than one sweep.
 */

/** How often (at most) one process deletes expired windows and nonces. */
export const SWEEP_EVERY_MS = 60_000;

export interface WindowHit {
  /** Hits in this window, this one included. */
  count: number;
  /** When this window ends (a caller's Retry-After). */
  resetAt: Date;
  /** The hit before this one in the same window, if any. */
  previous: Date | null;
}

export function createLimitsStore(_engine: Engine) {
  let lastSweep = 0;

  /**
   * Expired windows and nonces go in the background, at most once a minute per process. A
   * failed sweep costs nothing but a later one: the next hit after SWEEP_EVERY_MS tries again.
   */
  function sweep(now: Date) {
    if (now.getTime() - lastSweep < SWEEP_EVERY_MS && now.getTime() >= lastSweep) return;
    lastSweep = now.getTime();
    void removeExpired(now).catch(() => {});
  }

  async function removeExpired(now: Date): Promise<number> {
    // A scan on FerretDB, of a collection that holds only the live windows of recent clients.
    return (await Limit.deleteMany({ expiresAt: { $lte: now } })).deletedCount;
  }

  const windowOf = (windowMs: number, now: Date) => {
    const start = Math.floor(now.getTime() / windowMs) * windowMs;
    return { start, end: new Date(start + windowMs) };
  };

  const windowId = (limiter: string, subject: string, windowMs: number, now: Date) => `${limiter}:${subject}:${windowOf(windowMs, now).start.toString(36)}`;

  return {
    /**
     * Counts one hit of `subject` in the current window of `limiter` and returns the window's
     * count with this hit. Concurrent hits on any number of instances each get their own count.
     */
    async hitWindow(limiter: string, subject: string, windowMs: number, now: Date): Promise<WindowHit> {
      sweep(now);
      const { end } = windowOf(windowMs, now);
      const _id = windowId(limiter, subject, windowMs, now);
      const update = { $inc: { count: 1 }, $set: { last: now }, $setOnInsert: { expiresAt: end } };
      for (let attempt = 0; ; attempt++) {
        try {
          const before = await Limit.findOneAndUpdate({ _id }, update, { upsert: true, new: false }).lean();
          return { count: (before?.count ?? 0) + 1, resetAt: end, previous: before?.last ?? null };
        } catch (err) {
          // Two first hits raced to insert the window: the loser's `$inc` now finds it.
          if (!isDuplicateKey(err) || attempt > 0) throw err;
        }
      }
    },

    /** The current window of `limiter` for `subject`, without counting a hit. */
    async peekWindow(limiter: string, subject: string, windowMs: number, now: Date): Promise<{ count: number; last: Date | null; resetAt: Date }> {
      const found = await Limit.findById(windowId(limiter, subject, windowMs, now)).lean();
      return { count: found?.count ?? 0, last: found?.last ?? null, resetAt: windowOf(windowMs, now).end };
    },

    /** Takes back a hit that turned out not to count (a successful login). */
    async unhitWindow(limiter: string, subject: string, windowMs: number, now: Date): Promise<void> {
      await Limit.updateOne({ _id: windowId(limiter, subject, windowMs, now), count: { $gt: 0 } }, { $inc: { count: -1 } });
    },

    /**
     * Marks a one-time token used; false when it already was (here or on another instance):
     * the unique `_id` decides. Kept until `expiresAt`, when the token is refused anyway.
     */
    async useNonce(nonce: string, expiresAt: Date, now: Date): Promise<boolean> {
      sweep(now);
      try {
        await Limit.create({ _id: `nonce:${nonce}`, count: 1, last: now, expiresAt });
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    async nonceUsed(nonce: string): Promise<boolean> {
      return (await Limit.exists({ _id: `nonce:${nonce}` })) !== null;
    },

    /** Deletes expired windows and nonces now (the retention job; tests). */
    removeExpired,
  };
}

export type LimitsStore = ReturnType<typeof createLimitsStore>;
