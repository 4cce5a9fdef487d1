/**
 * Pure figures shared by the dashboard and the transparency report: percentiles, durations of
 * a case, months, and the disclosure control of published counts.
 */

export const DAY_MS = 86_400_000;

export interface DurationStats {
  /** Cases measured. */
  n: number;
  medianMs: number | null;
  p90Ms: number | null;
}

/** Nearest-rank percentile of an ascending list (`p` in 0..1); null for an empty list. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (!sorted.length) return null;
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

export function durationStats(durations: number[]): DurationStats {
  const sorted = durations.filter((d) => d >= 0).sort((a, b) => a - b);
  return { n: sorted.length, medianMs: percentile(sorted, 0.5), p90Ms: percentile(sorted, 0.9) };
}

/** Time to acknowledge, to the first leverage action and to closure of one case (null: not yet). */
export interface CaseTime {
  models: string[];
  acknowledge: number | null;
  firstAction: number | null;
  close: number | null;
}

/**
 * The database is not asked for date arithmetic (the embedded one has none): the durations
 * of a case are taken here, from a projected scan of the cases (a small collection).
 */
export function caseTime(c: { modelIds?: string[] | null; openedAt: Date; closedAt?: Date | null; status: string; deadlines?: { acknowledgedAt?: Date | null } | null; actions?: Array<{ createdAt: Date }> | null }): CaseTime {
  const opened = c.openedAt.getTime();
  const actions = (c.actions ?? []).map((a) => a.createdAt.getTime());
  return {
    models: c.modelIds ?? [],
    acknowledge: c.deadlines?.acknowledgedAt ? c.deadlines.acknowledgedAt.getTime() - opened : null,
    firstAction: actions.length ? Math.min(...actions) - opened : null,
    close: c.status === 'closed' && c.closedAt ? c.closedAt.getTime() - opened : null,
  };
}

export const timeStats = (rows: readonly CaseTime[]) => {
  const of = (k: 'acknowledge' | 'firstAction' | 'close') => durationStats(rows.flatMap((r) => (r[k] === null ? [] : [r[k]])));
  return { acknowledge: of('acknowledge'), firstAction: of('firstAction'), close: of('close') };
};

/** The first instant of each of the `count` UTC months ending with the month of `now`, plus the end. */
export function monthStarts(now: Date, count: number): Date[] {
  const starts: Date[] = [];
  for (let i = count - 1; i >= -1; i--) starts.push(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1)));
  return starts;
}

export const monthLabel = (d: Date) => d.toISOString().slice(0, 7);

// ---------------------------------------------------------------------------------------
// Disclosure control
// ---------------------------------------------------------------------------------------

/**
 * A count as the public may see it: `{ lessThan: N }` in JSON ("fewer than N" on the page)
 * below the threshold; `{ withheld: true }` ("not shown") for a count at or above it hidden so
 * that a small one cannot be worked out by subtraction (see `suppressCells`).
 */
export type PublicCount = number | { lessThan: number } | { withheld: true };

/**
 * Counts that add up: `total` (null: none is published) is the sum of `parts`. Each is a
 * cell id of `suppressCells`.
 */
export interface CellSum {
  total: string | null;
  parts: readonly string[];
}

/**
 * Which cells of a table of published counts to hide. A cell below `min` is hidden (primary).
 * Then, for every sum whose total is shown, what subtraction reveals about its hidden parts
 * must not be a small count: when exactly one part is hidden (and not zero), or the hidden
 * parts add up to between 1 and `min - 1`, the smallest shown part is hidden too (with none
 * left, the total); a hidden total whose parts are all shown is protected by hiding its
 * smallest part. That a few hidden parts add up to zero may be known: nobody is in them.
 * Repeated until nothing changes, since hiding a cell in one sum can expose another sum it
 * belongs to (a month of a quarter that is also a status of that month). A heuristic of
 * statistical disclosure control: it defeats subtraction along any one sum, which is how the
 * report's tables can be combined.
 */
export function suppressCells(values: ReadonlyMap<string, number>, sums: readonly CellSum[], min: number): Set<string> {
  const value = (id: string) => values.get(id) ?? 0;
  const hidden = new Set([...values.keys()].filter((id) => value(id) < min));
  const smallestShown = (ids: readonly string[]) => ids.filter((id) => !hidden.has(id)).sort((a, b) => value(a) - value(b) || ids.indexOf(a) - ids.indexOf(b))[0];
  for (let changed = true; changed; ) {
    changed = false;
    for (const { total, parts } of sums) {
      const hiddenParts = parts.filter((id) => hidden.has(id));
      const totalShown = total !== null && !hidden.has(total);
      const revealed = hiddenParts.reduce((a, id) => a + value(id), 0);
      let hide: string | undefined;
      if (totalShown && revealed > 0 && (hiddenParts.length === 1 || revealed < min)) hide = smallestShown(parts) ?? total;
      else if (total !== null && !totalShown && !hiddenParts.length) hide = smallestShown(parts);
      if (hide !== undefined) {
        hidden.add(hide);
        changed = true;
      }
    }
  }
  return hidden;
}
/** A cell as published, once `suppressCells` has chosen the hidden ones. */
export const publishedCount = (n: number, hidden: boolean, min: number): PublicCount => (!hidden ? n : n < min ? { lessThan: min } : { withheld: true });
