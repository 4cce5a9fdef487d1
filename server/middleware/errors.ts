import type { ErrorRequestHandler, RequestHandler } from 'express';
import jwt from 'jsonwebtoken';
import mongoose from 'mongoose';
import multer from 'multer';
import { ZodError } from 'zod';
import type { Logger } from '../logger';
import { HttpError, type FieldErrors } from '../errors';
import { isApiRequest } from './auth';
import { fieldErrors } from './validate';

const MULTER_MESSAGES: Record<string, [number, string]> = {
  LIMIT_FILE_SIZE: [413, 'A file is larger than the allowed size.'],
  LIMIT_FILE_COUNT: [413, 'Too many files.'],
  LIMIT_FIELD_COUNT: [413, 'Too many form fields.'],
  LIMIT_FIELD_VALUE: [413, 'A form field is too long.'],
  LIMIT_PART_COUNT: [413, 'The form has too many parts.'],
  LIMIT_UNEXPECTED_FILE: [400, 'A file was sent in a field that does not accept files.'],
};

/** Any thrown value → one HttpError. Unknown errors become a 500 that says nothing inside. */
export function toHttpError(err: unknown): { error: HttpError; unexpected: boolean } {
  if (err instanceof HttpError) return { error: err, unexpected: false };
  if (err instanceof ZodError) {
    return { error: new HttpError(400, 'validation_failed', 'Some fields are not valid.', fieldErrors(err)), unexpected: false };
  }
  if (err instanceof mongoose.Error.ValidationError) {
    const fields: FieldErrors = {};
    for (const [path, e] of Object.entries(err.errors)) fields[path] = e.message;
    return { error: new HttpError(400, 'validation_failed', 'Some fields are not valid.', fields), unexpected: false };
  }
  if (err instanceof mongoose.Error.CastError) {
    return { error: new HttpError(400, 'bad_value', `Invalid value for "${err.path}".`, { [err.path]: 'Invalid value.' }), unexpected: false };
  }
  if (err instanceof multer.MulterError) {
    const [status, message] = MULTER_MESSAGES[err.code] ?? [400, 'The upload was not accepted.'];
    const fields = err.field ? { [err.field]: message } : undefined;
    return { error: new HttpError(status, `upload_${err.code.toLowerCase()}`, message, fields), unexpected: false };
  }
  if (err instanceof jwt.TokenExpiredError) {
    return { error: new HttpError(401, 'token_expired', 'Your session has expired. Please sign in again.'), unexpected: false };
  }
  if (err instanceof jwt.JsonWebTokenError) {
    return { error: new HttpError(401, 'invalid_token', 'The access token is not valid.'), unexpected: false };
  }
  if (err instanceof mongoose.Error.MongooseServerSelectionError || isConnectionError(err)) {
    return { error: new HttpError(503, 'database_unavailable', 'The database is temporarily unavailable. Please try again shortly.'), unexpected: true };
  }
  const e = err as { code?: unknown; type?: unknown; status?: unknown };
  if (e?.code === 'EBADCSRFTOKEN') {
    return { error: new HttpError(403, 'csrf_failed', 'This form has expired or was not sent from this site. Reload the page and try again.'), unexpected: false };
  }
  // body-parser errors carry `type` and a 4xx `status`.
  if (e?.type === 'entity.too.large') return { error: new HttpError(413, 'payload_too_large', 'The request body is too large.'), unexpected: false };
  if (e?.type === 'entity.parse.failed') return { error: new HttpError(400, 'malformed_body', 'The request body is not valid JSON.'), unexpected: false };
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500 && typeof e.type === 'string') {
    return { error: new HttpError(e.status, 'bad_request', 'The request could not be read.'), unexpected: false };
  }
  return { error: new HttpError(500, 'internal', 'Something went wrong on our side. Please try again.'), unexpected: true };
}

const CONNECTION_ERRORS = ['MongoNetworkError', 'MongoNetworkTimeoutError', 'MongoServerSelectionError', 'MongoNotConnectedError', 'MongoTopologyClosedError', 'MongoPoolClearedError'];

const SOCKET_CODES = ['ECONNRESET', 'ECONNREFUSED', 'EPIPE'];
/** Node's own words for EPIPE ("This socket has been ended by the other party") included: seen in the soak test as a 500. */
const SOCKET_GONE = /^connection \d+ to .* closed$|ECONNRESET|ECONNREFUSED|EPIPE|socket has been ended by the other party/;

/**
 * The database went away mid-operation. A bulk write (insertMany) wraps the network error in a
 * MongoBulkWriteError that keeps only its message, so that is recognised too: found by the
 * soak test killing the database under check-in batches (it answered 500, not 503).
 */
function isConnectionError(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: unknown; cause?: unknown } | null;
  if (!e) return false;
  if (CONNECTION_ERRORS.includes(e.name ?? '')) return true;
  if (typeof e.code === 'string' && SOCKET_CODES.includes(e.code)) return true;
  if (e.name === 'MongoBulkWriteError' && SOCKET_GONE.test(e.message ?? '')) return true;
  return e.cause !== undefined && e.cause !== err && isConnectionError(e.cause);
}

/** The line an import error names (`fields.line`), if any: what the log may say about a file. */
const lineOf = (error: HttpError) => (error.fields?.line ? { line: error.fields.line } : {});

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const { error, unexpected } = toHttpError(err);
    // A user's mistake is logged by its code (and the line, for an import), never with the
    // content sent or a stack trace; only what is unexpected is an error with its stack.
    if (unexpected) logger.error({ err, path: req.path }, 'request failed');
    else if (error.status !== 404) logger.info({ code: error.code, status: error.status, ...lineOf(error) }, 'request refused');
    if (res.headersSent) return void res.end();
    res.status(error.status);
    // A refused upload's body was never read: closing stops the client sending the rest of it.
    if (req.is('multipart/form-data') && !req.complete) res.set('Connection', 'close');
    if (error.status === 503) res.setHeader('Retry-After', '5');
    if (isApiRequest(req) || !req.accepts('html')) {
      return void res.json({ error: { code: error.code, message: error.message, ...(error.fields ? { fields: error.fields } : {}) } });
    }
    // The error may come before the page locals were set: give the layout all it needs, and
    // if rendering itself fails, answer in plain words rather than let Express print a stack.
    const locals = {
      title: error.status === 404 ? 'Page not found' : 'Something went wrong',
      error,
      user: req.user ?? null,
      currentPath: req.path,
      values: {},
      errors: {},
      flash: null,
      csrfToken: typeof res.locals.csrfToken === 'function' ? res.locals.csrfToken : () => '',
    };
    res.render('error', locals, (renderErr: Error | null, html?: string) => {
      if (renderErr) {
        logger.error({ err: renderErr }, 'error page failed to render');
        res.type('text/plain').send(error.message);
        return;
      }
      res.send(html);
    });
  };
}

/** The methods the portal answers; TRACE, CONNECT and invented ones get 405 before anything else runs. */
export const KNOWN_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

export const methodNotAllowed: RequestHandler = (req, res, next) => {
  if (KNOWN_METHODS.includes(req.method)) return next();
  res.set('Allow', KNOWN_METHODS.join(', '));
  next(new HttpError(405, 'method_not_allowed', `The method ${req.method} is not allowed.`));
};

export const notFound: RequestHandler = (req, _res, next) => {
  next(new HttpError(404, 'not_found', isApiRequest(req) ? `No route for ${req.method} ${req.path}.` : 'There is no page at this address.'));
};
