/**
 * Typed HTTP errors. Services throw these; the error middleware (server/middleware/errors.ts)
 * is the only place that turns them into responses.
 */
export type FieldErrors = Record<string, string>;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields?: FieldErrors,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class BadRequestError extends HttpError {
  constructor(message = 'The request is not valid.', fields?: FieldErrors, code = 'bad_request') {
    super(400, code, message, fields);
  }
}

export class ValidationError extends BadRequestError {
  constructor(fields: FieldErrors, message = 'Some fields are not valid.') {
    super(message, fields, 'validation_failed');
  }
}

export class UnauthorizedError extends HttpError {
  constructor(message = 'Please sign in.', code = 'unauthorized') {
    super(401, code, message);
  }
}

export class ForbiddenError extends HttpError {
  constructor(message = 'You do not have access to this.', code = 'forbidden') {
    super(403, code, message);
  }
}

export class NotFoundError extends HttpError {
  constructor(message = 'Not found.', code = 'not_found') {
    super(404, code, message);
  }
}

export class ConflictError extends HttpError {
  constructor(message: string, fields?: FieldErrors, code = 'conflict') {
    super(409, code, message, fields);
  }
}

export class PayloadTooLargeError extends HttpError {
  constructor(message: string, fields?: FieldErrors) {
    super(413, 'payload_too_large', message, fields);
  }
}

export class TooManyRequestsError extends HttpError {
  constructor(message = 'Too many requests. Please wait a few minutes and try again.') {
    super(429, 'rate_limited', message);
  }
}

export class ServiceUnavailableError extends HttpError {
  constructor(message = 'The service is temporarily unavailable. Please try again shortly.') {
    super(503, 'unavailable', message);
  }
}
