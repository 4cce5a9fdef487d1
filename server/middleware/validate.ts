import type { Request } from 'express';
import { z } from 'zod';
import { ValidationError, type FieldErrors } from '../errors';

/** Zod issues → `{ field: message }`, naming the field the user has to fix. */
export function fieldErrors(error: z.ZodError): FieldErrors {
  const fields: FieldErrors = {};
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) fields[[...issue.path, k].join('.')] ??= 'This field is not accepted here.';
      continue;
    }
    const key = issue.path.length ? issue.path.join('.') : '_';
    fields[key] ??= issue.message;
  }
  return fields;
}

export function parse<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ValidationError(fieldErrors(result.error));
  return result.data;
}

export const parseBody = <S extends z.ZodType>(schema: S, req: Request) => parse(schema, req.body ?? {});
export const parseQuery = <S extends z.ZodType>(schema: S, req: Request) => parse(schema, req.query);

// Shared field shapes, so every form words the same rule the same way.
export const email = z.string().trim().toLowerCase().max(254).pipe(z.email('Enter a valid e-mail address.'));
export const password = z
  .string()
  .min(12, 'Use at least 12 characters.')
  .max(256, 'Use at most 256 characters.');
export const shortText = (max: number, label = 'This field') =>
  z.string().trim().max(max, `${label} must be at most ${max} characters.`);
export const requiredText = (max: number, label = 'This field') =>
  shortText(max, label).min(1, `${label} is required.`);

/** `?page=2&perPage=50` → skip/limit, bounded so no list is unbounded. */
export const pagination = z.object({
  page: z.coerce.number().int().min(1).max(100_000).default(1),
  perPage: z.coerce.number().int().min(1).max(200).default(25),
});
export type Page = { page: number; perPage: number; skip: number; limit: number };
export function toPage(p: z.infer<typeof pagination>): Page {
  return { ...p, skip: (p.page - 1) * p.perPage, limit: p.perPage };
}

/** The one JSON shape of a page of results (`Pagination` in openapi/openapi.yaml). */
export function pageBody<T>(items: T[], total: number, page: Pick<Page, 'page' | 'perPage'>) {
  return { items, total, page: page.page, perPage: page.perPage };
}
