import { startJobs, type JobRunner } from '../server/jobs/runner';
import { createLogger } from '../server/logger';
import { createJobsStore, type JobsStore } from '../server/store/jobs';
import { createTestContext, type TestContext } from './helpers/context';
import { unique } from './helpers/factories';

const logger = createLogger('silent');
const until = async (check: () => boolean | Promise<boolean>, ms = 5_000) => {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('background jobs under a database lease', () => {
  let ctx: TestContext;
  let store: JobsStore;
  const runners: JobRunner[] = [];
  beforeAll(async () => {
    ctx = await createTestContext();
    store = createJobsStore(ctx.db.engine);
  });
  afterEach(async () => {
    await Promise.all(runners.splice(0).map((r) => r.stop()));
  });
  afterAll(() => ctx.close());

  it('gives a free lease to exactly one of many instances asking at once', async () => {
    const job = unique('race');
    const won = await Promise.all(Array.from({ length: 10 }, (_, i) => store.acquire(job, `instance-${i}`, ctx.clock.now(), 10_000)));
    expect(won.filter(Boolean)).toHaveLength(1);
    const lease = await store.lease(job);
    expect(lease!.holder).toBe(`instance-${won.indexOf(true)}`);
    expect(lease!.history).toEqual([expect.objectContaining({ holder: lease!.holder, reason: 'first' })]);
  });

  it('runs a job on one instance only while two are started, and records who ran it', async () => {
    const job = unique('sweep');
    const runs: string[] = [];
    const start = (id: string) => startJobs([{ name: job, everyMs: 30, runOnAcquire: true, run: async () => void runs.push(id) }], { store, clock: ctx.clock, logger, instanceId: id, leaseMs: 5_000, pollMs: 30 });
    runners.push(start('a'), start('b'));
    await until(() => runs.length >= 5);
    expect(new Set(runs).size).toBe(1);
    const lease = await store.lease(job);
    expect(lease!.holder).toBe(runs[0]);
    expect(lease!.lastRunAt).not.toBeNull();
    expect(lease!.history).toHaveLength(1);
  });

  it('hands the job to another instance at once when the holder stops', async () => {
    const job = unique('handover');
    const runs: string[] = [];
    const first = startJobs([{ name: job, everyMs: 20, runOnAcquire: true, run: async () => void runs.push('first') }], { store, clock: ctx.clock, logger, instanceId: 'first', leaseMs: 60_000, pollMs: 20 });
    await until(() => runs.includes('first'));
    const second = startJobs([{ name: job, everyMs: 20, runOnAcquire: true, run: async () => void runs.push('second') }], { store, clock: ctx.clock, logger, instanceId: 'second', leaseMs: 60_000, pollMs: 20 });
    runners.push(second);
    await new Promise((r) => setTimeout(r, 150));
    expect(runs).not.toContain('second');

    await first.stop();
    await until(() => runs.includes('second'));
    const lease = await store.lease(job);
    expect(lease!.holder).toBe('second');
    expect(lease!.history.map((h) => [h.holder, h.reason])).toEqual([['first', 'first'], ['second', 'released']]);
  });

  it('leaves the lease free when it stops during a lease check', async () => {
    const job = unique('stop-mid-check');
    let checks = 0;
    let checking!: () => void;
    const inCheck = new Promise<void>((r) => (checking = r));
    // A slow database: the second lease check is still on its way when stop() is called.
    const slow: JobsStore = {
      ...store,
      acquire: async (...args) => {
        checks += 1;
        if (checks === 2) {
          checking();
          await new Promise((r) => setTimeout(r, 200));
        }
        return store.acquire(...args);
      },
    };
    const runner = startJobs([{ name: job, everyMs: 60_000, run: async () => undefined }], { store: slow, clock: ctx.clock, logger, instanceId: 'stopping', leaseMs: 60_000, pollMs: 20 });
    await inCheck;
    await runner.stop();
    // Long enough for a check that outlived stop() to have landed.
    await new Promise((r) => setTimeout(r, 300));
    expect(await store.acquire(job, 'next', ctx.clock.now(), 60_000)).toBe(true);
    expect((await store.lease(job))!.holder).toBe('next');
  });

  it('takes over a lease its holder stopped renewing once it expires, and not before', async () => {
    const job = unique('failover');
    expect(await store.acquire(job, 'crashed', ctx.clock.now(), 10_000)).toBe(true);
    const runs: string[] = [];
    runners.push(startJobs([{ name: job, everyMs: 20, runOnAcquire: true, run: async () => void runs.push('survivor') }], { store, clock: ctx.clock, logger, instanceId: 'survivor', leaseMs: 10_000, pollMs: 20 }));
    await new Promise((r) => setTimeout(r, 150));
    expect(runs).toEqual([]);

    ctx.clock.advance(10_001);
    await until(() => runs.length > 0);
    const lease = await store.lease(job);
    expect(lease!.holder).toBe('survivor');
    expect(lease!.history.at(-1)).toEqual(expect.objectContaining({ holder: 'survivor', reason: 'expired' }));
  });

  it('comes back soon while a run says work is waiting, and only now and then once it is done', async () => {
    const job = unique('backlog');
    let waiting = 3;
    const runsAt: number[] = [];
    runners.push(
      startJobs([{ name: job, everyMs: 60_000, busyEveryMs: 20, runOnAcquire: true, run: async () => (runsAt.push(Date.now()), waiting-- > 0) }], { store, clock: ctx.clock, logger, instanceId: 'busy', leaseMs: 5_000, pollMs: 1_000 }),
    );
    // Four runs (three with work waiting, one finding none) well inside one lease check.
    await until(() => runsAt.length === 4, 900);
    await new Promise((r) => setTimeout(r, 300));
    expect(runsAt).toHaveLength(4);
  });

  it('keeps the lease of a run longer than the lease by renewing it while running', async () => {
    const job = unique('long');
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    let started = 0;
    const long = startJobs([{ name: job, everyMs: 60_000, runOnAcquire: true, run: async () => { started += 1; await blocked; } }], { store, clock: ctx.clock, logger, instanceId: 'long', leaseMs: 300, pollMs: 50 });
    runners.push(long);
    await until(() => started === 1);
    // Other instances look while the run goes on past several lease lengths.
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 100));
      ctx.clock.advance(100);
      expect(await store.acquire(job, 'other', ctx.clock.now(), 300)).toBe(false);
    }
    release();
    expect((await store.lease(job))!.holder).toBe('long');
  });
});
