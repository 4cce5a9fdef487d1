import type { RequestHandler } from 'express';
import { UnauthorizedError } from '../errors';
import type { ApiKeyScope } from '../../models/auth';
import type { AuthApiKey, AuthService } from '../services/auth';

declare module 'express-serve-static-core' {
  interface Request {
    apiKey?: AuthApiKey;
  }
}

export const API_KEY_PREFIX = 'dsk_';

/** The key from `Authorization: Bearer dsk_…` or `X-Api-Key: dsk_…`, if the request carries one. */
export function apiKeyFrom(headers: { authorization?: string; 'x-api-key'?: string | string[] }): string | null {
  const bearer = headers.authorization?.startsWith('Bearer ') ? headers.authorization.slice(7).trim() : '';
  if (bearer.startsWith(API_KEY_PREFIX)) return bearer;
  const header = headers['x-api-key'];
  return typeof header === 'string' && header.trim() ? header.trim() : null;
}

/**
 * Routes for update servers and devices: only an API key with `scope` opens them. A signed-in
 * user's token is not a key (401), so a leaked session cannot feed check-ins.
 */
export function requireApiKey(auth: AuthService, scope: ApiKeyScope): RequestHandler {
  return async (req, _res, next) => {
    const key = apiKeyFrom(req.headers);
    if (!key) throw new UnauthorizedError('This endpoint needs an API key (Authorization: Bearer dsk_… or X-Api-Key).', 'api_key_required');
    req.apiKey = await auth.authenticateApiKey(key, scope);
    next();
  };
}
