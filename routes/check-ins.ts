import express from 'express';
import { Router } from './router';
import { z } from 'zod';
import type { Clock } from '../server/clock';
import { isCountryCode } from '../server/countries';
import { requireApiKey } from '../server/middleware/api-key';
import { parseBody } from '../server/middleware/validate';
import { normaliseCode } from '../server/services/catalogue';
import { MAX_BATCH } from '../server/services/check-ins';
import type { RouteContext } from './context';

/**
 * A full batch (1,000 items of up to ~400 bytes) is larger than the app's default body limit
 * for forms and other API calls; only this route gets the larger parser (mounted in app.ts
 * before the global one).
 */
export const CHECK_IN_BATCH_PATH = '/api/v1/check-ins/batch';
export const checkInBatchBodyParser = express.json({ limit: '512kb' });

/** Device clocks drift; a check-in more than a day ahead of ours is a broken clock, not news. */
const MAX_CLOCK_AHEAD_MS = 86_400_000;

const code = (label: string) =>
  z
    .string(`${label} is required.`)
    .trim()
    .min(1, `${label} is required.`)
    .max(64, `${label} must be at most 64 characters.`)
    .regex(/^[A-Za-z0-9._/ -]+$/, `${label} may contain letters, digits, spaces and . _ / - only.`)
    .transform(normaliseCode);

export function checkInItem(clock: Clock) {
  return z
    .object({
      serial: code('Serial'),
      model: code('Model (SKU)').optional(),
      firmware: z.string('Firmware version is required.').trim().min(1, 'Firmware version is required.').max(64, 'Firmware version must be at most 64 characters.'),
      observedAt: z
        .iso.datetime({ offset: true, message: 'Give the time as ISO 8601 with a time zone, e.g. 2026-01-15T10:00:00+03:00.' })
        .transform((s) => new Date(s))
        .refine((d) => d.getTime() <= clock.now().getTime() + MAX_CLOCK_AHEAD_MS, 'The observed time is more than a day in the future.'),
      country: z
        .string('Country is required.')
        .trim()
        .toUpperCase()
        .refine(isCountryCode, 'Use an ISO 3166-1 alpha-2 country code, e.g. KE.'),
      eventId: z
        .string()
        .regex(/^[A-Za-z0-9._-]{1,100}$/, 'Event id: 1 to 100 letters, digits, . _ or -.')
        .optional(),
    })
    .strict();
}

export function checkInBatch(clock: Clock) {
  return z
    .object({
      items: z
        .array(checkInItem(clock), 'items must be a list of check-ins.')
        .min(1, 'Send at least one check-in.')
        .max(MAX_BATCH, `At most ${MAX_BATCH.toLocaleString('en')} check-ins per batch.`),
    })
    .strict();
}

/**
 * Check-in ingest for update servers and devices (API key with the `check-ins` scope).
 * A batch with any invalid item is refused whole (400 naming `items.<index>.<field>`) and
 * nothing is stored: a caller fixes and resends one batch instead of working out which
 * items of a partly stored one to retry.
 */
export function checkInsApi({ services, clock }: RouteContext) {
  const router = Router();
  const item = checkInItem(clock);
  const batch = checkInBatch(clock);
  router.use(requireApiKey(services.auth, 'check-ins'));

  router.post('/', async (req, res) => {
    res.json(await services.checkIns.ingestOne(req.apiKey!.id, parseBody(item, req)));
  });

  router.post('/batch', async (req, res) => {
    res.json({ items: await services.checkIns.ingest(req.apiKey!.id, parseBody(batch, req).items) });
  });

  return router;
}
