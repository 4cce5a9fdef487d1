import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { ImportJob, ProductModel, SerialIndex, Unit } from '../models/catalogue';
import { UnitTally } from '../models/insight';
import { Registration } from '../models/registrations';
import { createTestContext, type TestContext } from './helpers/context';
import { DEFAULT_TERMS, makeModel, makeRegistration, makeUnit } from './helpers/catalogue';
import { apiUser, csrfFrom, signedInAgent, unique } from './helpers/factories';

type Agent = Awaited<ReturnType<typeof signedInAgent>>['agent'];

/** Polls the import until it stops running (imports run in the background of the request). */
async function finishedImport(ctx: TestContext, auth: Record<string, string>, id: string) {
  for (let i = 0; i < 1200; i++) {
    const res = await request(ctx.app).get(`/api/v1/imports/${id}`).set(auth);
    if (res.body.import.status !== 'running') return res.body.import;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`import ${id} still running`);
}

async function uploadCsvPage(agent: Agent, csv: string, name = 'units.csv') {
  const token = csrfFrom((await agent.get('/admin/catalogue/import')).text);
  return agent.post('/admin/catalogue/import').field('_csrf', token).attach('file', Buffer.from(csv), name);
}

describe('catalogue', () => {
  let ctx: TestContext;
  let admin: Awaited<ReturnType<typeof apiUser>>;
  let investigator: Awaited<ReturnType<typeof apiUser>>;
  let customer: Awaited<ReturnType<typeof apiUser>>;
  beforeAll(async () => {
    ctx = await createTestContext({ RATE_LIMIT_PUBLIC_POST_PER_MIN: '10000' });
    [admin, investigator, customer] = await Promise.all([apiUser(ctx, 'admin'), apiUser(ctx, 'investigator'), apiUser(ctx, 'customer')]);
  });
  afterAll(() => ctx.close());

  describe('product models', () => {
    it('are created by an admin from the page, with version 1 of their terms', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const sku = unique('dr').toLowerCase();
      const res = await agent.form('/admin/catalogue/models', {
        sku, name: 'Survey drone', category: 'drones', riskLevel: 'high', capabilities: ['uav', 'surveillance-capable'],
        intendedUses: 'crop survey\r\ninfrastructure inspection\r\n', endUseTerms: 'Not for use against people.',
      }, '/admin/catalogue');
      expect(res.status).toBe(303);
      expect(res.headers.location).toBe(`/admin/catalogue/models/${sku.toUpperCase()}`);
      const stored = await ProductModel.findById(sku.toUpperCase()).lean();
      expect(stored).toMatchObject({ sku, name: 'Survey drone', riskLevel: 'high', capabilities: ['uav', 'surveillance-capable'], intendedUses: ['crop survey', 'infrastructure inspection'], publicName: 'Survey drone', unitCount: 0 });
      expect(stored!.endUseTerms).toEqual([{ version: 1, text: 'Not for use against people.', publishedAt: ctx.clock.now() }]);
      const page = await agent.get(res.headers.location!);
      expect(page.status).toBe(200);
      expect(page.text).toContain('Not for use against people.');
      const list = await agent.get('/admin/catalogue');
      expect(list.status).toBe(200);
      expect(list.text).toContain(`/admin/catalogue/models/${sku.toUpperCase()}`);
    });

    it('shows the form again naming each bad field, keeping what was typed, and saves nothing', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const before = await ProductModel.countDocuments();
      const res = await agent.form('/admin/catalogue/models', { sku: 'bad:sku', name: 'Kept name', category: '', riskLevel: 'extreme', capabilities: 'mind-control' }, '/admin/catalogue');
      expect(res.status).toBe(400);
      expect(res.text).toContain('value="Kept name"');
      expect(res.text).toContain('Category is required.');
      expect(res.text).toContain('Choose a risk level: low, elevated or high.');
      expect(res.text).toContain('Capabilities are among');
      expect(await ProductModel.countDocuments()).toBe(before);

      const badSku = await request(ctx.app).post('/api/v1/models').set(admin.auth).send({ sku: 'bad:sku', name: 'X', category: 'c', riskLevel: 'low' });
      expect(badSku.status).toBe(400);
      expect(badSku.body.error.fields.sku).toMatch(/Not a valid SKU/);
      expect(await ProductModel.countDocuments()).toBe(before);
    });

    it('refuses a second model with the same SKU, however it is typed', async () => {
      const model = await makeModel(ctx);
      const res = await request(ctx.app).post('/api/v1/models').set(admin.auth).send({ sku: ` ${model._id.toLowerCase()} `, name: 'Twin', category: 'c', riskLevel: 'low' });
      expect(res.status).toBe(409);
      expect(res.body.error.fields).toEqual({ sku: 'A product model with this SKU already exists.' });
      expect((await ProductModel.findById(model._id).lean())!.name).toBe('Test router');
    });

    it('lets investigators read but only admins write, and keeps customers out', async () => {
      const model = await makeModel(ctx);
      expect((await request(ctx.app).get('/api/v1/models')).status).toBe(401);
      expect((await request(ctx.app).get('/api/v1/models').set(customer.auth)).status).toBe(403);
      const read = await request(ctx.app).get(`/api/v1/models/${model._id.toLowerCase()}`).set(investigator.auth);
      expect(read.status).toBe(200);
      expect(read.body.model).toMatchObject({ sku: model._id, riskLevel: 'low', unitCount: 0 });
      const write = await request(ctx.app).patch(`/api/v1/models/${model._id}`).set(investigator.auth).send({ name: 'Renamed' });
      expect(write.status).toBe(403);
      const patched = await request(ctx.app).patch(`/api/v1/models/${model._id}`).set(admin.auth).send({ name: 'Renamed', intendedUses: ['one'] });
      expect(patched.status).toBe(200);
      expect(await ProductModel.findById(model._id).lean()).toMatchObject({ name: 'Renamed', intendedUses: ['one'] });
      const smuggled = await request(ctx.app).patch(`/api/v1/models/${model._id}`).set(admin.auth).send({ unitCount: 99 });
      expect(smuggled.status).toBe(400);
      expect(smuggled.body.error.fields.unitCount).toBeDefined();
      expect((await request(ctx.app).get('/admin/catalogue').set('Cookie', '')).status).toBe(303);
    });

    it('publishes a new terms version without changing what earlier registrations accepted', async () => {
      const { registration, model } = await makeRegistration(ctx);
      expect(registration.termsAccepted!.version).toBe(1);
      const res = await request(ctx.app).post(`/api/v1/models/${model._id}/terms`).set(admin.auth).send({ text: 'Version two: no resale to security services.' });
      expect(res.status).toBe(201);
      expect(res.body.terms).toMatchObject({ version: 2, text: 'Version two: no resale to security services.' });
      const stored = await ProductModel.findById(model._id).lean();
      expect(stored!.endUseTerms.map((t) => [t.version, t.text])).toEqual([[1, DEFAULT_TERMS], [2, 'Version two: no resale to security services.']]);
      expect((await Registration.findById(registration._id).lean())!.termsAccepted!.version).toBe(1);
      expect(await AuditEntry.countDocuments({ action: 'model.terms-published', subjectId: model._id })).toBe(1);
    });

    it('gives the public model picker only SKUs and public names', async () => {
      await makeModel(ctx, { name: 'Internal codename Falcon', publicName: 'Falcon Mesh Camera', riskLevel: 'high' });
      const found = await ctx.services.catalogue.searchPublicModels('falcon mesh');
      expect(found).toHaveLength(1);
      expect(Object.keys(found[0]!).sort()).toEqual(['publicName', 'sku']);
      expect(found[0]!.publicName).toBe('Falcon Mesh Camera');
      expect(await ctx.services.catalogue.searchPublicModels('codename')).toEqual([]);
    });
  });

  describe('units', () => {
    it('normalise the serial, key the unit SKU:SERIAL and keep the serial index and unit count in step', async () => {
      const model = await makeModel(ctx);
      const res = await request(ctx.app).post('/api/v1/units').set(admin.auth).send({
        sku: model._id.toLowerCase(), serial: '  ab 12-x ', manufacturedAt: '2025-11-30', channelPartner: 'Savannah Distribution', shipToCountry: 'ke', soldAt: '2025-12-10',
      });
      expect(res.status).toBe(201);
      const id = `${model._id}:AB12-X`;
      expect(res.body.unit).toMatchObject({ id, serial: 'AB12-X', status: 'unregistered', firstSale: { channelPartner: 'Savannah Distribution', shipToCountry: 'KE' } });
      const unit = await Unit.findById(id).lean();
      expect(unit!.manufacturedAt!.toISOString()).toBe('2025-11-30T00:00:00.000Z');
      expect(unit!.countries).toEqual([{ country: 'KE', source: 'first-sale', firstSeen: new Date('2025-12-10T00:00:00Z'), lastSeen: new Date('2025-12-10T00:00:00Z') }]);
      expect(unit!.current!.country).toBeNull(); // a ship-to country is history, not a registered location
      expect((await SerialIndex.findById('AB12-X').lean())!.unitIds).toContain(id);
      expect((await ProductModel.findById(model._id).lean())!.unitCount).toBe(1);

      const twin = await request(ctx.app).post('/api/v1/units').set(admin.auth).send({ sku: model._id, serial: 'ab12-x' });
      expect(twin.status).toBe(409);
      expect(twin.body.error.fields).toEqual({ serial: 'This model already has a unit with this serial number.' });
      expect((await ProductModel.findById(model._id).lean())!.unitCount).toBe(1);
    });

    it('keeps the unit count exact when units of one model are added at the same time', async () => {
      const model = await makeModel(ctx);
      await Promise.all(Array.from({ length: 10 }, (_, i) => makeUnit(ctx, { model, serial: `PAR-${i}` })));
      expect((await ProductModel.findById(model._id).lean())!.unitCount).toBe(10);
    });

    it('refuses an unknown SKU, a bad serial, a bad country and a bad date, naming each field', async () => {
      const model = await makeModel(ctx);
      const before = await Unit.countDocuments();
      const unknown = await request(ctx.app).post('/api/v1/units').set(admin.auth).send({ sku: 'NO-SUCH-MODEL', serial: 'S1' });
      expect(unknown.status).toBe(400);
      expect(unknown.body.error.fields).toEqual({ sku: 'No product model with this SKU: create the model first.' });
      const badSerial = await request(ctx.app).post('/api/v1/units').set(admin.auth).send({ sku: model._id, serial: 'a/b' });
      expect(badSerial.body.error.fields.serial).toMatch(/Not a valid serial/);
      const bad = await request(ctx.app).post('/api/v1/units').set(admin.auth).send({ sku: model._id, serial: 'S2', shipToCountry: 'XX', manufacturedAt: '2025-02-30' });
      expect(bad.status).toBe(400);
      expect(Object.keys(bad.body.error.fields).sort()).toEqual(['manufacturedAt', 'shipToCountry']);
      expect(await Unit.countDocuments()).toBe(before);
    });

    it('are found by bare serial across models, and edited by an admin', async () => {
      const serial = unique('SHARED').toUpperCase();
      const { unit: a } = await makeUnit(ctx, { serial });
      const { unit: b } = await makeUnit(ctx, { serial });
      const found = await request(ctx.app).get(`/api/v1/units?serial=${serial.toLowerCase()}`).set(investigator.auth);
      expect(found.status).toBe(200);
      expect(found.body.items.map((u: { id: string }) => u.id).sort()).toEqual([a._id, b._id].sort());
      expect((await request(ctx.app).get('/api/v1/units').set(investigator.auth)).body.error.fields.serial).toBeDefined();

      const patched = await request(ctx.app).patch(`/api/v1/units/${a._id}`).set(admin.auth).send({ channelPartner: 'New partner', shipToCountry: 'TZ' });
      expect(patched.status).toBe(200);
      expect((await Unit.findById(a._id).lean())!.firstSale).toMatchObject({ channelPartner: 'New partner', shipToCountry: 'TZ' });
      expect((await request(ctx.app).patch(`/api/v1/units/${a._id}`).set(admin.auth).send({ serial: 'OTHER' })).status).toBe(400);
    });

    it('are added and edited from the model page', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const model = await makeModel(ctx);
      const path = `/admin/catalogue/models/${model._id}`;
      const bad = await agent.form(`${path}/units`, { serial: 'P-1', shipToCountry: 'QQ', soldAt: '' }, path);
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('value="P-1"');
      expect(bad.text).toContain('Choose a country from the list');
      const ok = await agent.form(`${path}/units`, { serial: 'p-1', shipToCountry: 'UG', soldAt: '2026-01-03', manufacturedAt: '' }, path);
      expect(ok.status).toBe(303);
      const listed = await agent.get(path);
      expect(listed.text).toContain('P-1');
      const edit = await agent.form(`/admin/catalogue/units/${model._id}:P-1`, { channelPartner: 'Kampala Tech', shipToCountry: 'UG', soldAt: '2026-01-04', manufacturedAt: '' });
      expect(edit.status).toBe(303);
      expect((await Unit.findById(`${model._id}:P-1`).lean())!.firstSale).toMatchObject({ channelPartner: 'Kampala Tech', soldAt: new Date('2026-01-04T00:00:00Z') });
    });
  });

  describe('CSV import', () => {
    it('imports good rows and refuses each bad row whole, with its line number and column', async () => {
      const model = await makeModel(ctx);
      const sku = model._id;
      const existing = (await makeUnit(ctx, { model })).unit;
      const csv = [
        'SKU,Serial,Manufactured_At,Channel_Partner,Ship_To_Country,Sold_At',
        `${sku},ok-1,2025-01-02,Partner A,KE,2025-02-01`, // line 2
        `${sku.toLowerCase()}, ok-2 ,,,,`, // 3
        `bad:sku,x1,,,,`, // 4 bad SKU
        `UNKNOWN-MODEL-1,x2,,,,`, // 5 unknown model
        `${sku},x3,2025-13-01,,,`, // 6 bad date
        `${sku},x4,,,ZZ,`, // 7 bad country
        `${sku},OK-1,,,,`, // 8 duplicate within the file
        `${sku},x5,,,KE`, // 9 wrong column count
        `${sku},${existing.serial},,,,`, // 10 already in the catalogue: skipped
        '',
      ].join('\n');
      const { agent } = await signedInAgent(ctx, 'admin');
      const res = await uploadCsvPage(agent, csv);
      expect(res.status).toBe(303);
      const jobId = res.headers.location!.split('/').pop()!;
      const job = await finishedImport(ctx, admin.auth, jobId);
      expect(job).toMatchObject({ status: 'done', counts: { rows: 9, imported: 2, skipped: 1, rejected: 6 } });
      expect(job.rowErrors.map((e: { line: number; field: string }) => [e.line, e.field])).toEqual([
        [4, 'sku'], [5, 'sku'], [6, 'manufactured_at'], [7, 'ship_to_country'], [8, 'serial'], [9, ''],
      ]);
      expect(job.rowErrors[1].message).toContain('unknown model');
      expect(job.rowErrors[4].message).toContain('duplicate within the file');

      expect(await Unit.findById(`${sku}:OK-1`).lean()).toMatchObject({ manufacturedAt: new Date('2025-01-02T00:00:00Z'), firstSale: { channelPartner: 'Partner A', shipToCountry: 'KE' }, status: 'unregistered', controls: { updates: 'allowed', warranty: 'valid' } });
      expect(await Unit.findById(`${sku}:OK-2`).lean()).not.toBeNull();
      for (const s of ['X3', 'X4', 'X5']) expect(await Unit.findById(`${sku}:${s}`).lean()).toBeNull();
      expect((await ProductModel.findById(sku).lean())!.unitCount).toBe(3);
      expect((await SerialIndex.findById('OK-2').lean())!.unitIds).toEqual([`${sku}:OK-2`]);

      const page = await agent.get(`/admin/catalogue/import/${jobId}`);
      expect(page.text).toContain('Finished.');
      expect(page.text).not.toContain('http-equiv="refresh"');
      expect(page.text).toContain('duplicate within the file');
    });

    it('is idempotent: importing the same file again skips every unit and changes no count', async () => {
      const model = await makeModel(ctx);
      const csv = `sku,serial\n${model._id},R1\n${model._id},R2\n${model._id},R3\n`;
      const first = await request(ctx.app).post('/api/v1/imports').set(admin.auth).attach('file', Buffer.from(csv), 'r.csv');
      expect(first.status).toBe(202);
      expect(first.headers.location).toBe(`/api/v1/imports/${first.body.import.id}`);
      expect((await finishedImport(ctx, admin.auth, first.body.import.id)).counts).toEqual({ rows: 3, imported: 3, skipped: 0, rejected: 0 });
      const again = await request(ctx.app).post('/api/v1/imports').set(admin.auth).attach('file', Buffer.from(csv), 'r.csv');
      expect((await finishedImport(ctx, admin.auth, again.body.import.id)).counts).toEqual({ rows: 3, imported: 0, skipped: 3, rejected: 0 });
      expect((await ProductModel.findById(model._id).lean())!.unitCount).toBe(3);
      expect((await SerialIndex.findById('R1').lean())!.unitIds).toEqual([`${model._id}:R1`]);
    });

    it('stops with a clear message when the header lacks the required columns, importing nothing', async () => {
      const before = await Unit.countDocuments();
      const res = await request(ctx.app).post('/api/v1/imports').set(admin.auth).attach('file', Buffer.from('model_number,serial_no\nA,B\n'), 'x.csv');
      const job = await finishedImport(ctx, admin.auth, res.body.import.id);
      expect(job.status).toBe('failed');
      expect(job.failure).toContain('missing: sku, serial');
      expect(await Unit.countDocuments()).toBe(before);
    });

    it('asks for a file when none is sent, and is for admins only', async () => {
      const none = await request(ctx.app).post('/api/v1/imports').set(admin.auth).field('x', 'y');
      expect(none.status).toBe(400);
      expect(none.body.error.fields.file).toContain('Choose a CSV file');
      const denied = await request(ctx.app).post('/api/v1/imports').set(investigator.auth).attach('file', Buffer.from('sku,serial\n'), 'x.csv');
      expect(denied.status).toBe(403);
      const { agent } = await signedInAgent(ctx, 'admin');
      const page = await uploadCsvPage(agent, '').then(() => agent.get('/admin/catalogue/import'));
      expect(page.status).toBe(200);
    });

    it('refreshes the progress page while an import runs', async () => {
      const job = await ImportJob.create({ _id: 'imp_running_test', fileName: 'big.csv', status: 'running', startedAt: ctx.clock.now(), counts: { rows: 4000, imported: 3990 } });
      const { agent } = await signedInAgent(ctx, 'admin');
      const page = await agent.get(`/admin/catalogue/import/${job._id}`);
      expect(page.status).toBe(200);
      expect(page.text).toContain('<meta http-equiv="refresh" content="2">');
      expect(page.headers.refresh).toBe('2');
      expect(page.text).toContain('3990');
    });

    it('streams a 20,000-row file in batches and imports every row', async () => {
      const model = await makeModel(ctx);
      const lines = ['sku,serial,manufactured_at,channel_partner,ship_to_country,sold_at'];
      for (let i = 0; i < 20_000; i++) lines.push(`${model._id},BULK-${String(i).padStart(6, '0')},2025-06-01,Partner,${i % 2 ? 'KE' : 'NG'},2025-07-01`);
      const started = Date.now();
      const res = await request(ctx.app).post('/api/v1/imports').set(admin.auth).attach('file', Buffer.from(lines.join('\n')), 'bulk.csv');
      expect(res.status).toBe(202);
      const job = await finishedImport(ctx, admin.auth, res.body.import.id);
      process.stdout.write(`20,000-row import took ${Date.now() - started} ms\n`);
      expect(job.counts).toEqual({ rows: 20_000, imported: 20_000, skipped: 0, rejected: 0 });
      expect((await ProductModel.findById(model._id).lean())!.unitCount).toBe(20_000);
      expect(await Unit.findById(`${model._id}:BULK-019999`).lean()).toMatchObject({ firstSale: { shipToCountry: 'KE' } });
      expect((await SerialIndex.findById('BULK-000000').lean())!.unitIds).toEqual([`${model._id}:BULK-000000`]);
      const units = await request(ctx.app).get(`/api/v1/models/${model._id}/units?perPage=5&page=2`).set(investigator.auth);
      expect(units.body.total).toBe(20_000);
      expect(units.body.items.map((u: { serial: string }) => u.serial)).toEqual(['BULK-000005', 'BULK-000006', 'BULK-000007', 'BULK-000008', 'BULK-000009']);
    }, 120_000);

    it('removes 1,200 imported units by id in chunks, keeping the serial lookup and the model count in step, and never a unit with a history', async () => {
      const model = await makeModel(ctx);
      const other = await makeModel(ctx);
      const lines = ['sku,serial'];
      for (let i = 0; i < 1_200; i++) lines.push(`${model._id},GONE-${String(i).padStart(5, '0')}`);
      const res = await request(ctx.app).post('/api/v1/imports').set(admin.auth).attach('file', Buffer.from(lines.join('\n')), 'wrong.csv');
      expect((await finishedImport(ctx, admin.auth, res.body.import.id)).counts.imported).toBe(1_200);
      // The same serial on another model, and a registered unit of this import.
      const shared = await makeUnit(ctx, { model: other, serial: 'GONE-00000' });
      const { unit: registered } = await makeRegistration(ctx, { unit: (await Unit.findById(`${model._id}:GONE-00001`).lean())! });

      const ids = Array.from({ length: 1_200 }, (_, i) => `${model._id}:GONE-${String(i).padStart(5, '0')}`);
      const counts = await ctx.services.catalogue.removeUnits([...ids, `${model._id}:NEVER-THERE`], { userId: String(admin.user._id) });

      expect(counts).toEqual({ removed: 1_199, kept: 1, missing: 1 });
      expect(await Unit.find({ modelId: model._id }, { _id: 1 }).lean()).toEqual([{ _id: registered._id }]);
      expect((await ProductModel.findById(model._id).lean())!.unitCount).toBe(1);
      expect(await UnitTally.findById(model._id).lean()).toMatchObject({ units: 1, registered: 1 });
      expect(await SerialIndex.findById('GONE-00000').lean()).toEqual({ _id: 'GONE-00000', unitIds: [shared.unit._id] });
      expect((await SerialIndex.findById('GONE-00001').lean())!.unitIds).toEqual([registered._id]);
      expect(await SerialIndex.findById('GONE-01199').lean()).toBeNull();
      expect(await AuditEntry.findOne({ action: 'units.removed' }).lean()).toMatchObject({ actorId: String(admin.user._id), detail: counts });
    }, 120_000);
  });
});
