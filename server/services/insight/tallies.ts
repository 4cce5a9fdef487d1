import type { Clock } from '../../clock';
import { countryName } from '../../countries';
import type { Logger } from '../../logger';
import type { InsightStore } from '../../store/insight';

/**
 * How long a read of the unit tallies is reused when this process wrote none since. A cache
 * per process, and harmless: the figures are read-only counts, a write by this process
 * invalidates it at once, and another instance's writes show here within this bound (what the
 * dashboard already tolerates from its five-minute snapshot). Reading the tallies costs ~40 ms
 * on the embedded database at 20 models × 120 countries (every map entry decoded), over the
 * page's budget.
 */
export const TALLY_CACHE_MS = 10_000;
/** A rebuild whose heartbeat is older than this stopped (its process died): another instance takes it over. */
const REBUILD_STALE_MS = 2 * 60_000;
/** How often an instance looks whether another one finished the rebuild. */
const REBUILD_POLL_MS = 500;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The units' figures, from the per-model tallies kept on write by the catalogue, registrations
 * and check-ins services. Where they were never built (first start of this version on an
 * existing database) one instance rebuilds them from the units while the others wait: the
 * rebuild is claimed in the database (`missing → building → ready`).
 */
export function unitTallies(deps: { clock: Clock; logger: Logger; store: InsightStore }) {
  const { clock, logger, store } = deps;
  /** Once the tallies are ready they stay so (they are kept on write): this process stops asking. */
  let ready: Promise<void> | null = null;
  let cache: { version: number; at: number; read: ReturnType<InsightStore['readUnitTallies']> } | null = null;

  async function rebuild() {
    logger.info('insight: no unit tallies on this database yet, rebuilding them from the units');
    const alive = () => store.unitTallyRebuildAlive(clock.now()).catch((err: unknown) => logger.warn({ err }, 'insight: tally rebuild heartbeat failed'));
    const done = await store.rebuildUnitTallies({ now: clock.now(), progress: () => void alive() });
    logger.info(done, 'insight: unit tallies rebuilt');
    if (done.concurrentChanges) logger.warn({ concurrentChanges: done.concurrentChanges }, 'insight: units changed during the tally rebuild; run `npm run insight:rebuild` for exact figures');
  }

  async function untilReady(): Promise<void> {
    for (;;) {
      const now = clock.now();
      const state = await store.claimUnitTallyRebuild(now, new Date(now.getTime() - REBUILD_STALE_MS));
      if (state === 'ready') return;
      if (state === 'claimed') return rebuild();
      await sleep(REBUILD_POLL_MS); // another instance is rebuilding them
    }
  }

  /** The tallies, re-read when this process changed them or TALLY_CACHE_MS passed (monotonic time: a cache bound). */
  function current() {
    const version = store.unitTallyVersion();
    const at = performance.now();
    if (!cache || cache.version !== version || at - cache.at >= TALLY_CACHE_MS) {
      const read = store.readUnitTallies();
      cache = { version, at, read };
      read.catch(() => (cache = null));
    }
    return cache.read;
  }

  return {
    /**
     * Resolves once the unit tallies exist: at once if a rebuild was ever recorded on this
     * database, else after the rebuild this instance claims, or another one finishes.
     */
    ensure(): Promise<void> {
      ready ??= untilReady().catch((err: unknown) => {
        ready = null; // the next view tries again
        throw err;
      });
      return ready;
    },

    /** The units' figures for the selected models (null: all). */
    async figures(ids: string[] | null) {
      const tallies = (await current()).filter((t) => !ids || ids.includes(t.modelId));
      const registered = new Map<string, number>();
      const checkIn = new Map<string, number>();
      const totals = { units: 0, registered: 0, withCheckIns: 0, transferPending: 0 };
      const addAll = (into: Map<string, number>, counts: Record<string, number>) => {
        for (const [country, n] of Object.entries(counts)) if (n) into.set(country, (into.get(country) ?? 0) + n);
      };
      for (const t of tallies) {
        totals.units += t.units;
        totals.registered += t.registered;
        totals.withCheckIns += t.withCheckIns;
        totals.transferPending += t.transferPending;
        addAll(registered, t.byRegisteredCountry);
        addAll(checkIn, t.byCheckInCountry);
      }
      const list = (m: Map<string, number>) => [...m].filter(([, n]) => n > 0).map(([country, n]) => ({ country, name: countryName(country), n })).sort((a, b) => b.n - a.n || a.name.localeCompare(b.name));
      return { totals, byRegisteredCountry: list(registered), byCheckInCountry: list(checkIn) };
    },
  };
}
