import type { NextFunction, Request, Response } from 'express';
import { z } from 'zod';
import { Router } from './router';
import { requireRole } from '../server/middleware/auth';
import { pagination, pageBody, parseBody, parseQuery, toPage } from '../server/middleware/validate';
import type { RouteContext } from './context';

const staff = requireRole('investigator', 'admin');
const isStaff = (req: Request) => req.user?.role === 'investigator' || req.user?.role === 'admin';

/** The newest notice the page showed: marking read stops there, so one that arrived since stays unread. */
export const markReadInput = z.object({ upTo: z.iso.datetime({ message: 'upTo: reload the page and try again.', offset: true }).transform((v) => new Date(v)) });

/** Staff notices in the portal: the unread count in the navigation, the page, marking read. */
export function notificationPages({ services }: RouteContext) {
  const router = Router();
  const { notifications } = services;

  // The count in the navigation of every staff page (not the API): one `_id` read.
  router.use(async (req: Request, res: Response, next: NextFunction) => {
    if (req.method === 'GET' && !req.path.startsWith('/api/') && isStaff(req)) res.locals.unreadNotices = await notifications.unreadCount(req.user!.id);
    next();
  });

  router.get('/notifications', staff, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const inbox = await notifications.inbox(req.user!.id, page);
    res.render('notifications/index', { title: 'Notifications', ...inbox, page, baseUrl: '/notifications' });
  });

  router.post('/notifications/read', staff, async (req, res) => {
    await notifications.markRead(req.user!.id, parseBody(markReadInput, req).upTo);
    res.flash('Notifications marked as read.');
    res.redirect(303, '/notifications');
  });

  return router;
}

/** `GET /api/v1/notifications`: the signed-in staff member's notices, newest first. */
export function notificationsApi({ services }: RouteContext) {
  const router = Router();
  router.get('/', staff, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total, unread } = await services.notifications.inbox(req.user!.id, page);
    res.json({ ...pageBody(items, total, page), unread });
  });
  router.post('/read', staff, async (req, res) => {
    await services.notifications.markRead(req.user!.id, parseBody(markReadInput, req).upTo);
    res.json({ unread: await services.notifications.unreadCount(req.user!.id) });
  });
  return router;
}
