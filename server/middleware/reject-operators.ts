import type { NextFunction, Request, Response } from 'express';
import { BadRequestError } from '../errors';

// Brackets too: the query and form parsers are flat, so `__proto__[x]` or `a[$ne]` arrive as
// literal keys that no form of ours ever sends (and that a nested parser would expand).
const FORBIDDEN_KEY = /\$|\.|\[|\]|^__proto__$|^constructor$|^prototype$/;

/**
 * The path to the first forbidden key, or null. The path is put together only for a hit: a
 * sell-through report holds 8,000 keys, every one of them fine.
 */
function findForbiddenKey(value: unknown, depth = 0): string | null {
  if (depth > 20) return '';
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const hit = findForbiddenKey(value[i], depth + 1);
      if (hit !== null) return `[${i}]${hit && !hit.startsWith('[') ? `.${hit}` : hit}`;
    }
  } else if (value !== null && typeof value === 'object') {
    for (const key of Object.keys(value)) {
      if (FORBIDDEN_KEY.test(key)) return key;
      const hit = findForbiddenKey((value as Record<string, unknown>)[key], depth + 1);
      if (hit !== null) return `${key}${hit && !hit.startsWith('[') ? `.${hit}` : hit}`;
    }
  }
  return null;
}

/**
 * NoSQL-injection guard at the edge: keys that are query operators (`$ne`, `$where`), dotted
 * paths or prototype names never reach a service. Mongoose's sanitizeFilter is the second net.
 */
export function rejectOperatorKeys(req: Request, _res: Response, next: NextFunction) {
  const found = findForbiddenKey(req.body) ?? findForbiddenKey(req.query);
  const hit = found === '' ? '_' : found;
  if (hit) {
    next(new BadRequestError(`Field name not allowed: "${hit}".`, { [hit]: 'Field names must not start with $ or contain dots.' }, 'forbidden_key'));
    return;
  }
  next();
}
