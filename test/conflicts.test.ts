import request from 'supertest';
import { loadOpenApi } from '../server/openapi';
import { actorOf, makeReportCase, makeStaff } from './helpers/cases';
import { makeRegistration } from './helpers/catalogue';
import { createTestContext, type TestContext } from './helpers/context';
import { makeUser, pageAgent } from './helpers/factories';

/**
 * Issue 20, finding 2: a case hidden from someone (a conflict of interest) is hidden from
 * every list, timeline, count and search they can reach. This sweep asks every GET operation
 * of the OpenAPI document and every page route, as the conflicted investigator, and looks for
 * the case's number and title in what comes back.
 */

type Agent = ReturnType<typeof pageAgent>;

/** Every page route (method and path) of the app: routers mounted at the root, not the API. */
function pageRoutes(app: TestContext['app']) {
  type Layer = { route?: { path: unknown; methods: Record<string, boolean> }; slash?: boolean; handle?: { stack?: Layer[] } };
  const found: Array<{ method: string; path: string }> = [];
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route && typeof layer.route.path === 'string') for (const method of Object.keys(layer.route.methods)) found.push({ method, path: layer.route.path });
      else if (layer.slash && layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return found;
}

/** The GET operations of the API document, as paths under /api/v1. */
function apiGetPaths(): string[] {
  const paths = loadOpenApi().paths ?? {};
  return Object.entries(paths)
    .filter(([, item]) => (item as Record<string, unknown>).get)
    .map(([p]) => `/api/v1${p}`);
}

/** Everything a response carried, whatever its type (HTML, JSON, CSV, JSON-LD). */
const bodyOf = (res: request.Response) => `${res.text ?? ''}${res.body && typeof res.body === 'object' && !Buffer.isBuffer(res.body) ? JSON.stringify(res.body) : ''}`;

describe('a case hidden from a conflicted investigator, everywhere', () => {
  let ctx: TestContext;
  let params: Record<string, string>;
  let hidden: { caseId: string; title: string };
  let conflicted: { agent: Agent; auth: Record<string, string> };
  let colleague: { agent: Agent; auth: Record<string, string> };

  async function staffAgents(role: 'investigator' | 'admin' = 'investigator') {
    const made = await makeUser(ctx, role);
    const agent = pageAgent(ctx);
    expect((await agent.form('/login', { email: made.email, password: made.password })).status).toBe(303);
    const { token } = await ctx.services.auth.issueSession(made.user);
    return { user: made.user, actor: actorOf(made.user), agent, auth: { Authorization: `Bearer ${token}` } };
  }

  beforeAll(async () => {
    ctx = await createTestContext({ RATE_LIMIT_PUBLIC_POST_PER_MIN: '10000', RATE_LIMIT_LOGIN_PER_15MIN: '10000' });
    // A registered high-risk unit with a transfer waiting for approval (its page shows the timeline).
    const { unit, model, registration, user: owner } = await makeRegistration(ctx, { riskLevel: 'high' });
    const { transfer } = await ctx.services.registrations.requestTransfer(unit._id, { kind: 'relocation', country: 'TZ', reason: 'New site', effectiveDate: ctx.clock.now() }, String(owner._id));

    // Another case first, so the hidden one is not C-YYYY-000001 (the API document's example).
    await makeReportCase(ctx, { country: 'KE' });
    const { caseId, reportId, evidence } = await makeReportCase(ctx, { unitId: unit._id, country: 'TZ' });
    const lead = await makeStaff(ctx);
    await ctx.services.cases.assign(caseId, lead.actor.id, lead.actor);
    await ctx.services.cases.addAction(caseId, { kind: 'request-information', customer: 'Lagos Logistics' }, lead.actor);
    const identityRequest = await ctx.services.cases.requestIdentity(caseId, 'To reach the witness.', lead.actor);

    const blocked = await staffAgents();
    await ctx.services.cases.declareConflict(caseId, blocked.actor.id, 'Former employee of the customer', lead.actor);
    conflicted = blocked;
    colleague = await staffAgents();
    hidden = { caseId, title: (await ctx.services.cases.getCase(caseId)).title };

    params = {
      id: caseId,
      unitId: unit._id,
      modelId: model._id,
      registrationId: registration._id,
      transferId: transfer._id,
      reportId,
      fileId: evidence[0]!.fileId,
      userId: lead.actor.id,
      requestId: identityRequest._id,
      actionId: 'act_none',
      importId: 'none',
      jobId: 'none',
      index: '0',
      kind: 'cases',
    };
  });
  afterAll(() => ctx.close());

  const fill = (path: string) => path.replace(/\{(\w+)\}|:(\w+)/g, (_m, a?: string, b?: string) => encodeURIComponent(params[(a ?? b)!] ?? 'x'));

  const leaks = (res: request.Response) => [hidden.caseId, hidden.title].filter((s) => bodyOf(res).includes(s));

  it('never shows the case, by number or title, in any API answer to the conflicted investigator', async () => {
    const paths = apiGetPaths();
    expect(paths.length).toBeGreaterThan(25);
    const found: string[] = [];
    for (const path of paths) {
      const res = await request(ctx.app).get(fill(path)).set(conflicted.auth).buffer(true);
      const leaked = leaks(res);
      if (leaked.length) found.push(`${path} → ${res.status}: ${leaked.join(', ')}`);
    }
    expect(found).toEqual([]);
  });

  it('never shows the case, by number or title, on any page the conflicted investigator opens', async () => {
    const routes = pageRoutes(ctx.app).filter((r) => r.method === 'get');
    expect(routes.length).toBeGreaterThan(20);
    const found: string[] = [];
    for (const route of routes) {
      const res = await conflicted.agent.get(fill(route.path)).buffer(true);
      const leaked = leaks(res);
      if (leaked.length) found.push(`${route.path} → ${res.status}: ${leaked.join(', ')}`);
    }
    expect(found).toEqual([]);
  });

  it('still shows the unit to the conflicted investigator, only without the case', async () => {
    const timeline = await request(ctx.app).get(fill('/api/v1/units/{unitId}/timeline')).set(conflicted.auth);
    expect(timeline.status).toBe(200);
    expect(timeline.body.entries.map((e: { kind: string }) => e.kind)).toContain('registration');
    expect(timeline.body.entries.map((e: { kind: string }) => e.kind)).not.toContain('case');
    const page = await conflicted.agent.get(fill('/units/:unitId'));
    expect(page.status).toBe(200);
    expect(page.text).toContain(params.unitId);
  });

  it('shows the case where expected to an investigator without a conflict (so the sweep can fail)', async () => {
    const seen = async (res: request.Response) => {
      expect(res.status).toBe(200);
      expect(bodyOf(res)).toContain(hidden.caseId);
    };
    await seen(await request(ctx.app).get(fill('/api/v1/units/{unitId}/timeline')).set(colleague.auth));
    await seen(await request(ctx.app).get('/api/v1/cases?status=all').set(colleague.auth));
    await seen(await request(ctx.app).get(fill('/api/v1/cases/{id}')).set(colleague.auth));
    await seen(await request(ctx.app).get(fill('/api/v1/cases/{id}/identity-requests')).set(colleague.auth));
    await seen(await colleague.agent.get(fill('/units/:unitId')));
    await seen(await colleague.agent.get(fill('/admin/transfers/:transferId')));
    await seen(await colleague.agent.get('/cases?status=all'));
    await seen(await colleague.agent.get(fill('/cases/:id')));
    const timeline = await request(ctx.app).get(fill('/api/v1/units/{unitId}/timeline')).set(colleague.auth);
    expect(timeline.body.entries).toContainEqual(expect.objectContaining({ kind: 'case', title: `Case ${hidden.caseId} opened` }));
  });
});
