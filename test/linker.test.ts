import request from 'supertest';
import { Case } from '../models/cases';
import { Registration, RegistrationPlace } from '../models/registrations';
import { Report } from '../models/reports';
import mongoose from 'mongoose';
import { runMigrations } from '../server/store/migrations';
import { MAX_REGISTRATION_LINKS } from '../server/services/linker';
import { createReceiptHasher } from '../server/services/reports';
import { makeModel, makeRegistration, makeUnit } from './helpers/catalogue';
import { createTestContext, type TestContext } from './helpers/context';
import { unique } from './helpers/factories';
import { digitsOf, fileReport } from './helpers/reports';

describe('linking reports to the catalogue (database)', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ RATE_LIMIT_PUBLIC_POST_PER_MIN: '10000', REPORT_SUBMISSIONS_PER_10MIN: '1000', REPORT_POW_BITS: '0' });
  });
  afterAll(() => ctx.close());

  const reportIdOf = (receipt: string) => createReceiptHasher(ctx.config.jwt.secret)(digitsOf(receipt));

  it('links an exact serial to its unit, registration and model, and registrations of that model in the country', async () => {
    const model = await makeModel(ctx, { sku: unique('LNK').toUpperCase(), name: 'Linked Camera', publicName: 'Linked Cam' });
    const { registration, unit } = await makeRegistration(ctx, { model, country: 'KE' });
    const neighbour = await makeRegistration(ctx, { model, country: 'KE' });
    const abroad = await makeRegistration(ctx, { model, country: 'TZ' });

    const result = await ctx.services.linker.linkReport({ serials: [` ${unit.serial.toLowerCase()} `], modelText: '', country: 'KE' });
    const byKind = (kind: string) => result.links.filter((l) => l.kind === kind).map((l) => [l.targetId, l.confidence]);
    expect(byKind('unit')).toEqual([[unit._id, 'high']]);
    expect(byKind('model')).toEqual([[model._id, 'medium']]);
    expect(byKind('registration')).toEqual(expect.arrayContaining([[registration._id, 'high'], [neighbour.registration._id, 'low']]));
    expect(byKind('registration').map(([id]) => id)).not.toContain(abroad.registration._id);
    expect(byKind('country')).toEqual([['KE', 'high']]);
    expect(result).toMatchObject({ unitId: unit._id, modelId: model._id });
  });

  it('links by model name when no serial is known, and bounds the registrations it proposes', async () => {
    const model = await makeModel(ctx, { sku: unique('MNY').toUpperCase(), name: 'Crowd Scanner', publicName: 'CrowdScan Pro' });
    for (let i = 0; i < MAX_REGISTRATION_LINKS + 2; i++) await makeRegistration(ctx, { model, country: 'UG' });
    const result = await ctx.services.linker.linkReport({ serials: [], modelText: 'crowdscan pro', country: 'UG' });
    expect(result.links.filter((l) => l.kind === 'model')).toEqual([expect.objectContaining({ targetId: model._id, confidence: 'high' })]);
    expect(result.links.filter((l) => l.kind === 'registration')).toHaveLength(MAX_REGISTRATION_LINKS);
    expect(result).toMatchObject({ unitId: null, modelId: model._id });
  });

  it('links registrations written before the lists by model and country once npm run migrate built them', async () => {
    const model = await makeModel(ctx, { sku: unique('OLD').toUpperCase(), name: 'Legacy Radio' });
    const { unit } = await makeUnit(ctx, { model });
    // Written the old way: straight into the collection, with no list by model and country.
    await Registration.collection.insertOne({ _id: `reg_${unique('old')}` as never, unitId: unit._id, modelId: model._id, serial: unit.serial, country: 'ZM', status: 'active', createdAt: ctx.clock.now() });
    const linked = async () => (await ctx.services.linker.linkReport({ serials: [], modelText: model._id, country: 'ZM' })).links.filter((l) => l.kind === 'registration').length;
    expect(await linked()).toBe(0);

    await RegistrationPlace.deleteMany({});
    await mongoose.connection.collection('migrations').deleteMany({});
    await runMigrations(ctx.db.engine);
    expect(await linked()).toBe(1);
  });

  it('proposes only the country for a serial the catalogue does not know', async () => {
    const result = await ctx.services.linker.linkReport({ serials: ['NO-SUCH-SERIAL-1'], modelText: '', country: 'SD' });
    expect(result.links).toEqual([expect.objectContaining({ kind: 'country', targetId: 'SD' })]);
    expect(result).toEqual(expect.objectContaining({ unitId: null, modelId: null }));
  });

  it('attaches a second report on the same unit to the open case of the first, and stores the links and case on each', async () => {
    const { unit, model } = await makeUnit(ctx);
    const first = await fileReport(ctx, { serials: [unit.serial], modelText: model._id });
    const second = await fileReport(ctx, { serials: [unit.serial], country: 'ET' });
    const other = await fileReport(ctx, { serials: ['UNKNOWN-77'] });
    expect([first.status, second.status, other.status]).toEqual([201, 201, 201]);

    const [a, b, c] = await Promise.all([first, second, other].map(async (r) => (await Report.findById(await reportIdOf(r.body.receipt)).lean())!));
    expect(a!.caseId).toBeTruthy();
    expect(b!.caseId).toBe(a!.caseId);
    expect(c!.caseId).not.toBe(a!.caseId);
    expect(a!.links).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'unit', targetId: unit._id, confidence: 'high', confirmed: null })]));
    const kase = (await Case.findById(a!.caseId).lean())!;
    expect(kase.sources.map((s) => s.id)).toEqual([a!._id, b!._id]);
    expect(kase.unitIds).toEqual([unit._id]);
    expect(kase.countries).toEqual(expect.arrayContaining(['KE', 'ET']));
  });

  it('never shows the reporter what the report was linked to', async () => {
    const { unit } = await makeRegistration(ctx, { ownerOrganisation: 'Hidden Owner Ltd' });
    const filed = await fileReport(ctx, { serials: [unit.serial] });
    const view = await request(ctx.app).post('/api/v1/follow-up').send({ receipt: filed.body.receipt });
    expect(view.status).toBe(200);
    expect(JSON.stringify(view.body)).not.toMatch(new RegExp(`${unit._id}|Hidden Owner|reg_|links|caseId`));
  });
});
