import type { Clock } from '../../clock';
import type { Logger } from '../../logger';
import type { InsightStore, SnapshotHead } from '../../store/insight';

/** How old figures may get before the next reader starts their refresh. */
export const SNAPSHOT_TTL_MS = 5 * 60_000;
/** A refresh claimed longer ago than this never finished (its process died): another may take over. */
const REFRESH_LEASE_MS = 2 * 60_000;
/** How often a reader looks whether figures another instance is computing have arrived. */
const POLL_MS = 100;
/** Keys whose figures this process holds (the dashboard and the quarters recently asked for). */
const HELD_KEYS = 64;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Figures computed from scans, kept in one database document per key and shared by every app
 * instance, so all of them serve the same figures (the same "as of") and the scans run once
 * per refresh across instances, not once per process: stale-while-revalidate, on the injected
 * clock. Whoever reads a stale (or missing) snapshot claims its refresh with a guarded update;
 * the others serve the stale figures (or wait for the first ones).
 *
 * Each view reads the small head document; the figures themselves are fetched again only when
 * the head names other ones, and held here in between under the id the head names. That is
 * a copy of the shared figures, not a cache of this process's own: every instance serves the
 * figures the database names.
 */
export function sharedSnapshots(deps: { clock: Clock; logger: Logger; store: InsightStore }) {
  const { clock, logger, store } = deps;
  const held = new Map<string, { figuresId: string; figures: unknown }>();

  /** The figures the head names: held ones if they are those, else read (null: none stored yet). */
  async function figuresNamedBy<T>(key: string, head: SnapshotHead): Promise<T | null> {
    if (!head.figuresId) return null;
    const mine = held.get(key);
    if (mine?.figuresId === head.figuresId) return mine.figures as T;
    const stored = await store.snapshotFigures<T>(key);
    if (!stored) return null;
    held.delete(key); // re-inserted: the map's order is then least recently stored first
    held.set(key, stored);
    while (held.size > HELD_KEYS) held.delete(held.keys().next().value!);
    return stored.figures;
  }

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

  async function claim(key: string, seen: SnapshotHead | null) {
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
        const head = await store.snapshot(key);
        const figures = head && (await figuresNamedBy<T>(key, head));
        if (head?.computedAt && figures) {
          if (clock.now().getTime() - head.computedAt.getTime() >= SNAPSHOT_TTL_MS) {
            claim(key, head)
              .then((at) => at && computeUnderClaim(key, at, compute))
              .catch((err: unknown) => logger.error({ err, key }, 'insight snapshot refresh failed'));
          }
          return figures;
        }
        const at = await claim(key, head);
        if (at) return computeUnderClaim(key, at, compute);
        await sleep(POLL_MS); // another reader is computing the first figures
      }
    },

    /** Computes the figures now and stores them (newer figures stored meanwhile win). */
    async refresh<T>(key: string, compute: () => Promise<T>): Promise<T> {
      const at = clock.now();
      const figures = await compute();
      await store.saveSnapshot(key, figures, at);
      return figures;
    },
  };
}
