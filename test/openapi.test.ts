import request from 'supertest';
import { loadOpenApi } from '../server/openapi';
import { apiModules } from '../routes';
import { PUBLIC_WRITE_PATHS } from '../server/middleware/rate-limit';
import { API_KEY_SCOPES } from '../server/domain/auth';
import type { RouteContext } from '../routes/context';
import { createTestContext, type TestContext } from './helpers/context';

type Layer = { route?: { path: string; methods: Record<string, boolean> }; name?: string; handle?: { stack?: Layer[] } };

/** Every (method, path) the API routers declare, with `:id` written the OpenAPI way. */
function declaredRoutes(ctx: RouteContext): string[] {
  const found: string[] = [];
  for (const { prefix, router } of apiModules(ctx)) {
    for (const layer of (router as unknown as { stack: Layer[] }).stack) {
      if (!layer.route) continue;
      const full = `${prefix}${layer.route.path === '/' ? '' : layer.route.path}` || '/';
      const openapiPath = full.replace(/:(\w+)/g, '{$1}');
      for (const method of Object.keys(layer.route.methods)) {
        if (method === '_all') continue;
        found.push(`${method.toUpperCase()} ${openapiPath}`);
      }
    }
  }
  return found.sort();
}

function documentedRoutes(): string[] {
  const doc = loadOpenApi();
  const found: string[] = [];
  for (const [p, item] of Object.entries(doc.paths ?? {})) {
    for (const method of Object.keys(item as object)) {
      if (['get', 'post', 'put', 'patch', 'delete'].includes(method)) found.push(`${method.toUpperCase()} ${p}`);
    }
  }
  return found.sort();
}

describe('OpenAPI document', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('documents exactly the routes the API serves', () => {
    const routeCtx = { config: ctx.config, services: ctx.services, clock: ctx.clock, middleware: ctx.app.locals.middleware };
    expect(routeCtx.middleware).toBeDefined();
    const declared = declaredRoutes(routeCtx);
    expect(declared.length).toBeGreaterThan(5);
    expect(documentedRoutes()).toEqual(declared);
  });

  it('is served as OpenAPI 3.1 JSON with every $ref resolvable', async () => {
    const res = await request(ctx.app).get('/api/v1/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    const refs = JSON.stringify(res.body).match(/"\$ref":"#\/components\/[^"]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) {
      const [, kind, name] = /#\/components\/(\w+)\/([^"]+)/.exec(ref)!;
      expect(res.body.components[kind!]?.[name!]).toBeDefined();
    }
  });

  /**
   * The 4xx answers that come from middleware, not from a route, so no route's code shows them:
   * a body can be malformed (400) or too large (413), and so can a query string (400: a list's
   * `perPage` past its maximum); an operation behind authentication answers 401 without
   * credentials; a public write counts against the anonymous limit (429).
   */
  it('documents on every operation the 4xx codes its middleware can answer', () => {
    const doc = loadOpenApi() as { paths: Record<string, Record<string, { security?: unknown[]; requestBody?: unknown; parameters?: unknown[]; responses?: Record<string, unknown> }>> };
    const missing: string[] = [];
    for (const [p, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
        const isPublic = Array.isArray(op.security) && op.security.length === 0;
        const expected = [
          ...(op.requestBody ? ['400', '413'] : []),
          ...(/"in":"query"|Page/.test(JSON.stringify(op.parameters ?? [])) ? ['400'] : []),
          ...(isPublic ? [] : ['401']),
          ...(isPublic && method !== 'get' ? ['429'] : []),
        ];
        for (const code of expected) if (!op.responses?.[code]) missing.push(`${method.toUpperCase()} ${p}: ${code}`);
        if (isPublic && method !== 'get' && !PUBLIC_WRITE_PATHS.includes(`/api/v1${p}`)) missing.push(`${method.toUpperCase()} ${p}: not counted by the anonymous limit`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('names every API key scope the service accepts, in the key and in the request that creates it', () => {
    // The fuzzer found keys with the sell-through scope answered against a schema that allowed check-ins only.
    const doc = loadOpenApi() as { components: { schemas: { ApiKey: { properties: { scopes: { items: { enum: string[] } } } } } }; paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: { scopes: { items: { enum: string[] } } } } }> } }>> };
    expect([...doc.components.schemas.ApiKey.properties.scopes.items.enum].sort()).toEqual([...API_KEY_SCOPES].sort());
    const create = doc.paths['/api-keys']!.post!.requestBody!.content['application/json']!.schema;
    expect([...create.properties.scopes.items.enum].sort()).toEqual([...API_KEY_SCOPES].sort());
  });

  it('answers TRACE on an API path with 405', async () => {
    const res = await request(ctx.app).trace('/api/v1/openapi.json');
    expect(res.status).toBe(405);
  });
});
