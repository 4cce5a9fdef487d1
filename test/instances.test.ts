import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mongoose from 'mongoose';
import { systemClock } from '../server/clock';
import { createStores } from '../server/store';
import { detectEngine } from '../server/store/engine';
import { makeReportCase, makeStaff } from './helpers/cases';
import type { TestContext } from './helpers/context';
import { registrationInput } from './helpers/catalogue';
import { exitOf, instanceIdOf, killSpawned } from './helpers/processes';
import { reportFields } from './helpers/reports';
import { call, childOf, sleep, startServer, type RunningServer } from './helpers/security';
import { prepare, type Fixtures } from './soak/workload';

/**
 * Two app processes on one embedded database, as `npm start` runs them on one machine: the
 * second joins the engine the first runs. Both are driven at once on the same units, case and
 * client address; then one is killed and the other takes its background jobs (and the engine).
 */
const LEASE_SECONDS = 2;
const REPORT_LIMIT = 3;
const UNITS = 6;
const BATCHES_PER_INSTANCE = 12;

interface LeaseDoc {
  _id: string;
  holder: string;
  expiresAt: Date;
  history: Array<{ holder: string; from: Date; reason: string }>;
}

describe('two app instances on one database', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-instances-'));
  const env = {
    JOB_LEASE_SECONDS: String(LEASE_SECONDS),
    CHECK_IN_SWEEP_MS: '200',
    CHECK_IN_IDLE_SWEEP_SECONDS: '1',
    REPORT_SUBMISSIONS_PER_10MIN: String(REPORT_LIMIT),
    REPORT_POW_BITS: '0',
    REPORT_MIN_FILL_SECONDS: '0',
    // The fold log lines say which instance folded.
    LOG_LEVEL: 'info',
  };
  let a: RunningServer;
  let b: RunningServer;
  let fx: Fixtures;
  let ctx: TestContext;
  /** Check-ins sent (and acknowledged) per unit. */
  const sent = new Map<string, number>();
  const leases = async () => (await mongoose.connection.db!.collection<LeaseDoc>('jobleases').find({}).toArray()) as LeaseDoc[];
  const holderPid = (holder: string) => Number(holder.split(':').at(-2));

  beforeAll(async () => {
    a = await startServer(env, dataDir);
    b = await startServer(env, dataDir);
    fx = await prepare(a, UNITS);
    ctx = { services: fx.services, clock: systemClock } as unknown as TestContext;
    for (const unit of fx.units) sent.set(unit._id, 0);
  }, 120_000);
  afterAll(async () => {
    await mongoose.disconnect();
    await killSpawned();
  });

  it('lets the second instance join the engine the first one runs', () => {
    const lock = JSON.parse(fs.readFileSync(path.join(dataDir, 'db', 'engine.lock'), 'utf8')) as { pid: number; uri: string };
    expect(lock).toMatchObject({ pid: a.process.pid, uri: a.databaseUri });
    expect(b.databaseUri).toBe(a.databaseUri);
    expect(b.process.output()).toContain(`joined, run by process ${a.process.pid}`);
    expect(childOf(a.process.pid!, 'ferretdb-embedded')).toBeDefined();
    expect(childOf(b.process.pid!, 'ferretdb-embedded')).toBeUndefined();
    expect(instanceIdOf(a.process.output())).not.toBe(instanceIdOf(b.process.output()));
  });

  it('loses no check-in and no transfer when both write to the same units at once', async () => {
    // Every unit registered once, then check-ins and relocations on all of them through both.
    for (const unit of fx.units) {
      const res = await call(`${a.url}/api/v1/registrations`, { body: { ...registrationInput(unit), purchaseDate: '2026-01-02' }, headers: fx.customer });
      expect(res.status).toBe(201);
    }
    let minute = 0;
    const batch = (srv: RunningServer) => {
      const items = fx.units.map((unit) => ({ serial: unit.serial, model: unit.modelId, firmware: '2.1.0', observedAt: new Date(Date.now() - 3_600_000 + ++minute * 1000).toISOString(), country: 'KE', eventId: crypto.randomUUID() }));
      return call(`${srv.url}/api/v1/check-ins/batch`, { body: { items }, headers: fx.apiKey });
    };
    const relocate = (srv: RunningServer, unitId: string, city: string) =>
      call(`${srv.url}/api/v1/transfers`, { body: { unitId, kind: 'relocation', country: 'KE', city, reason: 'Office moved', effectiveDate: '2026-01-10' }, headers: fx.customer });

    const checkIns = Array.from({ length: 2 * BATCHES_PER_INSTANCE }, (_, i) => batch(i % 2 ? b : a));
    const transfers = fx.units.flatMap((unit) => [relocate(a, unit._id, 'Mombasa'), relocate(b, unit._id, 'Kisumu')]);
    const [batches, moves] = await Promise.all([Promise.all(checkIns), Promise.all(transfers)]);
    expect(batches.map((r) => r.status)).toEqual(Array(2 * BATCHES_PER_INSTANCE).fill(200));
    // Two relocations of one unit at once: each is made, or refused by the unit's guard (409).
    expect(moves.every((r) => r.status === 201 || r.status === 409)).toBe(true);
    const made = moves.filter((r) => r.status === 201).map((r) => (r.body as { transfer: { id: string; unitId?: string } }).transfer.id);
    for (const unit of fx.units) sent.set(unit._id, 2 * BATCHES_PER_INSTANCE);

    // Folded by whichever instance holds the summariser's lease, whoever ingested.
    const units = mongoose.connection.db!.collection<{ _id: string; checkIns?: { count?: number }; transferIds?: string[] }>('units');
    const counts = async () => (await units.find({ _id: { $in: fx.units.map((u) => u._id) } }).toArray()).map((u) => u.checkIns?.count ?? 0);
    const folded = await until(async () => (await counts()).every((n) => n === 2 * BATCHES_PER_INSTANCE), 30_000);
    expect(await counts()).toEqual(Array(UNITS).fill(2 * BATCHES_PER_INSTANCE));
    expect(folded).toBe(true);

    const stores = createStores(await detectEngine(mongoose.connection));
    expect(made.length).toBeGreaterThanOrEqual(UNITS);
    for (const [i, unit] of fx.units.entries()) {
      const stored = (await units.findOne({ _id: unit._id }))!;
      // Every relocation made is kept beside the check-in summary written at the same time.
      const mine = [moves[2 * i]!, moves[2 * i + 1]!].filter((r) => r.status === 201).map((r) => (r.body as { transfer: { id: string } }).transfer.id);
      expect(mine.length).toBeGreaterThan(0);
      expect(new Set(stored.transferIds)).toEqual(new Set(mine));
      const runs = await stores.checkInHistory.runsOf(stored as never);
      expect(runs.reduce((n, run) => n + run.count, 0)).toBe(sent.get(unit._id));
    }
    const total = await mongoose.connection.db!.collection('checkins').countDocuments({ unitId: { $in: fx.units.map((u) => u._id) } });
    expect(total).toBe([...sent.values()].reduce((x, y) => x + y, 0));
  }, 90_000);

  it('lets exactly one instance make a guarded case transition and an assignment; the other gets 409', async () => {
    const lead = await makeStaff(ctx);
    const newcomer = await makeStaff(ctx);
    const { caseId } = await makeReportCase(ctx, { unitId: fx.units[0]!._id });
    expect((await call(`${a.url}/api/v1/cases/${caseId}/assignees`, { body: { userId: lead.actor.id }, headers: lead.auth })).status).toBe(200);

    const moves = await Promise.all(
      [a, b].map((srv, i) => call(`${srv.url}/api/v1/cases/${caseId}/transitions`, { body: { to: 'closed', reason: `closed through instance ${i}`, closureReason: 'duplicate' }, headers: lead.auth })),
    );
    // The loser either lost the guarded update (409) or, reading the case after the winner
    // closed it, was told a closed case cannot be closed (400 naming `to`): never two closings.
    const [won, lost] = moves.map((r) => r.status).sort();
    expect(won).toBe(200);
    expect([400, 409]).toContain(lost);
    const assignments = await Promise.all([a, b].map((srv) => call(`${srv.url}/api/v1/cases/${caseId}/assignees`, { body: { userId: newcomer.actor.id }, headers: lead.auth })));
    expect(assignments.map((r) => r.status).sort()).toEqual([200, 409]);

    const stored = (await mongoose.connection.db!.collection<{ _id: string; status: string; assigneeIds: unknown[]; history: Array<{ action: string }> }>('cases').findOne({ _id: caseId }))!;
    expect(stored.status).toBe('closed');
    expect(stored.history.filter((h) => h.action === 'status-changed')).toHaveLength(1);
    expect(stored.assigneeIds.map(String)).toEqual([lead.actor.id, newcomer.actor.id]);
  }, 30_000);

  it('holds the per-address report limit across both instances', async () => {
    const submit = async (srv: RunningServer) => {
      const challenge = await call(`${srv.url}/api/v1/reports/challenge`);
      const token = (challenge.body as { token: string }).token;
      return call(`${srv.url}/api/v1/reports`, { body: { ...reportFields(), challenge: token, pow: '0' } });
    };
    const results = await Promise.all(Array.from({ length: 2 * (REPORT_LIMIT + 1) }, (_, i) => submit(i % 2 ? b : a)));
    const accepted = results.filter((r) => r.status === 201).length;
    expect(results.every((r) => r.status === 201 || r.status === 429)).toBe(true);
    expect(accepted).toBe(REPORT_LIMIT);
  }, 30_000);

  it('runs each background job on one instance at a time, and nowhere else', async () => {
    const held = await leases();
    expect(held.map((l) => l._id).sort()).toEqual(['certificate-expiry', 'check-in-summaries', 'deadline-digest', 'epcis-captures', 'notification-mail', 'partner-diversion', 'partner-sales', 'report-links', 'retention', 'screening-rescreen', 'unclaimed-evidence', 'unit-tallies', 'webhook-deliveries']);
    for (const lease of held) {
      // Each change of holder is a new holder, from a later time than the one before.
      lease.history.slice(1).forEach((change, i) => {
        expect(change.holder).not.toBe(lease.history[i]!.holder);
        expect(change.from.getTime()).toBeGreaterThan(lease.history[i]!.from.getTime());
      });
      expect(lease.history.at(-1)!.holder).toBe(lease.holder);
    }
    // Both instances ingested; only the lease holder folded.
    const summariser = held.find((l) => l._id === 'check-in-summaries')!;
    const [holder, other] = holderPid(summariser.holder) === a.process.pid ? [a, b] : [b, a];
    expect(summariser.history).toHaveLength(1);
    expect(holder.process.output()).toContain('check-in summaries: folded');
    expect(other.process.output()).not.toContain('check-in summaries: folded');
  });

  it('moves the jobs to the survivor when their holder is killed, and the survivor folds what comes next', async () => {
    const summariser = (await leases()).find((l) => l._id === 'check-in-summaries')!;
    const [victim, survivor] = holderPid(summariser.holder) === a.process.pid ? [a, b] : [b, a];
    const runsEngine = childOf(victim.process.pid!, 'ferretdb-embedded') !== undefined;
    const killedAt = Date.now();
    victim.process.kill('SIGKILL');
    await exitOf(victim.process);

    // The database answers again (at once, or once the survivor took the engine over)…
    expect(await until(async () => (await call(`${survivor.url}/readyz`)).status === 200, 20_000)).toBe(true);
    const databaseBackMs = Date.now() - killedAt;
    // …and the leases, left unrenewed, pass to the survivor within a lease and a poll.
    // (A change of holder is written to the lease's history just after the takeover itself.)
    const takenOver = (l: Awaited<ReturnType<typeof leases>>[number]) => holderPid(l.holder) === survivor.process.pid && holderPid(l.history.at(-1)!.holder) === survivor.process.pid;
    expect(await until(async () => (await leases()).every(takenOver), 20_000)).toBe(true);
    const takeoverMs = Date.now() - killedAt;
    process.stdout.write(`failover: database back after ${databaseBackMs} ms (engine owner killed: ${runsEngine}), every job lease taken over after ${takeoverMs} ms\n`);
    expect(takeoverMs).toBeLessThan(databaseBackMs + 2 * LEASE_SECONDS * 1000);

    const lease = (await leases()).find((l) => l._id === 'check-in-summaries')!;
    expect(lease.history.map((h) => [holderPid(h.holder), h.reason])).toEqual([
      [victim.process.pid, 'first'],
      [survivor.process.pid, 'expired'],
    ]);

    const unit = fx.units[1]!;
    const before = sent.get(unit._id)!;
    const item = { serial: unit.serial, model: unit.modelId, firmware: '2.1.0', observedAt: new Date().toISOString(), country: 'KE', eventId: crypto.randomUUID() };
    expect((await call(`${survivor.url}/api/v1/check-ins/batch`, { body: { items: [item] }, headers: fx.apiKey })).status).toBe(200);
    const units = mongoose.connection.db!.collection<{ _id: string; checkIns?: { count?: number } }>('units');
    expect(await until(async () => (await units.findOne({ _id: unit._id }))?.checkIns?.count === before + 1, 10_000)).toBe(true);
    expect(survivor.process.output()).toContain('check-in summaries: folded');
  }, 60_000);
});

async function until(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return true;
    } catch {
      // the database is changing hands: look again
    }
    if (Date.now() > end) return false;
    await sleep(100);
  }
}
