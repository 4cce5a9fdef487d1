import { NotFoundError, ValidationError } from '../../errors';
import type { EpcisStore, EventFilter, StoredEpcisEvent } from '../../store/epcis';
import type { InsightStore } from '../../store/insight';
import type { CasesStore } from '../../store/cases';
import type { Clock } from '../../clock';
import { EPCIS_CONTEXT, DOWNSTREAM_NS, epcOf, partyOf, unitEpcisEvents } from '../insight/epcis';
import { cbvShort } from './identifiers';
import { leverageEpcisEvents } from './leverage';
import type { EpcResolver } from './resolver';
import { lastKnownLocation, lastPlacing } from './state';

/**
 * EPCIS 2.0 queries (the REST binding's `GET /events` with the simple query's parameters) and
 * the current state of one item. A query naming EPCs reads those units by `_id`: their own
 * history in the export's mapping (registrations, transfers, check-ins, leverage effects) plus
 * the events captured for them, so one query returns a unit's whole history. A query naming no EPC runs
 * over the captured events.
 */

export interface EventQuery {
  eventType?: string[];
  GE_eventTime?: Date;
  LT_eventTime?: Date;
  EQ_bizStep?: string[];
  MATCH_epc?: string[];
  MATCH_anyEPC?: string[];
  EQ_bizLocation?: string[];
  perPage: number;
  nextPageToken?: string;
}

export type AnyEvent = Record<string, unknown> & { eventID: string; eventTime: string; type: string };

/** The position after which the next page starts: (eventTime, eventID), opaque to the caller. */
const encodeToken = (e: { at: Date; id: string }) => Buffer.from(JSON.stringify({ t: e.at.toISOString(), id: e.id })).toString('base64url');
function decodeToken(token: string): { at: Date; id: string } {
  try {
    const { t, id } = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { t: string; id: string };
    const at = new Date(t);
    if (typeof id === 'string' && !Number.isNaN(at.getTime())) return { at, id };
  } catch {
    // answered below
  }
  throw new ValidationError({ nextPageToken: 'This page token is not one this server gave; start again without it.' });
}

const compare = (a: { at: Date; id: string }, b: { at: Date; id: string }) => a.at.getTime() - b.at.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const keyOf = (e: AnyEvent) => ({ at: new Date(e.eventTime), id: e.eventID });

/** A query's answer; a subscription's pushed results name the subscription. */
export function queryDocument(now: Date, eventList: unknown[], subscriptionID?: string) {
  return {
    '@context': [EPCIS_CONTEXT, { downstream: DOWNSTREAM_NS }],
    type: 'EPCISQueryDocument',
    schemaVersion: '2.0',
    creationDate: now.toISOString(),
    epcisBody: { queryResults: { ...(subscriptionID ? { subscriptionID } : {}), queryName: 'SimpleEventQuery', resultsBody: { eventList } } },
  };
}

/** Whether an event passes the query's filters; `epcs` (null: no EPC filter) are the EPCs that count as named. */
export function eventMatches(e: AnyEvent, q: Omit<EventQuery, 'perPage'>, epcs: ReadonlySet<string> | null) {
  const at = new Date(e.eventTime);
  if (q.eventType?.length && !q.eventType.includes(e.type)) return false;
  if (q.GE_eventTime && at < q.GE_eventTime) return false;
  if (q.LT_eventTime && at >= q.LT_eventTime) return false;
  if (q.EQ_bizStep?.length && !q.EQ_bizStep.map(cbvShort).includes(cbvShort(e.bizStep as string | undefined))) return false;
  if (q.EQ_bizLocation?.length && !q.EQ_bizLocation.includes((e.bizLocation as { id?: string } | undefined)?.id ?? '')) return false;
  if (epcs && !((e.epcList as string[] | undefined) ?? []).some((epc) => epcs.has(epc))) return false;
  return true;
}

export function createQuery(deps: { clock: Clock; store: EpcisStore; insight: Pick<InsightStore, 'unit' | 'historyOf'>; cases: Pick<CasesStore, 'casesOfUnit'>; resolveEpcs: EpcResolver }) {
  const { clock, store, insight, cases, resolveEpcs } = deps;

  /** A unit's own history and its captured events, as EPCIS events. */
  async function unitHistory(unitIdValue: string): Promise<AnyEvent[]> {
    const [unit, summary] = await Promise.all([insight.unit(unitIdValue), store.unitEvents(unitIdValue)]);
    if (!unit) return [];
    const [{ registrations, transfers, runs }, ofUnit] = await Promise.all([insight.historyOf(unit), cases.casesOfUnit(unit._id)]);
    const captured = (await store.eventsByIds((summary?.events ?? []).map((e) => e.eventId))).filter((e): e is StoredEpcisEvent => !!e);
    return [
      ...(unitEpcisEvents(unit, registrations, transfers, runs) as unknown as AnyEvent[]),
      ...leverageEpcisEvents(unit._id, ofUnit),
      ...captured.map((e) => e.event as AnyEvent),
    ];
  }

  /**
   * One page of events in (eventTime, eventID) order, and the token of the next page (null:
   * this was the last). Paging by token returns every event once, also while events are added.
   */
  async function events(q: EventQuery): Promise<{ document: ReturnType<typeof queryDocument>; nextPageToken: string | null }> {
    const after = q.nextPageToken ? decodeToken(q.nextPageToken) : undefined;
    const named = [...(q.MATCH_epc ?? []), ...(q.MATCH_anyEPC ?? [])];
    let page: AnyEvent[];
    if (named.length) {
      // Every EPC naming a unit stands for the unit: its own events carry our unit URN.
      const { named: resolved, units } = await resolveEpcs(named);
      const unitIds = [...new Set(named.flatMap((epc) => { const n = resolved.get(epc); return n && units.has(n.unitId) ? [n.unitId] : []; }))];
      const epcs = new Set([...named, ...unitIds.map(epcOf)]);
      const seen = new Set<string>();
      const all = (await Promise.all(unitIds.map(unitHistory))).flat().filter((e) => !seen.has(e.eventID) && seen.add(e.eventID));
      page = all
        .filter((e) => eventMatches(e, q, epcs) && (!after || compare(keyOf(e), after) > 0))
        .sort((a, b) => compare(keyOf(a), keyOf(b)))
        .slice(0, q.perPage + 1);
    } else {
      const filter: EventFilter = { eventTypes: q.eventType, from: q.GE_eventTime, before: q.LT_eventTime, bizSteps: q.EQ_bizStep?.map((s) => cbvShort(s)!), bizLocations: q.EQ_bizLocation, after };
      page = (await store.events(filter, q.perPage + 1)).map((e) => e.event as AnyEvent);
    }
    const more = page.length > q.perPage;
    const eventList = page.slice(0, q.perPage);
    return { document: queryDocument(clock.now(), eventList), nextPageToken: more ? encodeToken(keyOf(eventList.at(-1)!)) : null };
  }

  /** One item's current state, from the unit's summary and its captured-events summary (no replay). */
  async function currentState(epc: string) {
    const { named, units } = await resolveEpcs([epc]);
    const n = named.get(epc);
    const unit = n ? units.get(n.unitId) : undefined;
    if (!unit) throw new NotFoundError('No unit in the catalogue carries this EPC.');
    const entries = (await store.unitEvents(unit._id))?.events ?? [];
    const location = lastKnownLocation(unit, entries);
    const last = lastPlacing(entries);
    const disposition = last?.disposition && location.source === 'external-event' ? last.disposition : unit.status === 'transfer-pending' ? 'in_transit' : unit.status === 'registered' ? 'active' : unit.firstSale?.soldAt || unit.firstSale?.shipToCountry ? 'in_transit' : 'in_progress';
    return {
      epc,
      unitId: unit._id,
      unitEpc: epcOf(unit._id),
      modelSku: unit.modelId,
      serial: unit.serial,
      status: unit.status,
      location,
      owner: unit.registrationId ? { registrationId: unit.registrationId, party: partyOf('registration', unit.registrationId), organisation: unit.current?.owner ?? '' } : null,
      disposition,
      controls: { updates: unit.controls?.updates ?? 'allowed', warranty: unit.controls?.warranty ?? 'valid' },
      lastCheckIn: unit.checkIns?.lastAt ? { at: unit.checkIns.lastAt, country: unit.checkIns.lastCountry ?? null } : null,
      lastExternalEvent: entries.length ? entries.reduce((a, b) => (b.at >= a.at ? b : a)) : null,
    };
  }

  return { events, currentState };
}
