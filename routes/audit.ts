import { type Request } from 'express';
import { Router } from './router';
import { requireRole } from '../server/middleware/auth';
import { pagination, parseQuery, toPage, pageBody } from '../server/middleware/validate';
import type { VerifyResult } from '../server/services/audit';
import type { RouteContext } from './context';

const admin = requireRole('admin');

/** The audit log for admins: entries newest first, and "verify now" over the whole chain. */
export function auditPages({ services }: RouteContext) {
  const router = Router();

  const auditPage = async (req: Request, result: VerifyResult | null = null) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.audit.list(page);
    return { title: 'Audit log', items, total, page, result };
  };

  router.get('/admin/audit', admin, async (req, res) => res.render('audit/index', await auditPage(req)));

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
