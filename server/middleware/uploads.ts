import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Request, RequestHandler } from 'express';
import multer from 'multer';
import type { AppMiddleware } from '../app';
import type { Config } from '../config';
import { BadRequestError, HttpError, TooManyRequestsError } from '../errors';
import { storageError } from '../services/files';
import { rejectOperatorKeys } from './reject-operators';

/**
 * Multipart forms: each file streamed to a private temp file under `DATA_DIR/uploads-tmp`
 * (mode 0600) within the configured limits, never held whole in memory while it arrives; the
 * files service then reads, checks and cleans it, and the temp files go when the response
 * ends. The CSRF check that the global middleware skips for multipart bodies follows (or, for
 * a form that puts its token in the address, precedes: see `csrfBeforeBody`).
 *
 * Usage in a route: `router.post('/x', ...uploads(ctx, [{ name: 'evidence', maxCount: 5 }]), handler)`.
 */
export function uploads(
  ctx: { config: Config; middleware: AppMiddleware },
  fields: Array<{ name: string; maxCount?: number }>,
  opts: { csrf?: boolean; fieldBytes?: number; setAsideOversize?: boolean } = {},
): RequestHandler[] {
  const { maxFileBytes, maxFiles } = ctx.config.uploads;
  // A form with long text (a report's testimony) raises it, so that text over its limit still
  // arrives whole and is refused by its own rule, with a message about the text.
  const fieldSize = opts.fieldBytes ?? 64 * 1024;
  const parser = multer({
    storage: privateDiskStorage(path.join(ctx.config.dataDir, 'uploads-tmp'), opts.setAsideOversize ? maxFileBytes : null),
    // Setting oversize files aside reads them to their end (without keeping them) up to this
    // bound; past it the whole upload is refused, as multer's own limit does.
    limits: { fileSize: opts.setAsideOversize ? OVERSIZE_READ_FACTOR * maxFileBytes : maxFileBytes, files: maxFiles, fields: 100, fieldSize, parts: 100 + maxFiles },
  }).fields(fields.map((f) => ({ name: f.name, maxCount: Math.min(f.maxCount ?? maxFiles, maxFiles) })));
  // JSON API routes are not cookie-authenticated and skip CSRF.
  return opts.csrf === false ? multipart(parser) : [...multipart(parser), ctx.middleware.csrf.protect];
}

/** How far past the size limit a file set aside is still read (so that the files after it arrive). */
const OVERSIZE_READ_FACTOR = 4;

/** A file over the size limit, set aside: named for the form's message, never stored. */
export const isOversize = (file: unknown) => (file as { oversize?: boolean }).oversize === true;

/**
 * multer's disk storage with the mode it lacks (its files are 0644 under the usual umask):
 * evidence waiting to be cleaned is as private as evidence stored. Every file the request wrote
 * is removed once the response is sent or the connection drops.
 *
 * `setAsideOver` (bytes): a file past it is not an error that ends the upload (multer's limit
 * would drop every file of the request, the valid ones too): its bytes stop being written, the
 * partial file is removed, the rest of it is read and discarded, and it comes out `oversize`.
 */
function privateDiskStorage(dir: string, setAsideOver: number | null): multer.StorageEngine {
  return {
    _handleFile(req, file, done) {
      const target = path.join(dir, crypto.randomBytes(16).toString('hex'));
      fs.promises
        .mkdir(dir, { recursive: true, mode: 0o700 })
        .then(() => {
          const out = fs.createWriteStream(target, { mode: 0o600, flags: 'wx' });
          removeAfterResponse(req, target);
          out.on('error', (err) => done(storageError(err, file.fieldname)));
          out.on('finish', () => done(null, { path: target, size: out.bytesWritten }));
          if (setAsideOver === null) return void file.stream.pipe(out);
          let size = 0;
          let oversize = false;
          file.stream.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (oversize) return;
            if (size > setAsideOver) {
              oversize = true;
              out.destroy();
              fs.rm(target, { force: true }, () => {});
              file.stream.resume();
              return;
            }
            if (!out.write(chunk)) {
              file.stream.pause();
              out.once('drain', () => file.stream.resume());
            }
          });
          file.stream.on('end', () => (oversize ? done(null, { size, oversize: true } as Partial<Express.Multer.File>) : out.end()));
        })
        .catch((err: unknown) => done(storageError(err, file.fieldname)));
    },
    _removeFile(_req, file, done) {
      if (!file.path) return done(null); // set aside: nothing was kept
      fs.rm(file.path, { force: true }, (err) => done(err));
    },
  };
}

function removeAfterResponse(req: Request, file: string) {
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    // Best effort: a file left by a crash is removed with its folder's next clean-up.
    fs.rm(file, { force: true }, () => {});
  };
  req.res?.once('finish', remove);
  req.res?.once('close', remove);
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
      if (!err || err instanceof multer.MulterError || err instanceof HttpError) return next(err);
      next(new BadRequestError('The upload could not be read: the multipart body is malformed or incomplete.', undefined, 'malformed_body'));
    });
  return [parse, rejectOperatorKeys];
}

/**
 * The CSRF check before a multipart body is read, for forms that carry their token in the
 * address (`?_csrf=`) or the `X-CSRF-Token` header: a forged or token-less upload is refused
 * without receiving its files.
 */
export function csrfBeforeBody(ctx: { middleware: AppMiddleware }): RequestHandler {
  return (req, res, next) => {
    if (!req.is('multipart/form-data')) return next();
    ctx.middleware.csrf.protect(req, res, next);
  };
}

/**
 * Caps the anonymous uploads one process receives at once. This is a guard of the process's
 * own disk and CPU, not a limit that instances must agree on (those are in the database): each
 * instance guards itself, so it is kept here. Refused before the body is read: 429 for one
 * client's excess, 503 with Retry-After when the process is full.
 */
export function createUploadSlots(limits: { perClient: number; total: number }) {
  const byClient = new Map<string, number>();
  let total = 0;
  return (clientOf: (req: Request) => string): RequestHandler =>
    (req, res, next) => {
      if (!req.is('multipart/form-data')) return next();
      const client = clientOf(req);
      const mine = byClient.get(client) ?? 0;
      if (mine >= limits.perClient) throw new TooManyRequestsError('An upload from here is still in progress. Please wait for it to finish.');
      if (total >= limits.total) {
        res.set('Retry-After', '10');
        throw new HttpError(503, 'uploads_busy', 'Too many uploads are in progress right now. Please try again in a few seconds.');
      }
      byClient.set(client, mine + 1);
      total++;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        total--;
        const left = (byClient.get(client) ?? 1) - 1;
        if (left > 0) byClient.set(client, left);
        else byClient.delete(client);
      };
      res.once('finish', release);
      res.once('close', release);
      next();
    };
}
