import request from 'supertest';
import { Case, OpenCaseKey } from '../models/cases';
import { CheckIn } from '../models/check-ins';
import { Flag, FlagSetting } from '../models/flags';
import { Transfer } from '../models/registrations';
import { AuditEntry } from '../models/audit';
import { OPENER_GRACE_MS } from '../server/services/cases/opening';
import { SETTLED_AFTER_CHECK_INS } from '../server/services/flags';
import { makeStaff } from './helpers/cases';
import { createTestContext, type TestContext } from './helpers/context';
import { checkInItem, hoursAgo, makeApiKey, makeCheckInUnit, sendBatch } from './helpers/check-ins';
import { apiUser, signedInAgent, unique } from './helpers/factories';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createStores } from '../server/store';

describe('with the database', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ RESTRICTED_COUNTRIES: 'KP,IR' });
  });
  afterAll(() => ctx.close());

  describe('red flags raised by check-ins', () => {
    let device: Awaited<ReturnType<typeof makeApiKey>>;
    beforeAll(async () => {
      device = await makeApiKey(ctx);
    });

    const flagsOf = (unitId: string) => Flag.find({ unitId }).sort({ raisedAt: 1, _id: 1 }).lean();
    const rulesOf = async (unitId: string) => (await flagsOf(unitId)).map((f) => f.rule).sort();
    /** `n` hourly check-ins from `country`, the last one `endHoursAgo` before the clock. */
    const visit = (unit: { modelId: string; serial: string }, country: string, n: number, endHoursAgo: number) =>
      Array.from({ length: n }, (_, i) => checkInItem(unit, { country, observedAt: hoursAgo(ctx, endHoursAgo + n - 1 - i) }));

    it('raises restricted-country and country-mismatch once when a run starts, not on every check-in', async () => {
      const unit = await makeCheckInUnit(ctx, { country: 'KE', countries: [{ country: 'KE', source: 'registration' }, { country: 'IR', source: 'transfer' }] });
      const res = await sendBatch(ctx, device.auth, visit(unit, 'IR', 5, 100));
      expect(res.status).toBe(200);
      expect(await rulesOf(unit._id)).toEqual(['country-mismatch', 'restricted-country']);
      const [flag] = (await flagsOf(unit._id)).filter((f) => f.rule === 'restricted-country');
      expect(flag).toMatchObject({ unitId: unit._id, modelId: unit.modelId, serial: unit.serial, country: 'IR', evidence: { country: 'IR', where: 'check-in' }, source: { kind: 'check-in' } });

      const caseDoc = await Case.findById(flag!.caseId).lean();
      expect(caseDoc).toMatchObject({ rules: ['restricted-country'], unitIds: [unit._id], countries: ['IR'] });
      const first = await CheckIn.findById(flag!.source!.id).lean();
      expect(first!.flags.sort()).toEqual(['country-mismatch', 'restricted-country']);
      expect(first!.observedAt).toEqual(new Date(hoursAgo(ctx, 104)));

      // More check-ins in the same run: nothing new.
      await sendBatch(ctx, device.auth, visit(unit, 'IR', 3, 90));
      expect(await Flag.countDocuments({ unitId: unit._id })).toBe(2);
    });

    it('adds a later hit of the same rule to the open case instead of opening another', async () => {
      const unit = await makeCheckInUnit(ctx, { country: 'KE' });
      await sendBatch(ctx, device.auth, [...visit(unit, 'KP', 1, 60), ...visit(unit, 'KE', 1, 50), ...visit(unit, 'KP', 1, 40)]);
      const restricted = (await flagsOf(unit._id)).filter((f) => f.rule === 'restricted-country');
      expect(restricted).toHaveLength(2);
      expect(restricted[0]!.caseId).toBe(restricted[1]!.caseId);
      const caseDoc = await Case.findById(restricted[0]!.caseId).lean();
      expect(caseDoc!.sources.filter((s) => s.kind === 'flag')).toHaveLength(2);
      expect(await OpenCaseKey.findById(`unit:${unit._id}|restricted-country`).lean()).toMatchObject({ caseId: restricted[0]!.caseId });
    });

    it('raises country-mismatch for a registered unit seen abroad, and nothing at home', async () => {
      const home = await makeCheckInUnit(ctx, { country: 'KE' });
      await sendBatch(ctx, device.auth, visit(home, 'KE', 4, 10));
      expect(await Flag.countDocuments({ unitId: home._id })).toBe(0);

      const abroad = await makeCheckInUnit(ctx, { country: 'KE' });
      await sendBatch(ctx, device.auth, visit(abroad, 'UG', 1, 10));
      const [flag] = await flagsOf(abroad._id);
      expect(flag).toMatchObject({ rule: 'country-mismatch', evidence: { checkInCountry: 'UG', registeredCountry: 'KE' } });
    });

    it('raises unregistered-check-in when a catalogued but unregistered unit checks in', async () => {
      const unit = await makeCheckInUnit(ctx, { status: 'unregistered' });
      await sendBatch(ctx, device.auth, visit(unit, 'KE', 2, 10));
      expect(await rulesOf(unit._id)).toEqual(['unregistered-check-in']);
      expect((await Case.findById((await flagsOf(unit._id))[0]!.caseId).lean())!.rules).toEqual(['unregistered-check-in']);
    });

    it('raises unknown-serial once per run for a serial the catalogue lacks, on one case', async () => {
      const ghost = { modelId: 'NOPE-9', serial: 'GHOST-77' };
      await sendBatch(ctx, device.auth, visit(ghost, 'KE', 3, 30));
      await sendBatch(ctx, device.auth, visit(ghost, 'KE', 2, 20));
      expect(await Flag.countDocuments({ serial: 'GHOST-77' })).toBe(1);
      await sendBatch(ctx, device.auth, visit(ghost, 'IR', 1, 10));
      const flags = await Flag.find({ serial: 'GHOST-77' }).lean();
      expect(flags.map((f) => f.rule).sort()).toEqual(['restricted-country', 'unknown-serial', 'unknown-serial']);
      const unknown = flags.filter((f) => f.rule === 'unknown-serial');
      expect(unknown[0]!.caseId).toBe(unknown[1]!.caseId);
      expect(unknown[0]).toMatchObject({ unitId: null, modelId: 'NOPE-9', evidence: { serial: 'GHOST-77', modelSku: 'NOPE-9' } });
      expect(await OpenCaseKey.findById('serial:GHOST-77|unknown-serial').lean()).toMatchObject({ caseId: unknown[0]!.caseId });
    });

    it(`raises unnotified-transfer when a run settles (${SETTLED_AFTER_CHECK_INS} check-ins) in a country nobody announced, once`, async () => {
      const unit = await makeCheckInUnit(ctx, { country: 'KE' });
      await sendBatch(ctx, device.auth, visit(unit, 'TZ', SETTLED_AFTER_CHECK_INS - 1, 30));
      expect(await rulesOf(unit._id)).toEqual(['country-mismatch']);
      await sendBatch(ctx, device.auth, visit(unit, 'TZ', 3, 20));
      expect(await rulesOf(unit._id)).toEqual(['country-mismatch', 'unnotified-transfer']);
      const flag = (await flagsOf(unit._id)).find((f) => f.rule === 'unnotified-transfer');
      expect(flag!.evidence).toMatchObject({ country: 'TZ', checkIns: SETTLED_AFTER_CHECK_INS });
    });

    it('does not raise unnotified-transfer for a country a transfer announced, even one still pending', async () => {
      const moved = await makeCheckInUnit(ctx, { country: 'UG', countries: [{ country: 'KE', source: 'registration' }, { country: 'UG', source: 'transfer' }] });
      await sendBatch(ctx, device.auth, visit(moved, 'UG', 4, 10));
      expect(await Flag.countDocuments({ unitId: moved._id })).toBe(0);

      const pending = await makeCheckInUnit(ctx, { country: 'KE', status: 'transfer-pending' });
      const { user } = await apiUser(ctx, 'customer');
      await Transfer.create({
        _id: `trf_${pending.serial}`, unitId: pending._id, registrationId: 'reg_x', requestedByUserId: user._id, kind: 'relocation',
        newLocation: { country: 'RW' }, reason: 'Office move', effectiveDate: ctx.clock.now(), status: 'pending', createdAt: ctx.clock.now(),
      });
      await sendBatch(ctx, device.auth, visit(pending, 'RW', 4, 10));
      expect(await rulesOf(pending._id)).toEqual(['country-mismatch']);
    });
  });

  describe('raising many flags at once', () => {
    type Unit = Awaited<ReturnType<typeof makeCheckInUnit>>;
    const hit = (country: string) => ({ rule: 'restricted-country' as const, evidence: { country, where: 'check-in' } });
    /** A restricted-country hit on `unit`, seen in check-in `checkInId`, with the id the summariser would give it. */
    const item = (unit: Unit, checkInId: string, country = 'KP') => ({
      hit: hit(country),
      subject: { unitId: unit._id, modelId: unit.modelId, serial: unit.serial, country },
      source: { kind: 'check-in' as const, id: checkInId },
      id: `flg_${checkInId}_restricted-country`,
    });
    const openCasesOf = async (unitId: string) => (await Case.find({ unitIds: unitId, status: { $ne: 'closed' } }).lean()).map((c) => c._id);
    const sourceIdsOf = async (caseId: string) => (await Case.findById(caseId).lean())!.sources.map((s) => s.id);

    it('opens one case for many hits on the same unit and rule, holding every flag in order', async () => {
      const unit = await makeCheckInUnit(ctx);
      const items = [item(unit, unique('chk')), item(unit, unique('chk'), 'IR'), item(unit, unique('chk'))];
      const raised = await ctx.services.flags.raiseMany(items);

      expect(raised.map((r) => r.flagId)).toEqual(items.map((i) => i.id));
      const [caseId] = await openCasesOf(unit._id);
      expect(raised.every((r) => r.caseId === caseId)).toBe(true);
      const stored = await Case.findById(caseId).lean();
      expect(stored).toMatchObject({ status: 'new', rules: ['restricted-country'], unitIds: [unit._id], countries: ['KP', 'IR'], title: `Red flag restricted-country on ${unit._id}` });
      expect(stored!.sources.map((s) => s.id)).toEqual(items.map((i) => i.id));
      expect(stored!.history.map((h) => h.action)).toEqual(['opened', 'source-added', 'source-added']);
      const flags = await Flag.find({ _id: { $in: items.map((i) => i.id) } }).lean();
      expect(flags).toHaveLength(3);
      expect(flags.every((f) => f.caseId === caseId && f.unitId === unit._id)).toBe(true);
      // The case is in the unit's timeline.
      const investigator = await makeStaff(ctx);
      expect((await ctx.services.cases.casesOfUnit(unit._id, investigator.actor)).map((c) => c._id)).toEqual([caseId]);
    });

    it('joins open cases, opens new ones, and replaces a case that closed under its key, in one call', async () => {
      const [open, closing, fresh] = [await makeCheckInUnit(ctx), await makeCheckInUnit(ctx), await makeCheckInUnit(ctx)];
      const [earlier] = await ctx.services.flags.raiseMany([item(open, unique('chk'))]);
      const [closed] = await ctx.services.flags.raiseMany([item(closing, unique('chk'))]);
      // Closed by an investigator while its key still names it (a close racing the raise).
      await Case.updateOne({ _id: closed!.caseId }, { $set: { status: 'closed' } });

      const items = [item(open, unique('chk')), item(closing, unique('chk')), item(fresh, unique('chk')), item(open, unique('chk'))];
      const raised = await ctx.services.flags.raiseMany(items);

      expect(raised[0]!.caseId).toBe(earlier!.caseId);
      expect(raised[3]!.caseId).toBe(earlier!.caseId);
      expect(await sourceIdsOf(earlier!.caseId)).toEqual([earlier!.flagId, items[0]!.id, items[3]!.id]);
      expect(raised[1]!.caseId).not.toBe(closed!.caseId);
      expect(await openCasesOf(closing._id)).toEqual([raised[1]!.caseId]);
      expect(await sourceIdsOf(closed!.caseId)).toEqual([closed!.flagId]);
      expect(await OpenCaseKey.findById(`unit:${closing._id}|restricted-country`).lean()).toMatchObject({ caseId: raised[1]!.caseId });
      expect(await openCasesOf(fresh._id)).toEqual([raised[2]!.caseId]);
      expect(new Set(raised.map((r) => r.caseId)).size).toBe(3);
      for (const [i, r] of raised.entries()) expect((await Flag.findById(items[i]!.id).lean())!.caseId).toBe(r.caseId);
    });

    it('raises nothing twice when the same call is replayed, even after dying between the case and the flags', async () => {
      const [a, b] = [await makeCheckInUnit(ctx), await makeCheckInUnit(ctx)];
      const existing = await ctx.services.flags.raiseMany([item(a, unique('chk'))]);
      const items = [item(a, unique('chk')), item(b, unique('chk')), item(b, unique('chk'))];
      // Another instance dies as soon as the cases are written: its flags are never stored.
      const stores = createStores(ctx.db.engine);
      const died = async () => {
        throw new Error('the process died');
      };
      const dying = createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: { ...stores, flags: { ...stores.flags, insertFlags: died } } });
      await expect(dying.flags.raiseMany(items)).rejects.toThrow('the process died');
      expect(await Flag.countDocuments({ _id: { $in: items.map((i) => i.id) } })).toBe(0);

      const replayed = await ctx.services.flags.raiseMany(items);
      const again = await ctx.services.flags.raiseMany(items);
      expect(again).toEqual(replayed);
      expect(replayed[0]!.caseId).toBe(existing[0]!.caseId);
      expect(await sourceIdsOf(existing[0]!.caseId)).toEqual([existing[0]!.flagId, items[0]!.id]);
      expect(await openCasesOf(b._id)).toEqual([replayed[1]!.caseId]);
      expect(await sourceIdsOf(replayed[1]!.caseId)).toEqual([items[1]!.id, items[2]!.id]);
      expect(await Flag.countDocuments({ _id: { $in: items.map((i) => i.id) } })).toBe(3);
    });

    it('waits for an opener between claiming a key and writing its case, and takes the key over once the opener is surely dead', async () => {
      const unit = await makeCheckInUnit(ctx);
      // An opener that claimed the key and died before writing its case.
      await OpenCaseKey.create({ _id: `unit:${unit._id}|restricted-country`, caseId: 'C-2026-999999', claimedAt: ctx.clock.now() });
      const items = [item(unit, unique('chk'))];
      await expect(ctx.services.flags.raiseMany(items)).rejects.toThrow('could not open or attach');
      expect(await Flag.countDocuments({ _id: items[0]!.id })).toBe(0);

      ctx.clock.advance(OPENER_GRACE_MS + 1);
      const [raised] = await ctx.services.flags.raiseMany(items);
      expect(raised!.caseId).not.toBe('C-2026-999999');
      expect(await openCasesOf(unit._id)).toEqual([raised!.caseId]);
      expect(await sourceIdsOf(raised!.caseId)).toEqual([items[0]!.id]);
    });

    it('keeps one open case per unit and rule when two instances raise overlapping flags at once', async () => {
      const units = [await makeCheckInUnit(ctx), await makeCheckInUnit(ctx), await makeCheckInUnit(ctx), await makeCheckInUnit(ctx)];
      const other = createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
      const mine = units.flatMap((u) => [item(u, unique('chk')), item(u, unique('chk'))]);
      const theirs = units.flatMap((u) => [item(u, unique('chk'))]);
      // Some hits are in both calls (the same check-in folded by both): one flag each.
      const shared = [item(units[0]!, unique('chk')), item(units[3]!, unique('chk'))];
      const [a, b] = await Promise.all([ctx.services.flags.raiseMany([...mine, ...shared]), other.flags.raiseMany([...shared, ...theirs])]);

      for (const [i, u] of units.entries()) {
        const open = await openCasesOf(u._id);
        expect(open).toHaveLength(1);
        const flags = await Flag.find({ unitId: u._id }).lean();
        expect(flags).toHaveLength(i === 0 || i === 3 ? 4 : 3);
        expect(flags.every((f) => f.caseId === open[0])).toBe(true);
        const sources = await sourceIdsOf(open[0]!);
        expect([...sources].sort()).toEqual(flags.map((f) => f._id).sort());
      }
      expect(a.slice(-2)).toEqual(b.slice(0, 2));
    });
  });

  describe('restricted countries (admin)', () => {

    it('reads and replaces the list through the API, normalised, audited, and used by the rules at once', async () => {
      const admin = await apiUser(ctx, 'admin');
      const read = await request(ctx.app).get('/api/v1/restricted-countries').set(admin.auth);
      expect(read.status).toBe(200);
      expect(read.body).toEqual({ countries: ['IR', 'KP'] });

      const put = await request(ctx.app).put('/api/v1/restricted-countries').set(admin.auth).send({ countries: ['sy', 'IR', 'ir'] });
      expect(put.status).toBe(200);
      expect(put.body).toEqual({ countries: ['IR', 'SY'] });
      expect(await FlagSetting.findById('restricted-countries').lean()).toMatchObject({ countries: ['IR', 'SY'] });
      expect(await AuditEntry.countDocuments({ action: 'restricted-countries.changed' })).toBe(1);

      const device = await makeApiKey(ctx);
      const unit = await makeCheckInUnit(ctx, { country: 'SY' });
      await sendBatch(ctx, device.auth, [checkInItem(unit, { country: 'SY' })]);
      expect((await Flag.find({ unitId: unit._id }).lean()).map((f) => f.rule)).toEqual(['restricted-country']);
    });

    it('refuses codes that are not ISO 3166-1 alpha-2, naming each by its index, and keeps the list', async () => {
      const admin = await apiUser(ctx, 'admin');
      const before = (await request(ctx.app).get('/api/v1/restricted-countries').set(admin.auth)).body.countries;
      const res = await request(ctx.app).put('/api/v1/restricted-countries').set(admin.auth).send({ countries: ['KP', 'XX', 'Iran', 7] });
      expect(res.status).toBe(400);
      expect(Object.keys(res.body.error.fields).sort()).toEqual(['countries.1', 'countries.2', 'countries.3']);
      expect((await request(ctx.app).get('/api/v1/restricted-countries').set(admin.auth)).body.countries).toEqual(before);
      const missing = await request(ctx.app).put('/api/v1/restricted-countries').set(admin.auth).send({});
      expect(missing.status).toBe(400);
      expect(missing.body.error.fields).toHaveProperty('countries');
    });

    it('is for admins only', async () => {
      const investigator = await apiUser(ctx, 'investigator');
      expect((await request(ctx.app).get('/api/v1/restricted-countries').set(investigator.auth)).status).toBe(403);
      expect((await request(ctx.app).put('/api/v1/restricted-countries').set(investigator.auth).send({ countries: [] })).status).toBe(403);
      expect((await request(ctx.app).get('/api/v1/restricted-countries')).status).toBe(401);
      const { agent } = await signedInAgent(ctx, 'customer');
      expect((await agent.get('/admin/restricted-countries')).status).toBe(403);
    });

    it('changes the list from the admin page, and shows the form again with bad codes named and the text kept', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const page = await agent.get('/admin/restricted-countries');
      expect(page.status).toBe(200);

      const bad = await agent.form('/admin/restricted-countries', { countries: 'BY, QQ, cuba' });
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('Not ISO 3166-1 alpha-2 country codes: QQ, CUBA.');
      expect(bad.text).toContain('BY, QQ, cuba');
      expect(await FlagSetting.findById('restricted-countries').lean()).not.toMatchObject({ countries: ['BY'] });

      const ok = await agent.form('/admin/restricted-countries', { countries: 'by cu, kp' });
      expect(ok.status).toBe(303);
      expect((await FlagSetting.findById('restricted-countries').lean())!.countries).toEqual(['BY', 'CU', 'KP']);
      const after = await agent.get('/admin/restricted-countries');
      expect(after.text).toContain('Restricted countries saved: BY, CU, KP.');
      expect(after.text).toContain('Belarus');

      expect((await agent.form('/admin/restricted-countries', { countries: '' })).status).toBe(303);
      expect((await FlagSetting.findById('restricted-countries').lean())!.countries).toEqual([]);
    });
  });
});
