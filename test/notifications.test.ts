import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { createTestClock } from '../server/clock';
import { loadConfig } from '../server/config';
import { createLogger } from '../server/logger';
import { createNotificationsService, outboxDir } from '../server/services/notifications';
import { createTestContext, testEnv, type TestContext } from './helpers/context';
import { User } from '../models/auth';
import { makeReportCase, makeStaff } from './helpers/cases';
import { signedInAgent } from './helpers/factories';
import { mailTo, outbox } from './helpers/mail';

const madeDirs: string[] = [];
afterAll(() => madeDirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

/** A notifications service on its own configuration (no database: it stores nothing). */
function notificationsWith(env: Record<string, string>) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-mail-'));
  madeDirs.push(dataDir);
  const config = loadConfig(testEnv({ DATA_DIR: dataDir, ...env }));
  return { config, dataDir, notifications: createNotificationsService({ config, clock: createTestClock(), logger: createLogger('silent') }) };
}

describe('notifications by e-mail', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

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

  describe('notices to investigators about their cases', () => {
    it('mails the person a case is assigned to, unless they assigned themselves or turned it off', async () => {
      const lead = await makeStaff(ctx);
      const colleague = await makeStaff(ctx);
      const { caseId } = await makeReportCase(ctx);
      await ctx.services.cases.assign(caseId, lead.actor.id, lead.actor);
      expect(mailTo(ctx, lead.email)).toHaveLength(0);
      await ctx.services.cases.assign(caseId, colleague.actor.id, lead.actor);
      const [mail] = mailTo(ctx, colleague.email);
      expect(mail!.subject).toBe(`Case ${caseId} is assigned to you`);
      expect(mail!.text).toContain(`/cases/${caseId}`);
      expect(mail!.text).not.toContain('clinic');

      const quiet = await signedInAgent(ctx, 'investigator');
      expect((await quiet.agent.form('/account/notifications', { deadlineDigest: 'on' }, '/account')).status).toBe(303);
      expect((await User.findById(quiet.user._id).lean())!.notifications).toMatchObject({ caseAssigned: false, deadlineDigest: true });
      await ctx.services.cases.assign(caseId, String(quiet.user._id), lead.actor);
      expect(mailTo(ctx, quiet.email)).toHaveLength(0);
    });

    it('sends each investigator one digest a day of deadlines 2 days away or passed (injected clock)', async () => {
      const investigator = await makeStaff(ctx);
      const cases = [await makeReportCase(ctx), await makeReportCase(ctx)];
      for (const { caseId } of cases) await ctx.services.cases.assign(caseId, investigator.actor.id, investigator.actor);
      // Acknowledgement is due 7 days after receipt: nothing to say yet.
      await ctx.services.cases.sendDeadlineDigests();
      expect(mailTo(ctx, investigator.email)).toHaveLength(0);

      ctx.clock.advance(5 * 86_400_000);
      await ctx.services.cases.sendDeadlineDigests();
      await ctx.services.cases.sendDeadlineDigests(); // the job again, the same day: nothing more
      const [digest, ...more] = mailTo(ctx, investigator.email);
      expect(more).toHaveLength(0);
      expect(digest!.subject).toBe('Deadlines on 2 of your cases');
      for (const { caseId } of cases) expect(digest!.text).toContain(`${caseId} `);
      expect(digest!.text).toMatch(/acknowledge due \d{4}-\d{2}-\d{2}/);

      ctx.clock.advance(3 * 86_400_000);
      await ctx.services.cases.sendDeadlineDigests();
      expect(mailTo(ctx, investigator.email)).toHaveLength(2);
      expect(mailTo(ctx, investigator.email)[1]!.text).toMatch(/acknowledge overdue since/);
    });
  });
});
