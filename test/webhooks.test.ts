import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import request from 'supertest';
import mongoose from 'mongoose';
import { WebhookDelivery, WebhookDeliveryDue, WebhookSubscription } from '../models/webhooks';
import { WEBHOOK_EVENT_TYPES } from '../server/domain/webhooks';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createStores } from '../server/store';
import { noteCaseChanged, RECENT_CASE_CHANGES } from '../server/store/case-queue';
import { runMigrations } from '../server/store/migrations';
import { createTestContext, type TestContext } from './helpers/context';
import { freshAuth, makeFlagCase, makeStaff, triageFields } from './helpers/cases';
import { makeRegistration } from './helpers/catalogue';
import { apiUser, signedInAgent } from './helpers/factories';
import { fileReport } from './helpers/reports';
import { capture, countryLocation, epcisDocument, epcisKey, makeGtinUnit, objectEvent } from './helpers/epcis';
import { schemaErrors } from '../server/services/epcis/validation';

/** The README's verification snippet, as a receiver would paste it. */
function readmeVerifier(): (secret: string, headers: Record<string, string>, body: string, nowSeconds?: number) => boolean {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  const code = /<!-- webhook-verify-snippet -->\s*```js\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!code) throw new Error('README has no webhook verification snippet');
  return new Function('require', `${code}\nreturn verifyWebhook;`)(require);
}
const verify = readmeVerifier();

interface Received {
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** A real HTTP receiver on loopback: `/ok…` answers 204, `/flaky` 500 three times then 200, `/silent` never answers. */
async function startReceiver() {
  const received: Received[] = [];
  const hanging: http.ServerResponse[] = [];
  let flaky = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      received.push({ path: req.url!, headers: req.headers as Record<string, string>, body });
      if (req.url === '/silent') return void hanging.push(res);
      if (req.url === '/flaky') return void res.writeHead(++flaky <= 3 ? 500 : 200).end();
      res.writeHead(req.url!.startsWith('/ok') ? 204 : 404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    received,
    url: (p: string) => `${base}${p}`,
    close: () => new Promise<void>((resolve) => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe('webhooks', () => {
  let ctx: TestContext;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let admin: Awaited<ReturnType<typeof apiUser>>;
  beforeAll(async () => {
    // The receiver runs on loopback: allowed explicitly, as an admin would allow an intranet.
    // Long enough for a loopback answer on a loaded machine (a delivery timed out at 300 ms is
    // retried hours later on the test clock, and a test waiting for it fails); short enough for
    // the receiver that never answers.
    ctx = await createTestContext({ WEBHOOK_ALLOWED_PRIVATE_TARGETS: '127.0.0.1/32', WEBHOOK_TIMEOUT_MS: '1000', RESTRICTED_COUNTRIES: 'KP' });
    receiver = await startReceiver();
    admin = await apiUser(ctx, 'admin');
  });
  afterAll(async () => {
    await receiver.close();
    await ctx.close();
  });

  /** The admin's header, fresh: tests move the clock past a session's lifetime. */
  const asAdmin = () => freshAuth(ctx, admin.user);
  const subscribe = async (url: string, eventTypes: readonly string[]) => request(ctx.app).post('/api/v1/webhooks').set(await asAdmin()).send({ url, eventTypes, description: 'ticketing' });
  /** Runs the delivery job until nothing is due now. */
  const deliver = async () => {
    while (await ctx.services.webhooks.deliverDue());
  };
  const deliveriesOf = async (id: string) => (await request(ctx.app).get(`/api/v1/webhooks/${id}/deliveries`).set(await asAdmin())).body.items as Array<{ id: string; type: string; status: string; attemptCount: number; lastResponseCode: number | null; lastError: string | null; attempts: Array<{ responseCode: number | null }> }>;

  it('delivers every event type, each signed so that the README snippet verifies it', async () => {
    const created = await subscribe(receiver.url('/ok/all'), WEBHOOK_EVENT_TYPES);
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^whsec_/);
    expect(created.body.subscription).toMatchObject({ url: receiver.url('/ok/all'), eventTypes: [...WEBHOOK_EVENT_TYPES], active: true });
    expect(JSON.stringify(created.body.subscription)).not.toContain(created.body.secret);
    const secret = created.body.secret as string;

    // A flag opens a case (flag.raised, case.opened); the case moves and closes; leverage withholds and restores updates.
    const investigator = await makeStaff(ctx, 'admin');
    // A high-risk model: its relocations wait for a decision.
    const { unit, user } = await makeRegistration(ctx, { riskLevel: 'high' });
    const { caseId } = await makeFlagCase(ctx, { unitId: unit._id, modelId: unit.modelId });
    await ctx.services.cases.triage(caseId, triageFields(), investigator.actor);
    await ctx.services.cases.transition(caseId, { to: 'investigating', reason: 'Looking into it' }, investigator.actor);
    const actionId = await ctx.services.cases.addAction(caseId, { kind: 'withhold-updates', unitIds: [unit._id] }, investigator.actor);
    await ctx.services.cases.updateAction(caseId, actionId, { status: 'lifted', outcome: 'Customer complied' }, investigator.actor);
    await ctx.services.cases.transition(caseId, { to: 'closed', reason: 'Resolved', closureReason: 'substantiated' }, investigator.actor);
    // A transfer decided, and a report received through the public API.
    const { transfer } = await ctx.services.registrations.requestTransfer(unit._id, { kind: 'relocation', country: 'TZ', reason: 'New site', effectiveDate: ctx.clock.now() }, String(user._id));
    await ctx.services.registrations.decideTransfer(transfer._id, 'approve', 'Same customer.', String(admin.user._id));
    const filed = await fileReport(ctx, { description: 'A secret detail only investigators may read.' });
    expect(filed.status).toBe(201);

    await deliver();
    const got = receiver.received.filter((r) => r.path === '/ok/all');
    expect(new Set(got.map((r) => JSON.parse(r.body).type))).toEqual(new Set(WEBHOOK_EVENT_TYPES));
    for (const r of got) {
      expect(r.headers['content-type']).toBe('application/json');
      expect(verify(secret, r.headers, r.body, ctx.clock.now().getTime() / 1000)).toBe(true);
      // Tampering with the body, or another secret, fails the check.
      expect(verify(secret, r.headers, r.body.replace('"data"', '"dat\\u0061"'), ctx.clock.now().getTime() / 1000)).toBe(false);
      expect(verify('whsec_' + Buffer.from('another secret').toString('base64'), r.headers, r.body, ctx.clock.now().getTime() / 1000)).toBe(false);
    }
    const byType = new Map(got.map((r) => [JSON.parse(r.body).type as string, JSON.parse(r.body) as { timestamp: string; data: Record<string, unknown> }]));
    expect(byType.get('case.closed')!.data).toMatchObject({ caseId, closureReason: 'substantiated' });
    expect(byType.get('leverage.updates_withheld')!.data).toMatchObject({ caseId, actionId, unitIds: [unit._id] });
    expect(byType.get('transfer.decided')!.data).toMatchObject({ transferId: transfer._id, decision: 'approved' });
    // The report's webhook says which case and when, nothing the reporter wrote.
    expect(Object.keys(byType.get('report.received')!.data).sort()).toEqual(['caseId', 'receivedAt']);
    expect(got.some((r) => r.body.includes('secret detail'))).toBe(false);

    const log = await deliveriesOf(created.body.subscription.id);
    expect(log.length).toBe(got.length);
    expect(log.every((d) => d.status === 'delivered' && d.attemptCount === 1 && d.lastResponseCode === 204)).toBe(true);
    // Delivered once: another run sends nothing again.
    await deliver();
    expect(receiver.received.filter((r) => r.path === '/ok/all')).toHaveLength(got.length);
  });

  it('pushes the new captured events an EPCIS query subscription matches, once, signed', async () => {
    const { sgtin, digitalLink } = await makeGtinUnit(ctx);
    const other = await makeGtinUnit(ctx);
    const epcisQuery = { EQ_bizStep: ['shipping'], MATCH_epc: [sgtin] };
    const created = await request(ctx.app).post('/api/v1/webhooks').set(await asAdmin()).send({ url: receiver.url('/ok/epcis-query'), description: 'ERP', epcisQuery });
    expect(created.status).toBe(201);
    expect(created.body.subscription).toMatchObject({ eventTypes: [], epcisQuery: { ...epcisQuery, eventType: [], MATCH_anyEPC: [], EQ_bizLocation: [] } });
    const bad = await request(ctx.app).post('/api/v1/webhooks').set(await asAdmin()).send({ url: receiver.url('/ok/x'), epcisQuery: { EQ_bizStep: 'shipping' } });
    expect(bad.status).toBe(400);
    expect(Object.keys(bad.body.error.fields)).toEqual(['epcisQuery.EQ_bizStep']);

    // The unit shipped (named by its Digital Link: the same unit) and inspected; another unit shipped.
    const key = await epcisKey(ctx);
    const shipped = objectEvent({ epcList: [digitalLink], bizStep: 'shipping', destinationList: [{ type: 'location', destination: countryLocation('UG') }] });
    const seen = objectEvent({ epcList: [sgtin], bizStep: 'inspecting', disposition: 'active' });
    const elsewhere = objectEvent({ epcList: [other.sgtin], bizStep: 'shipping' });
    const doc = epcisDocument([shipped, seen, elsewhere]);
    expect((await capture(ctx, key.auth, doc)).job!.body.success).toBe(true);
    await deliver();

    const got = receiver.received.filter((r) => r.path === '/ok/epcis-query');
    expect(got).toHaveLength(1);
    expect(verify(created.body.secret, got[0]!.headers, got[0]!.body, ctx.clock.now().getTime() / 1000)).toBe(true);
    const pushed = JSON.parse(got[0]!.body) as { type: string; data: { type: string; epcisBody: { queryResults: { subscriptionID: string; resultsBody: { eventList: Array<{ eventID: string }> } } } } };
    expect(pushed.type).toBe('epcis.events');
    expect(pushed.data.type).toBe('EPCISQueryDocument');
    expect(schemaErrors(pushed.data)).toEqual([]);
    expect(pushed.data.epcisBody.queryResults.subscriptionID).toBe(created.body.subscription.id);
    expect(pushed.data.epcisBody.queryResults.resultsBody.eventList.map((e) => e.eventID)).toEqual([shipped.eventID]);
    expect(await deliveriesOf(created.body.subscription.id)).toEqual([expect.objectContaining({ type: 'epcis.events', status: 'delivered', lastResponseCode: 204 })]);
    // Only its subscriber gets it: the subscription to every event type heard nothing of it.
    expect(receiver.received.filter((r) => r.body.includes(shipped.eventID))).toHaveLength(1);

    // The same events captured again are not new: nothing more is pushed.
    await capture(ctx, key.auth, doc);
    await deliver();
    expect(receiver.received.filter((r) => r.path === '/ok/epcis-query')).toHaveLength(1);
  });

  it('delivers on the fourth try to a receiver that answers 500 three times, backing off between tries', async () => {
    const { body } = await subscribe(receiver.url('/flaky'), ['flag.raised']);
    await ctx.services.webhooks.emit('flag.raised', 'test-flaky', { flagId: 'flg_test' });
    const gaps: number[] = [];
    for (let i = 0; i < 4; i++) {
      await deliver();
      const [d] = await deliveriesOf(body.subscription.id);
      if (d!.status === 'delivered') break;
      const next = (await WebhookDelivery.findById(d!.id).lean())!.nextAttemptAt!;
      gaps.push(next.getTime() - ctx.clock.now().getTime());
      ctx.clock.advance(next.getTime() - ctx.clock.now().getTime());
    }
    expect(gaps).toEqual([30_000, 60_000, 120_000]);
    const [d] = await deliveriesOf(body.subscription.id);
    expect(d).toMatchObject({ status: 'delivered', attemptCount: 4, lastResponseCode: 200 });
    expect(d!.attempts.map((a) => a.responseCode)).toEqual([500, 500, 500, 200]);
  });

  it('attempts a delivery queued by an earlier version once npm run migrate put it on the due list', async () => {
    const { body } = await subscribe(receiver.url('/ok/older'), ['flag.raised']);
    await ctx.services.webhooks.emit('flag.raised', 'test-older', { flagId: 'flg_older' });
    await ctx.services.webhooks.deliverDue();
    const [queued] = await deliveriesOf(body.subscription.id);
    expect(queued).toMatchObject({ status: 'delivered' });
    // The same delivery as an earlier version left it: pending, with nothing but the delivery saying so.
    await WebhookDelivery.updateOne({ _id: queued!.id }, { $set: { status: 'pending', nextAttemptAt: ctx.clock.now() } });
    await WebhookDeliveryDue.deleteOne({ _id: queued!.id });
    await deliver();
    expect((await deliveriesOf(body.subscription.id))[0]).toMatchObject({ status: 'pending', attemptCount: 1 });

    await mongoose.connection.collection('migrations').deleteOne({ _id: '007-webhook-deliveries-due' as never });
    await runMigrations(ctx.db.engine);
    await deliver();
    expect((await deliveriesOf(body.subscription.id))[0]).toMatchObject({ status: 'delivered', attemptCount: 2 });
    expect(receiver.received.filter((r) => r.path === '/ok/older')).toHaveLength(2);
  });

  it('dead-letters a delivery to a receiver that never answers once the retry window has passed, and retries it on request', async () => {
    const { body } = await subscribe(receiver.url('/silent'), ['case.opened']);
    await ctx.services.webhooks.emit('case.opened', 'test-silent', { caseId: 'C-2026-999999' });
    const start = ctx.clock.now().getTime();
    let [d] = [undefined as undefined | Awaited<ReturnType<typeof deliveriesOf>>[number]];
    for (let i = 0; i < 40; i++) {
      await deliver();
      [d] = await deliveriesOf(body.subscription.id);
      if (d!.status === 'dead') break;
      ctx.clock.advance(4 * 3_600_000);
    }
    expect(d).toMatchObject({ status: 'dead', lastResponseCode: null, lastError: 'no answer within 1000 ms' });
    expect(ctx.clock.now().getTime() - start).toBeGreaterThanOrEqual(20 * 3_600_000);
    expect(ctx.clock.now().getTime() - start).toBeLessThanOrEqual(28 * 3_600_000);
    // Dead: no more attempts…
    const attempts = d!.attemptCount;
    ctx.clock.advance(24 * 3_600_000);
    await deliver();
    expect((await deliveriesOf(body.subscription.id))[0]!.attemptCount).toBe(attempts);
    // …until an admin retries it (here to a receiver that now answers).
    await WebhookSubscription.updateOne({ _id: body.subscription.id }, { $set: { url: receiver.url('/ok/retried') } });
    const retried = await request(ctx.app).post(`/api/v1/webhooks/${body.subscription.id}/deliveries/${encodeURIComponent(d!.id)}/retry`).set(await asAdmin());
    expect(retried.status).toBe(200);
    expect(retried.body.delivery).toMatchObject({ status: 'pending' });
    await deliver();
    expect((await deliveriesOf(body.subscription.id))[0]).toMatchObject({ status: 'delivered', attemptCount: attempts + 1 });
    expect((await request(ctx.app).post(`/api/v1/webhooks/${body.subscription.id}/deliveries/${encodeURIComponent(d!.id)}/retry`).set(await asAdmin())).status).toBe(409);
  });

  it('delivers the events of case changes made by a process that died right after writing them', async () => {
    const { body } = await subscribe(receiver.url('/ok/crash'), ['case.opened', 'flag.raised', 'case.status_changed', 'leverage.action_added', 'leverage.updates_withheld']);
    const investigator = await makeStaff(ctx, 'admin');
    const { unit } = await makeRegistration(ctx);
    // Another instance whose process dies as soon as the case is written: the next write (the
    // flag's own record, the audit entry) never happens, nor anything after it.
    const stores = createStores(ctx.db.engine);
    const died = async () => {
      throw new Error('the process died');
    };
    const dying = createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: { ...stores, audit: { ...stores.audit, head: died as never }, flags: { ...stores.flags, insertFlags: died } } });
    const hit = { rule: 'restricted-country' as const, evidence: { country: 'KP' } };
    await expect(dying.flags.raise(hit, { unitId: unit._id, modelId: unit.modelId, country: 'KP' }, { kind: 'check-in', id: 'chk-crash' })).rejects.toThrow('the process died');
    const [caseId] = (await ctx.services.cases.casesOfUnit(unit._id, investigator.actor)).map((c) => c._id);
    expect(caseId).toBeDefined();
    await ctx.services.cases.triage(caseId!, triageFields(), investigator.actor);
    await expect(dying.cases.transition(caseId!, { to: 'investigating', reason: 'Looking into it' }, investigator.actor)).rejects.toThrow('the process died');
    await expect(dying.cases.addAction(caseId!, { kind: 'withhold-updates', unitIds: [unit._id] }, investigator.actor)).rejects.toThrow('the process died');
    // The changes were made…
    expect((await ctx.services.cases.getCase(caseId!)).status).toBe('investigating');

    // …and their events are delivered by any instance's delivery job, each once.
    await deliver();
    await deliver();
    const got = receiver.received.filter((r) => r.path === '/ok/crash').map((r) => JSON.parse(r.body) as { type: string; data: Record<string, unknown> });
    expect(got.map((e) => e.type).sort()).toEqual(['case.opened', 'case.status_changed', 'flag.raised', 'leverage.action_added', 'leverage.updates_withheld']);
    expect(got.every((e) => e.data.caseId === caseId)).toBe(true);
    expect(got.find((e) => e.type === 'case.status_changed')!.data).toMatchObject({ from: 'triaged', to: 'investigating' });
    expect((await deliveriesOf(body.subscription.id)).every((d) => d.status === 'delivered')).toBe(true);
  });

  it('delivers the events of a case change made while more cases changed than the change log keeps', async () => {
    await subscribe(receiver.url('/ok/behind'), ['case.opened']);
    await deliver();
    const { unit } = await makeRegistration(ctx);
    const { caseId } = await makeFlagCase(ctx, { unitId: unit._id, modelId: unit.modelId });
    // Other cases changed since, past the log's window: the job cannot list what changed and reads all.
    await noteCaseChanged(Array.from({ length: RECENT_CASE_CHANGES + 1 }, (_, n) => `C-1999-${String(n).padStart(6, '0')}`));
    await deliver();
    const opened = receiver.received.filter((r) => r.path === '/ok/behind').map((r) => JSON.parse(r.body) as { type: string; data: { caseId: string } });
    expect(opened.map((e) => [e.type, e.data.caseId])).toEqual([['case.opened', caseId]]);
  }, 60_000);

  it('refuses private, loopback, link-local and metadata targets that are not allowed', async () => {
    for (const url of ['http://10.0.0.5/hook', 'http://127.0.0.2/hook', 'http://169.254.169.254/latest/meta-data', 'http://[::1]/hook', 'http://192.168.1.10/hook', 'ftp://example.org/hook']) {
      const res = await subscribe(url, ['case.opened']);
      expect(res.status).toBe(400);
      expect(res.body.error.fields.url).toBeTruthy();
    }
    expect((await subscribe(receiver.url('/ok'), [])).body.error.fields).toHaveProperty('eventTypes');
  });

  it('refuses at delivery time too: an instance that does not allow loopback does not send', async () => {
    // A second instance on the same database, configured without the loopback allowance.
    const config = { ...ctx.config, webhooks: { ...ctx.config.webhooks, allowedPrivateTargets: [] } };
    const strict = createServices({ config, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
    const { body } = await subscribe(receiver.url('/ok/strict'), ['flag.raised']);
    await ctx.services.webhooks.emit('flag.raised', 'test-strict', { flagId: 'flg_strict' });
    const before = receiver.received.length;
    while (await strict.webhooks.deliverDue());
    expect(receiver.received.length).toBe(before);
    const [d] = await deliveriesOf(body.subscription.id);
    expect(d).toMatchObject({ status: 'pending', attemptCount: 1, lastResponseCode: null });
    expect(d!.lastError).toMatch(/^refused: 127\.0\.0\.1 resolves to 127\.0\.0\.1/);
  });

  it('rotates a secret with an overlap: both sign until the old one expires', async () => {
    const created = await subscribe(receiver.url('/ok/rotation'), ['flag.raised']);
    const id = created.body.subscription.id as string;
    const rotated = await request(ctx.app).post(`/api/v1/webhooks/${id}/rotate-secret`).set(await asAdmin()).send({ overlapHours: 2 });
    expect(rotated.status).toBe(200);
    const [oldSecret, newSecret] = [created.body.secret as string, rotated.body.secret as string];
    expect(newSecret).not.toBe(oldSecret);
    const sendOne = async (key: string) => {
      await ctx.services.webhooks.emit('flag.raised', key, { flagId: key });
      await deliver();
      return receiver.received.filter((r) => r.path === '/ok/rotation').find((r) => JSON.parse(r.body).data.flagId === key)!;
    };
    const during = await sendOne('rotation-during');
    const now = () => ctx.clock.now().getTime() / 1000;
    expect(verify(oldSecret, during.headers, during.body, now())).toBe(true);
    expect(verify(newSecret, during.headers, during.body, now())).toBe(true);
    ctx.clock.advance(2 * 3_600_000 + 1);
    const after = await sendOne('rotation-after');
    expect(verify(oldSecret, after.headers, after.body, now())).toBe(false);
    expect(verify(newSecret, after.headers, after.body, now())).toBe(true);
    expect((await request(ctx.app).post(`/api/v1/webhooks/${id}/rotate-secret`).set(await asAdmin()).send({ overlapHours: 500 })).body.error.fields).toHaveProperty('overlapHours');
  });

  it('is for admins only', async () => {
    const investigator = await apiUser(ctx, 'investigator');
    expect((await request(ctx.app).get('/api/v1/webhooks').set(investigator.auth)).status).toBe(403);
    expect((await request(ctx.app).get('/api/v1/webhooks')).status).toBe(401);
  });

  it('has admin pages: a form that keeps what was typed, the secret shown once, the delivery log', async () => {
    const { agent } = await signedInAgent(ctx, 'admin');
    const bad = await agent.form('/admin/webhooks', { url: 'http://10.1.2.3/hook', eventTypes: 'case.opened', description: 'Intranet tickets' }, '/admin/webhooks');
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('value="http://10.1.2.3/hook"');
    expect(bad.text).toContain('private, loopback, link-local or metadata address');
    expect(bad.text).toMatch(/<a href="#f-url">URL: [^<]*private, loopback/);
    const made = await agent.form('/admin/webhooks', { url: receiver.url('/ok/page'), eventTypes: ['case.opened', 'flag.raised'], description: 'Ticketing' }, '/admin/webhooks');
    expect(made.status).toBe(201);
    const secret = /whsec_[A-Za-z0-9+/=]+/.exec(made.text)?.[0];
    expect(secret).toBeTruthy();
    const id = /\/admin\/webhooks\/(whs_[0-9a-f]{20})/.exec(made.text)![1]!;
    const page = await agent.get(`/admin/webhooks/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).not.toContain(secret!);
    expect(page.text).toContain('No deliveries yet');
    await ctx.services.webhooks.emit('case.opened', 'page-test', { caseId: 'C-2026-000777' });
    await deliver();
    const logged = await agent.get(`/admin/webhooks/${id}`);
    expect(logged.text).toContain('delivered');
    expect(logged.text).toContain('204');
  });

  it('asks for confirmation before removing a subscription, and removes it only from the confirmation page', async () => {
    const { agent, user } = await signedInAgent(ctx, 'admin');
    const { subscription } = await ctx.services.webhooks.subscribe({ url: receiver.url('/ok/removed'), eventTypes: ['case.opened'], description: 'Old ticketing' }, { userId: String(user._id) });
    const page = await agent.get(`/admin/webhooks/${subscription.id}`);
    expect(page.text).toContain(`href="/admin/webhooks/${subscription.id}/remove"`);
    expect(page.text).not.toContain(`action="/admin/webhooks/${subscription.id}/remove"`);

    const confirm = await agent.get(`/admin/webhooks/${subscription.id}/remove`);
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain(receiver.url('/ok/removed'));
    expect(confirm.text).toContain(`action="/admin/webhooks/${subscription.id}/remove"`);
    expect((await WebhookSubscription.findById(subscription.id).lean())!.active).toBe(true);

    const removed = await agent.form(`/admin/webhooks/${subscription.id}/remove`, {}, `/admin/webhooks/${subscription.id}/remove`);
    expect(removed.status).toBe(303);
    expect(removed.headers.location).toBe('/admin/webhooks');
    expect((await WebhookSubscription.findById(subscription.id).lean())!.active).toBe(false);
    expect((await agent.get(`/admin/webhooks/${subscription.id}/remove`)).text).toContain('was already removed');
  });
});
