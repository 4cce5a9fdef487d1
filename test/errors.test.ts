import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import request from 'supertest';
import { User } from '../models/auth';
import { createApp } from '../server/app';
import { toHttpError } from '../server/middleware/errors';
import { confirmationTokenFor } from './helpers/mail';
import { createTestContext, type TestContext } from './helpers/context';
import { pageAgent, TEST_PASSWORD, unique } from './helpers/factories';

describe('errors and request hygiene', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ BODY_LIMIT_KB: '2', RATE_LIMIT_PUBLIC_POST_PER_MIN: '1000' });
  });
  afterAll(() => ctx.close());

  it.each([
    ['a bulk write cut off mid-way', Object.assign(new Error('This socket has been ended by the other party'), { name: 'MongoBulkWriteError' })],
    ['a write to a socket the database closed', Object.assign(new Error('This socket has been ended by the other party'), { code: 'EPIPE' })],
    ['a reset connection, wrapped', new Error('insert failed', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) })],
  ])('answers 503 "database unavailable", not 500, for %s', (_what, err) => {
    expect(toHttpError(err).error).toMatchObject({ status: 503, code: 'database_unavailable' });
  });

  it('still answers 500 for an error that is not about the connection', () => {
    expect(toHttpError(new Error('boom')).error).toMatchObject({ status: 500, code: 'internal' });
  });

  it('answers unknown API routes with the JSON error shape', async () => {
    const res = await request(ctx.app).get('/api/v1/no-such-thing');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: { code: 'not_found', message: 'No route for GET /api/v1/no-such-thing.' } });
  });

  it('answers TRACE and other methods it does not serve with 405 and the methods it does answer, on pages and the API', async () => {
    const server = ctx.app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const { port } = server.address() as AddressInfo;
    const send = (method: string, path: string) =>
      new Promise<{ status: number; allow?: string; body: string }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method, path, headers: { Accept: 'application/json' } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, allow: res.headers.allow, body }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      for (const [method, path] of [['TRACE', '/api/v1/openapi.json'], ['TRACE', '/report'], ['PROPFIND', '/api/v1/reports'], ['MKCOL', '/']]) {
        const res = await send(method!, path!);
        expect([method, path, res.status]).toEqual([method, path, 405]);
        expect(res.allow).toBe('GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
        expect(JSON.parse(res.body).error.code).toBe('method_not_allowed');
      }
    } finally {
      server.close();
    }
  });

  it('logs a client\'s mistake by its code, without a stack trace or what was sent', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const stream = new Writable({ write: (chunk: Buffer, _e, done) => void (lines.push(...chunk.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)), done()) });
    const app = createApp({ config: ctx.config, db: ctx.db, clock: ctx.clock, logger: pino({ level: 'info' }, stream) });
    const res = await request(app).post('/api/v1/auth/signup').send({ email: 'secret-typed-content', password: 'x' });
    expect(res.status).toBe(400);
    const refused = lines.find((l) => l.msg === 'request refused');
    expect(refused).toMatchObject({ code: 'validation_failed', status: 400 });
    expect(lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
    expect(JSON.stringify(lines)).not.toContain('secret-typed-content');
    expect(JSON.stringify(lines)).not.toMatch(/"stack"/);
  });

  it('answers unknown pages with an HTML page', async () => {
    const res = await request(ctx.app).get('/no-such-page').set('Accept', 'text/html');
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.text).toContain('There is no page at this address.');
  });

  it('names each invalid field in a 400', async () => {
    const res = await request(ctx.app).post('/api/v1/auth/signup').send({ email: 'nope', password: 'x' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('validation_failed');
    expect(res.body.error.fields).toEqual({
      email: 'Enter a valid e-mail address.',
      password: 'Use at least 12 characters.',
      name: expect.stringMatching(/expected string/i),
    });
  });

  it('answers malformed JSON with 400 and no parser internals', async () => {
    const res = await request(ctx.app).post('/api/v1/auth/token').set('Content-Type', 'application/json').send('{"email": ');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: { code: 'malformed_body', message: 'The request body is not valid JSON.' } });
  });

  it('answers an oversized body with 413', async () => {
    const res = await request(ctx.app).post('/api/v1/auth/signup').send({ email: 'a@example.test', password: TEST_PASSWORD, name: 'x'.repeat(5000) });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
  });

  it.each([
    ['an operator object', { email: { $ne: null }, password: { $gt: '' } }, 'email'],
    ['$where', { $where: 'sleep(1000)', email: 'a@example.test', password: 'x' }, '$where'],
    ['a dotted key', { 'profile.role': 'admin', email: 'a@example.test', password: 'x' }, 'profile.role'],
    ['__proto__', JSON.parse('{"__proto__": {"role": "admin"}, "email": "a@example.test", "password": "x"}'), '__proto__'],
  ])('refuses %s in a body before it reaches a query', async (_label, body, field) => {
    const res = await request(ctx.app).post('/api/v1/auth/token').send(body);
    expect(res.status).toBe(400);
    expect(Object.keys(res.body.error.fields)[0]).toContain(field.replace('email', 'email.$ne'));
  });

  it('refuses operator keys in a query string', async () => {
    const res = await request(ctx.app).get('/api/v1/users?page[$gt]=1');
    expect(res.status).toBe(400);
  });

  it('sends a strict CSP without inline scripts on every HTML page', async () => {
    for (const path of ['/', '/login', '/signup', '/report', '/no-such-page']) {
      const res = await request(ctx.app).get(path);
      const csp = res.headers['content-security-policy'];
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(res.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    }
  });

  it('escapes user-supplied text on pages', async () => {
    const agent = pageAgent(ctx);
    const email = `${unique('xss')}@example.test`;
    const signup = await agent.form('/signup', { name: '<script>alert(1)</script>', email, password: TEST_PASSWORD });
    expect(signup.status).toBe(200);
    expect(signup.text).toContain('Check your e-mail');
    await ctx.services.auth.confirmEmail(confirmationTokenFor(ctx, email));
    expect((await agent.form('/login', { email, password: TEST_PASSWORD })).status).toBe(303);
    const page = await agent.get('/account');
    expect(page.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page.text).not.toContain('<script>alert(1)</script>');
    expect(await User.countDocuments({ email })).toBe(1);
  });
});
