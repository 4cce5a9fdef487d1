import type { Request, RequestHandler, Response } from 'express';
import { HttpError } from '../errors';

const NEVER_ECHOED = new Set(['password', 'newPassword', '_csrf', 'receipt']);

/** What the user typed, minus secrets, so a form shown again loses nothing else. */
export function echoValues(body: unknown): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  if (body && typeof body === 'object') {
    for (const [k, v] of Object.entries(body)) if (!NEVER_ECHOED.has(k)) values[k] = v;
  }
  return values;
}

type Locals = Record<string, unknown>;

/**
 * A form post without client-side JavaScript: run `action`; if it fails with an error the
 * user can fix (400, 409, 413, 429), render `view` again with the same values and the message
 * next to each field. Anything else goes to the error middleware.
 */
export function formAction(
  view: string,
  locals: (req: Request, res: Response) => Locals | Promise<Locals>,
  action: (req: Request, res: Response) => Promise<unknown>,
): RequestHandler {
  return async (req, res) => {
    try {
      await action(req, res);
    } catch (err) {
      if (!(err instanceof HttpError) || ![400, 409, 413, 429].includes(err.status)) throw err;
      res.status(err.status).render(view, {
        ...(await locals(req, res)),
        values: echoValues(req.body),
        errors: err.fields ?? {},
        formError: err.message,
      });
    }
  };
}
