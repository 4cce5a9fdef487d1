import type { IncomingMessage, ServerResponse } from 'node:http';
import crypto from 'node:crypto';
import { pinoHttp } from 'pino-http';
import type { Logger } from '../logger';
import { normalisedPath } from './request-path';

/**
 * Paths of the grievance channel: their log lines carry no address and no user agent, so a
 * reporter cannot be identified from our logs.
 */
export const PRIVATE_PATH_PREFIXES = ['/report', '/follow-up', '/api/v1/reports', '/api/v1/follow-up'];

const isPrivate = (url: string) => {
  const path = normalisedPath(url);
  return PRIVATE_PATH_PREFIXES.some((p) => path === p || path.startsWith(`${p}/`));
};

export function requestLog(logger: Logger) {
  return pinoHttp({
    logger,
    genReqId: () => crypto.randomUUID(),
    // Bodies, cookies, headers and query strings (which may carry tokens) are never logged.
    serializers: {
      req: (req: IncomingMessage & { id?: string; raw?: IncomingMessage }) => {
        const raw = (req.raw ?? req) as IncomingMessage & { originalUrl?: string };
        const url = (raw.originalUrl ?? raw.url ?? '').split('?')[0] ?? '';
        const line: Record<string, unknown> = { id: req.id, method: raw.method, path: url };
        if (!isPrivate(url)) line.remoteAddress = raw.socket?.remoteAddress;
        return line;
      },
      res: (res: ServerResponse) => ({ statusCode: res.statusCode }),
    },
    customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info'),
    autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
  });
}
