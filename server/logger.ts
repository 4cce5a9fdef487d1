import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * JSON logs on stdout. Redaction is a second line of defence: request logging never
 * includes bodies or cookies in the first place (server/middleware/request-log.ts).
 */
export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'res.headers["set-cookie"]',
        '*.password',
        '*.token',
        '*.receipt',
      ],
      censor: '[redacted]',
    },
  });
}
