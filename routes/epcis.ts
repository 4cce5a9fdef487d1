import express from 'express';
import { z } from 'zod';
import { Router } from './router';
import { NotFoundError } from '../server/errors';
import { requireApiKey } from '../server/middleware/api-key';
import { requireRole } from '../server/middleware/auth';
import { pageBody, pagination, parse, parseBody, parseQuery, toPage } from '../server/middleware/validate';
import { captureView } from '../server/services/epcis';
import type { RouteContext } from './context';

/**
 * EPCIS 2.0 REST binding (GS1): capture with a job to poll, the simple event query, and the
 * current state of one item; plus the location master data that places locations in countries.
 */

export const EPCIS_CAPTURE_PATH = '/api/v1/epcis/capture';
/** 10,000 events of ~1 KB: the capture route alone gets this parser (mounted in app.ts before the global one). */
export const epcisCaptureBodyParser = express.json({ limit: '16mb', type: ['application/json', 'application/ld+json'] });

/** A parameter given once, repeated, or as `a|b` (the binding's "any of"). */
const anyOf = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => [v].flat().flatMap((s) => s.split('|')).map((s) => s.trim()).filter(Boolean))
  .refine((l) => l.length <= 100, 'At most 100 values.')
  .optional();
const time = (label: string) => z.iso.datetime({ offset: true, message: `${label}: an ISO 8601 time with a time zone, e.g. 2026-01-15T10:00:00Z.` }).transform((s) => new Date(s)).optional();

const eventsQuery = z
  .object({
    eventType: anyOf,
    GE_eventTime: time('GE_eventTime'),
    LT_eventTime: time('LT_eventTime'),
    EQ_bizStep: anyOf,
    MATCH_epc: anyOf,
    MATCH_anyEPC: anyOf,
    EQ_bizLocation: anyOf,
    perPage: z.coerce.number('perPage: a number from 1 to 1000.').int('perPage: a number from 1 to 1000.').min(1, 'perPage: a number from 1 to 1000.').max(1000, 'perPage: a number from 1 to 1000.').default(100),
    nextPageToken: z.string().max(2000).optional(),
  })
  .strict();

const captureHeaders = z.object({ 'GS1-Capture-Error-Behaviour': z.enum(['rollback', 'proceed'], 'Send rollback or proceed.').default('rollback') });
const locationInput = z.object({ country: z.string('Country is required.').trim().min(1, 'Country is required.'), name: z.string().trim().max(200).default('') }).strict();
const locationParams = z.object({ locationId: z.string().trim().min(1, 'Name the location.').max(500, 'A location id has at most 500 characters.') });

export function epcisApi({ services }: RouteContext) {
  const router = Router();
  const capture = requireApiKey(services.auth, 'epcis:capture');
  const query = requireApiKey(services.auth, 'epcis:query');
  const admin = requireRole('admin');

  router.post('/capture', capture, async (req, res) => {
    const headers = parse(captureHeaders, { 'GS1-Capture-Error-Behaviour': req.get('GS1-Capture-Error-Behaviour') || undefined });
    const job = await services.epcis.startCapture(req.apiKey!.id, req.body, headers['GS1-Capture-Error-Behaviour']);
    res.status(202).location(`/api/v1/epcis/capture/${job._id}`).set('GS1-EPCIS-Version', '2.0.0').json(captureView(job));
  });

  router.get('/capture/:captureId', capture, async (req, res) => {
    const job = await services.epcis.getCapture(String(req.params.captureId));
    // A capture is its sender's: another key learns nothing of it, not even that it exists.
    if (job.apiKeyId !== req.apiKey!.id) throw new NotFoundError('No such capture job.');
    res.json(captureView(job));
  });

  router.get('/events', query, async (req, res) => {
    const q = parseQuery(eventsQuery, req);
    const { document, nextPageToken } = await services.epcis.events(q);
    if (nextPageToken) {
      const next = new URLSearchParams(Object.entries(req.query).flatMap(([k, v]) => (k === 'nextPageToken' ? [] : [v].flat().map((s) => [k, String(s)] as [string, string]))));
      next.set('nextPageToken', nextPageToken);
      res.set('Link', `</api/v1/epcis/events?${next.toString()}>; rel="next"`);
    }
    res.set('GS1-EPCIS-Version', '2.0.0').type('application/ld+json').send(JSON.stringify(document));
  });

  router.get('/currentState/:epc', query, async (req, res) => {
    res.json(await services.epcis.currentState(String(req.params.epc)));
  });

  router.get('/locations', admin, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.epcis.listLocations(page);
    res.json(pageBody(items.map((l) => ({ id: l._id, country: l.country, name: l.name, updatedAt: l.updatedAt })), total, page));
  });

  router.put('/locations/:locationId', admin, async (req, res) => {
    const { country, name } = parseBody(locationInput, req);
    const l = await services.epcis.setLocation(parse(locationParams, req.params).locationId, country, name, { userId: req.user!.id });
    res.json({ id: l._id, country: l.country, name: l.name, updatedAt: l.updatedAt });
  });

  return router;
}
