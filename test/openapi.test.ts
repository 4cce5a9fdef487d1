import request from 'supertest';
import { loadOpenApi } from '../server/openapi';
import { apiModules } from '../routes';
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
});
