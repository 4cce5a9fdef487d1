import type { Request, RequestHandler } from 'express';
import { doubleCsrf } from 'csrf-csrf';
import type { Config } from '../config';
import { isApiRequest } from './auth';

/**
 * Signed double-submit CSRF tokens (csrf-csrf) for every cookie-authenticated form, bound to
 * the session id when signed in. /api is exempt because it never reads cookies.
 * Multipart forms are checked by `csrf.protect` placed after multer, once the body is parsed, or
 * before it (server/middleware/uploads.ts `csrfBeforeBody`) when the form's address carries it.
 */
export function createCsrf(config: Config) {
  const { doubleCsrfProtection, generateCsrfToken, invalidCsrfTokenError } = doubleCsrf({
    getSecret: () => config.jwt.secret,
    getSessionIdentifier: (req: Request) => req.user?.sessionId ?? '',
    cookieName: config.cookieSecure ? '__Host-ds_csrf' : 'ds_csrf',
    cookieOptions: { sameSite: 'lax', secure: config.cookieSecure, httpOnly: true, path: '/' },
    getCsrfTokenFromRequest: (req: Request) => {
      const fromBody: unknown = (req.body as Record<string, unknown> | undefined)?._csrf;
      if (typeof fromBody === 'string') return fromBody;
      // An upload form may put it in its address, so that it is checked before the files arrive.
      const fromQuery: unknown = (req.query as Record<string, unknown> | undefined)?._csrf;
      return typeof fromQuery === 'string' ? fromQuery : req.headers['x-csrf-token'];
    },
    skipCsrfProtection: (req: Request) => isApiRequest(req),
  });

  const isMultipart = (req: Request) => Boolean(req.is('multipart/form-data'));

  /** Global: checks urlencoded/JSON form posts, and puts a token in every page's locals. */
  const middleware: RequestHandler = (req, res, next) => {
    // One token per response: a second generation would overwrite the cookie and orphan the
    // token already printed in an earlier form on the same page.
    let token: string | undefined;
    res.locals.csrfToken = () => (token ??= generateCsrfToken(req, res));
    if (isMultipart(req)) return next();
    doubleCsrfProtection(req, res, next);
  };

  return { middleware, protect: doubleCsrfProtection, invalidCsrfTokenError, generateCsrfToken };
}
