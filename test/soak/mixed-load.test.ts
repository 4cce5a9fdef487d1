import fs from 'node:fs';
import path from 'node:path';
import mongoose from 'mongoose';
import { ROOT, killSpawned } from '../helpers/processes';
import { call, sleep, startServer, type RunningServer } from '../helpers/security';
import { checkInBatch, percentile, prepare, report, rssMiB, soakSeconds, type Fixtures } from './workload';

/**
 * Mixed load on loopback: public pages, report submissions, check-in batches and
 * investigator pages, from as many concurrent clients as the machine sustains. Zero 5xx, p99
 * reported (and written to test-results/mixed-load.json), memory flat.
 * `npm test` runs a short form; `npm run test:soak` runs SOAK_SECONDS (60 by default).
 */
describe('mixed load', () => {
  const seconds = soakSeconds(10);
  let srv: RunningServer;
  let fx: Fixtures;

  beforeAll(async () => {
    // Production mode, as deployed: compiled views are cached instead of read from disk per page.
    const production = { NODE_ENV: 'production' };
    srv = await startServer({ REPORT_POW_BITS: '0', REPORT_MIN_FILL_SECONDS: '0', LOG_LEVEL: 'error', ...production });
    fx = await prepare(srv, 100, production);
    // Warm-up: each unit's first check-in raises its "never registered" flag and opens a case
    // (a once-per-unit cost); the measured run is the steady state of devices checking in.
    for (let i = 0; i < fx.units.length; i += 20) await checkInBatch(srv, fx, 20);
  }, 300_000);
  afterAll(async () => {
    await mongoose.disconnect();
    await killSpawned();
  });

  it(`serves ${seconds} s of public pages, reports, check-in batches and investigator pages with no 5xx and flat memory`, async () => {
    const latencies: Record<string, number[]> = { page: [], report: [], 'check-in': [], investigator: [] };
    const statuses: Record<string, number> = {};
    const note = (kind: string, status: number, ms: number) => {
      latencies[kind]!.push(ms);
      statuses[status] = (statuses[status] ?? 0) + 1;
    };
    const pages = ['/', '/report', '/login', '/transparency', '/follow-up'];
    const staffPages = ['/cases', '/dashboard', '/cases?status=all'];
    const steps: Array<() => Promise<void>> = [
      async () => {
        const o = await call(`${srv.url}${pages[Math.floor(Math.random() * pages.length)]}`);
        note('page', o.status, o.ms);
      },
      async () => {
        const o = await call(`${srv.url}${staffPages[Math.floor(Math.random() * staffPages.length)]}`, { headers: { cookie: fx.investigatorCookie } });
        note('investigator', o.status, o.ms);
      },
      async () => {
        // One batch is one request, whatever its size.
        const [first] = await checkInBatch(srv, fx, 10);
        for (const o of first!.outcomes) note('check-in', o.status, o.ms);
      },
      async () => {
        for (const o of (await report(srv))[0]!.outcomes) note('report', o.status, o.ms);
      },
    ];

    const rss: number[] = [];
    const until = Date.now() + seconds * 1000;
    const sampler = (async () => {
      while (Date.now() < until) {
        rss.push(rssMiB(srv.process.pid!));
        await sleep(500);
      }
    })();
    let n = 0;
    const client = async () => {
      while (Date.now() < until) await steps[n++ % steps.length]!();
    };
    await Promise.all([...Array.from({ length: Number(process.env.SOAK_CLIENTS ?? 8) }, client), sampler]);

    const all = Object.values(latencies).flat().sort((a, b) => a - b);
    const third = Math.max(1, Math.floor(rss.length / 3));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const result = {
      seconds,
      requests: all.length,
      perSecond: Math.round(all.length / seconds),
      statuses,
      p50: percentile(all, 50),
      p99: percentile(all, 99),
      p99ByKind: Object.fromEntries(Object.entries(latencies).map(([k, v]) => [k, percentile([...v].sort((a, b) => a - b), 99)])),
      rssMiB: { first: Math.round(mean(rss.slice(0, third))), last: Math.round(mean(rss.slice(-third))), max: Math.round(Math.max(...rss)) },
    };
    console.log(`mixed-load: ${JSON.stringify(result)}`);
    fs.mkdirSync(path.join(ROOT, 'test-results'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'test-results', 'mixed-load.json'), `${JSON.stringify(result, null, 2)}\n`);

    expect(Object.keys(statuses).filter((s) => Number(s) >= 500 || Number(s) === 0)).toEqual([]);
    expect(Object.keys(statuses).filter((s) => Number(s) >= 400)).toEqual([]);
    // A floor that proves the run did work; the measured rate goes to the report, not an assertion.
    expect(result.requests).toBeGreaterThan(seconds * 2);
    // Flat: the last third of the run holds no more than 1.5 times the first third's memory.
    expect(result.rssMiB.last).toBeLessThan(result.rssMiB.first * 1.5);
  }, 600_000);
});
