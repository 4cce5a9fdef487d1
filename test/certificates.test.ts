import { PDFDocument } from 'pdf-lib';
import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { EndUseCertificate } from '../models/certificates';
import { Flag } from '../models/flags';
import { createTestContext, type TestContext } from './helpers/context';
import { makeModel, makeRegistration } from './helpers/catalogue';
import { apiUser } from './helpers/factories';
import { allocatedUnits, makePartner, partnerKey, saleOf } from './helpers/partners';

const DAY = 86_400_000;

async function pdf(): Promise<Buffer> {
  const doc = await PDFDocument.create();
  doc.setAuthor('Ministry clerk');
  doc.addPage([300, 200]);
  return Buffer.from(await doc.save());
}

describe('end-use certificates', () => {
  let ctx: TestContext;
  let staff: Awaited<ReturnType<typeof apiUser>>;
  beforeAll(async () => {
    // Certificates required for high-risk models and for military end users.
    ctx = await createTestContext({ CERTIFICATE_REQUIRED_RISK_LEVELS: 'high', CERTIFICATE_REQUIRED_END_USER_TYPES: 'military' });
    staff = await apiUser(ctx, 'investigator');
  });
  afterAll(() => ctx.close());

  const upload = async (fields: Record<string, string>, file: Buffer | null = null) => {
    const req = request(ctx.app).post('/api/v1/certificates').set(staff.auth).field({ issuingAuthority: 'Ministry of Defence of Kenya', number: `EUC-${Math.random().toString(36).slice(2, 8)}`, endUser: 'Kenya Wildlife Service', statedEndUse: 'Anti-poaching patrol communications', validFrom: '2026-01-01', validUntil: '2026-03-01', ...fields });
    return file ? req.attach('certificate', file, 'euc.pdf') : req;
  };

  it('raises certificate-missing when a required certificate is not there (risk level or end-user type), and not otherwise', async () => {
    const high = await makeRegistration(ctx, { riskLevel: 'high' });
    expect(await Flag.countDocuments({ rule: 'certificate-missing', unitId: high.unit._id })).toBe(1);
    expect((await Flag.findOne({ rule: 'certificate-missing', unitId: high.unit._id }).lean())!.evidence).toMatchObject({ riskLevel: 'high', requiredRiskLevels: ['high'] });
    const military = await makeRegistration(ctx, { riskLevel: 'low', endUserType: 'military', intendedUse: 'office networking' });
    expect(await Flag.countDocuments({ rule: 'certificate-missing', unitId: military.unit._id })).toBe(1);
    const plain = await makeRegistration(ctx, { riskLevel: 'low' });
    expect(await Flag.countDocuments({ rule: 'certificate-missing', unitId: plain.unit._id })).toBe(0);
  });

  it('stores a PDF certificate for a registration, cleaned like evidence, with its fields', async () => {
    const { registration, unit, model } = await makeRegistration(ctx, { riskLevel: 'low' });
    const res = await upload({ registrationId: registration._id, items: `${model._id}: 2` }, await pdf());
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ flags: [], certificate: { endUser: 'Kenya Wildlife Service', validUntil: '2026-03-01', items: [{ modelId: model._id, quantity: 2 }], attachments: [{ kind: 'registration', id: registration._id, unitId: unit._id, modelId: model._id }] } });
    const stored = await EndUseCertificate.findById(res.body.certificate.id).lean();
    expect(stored!.file).toMatchObject({ mediaType: 'application/pdf', originalName: 'euc.pdf' });
    expect(await AuditEntry.countDocuments({ action: 'certificate.uploaded', subjectId: res.body.certificate.id })).toBe(1);
    const timeline = await request(ctx.app).get(`/api/v1/units/${encodeURIComponent(unit._id)}/timeline`).set(staff.auth);
    expect(timeline.body.entries).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'certificate', title: expect.stringContaining(stored!.number) })]));
  });

  it('names every bad field and refuses a file that is not a PDF', async () => {
    const { registration } = await makeRegistration(ctx, { riskLevel: 'low' });
    const bad = await upload({ registrationId: registration._id, items: 'CAM-200 five', validUntil: 'soon', number: '' });
    expect(bad.status).toBe(400);
    expect(Object.keys(bad.body.error.fields).sort()).toEqual(['items', 'number', 'validUntil']);
    const notPdf = await upload({ registrationId: registration._id, items: 'X: 1' }, Buffer.from('plain text, not a PDF'));
    expect(notPdf.status).toBe(400);
    expect(notPdf.body.error.fields).toHaveProperty('certificate');
    const neither = await upload({ items: 'X: 1' }, await pdf());
    expect(neither.body.error.fields).toEqual({ registrationId: 'Give the registration, the transfer or the partner sale the certificate covers (one of them).' });
    expect(await EndUseCertificate.countDocuments({ 'attachments.id': registration._id })).toBe(0);
  });

  it('raises certificate-over-quantity when attached to more units of a model than it covers', async () => {
    const model = await makeModel(ctx);
    const first = await makeRegistration(ctx, { model });
    const second = await makeRegistration(ctx, { model });
    const res = await upload({ registrationId: first.registration._id, items: `${model._id}: 1` }, await pdf());
    const attach = await request(ctx.app).post(`/api/v1/certificates/${res.body.certificate.id}/attachments`).set(staff.auth).send({ registrationId: second.registration._id });
    expect(attach.status).toBe(200);
    expect(attach.body.flags).toEqual(['certificate-over-quantity']);
    expect(await Flag.findOne({ rule: 'certificate-over-quantity', unitId: second.unit._id }).lean()).toMatchObject({ evidence: { covered: 1, attached: 2, modelId: model._id } });
    // Attaching again changes nothing and raises nothing new.
    await request(ctx.app).post(`/api/v1/certificates/${res.body.certificate.id}/attachments`).set(staff.auth).send({ registrationId: second.registration._id });
    expect(await Flag.countDocuments({ rule: 'certificate-over-quantity', unitId: second.unit._id })).toBe(1);
  });

  it('attaches to partner sales as to registrations: an unknown sale is named, and the over-quantity rule applies', async () => {
    const partner = await makePartner(ctx);
    const { model, units } = await allocatedUnits(ctx, partner._id, 2);
    const sold = await request(ctx.app).post('/api/v1/sell-through').set(await partnerKey(ctx, partner._id)).send({ sales: units.map((u) => saleOf(u, { customerName: 'Kenya Wildlife Service' })) });
    expect(sold.status).toBe(200);
    await ctx.services.partners.settleSales();
    const listed = await request(ctx.app).get(`/api/v1/partners/${partner._id}/units`).set(staff.auth);
    const saleIds = units.map((u) => listed.body.items.find((i: { unitId: string }) => i.unitId === u._id).sales[0].id as string);

    const unknown = await upload({ saleId: `${units[0]!._id}|2026-03-02|nobody`, items: `${model._id}: 1` }, await pdf());
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.fields).toHaveProperty('saleId');
    const both = await upload({ saleId: saleIds[0]!, registrationId: 'reg_x', items: `${model._id}: 1` }, await pdf());
    expect(both.status).toBe(400);

    const res = await upload({ saleId: saleIds[0]!, items: `${model._id}: 1` }, await pdf());
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ flags: [], certificate: { attachments: [{ kind: 'sale', id: saleIds[0], unitId: units[0]!._id, modelId: model._id, country: 'KE' }] } });
    const attach = await request(ctx.app).post(`/api/v1/certificates/${res.body.certificate.id}/attachments`).set(staff.auth).send({ saleId: saleIds[1] });
    expect(attach.status).toBe(200);
    expect(attach.body.flags).toEqual(['certificate-over-quantity']);
    expect(await Flag.findOne({ rule: 'certificate-over-quantity', unitId: units[1]!._id }).lean()).toMatchObject({ source: { kind: 'sale', id: saleIds[1] }, evidence: { covered: 1, attached: 2 } });
    expect(await EndUseCertificate.countDocuments({ 'attachments.id': { $in: saleIds } })).toBe(1);
  });

  it('lists certificates expiring within 30 days and, once the clock passes their validity, raises certificate-expired once per unit', async () => {
    const { registration, unit, model } = await makeRegistration(ctx, { riskLevel: 'low' });
    const now = ctx.clock.now().getTime();
    const validUntil = new Date(now + 20 * DAY).toISOString().slice(0, 10);
    const res = await upload({ registrationId: registration._id, items: `${model._id}: 1`, validFrom: '2025-06-01', validUntil }, await pdf());
    const expiring = await request(ctx.app).get('/api/v1/certificates?expiring=1').set(staff.auth);
    expect(expiring.body.items.map((c: { id: string }) => c.id)).toContain(res.body.certificate.id);

    await ctx.services.certificates.sweepExpired();
    expect(await Flag.countDocuments({ rule: 'certificate-expired', unitId: unit._id })).toBe(0);

    ctx.clock.advance(21 * DAY);
    await ctx.services.certificates.sweepExpired();
    const flag = await Flag.findOne({ rule: 'certificate-expired', unitId: unit._id }).lean();
    expect(flag).toMatchObject({ source: { kind: 'registration', id: registration._id }, evidence: { certificateId: res.body.certificate.id, validUntil } });
    expect(await EndUseCertificate.findById(res.body.certificate.id).lean()).toMatchObject({ expiryFlaggedAt: expect.any(Date) });
    await ctx.services.certificates.sweepExpired();
    expect(await Flag.countDocuments({ rule: 'certificate-expired', unitId: unit._id })).toBe(1);
    // A session from before the clock moved has expired: sign in again.
    const after = await request(ctx.app).get('/api/v1/certificates?expiring=1').set((await apiUser(ctx, 'investigator')).auth);
    expect(after.body.items.map((c: { id: string }) => c.id)).not.toContain(res.body.certificate.id);
  });
});
