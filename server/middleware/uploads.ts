import type { RequestHandler } from 'express';
import multer from 'multer';
import type { AppMiddleware } from '../app';
import type { Config } from '../config';

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
  return opts.csrf === false ? [parser] : [parser, ctx.middleware.csrf.protect];
}
