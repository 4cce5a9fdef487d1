import crypto from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator } from 'express-rate-limit';
import type { Clock } from '../clock';
import type { Config } from '../config';
import { ForbiddenError, TooManyRequestsError, UnauthorizedError } from '../errors';
import type { AuthService } from '../services/auth';
import type { LimitsStore } from '../store/limits';
import { apiKeyFrom } from './api-key';
import { normalisedPath } from './request-path';

/**
 * Limits on anonymous traffic, counted in the database (server/store/limits.ts) so that every
 * app instance behind a load balancer enforces the same ones.
 */

const MINUTE = 60_000;
const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * The writes anyone may send without credentials: the anonymous limit counts these. Every other
 * write needs a signed-in user or an API key, and its route answers an anonymous one with 401
 * (or the sign-in page) before doing any work, which is the answer it should get rather than
 * 429. `test/openapi.test.ts` checks that every public API write is listed here.
 */
export const PUBLIC_WRITE_PATHS = [
  '/login',
  '/login/code',
  '/login/enrol',
  '/password/forgot',
  '/password/reset',
  '/signup',
  '/signup/confirm',
  '/logout',
  '/report',
  '/follow-up',
  '/follow-up/messages',
  '/follow-up/evidence',
  '/api/v1/auth/signup',
  '/api/v1/auth/confirm',
  '/api/v1/auth/token',
  '/api/v1/reports',
  '/api/v1/follow-up',
  '/api/v1/follow-up/messages',
  '/api/v1/follow-up/evidence',
];

const isPublicWrite = (req: Request) => {
  const path = normalisedPath(req.originalUrl).replace(/\/+$/, '') || '/';
  return PUBLIC_WRITE_PATHS.includes(path);
};

/**
 * The one name limits know a client by: an HMAC of its address (IPv6 by its /56) under a key
 * derived from the server secret. Every instance derives the same key, so they count the same
 * client together, and the database never holds an address.
 */
export function createClientKey(config: Pick<Config, 'jwt'>) {
  const key = crypto.createHmac('sha256', config.jwt.secret).update('downstream/limits/client').digest();
  return (req: Request) => crypto.createHmac('sha256', key).update(ipKeyGenerator(req.ip ?? '')).digest('base64url').slice(0, 27);
}
export type ClientKey = ReturnType<typeof createClientKey>;

function refuse(res: Response, resetAt: Date, now: Date, message?: string): never {
  res.set('Retry-After', String(Math.max(1, Math.ceil((resetAt.getTime() - now.getTime()) / 1000))));
  throw new TooManyRequestsError(message);
}

export function createRateLimits(deps: { config: Config; clock: Clock; limits: LimitsStore; auth: Pick<AuthService, 'authenticateApiKey'> }) {
  const { config, clock, limits } = deps;
  const clientKey = createClientKey(config);

  /**
   * Only credentials that check out lift the anonymous limit: a signed-in user (loadUser has
   * verified the session) or a live API key of any scope. Any other `Authorization` or
   * `X-Api-Key` header is just a header.
   */
  async function validlyAuthenticated(req: Request): Promise<boolean> {
    if (req.user) return true;
    const key = apiKeyFrom(req.headers);
    if (!key) return false;
    try {
      await deps.auth.authenticateApiKey(key, 'check-ins');
      return true;
    } catch (err) {
      if (err instanceof ForbiddenError) return true; // a real key, for another scope
      if (err instanceof UnauthorizedError) return false;
      throw err;
    }
  }

  /** Failed logins per address and e-mail; a successful one takes its hit back. */
  const login: RequestHandler = async (req, res, next) => {
    const body = req.body as { email?: unknown } | undefined;
    const email = typeof body?.email === 'string' ? body.email.trim().toLowerCase() : '';
    const subject = crypto.createHash('sha256').update(`${clientKey(req)}|${email}`).digest('base64url').slice(0, 27);
    const now = clock.now();
    const window = 15 * MINUTE;
    // Counted before the attempt, so that parallel guesses cannot all pass one check.
    const hit = await limits.hitWindow('login', subject, window, now);
    if (hit.count > config.rateLimits.loginPer15Min) refuse(res, hit.resetAt, now, 'Too many sign-in attempts. Please wait 15 minutes and try again.');
    res.on('finish', () => {
      if (res.statusCode < 400) void limits.unhitWindow('login', subject, window, now).catch(() => {});
    });
    next();
  };

  /** Every anonymous write on the public surface (sign-up, login, reports, follow-ups, …), per address. */
  const publicPost: RequestHandler = async (req, res, next) => {
    if (READS.has(req.method) || !isPublicWrite(req) || (await validlyAuthenticated(req))) return next();
    const now = clock.now();
    const hit = await limits.hitWindow('public-write', clientKey(req), MINUTE, now);
    if (hit.count > config.rateLimits.publicPostPerMin) refuse(res, hit.resetAt, now);
    next();
  };

  return { login, publicPost, clientKey };
}
