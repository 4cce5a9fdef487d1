import type { Request } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import type { Config } from '../config';
import { TooManyRequestsError } from '../errors';

// Counters live in process memory and expire with their window: nothing about who sent a
// request outlives a few minutes, which matters for the anonymous reporting channel.
const base = {
  standardHeaders: 'draft-8' as const,
  legacyHeaders: false,
  handler: (_req: Request, _res: unknown, next: (err: unknown) => void) => next(new TooManyRequestsError()),
};

export function createRateLimits(config: Config) {
  return {
    /** Failed logins per address and e-mail; successful ones do not count. */
    login: rateLimit({
      ...base,
      windowMs: 15 * 60_000,
      limit: config.rateLimits.loginPer15Min,
      skipSuccessfulRequests: true,
      keyGenerator: (req) => {
        const body = req.body as { email?: unknown } | undefined;
        const email = typeof body?.email === 'string' ? body.email.trim().toLowerCase() : '';
        return `${ipKeyGenerator(req.ip ?? '')}|${email}`;
      },
    }),
    /** Every anonymous state-changing request (sign-up, reports, follow-ups, …). */
    publicPost: rateLimit({
      ...base,
      windowMs: 60_000,
      limit: config.rateLimits.publicPostPerMin,
      skip: (req) => req.method === 'GET' || req.method === 'HEAD' || Boolean(req.user) || Boolean(req.headers.authorization) || Boolean(req.headers['x-api-key']),
    }),
  };
}
