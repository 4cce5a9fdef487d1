import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import mongoose from 'mongoose';
import request from 'supertest';
import { createApp } from '../server/app';
import { createLogger } from '../server/logger';
import { loadOpenApi } from '../server/openapi';
import { makeReportCase } from './helpers/cases';
import { makeModel, makeRegistration } from './helpers/catalogue';
import { createTestContext, type TestContext } from './helpers/context';
import { apiUser, csrfFrom, makeUser, pageAgent, TEST_PASSWORD, unique } from './helpers/factories';
import { notAnImage, pixelBombPng, pngImage, reportFields, svgWithScript, truncatedJpeg } from './helpers/reports';

/**
 * The systematic sweep: every API route from the OpenAPI document and every page reached by
 * crawling as each role. Single behaviours (one tampered token, one form) are tested in their
 * modules; here the point is that no route was forgotten.
 */

type Agent = ReturnType<typeof pageAgent>;
type Operation = { method: string; path: string; multipart: boolean; bodyFields: string[] };

const XSS = {
  script: '<script>alert("xss-script")</script>',
  handler: '"><img src=x onerror=alert("xss-handler")>',
  url: 'javascript:alert("xss-url")',
};
const XSS_TEXT = `${XSS.script} ${XSS.handler} ${XSS.url}`;

/** Markup an escaped page never contains; each names how the payload would run. */
function unsafeMarkup(html: string): string[] {
  const found: string[] = [];
  if (html.includes('<script>alert("xss-script")')) found.push('script element');
  if (/<img[^>]*onerror=alert/i.test(html)) found.push('event handler');
  if (/(href|src|action|formaction)\s*=\s*["']?\s*javascript:/i.test(html)) found.push('javascript: URL');
  return found;
}

/** Every operation of the OpenAPI document, with the top-level fields its JSON or multipart body takes. */
function operations(): Operation[] {
  const doc = loadOpenApi() as { paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: unknown }> } }>>; components: { schemas: Record<string, unknown> } };
  const resolve = (schema: unknown): { properties?: Record<string, unknown> } => {
    const ref = (schema as { $ref?: string })?.$ref;
    return (ref ? doc.components.schemas[ref.split('/').pop()!] : schema) as { properties?: Record<string, unknown> };
  };
  const ops: Operation[] = [];
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      const content = op.requestBody?.content ?? {};
      const schema = resolve(content['application/json']?.schema ?? content['multipart/form-data']?.schema);
      ops.push({ method, path: p, multipart: 'multipart/form-data' in content, bodyFields: Object.keys(schema?.properties ?? {}) });
    }
  }
  return ops;
}

const fill = (p: string, ids: Record<string, string> = {}) => `/api/v1${p.replace(/\{(\w+)\}/g, (_m, name: string) => ids[name] ?? 'x1')}`;

/** Everything the database holds, as one digest per collection: "unchanged" means byte for byte. */
async function snapshot(): Promise<Record<string, string>> {
  const db = mongoose.connection.db!;
  const out: Record<string, string> = {};
  for (const { name } of await db.listCollections().toArray()) {
    // Rate-limit windows count every request, refused or not: they are not records.
    if (name === 'limits') continue;
    const docs = await db.collection(name).find({}).sort({ _id: 1 }).toArray();
    out[name] = crypto.createHash('sha256').update(JSON.stringify(docs)).digest('hex');
  }
  return out;
}

/** Same-site links and post forms of a page. */
function linksOf(html: string): string[] {
  return [...html.matchAll(/href="(\/[^"#]*)"/g)].map((m) => m[1]!.replace(/&amp;/g, '&'));
}
function postFormsOf(html: string): Array<{ action: string; multipart: boolean }> {
  return [...html.matchAll(/<form\b[^>]*>/g)]
    .map((m) => m[0])
    .filter((tag) => /method="post"/i.test(tag))
    .map((tag) => ({ action: (/action="([^"]*)"/.exec(tag)?.[1] ?? '').replace(/&amp;/g, '&'), multipart: /multipart/.test(tag) }));
}

interface Crawl {
  pages: Array<{ url: string; status: number; html: boolean; csp: string | undefined; unsafe: string[] }>;
  forms: Map<string, { from: string; multipart: boolean }>;
}

/** Breadth-first over same-site links (GET only, never /logout or downloads), at most `limit` pages. */
async function crawl(agent: Agent, roots: string[], limit = 120): Promise<Crawl> {
  const seen = new Set<string>();
  const queue = [...roots];
  const result: Crawl = { pages: [], forms: new Map() };
  while (queue.length && result.pages.length < limit) {
    const url = queue.shift()!;
    // One page per route shape: /cases/C-1 and /cases/C-2 test the same template.
    const shape = url.replace(/[?].*$/, '').replace(/\/[^/]*\d[^/]*/g, '/:id');
    if (seen.has(shape) || /^\/(static|logout)|\/(download|export|evidence|files)\b|\.(csv|json|jsonld)$/.test(url)) continue;
    seen.add(shape);
    const res = await agent.get(url);
    const html = /html/.test(String(res.headers['content-type']));
    result.pages.push({ url, status: res.status, html, csp: res.headers['content-security-policy'], unsafe: html ? unsafeMarkup(res.text) : [] });
    if (!html) continue;
    for (const form of postFormsOf(res.text)) if (form.action.startsWith('/')) result.forms.set(form.action, { from: url, multipart: form.multipart });
    queue.push(...linksOf(res.text));
  }
  return result;
}

async function signIn(ctx: TestContext, email: string): Promise<Agent> {
  const agent = pageAgent(ctx);
  const res = await agent.form('/login', { email, password: TEST_PASSWORD });
  if (res.status !== 303) throw new Error(`login failed: ${res.status}`);
  return agent;
}

/** Every page route the app mounts, read from its router stacks (API routes come from OpenAPI). */
function pageRoutes(app: TestContext['app']): Array<{ method: string; path: string }> {
  // Page routers are mounted at the root (`slash`); the API router under /api/v1 is skipped.
  type Layer = { route?: { path: string; methods: Record<string, boolean> }; slash?: boolean; handle?: { stack?: Layer[] } };
  const found: Array<{ method: string; path: string }> = [];
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) for (const method of Object.keys(layer.route.methods)) found.push({ method, path: layer.route.path });
      else if (layer.slash && layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return found.filter((r) => typeof r.path === 'string');
}

/** The same path in other letter cases: all upper, and each segment capitalised. */
function otherCases(p: string): string[] {
  const capitalised = p.replace(/\/([a-z])/g, (_m, c: string) => `/${c.toUpperCase()}`);
  return [...new Set([p.toUpperCase(), capitalised])].filter((v) => v !== p);
}

describe('security sweep over every route', () => {
  let ctx: TestContext;
  let admin: Awaited<ReturnType<typeof apiUser>>;
  let ids: Record<string, string>;
  /** Strings only customer A (or the reporter) may ever see. */
  let secrets: string[];
  let agents: Record<'anonymous' | 'customer' | 'investigator' | 'admin', Agent>;
  let customerB: Awaited<ReturnType<typeof apiUser>>;
  let investigatorOther: Awaited<ReturnType<typeof apiUser>>;

  beforeAll(async () => {
    ctx = await createTestContext({
      RATE_LIMIT_PUBLIC_POST_PER_MIN: '100000',
      RATE_LIMIT_LOGIN_PER_15MIN: '100000',
      REPORT_SUBMISSIONS_PER_10MIN: '100000',
      REPORT_POW_BITS: '0',
      REPORT_MIN_FILL_SECONDS: '0',
      UPLOAD_MAX_FILE_MB: '1',
      UPLOAD_MAX_FILES: '3',
    });
    admin = await apiUser(ctx, 'admin');
    customerB = await apiUser(ctx, 'customer');
    investigatorOther = await apiUser(ctx, 'investigator');
    const investigator = await makeUser(ctx, 'investigator', { name: `Ines ${XSS.handler}`, organisation: `Audit ${XSS.script}` });
    const customerA = await makeUser(ctx, 'customer', { name: XSS_TEXT, organisation: XSS_TEXT });

    // Free text a customer, a reporter or staff typed, in every module that renders it.
    const model = await makeModel(ctx, { name: XSS_TEXT, publicName: XSS_TEXT });
    const secretEmail = `${unique('owner')}@private.example`;
    const reg = await makeRegistration(ctx, { user: customerA.user, model, ownerOrganisation: XSS_TEXT, contactName: XSS_TEXT, declaredEndUse: XSS_TEXT, contactEmail: secretEmail });
    const reporterEmail = `${unique('reporter')}@private.example`;
    const reported = await makeReportCase(ctx, { unitId: reg.unit._id, modelId: model._id, description: XSS_TEXT, contact: { name: `Rita ${XSS_TEXT}`, organisation: `Watch ${XSS_TEXT}`, email: reporterEmail } });
    const actor = { id: String(investigator.user._id), role: 'investigator' as const };
    const adminActor = { id: String(admin.user._id), role: 'admin' as const };
    await ctx.services.cases.assign(reported.caseId, actor.id, adminActor);
    await ctx.services.cases.addNote(reported.caseId, XSS_TEXT, adminActor);

    ids = {
      id: reported.caseId,
      reportId: reported.reportId,
      fileId: reported.evidence[0]!.fileId,
      registrationId: String(reg.registration._id),
      unitId: reg.unit._id,
      modelId: model._id,
      userId: String(customerA.user._id),
    };
    secrets = [secretEmail, reporterEmail];
    agents = {
      anonymous: pageAgent(ctx),
      customer: await signIn(ctx, customerA.email),
      investigator: await signIn(ctx, investigator.email),
      admin: await signIn(ctx, admin.email),
    };
  }, 60_000);
  afterAll(() => ctx.close());

  describe('NoSQL operator injection', () => {
    const bodies = (fields: string[]) => [
      { $where: 'sleep(1000) || true' },
      { 'profile.role': 'admin' },
      ...(fields.length ? fields : ['email']).flatMap((f) => [{ [f]: { $ne: null } }, { [f]: { $gt: '' } }, { [f]: [{ $regex: '.*' }] }]),
    ];
    const rawBodies = ['{"__proto__": {"polluted": true}}', '{"constructor": {"prototype": {"polluted": true}}}', '{"nested": {"deeper": {"$in": ["a"]}}}'];
    const queries = ['q[$ne]=1', '$where=1', 'a.b=1', '__proto__=1', '__proto__[polluted]=1', 'constructor[prototype][polluted]=1', 'page[$gt]=0'];

    it('answers 400 on every API route for operator keys in JSON bodies, multipart fields and query strings, and changes nothing', async () => {
      const before = await snapshot();
      const failures: string[] = [];
      const expect400 = (what: string, status: number) => void (status !== 400 && failures.push(`${what} → ${status}`));
      for (const op of operations()) {
        const url = fill(op.path, ids);
        for (const q of queries) expect400(`${op.method} ${url}?${q}`, (await request(ctx.app)[op.method as 'get'](`${url}?${q}`).set(admin.auth)).status);
        if (op.method === 'get') continue;
        for (const body of bodies(op.bodyFields)) {
          expect400(`${op.method} ${url} ${JSON.stringify(body)}`, (await request(ctx.app)[op.method as 'post'](url).set(admin.auth).send(body)).status);
        }
        for (const raw of rawBodies) {
          expect400(`${op.method} ${url} ${raw}`, (await request(ctx.app)[op.method as 'post'](url).set(admin.auth).set('content-type', 'application/json').send(raw)).status);
        }
        if (op.multipart) {
          for (const field of ['description[$ne]', '__proto__[polluted]', 'constructor[prototype][polluted]', 'a.b']) {
            const res = await request(ctx.app)[op.method as 'post'](url).set(admin.auth).field(field, 'x').attach('evidence', await pngImage(), 'p.png');
            expect400(`${op.method} ${url} multipart ${field}`, res.status);
          }
        }
      }
      expect(failures).toEqual([]);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(await snapshot()).toEqual(before);
    }, 120_000);

    it('answers 400 on every page and form for operator keys, and changes nothing', async () => {
      const crawled = await crawl(agents.admin, ['/', '/admin', '/cases', '/account']);
      const before = await snapshot();
      const failures: string[] = [];
      for (const page of crawled.pages.filter((p) => p.html && p.status === 200)) {
        const sep = page.url.includes('?') ? '&' : '?';
        const status = (await agents.admin.get(`${page.url}${sep}q[$ne]=1`)).status;
        if (status !== 400) failures.push(`GET ${page.url} q[$ne] → ${status}`);
      }
      for (const [action, { from }] of crawled.forms) {
        const token = csrfFrom((await agents.admin.get(from)).text);
        const res = await agents.admin.post(action).type('form').send(`_csrf=${encodeURIComponent(token)}&email%5B%24ne%5D=x&__proto__=1`);
        if (res.status !== 400) failures.push(`POST ${action} → ${res.status}`);
      }
      expect(crawled.forms.size).toBeGreaterThan(5);
      expect(failures).toEqual([]);
      expect(await snapshot()).toEqual(before);
    }, 120_000);
  });

  describe('pages', () => {
    it('render every stored XSS payload as text and send a strict CSP on every HTML response, for every role', async () => {
      const problems: string[] = [];
      let htmlPages = 0;
      for (const [role, agent] of Object.entries(agents)) {
        const roots = ['/', '/report', '/account', '/registrations', '/admin', '/cases', `/cases/${ids.id}`, '/audit', '/catalogue', '/dashboard', '/transparency'];
        for (const page of (await crawl(agent, roots)).pages) {
          if (page.status >= 500) problems.push(`${role} GET ${page.url} → ${page.status}`);
          if (!page.html) continue;
          htmlPages++;
          if (!page.csp?.includes("script-src 'self'") || page.csp.includes('unsafe-inline')) problems.push(`${role} GET ${page.url}: CSP ${page.csp}`);
          for (const u of page.unsafe) problems.push(`${role} GET ${page.url}: ${u}`);
        }
      }
      expect(problems).toEqual([]);
      expect(htmlPages).toBeGreaterThan(20);
      // The payloads really were on the pages, as text.
      const casePage = await agents.admin.get(`/cases/${ids.id}`);
      expect(casePage.text).toContain('&lt;script&gt;alert(&#34;xss-script&#34;)&lt;/script&gt;');
    }, 180_000);

    it('sends every signed-in page, and the reporting channel\'s pages, with Cache-Control: no-store', async () => {
      const cached: string[] = [];
      let checked = 0;
      for (const [role, agent] of Object.entries(agents)) {
        const roots = role === 'anonymous' ? ['/report', '/follow-up'] : ['/', '/account', '/registrations', '/admin', '/cases', `/cases/${ids.id}`, '/audit', '/catalogue', '/dashboard'];
        for (const page of (await crawl(agent, roots)).pages) {
          // The API never reads the session cookie: what a page links to there is public.
          if (page.url.startsWith('/api/') || (role === 'anonymous' && !/^\/(report|follow-up)/.test(page.url))) continue;
          const res = await agent.get(page.url);
          checked++;
          if (res.headers['cache-control'] !== 'no-store') cached.push(`${role} GET ${page.url}: ${res.headers['cache-control']}`);
        }
      }
      // Evidence downloads, which the crawl skips.
      const download = await agents.investigator.get(`/cases/${ids.id}/reports/${ids.reportId}/evidence/${ids.fileId}`);
      expect(download.status).toBe(200);
      if (download.headers['cache-control'] !== 'no-store') cached.push(`evidence download: ${download.headers['cache-control']}`);
      expect(cached).toEqual([]);
      expect(checked).toBeGreaterThan(20);
    }, 180_000);

    it('renders a CSV import\'s file name, cells and error lines as text', async () => {
      const csv = `sku,serial,manufactured_at,channel_partner,ship_to_country,sold_at\n${ids.modelId},SN-XSS-1,2025-01-01,"${XSS.handler.replace(/"/g, '""')}",KE,2025-02-01\n"${XSS.script.replace(/"/g, '""')}",SN-XSS-2,2025-01-01,x,KE,2025-02-01\n`;
      const started = await request(ctx.app).post('/api/v1/imports').set(admin.auth).attach('file', Buffer.from(csv), `${XSS.handler}.csv`);
      expect(started.status).toBe(202);
      const jobId = started.body.import.id as string;
      let job = started.body.import as { status: string };
      for (let i = 0; i < 100 && job.status === 'running'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        job = (await request(ctx.app).get(`/api/v1/imports/${jobId}`).set(admin.auth)).body.import;
      }
      for (const page of [`/admin/catalogue/import/${jobId}`, '/admin/catalogue/import']) {
        const res = await agents.admin.get(page);
        expect(res.status).toBe(200);
        expect(unsafeMarkup(res.text)).toEqual([]);
        expect(res.text).toContain('&lt;img src=x onerror=alert(');
      }
    });

    it('refuses every state-changing form without its CSRF token, or with another session\'s, and changes nothing', async () => {
      const forms = new Map<string, { role: string; from: string }>();
      for (const [role, agent] of Object.entries(agents)) {
        for (const [action, { from }] of (await crawl(agent, ['/', '/report', '/account', '/admin', '/cases', `/cases/${ids.id}`, '/registrations'])).forms) forms.set(`${role} ${action}`, { role, from });
      }
      const foreignToken = csrfFrom((await pageAgent(ctx).get('/login')).text);
      const before = await snapshot();
      const failures: string[] = [];
      for (const [key, { role }] of forms) {
        const agent = agents[role as keyof typeof agents];
        const action = key.slice(role.length + 1);
        for (const token of [null, foreignToken]) {
          const res = await agent.post(action).type('form').send(token ? { _csrf: token, text: 'x' } : { text: 'x' });
          if (res.status !== 403) failures.push(`${key} token=${token ? 'foreign' : 'none'} → ${res.status}`);
        }
      }
      expect(forms.size).toBeGreaterThan(10);
      expect(failures).toEqual([]);
      expect(await snapshot()).toEqual(before);
    }, 180_000);

    it.each(['//evil.example/', 'https://evil.example/', '/\\evil.example', '/%2F%2Fevil.example', '\\\\evil.example', 'javascript:alert(1)', '/\r\nLocation: https://evil.example'])(
      'never redirects off-site after login (next=%j)',
      async (next) => {
        const made = await makeUser(ctx, 'customer');
        const agent = pageAgent(ctx);
        const res = await agent.form('/login', { email: made.email, password: TEST_PASSWORD, next }, `/login?next=${encodeURIComponent(next)}`);
        expect(res.status).toBe(303);
        const location = new URL(res.headers.location!, 'http://portal.test');
        expect(location.host).toBe('portal.test');
        expect(res.headers.location).not.toMatch(/^\/\/|^\/\\|^[a-z]+:/i);
      },
    );
  });

  describe('tokens on every authenticated API route', () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    function forged(kind: string): string {
      const claims = { sub: String(admin.user._id), jti: (jwt.decode(admin.token) as { jti: string }).jti, iss: ctx.config.jwt.issuer, aud: ctx.config.jwt.audience };
      const now = Math.floor(ctx.clock.now().getTime() / 1000);
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      switch (kind) {
        case 'wrong signature':
          return jwt.sign(claims, 'another-secret-another-secret-another-secret', { algorithm: 'HS256' });
        case 'alg none':
          return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, iat: now, exp: now + 600 })}.`;
        case 'RS256 signed by an attacker (secret as public key)':
          return jwt.sign({ ...claims, iat: now }, privateKey.export({ type: 'pkcs8', format: 'pem' }), { algorithm: 'RS256', expiresIn: 600 });
        case 'HS256 keyed with a public key':
          return jwt.sign({ ...claims, iat: now }, publicKey.export({ type: 'spki', format: 'pem' }), { algorithm: 'HS256', expiresIn: 600 });
        case 'expired':
          return jwt.sign({ ...claims, iat: now - 7200, exp: now - 3600 }, ctx.config.jwt.secret, { algorithm: 'HS256' });
        case 'wrong audience':
          return jwt.sign({ ...claims, aud: 'another-portal', iat: now }, ctx.config.jwt.secret, { algorithm: 'HS256', expiresIn: 600 });
        default:
          throw new Error(kind);
      }
    }
    const kinds = ['wrong signature', 'alg none', 'RS256 signed by an attacker (secret as public key)', 'HS256 keyed with a public key', 'expired', 'wrong audience'];

    it('answers 401 to each forged token on every route that wants a sign-in, and changes nothing', async () => {
      const before = await snapshot();
      const protectedOps: string[] = [];
      const failures: string[] = [];
      for (const op of operations()) {
        const url = fill(op.path, ids);
        const send = (headers: Record<string, string>) => request(ctx.app)[op.method as 'post'](url).set(headers).send(op.method === 'get' ? undefined : {});
        if ((await send({})).status !== 401) continue;
        protectedOps.push(`${op.method} ${op.path}`);
        for (const kind of kinds) {
          const res = await send({ Authorization: `Bearer ${forged(kind)}` });
          if (res.status !== 401) failures.push(`${op.method} ${op.path} ${kind} → ${res.status}`);
        }
      }
      expect(protectedOps.length).toBeGreaterThan(20);
      expect(failures).toEqual([]);
      expect(await snapshot()).toEqual(before);
    }, 120_000);
  });

  describe('access to other people\'s records', () => {
    // Staff see every case and registration (triage needs them); the reporter's identity,
    // messages and evidence are for the case's assigned investigators only.
    const privateFor = {
      'customer B': /registrations|transfers|cases|timeline|audit|users|imports|api-keys/,
      'unassigned investigator': /contact|messages|evidence/,
    } as const;

    it('gives customer B and an unassigned investigator 403/404 on every route that takes an id they may not read, and leaks nothing', async () => {
      const failures: string[] = [];
      for (const [who, user, leaks] of [
        ['customer B', customerB, secrets],
        ['unassigned investigator', investigatorOther, secrets.slice(1)],
      ] as const) {
        for (const op of operations().filter((o) => o.path.includes('{') && o.method === 'get')) {
          const res = await request(ctx.app).get(fill(op.path, ids)).set(user.auth);
          const leaked = leaks.filter((s) => res.text.includes(s));
          if (leaked.length) failures.push(`${who} GET ${op.path} leaked ${leaked.join(', ')}`);
          if (privateFor[who].test(op.path) && res.status !== 403 && res.status !== 404) failures.push(`${who} GET ${op.path} → ${res.status}`);
        }
        const agent = await signIn(ctx, user.email);
        for (const page of [`/cases/${ids.id}`, `/registrations/${ids.registrationId}`, `/cases/${ids.id}/contact`]) {
          const res = await agent.get(page);
          if (privateFor[who].test(page) && res.status !== 403 && res.status !== 404) failures.push(`${who} page ${page} → ${res.status}`);
          if (leaks.some((s) => res.text.includes(s))) failures.push(`${who} page ${page} leaked`);
        }
      }
      expect(failures).toEqual([]);
    }, 60_000);

    it('hides a case from an investigator with a conflict of interest (404)', async () => {
      const conflicted = await apiUser(ctx, 'investigator');
      await ctx.services.cases.declareConflict(ids.id!, String(conflicted.user._id), 'Former employee of the customer', { id: String(admin.user._id), role: 'admin' });
      const res = await request(ctx.app).get(`/api/v1/cases/${ids.id}`).set(conflicted.auth);
      expect(res.status).toBe(404);
      expect(res.text).not.toContain(ids.registrationId);
    });

    it('follows up only the report whose receipt is given: a guessed or another receipt is 404 with nothing leaked', async () => {
      for (const receipt of ['0000 0000 0000 0000', '1234-5678-9012-3456', ids.reportId]) {
        const res = await request(ctx.app).post('/api/v1/follow-up').send({ receipt });
        expect([400, 404, 429]).toContain(res.status);
        expect(secrets.some((s) => res.text.includes(s))).toBe(false);
      }
    });
  });

  describe('uploads on every route that takes files', () => {
    const bad: Array<[string, () => Promise<{ data: Buffer; name: string }[]>, number[]]> = [
      ['wrong magic bytes (a script named .jpg)', async () => [{ data: notAnImage(), name: 'photo.jpg' }], [400]],
      ['an SVG with a script', async () => [{ data: svgWithScript(), name: 'image.svg' }], [400]],
      ['an empty file', async () => [{ data: Buffer.alloc(0), name: 'empty.png' }], [400]],
      ['a truncated JPEG', async () => [{ data: await truncatedJpeg(), name: 'cut.jpg' }], [400]],
      ['a decompression bomb', async () => [{ data: pixelBombPng(), name: 'bomb.png' }], [400]],
      ['a file over the size limit', async () => [{ data: Buffer.concat([await pngImage(), Buffer.alloc(1024 * 1024)]), name: 'big.png' }], [413]],
      ['too many files', async () => Promise.all(Array.from({ length: 4 }, async (_, i) => ({ data: await pngImage(), name: `p${i}.png` }))), [413]],
    ];

    /** The report API, its follow-up evidence and the registration's proof of purchase, each with valid other fields. */
    const routes = () => [
      {
        name: 'POST /api/v1/reports',
        field: 'evidence',
        send: async (files: { data: Buffer; name: string }[]) => {
          const challenge = (await request(ctx.app).get('/api/v1/reports/challenge')).body as { token: string };
          const req = request(ctx.app).post('/api/v1/reports').set('X-Report-Challenge', challenge.token).field('challenge', challenge.token).field('pow', '0');
          for (const [k, v] of Object.entries(reportFields())) for (const item of [v].flat()) req.field(k, String(item));
          for (const f of files) req.attach('evidence', f.data, f.name);
          return req;
        },
      },
    ];

    it.each(bad)('refuses %s clearly, stores no file and saves nothing', async (_label, make, statuses) => {
      const filesDir = path.join(ctx.config.dataDir, 'files');
      const count = () => (fs.existsSync(filesDir) ? fs.readdirSync(filesDir, { recursive: true }).length : 0);
      for (const route of routes()) {
        const files = await make();
        const before = await snapshot();
        const stored = count();
        const res = await route.send(files);
        expect(statuses).toContain(res.status);
        expect(res.body.error.message.length).toBeGreaterThan(10);
        expect(count()).toBe(stored);
        expect(await snapshot()).toEqual(before);
      }
    });

    it('answers 400 (never 500) to a multipart body without a boundary or cut short, on every route that takes files', async () => {
      ctx.clock.advance(16 * 60_000); // past the receipt guard's window, which earlier guesses from this address filled
      const failures: string[] = [];
      for (const op of operations().filter((o) => o.multipart)) {
        const url = fill(op.path, ids);
        const noBoundary = await request(ctx.app)[op.method as 'post'](url).set(admin.auth).set('content-type', 'multipart/form-data').send('{"a":1}');
        const cut = await request(ctx.app)[op.method as 'post'](url).set(admin.auth).set('content-type', 'multipart/form-data; boundary=XyZ').send('--XyZ\r\nContent-Disposition: form-data; name="evidence"; filename="a.png"\r\n\r\nabc');
        for (const [what, res] of [['no boundary', noBoundary], ['cut short', cut]] as const) if (res.status !== 400) failures.push(`${op.method} ${op.path} ${what} → ${res.status}`);
      }
      expect(operations().filter((o) => o.multipart).length).toBeGreaterThanOrEqual(4);
      expect(failures).toEqual([]);
    });

    it('keeps a path-traversal file name inside the files directory, as a display name only', async () => {
      const [route] = routes();
      const res = await route!.send([{ data: await pngImage(), name: '../../../../tmp/evil.png' }]);
      expect(res.status).toBe(201);
      expect(res.body.evidence[0].name).toBe('evidence-1.png');
      expect(JSON.stringify(res.body)).not.toContain('evil');
      expect(fs.existsSync('/tmp/evil.png')).toBe(false);
      const everything = fs.readdirSync(ctx.config.dataDir, { recursive: true }).map(String);
      expect(everything.filter((f) => f.includes('evil'))).toEqual([]);
    });
  });

  describe('mass assignment', () => {
    it('ignores role, _id, createdAt and owner ids in sign-up and profile updates', async () => {
      const email = `${unique('mass')}@example.test`;
      const fakeId = new mongoose.Types.ObjectId().toString();
      const signup = await request(ctx.app).post('/api/v1/auth/signup').send({ email, password: TEST_PASSWORD, name: 'Mass', role: 'admin', _id: fakeId, createdAt: '2000-01-01T00:00:00Z', disabled: false, userId: fakeId });
      expect([202, 400]).toContain(signup.status);
      const users = mongoose.connection.db!.collection('users');
      const stored = await users.findOne({ email });
      if (signup.status === 202) {
        expect(stored).toMatchObject({ role: 'customer' });
        expect(String(stored!._id)).not.toBe(fakeId);
        expect(stored!.createdAt.getFullYear()).not.toBe(2000);
      } else expect(stored).toBeNull();

      const me = await apiUser(ctx, 'customer');
      const patch = await request(ctx.app).patch('/api/v1/auth/me').set(me.auth).send({ name: 'Renamed', role: 'admin', _id: fakeId, createdAt: '2000-01-01T00:00:00Z' });
      expect([200, 400]).toContain(patch.status);
      const after = await users.findOne({ email: me.email });
      expect(after).toMatchObject({ role: 'customer' });
      expect(after!.createdAt.getFullYear()).not.toBe(2000);
    });

    it('does not let a customer register a unit in another customer\'s name', async () => {
      const res = await request(ctx.app).post('/api/v1/registrations').set(customerB.auth).send({ userId: ids.userId, ownerId: ids.userId, createdBy: ids.userId });
      expect(res.status).toBe(400);
      expect(await mongoose.connection.db!.collection('registrations').countDocuments({ userId: ids.userId })).toBeLessThanOrEqual(1);
    });
  });
  describe('letter case in paths', () => {
    it('reaches no API operation spelt in another case, so a session cookie without a CSRF token changes nothing', async () => {
      const before = await snapshot();
      const reached: string[] = [];
      for (const op of operations()) {
        for (const variant of otherCases(fill(op.path, ids))) {
          const req = agents.investigator[op.method as 'post'](variant);
          const res = op.multipart ? await req.field('description', 'x').attach('file', Buffer.from('serial\nSN1\n'), 'units.csv') : await req.send({});
          if (res.status !== 404) reached.push(`${op.method.toUpperCase()} ${variant} → ${res.status}`);
        }
      }
      expect(reached).toEqual([]);
      expect(await snapshot()).toEqual(before);
    });

    it('reaches no page route spelt in another case', async () => {
      const routes = pageRoutes(ctx.app);
      expect(routes.length).toBeGreaterThan(20);
      const reached: string[] = [];
      // With a valid CSRF token, so that a 404 comes from routing and not from the CSRF check.
      const token = await agents.investigator.csrf('/account');
      for (const route of routes) {
        for (const variant of otherCases(route.path.replace(/:(\w+)/g, 'x1'))) {
          const req = agents.investigator[route.method as 'get'](variant);
          const res = route.method === 'get' ? await req : await req.type('form').send({ _csrf: token });
          if (res.status !== 404) reached.push(`${route.method.toUpperCase()} ${variant} → ${res.status}`);
        }
      }
      expect(reached).toEqual([]);
    });

    it('never reads a session cookie under an upper-case API prefix', async () => {
      expect((await agents.investigator.get('/API/v1/auth/me')).status).toBe(404);
      expect((await agents.investigator.get('/api/v1/auth/me')).status).toBe(401);
      expect((await request(ctx.app).get('/api/v1/auth/me').set(admin.auth)).status).toBe(200);
    });
  });

  describe('the anonymous limit counts only valid credentials', () => {
    // An instance with the default limit, on the suite's database.
    let app: ReturnType<typeof createApp>;
    beforeAll(() => {
      app = createApp({ config: { ...ctx.config, rateLimits: { ...ctx.config.rateLimits, publicPostPerMin: 20 } }, db: ctx.db, clock: ctx.clock, logger: createLogger('silent') });
    });

    const signUp = (i: number, headers: Record<string, string>) =>
      request(app).post('/api/v1/auth/signup').set(headers).send({ email: `burst-${i}-${unique('b')}@example.test`, password: TEST_PASSWORD, name: `Burst ${i}` });

    it('refuses sign-ups past the limit even with Authorization: Basic or a made-up API key', async () => {
      const invalid: Array<Record<string, string>> = [{ Authorization: 'Basic eDp4' }, { 'X-Api-Key': 'dsk_made.up' }];
      for (const headers of invalid) {
        ctx.clock.advance(60_000);
        const statuses: number[] = [];
        for (let i = 0; i < 25; i++) statuses.push((await signUp(i, headers)).status);
        expect(statuses.filter((s) => s === 202)).toHaveLength(20);
        expect(statuses.slice(20)).toEqual([429, 429, 429, 429, 429]);
      }
    });

    it('answers an anonymous write to a staff endpoint with 401, not 429, once the limit is spent', async () => {
      ctx.clock.advance(60_000);
      for (let i = 0; i < 21; i++) await signUp(100 + i, {});
      expect((await signUp(200, {})).status).toBe(429);
      const staff = await request(app).post('/api/v1/cases/C-2026-000001/notes').set('Authorization', 'Basic eDp4').send({ text: 'x' });
      expect(staff.status).toBe(401);
    });

    it('lets a signed-in user past the anonymous limit, and answers a forged session 401', async () => {
      ctx.clock.advance(60_000);
      for (let i = 0; i < 21; i++) await signUp(300 + i, {});
      expect((await signUp(400, { Authorization: 'Bearer not-a-session' })).status).toBe(401);
      const { auth } = await apiUser(ctx, 'customer');
      expect((await signUp(401, auth)).status).toBe(202);
    });
  });
});
