import type { RequestHandler, Response } from 'express';
import type { Config } from '../config';

const COOKIE = 'ds_flash';

declare module 'express-serve-static-core' {
  interface Response {
    /** A one-line notice shown on the next page (post/redirect/get without client state). */
    flash(message: string): void;
  }
}

export function flash(config: Config): RequestHandler {
  return (req, res: Response, next) => {
    const pending: unknown = req.signedCookies?.[COOKIE];
    res.locals.flash = typeof pending === 'string' ? pending : null;
    if (pending !== undefined) res.clearCookie(COOKIE, { path: '/' });
    res.flash = (message: string) => {
      res.cookie(COOKIE, message.slice(0, 300), {
        signed: true,
        httpOnly: true,
        sameSite: 'lax',
        secure: config.cookieSecure,
        path: '/',
        maxAge: 60_000,
      });
    };
    next();
  };
}
