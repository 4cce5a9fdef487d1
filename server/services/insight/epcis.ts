import { Readable } from 'node:stream';
import type { Clock } from '../../clock';
import { NotFoundError } from '../../errors';
import { normaliseCode } from '../catalogue/codes';
import type { CheckInRun } from '../../domain/catalogue';
import type { InsightStore, RegistrationForEpcis, TransferForEpcis, UnitForEpcis } from '../../store/insight';
import type { AuditService } from '../audit';
import { recordExport } from './exports';
import type { Actor } from './filters';

/** EPCIS 2.0 event histories of units: one unit as a document, or a model's units streamed. */

export const EPCIS_CONTEXT = 'https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld';
/** Our extension fields (e.g. how many check-ins a run holds) live under this prefix. */
export const DOWNSTREAM_NS = 'https://downstream.example/ns/epcis#';

export const epcOf = (unitIdValue: string) => `urn:downstream:unit:${unitIdValue}`;
const locationOf = (country: string) => `urn:downstream:location:country:${country}`;
export const partyOf = (kind: string, id: string) => `urn:downstream:party:${kind}:${id}`;

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

/**
 * A unit's history as EPCIS 2.0 ObjectEvents (what: the unit's EPC; when: eventTime in UTC;
 * where: the country as readPoint/bizLocation; why: CBV bizStep and disposition). Parties are
 * named by our ids, never by names. Only what happened is exported: a transfer still pending
 * or refused is not an event. Check-ins come from the unit's runs (one event per run, with its
 * count and last sighting as extensions), as the store gives them for the unit.
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

export function epcisExports(deps: { clock: Clock; audit: AuditService; store: InsightStore }) {
  const { clock, audit, store } = deps;

  async function eventsOf(unit: UnitForEpcis) {
    const { registrations, transfers, runs } = await store.historyOf(unit);
    return unitEpcisEvents(unit, registrations, transfers, runs);
  }

  return {
    /** One unit's history as an EPCIS 2.0 JSON-LD document. */
    async epcisUnit(unitIdValue: string, actor: Actor) {
      const unit = await store.unit(unitIdValue);
      if (!unit) throw new NotFoundError('No such unit.');
      const eventList = await eventsOf(unit);
      await recordExport(audit, actor, `epcis:unit:${unit._id}`, { kind: 'epcis', unitId: unit._id, events: eventList.length });
      return { ...epcisDocumentHead(clock.now()), epcisBody: { eventList } };
    },

    /** Every unit of a model, streamed: one unit's events at a time. */
    async epcisModel(modelIdValue: string, actor: Actor) {
      const modelId = normaliseCode(modelIdValue);
      if (!(await store.modelExists(modelId))) throw new NotFoundError('No product model with this SKU.');
      await recordExport(audit, actor, `epcis:model:${modelId}`, { kind: 'epcis', modelId });
      const head = JSON.stringify(epcisDocumentHead(clock.now()));
      async function* body() {
        yield `${head.slice(0, -1)},"epcisBody":{"eventList":[`;
        let first = true;
        for await (const unit of store.unitsOfModel(modelId)) {
          for (const event of await eventsOf(unit)) {
            yield `${first ? '' : ','}\n${JSON.stringify(event)}`;
            first = false;
          }
        }
        yield '\n]}}\n';
      }
      return { fileName: `downstream-epcis-${modelId}.jsonld`, body: Readable.from(body()) };
    },
  };
}
