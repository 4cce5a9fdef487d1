import fs from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { Unit } from '../models/catalogue';
import { EpcisEvent } from '../models/epcis';
import { Flag } from '../models/flags';
import { gs1CheckDigit } from '../server/services/catalogue';
import { CAPTURE_CHUNK_EVENTS } from '../server/services/epcis/capture';
import { schemaErrors } from '../server/services/epcis/validation';
import { createTestContext, type TestContext } from './helpers/context';
import { checkInItem, makeApiKey, sendBatch } from './helpers/check-ins';
import { apiUser } from './helpers/factories';
import { makeModel, makeRegistration, makeUnit } from './helpers/catalogue';
import { makeFlagCase, makeStaff } from './helpers/cases';
import { capture, countryLocation, epcisDocument, epcisKey, makeGtinUnit, objectEvent } from './helpers/epcis';

const fixture = (name: string) => JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures/epcis', name), 'utf8')) as Record<string, unknown>;
const timelineOf = async (ctx: TestContext, unitId: string) => {
  const res = await request(ctx.app).get(`/api/v1/units/${encodeURIComponent(unitId)}/timeline`).set((await apiUser(ctx, 'investigator')).auth);
  expect(res.status).toBe(200);
  return res.body as { current: { country: string | null; source: string }; entries: Array<{ kind: string; title: string; country: string | null }> };
};

// One app and database for the file: a test context owns the process's database connection.
let ctx: TestContext;
let key: Awaited<ReturnType<typeof epcisKey>>;
beforeAll(async () => {
  ctx = await createTestContext({ RESTRICTED_COUNTRIES: 'KP' });
  key = await epcisKey(ctx);
});
afterAll(() => ctx.close());

describe('EPCIS capture', () => {

  it("captures the standard's ObjectEvent example onto the units its SGTINs name, placed by the location master data", async () => {
    // The example's SGTINs (urn:epc:id:sgtin:0614141.107346.*): indicator 1, company prefix 0614141, item 07346.
    const model = await makeModel(ctx, { gtin: `1061414107346${gs1CheckDigit('1061414107346')}` });
    const { unit } = await makeUnit(ctx, { model, serial: '2018' });
    const admin = await apiUser(ctx, 'admin');
    const placed = await request(ctx.app).put(`/api/v1/epcis/locations/${encodeURIComponent('urn:epc:id:sgln:0012345.11111.0')}`).set(admin.auth).send({ country: 'ke', name: 'Nairobi warehouse' });
    expect(placed.status).toBe(200);
    expect(placed.body).toMatchObject({ id: 'urn:epc:id:sgln:0012345.11111.0', country: 'KE' });

    const { posted, job } = await capture(ctx, key.auth, fixture('Example_9.6.1-ObjectEvent.jsonld'));
    expect(posted.status).toBe(202);
    expect(posted.headers.location).toBe(`/api/v1/epcis/capture/${posted.body.captureID}`);
    expect(posted.body).toMatchObject({ running: true, status: 'queued', progress: { events: 2, processed: 0 } });
    expect(job!.status).toBe(200);
    expect(job!.body).toMatchObject({ running: false, success: true, status: 'succeeded', errors: [], counts: { events: 2, processed: 2, stored: 2, duplicates: 0, rejected: 0, matchedUnits: 2 } });

    expect(await EpcisEvent.countDocuments({ captureId: posted.body.captureID })).toBe(2);
    const timeline = await timelineOf(ctx, unit._id);
    expect(timeline.entries.filter((e) => e.kind === 'external-event').map((e) => e.title)).toEqual(['External event: shipping', 'External event: receiving']);
    // Received in Nairobi (bizLocation placed in KE) after a shipment with no known destination: its first sale.
    expect(timeline.current).toMatchObject({ country: 'KE', source: 'first-sale' });
    expect((await Unit.findById(unit._id).lean())!.firstSale).toMatchObject({ shipToCountry: 'KE', soldAt: new Date('2005-04-05T02:33:31.116Z') });
  });

  it("captures the standard's TransactionEvent example, deriving ids for events without an eventID", async () => {
    const doc = fixture('Example-TransactionEvents-2020_07_03y.jsonld');
    const { posted, job } = await capture(ctx, key.auth, doc);
    expect(posted.status).toBe(202);
    expect(job!.body).toMatchObject({ success: true, counts: { events: 2, stored: 2, matchedUnits: 0 } });
    const stored = await EpcisEvent.find({ captureId: posted.body.captureID }).lean();
    expect(stored.map((e) => e.type)).toEqual(['TransactionEvent', 'TransactionEvent']);
    expect(stored.every((e) => /^ni:\/\/\/sha-256;[0-9a-f]{64}/.test(e._id))).toBe(true);

    const again = await capture(ctx, key.auth, doc);
    expect(again.job!.body).toMatchObject({ success: true, counts: { stored: 0, duplicates: 2 } });
  });

  it('records a shipment of a known SGTIN as its first sale, on its timeline, and moves its location', async () => {
    const { unit, sgtin } = await makeGtinUnit(ctx);
    const shipped = objectEvent({ epcList: [sgtin], eventTime: '2026-01-05T09:00:00+03:00', eventTimeZoneOffset: '+03:00', destinationList: [{ type: 'location', destination: countryLocation('UG') }] });
    const { job } = await capture(ctx, key.auth, epcisDocument([shipped]));
    expect(job!.body).toMatchObject({ success: true, counts: { matchedUnits: 1 } });

    const after = await Unit.findById(unit._id).lean();
    expect(after!.firstSale).toMatchObject({ shipToCountry: 'UG', soldAt: new Date('2026-01-05T06:00:00Z') });
    expect(after!.countries.map((c) => [c.country, c.source])).toEqual([['UG', 'first-sale']]);
    const timeline = await timelineOf(ctx, unit._id);
    expect(timeline.current).toMatchObject({ country: 'UG' });
    expect(timeline.entries.find((e) => e.kind === 'external-event')).toMatchObject({ title: 'External event: shipping', country: 'UG' });

    // A later shipment moves it on (the first sale stays what it was).
    const onward = objectEvent({ epcList: [sgtin], eventTime: '2026-01-08T09:00:00Z', bizStep: 'receiving', bizLocation: { id: countryLocation('TZ') } });
    expect((await capture(ctx, key.auth, epcisDocument([onward]))).job!.body).toMatchObject({ success: true, counts: { matchedUnits: 1 } });
    expect((await Unit.findById(unit._id).lean())!.firstSale!.shipToCountry).toBe('UG');
    expect((await timelineOf(ctx, unit._id)).current).toMatchObject({ country: 'TZ', source: 'external-event' });
  });

  it('names units by GS1 Digital Link URIs as well as SGTINs', async () => {
    const { unit, digitalLink } = await makeGtinUnit(ctx);
    const { job } = await capture(ctx, key.auth, epcisDocument([objectEvent({ epcList: [digitalLink], bizStep: 'inspecting', readPoint: { id: countryLocation('KE') } })]));
    expect(job!.body).toMatchObject({ counts: { matchedUnits: 1 } });
    expect((await timelineOf(ctx, unit._id)).entries.filter((e) => e.kind === 'external-event').map((e) => e.title)).toEqual(['External event: inspecting']);
  });

  it('adds nothing when the same eventID is captured again', async () => {
    const { unit, sgtin } = await makeGtinUnit(ctx);
    const event = objectEvent({ epcList: [sgtin], bizStep: 'inspecting', readPoint: { id: countryLocation('KE') } });
    await capture(ctx, key.auth, epcisDocument([event]));
    const { job } = await capture(ctx, key.auth, epcisDocument([event, objectEvent({ epcList: [sgtin] })]));
    expect(job!.body).toMatchObject({ success: true, counts: { events: 2, stored: 1, duplicates: 1 } });
    expect(await EpcisEvent.countDocuments({ _id: event.eventID })).toBe(1);
    expect((await timelineOf(ctx, unit._id)).entries.filter((e) => e.kind === 'external-event')).toHaveLength(2);
  });

  it('refuses a document with invalid events as a whole by default, naming each event and field', async () => {
    const { sgtin } = await makeGtinUnit(ctx);
    const good = objectEvent({ epcList: [sgtin] });
    const bad = objectEvent({ action: 'MOVE', eventTime: 'yesterday' });
    const aggregation = { ...objectEvent(), type: 'AggregationEvent', parentID: 'urn:epc:id:sscc:0614141.1234567890', childEPCs: [] };
    const { posted, job } = await capture(ctx, key.auth, epcisDocument([good, bad, aggregation]));
    expect(posted.status).toBe(202);
    expect(job!.body).toMatchObject({ success: false, status: 'failed', counts: { events: 3, stored: 0, rejected: 2 } });
    const errors = job!.body.errors as Array<{ index: number; eventID: string; field: string; message: string }>;
    expect(errors.filter((e) => e.index === 1).map((e) => e.field).sort()).toEqual(expect.arrayContaining(['action', 'eventTime']));
    expect(errors.every((e) => e.index !== 0)).toBe(true);
    expect(errors.find((e) => e.index === 2)).toMatchObject({ field: 'type', message: 'Only ObjectEvent and TransactionEvent are captured.' });
    expect(await EpcisEvent.countDocuments({ _id: good.eventID })).toBe(0);
  });

  it('stores the valid events of a partly invalid document when asked to proceed', async () => {
    const good = objectEvent();
    const { job } = await capture(ctx, key.auth, epcisDocument([good, objectEvent({ eventTimeZoneOffset: 'CET' })]), { 'GS1-Capture-Error-Behaviour': 'proceed' });
    expect(job!.body).toMatchObject({ success: false, status: 'partial', counts: { events: 2, stored: 1, rejected: 1 } });
    expect(job!.body.errors[0]).toMatchObject({ index: 1, field: 'eventTimeZoneOffset' });
    expect(await EpcisEvent.countDocuments({ _id: good.eventID })).toBe(1);
  });

  it('answers 400 to a body that is no EPCIS document, and to an unknown error behaviour', async () => {
    const notEpcis = await request(ctx.app).post('/api/v1/epcis/capture').set(key.auth).send({ hello: 'world' });
    expect(notEpcis.status).toBe(400);
    expect(notEpcis.body.error.fields).toEqual({ type: 'Send an EPCIS 2.0 document: "type": "EPCISDocument".' });
    const behaviour = await request(ctx.app).post('/api/v1/epcis/capture').set(key.auth).set('GS1-Capture-Error-Behaviour', 'ignore').send(epcisDocument([]));
    expect(behaviour.status).toBe(400);
    expect(behaviour.body.error.fields).toHaveProperty(['GS1-Capture-Error-Behaviour']);
  });

  it('needs a key with the epcis:capture scope, and shows a job only to the key that sent it', async () => {
    const checkIns = await makeApiKey(ctx);
    expect((await request(ctx.app).post('/api/v1/epcis/capture').set(checkIns.auth).send(epcisDocument([]))).status).toBe(403);
    const { posted } = await capture(ctx, key.auth, epcisDocument([objectEvent()]));
    const other = await epcisKey(ctx);
    expect((await request(ctx.app).get(posted.headers.location!).set(other.auth)).status).toBe(404);
  });

  it('runs the red-flag rules on captured events: a shipment into a restricted country raises a flag', async () => {
    const { unit, sgtin } = await makeGtinUnit(ctx);
    const event = objectEvent({ epcList: [sgtin], destinationList: [{ type: 'location', destination: countryLocation('KP') }] });
    await capture(ctx, key.auth, epcisDocument([event]));
    const flags = await Flag.find({ unitId: unit._id }).lean();
    expect(flags.map((f) => [f.rule, f.source?.kind, f.source?.id, f.country])).toEqual([['restricted-country', 'epcis-event', event.eventID, 'KP']]);
    // Captured again (another eventID is another event; this one is the same): no second flag.
    await capture(ctx, key.auth, epcisDocument([event]));
    expect(await Flag.countDocuments({ unitId: unit._id })).toBe(1);
  });

  it('processes a large capture in the background in chunks, with progress on the job', async () => {
    const units = [await makeGtinUnit(ctx), await makeGtinUnit(ctx), await makeGtinUnit(ctx)];
    const size = 2 * CAPTURE_CHUNK_EVENTS + 100;
    const events = Array.from({ length: size }, (_, i) => objectEvent({ epcList: [units[i % 3]!.sgtin], bizStep: 'inspecting', eventTime: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString() }));
    const posted = await request(ctx.app).post('/api/v1/epcis/capture').set(key.auth).send(epcisDocument(events));
    expect(posted.status).toBe(202);
    expect(posted.body.progress).toEqual({ events: size, processed: 0, chunks: 3, chunksDone: 0 });
    while (await ctx.services.epcis.processCaptures());
    const job = await request(ctx.app).get(posted.headers.location!).set(key.auth);
    expect(job.body).toMatchObject({ success: true, progress: { events: size, processed: size, chunks: 3, chunksDone: 3 }, counts: { stored: size, matchedUnits: size } });
    const onTimeline = await Promise.all(units.map(async ({ unit }) => (await timelineOf(ctx, unit._id)).entries.filter((e) => e.kind === 'external-event').length));
    expect(onTimeline).toEqual([1_367, 1_367, 1_366]);
  });

  it('counts an event sent twice in one capture once, on the job and on the timeline', async () => {
    const { unit, sgtin } = await makeGtinUnit(ctx);
    const event = objectEvent({ epcList: [sgtin], bizStep: 'inspecting' });
    const { job } = await capture(ctx, key.auth, epcisDocument([event, objectEvent({ epcList: [sgtin] }), event]));
    expect(job!.body).toMatchObject({ success: true, counts: { events: 3, processed: 3, stored: 2, duplicates: 1 } });
    expect((await timelineOf(ctx, unit._id)).entries.filter((e) => e.kind === 'external-event')).toHaveLength(2);
  });

  it('refuses a capture of more than 10,000 events', async () => {
    const events = Array.from({ length: 10_001 }, () => ({ type: 'ObjectEvent' }));
    const res = await request(ctx.app).post('/api/v1/epcis/capture').set(key.auth).send(epcisDocument(events));
    expect(res.status).toBe(400);
    expect(res.body.error.fields['epcisBody.eventList']).toMatch(/At most 10,000 events/);
  });

  it('gives a product model a GTIN only when its check digit holds and no other model has it', async () => {
    const admin = await apiUser(ctx, 'admin');
    const [first, second] = [await makeModel(ctx), await makeModel(ctx)];
    const patch = (sku: string, gtin: string) => request(ctx.app).patch(`/api/v1/models/${sku}`).set(admin.auth).send({ gtin });
    const wrong = await patch(first._id, '4006381333932');
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.fields).toEqual({ gtin: 'Not a valid GTIN: 8, 12, 13 or 14 digits ending in the GS1 check digit.' });
    const given = await patch(first._id, '4006381333931');
    expect(given.status).toBe(200);
    expect(given.body.model.gtin).toBe('04006381333931');
    const taken = await patch(second._id, '04006381333931');
    expect(taken.status).toBe(409);
    expect(taken.body.error.fields).toEqual({ gtin: 'Another product model has this GTIN.' });
    // Freed when the first model takes another one.
    expect((await patch(first._id, '')).body.model.gtin).toBeNull();
    expect((await patch(second._id, '4006381333931')).status).toBe(200);
  });

  it('validates its own fixtures against the schema it ships', () => {
    expect(schemaErrors(fixture('Example_9.6.1-ObjectEvent.jsonld'))).toEqual([]);
  });
});

describe('EPCIS query and current state', () => {

  const query = (params: Record<string, string | string[]>) => request(ctx.app).get('/api/v1/epcis/events').query(params).set(key.auth);
  const nextToken = (link: string | undefined) => (link ? new URL(/<([^>]+)>/.exec(link)![1]!, 'http://x').searchParams.get('nextPageToken') : null);

  /** Every page of a query, following nextPageToken; each page checked against the schema. */
  async function allPages(params: Record<string, string>) {
    const ids: string[] = [];
    let token: string | null = null;
    for (let pages = 0; pages < 50; pages++) {
      const res = await query({ ...params, ...(token ? { nextPageToken: token } : {}) });
      expect(res.status).toBe(200);
      const body = JSON.parse(res.text);
      expect(schemaErrors(body)).toEqual([]);
      ids.push(...body.epcisBody.queryResults.resultsBody.eventList.map((e: { eventID: string }) => e.eventID));
      token = nextToken(res.headers.link);
      if (!token) return ids;
    }
    throw new Error('paging did not end');
  }

  const DAY = 86_400_000;
  const daysAfter = (t: Date, days: number) => new Date(t.getTime() + days * DAY).toISOString();

  /** A unit registered now, then (a day apart each) a check-in, a captured shipment and a captured inspection. */
  async function unitWithHistory() {
    const { unit: made, sgtin, model } = await makeGtinUnit(ctx);
    const registeredAt = ctx.clock.now();
    await makeRegistration(ctx, { unit: made, country: 'KE' });
    ctx.clock.advance(3 * DAY);
    const device = await makeApiKey(ctx);
    await sendBatch(ctx, device.auth, [checkInItem(made, { country: 'KE', observedAt: daysAfter(registeredAt, 1) })]);
    const shipped = objectEvent({ epcList: [sgtin], eventTime: daysAfter(registeredAt, 2), bizStep: 'shipping', destinationList: [{ type: 'location', destination: countryLocation('UG') }] });
    const seen = objectEvent({ epcList: [sgtin], eventTime: daysAfter(registeredAt, 3), bizStep: 'inspecting', disposition: 'active', bizLocation: { id: countryLocation('UG') } });
    await capture(ctx, key.auth, epcisDocument([shipped, seen]));
    return { unit: made, sgtin, model, shipped, seen, registeredAt };
  }

  it("returns a unit's whole history for its SGTIN, as schema-valid EPCIS, in time order", async () => {
    const { sgtin, shipped, seen } = await unitWithHistory();
    const res = await query({ MATCH_epc: sgtin });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/ld\+json/);
    const body = JSON.parse(res.text);
    expect(schemaErrors(body)).toEqual([]);
    const events = body.epcisBody.queryResults.resultsBody.eventList as Array<{ eventID: string; bizStep: string; eventTime: string }>;
    expect(events.map((e) => e.bizStep)).toEqual(['accepting', 'urn:downstream:bizstep:firmware-check-in', 'shipping', 'inspecting']);
    expect(events.slice(2).map((e) => e.eventID)).toEqual([shipped.eventID, seen.eventID]);
    expect(res.headers.link).toBeUndefined();
  });

  it("adds the unit's leverage effects: updates withheld, then restored, and its warranty voided", async () => {
    const { unit, sgtin } = await unitWithHistory();
    const { caseId } = await makeFlagCase(ctx, { unitId: unit._id, modelId: unit.modelId });
    const { actor } = await makeStaff(ctx, 'admin');
    ctx.clock.advance(DAY);
    const withheldAt = ctx.clock.now();
    const withhold = await ctx.services.cases.addAction(caseId, { kind: 'withhold-updates', unitIds: [unit._id] }, actor);
    await ctx.services.cases.addAction(caseId, { kind: 'request-information', unitIds: [unit._id], customer: 'Clinic Ltd' }, actor);
    ctx.clock.advance(DAY);
    const restoredAt = ctx.clock.now();
    await ctx.services.cases.updateAction(caseId, withhold, { status: 'lifted', outcome: 'Cameras removed' }, actor);
    ctx.clock.advance(DAY);
    const voidedAt = ctx.clock.now();
    const voiding = await ctx.services.cases.addAction(caseId, { kind: 'void-warranty', unitIds: [unit._id] }, actor);

    const res = await query({ MATCH_epc: sgtin, GE_eventTime: withheldAt.toISOString() });
    expect(res.status).toBe(200);
    const body = JSON.parse(res.text);
    expect(schemaErrors(body)).toEqual([]);
    expect(body.epcisBody.queryResults.resultsBody.eventList).toEqual([
      expect.objectContaining({ eventID: `urn:downstream:event:withheld:${withhold}:${unit._id}`, eventTime: withheldAt.toISOString(), bizStep: 'urn:downstream:bizstep:updates-withheld', disposition: 'urn:downstream:disp:updates-withheld', epcList: [`urn:downstream:unit:${unit._id}`], 'downstream:caseId': caseId }),
      expect.objectContaining({ eventID: `urn:downstream:event:restored:${withhold}:${unit._id}`, eventTime: restoredAt.toISOString(), bizStep: 'urn:downstream:bizstep:updates-restored', disposition: 'active' }),
      expect.objectContaining({ eventID: `urn:downstream:event:voided:${voiding}:${unit._id}`, eventTime: voidedAt.toISOString(), bizStep: 'urn:downstream:bizstep:warranty-voided', disposition: 'urn:downstream:disp:warranty-void' }),
    ]);
    // A business-step filter picks them out as it does every other event.
    const withheldOnly = JSON.parse((await query({ MATCH_epc: sgtin, EQ_bizStep: 'urn:downstream:bizstep:updates-withheld' })).text);
    expect(withheldOnly.epcisBody.queryResults.resultsBody.eventList.map((e: { eventID: string }) => e.eventID)).toEqual([`urn:downstream:event:withheld:${withhold}:${unit._id}`]);
  });

  it('filters by event type, business step and time', async () => {
    const { sgtin, shipped, seen, registeredAt } = await unitWithHistory();
    const ids = async (params: Record<string, string>) => JSON.parse((await query({ MATCH_epc: sgtin, ...params })).text).epcisBody.queryResults.resultsBody.eventList.map((e: { eventID: string }) => e.eventID);
    expect(await ids({ EQ_bizStep: 'shipping' })).toEqual([shipped.eventID]);
    expect(await ids({ EQ_bizStep: 'shipping|inspecting' })).toEqual([shipped.eventID, seen.eventID]);
    expect(await ids({ GE_eventTime: daysAfter(registeredAt, 2.5) })).toEqual([seen.eventID]);
    expect(await ids({ GE_eventTime: daysAfter(registeredAt, 2), LT_eventTime: daysAfter(registeredAt, 3) })).toEqual([shipped.eventID]);
    expect(await ids({ LT_eventTime: daysAfter(registeredAt, 0.5), eventType: 'ObjectEvent' })).toEqual([expect.stringMatching(/^urn:downstream:event:registration:/)]);
    expect(await ids({ eventType: 'TransactionEvent' })).toEqual([]);
  });

  it('pages by nextPageToken, returning every event exactly once', async () => {
    const { sgtin } = await unitWithHistory();
    const whole = await allPages({ MATCH_epc: sgtin, perPage: '100' });
    expect(whole).toHaveLength(4);
    const paged = await allPages({ MATCH_epc: sgtin, perPage: '1' });
    expect(paged).toEqual(whole);

    // Over captured events with no EPC named: one location's events, two per page.
    const place = countryLocation('RW');
    const events = Array.from({ length: 5 }, (_, i) => objectEvent({ bizStep: 'inspecting', bizLocation: { id: place }, eventTime: i < 3 ? '2026-01-01T00:00:00Z' : `2026-01-0${i}T00:00:00Z` }));
    await capture(ctx, key.auth, epcisDocument(events));
    const byLocation = await allPages({ EQ_bizLocation: place, perPage: '2' });
    expect([...byLocation].sort()).toEqual(events.map((e) => e.eventID).sort());
    expect(new Set(byLocation).size).toBe(5);
  });

  it('answers 400 naming the parameter for a bad time, page size or token', async () => {
    expect((await query({ GE_eventTime: 'last week' })).body.error.fields).toHaveProperty('GE_eventTime');
    expect((await query({ perPage: '0' })).body.error.fields).toHaveProperty('perPage');
    const token = await query({ nextPageToken: 'not-a-token' });
    expect(token.status).toBe(400);
    expect(token.body.error.fields).toHaveProperty('nextPageToken');
    expect((await query({ EQ_color: 'red' })).status).toBe(400);
  });

  it("gives an item's current state from its summary, agreeing with the unit page", async () => {
    const { unit, sgtin } = await unitWithHistory();
    const res = await request(ctx.app).get(`/api/v1/epcis/currentState/${encodeURIComponent(sgtin)}`).set(key.auth);
    expect(res.status).toBe(200);
    const page = await timelineOf(ctx, unit._id);
    expect(res.body).toMatchObject({
      epc: sgtin,
      unitId: unit._id,
      status: 'registered',
      location: { country: page.current.country, source: page.current.source },
      disposition: 'active',
      controls: { updates: 'allowed', warranty: 'valid' },
      lastCheckIn: { country: 'KE' },
    });
    // The inspection in Uganda came after the registration in Kenya.
    expect(res.body.location).toMatchObject({ country: 'UG', source: 'external-event' });
    expect(res.body.owner.registrationId).toEqual(expect.stringMatching(/^reg_/));

    const unknown = await request(ctx.app).get(`/api/v1/epcis/currentState/${encodeURIComponent('urn:epc:id:sgtin:9999999.012345.1')}`).set(key.auth);
    expect(unknown.status).toBe(404);
  });

  it('needs a key with the epcis:query scope', async () => {
    const captureOnly = await makeApiKey(ctx, { scopes: ['epcis:capture'] });
    expect((await request(ctx.app).get('/api/v1/epcis/events').set(captureOnly.auth)).status).toBe(403);
    expect((await request(ctx.app).get('/api/v1/epcis/events')).status).toBe(401);
  });
});
