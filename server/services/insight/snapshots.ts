import type { Clock } from '../../clock';
import type { Logger } from '../../logger';
import type { InsightStore, SnapshotDoc } from '../../store/insight';

/** How old figures may get before the next reader starts their refresh. */
export const SNAPSHOT_TTL_MS = 5 * 60_000;
/** A refresh claimed longer ago than this never finished (its process died): another may take over. */
const REFRESH_LEASE_MS = 2 * 60_000;
/** How often a reader looks whether figures another instance is computing have arrived. */
const POLL_MS = 100;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Figures computed from scans, kept in one database document per key and shared by every app
 * instance, so all of them serve the same figures (the same "as of") and the scans run once
 * per refresh across instances, not once per process: stale-while-revalidate, on the injected
 * clock. Whoever reads a stale (or missing) snapshot claims its refresh with a guarded update;
 * the others serve the stale figures (or wait for the first ones).
 */
export function sharedSnapshots(deps: { clock: Clock; logger: Logger; store: InsightStore }) {
  const { clock, logger, store } = deps;

  /** Computes and stores the figures under a claim made at `claimedAt`; gives the claim back on failure. */
  async function computeUnderClaim<T>(key: string, claimedAt: Date, compute: () => Promise<T>): Promise<T> {
    try {
      const figures = await compute();
      await store.saveSnapshot(key, figures, claimedAt);
      return figures;
    } catch (err) {
      await store.releaseSnapshotRefresh(key, claimedAt).catch(() => undefined);
      throw err;
    }
  }

  async function claim(key: string, seen: SnapshotDoc<unknown> | null) {
    const now = clock.now();
    return (await store.claimSnapshotRefresh(key, seen, now, new Date(now.getTime() - REFRESH_LEASE_MS))) ? now : null;
  }

  return {
    /**
     * The figures for `key`: fresh ones, stale ones (their refresh then starts in the
     * background, unless another reader already claimed it), or for a key never computed, the
     * first figures once computed here or by another instance.
     */
    async get<T>(key: string, compute: () => Promise<T>): Promise<T> {
      for (;;) {
        const doc = await store.snapshot<T>(key);
        if (doc?.figures && doc.computedAt) {
          if (clock.now().getTime() - doc.computedAt.getTime() >= SNAPSHOT_TTL_MS) {
            claim(key, doc)
              .then((at) => at && computeUnderClaim(key, at, compute))
              .catch((err: unknown) => logger.error({ err, key }, 'insight snapshot refresh failed'));
          }
          return doc.figures;
        }
        const at = await claim(key, doc);
        if (at) return computeUnderClaim(key, at, compute);
        await sleep(POLL_MS); // another reader is computing the first figures
      }
    },

    /** Computes the figures now and stores them (newer figures stored meanwhile win). */
    async refresh<T>(key: string, compute: () => Promise<T>): Promise<T> {
      const at = clock.now();
      const figures = await compute();
      if (!(await store.snapshot(key))) await store.claimSnapshotRefresh(key, null, at, at);
      await store.saveSnapshot(key, figures, at);
      return figures;
    },
  };
}
