import request from 'supertest';
import mongoose from 'mongoose';
import { Unit, UnitCheckInHistory } from '../models/catalogue';
import { CheckIn, CheckInBatch, UnknownSerial, WITHHELD_UNITS_ID, WithheldUnits } from '../models/check-ins';
import { Flag } from '../models/flags';
import { UnitTally } from '../models/insight';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createStores } from '../server/store';
import { pendingMigrations, runMigrations } from '../server/store/migrations';
import { ABANDONED_WRITE_MS, MAX_RUNS } from '../server/services/check-ins';
import { createTestContext, type TestContext } from './helpers/context';
import { checkInItem, hoursAgo, makeApiKey, makeCheckInUnit, sendBatch, sendCheckIn, unitRunsOf } from './helpers/check-ins';
import { apiUser, unique } from './helpers/factories';

const at = (iso: string) => new Date(iso);
const AppliedMigrations = () => mongoose.connection.collection('migrations');

describe('check-in ingest', () => {
  let ctx: TestContext;
  let device: Awaited<ReturnType<typeof makeApiKey>>;
  beforeAll(async () => {
    ctx = await createTestContext({ RESTRICTED_COUNTRIES: 'KP' });
    device = await makeApiKey(ctx);
  });
  afterAll(() => ctx.close());

  it('answers a single check-in and stores it with the unit summary', async () => {
    const unit = await makeCheckInUnit(ctx);
    const item = checkInItem(unit, { serial: ` ${unit.serial.toLowerCase()} `, firmware: '2.1.0', observedAt: '2026-01-15T09:00:00+03:00' });
    const res = await sendCheckIn(ctx, device.auth, item);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ serial: unit.serial, model: unit.modelId, answer: 'allowed' });

    const stored = await CheckIn.findById(`${device.id}:${item.eventId}`).lean();
    expect(stored).toMatchObject({ unitId: unit._id, serial: unit.serial, firmware: '2.1.0', country: 'KE', apiKeyId: device.id, answer: 'allowed', observedAt: at('2026-01-15T06:00:00Z'), receivedAt: ctx.clock.now() });
    const after = await Unit.findById(unit._id).lean();
    expect(after!.checkIns).toMatchObject({ count: 1, lastAt: at('2026-01-15T06:00:00Z'), lastCountry: 'KE', lastFirmware: '2.1.0' });
    expect(await unitRunsOf(ctx, unit._id)).toEqual([{ country: 'KE', count: 1, firstAt: at('2026-01-15T06:00:00Z'), lastAt: at('2026-01-15T06:00:00Z'), firstFirmware: '2.1.0', lastFirmware: '2.1.0' }]);
  });

  it('keeps a run going on into the next year as one run, and the timeline shows the newest runs', async () => {
    const unit = await makeCheckInUnit(ctx);
    const month = (iso: string, country = 'KE') => checkInItem(unit, { observedAt: iso, country, firmware: iso.slice(5, 7) });
    const items = [month('2025-12-29T10:00:00+00:00'), month('2025-12-30T10:00:00+00:00'), month('2026-01-01T10:00:00+00:00'), month('2026-01-02T10:00:00+00:00', 'UG')];
    for (let i = 0; i < MAX_RUNS; i++) items.push(month(new Date(Date.UTC(2026, 0, 3, i)).toISOString().replace('Z', '+00:00'), i % 2 ? 'UG' : 'KE'));
    expect((await sendBatch(ctx, device.auth, items)).status).toBe(200);

    const runs = await unitRunsOf(ctx, unit._id);
    expect(runs.slice(0, 2)).toEqual([
      { country: 'KE', count: 3, firstAt: at('2025-12-29T10:00:00Z'), lastAt: at('2026-01-01T10:00:00Z'), firstFirmware: '12', lastFirmware: '01' },
      { country: 'UG', count: 1, firstAt: at('2026-01-02T10:00:00Z'), lastAt: at('2026-01-02T10:00:00Z'), firstFirmware: '01', lastFirmware: '01' },
    ]);
    expect(runs.reduce((n, r) => n + r.count, 0)).toBe(items.length);

    const staff = await request(ctx.app).get(`/api/v1/units/${encodeURIComponent(unit._id)}/timeline`).set((await apiUser(ctx, 'investigator')).auth);
    expect(staff.status).toBe(200);
    const shown = (staff.body.entries as Array<{ kind: string; title: string }>).filter((e) => e.kind === 'check-ins');
    expect(shown).toHaveLength(MAX_RUNS);
    expect(shown.at(-1)!.title).toBe(`1 check-in from ${runs.at(-1)!.country}`);
  });

  it('answers a batch in input order and folds each unit’s check-ins into runs with one summary each', async () => {
    const a = await makeCheckInUnit(ctx);
    const b = await makeCheckInUnit(ctx);
    const items = [
      checkInItem(a, { observedAt: hoursAgo(ctx, 50), firmware: '2.1' }),
      checkInItem(b, { observedAt: hoursAgo(ctx, 40) }),
      checkInItem(a, { observedAt: hoursAgo(ctx, 30), firmware: '2.3' }),
      checkInItem(a, { observedAt: hoursAgo(ctx, 20), country: 'UG', firmware: '2.3' }),
      checkInItem(a, { observedAt: hoursAgo(ctx, 10), country: 'UG', firmware: '2.4' }),
    ];
    const res = await sendBatch(ctx, device.auth, items);
    expect(res.status).toBe(200);
    expect(res.body.items.map((r: { serial: string }) => r.serial)).toEqual([a.serial, b.serial, a.serial, a.serial, a.serial]);
    expect(res.body.items.every((r: { answer: string; duplicate?: boolean }) => r.answer === 'allowed' && !r.duplicate)).toBe(true);

    const unitA = (await Unit.findById(a._id).lean())!;
    expect(unitA.checkIns!).toMatchObject({ count: 4, lastCountry: 'UG', lastFirmware: '2.4' });
    expect((await unitRunsOf(ctx, a._id)).map((r) => [r.country, r.count, r.firstFirmware, r.lastFirmware])).toEqual([
      ['KE', 2, '2.1', '2.3'],
      ['UG', 2, '2.3', '2.4'],
    ]);
    expect((await Unit.findById(b._id).lean())!.checkIns!.count).toBe(1);
    expect(await CheckIn.countDocuments({ unitId: a._id })).toBe(4);
  });

  it('stores a retried batch once and does not count it twice', async () => {
    const unit = await makeCheckInUnit(ctx);
    const items = [checkInItem(unit, { observedAt: hoursAgo(ctx, 3) }), checkInItem(unit, { observedAt: hoursAgo(ctx, 2) })];
    expect((await sendBatch(ctx, device.auth, items)).status).toBe(200);
    const retry = await sendBatch(ctx, device.auth, [...items, checkInItem(unit, { observedAt: hoursAgo(ctx, 1) })]);
    expect(retry.status).toBe(200);
    expect(retry.body.items.map((r: { duplicate?: boolean }) => r.duplicate ?? false)).toEqual([true, true, false]);
    expect(await CheckIn.countDocuments({ unitId: unit._id })).toBe(3);
    const after = (await Unit.findById(unit._id).lean())!;
    expect(after.checkIns!.count).toBe(3);
    expect(await unitRunsOf(ctx, unit._id)).toEqual([expect.objectContaining({ count: 3 })]);
  });

  it('counts an event id repeated within one batch once', async () => {
    const unit = await makeCheckInUnit(ctx);
    const item = checkInItem(unit);
    const res = await sendBatch(ctx, device.auth, [item, item]);
    expect(res.status).toBe(200);
    expect(res.body.items).toEqual([
      { serial: unit.serial, model: unit.modelId, answer: 'allowed' },
      { serial: unit.serial, model: unit.modelId, answer: 'allowed', duplicate: true },
    ]);
    expect((await Unit.findById(unit._id).lean())!.checkIns!.count).toBe(1);
  });

  it('keeps event ids per API key: another key with the same event id is another check-in', async () => {
    const unit = await makeCheckInUnit(ctx);
    const other = await makeApiKey(ctx);
    const item = checkInItem(unit);
    expect((await sendBatch(ctx, device.auth, [item])).body.items[0].duplicate).toBeUndefined();
    expect((await sendBatch(ctx, other.auth, [item])).body.items[0].duplicate).toBeUndefined();
    expect(await CheckIn.countDocuments({ unitId: unit._id })).toBe(2);
  });

  it('stores every check-in sent without an event id', async () => {
    const unit = await makeCheckInUnit(ctx);
    const item = checkInItem(unit, { eventId: undefined });
    await sendBatch(ctx, device.auth, [item]);
    await sendBatch(ctx, device.auth, [item]);
    expect(await CheckIn.countDocuments({ unitId: unit._id })).toBe(2);
    expect((await Unit.findById(unit._id).lean())!.checkIns!.count).toBe(2);
  });

  it('finds the unit by serial alone when the model is missing', async () => {
    const unit = await makeCheckInUnit(ctx);
    const res = await sendCheckIn(ctx, device.auth, checkInItem(unit, { model: undefined }));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ serial: unit.serial, model: unit.modelId, answer: 'allowed' });
    expect((await Unit.findById(unit._id).lean())!.checkIns!.count).toBe(1);
  });

  it('accepts a full batch of 1,000 check-ins (larger than the default body limit)', async () => {
    const units = await Promise.all(Array.from({ length: 20 }, () => makeCheckInUnit(ctx)));
    const items = Array.from({ length: 1000 }, (_, i) => checkInItem(units[i % 20]!, { observedAt: hoursAgo(ctx, 1000 - i), eventId: `full-${i}-${'x'.repeat(40)}` }));
    expect(JSON.stringify({ items }).length).toBeGreaterThan(ctx.config.bodyLimitKb * 1024);
    const res = await sendBatch(ctx, device.auth, items);
    expect(res.status).toBe(200);
    expect(res.body.items).toHaveLength(1000);
    expect((await Unit.findById(units[7]!._id).lean())!.checkIns!.count).toBe(50);
  });

  it('keeps the summary exact when two batches for one unit arrive at once', async () => {
    const unit = await makeCheckInUnit(ctx);
    const batch = (country: string, from: number) => Array.from({ length: 10 }, (_, i) => checkInItem(unit, { country, observedAt: hoursAgo(ctx, from - i) }));
    const [r1, r2] = await Promise.all([sendBatch(ctx, device.auth, batch('KE', 100)), sendBatch(ctx, device.auth, batch('UG', 50))]);
    expect([r1.status, r2.status]).toEqual([200, 200]);
    const after = (await Unit.findById(unit._id).lean())!;
    expect(after.checkIns!.count).toBe(20);
    expect((await unitRunsOf(ctx, unit._id)).reduce((n, r) => n + r.count, 0)).toBe(20);
  });

  describe('bad input: the whole batch is refused, naming each field, and nothing is stored', () => {
    const refused = async (items: unknown[], fields: Record<string, unknown>) => {
      const before = await CheckIn.countDocuments({});
      const res = await sendBatch(ctx, device.auth, items);
      expect(res.status).toBe(400);
      expect(res.body.error.fields).toMatchObject(fields);
      expect(await CheckIn.countDocuments({})).toBe(before);
    };

    it('refuses 1,001 items', async () => {
      const unit = await makeCheckInUnit(ctx);
      await refused(Array.from({ length: 1001 }, () => checkInItem(unit, { eventId: undefined })), { items: 'At most 1,000 check-ins per batch.' });
    });

    it('refuses an empty batch or a body without items', async () => {
      await refused([], { items: 'Send at least one check-in.' });
      const res = await request(ctx.app).post('/api/v1/check-ins/batch').set(device.auth).send({ checkIns: [] });
      expect(res.status).toBe(400);
      expect(Object.keys(res.body.error.fields)).toEqual(expect.arrayContaining(['items', 'checkIns']));
    });

    it('names the index and field of each bad item', async () => {
      const unit = await makeCheckInUnit(ctx);
      await refused(
        [
          checkInItem(unit),
          checkInItem(unit, { country: 'XX' }),
          checkInItem(unit, { observedAt: '2026-01-15T09:00:00' }),
          checkInItem(unit, { country: 'Kenya', serial: '' }),
          checkInItem(unit, { observedAt: '2026-01-17T09:00:00Z' }),
          checkInItem(unit, { firmware: undefined, eventId: 'a:b' }),
          checkInItem(unit, { colour: 'red' }),
        ],
        {
          'items.1.country': 'Use an ISO 3166-1 alpha-2 country code, e.g. KE.',
          'items.2.observedAt': expect.stringContaining('ISO 8601 with a time zone'),
          'items.3.country': expect.any(String),
          'items.3.serial': 'Serial is required.',
          'items.4.observedAt': 'The observed time is more than a day in the future.',
          'items.5.firmware': 'Firmware version is required.',
          'items.5.eventId': expect.stringContaining('Event id'),
          'items.6.colour': 'This field is not accepted here.',
        },
      );
      expect((await Unit.findById(unit._id).lean())!.checkIns!.count).toBe(0);
    });

    it('names the field for a single check-in', async () => {
      const unit = await makeCheckInUnit(ctx);
      const res = await sendCheckIn(ctx, device.auth, checkInItem(unit, { country: 'ZZ' }));
      expect(res.status).toBe(400);
      expect(res.body.error.fields).toEqual({ country: 'Use an ISO 3166-1 alpha-2 country code, e.g. KE.' });
      expect(await CheckIn.countDocuments({ unitId: unit._id })).toBe(0);
    });
  });

  describe('unknown serials', () => {
    it('answers allowed, logs the check-in without a unit and keeps one small summary', async () => {
      const items = [checkInItem(null, { serial: 'GHOST-1', model: 'NOPE-1', observedAt: hoursAgo(ctx, 2) }), checkInItem(null, { serial: 'GHOST-1', model: 'NOPE-1', observedAt: hoursAgo(ctx, 1), firmware: '3.0' })];
      const res = await sendBatch(ctx, device.auth, items);
      expect(res.status).toBe(200);
      expect(res.body.items[0]).toEqual({ serial: 'GHOST-1', model: 'NOPE-1', answer: 'allowed' });
      expect(await CheckIn.countDocuments({ serial: 'GHOST-1', unitId: null })).toBe(2);
      expect(await UnknownSerial.findById('NOPE-1:GHOST-1').lean()).toMatchObject({ count: 2, lastCountry: 'KE', lastFirmware: '3.0', modelSku: 'NOPE-1' });
    });
  });

  describe('withholding updates reaches the device', () => {
    it('answers withheld at the next check-in, and allowed once every withholding case lifts it', async () => {
      const unit = await makeCheckInUnit(ctx);
      const ask = async () => {
        const item = checkInItem(unit);
        const res = await sendCheckIn(ctx, device.auth, item);
        expect(res.status).toBe(200);
        expect((await CheckIn.findById(`${device.id}:${item.eventId}`).lean())!.answer).toBe(res.body.answer);
        return res.body.answer as string;
      };
      expect(await ask()).toBe('allowed');

      expect(await ctx.services.checkIns.withholdUpdates([unit._id], 'C-2026-000901')).toBe(1);
      expect(await ask()).toBe('withheld');
      await ctx.services.checkIns.withholdUpdates([unit._id], 'C-2026-000902');

      await ctx.services.checkIns.liftWithholding([unit._id], 'C-2026-000901');
      expect(await ask()).toBe('withheld');
      expect((await Unit.findById(unit._id).lean())!.controls!.withheldByCaseIds).toEqual(['C-2026-000902']);

      await ctx.services.checkIns.liftWithholding([unit._id], 'C-2026-000902');
      expect(await ask()).toBe('allowed');
      expect((await Unit.findById(unit._id).lean())!.controls!).toMatchObject({ updates: 'allowed', withheldByCaseIds: [] });
    });

    it('answers each serial of a batch by its own controls', async () => {
      const held = await makeCheckInUnit(ctx);
      const free = await makeCheckInUnit(ctx);
      await ctx.services.checkIns.withholdUpdates([held._id], 'C-2026-000903');
      const res = await sendBatch(ctx, device.auth, [checkInItem(free), checkInItem(held), checkInItem(null)]);
      expect(res.body.items.map((r: { answer: string }) => r.answer)).toEqual(['allowed', 'withheld', 'allowed']);
    });

    it('answers withheld to a bare serial or a wrong model whose serial is the withheld unit’s, and keeps the registry in step', async () => {
      const held = await makeCheckInUnit(ctx);
      await ctx.services.checkIns.withholdUpdates([held._id, 'NOPE-9:NO-SUCH-SERIAL'], 'C-2026-000904');
      const registry = async () => (await WithheldUnits.findById(WITHHELD_UNITS_ID).lean())!.unitIds;
      expect(await registry()).toContain(held._id);
      expect(await registry()).not.toContain('NOPE-9:NO-SUCH-SERIAL');

      const res = await sendBatch(ctx, device.auth, [checkInItem(held, { model: undefined }), checkInItem(held, { model: 'WRONG-1' })]);
      expect(res.body.items).toEqual([
        { serial: held.serial, model: held.modelId, answer: 'withheld' },
        { serial: held.serial, model: held.modelId, answer: 'withheld' },
      ]);

      await ctx.services.checkIns.liftWithholding([held._id], 'C-2026-000904');
      expect(await registry()).not.toContain(held._id);
      expect((await sendCheckIn(ctx, device.auth, checkInItem(held))).body.answer).toBe('allowed');
    });
  });

  describe('a serial several models carry', () => {
    it('is answered 409 with the candidate models when sent without a model, never "allowed" by guess, and nothing is stored', async () => {
      const serial = unique('SN').toUpperCase();
      const units = await Promise.all(['A', 'B', 'C'].map((m) => makeCheckInUnit(ctx, { sku: `${unique('AMB')}-${m}`.toUpperCase(), serial })));
      await ctx.services.checkIns.withholdUpdates([units[1]!._id], 'C-2026-000950');
      const skus = units.map((u) => u.modelId).sort();

      const one = await sendCheckIn(ctx, device.auth, checkInItem(units[0]!, { model: undefined, eventId: 'amb-1' }));
      expect(one.status).toBe(409);
      expect(one.body.error).toMatchObject({ code: 'ambiguous_serial', fields: { model: `Serial ${serial} is used by 3 models (${skus.join(', ')}): send the model (SKU) with it.` } });
      expect(one.body.error.message).toContain(skus[0]);

      const free = await makeCheckInUnit(ctx);
      const batch = await sendBatch(ctx, device.auth, [checkInItem(free, { eventId: 'amb-2' }), checkInItem(units[0]!, { model: undefined, eventId: 'amb-3' })]);
      expect(batch.status).toBe(409);
      expect(Object.keys(batch.body.error.fields)).toEqual(['items.1.model']);
      expect(await CheckIn.countDocuments({ _id: { $in: [`${device.id}:amb-1`, `${device.id}:amb-2`, `${device.id}:amb-3`] } })).toBe(0);

      // With its model the same serial is answered by that unit's own controls.
      const named = await sendBatch(ctx, device.auth, [checkInItem(units[1]!), checkInItem(units[2]!)]);
      expect(named.body.items.map((r: { answer: string }) => r.answer)).toEqual(['withheld', 'allowed']);
    });
  });

  describe('the summariser (summaries and red flags follow ingest in the background)', () => {
    /** The outbox document of a batch, rebuilt from the log (as ingest wrote it). */
    const outboxDoc = async (checkInIds: string[]) => {
      const logged = (await Promise.all(checkInIds.map((id) => CheckIn.findById(id).lean()))).map((c) => c!);
      return { _id: logged[0]!.batchId!, apiKeyId: device.id, receivedAt: logged[0]!.receivedAt, size: logged.length, logIds: logged.map((c) => c._id) };
    };

    it('answers at once, shows the batch as backlog until it is folded, then empties the outbox', async () => {
      const unit = await makeCheckInUnit(ctx);
      const items = [1, 2, 3].map((h) => ({ serial: unit.serial, model: unit.modelId, firmware: '2.0', observedAt: new Date(ctx.clock.now().getTime() - h * 3_600_000), country: 'KE', eventId: unique('bg') }));
      const answers = await ctx.services.checkIns.ingest(device.id, items);
      expect(answers.map((a) => a.answer)).toEqual(['allowed', 'allowed', 'allowed']);
      const batchId = (await CheckIn.findById(`${device.id}:${items[0]!.eventId}`).lean())!.batchId!;
      expect(ctx.services.checkIns.backlog()).toMatchObject({ batches: 1, checkIns: 3 });

      await ctx.services.checkIns.settled();
      expect(ctx.services.checkIns.backlog()).toMatchObject({ batches: 0, checkIns: 0, oldestReceivedAt: null });
      expect(await CheckInBatch.findById(batchId).lean()).toBeNull();
      expect((await Unit.findById(unit._id).lean())!.checkIns).toMatchObject({ count: 3, batchIds: [batchId] });
      const ready = await request(ctx.app).get('/readyz');
      expect(ready.body.checkInSummaries).toMatchObject({ batches: 0, checkIns: 0 });
      expect(ready.body.checkInSummaries.folded).toBeGreaterThanOrEqual(3);
    });

    it('moves the unit between last-check-in countries in the dashboard’s tallies', async () => {
      const unit = await makeCheckInUnit(ctx, { country: 'KE' });
      const tally = async () => (await UnitTally.findById(unit.modelId).lean())!;
      await sendCheckIn(ctx, device.auth, checkInItem(unit, { country: 'UG', observedAt: hoursAgo(ctx, 3) }));
      expect(await tally()).toMatchObject({ withCheckIns: 1, byCheckInCountry: { UG: 1 } });
      await sendBatch(ctx, device.auth, [checkInItem(unit, { country: 'UG', observedAt: hoursAgo(ctx, 2) }), checkInItem(unit, { country: 'KE', observedAt: hoursAgo(ctx, 1) })]);
      expect(await tally()).toMatchObject({ withCheckIns: 1, byCheckInCountry: { UG: 0, KE: 1 } });
      // An older check-in arriving late changes nothing: the last one is still from KE.
      await sendCheckIn(ctx, device.auth, checkInItem(unit, { country: 'TZ', observedAt: hoursAgo(ctx, 5) }));
      expect(await tally()).toMatchObject({ withCheckIns: 1, byCheckInCountry: { UG: 0, KE: 1 } });
      expect((await tally()).byCheckInCountry).not.toHaveProperty('TZ');
    });

    it('corrects the log when the named model is wrong but the serial is a known unit’s', async () => {
      const unit = await makeCheckInUnit(ctx);
      const item = checkInItem(unit, { model: 'WRONG-2' });
      await sendCheckIn(ctx, device.auth, item);
      expect(await CheckIn.findById(`${device.id}:${item.eventId}`).lean()).toMatchObject({ unitId: unit._id, modelSku: unit.modelId });
      expect((await Unit.findById(unit._id).lean())!.checkIns!.count).toBe(1);
    });

    it('folds the stored part of a batch whose writer died, once it is clearly abandoned', async () => {
      const unit = await makeCheckInUnit(ctx);
      const batchId = `cib_${unique('abandoned')}`;
      const now = ctx.clock.now();
      const entries = [3, 2, 1].map((h) => ({ id: `${device.id}:${unique('lost')}`, serial: unit.serial, model: unit.modelId, unitId: unit._id, firmware: '1.0', observedAt: new Date(now.getTime() - h * 3_600_000), country: 'KE' }));
      await CheckInBatch.collection.insertOne({ _id: batchId, apiKeyId: device.id, receivedAt: now, size: entries.length, logIds: entries.map((e) => e.id) } as never);
      // The writer stored two of the three log entries, then the process died.
      await CheckIn.collection.insertMany(entries.slice(0, 2).map((e) => ({ _id: e.id, unitId: e.unitId, modelSku: e.model, serial: e.serial, firmware: e.firmware, observedAt: e.observedAt, receivedAt: now, country: e.country, apiKeyId: device.id, answer: 'allowed', flags: [], batchId })) as never[]);

      await ctx.services.checkIns.sweep();
      expect((await Unit.findById(unit._id).lean())!.checkIns!.count).toBe(0); // its writer may still be at work
      expect(await CheckInBatch.findById(batchId).lean()).not.toBeNull();

      ctx.clock.advance(ABANDONED_WRITE_MS + 1_000);
      await ctx.services.checkIns.sweep();
      expect((await Unit.findById(unit._id).lean())!.checkIns).toMatchObject({ count: 2, lastAt: entries[1]!.observedAt, batchIds: [batchId] });
      expect(await CheckInBatch.findById(batchId).lean()).toBeNull();
    });

    it('keeps every check-in when two app processes fold into the same unit at once', async () => {
      const other = createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
      const unit = await makeCheckInUnit(ctx);
      const items = (h: number) => [{ serial: unit.serial, model: unit.modelId, firmware: '2.0', observedAt: new Date(ctx.clock.now().getTime() - h * 3_600_000), country: 'KE', eventId: unique('two') }];
      // Both ingest (their folds start once ingest is quiet), then both fold at the same moment.
      await Promise.all([ctx.services.checkIns.ingest(device.id, items(2)), other.checkIns.ingest(device.id, items(1))]);
      await Promise.all([ctx.services.checkIns.settled(), other.checkIns.settled()]);
      const summary = (await Unit.findById(unit._id).lean())!.checkIns!;
      expect(summary.count).toBe(2);
      expect(summary.batchIds).toHaveLength(2);
      expect(await unitRunsOf(ctx, unit._id)).toEqual([expect.objectContaining({ country: 'KE', count: 2 })]);
    });

    it('leaves a batch it cannot fold in the outbox and goes on with the batches behind it', async () => {
      const poisoned = `cib_${unique('poisoned')}`;
      await CheckInBatch.collection.insertOne({ _id: poisoned, apiKeyId: device.id, receivedAt: new Date(ctx.clock.now().getTime() - ABANDONED_WRITE_MS - 1_000), size: 1, logIds: [{ serial: 'not an id' }] } as never);
      await ctx.services.checkIns.sweep();
      const unit = await makeCheckInUnit(ctx);
      await sendCheckIn(ctx, device.auth, checkInItem(unit));
      expect((await Unit.findById(unit._id).lean())!.checkIns!.count).toBe(1);
      expect(await CheckInBatch.findById(poisoned).lean()).not.toBeNull();
      expect(ctx.services.checkIns.backlog().batches).toBe(0);
      await CheckInBatch.deleteOne({ _id: poisoned });
    });

    it('counts nothing twice and raises no flag twice when a batch is folded again after a crash', async () => {
      const unit = await makeCheckInUnit(ctx, { country: 'KE' });
      const before = (await Unit.findById(unit._id).lean())!.checkIns;
      const item = checkInItem(unit, { country: 'KP', observedAt: hoursAgo(ctx, 1) });
      const id = `${device.id}:${item.eventId}`;
      await sendBatch(ctx, device.auth, [item]);
      const raised = await Flag.find({ unitId: unit._id }, { rule: 1 }).lean();
      expect(raised.map((f) => f.rule).sort()).toEqual(['country-mismatch', 'restricted-country']);
      expect([...(await CheckIn.findById(id).lean())!.flags].sort()).toEqual(['country-mismatch', 'restricted-country']);
      const replay = await outboxDoc([id]);

      // Crashed after raising the flags, before the summary and the outbox clean-up; restarted a minute later.
      await Unit.updateOne({ _id: unit._id }, { $set: { checkIns: before } });
      await CheckInBatch.collection.insertOne(replay as never);
      ctx.clock.advance(ABANDONED_WRITE_MS + 1_000);
      await ctx.services.checkIns.sweep();
      expect((await Unit.findById(unit._id).lean())!.checkIns).toMatchObject({ count: 1, lastCountry: 'KP' });
      expect(await Flag.countDocuments({ unitId: unit._id })).toBe(2);

      // Crashed after the summary, before the outbox clean-up.
      await CheckInBatch.collection.insertOne(replay as never);
      ctx.clock.advance(ABANDONED_WRITE_MS + 1_000);
      await ctx.services.checkIns.sweep();
      expect((await Unit.findById(unit._id).lean())!.checkIns).toMatchObject({ count: 1, lastCountry: 'KP' });
      expect(await Flag.countDocuments({ unitId: unit._id })).toBe(2);
      expect(await CheckInBatch.findById(replay._id).lean()).toBeNull();
      expect(await unitRunsOf(ctx, unit._id)).toEqual([expect.objectContaining({ country: 'KP', count: 1 })]);
    });
  });

  describe('data written by the previous version (npm run migrate)', () => {
    it('converts units with runs on the unit into history buckets, once, and check-ins continue their runs', async () => {
      const older = { country: 'TZ', count: 7, firstAt: at('2025-10-28T00:00:00Z'), lastAt: at('2025-11-20T00:00:00Z'), firstFirmware: '1.0', lastFirmware: '1.2' };
      const last = { country: 'KE', count: 2, firstAt: at('2025-12-01T00:00:00Z'), lastAt: at('2026-01-10T00:00:00Z'), firstFirmware: '1.2', lastFirmware: '1.3' };
      const asString = await makeCheckInUnit(ctx, { country: 'KE' });
      const asArray = await makeCheckInUnit(ctx, { country: 'KE' });
      // As the previous version stored them, straight through the driver.
      await Unit.collection.updateOne({ _id: asString._id as never }, { $set: { checkIns: { count: 9, lastAt: last.lastAt, lastCountry: 'KE', lastFirmware: '1.3', runsJson: JSON.stringify([older, last]), batchIds: [] } } });
      await Unit.collection.updateOne({ _id: asArray._id as never }, { $set: { checkIns: { count: 7, lastAt: older.lastAt, lastCountry: 'TZ', lastFirmware: '1.2', runs: [older], batchIds: [] } } });

      expect((await pendingMigrations(ctx.db.engine)).find((p) => p.id === '001-check-in-history')?.remaining).toBe(2);
      await expect(runMigrations(ctx.db.engine, { maxRemaining: 1 })).rejects.toThrow(/Run `npm run migrate` first/);
      const lines: string[] = [];
      expect(await runMigrations(ctx.db.engine, { progress: (line) => lines.push(line) })).toContain('001-check-in-history');
      expect(lines).toContainEqual(expect.stringMatching(/migrated 2 \/ 2 units/));
      expect(await runMigrations(ctx.db.engine)).toEqual([]); // recorded: nothing left to do

      expect(await unitRunsOf(ctx, asString._id)).toEqual([older, last]);
      expect(await unitRunsOf(ctx, asArray._id)).toEqual([older]);
      const raw = (await Unit.collection.findOne({ _id: asString._id as never }))!;
      expect(raw.checkIns.runsJson).toBeUndefined();

      // The last run goes on: no new run, so no new country-mismatch flag; the timeline shows it.
      const flagsBefore = await Flag.countDocuments({ unitId: asString._id });
      expect((await sendCheckIn(ctx, device.auth, checkInItem(asString, { firmware: '1.4', observedAt: '2026-01-14T09:00:00+00:00' }))).status).toBe(200);
      expect(await unitRunsOf(ctx, asString._id)).toEqual([older, { ...last, count: 3, lastAt: at('2026-01-14T09:00:00Z'), lastFirmware: '1.4' }]);
      expect(await Flag.countDocuments({ unitId: asString._id })).toBe(flagsBefore);
      expect((await Unit.findById(asString._id).lean())!.checkIns).toMatchObject({ count: 10, lastCountry: 'KE', lastFirmware: '1.4' });
      const timeline = await ctx.services.registrations.timeline(asString._id, { id: 'any-investigator', role: 'investigator' });
      expect(timeline.entries.filter((e) => e.kind === 'check-ins').map((e) => e.title)).toEqual(['7 check-ins from TZ', '3 check-ins from KE']);
    });

    it('converts outbox batches that held their entries as one JSON string, and folds them as any other', async () => {
      const unit = await makeCheckInUnit(ctx, { country: 'KE' });
      const batchId = `cib_${unique('old-outbox')}`;
      const now = ctx.clock.now();
      const entries = [2, 1].map((h) => ({ id: `${device.id}:${unique('old')}`, observedAt: new Date(now.getTime() - h * 3_600_000) }));
      // As the previous version stored them: the outbox entry a JSON string, the log as today.
      const payload = JSON.stringify(entries.map((e) => [e.id, unit.serial, unit.modelId, unit._id, '3.1', e.observedAt.toISOString(), 'KE']));
      await CheckInBatch.collection.insertOne({ _id: batchId, apiKeyId: device.id, receivedAt: now, size: 2, payload } as never);
      await CheckIn.collection.insertMany(entries.map((e) => ({ _id: e.id, unitId: unit._id, modelSku: unit.modelId, serial: unit.serial, firmware: '3.1', observedAt: e.observedAt, receivedAt: now, country: 'KE', apiKeyId: device.id, answer: 'allowed', flags: [], batchId })) as never[]);
      await AppliedMigrations().deleteMany({});

      expect((await pendingMigrations(ctx.db.engine)).find((p) => p.id === '003-check-in-outbox')?.remaining).toBe(1);
      expect(await runMigrations(ctx.db.engine)).toContain('003-check-in-outbox');
      const converted = (await CheckInBatch.collection.findOne({ _id: batchId as never }))!;
      expect(converted.payload).toBeUndefined();
      expect(converted.logIds).toEqual(entries.map((e) => e.id));

      await ctx.services.checkIns.sweep();
      expect((await Unit.findById(unit._id).lean())!.checkIns).toMatchObject({ count: 2, lastFirmware: '3.1', batchIds: [batchId] });
      expect(await CheckInBatch.findById(batchId).lean()).toBeNull();
    });

    it('converts again safely after an interruption half-way (a bucket already written, the unit not yet)', async () => {
      const run = { country: 'UG', count: 4, firstAt: at('2025-09-02T00:00:00Z'), lastAt: at('2025-09-09T00:00:00Z'), firstFirmware: '2', lastFirmware: '2' };
      const unit = await makeCheckInUnit(ctx, { country: 'UG' });
      await Unit.collection.updateOne({ _id: unit._id as never }, { $set: { checkIns: { count: 4, lastAt: run.lastAt, lastCountry: 'UG', lastFirmware: '2', runsJson: JSON.stringify([run]), batchIds: [] } } });
      await UnitCheckInHistory.create({ _id: `${unit._id}:2025`, unitId: unit._id, period: '2025', count: 4, runs: [run] });
      await AppliedMigrations().deleteMany({});

      await runMigrations(ctx.db.engine);
      expect(await unitRunsOf(ctx, unit._id)).toEqual([run]);
      expect(await UnitCheckInHistory.countDocuments({ unitId: unit._id })).toBe(1);
    });
  });
});
