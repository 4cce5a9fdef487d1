import type { Request } from 'express';
import { z } from 'zod';
import { Router } from './router';
import { WEBHOOK_EVENT_TYPES } from '../server/domain/webhooks';
import { requireRole } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { pageBody, pagination, parse, parseBody, parseQuery, shortText, toPage } from '../server/middleware/validate';
import { DEFAULT_OVERLAP_HOURS } from '../server/services/webhooks';
import type { RouteContext } from './context';
import { labelled } from './form-labels';

/** Webhook subscriptions and their delivery logs (admins): JSON API and admin pages. */

const listOf = <T extends z.ZodType>(item: T) => z.preprocess((v) => (v === undefined || v === '' ? [] : [v].flat()), z.array(item));
const eventTypeList = listOf(z.enum(WEBHOOK_EVENT_TYPES, `Event types are among: ${WEBHOOK_EVENT_TYPES.join(', ')}.`));
const subscriptionFields = z.object({
  url: z.string('URL is required.').trim().min(1, 'URL is required.').max(2000, 'A URL has at most 2,000 characters.'),
  eventTypes: eventTypeList.refine((l) => l.length > 0, 'Choose at least one event type.'),
  description: shortText(200, 'Description').default(''),
});
const subscriptionLabels = { url: 'URL', eventTypes: 'Event types', description: 'Description' };
/** A saved EPCIS query: `GET /api/v1/epcis/events`'s filters (not its times or paging), each a list meaning "any of". */
const savedValues = (label: string) => z.array(z.string(`${label}: a list of strings.`).trim().min(1, `${label}: no empty values.`).max(500, `${label}: values of at most 500 characters.`), `${label}: a list of strings.`).max(100, `${label}: at most 100 values.`).default([]);
const epcisQueryInput = z
  .object({ eventType: savedValues('eventType'), EQ_bizStep: savedValues('EQ_bizStep'), MATCH_epc: savedValues('MATCH_epc'), MATCH_anyEPC: savedValues('MATCH_anyEPC'), EQ_bizLocation: savedValues('EQ_bizLocation') })
  .strict();
const rotateFields = z.object({ overlapHours: z.coerce.number('Overlap: a number of hours from 0 to 168.').int('Overlap: whole hours.').min(0, 'Overlap: at least 0 hours.').max(168, 'Overlap: at most 168 hours (a week).').default(DEFAULT_OVERLAP_HOURS) });
// The API refuses fields it does not know; the pages' forms also carry their CSRF token.
// An EPCIS query subscription (API only) may have no event types: its saved query is what it wants.
const subscriptionInput = subscriptionFields.extend({ eventTypes: eventTypeList, epcisQuery: epcisQueryInput.optional() }).strict();
const rotateInput = rotateFields.strict();
const rotateLabels = { overlapHours: 'Overlap (hours)' };
const ids = z.object({ id: z.string().regex(/^whs_[0-9a-f]{20}$/, 'No such webhook subscription.') });
const deliveryIds = ids.extend({ deliveryId: z.string().min(1).max(200) });

export function webhooksApi({ services }: RouteContext) {
  const router = Router();
  router.use(requireRole('admin'));
  const actor = (req: Request) => ({ userId: req.user!.id });

  router.get('/', async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.webhooks.listSubscriptions(page);
    res.json(pageBody(items, total, page));
  });

  router.post('/', async (req, res) => {
    const { subscription, secret } = await services.webhooks.subscribe(parseBody(subscriptionInput, req), actor(req));
    res.set('Cache-Control', 'no-store').status(201).json({ subscription, secret });
  });

  router.get('/:id', async (req, res) => {
    res.json({ subscription: await services.webhooks.subscription(parse(ids, req.params).id) });
  });

  router.delete('/:id', async (req, res) => {
    res.json({ subscription: await services.webhooks.unsubscribe(parse(ids, req.params).id, actor(req)) });
  });

  router.post('/:id/rotate-secret', async (req, res) => {
    const { subscription, secret } = await services.webhooks.rotateSecret(parse(ids, req.params).id, parseBody(rotateInput, req).overlapHours, actor(req));
    res.set('Cache-Control', 'no-store').json({ subscription, secret });
  });

  router.get('/:id/deliveries', async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.webhooks.deliveries(parse(ids, req.params).id, page);
    res.json(pageBody(items, total, page));
  });

  router.post('/:id/deliveries/:deliveryId/retry', async (req, res) => {
    const { id, deliveryId } = parse(deliveryIds, req.params);
    res.json({ delivery: await services.webhooks.redeliver(id, deliveryId, actor(req)) });
  });

  return router;
}

export function webhookPages({ services }: RouteContext) {
  const router = Router();
  const admin = requireRole('admin');
  const actor = (req: Request) => ({ userId: req.user!.id });

  const listPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.webhooks.listSubscriptions(page);
    return { title: 'Webhooks', subscriptions: items, total, page, eventTypes: WEBHOOK_EVENT_TYPES, created: null };
  };
  const detailPage = async (req: Request) => {
    const { id } = parse(ids, req.params);
    const page = toPage(parseQuery(pagination, req));
    const [subscription, deliveries] = await Promise.all([services.webhooks.subscription(id), services.webhooks.deliveries(id, page)]);
    return { title: `Webhook ${subscription.url}`, subscription, deliveries: deliveries.items, total: deliveries.total, page, newSecret: null };
  };

  router.get('/admin/webhooks', admin, labelled(subscriptionLabels), async (req, res) => res.render('webhooks/index', await listPage(req)));

  router.post(
    '/admin/webhooks',
    admin,
    labelled(subscriptionLabels),
    formAction('webhooks/index', listPage, async (req, res) => {
      const { subscription, secret } = await services.webhooks.subscribe(parseBody(subscriptionFields, req), actor(req));
      // The secret is shown this once, on this answer (never in a redirect or a flash).
      res.set('Cache-Control', 'no-store');
      res.status(201).render('webhooks/index', { ...(await listPage(req)), created: { subscription, secret } });
    }),
  );

  router.get('/admin/webhooks/:id', admin, labelled(rotateLabels), async (req, res) => res.render('webhooks/show', await detailPage(req)));

  router.post(
    '/admin/webhooks/:id/rotate-secret',
    admin,
    labelled(rotateLabels),
    formAction('webhooks/show', detailPage, async (req, res) => {
      const { secret } = await services.webhooks.rotateSecret(parse(ids, req.params).id, parseBody(rotateFields, req).overlapHours, actor(req));
      res.set('Cache-Control', 'no-store');
      res.render('webhooks/show', { ...(await detailPage(req)), newSecret: secret });
    }),
  );

  // Removing shows a confirmation page first; the POST from it removes.
  router.get('/admin/webhooks/:id/remove', admin, async (req, res) => {
    const subscription = await services.webhooks.subscription(parse(ids, req.params).id);
    res.render('webhooks/remove', { title: 'Remove a webhook', subscription });
  });

  router.post('/admin/webhooks/:id/remove', admin, async (req, res) => {
    const removed = await services.webhooks.unsubscribe(parse(ids, req.params).id, actor(req));
    res.flash(`Webhook to ${removed.url} removed: nothing more is sent to it.`);
    res.redirect(303, '/admin/webhooks');
  });

  router.post('/admin/webhooks/:id/deliveries/:deliveryId/retry', admin, async (req, res) => {
    const { id, deliveryId } = parse(deliveryIds, req.params);
    await services.webhooks.redeliver(id, deliveryId, actor(req));
    res.flash('The delivery is queued again and will be tried within seconds.');
    res.redirect(303, `/admin/webhooks/${id}`);
  });

  return router;
}
