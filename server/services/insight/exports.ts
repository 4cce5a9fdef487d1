import { Readable } from 'node:stream';
import type { Clock } from '../../clock';
import type { InsightStore } from '../../store/insight';
import type { AuditService } from '../audit';
import { overdueOf } from '../cases';
import { modelIdsFor, type Actor, type InsightFilters } from './filters';

/**
 * Streamed exports (database cursor → lines → response): memory holds one cursor batch, never
 * the collection. Each is written to the audit log before the first byte. The case exports
 * (cases, their actions) leave out every case the viewer may not see: one they are marked
 * conflicted on is "no such case" on its page, and so it is in their downloads.
 */

export const EXPORT_KINDS = ['units', 'registrations', 'check-ins', 'cases', 'actions'] as const;
export type ExportKind = (typeof EXPORT_KINDS)[number];
export type ExportFormat = 'csv' | 'json';

export interface ExportFilters extends InsightFilters {
  country?: string;
  status?: string;
}

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

async function* csvLines(columns: readonly string[], rows: AsyncIterable<Record<string, unknown>>) {
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

const stamp = (d: Date) => d.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');

export const recordExport = (audit: AuditService, actor: Actor, subjectId: string, detail: Record<string, unknown>) =>
  audit.record({ actorKind: 'user', actorId: actor.userId, action: 'export.downloaded', subjectKind: 'export', subjectId, detail });

export function exportStreams(deps: { clock: Clock; audit: AuditService; store: InsightStore }) {
  const { clock, audit, store } = deps;

  /** Each kind: its columns, and its rows for a filter as the viewer may see them. */
  const sources: Record<ExportKind, { columns: readonly string[]; rows(f: ExportFilters, modelIds: string[] | null, viewer: Actor): AsyncIterable<Record<string, unknown>> }> = {
    units: {
      columns: ['unitId', 'modelId', 'serial', 'status', 'currentCountry', 'currentOwner', 'endUserType', 'registrationId', 'firstSaleCountry', 'channelPartner', 'soldAt', 'checkIns', 'lastCheckInCountry', 'updates', 'warranty'],
      async *rows(f, modelIds) {
        const units = store.units({ modelIds, country: f.country, status: f.status });
        for await (const u of units) {
          yield { unitId: u._id, modelId: u.modelId, serial: u.serial, status: u.status, currentCountry: u.current?.country, currentOwner: u.current?.owner, endUserType: u.current?.endUserType, registrationId: u.registrationId, firstSaleCountry: u.firstSale?.shipToCountry, channelPartner: u.firstSale?.channelPartner, soldAt: u.firstSale?.soldAt, checkIns: u.checkIns?.count ?? 0, lastCheckInCountry: u.checkIns?.lastCountry, updates: u.controls?.updates, warranty: u.controls?.warranty };
        }
      },
    },
    registrations: {
      columns: ['registrationId', 'unitId', 'modelId', 'serial', 'status', 'ownerOrganisation', 'country', 'region', 'city', 'endUserType', 'intendedUse', 'purchaseDate', 'seller', 'termsVersion', 'createdAt'],
      async *rows(f, modelIds) {
        const registrations = store.registrations({ modelIds, country: f.country, status: f.status });
        for await (const r of registrations) {
          yield { registrationId: r._id, unitId: r.unitId, modelId: r.modelId, serial: r.serial, status: r.status, ownerOrganisation: r.ownerOrganisation, country: r.country, region: r.region, city: r.city, endUserType: r.endUserType, intendedUse: r.intendedUse, purchaseDate: r.purchaseDate, seller: r.seller, termsVersion: r.termsAccepted?.version, createdAt: r.createdAt };
        }
      },
    },
    'check-ins': {
      columns: ['unitId', 'modelId', 'serial', 'registeredCountry', 'checkIns', 'lastAt', 'lastCountry', 'lastFirmware', 'countries', 'runs', 'updates'],
      async *rows(f, modelIds) {
        const units = store.unitsWithCheckIns({ modelIds, country: f.country });
        for await (const { unit: u, runs } of units) {
          yield { unitId: u._id, modelId: u.modelId, serial: u.serial, registeredCountry: u.current?.country, checkIns: u.checkIns?.count ?? 0, lastAt: u.checkIns?.lastAt, lastCountry: u.checkIns?.lastCountry, lastFirmware: u.checkIns?.lastFirmware, countries: [...new Set(runs.map((r) => r.country))], runs: runs.length, updates: u.controls?.updates };
        }
      },
    },
    cases: {
      columns: ['caseId', 'status', 'priority', 'closureReason', 'sourceKinds', 'rules', 'harmCategories', 'countries', 'modelIds', 'units', 'actions', 'openedAt', 'acknowledgedAt', 'closedAt', 'overdue'],
      async *rows(f, modelIds, viewer) {
        const cases = store.cases({ modelIds, country: f.country, status: f.status, hiddenCaseIds: await store.caseIdsHiddenFrom(viewer.userId) });
        const now = clock.now();
        for await (const c of cases) {
          yield { caseId: c._id, status: c.status, priority: c.priorityLevel, closureReason: c.closureReason, sourceKinds: c.sourceKinds, rules: c.rules, harmCategories: c.harmCategories, countries: c.countries, modelIds: c.modelIds, units: c.unitIds.length, actions: c.actions.length, openedAt: c.openedAt, acknowledgedAt: c.deadlines?.acknowledgedAt, closedAt: c.closedAt, overdue: overdueOf(c, now).length > 0 };
        }
      },
    },
    actions: {
      columns: ['caseId', 'actionId', 'kind', 'status', 'units', 'dueBy', 'createdAt', 'updatedAt', 'outcome'],
      async *rows(f, modelIds, viewer) {
        const actions = store.actions({ modelIds, country: f.country, status: f.status, hiddenCaseIds: await store.caseIdsHiddenFrom(viewer.userId) });
        for await (const { _id, actions: a } of actions) {
          yield { caseId: _id, actionId: a._id, kind: a.kind, status: a.status, units: a.target?.unitIds?.length ?? 0, dueBy: a.dueBy, createdAt: a.createdAt, updatedAt: a.updatedAt, outcome: a.outcome };
        }
      },
    },
  };

  return {
    /** A streamed export of `kind` for `viewer`, written to the audit log before the first byte. */
    async exportStream(kind: ExportKind, format: ExportFormat, filters: ExportFilters, viewer: Actor) {
      const source = sources[kind];
      const rows = source.rows(filters, await modelIdsFor(store, filters), viewer);
      const now = clock.now();
      await recordExport(audit, viewer, `${kind}.${format}`, { kind, format, filters: { ...filters } });
      return {
        fileName: `downstream-${kind}-${stamp(now)}.${format}`,
        contentType: format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json; charset=utf-8',
        body: Readable.from(format === 'csv' ? csvLines(source.columns, rows) : jsonArray(rows)),
      };
    },
  };
}
