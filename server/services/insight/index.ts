import type { Clock } from '../../clock';
import type { Config } from '../../config';
import type { Logger } from '../../logger';
import type { InsightStore } from '../../store/insight';
import type { AuditService } from '../audit';
import { dashboardFigures, type ChannelPartnersPort } from './dashboard';
import { epcisExports } from './epcis';
import { exportStreams } from './exports';
import type { Actor, InsightFilters } from './filters';
import { sharedSnapshots } from './snapshots';
import { endedPeriods, transparencyReports } from './transparency';

/**
 * Insight: the due-diligence dashboard, the public transparency report, streamed exports and
 * EPCIS 2.0 event histories. It only reads what the other modules write (through
 * server/store/insight.ts); one file per responsibility:
 *  - dashboard.ts (+ tallies.ts, snapshots.ts): figures for staff, shared by every instance;
 *  - transparency.ts (+ figures.ts): the public report by month or quarter, small counts hidden;
 *  - exports.ts: CSV/JSON downloads; epcis.ts: EPCIS 2.0 documents.
 */

export { csvCell, EXPORT_KINDS, type ExportFilters, type ExportFormat, type ExportKind } from './exports';
export { DOWNSTREAM_NS, EPCIS_CONTEXT, epcisDocumentHead, epcOf, unitEpcisEvents, type EpcisEvent } from './epcis';
export { durationStats, monthStarts, percentile, suppressCells, type DurationStats, type PublicCount } from './figures';
export type { ChannelPartnersPort } from './dashboard';
export type { Actor, InsightFilters } from './filters';
export { SNAPSHOT_TTL_MS } from './snapshots';
export { TALLY_CACHE_MS } from './tallies';
export { endedPeriods, parsePeriod, PERIOD_HINT, periodName, type TransparencyPeriod } from './transparency';

/** How long the very first dashboard view waits for figures before saying they are on their way. */
export const FIRST_SNAPSHOT_WAIT_MS = 5_000;

/** Export-control checks the dashboard shows beside its figures, read from their modules when asked. */
export interface DueDiligencePorts {
  certificatesExpiringSoon(): Promise<{ total: number }>;
  unitsDueVerification(): Promise<{ items: Array<{ unitId: string; lastVerifiedAt: Date | null }>; more: boolean }>;
  verificationDueMonths: number;
}

/** Units due a verification visit listed on the dashboard (the rest are on /visits/due). */
const DUE_UNITS_SHOWN = 5;
const DUE_DILIGENCE = 'due-diligence';

export function createInsightService(deps: { clock: Clock; config: Pick<Config, 'transparencyMinCount'>; audit: AuditService; logger: Logger; stores: { insight: InsightStore }; dueDiligence?: DueDiligencePorts; partners?: ChannelPartnersPort }) {
  const { clock, config, audit, logger } = deps;
  const store = deps.stores.insight;
  const dashboard = dashboardFigures({ clock, logger, store, partners: deps.partners });
  const transparency = transparencyReports({ clock, config, logger, store });
  const downloads = exportStreams({ clock, audit, store });
  const epcis = epcisExports({ clock, audit, store });
  // Finding the units due a visit walks the registered high-risk units (0.8 s at 200,000 on the
  // embedded engine): shared as a snapshot like the dashboard's other figures, not per view.
  const snapshots = sharedSnapshots({ clock, logger, store });
  async function computeDueDiligence() {
    const ports = deps.dueDiligence!;
    const [expiring, due] = await Promise.all([ports.certificatesExpiringSoon(), ports.unitsDueVerification()]);
    return { certificatesExpiring: expiring.total, unitsDue: due.items.slice(0, DUE_UNITS_SHOWN), moreUnitsDue: due.more || due.items.length > DUE_UNITS_SHOWN, dueMonths: ports.verificationDueMonths };
  }

  return {
    /**
     * The dashboard's figures for a filter, as `viewer` may see them (cases they are
     * conflicted on are left out); null while the very first figures are still being computed
     * after `waitMs`.
     */
    dashboard: (filters: InsightFilters, viewer: Actor, waitMs = FIRST_SNAPSHOT_WAIT_MS) => dashboard.dashboard(filters, viewer, waitMs),

    /**
     * Recomputes the dashboard's snapshot now (tests, and a job that wants fresh figures); the
     * unit tallies are kept on write, so only built here if they never were.
     */
    async refreshDashboard() {
      await Promise.all([dashboard.refresh(), deps.dueDiligence ? snapshots.refresh(DUE_DILIGENCE, computeDueDiligence) : null]);
    },

    /**
     * End-use certificates expiring within 30 days, and the first highest-risk units due a
     * verification visit; null for an insight service built without those modules.
     */
    async dueDiligence() {
      return deps.dueDiligence ? snapshots.get(DUE_DILIGENCE, computeDueDiligence) : null;
    },
    ensureUnitTallies: dashboard.ensureUnitTallies,
    modelChoices: dashboard.modelChoices,
    transparency: transparency.transparency,
    /** The months and quarters the transparency page offers (those that have ended, newest first). */
    transparencyPeriods: () => endedPeriods(clock.now()),
    exportStream: downloads.exportStream,
    epcisUnit: epcis.epcisUnit,
    epcisModel: epcis.epcisModel,
  };
}

export type InsightService = ReturnType<typeof createInsightService>;
