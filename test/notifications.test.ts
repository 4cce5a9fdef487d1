import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { createApp } from '../server/app';
import { createTestClock } from '../server/clock';
import { loadConfig } from '../server/config';
import { createLogger } from '../server/logger';
import request from 'supertest';
import { mailSender, outboxDir } from '../server/services/notifications/mail';
import { createReceiptHasher } from '../server/services/reports';
import { createTestContext, testEnv, type TestContext } from './helpers/context';
import { User } from '../models/auth';
import { NotificationInbox, QueuedMail } from '../models/notifications';
import { makeFlagCase, makeReportCase, makeStaff } from './helpers/cases';
import { makeRegistration } from './helpers/catalogue';
import { apiUser, csrfFrom, makeUser, signedInAgent } from './helpers/factories';
import { digitsOf, fileReport } from './helpers/reports';
import { outbox, startMailServer } from './helpers/mail';

const madeDirs: string[] = [];
afterAll(() => madeDirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

/** The mail sender on its own configuration (no database: it stores nothing). */
function notificationsWith(env: Record<string, string>) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-mail-'));
  madeDirs.push(dataDir);
  const config = loadConfig(testEnv({ DATA_DIR: dataDir, ...env }));
  return { config, dataDir, notifications: mailSender({ config, clock: createTestClock(), logger: createLogger('silent') }) };
}

// One database for the file (the connection is shared); the SMTP tests run a second instance on it.
let base: TestContext;
beforeAll(async () => {
  base = await createTestContext();
});
afterAll(() => base.close());

describe('notifications by e-mail', () => {
  let ctx: TestContext;
  beforeAll(() => {
    ctx = base;
  });

  it('writes each message to DATA_DIR/outbox, readable only by the portal account, when no SMTP_URL is set', async () => {
    expect(ctx.config.mail.smtpUrl).toBeNull();
    const sent = await ctx.services.notifications.sendMail({ to: 'holder@example.test', subject: 'A notice', text: 'Hello.\nSomething happened.' });
    expect(sent).toBe(true);
    const [mail] = outbox(ctx).filter((m) => m.to.includes('holder@example.test'));
    expect(mail).toMatchObject({ subject: 'A notice' });
    expect(mail!.text).toContain('Something happened.');
    expect(fs.statSync(mail!.file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(outboxDir(ctx.config)).mode & 0o777).toBe(0o700);
    expect(fs.readFileSync(mail!.file, 'utf8')).toMatch(/^From: Downstream <no-reply@downstream\.invalid>$/m);
  });

  it("keeps a reporter's address out of DATA_DIR: without SMTP, the news mail's outbox copy names no recipient", async () => {
    const reporterEmail = `sealed-${crypto.randomBytes(4).toString('hex')}@example.test`;
    expect(await ctx.services.notifications.tellReporterOfNews(reporterEmail)).toBe(true);
    const written = outbox(ctx).filter((m) => m.subject === 'There is news about your report');
    expect(written.length).toBeGreaterThan(0);
    for (const file of fs.readdirSync(outboxDir(ctx.config))) expect(fs.readFileSync(path.join(outboxDir(ctx.config), file), 'utf8')).not.toContain(reporterEmail);
  });

  it('sends through the SMTP server named by SMTP_URL, and writes nothing to the outbox', async () => {
    const received: Array<{ from: string; to: string[]; data: string }> = [];
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData(stream, session, done) {
        let data = '';
        stream.on('data', (chunk: Buffer) => (data += chunk.toString('utf8')));
        stream.on('end', () => {
          received.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), data });
          done();
        });
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.server.address() as AddressInfo;
      const { notifications, config } = notificationsWith({ SMTP_URL: `smtp://127.0.0.1:${port}`, MAIL_FROM: 'Downstream <portal@downstream.example>' });
      expect(await notifications.sendMail({ to: 'owner@example.test', subject: 'Someone tried to register your unit SN-1', text: 'It stays registered to you.' })).toBe(true);
      expect(received).toHaveLength(1);
      expect(received[0]).toMatchObject({ from: 'portal@downstream.example', to: ['owner@example.test'] });
      expect(received[0]!.data).toMatch(/^Subject: Someone tried to register your unit SN-1$/m);
      expect(received[0]!.data).toContain('It stays registered to you.');
      expect(fs.existsSync(outboxDir(config))).toBe(false);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('reports a mail server that cannot be reached as not sent, without throwing at its caller', async () => {
    // A port nobody listens on: the connection is refused at once.
    const closed = new SMTPServer({ authOptional: true, disabledCommands: ['STARTTLS'], logger: false });
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.server.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const { notifications } = notificationsWith({ SMTP_URL: `smtp://127.0.0.1:${port}` });
    await expect(notifications.sendMail({ to: 'x@example.test', subject: 'Lost', text: 'Never arrives.' })).resolves.toBe(false);
  });

  it('refuses an SMTP_URL that is not smtp:// or smtps://, naming the variable', () => {
    expect(() => loadConfig(testEnv({ SMTP_URL: 'http://mail.example.org' }))).toThrow(/SMTP_URL: must start with smtp:\/\/ or smtps:\/\//);
    expect(() => loadConfig(testEnv({ IDENTITY_CUSTODIAN_EMAILS: 'a@example.test, not-an-address' }))).toThrow(/IDENTITY_CUSTODIAN_EMAILS/);
    expect(loadConfig(testEnv({ IDENTITY_CUSTODIAN_EMAILS: ' A@Example.test ,b@example.test' })).identity).toEqual({ custodianEmails: ['a@example.test', 'b@example.test'], grantHours: 24 });
  });

  it('shows admins the mails written to the outbox, newest first, each readable, and nobody else', async () => {
    await ctx.services.notifications.sendMail({ to: 'first@example.test', subject: 'First in the outbox', text: 'Older message.' });
    ctx.clock.advance(60_000);
    await ctx.services.notifications.sendMail({ to: 'second@example.test', subject: 'Second in the outbox', text: 'Newer message, with a link https://portal.example/x' });
    const admin = await signedInAgent(ctx, 'admin');
    const list = await admin.agent.get('/admin/outbox?perPage=200');
    expect(list.status).toBe(200);
    expect(list.text).toContain('No SMTP server is configured');
    expect(list.text.indexOf('Second in the outbox')).toBeLessThan(list.text.indexOf('First in the outbox'));
    const id = new RegExp('href="/admin/outbox/([^"]+)">Second in the outbox').exec(list.text)![1]!;
    const one = await admin.agent.get(`/admin/outbox/${id}`);
    expect(one.status).toBe(200);
    expect(one.text).toContain('second@example.test');
    expect(one.text).toContain('Newer message, with a link https://portal.example/x');
    expect((await admin.agent.get('/admin/outbox/..%2F..%2Fetc%2Fpasswd')).status).toBe(404);
    expect((await admin.agent.get('/admin/outbox?page=0')).status).toBe(400);

    const investigator = await signedInAgent(ctx, 'investigator');
    expect((await investigator.agent.get('/admin/outbox')).status).toBe(403);
    expect((await investigator.agent.get(`/admin/outbox/${id}`)).status).toBe(403);
  });

  it('answers /favicon.ico with the portal\'s icon', async () => {
    const res = await request(ctx.app).get('/favicon.ico');
    expect(res.status).toBe(301);
    expect(res.headers.location).toBe('/static/favicon.svg');
    expect((await request(ctx.app).get('/static/favicon.svg')).status).toBe(200);
  });
});

describe('notices, delivered to a real SMTP server', () => {
  let ctx: TestContext;
  let mail: Awaited<ReturnType<typeof startMailServer>>;
  /** Another instance of the portal on the same database, sending through `smtpUrl`. */
  const instanceWith = (smtpUrl: string): TestContext => {
    const config = { ...base.config, mail: { ...base.config.mail, smtpUrl } };
    const app = createApp({ config, db: base.db, clock: base.clock, logger: createLogger('silent') });
    return { ...base, app, config, services: app.locals.services };
  };
  beforeAll(async () => {
    mail = await startMailServer();
    ctx = instanceWith(mail.url);
  });
  afterAll(() => mail.close());

  /** The delivery job's run: queued mail goes out. */
  const deliver = () => ctx.services.notifications.deliverMail();
  const noticesOf = async (userId: unknown) => (await NotificationInbox.findById(String(userId)).lean())?.notices ?? [];
  const reportIdOf = (receipt: string) => createReceiptHasher(ctx.config.jwt.secret)(digitsOf(receipt));
  const caseOfReport = async (receipt: string) => (await ctx.services.reports.getReportForStaff(await reportIdOf(receipt))).caseId!;

  it('mails the person a case is assigned to, unless they assigned themselves or turned it off; the notice stays in the portal', async () => {
    const lead = await makeStaff(ctx);
    const colleague = await makeStaff(ctx);
    const { caseId } = await makeReportCase(ctx);
    await ctx.services.cases.assign(caseId, lead.actor.id, lead.actor);
    await ctx.services.cases.assign(caseId, colleague.actor.id, lead.actor);
    await deliver();
    expect(mail.to(lead.email).filter((m) => m.subject.includes('assigned'))).toHaveLength(0);
    const [assigned, ...more] = mail.to(colleague.email).filter((m) => m.subject.includes('assigned'));
    expect(more).toHaveLength(0);
    expect(assigned!.subject).toBe(`Case ${caseId} is assigned to you`);
    expect(assigned!.text).toContain(`${ctx.config.mail.publicUrl}/cases/${caseId}`);
    expect(assigned!.text).not.toContain('clinic');
    expect(await QueuedMail.countDocuments({ to: colleague.email })).toBe(0);

    const quiet = await signedInAgent(ctx, 'investigator');
    expect((await quiet.agent.form('/account/notifications', { deadlineDigest: 'on' }, '/account')).status).toBe(303);
    expect((await User.findById(quiet.user._id).lean())!.notifications).toMatchObject({ caseAssigned: false, deadlineDigest: true });
    await ctx.services.cases.assign(caseId, String(quiet.user._id), lead.actor);
    await deliver();
    expect(mail.to(quiet.email).filter((m) => m.subject.includes('assigned'))).toHaveLength(0);
    expect((await noticesOf(quiet.user._id)).map((n) => n.subject)).toContain(`Case ${caseId} is assigned to you`);
  });

  it('tells every active investigator of a new case in the unassigned queue, and only the assignees of a further report on it', async () => {
    const watcher = await makeStaff(ctx);
    const away = await makeStaff(ctx);
    const admin = await makeStaff(ctx, 'admin');
    await ctx.services.auth.setAccountDisabled(admin.actor.id, away.actor.id, true);
    const unitId = `CAM-${crypto.randomBytes(4).toString('hex').toUpperCase()}:SN1`;
    const { caseId } = await makeReportCase(ctx, { unitId });
    await deliver();
    const [opened] = mail.to(watcher.email).filter((m) => m.subject === `New case ${caseId} in the queue`);
    expect(opened!.text).toContain(`/cases/${caseId}`);
    expect(opened!.text).not.toContain('clinic');
    expect(mail.to(away.email)).toHaveLength(0);
    expect(mail.to(admin.email).filter((m) => m.subject.includes(caseId))).toHaveLength(0);

    // A red flag's case waits in the queue without a notice: a sweep can open hundreds at once.
    const flagged = await makeFlagCase(ctx, { unitId: `CAM-${crypto.randomBytes(4).toString('hex').toUpperCase()}:SN2`, modelId: 'CAM' });
    await deliver();
    expect((await noticesOf(watcher.user._id)).map((n) => n.subject)).not.toContain(`New case ${flagged.caseId} in the queue`);
    expect((await noticesOf(watcher.user._id)).map((n) => n.subject)).toContain(`New case ${caseId} in the queue`);
    expect((await noticesOf(watcher.actor.id)).map((n) => n.kind)).toContain('case-opened');

    const lead = await makeStaff(ctx);
    await ctx.services.cases.assign(caseId, lead.actor.id, lead.actor);
    const second = await makeReportCase(ctx, { unitId });
    expect(second.caseId).toBe(caseId);
    await deliver();
    expect(mail.to(lead.email).map((m) => m.subject)).toContain(`A new report joined case ${caseId}`);
    expect(mail.to(watcher.email).map((m) => m.subject)).not.toContain(`A new report joined case ${caseId}`);
  });

  it('tells the assignee that the reporter wrote, without what they wrote; the reporter who opted in hears only that there is news', async () => {
    const reporterEmail = `reporter-${crypto.randomBytes(4).toString('hex')}@example.test`;
    const filed = await fileReport(ctx, { contactName: 'Amina', contactEmail: reporterEmail, contactNews: true, description: 'Cameras record every visitor of the women\'s shelter.' });
    expect(filed.status).toBe(201);
    const caseId = await caseOfReport(filed.body.receipt);
    const reportId = await reportIdOf(filed.body.receipt);
    const lead = await makeStaff(ctx);
    await ctx.services.cases.assign(caseId, lead.actor.id, lead.actor);

    const wrote = await request(ctx.app).post('/api/v1/follow-up/messages').send({ receipt: filed.body.receipt, text: 'They moved the cameras to the back door yesterday.' });
    expect(wrote.status).toBe(201);
    await deliver();
    const [told] = mail.to(lead.email).filter((m) => m.subject === `The reporter wrote on case ${caseId}`);
    expect(told!.text).toContain(`/cases/${caseId}`);
    expect(told!.text).not.toContain('back door');
    expect(mail.to(reporterEmail)).toHaveLength(0);

    const answered = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${reportId}/messages`).set(lead.auth).send({ message: 'Thank you. Can you tell us the street?' });
    expect(answered.status).toBe(201);
    await deliver();
    const [news, ...more] = mail.to(reporterEmail);
    expect(more).toHaveLength(0);
    expect(news!.subject).toBe('There is news about your report');
    expect(news!.text).toContain(`${ctx.config.mail.publicUrl}/follow-up`);
    for (const content of ['street', 'Thank you', caseId, 'shelter', 'Amina', filed.body.receipt, digitsOf(filed.body.receipt)]) expect(news!.text).not.toContain(content);
  });

  it('never mails a reporter who did not opt in, and refuses the opt-in without an address, naming the box', async () => {
    const quietEmail = `quiet-${crypto.randomBytes(4).toString('hex')}@example.test`;
    const filed = await fileReport(ctx, { contactName: 'Juma', contactEmail: quietEmail });
    const caseId = await caseOfReport(filed.body.receipt);
    const lead = await makeStaff(ctx);
    await ctx.services.cases.assign(caseId, lead.actor.id, lead.actor);
    const answered = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${await reportIdOf(filed.body.receipt)}/messages`).set(lead.auth).send({ message: 'We opened an investigation.' });
    expect(answered.status).toBe(201);
    await deliver();
    expect(mail.to(quietEmail)).toHaveLength(0);

    const refused = await fileReport(ctx, { contactName: 'Juma', contactNews: true });
    expect(refused.status).toBe(400);
    expect(refused.body.error.fields).toEqual({ contactNews: expect.stringMatching(/e-mail address/) });
  });

  it('keeps the news box and what was typed when the report form is refused', async () => {
    const agent = request.agent(ctx.app);
    const form = await agent.get('/report');
    expect(form.text).toContain('name="contactNews"');
    const res = await agent.post('/report').type('form').send({ _csrf: csrfFrom(form.text), reporterKind: 'ngo', contactName: 'Wanjiru', contactNews: 'yes', country: 'KE', description: 'Seen at the market.', harmCategories: 'privacy-surveillance' });
    expect(res.status).toBe(400);
    expect(res.text).toContain('Give your e-mail address to be told of news, or untick the box.');
    expect(res.text).toMatch(/id="f-contactNews" name="contactNews" value="yes" checked/);
    expect(res.text).toContain('value="Wanjiru"');
  });

  it('sends each investigator one digest a day of deadlines 2 days away or passed (injected clock)', async () => {
    const investigator = await makeStaff(ctx);
    const cases = [await makeReportCase(ctx), await makeReportCase(ctx)];
    for (const { caseId } of cases) await ctx.services.cases.assign(caseId, investigator.actor.id, investigator.actor);
    // Acknowledgement is due 7 days after receipt: nothing to say yet.
    await ctx.services.cases.sendDeadlineDigests();
    await deliver();
    const digests = () => mail.to(investigator.email).filter((m) => m.subject.startsWith('Deadlines on'));
    expect(digests()).toHaveLength(0);

    ctx.clock.advance(5 * 86_400_000);
    await ctx.services.cases.sendDeadlineDigests();
    await ctx.services.cases.sendDeadlineDigests(); // the job again, the same day: nothing more
    await deliver();
    const [digest, ...more] = digests();
    expect(more).toHaveLength(0);
    expect(digest!.subject).toBe('Deadlines on 2 of your cases');
    for (const { caseId } of cases) expect(digest!.text).toContain(`${caseId} `);
    expect(digest!.text).toMatch(/acknowledge due \d{4}-\d{2}-\d{2}/);

    ctx.clock.advance(3 * 86_400_000);
    await ctx.services.cases.sendDeadlineDigests();
    await deliver();
    expect(digests()).toHaveLength(2);
    expect(digests()[1]!.text).toMatch(/acknowledge overdue since/);
  });

  it('tells the customer their registration is confirmed, staff that a transfer waits, and the customer how it was decided', async () => {
    const customer = await makeUser(ctx, 'customer');
    const { unit } = await makeRegistration(ctx, { user: customer.user, riskLevel: 'high' });
    const decider = await makeStaff(ctx, 'admin');
    await deliver();
    const [confirmed] = mail.to(customer.email);
    expect(confirmed!.subject).toBe(`Your unit ${unit.serial} is registered`);

    const move = { kind: 'relocation' as const, country: 'UG', reason: 'Office move', effectiveDate: new Date('2026-01-10') };
    const { transfer } = await ctx.services.registrations.requestTransfer(unit._id, move, String(customer.user._id));
    await deliver();
    const [waiting] = mail.to(decider.email).filter((m) => m.subject.includes(unit._id));
    expect(waiting!.subject).toBe(`A transfer of ${unit._id} waits for approval`);
    expect(waiting!.text).toContain(`/admin/transfers/${transfer._id}`);
    expect((await noticesOf(decider.actor.id)).map((n) => n.kind)).toContain('transfer-pending');

    await ctx.services.registrations.decideTransfer(transfer._id, 'refuse', 'Destination not cleared', decider.actor.id);
    await deliver();
    const decided = mail.to(customer.email).at(-1)!;
    expect(decided.subject).toBe(`Your transfer of ${unit._id} was refused`);
    expect(decided.text).toContain('Destination not cleared');
  });

  it('keeps a mail the server refused and sends it on a later run', async () => {
    // Port 9 (discard): nobody listens, the connection is refused at once.
    const down = instanceWith('smtp://127.0.0.1:9');
    await deliver();
    await down.services.notifications.mailLater([{ to: 'later@example.test', subject: 'Held back', text: 'Try again.' }]);
    expect(await down.services.notifications.deliverMail()).toMatchObject({ sent: 0, failed: 1 });
    expect(await QueuedMail.countDocuments({ to: 'later@example.test' })).toBe(1);
    // Not due yet: the next run leaves it alone; once due, another instance sends it.
    expect(await down.services.notifications.deliverMail()).toMatchObject({ sent: 0, failed: 0 });
    ctx.clock.advance(60_000);
    expect(await deliver()).toMatchObject({ sent: 1, failed: 0 });
    expect(mail.to('later@example.test').map((m) => m.subject)).toEqual(['Held back']);
    expect(await QueuedMail.countDocuments({ to: 'later@example.test' })).toBe(0);
  });

  describe('in the portal', () => {
    it('counts unread notices in the navigation, lists them newest first, and marks read only what the page showed', async () => {
      const me = await signedInAgent(ctx, 'investigator');
      const admin = await makeStaff(ctx, 'admin');
      const first = await makeReportCase(ctx);
      ctx.clock.advance(1000);
      const second = await makeReportCase(ctx);
      const home = await me.agent.get('/cases');
      expect(home.text).toMatch(/href="\/notifications">Notifications <span class="count" aria-label="2 unread">2<\/span>/);

      const page = await me.agent.get('/notifications');
      expect(page.status).toBe(200);
      expect(page.text.indexOf(`New case ${second.caseId}`)).toBeLessThan(page.text.indexOf(`New case ${first.caseId}`));
      expect(page.text).toContain(`href="/cases/${first.caseId}"`);

      // A notice that arrives after the page was drawn stays unread.
      ctx.clock.advance(1000);
      await ctx.services.cases.assign(first.caseId, String(me.user._id), admin.actor);
      const upTo = /name="upTo" value="([^"]+)"/.exec(page.text)![1]!;
      const marked = await me.agent.post('/notifications/read').type('form').send({ _csrf: csrfFrom(page.text), upTo });
      expect(marked.status).toBe(303);
      expect(await NotificationInbox.findById(String(me.user._id)).lean()).toMatchObject({ unread: 1 });
      const after = await me.agent.get('/notifications');
      expect(after.text).toMatch(/<li class="unread">\s*<span class="badge">New<\/span>\s*<a href="\/cases\/[^"]+">Case [^<]+ is assigned to you/);
      expect((after.text.match(/class="unread"/g) ?? []).length).toBe(1);

      const bad = await me.agent.post('/notifications/read').type('form').send({ _csrf: csrfFrom(after.text), upTo: 'yesterday' });
      expect(bad.status).toBe(400);

      const customer = await signedInAgent(ctx, 'customer');
      expect((await customer.agent.get('/notifications')).status).toBe(403);
      expect((await customer.agent.get('/account/products')).text).not.toContain('href="/notifications"');
    });

    it('answers GET /api/v1/notifications with a page of notices and the unread count', async () => {
      const me = await makeStaff(ctx);
      const { caseId } = await makeReportCase(ctx);
      const res = await request(ctx.app).get('/api/v1/notifications?perPage=1').set(me.auth);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ page: 1, perPage: 1, unread: 1, total: 1, items: [{ kind: 'case-opened', subject: `New case ${caseId} in the queue`, link: `/cases/${caseId}`, read: false }] });
      const read = await request(ctx.app).post('/api/v1/notifications/read').set(me.auth).send({ upTo: res.body.items[0].at });
      expect(read.body).toEqual({ unread: 0 });
      expect((await request(ctx.app).get('/api/v1/notifications').set(me.auth)).body.items[0].read).toBe(true);
      expect((await request(ctx.app).get('/api/v1/notifications?perPage=500').set(me.auth)).status).toBe(400);
      const customer = await apiUser(ctx, 'customer');
      expect((await request(ctx.app).get('/api/v1/notifications').set(customer.auth)).status).toBe(403);
      expect((await request(ctx.app).get('/api/v1/notifications')).status).toBe(401);
    });
  });
});
