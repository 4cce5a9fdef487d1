/**
 * A request's path as the portal's path checks compare it: without the query, percent-decoded
 * and in lower case. Routing is case-sensitive (server/app.ts), so `/API/v1/…` reaches no
 * handler; the checks normalise all the same, so that a check can never be looser than the
 * router in front of it (an address logged for `/Report`, cookies read under `/API/`).
 */
export function normalisedPath(url: string): string {
  const pathOnly = url.split('?')[0] ?? '';
  let decoded = pathOnly;
  try {
    decoded = decodeURIComponent(pathOnly);
  } catch {
    // A malformed escape is compared as sent; the router answers it with 400 or 404.
  }
  return decoded.toLowerCase();
}
