import { Router } from './router';
import { requireRole } from '../server/middleware/auth';
import type { RouteContext } from './context';

/** The admin hub: links to each module's admin pages (accounts, catalogue, audit, …). */
export function adminPages(_ctx: RouteContext) {
  const router = Router();
  router.get('/admin', requireRole('admin'), (_req, res) => res.render('admin/index', { title: 'Administration' }));
  return router;
}
