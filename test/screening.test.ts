import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { Case } from '../models/cases';
import { Flag } from '../models/flags';
import { Registration, Transfer } from '../models/registrations';
import { Unit } from '../models/catalogue';
import { ScreeningHit } from '../models/screening';
import { createTestContext, type TestContext } from './helpers/context';
import { makeRegistration, makeUnit, registrationInput } from './helpers/catalogue';
import { apiUser, signedInAgent } from './helpers/factories';
import { importSyntheticList, syntheticCsl } from './helpers/screening';

describe('restricted-party screening', () => {
  let ctx: TestContext;
  let admin: Awaited<ReturnType<typeof apiUser>>;
  let investigator: Awaited<ReturnType<typeof apiUser>>;

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await apiUser(ctx, 'admin');
    investigator = await apiUser(ctx, 'investigator');
    await importSyntheticList(ctx);
  });
  afterAll(() => ctx.close());

  const openHitsOf = async (registrationId: string) => (await request(ctx.app).get('/api/v1/screening/hits?perPage=200').set(investigator.auth)).body.items.filter((h: { subject: { id: string } }) => h.subject.id === registrationId);

  describe('screening at submission', () => {
    it('holds a registration by a listed party, with an explained hit in the queue, and leaves the unit unregistered', async () => {
      const { registration, unit } = await makeRegistration(ctx, { ownerOrganisation: 'ООО Ромашка', contactName: 'Olga Smirnova', country: 'RU' });
      expect(registration._id).toMatch(/^reg_/);
      expect(unit.status).toBe('unregistered');
      const hits = await openHitsOf(registration._id);
      expect(hits).toHaveLength(1);
      expect(hits[0]).toMatchObject({ status: 'open', held: true, party: { name: 'ООО Ромашка', country: 'RU' }, entity: { entityId: 'syn-c-003', listName: 'Synthetic sanctions' }, explanation: { entityName: expect.any(String), tokens: [{ party: 'romashka', entity: 'romashka', similarity: 1 }] } });
      expect(hits[0].score).toBeGreaterThanOrEqual(ctx.config.screening.threshold);
      expect(await AuditEntry.countDocuments({ action: 'registration.held', subjectId: registration._id })).toBe(1);
    });

    it('lets an unrelated party register at once', async () => {
      const { registration, unit } = await makeRegistration(ctx, { ownerOrganisation: 'Nairobi Clinic Ltd', contactName: 'Wanjiru Kamau' });
      expect(unit.status).toBe('registered');
      expect(await ScreeningHit.countDocuments({ 'subject.id': registration._id })).toBe(0);
    });

    it('confirming a hit raises the restricted-party red flag and opens a case', async () => {
      const { registration, unit } = await makeRegistration(ctx, { ownerOrganisation: 'Jon Smyth-Doe', contactName: 'Jon Smyth-Doe', country: 'GB' });
      const [hit] = await openHitsOf(registration._id);
      expect(hit.explanation.summary).toContain('smyth~smith');
      const res = await request(ctx.app).post(`/api/v1/screening/hits/${hit.id}/decision`).set(investigator.auth).send({ decision: 'true-match', reason: 'Same passport number on the proof of purchase.' });
      expect(res.status).toBe(200);
      expect(res.body.hit).toMatchObject({ status: 'true-match', caseId: expect.any(String), decision: { reason: 'Same passport number on the proof of purchase.' } });
      const flag = await Flag.findOne({ rule: 'restricted-party', unitId: unit._id }).lean();
      expect(flag).toMatchObject({ caseId: res.body.hit.caseId, source: { kind: 'registration', id: registration._id }, evidence: { entityId: 'syn-p-001' } });
      expect(await Case.findById(res.body.hit.caseId).lean()).toMatchObject({ unitIds: [unit._id] });
      expect(await AuditEntry.countDocuments({ action: 'screening.true-match', subjectId: hit.id })).toBe(1);
      // Still held: the case decides.
      expect((await Unit.findById(unit._id).lean())!.status).toBe('unregistered');
      const again = await request(ctx.app).post(`/api/v1/screening/hits/${hit.id}/decision`).set(investigator.auth).send({ decision: 'false-positive', reason: 'changed my mind' });
      expect(again.status).toBe(409);
    });

    it('a false positive releases the held registration and is not raised again for that party and entity', async () => {
      const { registration, unit } = await makeRegistration(ctx, { ownerOrganisation: 'Ivan Petrov', contactName: 'Maria Ivanova', country: 'RU' });
      const hits = await openHitsOf(registration._id);
      expect(hits.map((h: { entity: { entityId: string } }) => h.entity.entityId)).toEqual(['syn-p-002']);
      const res = await request(ctx.app).post(`/api/v1/screening/hits/${hits[0].id}/decision`).set(investigator.auth).send({ decision: 'false-positive', reason: 'A different Ivan Petrov: born 1991, a clinic in Kazan.' });
      expect(res.status).toBe(200);
      expect(await Unit.findById(unit._id).lean()).toMatchObject({ status: 'registered', registrationId: registration._id });
      expect(await AuditEntry.countDocuments({ action: 'registration.released', subjectId: registration._id })).toBe(1);

      // Re-screening after the next import does not raise it again...
      await importSyntheticList(ctx, { listId: 'synthetic-sanctions' });
      await ctx.services.screening.rescreen();
      expect(await ScreeningHit.countDocuments({ 'subject.id': registration._id })).toBe(1);
      // ...nor does the same party registering another unit.
      const { unit: other } = await makeRegistration(ctx, { ownerOrganisation: 'Ivan Petrov', contactName: 'Maria Ivanova', country: 'RU' });
      expect(other.status).toBe('registered');
      // A changed party (another country) is screened afresh.
      const { unit: moved } = await makeRegistration(ctx, { ownerOrganisation: 'Ivan Petrov', contactName: 'Maria Ivanova', country: 'BY' });
      expect(moved.status).toBe('unregistered');
    });

    it('holds a resale to a listed party for approval and refuses approval until the hit is reviewed', async () => {
      const { unit: made } = await makeUnit(ctx);
      const customer = await apiUser(ctx, 'customer');
      await ctx.services.registrations.register(registrationInput(made), { userId: String(customer.user._id) });
      const res = await request(ctx.app).post('/api/v1/transfers').set(customer.auth).send({ unitId: made._id, kind: 'resale', newOwnerOrganisation: 'Romashka Trading LLC', newOwnerEndUserType: 'commercial-company', country: 'RU', reason: 'Sold', effectiveDate: '2026-01-10' });
      expect(res.status).toBe(201);
      expect(res.body.transfer.status).toBe('pending');
      const approve = await request(ctx.app).post(`/api/v1/transfers/${res.body.transfer.id}/decision`).set(investigator.auth).send({ decision: 'approve', reason: 'ok' });
      expect(approve.status).toBe(409);
      expect(await Transfer.findById(res.body.transfer.id).lean()).toMatchObject({ status: 'pending' });
      expect(await ScreeningHit.countDocuments({ 'subject.kind': 'transfer', 'subject.id': res.body.transfer.id, status: 'open' })).toBe(1);
    });

    it('names the decision and reason when they are missing, and 404s an unknown hit', async () => {
      const { registration } = await makeRegistration(ctx, { ownerOrganisation: 'Muhammad Al Rashid', contactName: 'Muhammad Al Rashid', country: 'SY' });
      const [hit] = await openHitsOf(registration._id);
      const bad = await request(ctx.app).post(`/api/v1/screening/hits/${hit.id}/decision`).set(investigator.auth).send({ decision: 'maybe' });
      expect(bad.status).toBe(400);
      expect(Object.keys(bad.body.error.fields).sort()).toEqual(['decision', 'reason']);
      expect((await request(ctx.app).get('/api/v1/screening/hits/hit_nope').set(investigator.auth)).status).toBe(404);
      const { agent } = await signedInAgent(ctx, 'investigator');
      const page = await agent.form(`/screening/${hit.id}`, { decision: 'true-match', reason: '' });
      expect(page.status).toBe(400);
      expect(page.text).toContain('The reason is required.');
      expect(await ScreeningHit.findById(hit.id).lean()).toMatchObject({ status: 'open' });
    });
  });

  describe('re-screening', () => {
    it('screens stored parties against a new list in the background, raising only new hits, with progress', async () => {
      const { registration } = await makeRegistration(ctx, { ownerOrganisation: 'Kalinka Defence Systems JSC', contactName: 'Pyotr Orlov', country: 'RU' });
      expect(await ScreeningHit.countDocuments({ 'subject.id': registration._id })).toBe(0);
      await ctx.services.screening.importList({ listId: 'csl-rescreen', name: 'CSL', source: 'trade.gov (synthetic)', versionDate: new Date('2026-02-01'), text: syntheticCsl() }, null);
      const first = await ctx.services.screening.rescreen();
      expect(first!.screened).toBeGreaterThan(0);
      const hits = await ScreeningHit.find({ 'subject.id': registration._id }).lean();
      expect(hits).toEqual([expect.objectContaining({ status: 'open', held: false, entity: expect.objectContaining({ entityId: 'csl-003' }) })]);
      expect((await Registration.findById(registration._id).lean())!.status).toBe('active');
      const run = (await request(ctx.app).get('/api/v1/screening/rescreen').set(admin.auth)).body.run;
      expect(run).toMatchObject({ status: 'done', screened: first!.screened, raised: first!.raised });
      // Nothing requested since: no run; requested again, nothing new is raised.
      expect(await ctx.services.screening.rescreen()).toBeNull();
      await ctx.services.screening.importList({ listId: 'csl-rescreen', name: 'CSL', source: 'trade.gov (synthetic)', versionDate: new Date('2026-02-02'), text: syntheticCsl() }, null);
      expect((await ctx.services.screening.rescreen())!.raised).toBe(0);
    });
  });
});
