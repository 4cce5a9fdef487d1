import autocannon from 'autocannon';
import { percentile } from './results';

/** What one bounded autocannon run saw: every response time, by status. */
export interface LoadResult {
  seconds: number;
  responses: number;
  ok: number;
  /** Non-2xx responses, connection errors and timeouts. */
  failures: number;
  statuses: Record<string, number>;
  latenciesMs: number[];
  median: number | null;
  p95: number | null;
  /** The first failing response body, to say why. */
  firstFailure: string | null;
}

/**
 * Runs autocannon against loopback for a fixed time (never unbounded) and keeps each
 * response time, so the percentiles are exact rather than read off a histogram.
 */
export async function runLoad(opts: autocannon.Options & { url: string }): Promise<LoadResult> {
  const latenciesMs: number[] = [];
  const statuses: Record<string, number> = {};
  let firstFailure: string | null = null;
  const requests = (opts.requests ?? [{}]).map((r) => ({
    ...r,
    onResponse(status: number, body: string, context: Record<string, unknown>, headers: Record<string, string>) {
      if ((status < 200 || status >= 300) && firstFailure === null) firstFailure = `${status} ${body.slice(0, 300)}`;
      r.onResponse?.(status, body, context, headers);
    },
  }));
  const instance = autocannon({ timeout: 30, ...opts, requests });
  instance.on('response', (_client: unknown, status: number, _bytes: number, responseTime: number) => {
    latenciesMs.push(responseTime);
    statuses[status] = (statuses[status] ?? 0) + 1;
  });
  const result = await instance;
  const ok = Object.entries(statuses).reduce((n, [s, c]) => (s.startsWith('2') ? n + c : n), 0);
  return {
    seconds: result.duration,
    responses: latenciesMs.length,
    ok,
    failures: latenciesMs.length - ok + result.errors + result.timeouts,
    statuses,
    latenciesMs,
    median: percentile(latenciesMs, 50),
    p95: percentile(latenciesMs, 95),
    firstFailure: firstFailure ?? (result.errors ? `${result.errors} connection errors` : null),
  };
}

/** Runs `task` over `items` with at most `concurrency` at a time, results in input order. */
export async function mapLimit<T, R>(items: readonly T[], concurrency: number, task: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await task(items[i]!, i);
      }
    }),
  );
  return results;
}
