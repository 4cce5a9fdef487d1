import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { Case } from '../models/cases';
import { Flag } from '../models/flags';
import { Partner } from '../models/partners';
import { createTestContext, type TestContext } from './helpers/context';
import { apiUser } from './helpers/factories';
import { allocatedUnits, makePartner, partnerKey, reportSales, saleOf, staffActor } from './helpers/partners';
import { importSyntheticList } from './helpers/screening';

/** Issue 18 meets issue 17: partner records and sell-through end customers are screened as registrations are. */
describe('screening channel partners and their end customers', () => {
  let ctx: TestContext;
  let investigator: Awaited<ReturnType<typeof apiUser>>;

  beforeAll(async () => {
    ctx = await createTestContext();
    investigator = await apiUser(ctx, 'investigator');
    // No restricted countries: the sales here raise no diversion flag, only screening hits.
    await ctx.services.flags.setRestrictedCountries([], null);
    await importSyntheticList(ctx);
  });
  afterAll(() => ctx.close());

  const api = () => request(ctx.app);
  type Hit = { id: string; held: boolean; subject: { kind: string; id: string; unitId: string | null; role: string }; entity: { entityId: string }; explanation: { summary: string } };
  const hitsOf = async (subjectId: string, status = 'open'): Promise<Hit[]> =>
    (await api().get(`/api/v1/screening/hits?status=${status}&perPage=200`).set(investigator.auth)).body.items.filter((h: Hit) => h.subject.id === subjectId);
  const salesOf = async (partnerId: string) => (await api().get(`/api/v1/partners/${partnerId}/units`).set(investigator.auth)).body.items as Array<{ unitId: string; sales: Array<{ id: string; held: boolean }> }>;
  const decide = (hitId: string, decision: 'true-match' | 'false-positive', reason: string) => api().post(`/api/v1/screening/hits/${hitId}/decision`).set(investigator.auth).send({ decision, reason });

  /** A partner with `n` allocated units, its key, and a report of one sale per customer given. */
  async function sellTo(customers: Array<{ customerName: string; country: string }>) {
    const partner = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, partner._id, customers.length);
    const res = await reportSales(ctx, await partnerKey(ctx, partner._id), units.map((u, i) => saleOf(u, customers[i])));
    return { partner, units, res };
  }

  it('holds a sale to a listed end customer (recorded, not counted as sold) and puts its explained hit in the queue; an unrelated sale completes', async () => {
    const { partner, units, res } = await sellTo([{ customerName: 'Romashka Trading OOO', country: 'RU' }, { customerName: 'Mombasa Logistics Ltd', country: 'KE' }]);
    expect(res.status).toBe(200);
    expect(res.body.results).toEqual([
      { unitId: units[0]!._id, outcome: 'recorded' },
      { unitId: units[1]!._id, outcome: 'recorded' },
    ]);
    const sales = await salesOf(partner._id);
    const heldSale = sales.find((u) => u.unitId === units[0]!._id)!.sales[0]!;
    expect(heldSale).toMatchObject({ held: true, customerName: 'Romashka Trading OOO' });
    expect(sales.find((u) => u.unitId === units[1]!._id)!.sales[0]).toMatchObject({ held: false });
    // Only the completed sale counts on the scorecard.
    expect((await Partner.findById(partner._id).lean())!.tallies?.sold).toBe(1);

    const [hit, ...more] = await hitsOf(heldSale.id);
    expect(more).toHaveLength(0);
    expect(hit).toMatchObject({ held: true, subject: { kind: 'sale', unitId: units[0]!._id, role: 'end-customer' }, entity: { entityId: 'syn-c-003' } });
    expect(hit!.explanation.summary).toContain('romashka');
    expect(await hitsOf(sales.find((u) => u.unitId === units[1]!._id)!.sales[0]!.id)).toHaveLength(0);

    // Reporting the same sale again changes nothing and raises nothing twice.
    const again = await reportSales(ctx, await partnerKey(ctx, partner._id), [saleOf(units[0]!, { customerName: 'Romashka Trading OOO', country: 'RU' })]);
    expect(again.body.results).toEqual([{ unitId: units[0]!._id, outcome: 'repeated' }]);
    expect(await hitsOf(heldSale.id)).toHaveLength(1);
  });

  it('confirming a sale hit raises the restricted-party flag on the unit and opens a case; the sale stays held', async () => {
    const { partner, units } = await sellTo([{ customerName: 'Jon Smyth-Doe', country: 'GB' }]);
    const [sale] = (await salesOf(partner._id))[0]!.sales;
    const [hit] = await hitsOf(sale!.id);
    const res = await decide(hit!.id, 'true-match', 'Same passport number on the delivery note.');
    expect(res.status).toBe(200);
    expect(res.body.hit).toMatchObject({ status: 'true-match', caseId: expect.any(String) });
    const flag = await Flag.findOne({ rule: 'restricted-party', unitId: units[0]!._id }).lean();
    expect(flag).toMatchObject({ caseId: res.body.hit.caseId, source: { kind: 'sale', id: sale!.id }, evidence: { entityId: 'syn-p-001', role: 'end-customer' } });
    expect(await Case.findById(res.body.hit.caseId).lean()).toMatchObject({ unitIds: [units[0]!._id] });
    expect((await salesOf(partner._id))[0]!.sales[0]).toMatchObject({ held: true });
    expect((await Partner.findById(partner._id).lean())!.tallies?.sold ?? 0).toBe(0);
  });

  it('a false positive releases the held sale, which then counts as sold, and is not raised again for that end customer', async () => {
    const { partner, units } = await sellTo([{ customerName: 'Ivan Petrov', country: 'RU' }]);
    const [sale] = (await salesOf(partner._id))[0]!.sales;
    const [hit] = await hitsOf(sale!.id);
    expect((await decide(hit!.id, 'false-positive', 'A different Ivan Petrov: a farm in Tver.')).status).toBe(200);
    expect((await salesOf(partner._id))[0]!.sales[0]).toMatchObject({ id: sale!.id, held: false });
    expect((await Partner.findById(partner._id).lean())!.tallies?.sold).toBe(1);
    expect(await AuditEntry.countDocuments({ action: 'partner.sale-released', subjectId: partner._id })).toBe(1);
    expect(await Flag.countDocuments({ rule: 'restricted-party', unitId: units[0]!._id })).toBe(0);

    // The same end customer bought another unit: remembered, so not held.
    const { units: more } = await allocatedUnits(ctx, partner._id, 1);
    const next = await reportSales(ctx, await partnerKey(ctx, partner._id), [saleOf(more[0]!, { customerName: 'Ivan Petrov', country: 'RU' })]);
    expect(next.body.results).toEqual([{ unitId: more[0]!._id, outcome: 'recorded' }]);
    expect((await salesOf(partner._id)).find((u) => u.unitId === more[0]!._id)!.sales[0]).toMatchObject({ held: false });
    expect((await Partner.findById(partner._id).lean())!.tallies?.sold).toBe(2);
  });

  it('screens a partner record named like a listed entity when it is created or renamed; an unrelated name gets no hit', async () => {
    const admin = await apiUser(ctx, 'admin');
    const listed = await api().post('/api/v1/partners').set(admin.auth).send({ name: 'Mueller Ueberwachungstechnik GmbH', type: 'distributor', territories: ['DE'] });
    expect(listed.status).toBe(201);
    const [hit, ...more] = await hitsOf(listed.body.partner.id);
    expect(more).toHaveLength(0);
    expect(hit).toMatchObject({ subject: { kind: 'partner', unitId: null, role: 'partner' }, entity: { entityId: 'syn-l-006' } });

    const plain = await makePartner(ctx, { name: 'Kisumu Radio Supplies' });
    expect(await hitsOf(plain._id)).toHaveLength(0);
    await ctx.services.partners.updatePartner(plain._id, { name: 'Romashka LLC', type: 'distributor', parentId: null, territories: [], authorisedModels: [], authorisedRiskLevels: [], clauses: [], maturity: 'established', lastReviewAt: null, nextReviewAt: null }, await staffActor(ctx));
    expect((await hitsOf(plain._id)).map((h) => h.entity.entityId)).toEqual(['syn-c-003']);

    // Confirming it opens a case, as for any restricted party.
    const confirmed = await decide(hit!.id, 'true-match', 'The same company register number.');
    expect(confirmed.status).toBe(200);
    expect(await Flag.findOne({ rule: 'restricted-party', 'source.id': listed.body.partner.id }).lean()).toMatchObject({ caseId: confirmed.body.hit.caseId, source: { kind: 'partner' } });
  });

  it('re-screening after a list import covers partner records and sales already stored', async () => {
    const partner = await makePartner(ctx, { name: 'Zephyr Optics Trading' });
    const { partner: seller } = await sellTo([{ customerName: 'Kestrel Marine Holdings', country: 'PA' }]);
    expect((await salesOf(seller._id))[0]!.sales[0]).toMatchObject({ held: false });
    expect(await hitsOf(partner._id)).toHaveLength(0);

    const list = [
      { id: 'new-c-001', schema: 'Company', properties: { name: ['Zephyr Optics Trading LLC'], country: ['ae'] } },
      { id: 'new-c-002', schema: 'Company', properties: { name: ['Kestrel Marine Holdings'], country: ['pa'] } },
    ];
    await importSyntheticList(ctx, { listId: 'newly-listed', text: list.map((e) => JSON.stringify(e)).join('\n') });
    await ctx.services.screening.rescreen();

    expect((await hitsOf(partner._id)).map((h) => h.entity.entityId)).toEqual(['new-c-001']);
    const open = (await api().get('/api/v1/screening/hits?perPage=200').set(investigator.auth)).body.items as Hit[];
    expect(open.filter((h) => h.subject.kind === 'sale' && h.entity.entityId === 'new-c-002')).toEqual([expect.objectContaining({ held: false, subject: expect.objectContaining({ role: 'end-customer' }) })]);
  });
});
