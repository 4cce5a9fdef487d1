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
