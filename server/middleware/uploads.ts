import type { RequestHandler } from 'express';
import multer from 'multer';
import type { AppMiddleware } from '../app';
import type { Config } from '../config';
import { BadRequestError } from '../errors';
import { rejectOperatorKeys } from './reject-operators';

/**
 * Multipart forms: files held in memory within the configured limits (then checked and
 * re-encoded by the files service before anything touches the disk), followed by the CSRF
 * check that the global middleware skips for multipart bodies.
 *
 * Usage in a route: `router.post('/x', ...uploads(ctx, [{ name: 'evidence', maxCount: 5 }]), handler)`.
 */
export function uploads(
  ctx: { config: Config; middleware: AppMiddleware },
  fields: Array<{ name: string; maxCount?: number }>,
  opts: { csrf?: boolean } = {},
): RequestHandler[] {
  const { maxFileBytes, maxFiles } = ctx.config.uploads;
  const parser = multer({
    storage: multer.memoryStorage(),
    limits: { fileSize: maxFileBytes, files: maxFiles, fields: 100, fieldSize: 64 * 1024, parts: 100 + maxFiles },
  }).fields(fields.map((f) => ({ name: f.name, maxCount: Math.min(f.maxCount ?? maxFiles, maxFiles) })));
  // JSON API routes are not cookie-authenticated and skip CSRF.
  return opts.csrf === false ? multipart(parser) : [...multipart(parser), ctx.middleware.csrf.protect];
}

/**
 * Any multer parser, made safe: busboy's own errors (no boundary, a body cut short, a bad part
 * header) are the client's malformed request, a 400 and not a 500 (found by the API fuzz);
 * and since multipart fields are parsed only here, after the app-wide operator-key guard ran on
 * an empty body, that guard runs again on what multer produced.
 */
export function multipart(parser: RequestHandler): RequestHandler[] {
  const parse: RequestHandler = (req, res, next) =>
    parser(req, res, (err?: unknown) => {
      if (!err || err instanceof multer.MulterError) return next(err);
      next(new BadRequestError('The upload could not be read: the multipart body is malformed or incomplete.', undefined, 'malformed_body'));
    });
  return [parse, rejectOperatorKeys];
}
