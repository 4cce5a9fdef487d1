import type { NextFunction, Request, RequestHandler, Response } from 'express';
import jwt from 'jsonwebtoken';
import type { Config } from '../config';
import { ForbiddenError, HttpError, UnauthorizedError } from '../errors';
import type { Role } from '../../models/auth';
import type { AuthService, AuthUser } from '../services/auth';
import { normalisedPath } from './request-path';

declare module 'express-serve-static-core' {
  interface Request {
    user?: AuthUser;
  }
}

export const isApiRequest = (req: Request) => normalisedPath(req.originalUrl).startsWith('/api/');

export function sessionCookieName(config: Config) {
  // __Host- cookies need Secure; plain HTTP in development gets the plain name.
  return config.cookieSecure ? '__Host-ds_session' : 'ds_session';
}

/** `maxAge`, not an absolute date: the browser's clock, not ours, decides when it lapses. */
export function sessionCookieOptions(config: Config, withLifetime = false) {
  return {
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: config.cookieSecure,
    path: '/',
    ...(withLifetime ? { maxAge: config.jwt.ttlMinutes * 60_000 } : {}),
  };
}

/**
 * Pages authenticate by the session cookie; the JSON API only by a Bearer token, so that no
 * ambient credential reaches /api (and CSRF cannot either). A bad API token is a 401; a bad
 * page cookie is dropped and the visitor treated as signed out.
 */
export function loadUser(auth: AuthService, config: Config): RequestHandler {
  const cookieName = sessionCookieName(config);
  return async (req: Request, res: Response, next: NextFunction) => {
    if (isApiRequest(req)) {
      const header = req.headers.authorization;
      // `dsk_…` bearer tokens are API keys, checked by requireApiKey on the routes that take them.
      if (header?.startsWith('Bearer ') && !header.slice(7).trim().startsWith('dsk_')) req.user = await auth.authenticate(header.slice(7).trim());
      return next();
    }
    const token: unknown = req.cookies?.[cookieName];
    if (typeof token === 'string' && token) {
      try {
        req.user = await auth.authenticate(token);
      } catch (err) {
        if (!(err instanceof jwt.JsonWebTokenError) && !(err instanceof HttpError)) throw err;
        res.clearCookie(cookieName, sessionCookieOptions(config));
      }
    }
    res.locals.user = req.user ?? null;
    next();
  };
}

/** Only a same-site path may follow a login: no `//evil.example`, no `/\evil`. */
export function safeNextPath(next: unknown): string | null {
  if (typeof next !== 'string' || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return null;
  if (/[\r\n]/.test(next) || next.length > 500) return null;
  return next;
}

export function requireRole(...roles: Role[]): RequestHandler {
  return (req, res, next) => {
    if (!req.user) {
      if (isApiRequest(req)) return next(new UnauthorizedError());
      return res.redirect(303, `/login?next=${encodeURIComponent(req.originalUrl)}`);
    }
    if (roles.length && !roles.includes(req.user.role)) return next(new ForbiddenError());
    next();
  };
}

export const requireSignedIn = requireRole();
