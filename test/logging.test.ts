import { Writable } from 'node:stream';
import pino from 'pino';
import request from 'supertest';
import { createApp } from '../server/app';
import { createTestContext, type TestContext } from './helpers/context';
import { makeUser, TEST_PASSWORD } from './helpers/factories';

/** Collects the JSON lines an app built with this logger writes. */
function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('request log', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('logs method, path and status but never bodies, passwords, tokens or query strings', async () => {
    const { logger, lines } = captureLogger();
    const app = createApp({ config: ctx.config, db: ctx.db, clock: ctx.clock, logger });
    const { email } = await makeUser(ctx);
    const login = await request(app).post('/api/v1/auth/token?secret=query-value').send({ email, password: TEST_PASSWORD });
    expect(login.status).toBe(200);
    await request(app).get('/api/v1/auth/me').set('Authorization', `Bearer ${login.body.token}`);

    const text = JSON.stringify(lines);
    expect(lines.some((l) => (l.req as { path?: string })?.path === '/api/v1/auth/token' && (l.res as { statusCode?: number })?.statusCode === 200)).toBe(true);
    expect(text).not.toContain(TEST_PASSWORD);
    expect(text).not.toContain(login.body.token);
    expect(text).not.toContain('query-value');
    expect(text).not.toContain(email);
  });

  it('records no address or user agent for the reporting channel, but does for other routes', async () => {
    const { logger, lines } = captureLogger();
    const app = createApp({ config: ctx.config, db: ctx.db, clock: ctx.clock, logger });
    await request(app).get('/report').set('User-Agent', 'ReporterPhone/1.0');
    await request(app).get('/follow-up').set('User-Agent', 'ReporterPhone/1.0');
    await request(app).get('/login').set('User-Agent', 'StaffLaptop/1.0');

    const byPath = (p: string) => lines.find((l) => (l.req as { path?: string })?.path === p)?.req as Record<string, unknown>;
    expect(byPath('/report')).toBeDefined();
    expect(byPath('/report').remoteAddress).toBeUndefined();
    expect(byPath('/follow-up').remoteAddress).toBeUndefined();
    expect(byPath('/login').remoteAddress).toMatch(/127\.0\.0\.1/);
    expect(JSON.stringify(lines)).not.toContain('ReporterPhone');
  });

  it('records no address for the reporting channel in any letter case or escaping', async () => {
    const { logger, lines } = captureLogger();
    const app = createApp({ config: ctx.config, db: ctx.db, clock: ctx.clock, logger });
    const variants = ['/Report', '/REPORT', '/Follow-Up', '/follow-UP/messages', '/API/V1/Reports', '/Api/v1/Follow-Up/x', '/%72eport'];
    for (const p of variants) await request(app).get(p).set('User-Agent', 'ReporterPhone/1.0');
    await request(app).post('/API/V1/Reports').send({ description: 'x' });
    for (const p of variants) {
      const line = lines.find((l) => (l.req as { path?: string })?.path === p)?.req as Record<string, unknown> | undefined;
      expect(line).toBeDefined();
      expect(line!.remoteAddress).toBeUndefined();
    }
    expect(lines.filter((l) => (l.req as { path?: string })?.path === '/API/V1/Reports').every((l) => (l.req as Record<string, unknown>).remoteAddress === undefined)).toBe(true);
    expect(JSON.stringify(lines)).not.toContain('ReporterPhone');
  });

  it('refuses the third anonymous post in a minute with 429 (public POST rate limit)', async () => {
    ctx.clock.advance(60_000); // a fresh window: the earlier tests' posts counted in the database
    const config = { ...ctx.config, rateLimits: { ...ctx.config.rateLimits, publicPostPerMin: 2 } };
    const app = createApp({ config, db: ctx.db, clock: ctx.clock, logger: pino({ level: 'silent' }) });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await request(app).post('/api/v1/auth/signup').send({ email: `burst${i}@example.test`, password: TEST_PASSWORD, name: `Burst ${i}` });
      statuses.push(res.status);
    }
    expect(statuses).toEqual([202, 202, 429]);
    expect(await ctx.services.auth.listUsers({ skip: 0, limit: 10 }).then((r) => r.items.map((u) => u.email).filter((e) => e.startsWith('burst')).sort())).toEqual(['burst0@example.test', 'burst1@example.test']);
  });
});
