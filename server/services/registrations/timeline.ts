import type { Clock } from '../../clock';
import { countryName } from '../../countries';
import { NotFoundError } from '../../errors';
import type { CatalogueStore, LeanUnit } from '../../store/catalogue';
import type { CheckInHistoryStore } from '../../store/check-in-history';
import type { EpcisStore } from '../../store/epcis';
import { lastKnownLocation } from '../epcis/state';
import type { FlagsStore } from '../../store/flags';
import type { RegistrationsStore } from '../../store/registrations';
import type { CertificatesStore } from '../../store/certificates';
import type { VerificationStore } from '../../store/verification';
import type { AuthUser } from '../auth';
import type { CasesService } from '../cases';
import type { CheckInRun } from '../../domain/catalogue';
import { MAX_RUNS } from '../check-ins/runs';

/** The unit's destination timeline: first sale, registrations, transfers, check-in runs, flags, cases. */

export interface Viewer {
  id: string;
  role: AuthUser['role'];
}

export interface TimelineEntry {
  at: Date;
  kind: 'first-sale' | 'registration' | 'transfer' | 'check-ins' | 'external-event' | 'flag' | 'case' | 'certificate' | 'visit';
  title: string;
  detail: string;
  country: string | null;
}

export const isStaff = (role: Viewer['role']) => role === 'admin' || role === 'investigator';
const day = (d: Date) => d.toISOString().slice(0, 10);
// One formatter for the process: `toLocaleDateString` with options builds a new one per call
// (~0.12 ms), which was a third of a 35-run timeline's time (issue 7, heavy unit p95).
const shortDayFormat = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
const shortDay = (d: Date) => shortDayFormat.format(d);
/** Flags read per open case on the timeline: enough to see the pattern, bounded. */
const FLAGS_PER_CASE = 20;

/** Devices report "2.4" or "v2.4": shown as "v2.4" either way. */
const version = (firmware: string) => `v${firmware.replace(/^v/i, '')}`;

function checkInRunEntry(run: CheckInRun): TimelineEntry {
  const firmware = run.firstFirmware && run.lastFirmware && run.firstFirmware !== run.lastFirmware ? `${version(run.firstFirmware)}→${version(run.lastFirmware)}` : run.lastFirmware ? version(run.lastFirmware) : '';
  const span = day(run.firstAt) === day(run.lastAt) ? shortDay(run.firstAt) : `${shortDay(run.firstAt)}–${shortDay(run.lastAt)}`;
  return {
    at: run.firstAt,
    kind: 'check-ins',
    title: `${run.count} check-in${run.count === 1 ? '' : 's'} from ${run.country}`,
    detail: [firmware, span].filter(Boolean).join(', '),
    country: run.country,
  };
}

export function createTimeline(deps: {
  clock: Clock;
  registrations: RegistrationsStore;
  catalogue: Pick<CatalogueStore, 'unitById'>;
  history: Pick<CheckInHistoryStore, 'recentRunsOf'>;
  flags: Pick<FlagsStore, 'flagsByIds'>;
  cases: Pick<CasesService, 'casesOfUnit'>;
  certificates: Pick<CertificatesStore, 'certificatesOfUnit'>;
  visits: Pick<VerificationStore, 'visitsOfUnit'>;
  /** Events other systems captured for the unit (EPCIS), shown as "external event". */
  epcis: Pick<EpcisStore, 'unitEvents'>;
}) {
  const { registrations: store, catalogue, history, flags } = deps;

  /**
   * The unit's destination timeline, oldest first, as plain data for any page (this module's,
   * the cases page) and the API, as `viewer` may see it: staff see the cases they are not
   * conflicted on (and their flags); anyone else sees no flags or cases, the investigation
   * not being the customer's to see. No ownership check: see `timelineFor`.
   */
  async function timeline(unitIdValue: string, viewer: Viewer) {
    const unit = await catalogue.unitById(unitIdValue);
    if (!unit) throw new NotFoundError('No such unit.');
    return timelineOf(unit, viewer);
  }

  /**
   * The timeline as `viewer` may see it: staff everything, the owner their own unit without
   * flags or cases, anyone else "no such unit". One read of the unit for the check and the
   * timeline.
   */
  async function timelineFor(unitIdValue: string, viewer: Viewer) {
    const unit = await catalogue.unitById(unitIdValue);
    if (!unit || (!isStaff(viewer.role) && String(unit.ownerUserId) !== viewer.id)) throw new NotFoundError('No such unit.');
    return timelineOf(unit, viewer);
  }

  async function timelineOf(unit: LeanUnit, viewer: Viewer) {
    const now = deps.clock.now();
    // Only the cases the viewer may see: the flags shown are those of these cases, so a
    // hidden case shows neither itself nor its flags.
    const [registrations, transfers, runs, cases, certificates, visits, captured] = await Promise.all([
      store.registrationsByIds(unit.registrationIds ?? []),
      store.transfersByIds(unit.transferIds ?? []),
      history.recentRunsOf(unit, MAX_RUNS),
      deps.cases.casesOfUnit(unit._id, viewer),
      isStaff(viewer.role) ? deps.certificates.certificatesOfUnit(unit._id) : [],
      isStaff(viewer.role) ? deps.visits.visitsOfUnit(unit._id) : [],
      deps.epcis.unitEvents(unit._id),
    ]);
    const external = captured?.events ?? [];
    const flagIds = cases.flatMap((c) => c.sources.filter((s) => s.kind === 'flag').slice(-FLAGS_PER_CASE).map((s) => s.id));
    const raised = (await flags.flagsByIds(flagIds)).flatMap((f) => (f && f.unitId === unit._id ? [f] : []));

    const entries: TimelineEntry[] = [];
    const sale = unit.firstSale;
    if (sale?.soldAt || sale?.shipToCountry || sale?.channelPartner) {
      entries.push({ at: sale.soldAt ?? unit.createdAt, kind: 'first-sale', title: `First sale${sale.channelPartner ? ` through ${sale.channelPartner}` : ''}`, detail: sale.shipToCountry ? `Shipped to ${countryName(sale.shipToCountry)}` : '', country: sale.shipToCountry ?? null });
    }
    for (const r of registrations) {
      const place = [r.city, r.region, countryName(r.country)].filter(Boolean).join(', ');
      entries.push({ at: r.createdAt, kind: 'registration', title: `Registered by ${r.ownerOrganisation}${r.status === 'superseded' ? ' (later resold)' : ''}`, detail: `${place} · ${r.endUserType} · end-use terms v${r.termsAccepted?.version ?? '?'}`, country: r.country });
    }
    for (const t of transfers) {
      const what = t.kind === 'resale' ? `Resale to ${t.newOwner?.organisation || 'a new owner'}` : 'Relocation';
      const decided = t.decision?.reason ? ` · ${t.status === 'refused' ? 'refused' : 'approved'}: ${t.decision.reason}` : '';
      entries.push({ at: t.createdAt, kind: 'transfer', title: `${what} (${t.status})`, detail: `To ${countryName(t.newLocation?.country ?? '')}, effective ${day(t.effectiveDate)} · ${t.reason}${decided}`, country: t.newLocation?.country ?? null });
    }
    for (const run of runs.slice(-MAX_RUNS)) entries.push(checkInRunEntry(run));
    for (const e of external) {
      const what = e.bizStep ? e.bizStep.replace(/_/g, ' ') : e.type;
      entries.push({ at: e.at, kind: 'external-event', title: `External event: ${what}`, detail: [e.type, e.disposition && `disposition ${e.disposition.replace(/_/g, ' ')}`, e.country && countryName(e.country)].filter(Boolean).join(' · '), country: e.country || null });
    }
    for (const f of raised) entries.push({ at: f.raisedAt, kind: 'flag', title: `Red flag: ${f.rule}`, detail: `raised by ${f.source?.kind ?? 'unknown'} ${f.source?.id ?? ''}${f.caseId ? ` · case ${f.caseId}` : ''}`, country: f.country ?? null });
    for (const c of cases) entries.push({ at: c.openedAt, kind: 'case', title: `Case ${c._id} opened`, detail: `${c.title} · ${c.status}`, country: null });
    // A certificate shows where its validity ends: expiry is what the record must not miss.
    for (const c of certificates) {
      entries.push({ at: c.validUntil, kind: 'certificate', title: `End-use certificate ${c.number} ${c.validUntil.getTime() <= now.getTime() ? 'expired' : 'expires'}`, detail: `${c.issuingAuthority} · end user ${c.endUser} · valid from ${day(c.validFrom)} · covers ${c.items.map((i) => `${i.modelId} × ${i.quantity}`).join(', ')}`, country: null });
    }
    for (const v of visits) {
      const found = v.outcome?.units.find((u) => u.unitId === unit._id);
      const result = !v.outcome ? 'planned' : found?.finding === 'seen' ? `unit seen${found.serialConfirmed ? ', serial confirmed' : ''}` : found?.finding === 'elsewhere' ? 'unit found elsewhere' : 'unit not found';
      const also = v.outcome ? ` · location ${v.outcome.locationConfirmed ? 'confirmed' : 'not confirmed'} · end use ${v.outcome.endUseConsistent ? 'consistent' : 'not consistent'}${v.outcome.findings ? ` · ${v.outcome.findings.slice(0, 200)}` : ''}` : '';
      entries.push({ at: v.outcome?.recordedAt ?? v.plannedFor, kind: 'visit', title: `Verification visit (${result})`, detail: `${v.site} · inspector ${v.inspector}${also}`, country: null });
    }
    entries.sort((a, b) => a.at.getTime() - b.at.getTime());

    return {
      unit: {
        id: unit._id,
        modelId: unit.modelId,
        serial: unit.serial,
        status: unit.status,
        registrationId: unit.registrationId ?? null,
        warranty: unit.controls?.warranty ?? 'valid',
        updates: unit.controls?.updates ?? 'allowed',
      },
      current: {
        // The same answer as EPCIS currentState: the registration, first sale or a later captured event.
        ...(({ country, since, source }) => ({ country, since, source }))(lastKnownLocation(unit, external)),
        region: unit.current?.region ?? '',
        owner: unit.current?.owner ?? '',
        endUserType: unit.current?.endUserType ?? null,
      },
      countries: (unit.countries ?? []).map((c) => ({ country: c.country, name: countryName(c.country), source: c.source, firstSeen: c.firstSeen, lastSeen: c.lastSeen })),
      entries,
    };
  }

  return { timeline, timelineFor };
}
