import type { Clock } from '../../clock';
import type { Config } from '../../config';
import { ValidationError } from '../../errors';
import type { Logger } from '../../logger';
import { CLOSURE_REASONS, HARM_CATEGORIES, LEVERAGE_ACTIONS } from '../../domain/cases';
import { REPORT_STATUSES } from '../../domain/reports';
import type { InsightStore } from '../../store/insight';
import { caseTime, DAY_MS, durationStats, publishedCount, suppressCells, type CellSum, type DurationStats, type PublicCount } from './figures';
import { sharedSnapshots } from './snapshots';

/**
 * The public transparency report: reports received and how they were handled, cases by harm
 * category and outcome, leverage actions and response times, aggregated only.
 *
 * Periods are calendar months and quarters that have ended, nothing else: with any span of
 * days, two periods one day apart gave 6 and 7, so exactly one report on that day (issue 20,
 * finding 6); a period still running grows the same way from one day to the next. A quarter is
 * the sum of its three months, so a month and its quarter are published from one table with
 * the same cells hidden (`suppressCells`): no count below the threshold can be worked out by
 * subtracting one published figure from another, within a period or across the two kinds.
 */

export const PERIOD_KINDS = ['month', 'quarter'] as const;

export interface TransparencyPeriod {
  kind: (typeof PERIOD_KINDS)[number];
  year: number;
  /** 1–12 for a month, 1–4 for a quarter. */
  index: number;
}

export const PERIOD_HINT = 'Choose a calendar month or quarter, like 2026-03 or 2026-Q1.';
const MONTH = /^(\d{4})-(0[1-9]|1[0-2])$/;
const QUARTER = /^(\d{4})-Q([1-4])$/;

/** `2026-03` or `2026-Q1` as a period; null for anything else. */
export function parsePeriod(text: string): TransparencyPeriod | null {
  const month = MONTH.exec(text);
  if (month) return { kind: 'month', year: Number(month[1]), index: Number(month[2]) };
  const quarter = QUARTER.exec(text);
  return quarter ? { kind: 'quarter', year: Number(quarter[1]), index: Number(quarter[2]) } : null;
}

export const periodName = (p: TransparencyPeriod) => (p.kind === 'month' ? `${p.year}-${String(p.index).padStart(2, '0')}` : `${p.year}-Q${p.index}`);

/** The period's first instant and the first instant after it (UTC). */
function bounds(p: TransparencyPeriod): { from: Date; to: Date } {
  const first = p.kind === 'month' ? p.index - 1 : (p.index - 1) * 3;
  const months = p.kind === 'month' ? 1 : 3;
  return { from: new Date(Date.UTC(p.year, first, 1)), to: new Date(Date.UTC(p.year, first + months, 1)) };
}

const quarterOf = (p: TransparencyPeriod): TransparencyPeriod => (p.kind === 'quarter' ? p : { kind: 'quarter', year: p.year, index: Math.ceil(p.index / 3) });

/** The most recent months and quarters that have ended at `now`, newest first: what the page offers. */
export function endedPeriods(now: Date, count = 12): TransparencyPeriod[] {
  const periods: TransparencyPeriod[] = [];
  for (let i = 1; i <= count; i++) {
    const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1));
    periods.push({ kind: 'month', year: d.getUTCFullYear(), index: d.getUTCMonth() + 1 });
  }
  const thisQuarter = Math.floor(now.getUTCMonth() / 3);
  for (let i = 1; i <= Math.ceil(count / 3); i++) {
    const q = thisQuarter - i;
    const year = now.getUTCFullYear() + Math.floor(q / 4);
    periods.push({ kind: 'quarter', year, index: (((q % 4) + 4) % 4) + 1 });
  }
  return periods;
}

// The table of one quarter: a column per month (m0, m1, m2) and one for the quarter (q).
const COLUMNS = ['m0', 'm1', 'm2', 'q'] as const;
type Column = (typeof COLUMNS)[number];
const OUTCOMES = ['open', ...CLOSURE_REASONS] as const;
const TIMES = ['acknowledge', 'firstAction', 'close'] as const;
const FIGURES = [
  'received',
  ...REPORT_STATUSES.map((s) => `status:${s}`),
  'opened',
  ...OUTCOMES.map((o) => `outcome:${o}`),
  ...HARM_CATEGORIES.map((h) => `harm:${h}`),
  ...LEVERAGE_ACTIONS.map((k) => `action:${k}`),
  ...TIMES.map((k) => `times:${k}`),
];
const cell = (column: Column, figure: string) => `${column}|${figure}`;

/**
 * Every sum the published figures form: a quarter is the sum of its months (every figure);
 * within a period, reports by status add up to those received, cases by outcome to those
 * opened, and the cases still open plus those closed (measured for "time to close") too.
 * Harm categories do not add up (a case may have several, or none yet).
 */
const SUMS: CellSum[] = [
  ...FIGURES.map((f) => ({ total: cell('q', f), parts: (['m0', 'm1', 'm2'] as const).map((m) => cell(m, f)) })),
  ...COLUMNS.flatMap((c) => [
    { total: cell(c, 'received'), parts: REPORT_STATUSES.map((s) => cell(c, `status:${s}`)) },
    { total: cell(c, 'opened'), parts: OUTCOMES.map((o) => cell(c, `outcome:${o}`)) },
    { total: cell(c, 'opened'), parts: [cell(c, 'outcome:open'), cell(c, 'times:close')] },
  ]),
];

/** What one quarter's scans give, before anything is hidden: plain values (stored as one document). */
interface QuarterFigures {
  computedAt: Date;
  counts: Record<string, number>;
  durations: Record<Column, Record<(typeof TIMES)[number], number[]>>;
}

export function transparencyReports(deps: { clock: Clock; config: Pick<Config, 'transparencyMinCount'>; logger: Logger; store: InsightStore }) {
  const { clock, config, store } = deps;
  const snapshots = sharedSnapshots(deps);

  /** One scan of the quarter's reports and one of the cases (a small collection), counted per month. */
  async function computeQuarter(quarter: TransparencyPeriod): Promise<QuarterFigures> {
    const { from, to } = bounds(quarter);
    const monthStarts = [0, 1, 2, 3].map((i) => Date.UTC(quarter.year, (quarter.index - 1) * 3 + i, 1));
    const monthOf = (d: Date | null | undefined): Column | null => {
      const t = d instanceof Date ? d.getTime() : NaN;
      const i = monthStarts.findIndex((start, k) => k < 3 && t >= start && t < monthStarts[k + 1]!);
      return i < 0 ? null : (['m0', 'm1', 'm2'] as const)[i]!;
    };
    const counts: Record<string, number> = Object.fromEntries(COLUMNS.flatMap((c) => FIGURES.map((f) => [cell(c, f), 0])));
    const durations = Object.fromEntries(COLUMNS.map((c) => [c, { acknowledge: [], firstAction: [], close: [] }])) as unknown as QuarterFigures['durations'];
    const count = (month: Column, figure: string) => {
      counts[cell(month, figure)]! += 1;
      counts[cell('q', figure)]! += 1;
    };
    for await (const r of store.reportsReceived(from, to)) {
      const month = monthOf(r.receivedAt);
      if (!month) continue;
      count(month, 'received');
      count(month, `status:${r.status}`);
    }
    for await (const c of store.casesForFigures()) {
      for (const a of c.actions ?? []) {
        const month = monthOf(a.createdAt);
        if (month) count(month, `action:${a.kind}`);
      }
      const month = monthOf(c.openedAt);
      if (!month) continue;
      count(month, 'opened');
      count(month, c.status === 'closed' ? `outcome:${c.closureReason}` : 'outcome:open');
      for (const category of new Set(c.harmCategories ?? [])) count(month, `harm:${category}`);
      const time = caseTime(c);
      for (const k of TIMES) {
        const ms = time[k];
        if (ms === null || ms < 0) continue;
        count(month, `times:${k}`);
        durations[month][k].push(ms);
        durations.q[k].push(ms);
      }
    }
    // Only the figures the report publishes (an unknown status or reason would be a stray cell).
    for (const id of Object.keys(counts)) if (!FIGURES.includes(id.slice(id.indexOf('|') + 1))) delete counts[id];
    return { computedAt: clock.now(), counts, durations };
  }

  function publish(period: TransparencyPeriod, quarter: QuarterFigures) {
    const min = config.transparencyMinCount;
    const column: Column = period.kind === 'quarter' ? 'q' : (['m0', 'm1', 'm2'] as const)[(period.index - 1) % 3]!;
    const values = new Map(Object.entries(quarter.counts));
    const hidden = suppressCells(values, SUMS, min);
    const shown = (figure: string): PublicCount => {
      const id = cell(column, figure);
      return publishedCount(values.get(id) ?? 0, hidden.has(id), min);
    };
    // A median of two cases tells the public about those two cases: hidden like a small count.
    const median = (k: (typeof TIMES)[number]) => {
      const s: DurationStats = durationStats(quarter.durations[column][k]);
      return { cases: shown(`times:${k}`), medianDays: s.n >= min && s.medianMs !== null ? Math.round((s.medianMs / DAY_MS) * 10) / 10 : null };
    };
    const { from, to } = bounds(period);
    return {
      period: { name: periodName(period), kind: period.kind, from: from.toISOString().slice(0, 10), to: new Date(to.getTime() - DAY_MS).toISOString().slice(0, 10) },
      threshold: min,
      generatedAt: quarter.computedAt,
      reports: {
        received: shown('received'),
        byStatus: REPORT_STATUSES.map((status) => ({ status, count: shown(`status:${status}`) })),
      },
      cases: {
        opened: shown('opened'),
        byHarmCategory: HARM_CATEGORIES.map((category) => ({ category, count: shown(`harm:${category}`) })),
        byOutcome: OUTCOMES.map((outcome) => ({ outcome, count: shown(`outcome:${outcome}`) })),
      },
      leverageActions: LEVERAGE_ACTIONS.map((kind) => ({ kind, count: shown(`action:${kind}`) })),
      responseTimes: { acknowledge: median('acknowledge'), firstAction: median('firstAction'), close: median('close') },
    };
  }

  return {
    /**
     * The public report for a calendar month or quarter that has ended (by default the last
     * quarter that has): counts below TRANSPARENCY_MIN_COUNT come back as `{ lessThan: N }`,
     * counts that would let one be worked out as `{ withheld: true }`.
     */
    async transparency(period?: TransparencyPeriod) {
      const now = clock.now();
      const chosen = period ?? endedPeriods(now).find((p) => p.kind === 'quarter')!;
      if (bounds(chosen).to > now) throw new ValidationError({ period: 'This period has not ended yet: choose a month or quarter that has.' });
      const quarter = quarterOf(chosen);
      const figures = await snapshots.get(`transparency:${periodName(quarter)}`, () => computeQuarter(quarter));
      return publish(chosen, figures);
    },
  };
}
