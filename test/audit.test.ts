import request from 'supertest';
import { AuditEntry, AuditHead } from '../models/audit';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { entryHash, GENESIS_HASH } from '../server/services/audit';
import { createStores } from '../server/store';
import { makeReportCase, makeStaff } from './helpers/cases';
import { createTestContext, type TestContext } from './helpers/context';
import { apiUser, signedInAgent } from './helpers/factories';
import { exitOf, killSpawned, runTs } from './helpers/processes';

describe('tamper-evident audit log', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ RATE_LIMIT_LOGIN_PER_15MIN: '10000' });
    // A real chain: entries written by the case workflow, not by hand.
    const investigator = await makeStaff(ctx);
    for (let i = 0; i < 3; i++) {
      const { caseId } = await makeReportCase(ctx);
      await ctx.services.cases.assign(caseId, investigator.actor.id, investigator.actor);
      await ctx.services.cases.addNote(caseId, `note ${i}`, investigator.actor);
      await ctx.services.cases.transition(caseId, { to: 'closed', reason: 'test', closureReason: 'out-of-scope' }, investigator.actor);
    }
  });
  afterAll(() => ctx.close());
  afterEach(killSpawned);

  /** Changes the stored chain for one test, then puts it back exactly as it was. */
  async function withTampered(change: (seq: number) => Promise<unknown>, check: (seq: number) => Promise<void>) {
    const seq = 4;
    const original = await AuditEntry.findById(String(seq).padStart(12, '0')).lean();
    try {
      await change(seq);
      await check(seq);
    } finally {
      await AuditEntry.deleteOne({ _id: original!._id });
      await AuditEntry.collection.insertOne(original as never);
    }
  }

  /** `npm run audit:verify` against this test's database. */
  async function runVerifyScript() {
    const child = runTs('scripts/audit-verify.ts', [], {
      NODE_ENV: 'test',
      MONGODB_URI: process.env.MONGODB_URI,
      MONGODB_DB: ctx.config.databaseName,
      DATA_DIR: ctx.config.dataDir,
      JWT_SECRET: 'test-secret-test-secret-test-secret-0123',
      LOG_LEVEL: 'silent',
    });
    const code = await exitOf(child);
    return { code, output: child.output() };
  }

  it('links every entry to the previous one by hash, starting from the genesis hash', async () => {
    const entries = await AuditEntry.find({}).sort({ seq: 1 }).lean();
    expect(entries.length).toBeGreaterThanOrEqual(9); // assigned, note-added, status-changed × 3
    expect(entries[0]!.prevHash).toBe(GENESIS_HASH);
    entries.forEach((e, i) => {
      expect(e.seq).toBe(i + 1);
      if (i > 0) expect(e.prevHash).toBe(entries[i - 1]!.hash);
      expect(entryHash({ ...e, actorId: e.actorId ?? null })).toBe(e.hash);
    });
    expect(await AuditHead.findById('head').lean()).toMatchObject({ seq: entries.length, hash: entries.at(-1)!.hash });
  });

  it('verifies an intact chain: service, API, admin page and npm run audit:verify', async () => {
    const total = await AuditEntry.countDocuments({});
    expect(await ctx.services.audit.verify()).toEqual({ ok: true, checked: total, firstBroken: null });

    const admin = await apiUser(ctx, 'admin');
    const api = await request(ctx.app).post('/api/v1/audit/verify').set(admin.auth);
    expect(api.status).toBe(200);
    expect(api.body).toEqual({ ok: true, checked: await AuditEntry.countDocuments({}), firstBroken: null });

    const { agent } = await signedInAgent(ctx, 'admin');
    const page = await agent.form('/admin/audit/verify', {}, '/admin/audit');
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/The chain is intact: \d+ entries checked\./);

    const script = await runVerifyScript();
    expect(script.output).toMatch(/OK: the chain is intact \(\d+ entries\)/);
    expect(script.code).toBe(0);
  });

  it('names the first broken entry after a stored entry is edited in the database', async () => {
    await withTampered(
      (seq) => AuditEntry.updateOne({ seq }, { $set: { 'detail.detail': 'rewritten by an intruder' } }),
      async (seq) => {
        expect(await ctx.services.audit.verify()).toEqual({ ok: false, checked: seq - 1, firstBroken: { seq, reason: 'content does not match its hash (entry was changed)' } });
        const admin = await apiUser(ctx, 'admin');
        const api = await request(ctx.app).post('/api/v1/audit/verify').set(admin.auth);
        expect(api.body.firstBroken).toEqual({ seq, reason: 'content does not match its hash (entry was changed)' });
        const { agent } = await signedInAgent(ctx, 'admin');
        const page = await agent.form('/admin/audit/verify', {}, '/admin/audit');
        expect(page.text).toContain(`The chain is broken at entry <strong>#${seq}</strong>`);
        const script = await runVerifyScript();
        expect(script.output).toContain(`BROKEN at entry #${seq}: content does not match its hash`);
        expect(script.code).toBe(1);
      },
    );
    expect((await ctx.services.audit.verify()).ok).toBe(true);
  });

  it('notices an edit that also recomputes the entry’s own hash (the next link breaks)', async () => {
    await withTampered(
      async (seq) => {
        const e = (await AuditEntry.findOne({ seq }).lean())!;
        const forged = { ...e, actorId: e.actorId ?? null, action: 'case.note-added', detail: { forged: true } };
        await AuditEntry.updateOne({ seq }, { $set: { action: forged.action, detail: forged.detail, hash: entryHash(forged) } });
      },
      async (seq) => {
        expect((await ctx.services.audit.verify()).firstBroken).toEqual({ seq: seq + 1, reason: 'link to the previous entry is broken' });
      },
    );
  });

  it('names the entry after a deleted one', async () => {
    await withTampered(
      (seq) => AuditEntry.deleteOne({ seq }),
      async (seq) => {
        expect(await ctx.services.audit.verify()).toEqual({ ok: false, checked: seq - 1, firstBroken: { seq: seq + 1, reason: `sequence gap: expected ${seq}, found ${seq + 1}` } });
        const script = await runVerifyScript();
        expect(script.output).toContain(`BROKEN at entry #${seq + 1}: sequence gap`);
        expect(script.code).toBe(1);
      },
    );
  });

  it('lists entries newest first, paginated by sequence number', async () => {
    const admin = await apiUser(ctx, 'admin');
    const total = (await AuditHead.findById('head').lean())!.seq;
    const first = await request(ctx.app).get('/api/v1/audit?perPage=5').set(admin.auth);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ total, page: 1, perPage: 5 });
    expect(first.body.items.map((e: { seq: number }) => e.seq)).toEqual([total, total - 1, total - 2, total - 3, total - 4]);
    const last = await request(ctx.app).get(`/api/v1/audit?perPage=5&page=${Math.ceil(total / 5)}`).set(admin.auth);
    expect(last.body.items.at(-1).seq).toBe(1);
    const beyond = await request(ctx.app).get('/api/v1/audit?perPage=5&page=9999').set(admin.auth);
    expect(beyond.body.items).toEqual([]);
    const bad = await request(ctx.app).get('/api/v1/audit?perPage=500').set(admin.auth);
    expect(bad.status).toBe(400);
    expect(Object.keys(bad.body.error.fields)).toEqual(['perPage']);

    const { agent } = await signedInAgent(ctx, 'admin');
    const page = await agent.get('/admin/audit?perPage=3');
    expect(page.status).toBe(200);
    expect(page.text).toContain('case.status-changed');
    expect(page.text).toContain('Verify the chain now');
  });

  it('shows names and readable detail, filters by person, action and day, and keeps a bad filter typed', async () => {
    const named = await makeStaff(ctx);
    await ctx.services.auth.updateProfile(named.actor.id, { name: 'Wanjiru Kamau' });
    const { caseId } = await makeReportCase(ctx);
    await ctx.services.cases.assign(caseId, named.actor.id, named.actor);
    await ctx.services.cases.addNote(caseId, 'filtered note', named.actor);
    const { agent } = await signedInAgent(ctx, 'admin');

    const byActor = await agent.get(`/admin/audit?actor=${named.actor.id}`);
    expect(byActor.status).toBe(200);
    const rows = byActor.text.split('<tr>').slice(2);
    expect(rows).toHaveLength(2);
    expect(rows.every((r) => r.includes('Wanjiru Kamau'))).toBe(true);
    expect(byActor.text).not.toContain(`<td>user ${named.actor.id}`);
    expect(byActor.text).toMatch(/<dt>note id<\/dt><dd>note_[a-f0-9]+<\/dd>/);
    expect(byActor.text).not.toContain('{&#34;');

    const byAction = await agent.get(`/admin/audit?actor=${named.actor.id}&action=case.note-added`);
    expect(byAction.text.split('<tr>').slice(2)).toHaveLength(1);
    const today = ctx.clock.now().toISOString().slice(0, 10);
    expect((await agent.get(`/admin/audit?actor=${named.actor.id}&from=${today}&to=${today}`)).text.split('<tr>').slice(2)).toHaveLength(2);
    expect((await agent.get(`/admin/audit?actor=${named.actor.id}&to=2000-01-01`)).text).toContain('No entries match.');

    const bad = await agent.get('/admin/audit?from=yesterday&action=case.note-added');
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('From: use a date like 2026-03-31.');
    expect(bad.text).toContain('value="yesterday"');
    expect(bad.text).toContain('value="case.note-added"');
  });

  it('keeps one unbroken chain when two app instances append 50 entries at once', async () => {
    // A second set of services on the same database, as another app instance would have.
    const other = createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
    const before = (await AuditHead.findById('head').lean())!.seq;
    const seqs = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 ? other : ctx.services).audit.record({ actorKind: 'system', action: 'test.concurrent', subjectKind: 'test', subjectId: `w${i}` }),
      ),
    );
    expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => before + i + 1));
    const written = await AuditEntry.find({ action: 'test.concurrent' }).lean();
    expect(written.map((e) => e.subjectId).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `w${i}`).sort());
    expect(await ctx.services.audit.verify()).toEqual({ ok: true, checked: before + 50, firstBroken: null });
    expect(await AuditHead.findById('head').lean()).toMatchObject({ seq: before + 50 });
  });

  it('is for admins only', async () => {
    const investigator = await apiUser(ctx, 'investigator');
    const customer = await apiUser(ctx, 'customer');
    for (const [method, path] of [['get', '/api/v1/audit'], ['post', '/api/v1/audit/verify']] as const) {
      expect((await request(ctx.app)[method](path)).status).toBe(401);
      expect((await request(ctx.app)[method](path).set(investigator.auth)).status).toBe(403);
      expect((await request(ctx.app)[method](path).set(customer.auth)).status).toBe(403);
    }
    const inv = await signedInAgent(ctx, 'investigator');
    expect((await inv.agent.get('/admin/audit')).status).toBe(403);
    expect((await inv.agent.form('/admin/audit/verify', {}, '/account')).status).toBe(403);
    expect((await request(ctx.app).get('/admin/audit')).status).toBe(303);
  });
});
