import crypto from 'node:crypto';
import request from 'supertest';
import { gs1CheckDigit } from '../../server/services/catalogue';
import type { TestContext } from './context';
import { makeApiKey } from './check-ins';
import { makeModel, makeUnit } from './catalogue';

/** EPCIS factories: a model with a GTIN and its units named as SGTINs, keys, documents and captures run to the end. */

export const EPCIS_CONTEXT = 'https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld';

let companyPrefix = 4_000_000;

/** A GTIN-14 under a fresh 7-digit company prefix, and the SGTIN of a serial of it. */
export function newGtin() {
  const prefix = String(++companyPrefix);
  const itemReference = '012345'; // indicator 0 + 5 digits: 7 + 6 = 13 digits before the check digit
  const first13 = `${itemReference[0]}${prefix}${itemReference.slice(1)}`;
  const gtin = `${first13}${gs1CheckDigit(first13)}`;
  return { gtin, sgtin: (serial: string) => `urn:epc:id:sgtin:${prefix}.${itemReference}.${serial}`, digitalLink: (serial: string) => `https://id.example.org/01/${gtin}/21/${serial}` };
}

/** A model with a GTIN, and a unit of it (unregistered, no first sale unless given). */
export async function makeGtinUnit(ctx: TestContext, fields: { serial?: string; riskLevel?: 'low' | 'elevated' | 'high' } = {}) {
  const g = newGtin();
  const model = await makeModel(ctx, { riskLevel: fields.riskLevel });
  await ctx.services.catalogue.updateModel(model._id, { gtin: g.gtin }, { userId: null });
  const { unit } = await makeUnit(ctx, { model, serial: fields.serial });
  return { model, unit, gtin: g.gtin, sgtin: g.sgtin(unit.serial), digitalLink: g.digitalLink(unit.serial), g };
}

export const epcisKey = (ctx: TestContext) => makeApiKey(ctx, { scopes: ['epcis:capture', 'epcis:query'] });

export function epcisDocument(eventList: unknown[]) {
  return { '@context': [EPCIS_CONTEXT], type: 'EPCISDocument', schemaVersion: '2.0', creationDate: '2026-01-15T10:00:00Z', epcisBody: { eventList } };
}

/** An ObjectEvent; override any field. */
export function objectEvent(fields: Record<string, unknown> = {}) {
  return {
    type: 'ObjectEvent',
    eventID: `urn:uuid:${crypto.randomUUID()}`,
    eventTime: '2026-01-10T08:00:00.000Z',
    eventTimeZoneOffset: '+00:00',
    action: 'OBSERVE',
    bizStep: 'shipping',
    disposition: 'in_transit',
    epcList: [],
    ...fields,
  };
}

export const countryLocation = (country: string) => `urn:downstream:location:country:${country}`;

/** Posts a capture and runs the capture job until it finishes; returns the POST answer and the job. */
export async function capture(ctx: TestContext, auth: Record<string, string>, doc: unknown, headers: Record<string, string> = {}) {
  const posted = await request(ctx.app).post('/api/v1/epcis/capture').set(auth).set(headers).send(doc as object);
  if (posted.status === 202) while (await ctx.services.epcis.processCaptures());
  const job = posted.status === 202 ? await request(ctx.app).get(posted.headers.location!).set(auth) : null;
  return { posted, job };
}
