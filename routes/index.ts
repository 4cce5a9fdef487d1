import express, { type Express, type Router } from 'express';
import type { RouteContext } from './context';
import { adminPages } from './admin';
import { authApi, authPages, usersApi } from './auth';
import { openapiApi } from './openapi';
import { publicPages } from './pages';

/**
 * The API's modules and their prefixes under /api/v1. The OpenAPI test walks this list, so
 * every API route must be reachable from here.
 */
export function apiModules(ctx: RouteContext): Array<{ prefix: string; router: Router }> {
  return [
    { prefix: '', router: openapiApi() },
    { prefix: '/auth', router: authApi(ctx) },
    { prefix: '/users', router: usersApi(ctx) },
  ];
}

export function mountRoutes(app: Express, ctx: RouteContext) {
  app.use(publicPages(ctx));
  app.use(authPages(ctx));
  app.use(adminPages(ctx));

  const api = express.Router();
  for (const { prefix, router } of apiModules(ctx)) api.use(prefix || '/', router);
  app.use('/api/v1', api);
}
