import type { Clock } from './clock';

/**
 * Runs `work` on every item with at most `limit` running at once, and resolves when all are
 * done (rejects with the first failure, after the ones running have settled). For database
 * round trips that are independent of each other: the engine overlaps them, one at a time
 * leaves it idle between requests.
 */
export async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  const worker = async () => {
    while (next < items.length && !failure) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw (failure as { error: unknown }).error;
}

/** How long after the last ingest request a fold may start. */
const INGEST_QUIET_MS = 200;

/**
 * Background folding that gives way to ingest in the same process: while requests that append
 * are in flight (or ended under INGEST_QUIET_MS ago), a fold waits, unless the oldest waiting
 * item has waited `maxLagMs` or a caller wants everything folded now (tests, scripts). The
 * senders are waiting for their answers, the summaries are not; on a shared 2-core machine a
 * fold competing with ingest halves both.
 */
export function ingestFirst(clock: Clock, maxLagMs: number) {
  let ingesting = 0;
  let lastIngestEnded = 0;
  let urgent = 0;
  return {
    /** Wraps an ingest request. */
    async during<T>(work: () => Promise<T>): Promise<T> {
      ingesting++;
      try {
        return await work();
      } finally {
        ingesting--;
        lastIngestEnded = performance.now();
      }
    },

    /** Runs `work` with folding no longer giving way. */
    async urgently<T>(work: () => Promise<T>): Promise<T> {
      urgent++;
      try {
        return await work();
      } finally {
        urgent--;
      }
    },

    /** Resolves when a fold of items waiting since `oldest` may start. */
    async giveWay(oldest: Date): Promise<void> {
      for (;;) {
        const quiet = ingesting === 0 && performance.now() - lastIngestEnded >= INGEST_QUIET_MS;
        if (urgent || quiet || clock.now().getTime() - oldest.getTime() >= maxLagMs) return;
        await new Promise((resolve) => setTimeout(resolve, INGEST_QUIET_MS));
      }
    },
  };
}
