import { type Request } from 'express';
import { Router } from './router';
import { requireRole } from '../server/middleware/auth';
import { z } from 'zod';
import { formAction } from '../server/middleware/forms';
import { pagination, parseQuery, toPage, pageBody } from '../server/middleware/validate';
import type { VerifyResult } from '../server/services/audit';
import type { RouteContext } from './context';

const admin = requireRole('admin');

const blank = (v: unknown) => (v === '' ? undefined : v);
const day = (label: string) => z.preprocess(blank, z.iso.date(`${label}: use a date like 2026-03-31.`).transform((d) => new Date(`${d}T00:00:00Z`)).optional());

export const auditQuery = pagination.extend({
  actor: z.preprocess(blank, z.string().regex(/^[a-f0-9]{24}$/, 'Choose a person from the list.').optional()),
  action: z.preprocess(blank, z.string().trim().max(100, 'An action is at most 100 characters.').regex(/^[a-z0-9.-]+$/, 'An action looks like case.status-changed.').optional()),
  from: day('From'),
  to: day('To'),
});

/** The filters as the page's links repeat them (pager), without the page itself. */
const filterUrl = (query: Record<string, unknown>) => {
  const params = new URLSearchParams();
  for (const k of ['actor', 'action', 'from', 'to']) if (typeof query[k] === 'string' && query[k]) params.set(k, query[k] as string);
  const qs = params.toString();
  return qs ? `/admin/audit?${qs}` : '/admin/audit';
};

/** The audit log for admins: entries newest first, and "verify now" over the whole chain. */
export function auditPages({ services }: RouteContext) {
  const router = Router();

  const auditPage = async (req: Request, result: VerifyResult | null = null) => {
    const query = parseQuery(auditQuery, req);
    const page = toPage(query);
    const found = await services.audit.browse({ actorId: query.actor, action: query.action, from: query.from, to: query.to }, page);
    return { title: 'Audit log', ...found, page, result, filters: req.query, baseUrl: filterUrl(req.query as Record<string, unknown>) };
  };
  // A bad filter shows the newest entries, with the field named and what was typed kept.
  const unfilteredPage = async (req: Request) => {
    const page = toPage({ page: 1, perPage: 25 });
    return { title: 'Audit log', ...(await services.audit.browse({}, page)), page, result: null, filters: req.query, baseUrl: '/admin/audit' };
  };

  router.get('/admin/audit', admin, formAction('audit/index', unfilteredPage, async (req, res) => res.render('audit/index', await auditPage(req))));

  router.post('/admin/audit/verify', admin, async (req, res) => {
    const result = await services.audit.verify();
    res.render('audit/index', await auditPage(req, result));
  });

  return router;
}

export function auditApi({ services }: RouteContext) {
  const router = Router();
  router.use(admin);

  router.get('/', async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.audit.list(page);
    res.json(pageBody(items, total, page));
  });

  router.post('/verify', async (_req, res) => {
    res.json(await services.audit.verify());
  });

  return router;
}
