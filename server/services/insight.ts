import { Readable } from 'node:stream';
import type { PipelineStage } from 'mongoose';
import type { Clock } from '../clock';
import type { Config } from '../config';
import { countryName } from '../countries';
import { NotFoundError, ValidationError } from '../errors';
import type { Logger } from '../logger';
import { Case, CASE_STATUSES, HARM_CATEGORIES, LEVERAGE_ACTIONS, PRIORITY_LEVELS, type CaseStatus, type PriorityLevel } from '../../models/cases';
import { ProductModel, Unit, type RiskLevel } from '../../models/catalogue';
import type { CheckInHistoryStore } from '../store/check-in-history';
import { normaliseCode } from './catalogue/codes';
import type { CheckInRun } from './catalogue/types';
import { Flag, FLAG_RULES, type FlagRule } from '../../models/flags';
import { readUnitTallies, rebuildUnitTallies, unitTallyState, unitTallyVersion } from '../../models/insight';
import { Registration, Transfer } from '../../models/registrations';
import { Report, REPORT_STATUSES } from '../../models/reports';
import type { AuditService } from './audit';
import { overdueFilter } from './cases';

/**
 * Insight: the due-diligence dashboard, the public transparency report, streamed exports and
 * EPCIS 2.0 event histories. It only reads what the other modules write.
 *
 * FerretDB v1 (see README "Database") groups with `$sum` only: no `$year`/`$dateToString`,
 * no `$subtract`, no `$min`/`$push`, no `$facet`/`$bucket`. So figures are `$match` +
 * `$unwind` + `$group`/`$sum` pipelines; time series are one such pipeline per period; and
 * durations (no date arithmetic in the database) come from a projected scan of cases, a small
 * collection, with the percentile taken here.
 *
 * Every aggregate scans its collection on FerretDB (only `_id` lookups are pushed down), and
 * units are the large collection (one `$group` over 100,000 units took ~35 s). So the units'
 * figures (where products are, totals) are never aggregated at read time: they come from the
 * per-model tallies of models/insight.ts, kept on write by the catalogue, registrations and
 * check-ins services and rebuilt by `npm run insight:rebuild` (or here, once, when no rebuild
 * was ever recorded on this database); a page view reads those few `_id`-keyed documents
 * live. Flags, reports and cases are small collections (a few thousand documents): their
 * figures come from one snapshot for ALL filters (grouped per model, the model and risk
 * filters applied here), served for SNAPSHOT_TTL_MS and then served stale while one
 * background refresh recomputes it; the page shows the snapshot's "as of" time.
 */

/** How old the dashboard's figures may get before a background refresh starts. */
export const SNAPSHOT_TTL_MS = 5 * 60_000;
/**
 * How long a read of the unit tallies is reused when this process wrote none since (a write
 * here invalidates it at once; the bound is for writes by other processes on a shared MongoDB).
 * Reading them costs ~40 ms on FerretDB at 20 models × 120 countries (every map entry decoded).
 */
export const TALLY_CACHE_MS = 10_000;
/** Periods of the transparency report kept in memory. */
const SNAPSHOT_KEYS_KEPT = 200;
/** How long the very first dashboard view waits for figures before saying they are on their way. */
export const FIRST_SNAPSHOT_WAIT_MS = 5_000;
const MONTHS_SHOWN = 12;
const DAY_MS = 86_400_000;

export interface InsightFilters {
  model?: string;
  risk?: RiskLevel;
}

export interface Actor {
  userId: string;
}

/**
 * Hidden counts: `{ lessThan: N }` in JSON, "fewer than N" on the page; `{ withheld: true }`
 * ("not shown") for a count at or above the threshold hidden so that a small one cannot be
 * worked out by subtraction (see `publicPartition`).
 */
export type PublicCount = number | { lessThan: number } | { withheld: true };

export interface DurationStats {
  /** Cases measured. */
  n: number;
  medianMs: number | null;
  p90Ms: number | null;
}

// ---------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------

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

/** A count as the public may see it: below the threshold it is only "fewer than N". */
export const publicCount = (n: number, min: number): PublicCount => (n < min ? { lessThan: min } : n);

/**
 * A total and the parts it splits into (each counted once: the parts add up to the total), as
 * the public may see them, with secondary suppression: when exactly one part is hidden (below
 * `min`) while the total is shown, that part would be the total minus the parts shown, so the
 * next smallest shown part is withheld too (or, with no other part to withhold, the total).
 * Parts that do not add up to the total (a case may have several harm categories) cannot be
 * subtracted exactly: pass `partition: false` and only the primary rule applies.
 */
export function publicPartition(total: number, parts: readonly number[], min: number, partition = true): { total: PublicCount; parts: PublicCount[] } {
  const hidden = parts.map((n) => n < min);
  let hideTotal = total < min;
  if (partition && !hideTotal && hidden.filter(Boolean).length === 1) {
    const next = parts.map((n, i) => ({ n, i })).filter(({ i }) => !hidden[i]).sort((a, b) => a.n - b.n || a.i - b.i)[0];
    if (next) hidden[next.i] = true;
    else hideTotal = true;
  }
  const withheld = { withheld: true as const };
  return {
    total: hideTotal ? (total < min ? { lessThan: min } : withheld) : total,
    parts: parts.map((n, i) => (!hidden[i] ? n : n < min ? { lessThan: min } : withheld)),
  };
}

/** The first instant of each of the `count` UTC months ending with the month of `now`, plus the end. */
export function monthStarts(now: Date, count: number): Date[] {
  const starts: Date[] = [];
  for (let i = count - 1; i >= -1; i--) starts.push(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1)));
  return starts;
}

const monthLabel = (d: Date) => d.toISOString().slice(0, 7);

/** Groups `{ _id, n }` rows into a sorted list, biggest first. */
const countsOf = (rows: Array<{ _id: unknown; n: number }>) =>
  rows.map((r) => ({ key: r._id === null || r._id === undefined ? null : String(r._id), n: r.n })).sort((a, b) => b.n - a.n || String(a.key).localeCompare(String(b.key)));

/**
 * A value for a CSV cell: quoted when needed, and a leading `= + - @` (or tab/CR) defused so a
 * spreadsheet never runs what a customer or reporter typed as a formula.
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  let s = value instanceof Date ? value.toISOString() : Array.isArray(value) ? value.join(';') : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

// ---------------------------------------------------------------------------------------
// Snapshot cache (stale-while-revalidate, on the injected clock)
// ---------------------------------------------------------------------------------------

function snapshotCache<T>(clock: Clock, logger: Logger, ttlMs: number) {
  const entries = new Map<string, { at: number; value: T }>();
  const running = new Map<string, Promise<T>>();

  function refresh(key: string, compute: () => Promise<T>): Promise<T> {
    let run = running.get(key);
    if (!run) {
      run = compute()
        .then((value) => {
          entries.delete(key); // re-insert: the map's order is then least recently computed first
          entries.set(key, { at: clock.now().getTime(), value });
          while (entries.size > SNAPSHOT_KEYS_KEPT) entries.delete(entries.keys().next().value!);
          return value;
        })
        .finally(() => running.delete(key));
      running.set(key, run);
    }
    return run;
  }

  return {
    refresh,

    /**
     * A fresh value, a stale one (a refresh then starts), or for a key never computed, the
     * value once computed, or null if that takes longer than `waitMs`.
     */
    async get(key: string, compute: () => Promise<T>, waitMs = Infinity): Promise<T | null> {
      const entry = entries.get(key);
      if (!entry) {
        const first = refresh(key, compute);
        if (waitMs === Infinity) return first;
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), waitMs)));
        first.catch((err: unknown) => logger.error({ err, key }, 'insight snapshot failed'));
        return Promise.race([first, late]).finally(() => clearTimeout(timer));
      }
      if (clock.now().getTime() - entry.at >= ttlMs) {
        refresh(key, compute).catch((err: unknown) => logger.error({ err, key }, 'insight snapshot refresh failed'));
      }
      return entry.value;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Exports
// ---------------------------------------------------------------------------------------

export const EXPORT_KINDS = ['units', 'registrations', 'check-ins', 'cases', 'actions'] as const;
export type ExportKind = (typeof EXPORT_KINDS)[number];
export type ExportFormat = 'csv' | 'json';

export interface ExportFilters extends InsightFilters {
  country?: string;
  status?: string;
}

interface ExportSource {
  columns: string[];
  rows(filter: Record<string, unknown>): AsyncIterable<Record<string, unknown>>;
}

const CURSOR_BATCH = 500;

// ---------------------------------------------------------------------------------------
// EPCIS 2.0
// ---------------------------------------------------------------------------------------

export const EPCIS_CONTEXT = 'https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld';
/** Our extension fields (e.g. how many check-ins a run holds) live under this prefix. */
export const DOWNSTREAM_NS = 'https://downstream.example/ns/epcis#';

export const epcOf = (unitIdValue: string) => `urn:downstream:unit:${unitIdValue}`;
const locationOf = (country: string) => `urn:downstream:location:country:${country}`;
const partyOf = (kind: string, id: string) => `urn:downstream:party:${kind}:${id}`;

export interface EpcisEvent {
  type: 'ObjectEvent';
  eventID: string;
  eventTime: string;
  eventTimeZoneOffset: string;
  epcList: string[];
  action: 'ADD' | 'OBSERVE';
  bizStep: string;
  disposition: string;
  readPoint?: { id: string };
  bizLocation?: { id: string };
  sourceList?: Array<{ type: string; source: string }>;
  destinationList?: Array<{ type: string; destination: string }>;
  [extension: `downstream:${string}`]: unknown;
}

type UnitForEpcis = {
  _id: string;
  modelId: string;
  createdAt: Date;
  firstSale?: { channelPartner?: string | null; shipToCountry?: string | null; soldAt?: Date | null } | null;
};
type RegistrationForEpcis = { _id: string; country: string; createdAt: Date; status?: string | null };
type TransferForEpcis = { _id: string; registrationId: string; kind: string; status: string; newLocation?: { country: string } | null; effectiveDate: Date; createdAt: Date; decision?: { at?: Date | null } | null };

/**
 * A unit's history as EPCIS 2.0 ObjectEvents (what: the unit's EPC; when: eventTime in UTC;
 * where: the country as readPoint/bizLocation; why: CBV bizStep and disposition). Parties are
 * named by our ids, never by names. Only what happened is exported: a transfer still pending
 * or refused is not an event. Check-ins come from the unit's runs (one event per run, with its
 * count and last sighting as extensions): the summary is read by `_id`, the raw log never.
 */
export function unitEpcisEvents(unit: UnitForEpcis, registrations: RegistrationForEpcis[], transfers: TransferForEpcis[], runs: readonly CheckInRun[] = []): EpcisEvent[] {
  const epc = epcOf(unit._id);
  const base = (id: string, at: Date) => ({ type: 'ObjectEvent' as const, eventID: `urn:downstream:event:${id}`, eventTime: at.toISOString(), eventTimeZoneOffset: '+00:00', epcList: [epc] });
  const events: EpcisEvent[] = [];
  const sale = unit.firstSale;
  if (sale?.soldAt || sale?.shipToCountry) {
    events.push({
      ...base(`first-sale:${unit._id}`, sale.soldAt ?? unit.createdAt),
      action: 'ADD',
      bizStep: 'shipping',
      disposition: 'in_transit',
      ...(sale.shipToCountry ? { destinationList: [{ type: 'location', destination: locationOf(sale.shipToCountry) }] } : {}),
      'downstream:modelId': unit.modelId,
    });
  }
  for (const r of registrations) {
    events.push({
      ...base(`registration:${r._id}`, r.createdAt),
      action: 'OBSERVE',
      bizStep: 'accepting',
      disposition: 'in_progress',
      readPoint: { id: locationOf(r.country) },
      bizLocation: { id: locationOf(r.country) },
      destinationList: [
        { type: 'owning_party', destination: partyOf('registration', r._id) },
        { type: 'location', destination: locationOf(r.country) },
      ],
    });
  }
  for (const t of transfers) {
    if (t.status !== 'effective' || !t.newLocation) continue;
    const at = t.decision?.at ?? t.createdAt;
    const resale = t.kind === 'resale';
    events.push({
      ...base(`transfer:${t._id}`, at),
      action: 'OBSERVE',
      bizStep: resale ? 'accepting' : 'transporting',
      disposition: resale ? 'in_progress' : 'in_transit',
      bizLocation: { id: locationOf(t.newLocation.country) },
      sourceList: [{ type: 'owning_party', source: partyOf('registration', t.registrationId) }],
      destinationList: [
        ...(resale ? [{ type: 'owning_party', destination: partyOf('transfer', t._id) }] : []),
        { type: 'location', destination: locationOf(t.newLocation.country) },
      ],
      'downstream:transferKind': t.kind,
      'downstream:effectiveDate': t.effectiveDate.toISOString().slice(0, 10),
    });
  }
  for (const run of runs) {
    events.push({
      ...base(`check-ins:${unit._id}:${run.firstAt.toISOString()}`, run.firstAt),
      action: 'OBSERVE',
      bizStep: 'urn:downstream:bizstep:firmware-check-in',
      disposition: 'active',
      readPoint: { id: locationOf(run.country) },
      'downstream:checkInCount': run.count,
      'downstream:lastSeen': run.lastAt.toISOString(),
      ...(run.firstFirmware ? { 'downstream:firstFirmware': run.firstFirmware } : {}),
      ...(run.lastFirmware ? { 'downstream:lastFirmware': run.lastFirmware } : {}),
    });
  }
  return events.sort((a, b) => a.eventTime.localeCompare(b.eventTime));
}

export function epcisDocumentHead(now: Date) {
  return {
    '@context': [EPCIS_CONTEXT, { downstream: DOWNSTREAM_NS }],
    type: 'EPCISDocument',
    schemaVersion: '2.0',
    creationDate: now.toISOString(),
  };
}

// ---------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------

export function createInsightService(deps: { clock: Clock; config: Pick<Config, 'transparencyMinCount'>; audit: AuditService; logger: Logger; stores: { checkInHistory: Pick<CheckInHistoryStore, 'runsOf'> } }) {
  const { clock, config, audit, logger } = deps;
  const snapshots = snapshotCache<Awaited<ReturnType<typeof computeSnapshot>>>(clock, logger, SNAPSHOT_TTL_MS);
  /** The one rebuild of the unit tallies this process starts when none was ever recorded. */
  let talliesReady: Promise<void> | null = null;

  /**
   * Resolves once the unit tallies exist: at once if a rebuild was ever recorded on this
   * database (they are then kept on write), else after the rebuild this starts (first start of
   * this version on an existing database; seconds to minutes, see models/insight.ts).
   */
  function ensureUnitTallies(): Promise<void> {
    talliesReady ??= (async () => {
      if (await unitTallyState()) return;
      logger.info('insight: no unit tallies on this database yet, rebuilding them from the units');
      const done = await rebuildUnitTallies({ now: clock.now() });
      logger.info(done, 'insight: unit tallies rebuilt');
      if (done.concurrentChanges) logger.warn({ concurrentChanges: done.concurrentChanges }, 'insight: units changed during the tally rebuild; run `npm run insight:rebuild` for exact figures');
    })().catch((err: unknown) => {
      talliesReady = null; // the next view tries again
      throw err;
    });
    return talliesReady;
  }

  /** Waits for `p` at most `waitMs`: null when it is later than that (it goes on in the background). */
  async function within<T>(p: Promise<T>, waitMs: number): Promise<T | null> {
    if (waitMs === Infinity) return p;
    p.catch((err: unknown) => logger.error({ err }, 'insight figures failed'));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), waitMs)));
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }
  const transparencies = snapshotCache<Awaited<ReturnType<typeof computeTransparency>>>(clock, logger, SNAPSHOT_TTL_MS);

  /** The model ids a filter selects: null means all models. */
  async function modelIdsFor(filters: InsightFilters): Promise<string[] | null> {
    if (filters.model) {
      const model = await ProductModel.findById(normaliseCode(filters.model), { riskLevel: 1 }).lean();
      if (!model) throw new ValidationError({ model: 'No product model with this SKU.' });
      return !filters.risk || model.riskLevel === filters.risk ? [model._id] : [];
    }
    if (!filters.risk) return null;
    return (await ProductModel.find({ riskLevel: filters.risk }, { _id: 1 }).lean()).map((m) => m._id);
  }

  const inModels = (field: string, ids: string[] | null) => (ids ? { [field]: { $in: ids } } : {});

  /** Rows grouped per model, so one scan serves every model and risk filter. */
  const forModels = <T extends { model: string | null }>(rows: T[], ids: string[] | null) => (ids ? rows.filter((r) => r.model !== null && ids.includes(r.model)) : rows);
  const forCaseModels = <T extends { models: string[] }>(rows: T[], ids: string[] | null) => (ids ? rows.filter((r) => r.models.some((m) => ids.includes(m))) : rows);
  const sum = (rows: Array<{ n: number }>) => rows.reduce((a, r) => a + r.n, 0);

  let tallyCache: { version: number; at: number; read: ReturnType<typeof readUnitTallies> } | null = null;
  let choices: { at: number; read: Promise<Array<{ _id: string; name: string; riskLevel: RiskLevel }>> } | null = null;
  /** The tallies, re-read when this process changed them or TALLY_CACHE_MS passed (monotonic time, not the clock: a cache bound). */
  function currentTallies() {
    const version = unitTallyVersion();
    const at = performance.now();
    if (!tallyCache || tallyCache.version !== version || at - tallyCache.at >= TALLY_CACHE_MS) {
      const read = readUnitTallies();
      tallyCache = { version, at, read };
      read.catch(() => (tallyCache = null));
    }
    return tallyCache.read;
  }

  /** The units' figures for the selected models, from the per-model tallies kept on write. */
  async function unitFigures(ids: string[] | null) {
    const tallies = (await currentTallies()).filter((t) => !ids || ids.includes(t.modelId));
    const registered = new Map<string, number>();
    const checkIn = new Map<string, number>();
    const totals = { units: 0, registered: 0, withCheckIns: 0, transferPending: 0 };
    const addAll = (into: Map<string, number>, counts: Record<string, number>) => {
      for (const [country, n] of Object.entries(counts)) if (n) into.set(country, (into.get(country) ?? 0) + n);
    };
    for (const t of tallies) {
      totals.units += t.units;
      totals.registered += t.registered;
      totals.withCheckIns += t.withCheckIns;
      totals.transferPending += t.transferPending;
      addAll(registered, t.byRegisteredCountry);
      addAll(checkIn, t.byCheckInCountry);
    }
    const list = (m: Map<string, number>) => [...m].filter(([, n]) => n > 0).map(([country, n]) => ({ country, name: countryName(country), n })).sort((a, b) => b.n - a.n || a.name.localeCompare(b.name));
    return { totals, byRegisteredCountry: list(registered), byCheckInCountry: list(checkIn) };
  }

  /**
   * Flags per month, rule and model: one projected scan of the flags raised in the 12 months
   * (a small collection), months assigned here. FerretDB v1 has no date operators, and one
   * `$match`+`$group` per month read the whole collection 12 times (2.4 s at scale 1 against
   * 0.3 s for the one scan, measured under load).
   */
  async function flagRows(now: Date) {
    const starts = monthStarts(now, MONTHS_SHOWN);
    const months = starts.slice(0, -1);
    const perMonth = months.map(() => new Map<string, { rule: FlagRule; model: string | null; n: number }>());
    const times = starts.map((d) => d.getTime());
    const cursor = Flag.find({ raisedAt: { $gte: starts[0]!, $lt: starts.at(-1)! } }, { rule: 1, modelId: 1, raisedAt: 1 }).lean().cursor({ batchSize: CURSOR_BATCH });
    for await (const f of cursor) {
      const t = f.raisedAt.getTime();
      const i = times.findIndex((start, k) => k < months.length && t >= start && t < times[k + 1]!);
      if (i < 0) continue;
      const model = f.modelId ?? null;
      const key = `${f.rule}|${model}`;
      const row = perMonth[i]!.get(key) ?? { rule: f.rule as FlagRule, model, n: 0 };
      row.n++;
      perMonth[i]!.set(key, row);
    }
    return { months: months.map(monthLabel), perMonth: perMonth.map((rows) => [...rows.values()]) };
  }

  function flagFigures(flags: Awaited<ReturnType<typeof flagRows>>, ids: string[] | null) {
    const series = FLAG_RULES.map((rule) => {
      const counts = flags.perMonth.map((rows) => sum(forModels(rows, ids).filter((r) => r.rule === rule)));
      return { rule, counts, total: counts.reduce((a, b) => a + b, 0) };
    });
    return { months: flags.months, series };
  }

  /**
   * Reports by harm category and country: one projected scan of the period's reports (a small
   * collection). FerretDB v1 unwinds only top-level arrays, so the aggregation needed one count
   * per harm category: ten scans, 7.2 s at scale 1 against 0.9 s for the one scan.
   */
  async function reportFigures(from: Date, to: Date) {
    const byHarm = new Map<string, number>();
    const byCountry = new Map<string | null, number>();
    let total = 0;
    const cursor = Report.find({ receivedAt: { $gte: from, $lt: to } }, { 'what.harmCategories': 1, 'where.country': 1 }).lean().cursor({ batchSize: CURSOR_BATCH });
    for await (const r of cursor) {
      total++;
      for (const category of new Set(r.what?.harmCategories ?? [])) byHarm.set(category, (byHarm.get(category) ?? 0) + 1);
      const country = r.where?.country ?? null;
      byCountry.set(country, (byCountry.get(country) ?? 0) + 1);
    }
    return {
      total,
      byHarm: HARM_CATEGORIES.map((category) => ({ category, n: byHarm.get(category) ?? 0 })),
      byCountry: countsOf([...byCountry].map(([_id, n]) => ({ _id, n }))).map((r) => ({ country: r.key ?? '??', name: countryName(r.key ?? ''), n: r.n })),
    };
  }

  /**
   * Time to acknowledge, to the first leverage action and to closure of one case: FerretDB v1
   * has no date arithmetic, so projected scans of cases (a small collection) give the times and
   * the percentiles are taken here.
   */
  function caseTime(c: { modelIds?: string[] | null; openedAt: Date; closedAt?: Date | null; status: string; deadlines?: { acknowledgedAt?: Date | null } | null; actions?: Array<{ createdAt: Date }> | null }) {
    const opened = c.openedAt.getTime();
    const actions = (c.actions ?? []).map((a) => a.createdAt.getTime());
    return {
      models: c.modelIds ?? [],
      acknowledge: c.deadlines?.acknowledgedAt ? c.deadlines.acknowledgedAt.getTime() - opened : null,
      firstAction: actions.length ? Math.min(...actions) - opened : null,
      close: c.status === 'closed' && c.closedAt ? c.closedAt.getTime() - opened : null,
    };
  }

  const timeStats = (rows: Array<ReturnType<typeof caseTime>>) => {
    const of = (k: 'acknowledge' | 'firstAction' | 'close') => durationStats(rows.flatMap((r) => (r[k] === null ? [] : [r[k]])));
    return { acknowledge: of('acknowledge'), firstAction: of('firstAction'), close: of('close') };
  };

  /**
   * Cases by status, priority and models, response times and overdue counts: one projected
   * scan of the cases (a small collection) instead of six aggregations that each read all of
   * them (5.3 s at scale 1 under load); "any deadline" stays the cases module's own filter.
   */
  async function caseRows(now: Date, since: Date) {
    const grouped = new Map<string, { status: CaseStatus; priority: PriorityLevel | null; models: string[]; n: number }>();
    const times: Array<ReturnType<typeof caseTime>> = [];
    const overdue = { acknowledge: new Map<string, number>(), feedback: new Map<string, number>(), review: new Map<string, number>() };
    const rowsOf = (m: Map<string, number>) => [...m].map(([key, n]) => ({ models: JSON.parse(key) as string[], n }));
    const projection = { status: 1, priorityLevel: 1, modelIds: 1, openedAt: 1, closedAt: 1, deadlines: 1, 'actions.createdAt': 1 };
    const anyOverdue = Case.aggregate<{ _id: string[] | null; n: number }>([{ $match: overdueFilter(now) }, { $group: { _id: '$modelIds', n: { $sum: 1 } } }]).then((rows) => rows.map((r) => ({ models: r._id ?? [], n: r.n })));
    anyOverdue.catch(() => undefined); // awaited below; if the scan fails first, its error is the one thrown
    const before = (d: Date | null | undefined) => d instanceof Date && d.getTime() < now.getTime();
    for await (const c of Case.find({}, projection).lean().cursor({ batchSize: CURSOR_BATCH })) {
      const models = c.modelIds ?? [];
      const modelsKey = JSON.stringify(models);
      const key = `${c.status}|${c.priorityLevel ?? ''}|${modelsKey}`;
      const g = grouped.get(key) ?? { status: c.status as CaseStatus, priority: (c.priorityLevel ?? null) as PriorityLevel | null, models, n: 0 };
      g.n++;
      grouped.set(key, g);
      if (c.openedAt.getTime() >= since.getTime()) times.push(caseTime(c));
      if (c.status === 'closed') continue;
      const d = c.deadlines;
      const count = (m: Map<string, number>) => m.set(modelsKey, (m.get(modelsKey) ?? 0) + 1);
      if (!d?.acknowledgedAt && before(d?.acknowledgeBy)) count(overdue.acknowledge);
      if (!d?.feedbackGivenAt && before(d?.feedbackBy)) count(overdue.feedback);
      if (before(d?.reviewBy)) count(overdue.review);
    }
    return { grouped: [...grouped.values()], times, overdue: { acknowledge: rowsOf(overdue.acknowledge), feedback: rowsOf(overdue.feedback), review: rowsOf(overdue.review), any: await anyOverdue } };
  }

  function caseFigures(cases: Awaited<ReturnType<typeof caseRows>>, ids: string[] | null) {
    const priorities = [...PRIORITY_LEVELS, 'untriaged'] as const;
    const grouped = forCaseModels(cases.grouped, ids);
    const byStatus = CASE_STATUSES.map((status) => {
      const byPriority = Object.fromEntries(priorities.map((p) => [p, 0])) as Record<(typeof priorities)[number], number>;
      for (const g of grouped) if (g.status === status) byPriority[g.priority ?? 'untriaged'] += g.n;
      return { status, byPriority, n: Object.values(byPriority).reduce((a, b) => a + b, 0) };
    });
    const o = cases.overdue;
    return {
      byStatus,
      priorities,
      total: byStatus.reduce((a, st) => a + st.n, 0),
      times: timeStats(forCaseModels(cases.times, ids)),
      overdue: { acknowledge: sum(forCaseModels(o.acknowledge, ids)), feedback: sum(forCaseModels(o.feedback, ids)), review: sum(forCaseModels(o.review, ids)), any: sum(forCaseModels(o.any, ids)) },
    };
  }

  /** The small collections' figures, for all filters at once: a handful of scans (units: tallies). */
  async function computeSnapshot() {
    const now = clock.now();
    const since = new Date(now.getTime() - 365 * DAY_MS);
    const [flags, reports, cases] = await Promise.all([flagRows(now), reportFigures(since, new Date(now.getTime() + 1)), caseRows(now, since)]);
    return { asOf: now, since, flags, reports, cases };
  }

  /**
   * The transparency report's case figures for cases opened in [from, to) (harm categories,
   * outcomes, response times) and leverage actions taken in it: one projected scan of the cases
   * (a small collection) instead of four aggregations that each read all of them.
   */
  async function casesForTransparency(from: Date, to: Date) {
    const harm = new Map<string, number>();
    const outcomes = new Map<string, { _id: { status: string; reason: string | null }; n: number }>();
    const actions = new Map<string, number>();
    const caseRowsInPeriod: Array<ReturnType<typeof caseTime>> = [];
    const [start, end] = [from.getTime(), to.getTime()];
    const inPeriod = (d: Date | null | undefined) => d instanceof Date && d.getTime() >= start && d.getTime() < end;
    const projection = { harmCategories: 1, status: 1, closureReason: 1, modelIds: 1, openedAt: 1, closedAt: 1, 'deadlines.acknowledgedAt': 1, 'actions.kind': 1, 'actions.createdAt': 1 };
    for await (const c of Case.find({}, projection).lean().cursor({ batchSize: CURSOR_BATCH })) {
      for (const a of c.actions ?? []) if (inPeriod(a.createdAt)) actions.set(a.kind, (actions.get(a.kind) ?? 0) + 1);
      if (!inPeriod(c.openedAt)) continue;
      for (const category of c.harmCategories ?? []) harm.set(category, (harm.get(category) ?? 0) + 1);
      const reason = c.closureReason ?? null;
      const key = `${c.status}|${reason}`;
      const o = outcomes.get(key) ?? { _id: { status: c.status, reason }, n: 0 };
      o.n++;
      outcomes.set(key, o);
      caseRowsInPeriod.push(caseTime(c));
    }
    const rows = (m: Map<string, number>) => [...m].map(([_id, n]) => ({ _id, n }));
    return { harm: rows(harm), outcomes: [...outcomes.values()], actions: rows(actions), caseRowsInPeriod };
  }

  async function computeTransparency(from: Date, to: Date) {
    const min = config.transparencyMinCount;
    const count = (n: number) => publicCount(n, min);
    const [reportStatus, { harm, outcomes, actions, caseRowsInPeriod }] = await Promise.all([
      Report.aggregate<{ _id: string; n: number }>([{ $match: { receivedAt: { $gte: from, $lt: to } } }, { $group: { _id: '$status', n: { $sum: 1 } } }]),
      casesForTransparency(from, to),
    ]);
    const times = timeStats(caseRowsInPeriod);
    const n = (rows: Array<{ _id: unknown; n: number }>, key: string) => rows.find((r) => r._id === key)?.n ?? 0;
    const received = reportStatus.reduce((a, r) => a + r.n, 0);
    const closedBy = (reason: string) => outcomes.filter((o) => o._id.status === 'closed' && o._id.reason === reason).reduce((a, o) => a + o.n, 0);
    const stillOpen = outcomes.filter((o) => o._id.status !== 'closed').reduce((a, o) => a + o.n, 0);
    // A median of two cases tells the public about those two cases: hidden like a small count.
    const days = (s: DurationStats) => ({ cases: count(s.n), medianDays: s.n >= min && s.medianMs !== null ? Math.round((s.medianMs / DAY_MS) * 10) / 10 : null });
    // Totals and the parts they split into: a lone hidden part is protected by secondary suppression.
    const statuses = publicPartition(received, REPORT_STATUSES.map((status) => n(reportStatus, status)), min);
    const openedCount = outcomes.reduce((a, o) => a + o.n, 0);
    const closureReasons = ['substantiated', 'unsubstantiated', 'referred', 'duplicate', 'out-of-scope'] as const;
    const byOutcome = publicPartition(openedCount, [stillOpen, ...closureReasons.map(closedBy)], min);
    // A case may have several harm categories, or none yet: the parts are not a partition of `opened`.
    const byHarm = publicPartition(openedCount, HARM_CATEGORIES.map((category) => n(harm, category)), min, false);
    return {
      period: { from: from.toISOString().slice(0, 10), to: new Date(to.getTime() - DAY_MS).toISOString().slice(0, 10) },
      threshold: min,
      generatedAt: clock.now(),
      reports: {
        received: statuses.total,
        byStatus: REPORT_STATUSES.map((status, i) => ({ status, count: statuses.parts[i]! })),
      },
      cases: {
        opened: byOutcome.total,
        byHarmCategory: HARM_CATEGORIES.map((category, i) => ({ category, count: byHarm.parts[i]! })),
        byOutcome: (['open', ...closureReasons] as const).map((outcome, i) => ({ outcome, count: byOutcome.parts[i]! })),
      },
      leverageActions: LEVERAGE_ACTIONS.map((kind) => ({ kind, count: count(n(actions, kind)) })),
      responseTimes: { acknowledge: days(times.acknowledge), firstAction: days(times.firstAction), close: days(times.close) },
    };
  }

  // ----- exports -----

  async function unitMatch(filters: ExportFilters, countryField: string) {
    const ids = await modelIdsFor(filters);
    return { ...inModels('modelId', ids), ...(filters.country ? { [countryField]: filters.country } : {}) };
  }

  const sources: Record<ExportKind, ExportSource & { match(f: ExportFilters): Promise<Record<string, unknown>> }> = {
    units: {
      columns: ['unitId', 'modelId', 'serial', 'status', 'currentCountry', 'currentOwner', 'endUserType', 'registrationId', 'firstSaleCountry', 'channelPartner', 'soldAt', 'checkIns', 'lastCheckInCountry', 'updates', 'warranty'],
      match: async (f) => ({ ...(await unitMatch(f, 'current.country')), ...(f.status ? { status: f.status } : {}) }),
      async *rows(filter) {
        for await (const u of Unit.find(filter, { countries: 0 }).lean().cursor({ batchSize: CURSOR_BATCH })) {
          yield { unitId: u._id, modelId: u.modelId, serial: u.serial, status: u.status, currentCountry: u.current?.country, currentOwner: u.current?.owner, endUserType: u.current?.endUserType, registrationId: u.registrationId, firstSaleCountry: u.firstSale?.shipToCountry, channelPartner: u.firstSale?.channelPartner, soldAt: u.firstSale?.soldAt, checkIns: u.checkIns?.count ?? 0, lastCheckInCountry: u.checkIns?.lastCountry, updates: u.controls?.updates, warranty: u.controls?.warranty };
        }
      },
    },
    registrations: {
      // Contact details stay out of bulk exports: the registration page shows them to staff.
      columns: ['registrationId', 'unitId', 'modelId', 'serial', 'status', 'ownerOrganisation', 'country', 'region', 'city', 'endUserType', 'intendedUse', 'purchaseDate', 'seller', 'termsVersion', 'createdAt'],
      match: async (f) => ({ ...(await unitMatch(f, 'country')), ...(f.status ? { status: f.status } : {}) }),
      async *rows(filter) {
        for await (const r of Registration.find(filter, { contact: 0, declaredEndUse: 0, proofOfPurchase: 0 }).lean().cursor({ batchSize: CURSOR_BATCH })) {
          yield { registrationId: r._id, unitId: r.unitId, modelId: r.modelId, serial: r.serial, status: r.status, ownerOrganisation: r.ownerOrganisation, country: r.country, region: r.region, city: r.city, endUserType: r.endUserType, intendedUse: r.intendedUse, purchaseDate: r.purchaseDate, seller: r.seller, termsVersion: r.termsAccepted?.version, createdAt: r.createdAt };
        }
      },
    },
    'check-ins': {
      columns: ['unitId', 'modelId', 'serial', 'registeredCountry', 'checkIns', 'lastAt', 'lastCountry', 'lastFirmware', 'countries', 'runs', 'updates'],
      match: async (f) => ({ ...(await unitMatch(f, 'checkIns.lastCountry')), 'checkIns.count': { $gt: 0 } }),
      async *rows(filter) {
        for await (const u of Unit.find(filter, { modelId: 1, serial: 1, current: 1, checkIns: 1, controls: 1 }).lean().cursor({ batchSize: CURSOR_BATCH })) {
          const runs = await deps.stores.checkInHistory.runsOf(u);
          yield { unitId: u._id, modelId: u.modelId, serial: u.serial, registeredCountry: u.current?.country, checkIns: u.checkIns?.count ?? 0, lastAt: u.checkIns?.lastAt, lastCountry: u.checkIns?.lastCountry, lastFirmware: u.checkIns?.lastFirmware, countries: [...new Set(runs.map((r) => r.country))], runs: runs.length, updates: u.controls?.updates };
        }
      },
    },
    cases: {
      columns: ['caseId', 'status', 'priority', 'closureReason', 'sourceKinds', 'rules', 'harmCategories', 'countries', 'modelIds', 'units', 'actions', 'openedAt', 'acknowledgedAt', 'closedAt', 'overdue'],
      match: async (f) => {
        const ids = await modelIdsFor(f);
        return { ...inModels('modelIds', ids), ...(f.country ? { countries: f.country } : {}), ...(f.status ? { status: f.status } : {}) };
      },
      async *rows(filter) {
        const now = clock.now();
        const projection = { title: 1, status: 1, priorityLevel: 1, closureReason: 1, sourceKinds: 1, rules: 1, harmCategories: 1, countries: 1, modelIds: 1, unitIds: 1, 'actions.kind': 1, openedAt: 1, closedAt: 1, deadlines: 1 };
        for await (const c of Case.find(filter, projection).lean().cursor({ batchSize: CURSOR_BATCH })) {
          const d = c.deadlines;
          const overdue = c.status !== 'closed' && ((d?.acknowledgeBy && !d.acknowledgedAt && d.acknowledgeBy < now) || (d?.feedbackBy && !d.feedbackGivenAt && d.feedbackBy < now) || (d?.reviewBy && d.reviewBy < now));
          yield { caseId: c._id, status: c.status, priority: c.priorityLevel, closureReason: c.closureReason, sourceKinds: c.sourceKinds, rules: c.rules, harmCategories: c.harmCategories, countries: c.countries, modelIds: c.modelIds, units: c.unitIds.length, actions: c.actions.length, openedAt: c.openedAt, acknowledgedAt: d?.acknowledgedAt, closedAt: c.closedAt, overdue: Boolean(overdue) };
        }
      },
    },
    actions: {
      columns: ['caseId', 'actionId', 'kind', 'status', 'units', 'dueBy', 'createdAt', 'updatedAt', 'outcome'],
      match: async (f) => {
        const ids = await modelIdsFor(f);
        return { ...inModels('modelIds', ids), ...(f.country ? { countries: f.country } : {}), ...(f.status ? { 'actions.status': f.status } : {}) };
      },
      async *rows(filter) {
        const pipeline: PipelineStage[] = [{ $match: filter }, { $unwind: '$actions' }, ...(filter['actions.status'] ? [{ $match: { 'actions.status': filter['actions.status'] } }] : []), { $project: { actions: 1 } }];
        for await (const c of Case.aggregate<{ _id: string; actions: { _id: string; kind: string; status: string; target?: { unitIds?: string[] }; dueBy?: Date | null; createdAt: Date; updatedAt: Date; outcome?: string } }>(pipeline).cursor({ batchSize: CURSOR_BATCH })) {
          const a = c.actions;
          yield { caseId: c._id, actionId: a._id, kind: a.kind, status: a.status, units: a.target?.unitIds?.length ?? 0, dueBy: a.dueBy, createdAt: a.createdAt, updatedAt: a.updatedAt, outcome: a.outcome };
        }
      },
    },
  };

  async function* csvLines(columns: string[], rows: AsyncIterable<Record<string, unknown>>) {
    yield `${columns.join(',')}\r\n`;
    for await (const row of rows) yield `${columns.map((c) => csvCell(row[c])).join(',')}\r\n`;
  }

  async function* jsonArray(rows: AsyncIterable<unknown>) {
    yield '[';
    let first = true;
    for await (const row of rows) {
      yield `${first ? '' : ','}\n${JSON.stringify(row)}`;
      first = false;
    }
    yield '\n]\n';
  }

  async function recordExport(actor: Actor, subjectId: string, detail: Record<string, unknown>) {
    await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'export.downloaded', subjectKind: 'export', subjectId, detail });
  }

  const stamp = (d: Date) => d.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');

  return {
    SNAPSHOT_TTL_MS,

    /**
     * The dashboard's figures for a filter: the units' from the tallies (live), the rest cut
     * from the one snapshot. The first call waits for the snapshot (and, on a database never
     * tallied, the tally rebuild) at most `waitMs`; null means they are still being computed.
     */
    async dashboard(filters: InsightFilters, waitMs = FIRST_SNAPSHOT_WAIT_MS) {
      const ids = await modelIdsFor(filters);
      const [tallied, snapshot] = await Promise.all([within(ensureUnitTallies().then(() => true), waitMs), snapshots.get('all', computeSnapshot, waitMs)]);
      if (!snapshot || !tallied) return null;
      return {
        asOf: snapshot.asOf,
        since: snapshot.since,
        filters,
        units: await unitFigures(ids),
        flags: flagFigures(snapshot.flags, ids),
        reports: snapshot.reports,
        cases: caseFigures(snapshot.cases, ids),
      };
    },

    /**
     * Recomputes the snapshot now (tests, and a job that wants fresh figures); the unit tallies
     * are kept on write, so only built here if they never were.
     */
    async refreshDashboard() {
      await Promise.all([ensureUnitTallies(), snapshots.refresh('all', computeSnapshot)]);
    },

    ensureUnitTallies,

    /**
     * For the filter form: every model, by SKU (a small collection), re-read at most every
     * TALLY_CACHE_MS: a model created meanwhile can be filtered on at once, and is listed soon.
     */
    modelChoices() {
      const at = performance.now();
      if (!choices || at - choices.at >= TALLY_CACHE_MS) {
        const read = ProductModel.find({}, { name: 1, riskLevel: 1 }).sort({ _id: 1 }).lean().exec();
        choices = { at, read };
        read.catch(() => (choices = null));
      }
      return choices.read;
    },

    /**
     * The public report for the days `from`..`to` (both included), aggregated only: counts
     * below TRANSPARENCY_MIN_COUNT come back as `{ lessThan: N }`.
     */
    transparency(period: { from?: Date; to?: Date } = {}) {
      const today = new Date(Date.UTC(clock.now().getUTCFullYear(), clock.now().getUTCMonth(), clock.now().getUTCDate()));
      const to = period.to ?? today;
      const from = period.from ?? new Date(Date.UTC(to.getUTCFullYear() - 1, to.getUTCMonth(), to.getUTCDate() + 1));
      if (from > to) throw new ValidationError({ to: 'The end of the period must be on or after its start.' });
      if (to.getTime() - from.getTime() > 10 * 366 * DAY_MS) throw new ValidationError({ from: 'Choose a period of at most ten years.' });
      const end = new Date(to.getTime() + DAY_MS);
      return transparencies.get(`${from.toISOString()}|${end.toISOString()}`, () => computeTransparency(from, end)) as Promise<Awaited<ReturnType<typeof computeTransparency>>>;
    },

    /**
     * A streamed export (Mongoose cursor → lines → response): memory holds one cursor batch,
     * never the collection. Written to the audit log before the first byte.
     */
    async exportStream(kind: ExportKind, format: ExportFormat, filters: ExportFilters, actor: Actor) {
      const source = sources[kind];
      const filter = await source.match(filters);
      const now = clock.now();
      await recordExport(actor, `${kind}.${format}`, { kind, format, filters: { ...filters } });
      const rows = source.rows(filter);
      return {
        fileName: `downstream-${kind}-${stamp(now)}.${format}`,
        contentType: format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json; charset=utf-8',
        body: Readable.from(format === 'csv' ? csvLines(source.columns, rows) : jsonArray(rows)),
      };
    },

    /** One unit's history as an EPCIS 2.0 JSON-LD document. */
    async epcisUnit(unitIdValue: string, actor: Actor) {
      const unit = await Unit.findById(unitIdValue).lean();
      if (!unit) throw new NotFoundError('No such unit.');
      const eventList = await eventsOf(unit);
      await recordExport(actor, `epcis:unit:${unit._id}`, { kind: 'epcis', unitId: unit._id, events: eventList.length });
      return { ...epcisDocumentHead(clock.now()), epcisBody: { eventList } };
    },

    /**
     * Every unit of a model, streamed: one unit's events at a time. The units are an `_id`
     * range (ids start with the SKU), as the catalogue lists them.
     */
    async epcisModel(modelIdValue: string, actor: Actor) {
      const model = await ProductModel.findById(normaliseCode(modelIdValue), { _id: 1 }).lean();
      if (!model) throw new NotFoundError('No product model with this SKU.');
      await recordExport(actor, `epcis:model:${model._id}`, { kind: 'epcis', modelId: model._id });
      const head = JSON.stringify(epcisDocumentHead(clock.now()));
      const units = Unit.find({ _id: { $gt: `${model._id}:`, $lt: `${model._id};` } }, { countries: 0 }).lean().cursor({ batchSize: 100 });
      async function* body() {
        yield `${head.slice(0, -1)},"epcisBody":{"eventList":[`;
        let first = true;
        for await (const unit of units) {
          for (const event of await eventsOf(unit)) {
            yield `${first ? '' : ','}\n${JSON.stringify(event)}`;
            first = false;
          }
        }
        yield '\n]}}\n';
      }
      return { fileName: `downstream-epcis-${model._id}.jsonld`, body: Readable.from(body()) };
    },
  };

  async function eventsOf(unit: UnitForEpcis & { registrationIds?: string[] | null; transferIds?: string[] | null; checkIns?: { periods?: string[] | null } | null }) {
    const [registrations, transfers, runs] = await Promise.all([
      Promise.all((unit.registrationIds ?? []).map((id) => Registration.findById(id, { country: 1, createdAt: 1, status: 1 }).lean())),
      Promise.all((unit.transferIds ?? []).map((id) => Transfer.findById(id).lean())),
      deps.stores.checkInHistory.runsOf(unit),
    ]);
    return unitEpcisEvents(unit, registrations.filter((r) => r !== null), transfers.filter((t) => t !== null) as TransferForEpcis[], runs);
  }
}

export type InsightService = ReturnType<typeof createInsightService>;
