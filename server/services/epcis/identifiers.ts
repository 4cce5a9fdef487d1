import crypto from 'node:crypto';
import { isCountryCode } from '../../countries';
import { gs1CheckDigit, normaliseCode, normaliseGtin } from '../catalogue/codes';

/**
 * The identifiers of EPCIS events, read the way Downstream needs them (pure functions):
 * which unit an EPC names, which country a location is in, the CBV short form of a business
 * step, an event's id. The README's "Connecting other systems" table documents the mapping.
 */

/** A unit as our own exports name it. */
const UNIT_EPC_PREFIX = 'urn:downstream:unit:';
/** A country as our own exports name locations. */
const COUNTRY_LOCATION_PREFIX = 'urn:downstream:location:country:';

export type EpcTarget = { kind: 'unit'; unitId: string } | { kind: 'gtin'; gtin: string; serial: string };

/** `urn:epc:id:sgtin:<company prefix>.<indicator+item reference>.<serial>` → GTIN-14 and serial. */
function fromSgtin(epc: string): EpcTarget | null {
  const m = /^urn:epc:id:sgtin:(\d+)\.(\d+)\.(.+)$/.exec(epc);
  if (!m || m[1]!.length + m[2]!.length !== 13) return null;
  const [, companyPrefix, itemReference, serial] = m as unknown as [string, string, string, string];
  const first13 = `${itemReference[0]}${companyPrefix}${itemReference.slice(1)}`;
  return { kind: 'gtin', gtin: `${first13}${gs1CheckDigit(first13)}`, serial: decodeURIComponent(serial) };
}

/** A GS1 Digital Link URI (any resolver host): `…/01/<gtin>/21/<serial>[/…][?…]`. */
function fromDigitalLink(epc: string): EpcTarget | null {
  let url: URL;
  try {
    url = new URL(epc);
  } catch {
    return null;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null;
  const m = /\/01\/(\d{8,14})\/21\/([^/]+)/.exec(url.pathname);
  const gtin = m ? normaliseGtin(m[1]!) : null;
  return m && gtin ? { kind: 'gtin', gtin, serial: decodeURIComponent(m[2]!) } : null;
}

/** What an EPC names, when it names a serialised trade item: an SGTIN, a Digital Link or one of our unit URNs. */
export function parseEpc(epc: string): EpcTarget | null {
  if (epc.startsWith(UNIT_EPC_PREFIX)) return { kind: 'unit', unitId: epc.slice(UNIT_EPC_PREFIX.length) };
  if (epc.startsWith('urn:epc:id:sgtin:')) return fromSgtin(epc);
  return fromDigitalLink(epc);
}

/** The SGTIN's serial as a Downstream serial (compared upper-cased, without spaces). */
export const serialOfEpc = (target: Extract<EpcTarget, { kind: 'gtin' }>) => normaliseCode(target.serial);

/** A location's country when the id itself says it (our own URN); master data may say it for others. */
export function countryOfLocationId(id: string | null | undefined): string | null {
  if (!id?.startsWith(COUNTRY_LOCATION_PREFIX)) return null;
  const code = id.slice(COUNTRY_LOCATION_PREFIX.length).toUpperCase();
  return isCountryCode(code) ? code : null;
}

const CBV_BIZSTEP = 'urn:epcglobal:cbv:bizstep:';
const CBV_DISP = 'urn:epcglobal:cbv:disp:';
const GS1_VOC = 'https://ref.gs1.org/cbv/';

/** CBV values in their short form (`shipping`), whether sent bare, as a 1.x URN or as a GS1 web vocabulary URI. */
export function cbvShort(value: string | null | undefined): string | null {
  if (!value) return null;
  if (value.startsWith(CBV_BIZSTEP)) return value.slice(CBV_BIZSTEP.length);
  if (value.startsWith(CBV_DISP)) return value.slice(CBV_DISP.length);
  for (const vocabulary of ['BizStep-', 'Disp-']) if (value.startsWith(`${GS1_VOC}${vocabulary}`)) return value.slice(GS1_VOC.length + vocabulary.length);
  return value;
}

/**
 * An event's id: its `eventID`, or for an event without one a content hash, so the same event
 * sent twice is still one event. (A hash of the JSON as sent, not the standard's canonical
 * event hash: the same event serialised differently counts twice.)
 */
export function eventIdOf(event: { eventID?: unknown }): string {
  if (typeof event.eventID === 'string' && event.eventID) return event.eventID;
  return `ni:///sha-256;${crypto.createHash('sha256').update(JSON.stringify(event)).digest('hex')}?ver=downstream`;
}
