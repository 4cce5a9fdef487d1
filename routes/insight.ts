import { type Request, type Response } from 'express';
import { Router } from './router';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { ACTION_STATUSES, CASE_STATUSES } from '../server/domain/cases';
import { RISK_LEVELS } from '../server/domain/catalogue';
import { FLAG_RULES } from '../server/domain/flags';
import { ServiceUnavailableError } from '../server/errors';
import { requireRole } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { parse, parseQuery } from '../server/middleware/validate';
import { barRows, choropleth, humanDuration, stackedColumns } from '../server/insight-charts';
import { EXPORT_KINDS, parsePeriod, PERIOD_HINT, periodName, type ExportKind, type TransparencyPeriod } from '../server/services/insight';
import type { RouteContext } from './context';

const staff = requireRole('investigator', 'admin');

// ----- input at the edge -----

const blank = (v: unknown) => (v === '' ? undefined : v);
const optional = <T extends z.ZodType>(schema: T) => z.preprocess(blank, schema.optional());

export const dashboardQuery = z.object({
  model: optional(z.string().trim().toUpperCase().max(64, 'A model SKU is at most 64 characters.')),
  risk: optional(z.enum(RISK_LEVELS, 'Choose low, elevated or high.')),
  map: optional(z.enum(['registered', 'check-in'], 'Choose registered or check-in.')),
});

/** Calendar months and quarters only: spans of days could be differenced (see the service). */
const noDays = z.never({ error: `Periods are calendar months or quarters: use period=2026-03 or period=2026-Q1.` }).optional();
export const transparencyQuery = z.object({
  period: optional(
    z
      .string()
      .trim()
      .refine((text) => parsePeriod(text) !== null, PERIOD_HINT)
      .transform((text) => parsePeriod(text)!),
  ),
  from: noDays,
  to: noDays,
});

const EXPORT_STATUSES: Record<ExportKind, readonly string[] | null> = {
  units: ['unregistered', 'registered', 'transfer-pending'],
  registrations: ['active', 'superseded'],
  'check-ins': null,
  cases: CASE_STATUSES,
  actions: ACTION_STATUSES,
};

const exportQuery = (kind: ExportKind) => {
  const statuses = EXPORT_STATUSES[kind];
  return dashboardQuery.omit({ map: true }).extend({
    format: z.preprocess(blank, z.enum(['csv', 'json'], 'Choose csv or json.').default('csv')),
    country: optional(z.string().trim().toUpperCase().regex(/^[A-Z]{2}$/, 'Use a two-letter ISO country code, e.g. KE.')),
    status: statuses ? optional(z.enum(statuses as [string, ...string[]], `Choose one of: ${statuses.join(', ')}.`)) : z.never({ error: 'This export has no status filter.' }).optional(),
  });
};

const unitIdParam = z.object({ unitId: z.string().min(3).max(140).regex(/^[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$/, 'Use a unit id like SKU:SERIAL.') });
const modelIdParam = z.object({ modelId: z.string().min(1).max(64).regex(/^[A-Za-z0-9._-]+$/, 'Use a model SKU.') });

const actorOf = (req: Request) => ({ userId: req.user!.id });

/** Sends a streamed export as a download; the stream ends the response (or aborts it on error). */
async function sendDownload(res: Response, file: { fileName: string; contentType: string; body: NodeJS.ReadableStream }) {
  res.setHeader('Content-Type', file.contentType);
  res.setHeader('Content-Disposition', `attachment; filename="${file.fileName}"`);
  res.setHeader('Cache-Control', 'no-store');
  await pipeline(file.body, res);
}

// ----- view models: numbers → chart geometry (pure, the service owns the numbers) -----

const words = (code: string) => code.replace(/-/g, ' ');

function dashboardView(snapshot: NonNullable<Awaited<ReturnType<RouteContext['services']['insight']['dashboard']>>>, mapKind: 'registered' | 'check-in') {
  const countries = mapKind === 'registered' ? snapshot.units.byRegisteredCountry : snapshot.units.byCheckInCountry;
  const ruleCls = (rule: string) => `rule-${FLAG_RULES.indexOf(rule as (typeof FLAG_RULES)[number])}`;
  const priorities = snapshot.cases.priorities;
  const times = snapshot.cases.times;
  const hours = (ms: number | null) => (ms === null ? 0 : ms / 3_600_000);
  return {
    map: choropleth(countries),
    countries,
    flagChart: stackedColumns(snapshot.flags.months, snapshot.flags.series.map((s) => ({ key: words(s.rule), cls: ruleCls(s.rule), counts: s.counts }))),
    ruleCls,
    harmChart: barRows(snapshot.reports.byHarm.map((h) => ({ label: words(h.category), segments: [{ n: h.n, cls: 'bar' }] }))),
    reportCountryChart: barRows(snapshot.reports.byCountry.slice(0, 10).map((c) => ({ label: c.name, segments: [{ n: c.n, cls: 'bar' }] }))),
    caseChart: barRows(snapshot.cases.byStatus.map((s) => ({ label: words(s.status), segments: priorities.map((p) => ({ n: s.byPriority[p], cls: `prio-${p}`, title: `${words(s.status)} · ${p}: ${s.byPriority[p]}` })) }))),
    timeChart: barRows(
      (['acknowledge', 'firstAction', 'close'] as const).flatMap((k) => [
        { label: `${k === 'firstAction' ? 'first action' : k}: median`, segments: [{ n: hours(times[k].medianMs), cls: 'bar', title: humanDuration(times[k].medianMs) }] },
        { label: `${k === 'firstAction' ? 'first action' : k}: 90th pct`, segments: [{ n: hours(times[k].p90Ms), cls: 'bar-dark', title: humanDuration(times[k].p90Ms) }] },
      ]),
    ),
  };
}

const DASHBOARD_EMPTY = { snapshot: null, view: null };

const monthName = new Intl.DateTimeFormat('en', { month: 'long', year: 'numeric', timeZone: 'UTC' });

/** The periods the page offers, as `[value, label]` for its select: "March 2026", "2026 Q1 (January–March)". */
function periodChoices(periods: readonly TransparencyPeriod[]) {
  const quarterMonths = ['January–March', 'April–June', 'July–September', 'October–December'];
  return periods.map((p) => [periodName(p), p.kind === 'month' ? monthName.format(new Date(Date.UTC(p.year, p.index - 1, 1))) : `${p.year} Q${p.index} (${quarterMonths[p.index - 1]})`] as const);
}

export function insightPages({ services }: RouteContext) {
  const router = Router();

  const dashboardLocals = async (req: Request) => ({
    title: 'Due-diligence dashboard',
    models: await services.insight.modelChoices(),
    riskLevels: RISK_LEVELS,
    exportKinds: EXPORT_KINDS,
    filters: req.query,
    query: '',
    mapKind: 'registered',
    humanDuration,
    words,
    preparing: false,
    dueDiligence: await services.insight.dueDiligence(),
    ...DASHBOARD_EMPTY,
  });

  router.get(
    '/dashboard',
    staff,
    formAction('insight/dashboard', dashboardLocals, async (req, res) => {
      const q = parseQuery(dashboardQuery, req);
      const snapshot = await services.insight.dashboard({ model: q.model, risk: q.risk }, actorOf(req));
      const mapKind = q.map ?? 'registered';
      const query = new URLSearchParams(Object.entries({ model: q.model, risk: q.risk }).filter((e): e is [string, string] => Boolean(e[1]))).toString();
      // Still null on a very large data set's first view: the page says the figures are on their way.
      res.render('insight/dashboard', { ...(await dashboardLocals(req)), filters: q, query, mapKind, snapshot, preparing: !snapshot, view: snapshot && dashboardView(snapshot, mapKind) });
    }),
  );

  // The dashboard's download links: cookie-authenticated like the page (the API takes Bearer tokens only).
  router.get('/dashboard/exports/:kind', staff, async (req, res) => {
    const { kind } = parse(z.object({ kind: z.enum(EXPORT_KINDS, 'Choose an export from the list.') }), req.params);
    const q = parseQuery(exportQuery(kind), req);
    const { format, ...filters } = q;
    await sendDownload(res, await services.insight.exportStream(kind, format, filters, actorOf(req)));
  });

  const transparencyLocals = (req: Request) => ({ title: 'Transparency report', report: null, typed: req.query, words, periods: periodChoices(services.insight.transparencyPeriods()) });

  router.get(
    '/transparency',
    formAction('insight/transparency', transparencyLocals, async (req, res) => {
      const { period } = parseQuery(transparencyQuery, req);
      const report = await services.insight.transparency(period);
      const locals = transparencyLocals(req);
      const periods = locals.periods.some(([name]) => name === report.period.name) ? locals.periods : [[report.period.name, report.period.name] as const, ...locals.periods];
      res.render('insight/transparency', { ...locals, periods, report, values: { period: report.period.name } });
    }),
  );

  return router;
}

export function transparencyApi({ services }: RouteContext) {
  const router = Router();
  router.get('/', async (req, res) => {
    res.json(await services.insight.transparency(parseQuery(transparencyQuery, req).period));
  });
  return router;
}

export function dashboardApi({ services }: RouteContext) {
  const router = Router();
  router.get('/', staff, async (req, res) => {
    const { model, risk } = parseQuery(dashboardQuery, req);
    const figures = await services.insight.dashboard({ model, risk }, actorOf(req));
    if (!figures) throw new ServiceUnavailableError('The figures are being computed for the first time; try again in a minute.');
    res.json(figures);
  });
  return router;
}

export function exportsApi({ services }: RouteContext) {
  const router = Router();
  router.use(staff);

  for (const kind of EXPORT_KINDS) {
    router.get(`/${kind}`, async (req, res) => {
      const { format, ...filters } = parseQuery(exportQuery(kind), req);
      await sendDownload(res, await services.insight.exportStream(kind, format, filters, actorOf(req)));
    });
  }

  router.get('/epcis/units/:unitId', async (req, res) => {
    const { unitId } = parse(unitIdParam, req.params);
    res.type('application/ld+json').json(await services.insight.epcisUnit(unitId, actorOf(req)));
  });

  router.get('/epcis/models/:modelId', async (req, res) => {
    const { modelId } = parse(modelIdParam, req.params);
    const file = await services.insight.epcisModel(modelId, actorOf(req));
    await sendDownload(res, { ...file, contentType: 'application/ld+json; charset=utf-8' });
  });

  return router;
}
