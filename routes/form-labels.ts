import type { RequestHandler } from 'express';

/** A form's field codes and the text of their `<label>`s. */
export type FieldLabels = Readonly<Record<string, string>>;

/**
 * Puts a form's labels in `res.locals.fieldLabels` for every render of that route, the first
 * GET and the form shown again with errors alike: the view's `<label>`s read them
 * (views/partials/field.ejs) and the error summary in the header names each error with them,
 * so the two come from one map and cannot drift.
 */
export const labelled =
  (labels: FieldLabels): RequestHandler =>
  (_req, res, next) => {
    res.locals.fieldLabels = labels;
    next();
  };
