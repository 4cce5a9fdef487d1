import express from 'express';

/**
 * Every router of the portal matches paths case-sensitively, like the app itself
 * (`case sensitive routing` in server/app.ts). Express's default folds case, so `/API/v1/…`
 * and `/Report` reached the same handlers while the path checks in front of them (the API's
 * no-cookie rule, CSRF's API exemption, the request log's private paths) compared prefixes
 * exactly: a mixed-case path got the API's handlers with a page's cookie and no CSRF token.
 */
export function Router(): express.Router {
  return express.Router({ caseSensitive: true });
}
