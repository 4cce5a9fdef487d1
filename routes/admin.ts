import { Router } from './router';
import { requireRole } from '../server/middleware/auth';
import { pagination, parseQuery, toPage } from '../server/middleware/validate';
import type { RouteContext } from './context';

const admin = requireRole('admin');

/** The admin hub: links to each module's admin pages (accounts, catalogue, audit, …); the mail outbox. */
export function adminPages({ services }: RouteContext) {
  const router = Router();
  const { outbox } = services.notifications;
  router.get('/admin', admin, (_req, res) => res.render('admin/index', { title: 'Administration', outboxInUse: outbox.inUse }));

  // The mails written to DATA_DIR/outbox while no SMTP server is configured.
  router.get('/admin/outbox', admin, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    res.render('admin/outbox', { title: 'Mail outbox', inUse: outbox.inUse, ...(await outbox.list(page)), page, baseUrl: '/admin/outbox' });
  });
  router.get('/admin/outbox/:messageId', admin, async (req, res) => {
    const message = await outbox.message(String(req.params.messageId));
    res.render('admin/outbox-message', { title: message.subject || 'Mail', message });
  });
  return router;
}
