import type { Clock } from '../../clock';
import { countryName } from '../../countries';
import type { Logger } from '../../logger';
import { CASE_STATUSES, HARM_CATEGORIES, PRIORITY_LEVELS, type CaseStatus, type PriorityLevel } from '../../domain/cases';
import type { RiskLevel } from '../../domain/catalogue';
import { FLAG_RULES, type FlagRule } from '../../domain/flags';
import type { CaseForFigures, InsightStore } from '../../store/insight';
import { overdueOf } from '../cases';
import { caseTime, DAY_MS, monthLabel, monthStarts, timeStats, type CaseTime } from './figures';
import { modelIdsFor, type Actor, type InsightFilters } from './filters';
import { sharedSnapshots } from './snapshots';
import { TALLY_CACHE_MS, unitTallies } from './tallies';

/**
 * The due-diligence dashboard. The units' figures (where products are, totals) come from the
 * per-model unit tallies, read live. Flags, reports and cases are small collections (a few
 * thousand documents): their figures come from one shared snapshot for ALL filters (grouped
 * per model, the model and risk filters applied here), refreshed by whoever finds it stale;
 * the page shows the snapshot's "as of" time.
 *
 * The embedded database (see README "Database") groups with `$sum` only, has no date operators
 * and scans a collection for any aggregate: so each figure is one projected scan of a small
 * collection with the grouping done here (one scan of the flags instead of twelve per-month
 * aggregations: 0.3 s against 2.4 s at scale 1; one of the reports instead of ten: 0.9 s
 * against 7.2 s; one of the cases instead of six: 5.3 s before).
 *
 * Conflicts of interest: a case an investigator is marked conflicted on is hidden from them
 * everywhere (the cases module's rule), so the snapshot keeps such cases apart, one row each
 * with who may not see it, and each viewer's figures add only the ones they may see.
 */

const MONTHS_SHOWN = 12;
const DASHBOARD = 'dashboard';

/** One group of cases counted alike: status, priority, models, and how many are past each deadline. */
interface CaseGroup {
  status: CaseStatus;
  priority: PriorityLevel | null;
  models: string[];
  n: number;
  overdue: { acknowledge: number; feedback: number; review: number; any: number };
}

/** A case some people may not see: its own row, added to the figures of everyone else. */
interface RestrictedCase {
  hiddenFrom: string[];
  group: CaseGroup;
  time: CaseTime | null;
}

/** Stored as one database document: plain values only (no Maps). */
interface DashboardSnapshot {
  asOf: Date;
  since: Date;
  /** Flags per month (an index into `months`), rule and model: flat, as the embedded database stores no nested arrays. */
  flags: { months: string[]; rows: Array<{ month: number; rule: FlagRule; model: string | null; n: number }> };
  reports: { total: number; byHarm: Array<{ category: string; n: number }>; byCountry: Array<{ country: string; name: string; n: number }> };
  cases: { groups: CaseGroup[]; times: CaseTime[]; restricted: RestrictedCase[] };
}

const sum = (rows: Array<{ n: number }>) => rows.reduce((a, r) => a + r.n, 0);

/**
 * The channel partners' section, read from the partners module when asked (its footprints are a
 * read model kept by that module's sweep; the scorecards come from counters kept on write).
 */
export interface ChannelPartnersPort {
  dashboardPartners(): Promise<{
    total: number;
    rows: Array<{
      partner: { id: string; name: string; type: string };
      risk: { tier: string; score: number };
      scorecard: { allocated: number; sold: number; flags: number; flagsPerThousand: number | null; openCases: number };
      territories: Array<{ country: string; name: string }>;
      footprint: {
        units: number;
        observedUnits: number;
        computedAt: Date;
        outsideCountries: number;
        countries: Array<{ country: string; name: string; units: number; checkIns: number; registrations: number; outsideTerritory: boolean }>;
      } | null;
    }>;
  }>;
}

export function dashboardFigures(deps: { clock: Clock; logger: Logger; store: InsightStore; partners?: ChannelPartnersPort }) {
  const { clock, store } = deps;
  const snapshots = sharedSnapshots(deps);
  const tallies = unitTallies(deps);
  let choices: { at: number; read: Promise<Array<{ _id: string; name: string; riskLevel: RiskLevel }>> } | null = null;

  /** Flags per month, rule and model, from one projected scan of the flags raised in the 12 months. */
  async function flagRows(now: Date): Promise<DashboardSnapshot['flags']> {
    const starts = monthStarts(now, MONTHS_SHOWN);
    const months = starts.slice(0, -1);
    const rows = new Map<string, DashboardSnapshot['flags']['rows'][number]>();
    const times = starts.map((d) => d.getTime());
    for await (const f of store.flagsRaised(starts[0]!, starts.at(-1)!)) {
      const t = f.raisedAt.getTime();
      const i = times.findIndex((start, k) => k < months.length && t >= start && t < times[k + 1]!);
      if (i < 0) continue;
      const key = `${i}|${f.rule}|${f.modelId}`;
      const row = rows.get(key) ?? { month: i, rule: f.rule, model: f.modelId, n: 0 };
      row.n++;
      rows.set(key, row);
    }
    return { months: months.map(monthLabel), rows: [...rows.values()] };
  }

  /** Reports by harm category and country, from one projected scan of the period's reports. */
  async function reportFigures(from: Date, to: Date): Promise<DashboardSnapshot['reports']> {
    const byHarm = new Map<string, number>();
    const byCountry = new Map<string | null, number>();
    let total = 0;
    for await (const r of store.reportsReceived(from, to)) {
      total++;
      for (const category of new Set(r.harmCategories)) byHarm.set(category, (byHarm.get(category) ?? 0) + 1);
      byCountry.set(r.country, (byCountry.get(r.country) ?? 0) + 1);
    }
    return {
      total,
      byHarm: HARM_CATEGORIES.map((category) => ({ category, n: byHarm.get(category) ?? 0 })),
      byCountry: [...byCountry]
        .map(([country, n]) => ({ country: country ?? '??', name: countryName(country ?? ''), n }))
        .sort((a, b) => b.n - a.n || a.country.localeCompare(b.country)),
    };
  }

  /** Cases by status, priority and models, response times and missed deadlines: one projected scan of the cases. */
  async function caseRows(now: Date, since: Date): Promise<DashboardSnapshot['cases']> {
    const groups = new Map<string, CaseGroup>();
    const times: CaseTime[] = [];
    const restricted: RestrictedCase[] = [];
    const groupOf = (c: CaseForFigures): CaseGroup => {
      const late = new Set(overdueOf(c, now).map((o) => o.kind));
      const overdue = { acknowledge: +late.has('acknowledge'), feedback: +late.has('feedback'), review: +late.has('review'), any: +(late.size > 0) };
      return { status: c.status, priority: (c.priorityLevel ?? null) as PriorityLevel | null, models: c.modelIds ?? [], n: 1, overdue };
    };
    for await (const c of store.casesForFigures()) {
      const one = groupOf(c);
      const time = c.openedAt.getTime() >= since.getTime() ? caseTime(c) : null;
      if (c.conflictedUserIds.length) {
        restricted.push({ hiddenFrom: c.conflictedUserIds, group: one, time });
        continue;
      }
      if (time) times.push(time);
      const key = `${one.status}|${one.priority ?? ''}|${JSON.stringify(one.models)}`;
      const g = groups.get(key);
      if (!g) groups.set(key, one);
      else {
        g.n++;
        for (const k of ['acknowledge', 'feedback', 'review', 'any'] as const) g.overdue[k] += one.overdue[k];
      }
    }
    return { groups: [...groups.values()], times, restricted };
  }

  /** The small collections' figures, for all filters and viewers at once. */
  async function computeSnapshot(): Promise<DashboardSnapshot> {
    const now = clock.now();
    const since = new Date(now.getTime() - 365 * DAY_MS);
    const [flags, reports, cases] = await Promise.all([flagRows(now), reportFigures(since, new Date(now.getTime() + 1)), caseRows(now, since)]);
    return { asOf: now, since, flags, reports, cases };
  }

  function flagFigures(flags: DashboardSnapshot['flags'], ids: string[] | null) {
    const series = FLAG_RULES.map((rule) => {
      const ofRule = flags.rows.filter((r) => r.rule === rule && (!ids || (r.model !== null && ids.includes(r.model))));
      const counts = flags.months.map((_, month) => sum(ofRule.filter((r) => r.month === month)));
      return { rule, counts, total: counts.reduce((a, b) => a + b, 0) };
    });
    return { months: flags.months, series };
  }

  function caseFigures(cases: DashboardSnapshot['cases'], ids: string[] | null, viewer: Actor) {
    const visible = cases.restricted.filter((r) => !r.hiddenFrom.includes(viewer.userId));
    const ofModels = <T extends { models: string[] }>(rows: T[]) => (ids ? rows.filter((r) => r.models.some((m) => ids.includes(m))) : rows);
    const groups = ofModels([...cases.groups, ...visible.map((r) => r.group)]);
    const times = ofModels([...cases.times, ...visible.flatMap((r) => (r.time ? [r.time] : []))]);
    const priorities = [...PRIORITY_LEVELS, 'untriaged'] as const;
    const byStatus = CASE_STATUSES.map((status) => {
      const byPriority = Object.fromEntries(priorities.map((p) => [p, 0])) as Record<(typeof priorities)[number], number>;
      for (const g of groups) if (g.status === status) byPriority[g.priority ?? 'untriaged'] += g.n;
      return { status, byPriority, n: Object.values(byPriority).reduce((a, b) => a + b, 0) };
    });
    const overdue = (k: keyof CaseGroup['overdue']) => groups.reduce((a, g) => a + g.overdue[k], 0);
    return {
      byStatus,
      priorities,
      total: byStatus.reduce((a, st) => a + st.n, 0),
      times: timeStats(times),
      overdue: { acknowledge: overdue('acknowledge'), feedback: overdue('feedback'), review: overdue('review'), any: overdue('any') },
    };
  }

  /** Waits for `p` at most `waitMs`: null when it is later than that (it goes on in the background). */
  async function within<T>(p: Promise<T>, waitMs: number): Promise<T | null> {
    if (waitMs === Infinity) return p;
    p.catch((err: unknown) => deps.logger.error({ err }, 'insight figures failed'));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), waitMs)));
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }

  return {
    ensureUnitTallies: tallies.ensure,

    /**
     * The dashboard's figures for a filter, as `viewer` may see them: the units' from the
     * tallies (live), the rest cut from the shared snapshot. The first call waits for the
     * snapshot (and, on a database never tallied, the tally rebuild) at most `waitMs`; null
     * means they are still being computed.
     */
    async dashboard(filters: InsightFilters, viewer: Actor, waitMs: number) {
      const ids = await modelIdsFor(store, filters);
      const [tallied, snapshot] = await Promise.all([within(tallies.ensure().then(() => true), waitMs), within(snapshots.get(DASHBOARD, computeSnapshot), waitMs)]);
      if (!snapshot || !tallied) return null;
      // For all models: a partner's territories and footprint are not cut by model.
      const partners = deps.partners ? await deps.partners.dashboardPartners() : null;
      return {
        asOf: snapshot.asOf,
        since: snapshot.since,
        filters,
        units: await tallies.figures(ids),
        flags: flagFigures(snapshot.flags, ids),
        reports: snapshot.reports,
        cases: caseFigures(snapshot.cases, ids, viewer),
        partners,
      };
    },

    async refresh() {
      await Promise.all([tallies.ensure(), snapshots.refresh(DASHBOARD, computeSnapshot)]);
    },

    /**
     * For the filter form: every model, by SKU (a small collection), re-read at most every
     * TALLY_CACHE_MS (a per-process cache of a read-only list: a model created meanwhile can be
     * filtered on at once, and is listed soon).
     */
    modelChoices() {
      const at = performance.now();
      if (!choices || at - choices.at >= TALLY_CACHE_MS) {
        const read = store.modelChoices();
        choices = { at, read };
        read.catch(() => (choices = null));
      }
      return choices.read;
    },
  };
}
