import { Readable } from 'node:stream';
import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { Unit } from '../models/catalogue';
import { Case } from '../models/cases';
import { Flag } from '../models/flags';
import { ChannelUnit, Partner, PartnerFootprint, SaleReview } from '../models/partners';
import { channelPartnersMigration } from '../server/store/migrations/005-channel-partners';
import { createTestContext, type TestContext } from './helpers/context';
import { makeModel, makeRegistration, makeUnit } from './helpers/catalogue';
import { checkInItem, hoursAgo, makeApiKey, sendCheckIn } from './helpers/check-ins';
import { freshAuth, makeFlagCase, makeStaff } from './helpers/cases';
import { apiUser, pageAgent, signedInAgent, TEST_PASSWORD } from './helpers/factories';
import { allocatedUnits, makePartner, partnerKey, partnerUser, reportSales, reviewOf, saleOf } from './helpers/partners';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

const api = () => request(ctx.app);

describe('partner records', () => {
  it('an admin creates a distributor and a reseller under it; bad fields are named', async () => {
    const admin = await apiUser(ctx, 'admin');
    const bad = await api().post('/api/v1/partners').set(admin.auth).send({ name: 'East Africa Networks', type: 'distributor', territories: ['KE', 'XX'] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.fields).toHaveProperty(['territories.1']);

    const created = await api()
      .post('/api/v1/partners')
      .set(admin.auth)
      .send({ name: 'East Africa Networks', type: 'distributor', territories: ['KE', 'TZ'], clauses: [{ kind: 'no-re-export', since: '2025-01-01' }] });
    expect(created.status).toBe(201);
    expect(created.body.partner).toMatchObject({ name: 'East Africa Networks', type: 'distributor', territories: ['KE', 'TZ'], clauses: [{ kind: 'no-re-export', since: '2025-01-01', until: null }] });

    const reseller = await api().post('/api/v1/partners').set(admin.auth).send({ name: 'Nairobi Systems', type: 'reseller', parentId: created.body.partner.id, territories: ['KE'] });
    expect(reseller.status).toBe(201);
    expect(await Partner.findById(reseller.body.partner.id).lean()).toMatchObject({ parentId: created.body.partner.id, territories: ['KE'] });

    const underReseller = await api().post('/api/v1/partners').set(admin.auth).send({ name: 'Sub', type: 'integrator', parentId: reseller.body.partner.id });
    expect(underReseller.status).toBe(400);
    expect(underReseller.body.error.fields.parentId).toMatch(/distributor/);
  });

  it('shows the risk tier with the inputs it was computed from', async () => {
    await ctx.services.flags.setRestrictedCountries(['KP', 'SY'], null);
    const risky = await makePartner(ctx, { territories: ['SY', 'KE'], authorisedRiskLevels: ['high'], maturity: 'none' });
    const calm = await makePartner(ctx, { territories: ['KE'], authorisedRiskLevels: ['low'], maturity: 'established', nextReviewAt: new Date(ctx.clock.now().getTime() + 86_400_000 * 90) });
    const investigator = await apiUser(ctx, 'investigator');

    const high = await api().get(`/api/v1/partners/${risky._id}`).set(investigator.auth);
    expect(high.status).toBe(200);
    expect(high.body.risk.tier).toBe('high');
    expect(high.body.risk.factors).toEqual(expect.arrayContaining([expect.objectContaining({ factor: 'Territories on the restricted list', value: 'SY', points: 3 })]));
    const low = await api().get(`/api/v1/partners/${calm._id}`).set(investigator.auth);
    expect(low.body.risk.tier).toBe('low');

    const csv = await api().get('/api/v1/partners/scorecards?format=csv').set(investigator.auth);
    expect(csv.status).toBe(200);
    expect(csv.headers['content-disposition']).toContain('partner-scorecards.csv');
    const lines = csv.text.trim().split('\r\n');
    expect(lines[0]).toMatch(/^partner_id,name,type,risk_tier,risk_score,allocated/);
    expect(lines.find((l) => l.startsWith(risky._id))).toMatch(/,high,/);
    expect(await AuditEntry.countDocuments({ action: 'export.partner-scorecards' })).toBe(1);
    await ctx.services.flags.setRestrictedCountries([], null);
  });
});

/** The error summary at the top of a form shown again. */
const summaryOf = (html: string) => /<div class="error-summary"[\s\S]*?<\/div>/.exec(html)?.[0] ?? '';

describe('partner forms name their errors by the labels they show', () => {
  it('the admin’s new-partner form: a clause’s date by its clause, a bad territory by the list, never a field code; nothing created', async () => {
    const { agent } = await signedInAgent(ctx, 'admin');
    const name = `Labelled Distributor ${Date.now()}`;
    const res = await agent.form('/admin/partners', { name, type: 'distributor', territories: 'KE, XX', 'clause_no-re-export': 'on', 'clause_no-re-export_since': '' }, '/admin/partners');
    expect(res.status).toBe(400);
    const summary = summaryOf(res.text);
    expect(summary).toContain('<a href="#f-territories">Authorised territories: Choose a country from the list');
    expect(summary).toContain('<a href="#f-clause_no-re-export_since">In force since (no re export): Enter a date as YYYY-MM-DD.</a>');
    expect(summary).not.toMatch(/">(territories|clause_|clauses)/);
    expect(res.text).toContain('<label for="f-clause_no-re-export_since">In force since (no re export)</label>');
    expect(res.text).toContain('value="KE, XX"');
    expect(res.text).toContain(`value="${name}"`);
    expect(await Partner.countDocuments({ name })).toBe(0);
  });

  it('the portal’s one-sale form: bad fields, then a unit not in the catalogue by the serial field; what was typed is kept', async () => {
    const partner = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, partner._id, 1);
    const user = await partnerUser(ctx, partner._id);
    const typed = { ...saleOf(units[0]!, { customerName: 'Kept Customer Ltd' }), customerType: '', soldAt: '2026-02-30' };
    const bad = await user.agent.form('/partner/sales', typed, '/partner/sales');
    expect(bad.status).toBe(400);
    expect(summaryOf(bad.text)).toContain('<a href="#f-customerType">End-user type: Choose an end-user type');
    expect(summaryOf(bad.text)).toContain('<a href="#f-soldAt">Sale date: enter a date as YYYY-MM-DD.</a>');
    expect(bad.text).toContain('value="Kept Customer Ltd"');

    const unknown = await user.agent.form('/partner/sales', { ...saleOf(units[0]!, { customerName: 'Kept Customer Ltd' }), serial: 'NO-SUCH-SERIAL' }, '/partner/sales');
    expect(unknown.status).toBe(400);
    expect(summaryOf(unknown.text)).toMatch(/<a href="#f-serial">Serial number: No unit [^<]*NO-SUCH-SERIAL in the catalogue\.<\/a>/);
    expect(unknown.text).toContain('value="Kept Customer Ltd"');
    expect((await ChannelUnit.findById(units[0]!._id).lean())!.sales).toHaveLength(0);
  });

  it('the pass-on form names the partner and the units by their labels and keeps the units typed', async () => {
    const distributor = await makePartner(ctx);
    await makePartner(ctx, { type: 'reseller', parentId: distributor._id });
    const user = await partnerUser(ctx, distributor._id);
    const res = await user.agent.form('/partner/pass-on', { toId: '', units: 'not a unit' }, '/partner');
    expect(res.status).toBe(400);
    expect(summaryOf(res.text)).toContain('<a href="#f-toId">Pass to: Choose a partner from the list.</a>');
    expect(summaryOf(res.text)).toContain('<a href="#f-units">Units: Write each unit as SKU:SERIAL.</a>');
    expect(res.text).toContain('>not a unit</textarea>');
  });
});

describe('object-level checks: a partner sees its own and its children’s records, nothing else', () => {
  let distributor: { _id: string };
  let reseller: { _id: string };
  let other: { _id: string };
  let distributorUser: Awaited<ReturnType<typeof partnerUser>>;
  let resellerUser: Awaited<ReturnType<typeof partnerUser>>;
  let otherReviewId: string;

  beforeAll(async () => {
    distributor = await makePartner(ctx, { name: 'Scope Distributor' });
    reseller = await makePartner(ctx, { name: 'Scope Reseller', type: 'reseller', parentId: distributor._id });
    other = await makePartner(ctx, { name: 'Scope Other' });
    distributorUser = await partnerUser(ctx, distributor._id);
    resellerUser = await partnerUser(ctx, reseller._id);
    const otherUser = await partnerUser(ctx, other._id);
    const { units } = await allocatedUnits(ctx, other._id, 1, { riskLevel: 'high' });
    const review = await api().post('/api/v1/sale-reviews').set(otherUser.auth).send(reviewOf(units[0]!, { customerType: 'military' }));
    expect(review.status).toBe(201);
    otherReviewId = review.body.review.id;
  });

  it('lists only the partner and its children', async () => {
    const mine = await api().get('/api/v1/partners').set(distributorUser.auth);
    expect(mine.status).toBe(200);
    expect(mine.body.items.map((p: { id: string }) => p.id).sort()).toEqual([distributor._id, reseller._id].sort());
    const res = await api().get('/api/v1/partners').set(resellerUser.auth);
    expect(res.body.items.map((p: { id: string }) => p.id)).toEqual([reseller._id]);
  });

  it.each([
    ['GET /api/v1/partners/:id', (id: string) => `/api/v1/partners/${id}`],
    ['GET /api/v1/partners/:id/units', (id: string) => `/api/v1/partners/${id}/units`],
  ])('%s: own and child 200, parent and stranger 403', async (_name, path) => {
    expect((await api().get(path(distributor._id)).set(distributorUser.auth)).status).toBe(200);
    expect((await api().get(path(reseller._id)).set(distributorUser.auth)).status).toBe(200);
    expect((await api().get(path(other._id)).set(distributorUser.auth)).status).toBe(403);
    expect((await api().get(path(distributor._id)).set(resellerUser.auth)).status).toBe(403);
  });

  it('GET /api/v1/sale-reviews/:id and its page refuse another partner’s review; the list leaves it out', async () => {
    const res = await api().get(`/api/v1/sale-reviews/${otherReviewId}`).set(distributorUser.auth);
    expect(res.status).toBe(403);
    expect(res.body.error.message).toMatch(/not yours/);
    expect((await api().get('/api/v1/sale-reviews').set(distributorUser.auth)).body.items).toEqual([]);
    expect((await distributorUser.agent.get(`/partner/reviews/${otherReviewId}`)).status).toBe(403);
  });

  it('portal pages: a child partner’s page opens for its distributor only', async () => {
    expect((await distributorUser.agent.get(`/partner/partners/${reseller._id}`)).status).toBe(200);
    expect((await distributorUser.agent.get(`/partner/partners/${other._id}`)).status).toBe(403);
    expect((await resellerUser.agent.get(`/partner/partners/${distributor._id}`)).status).toBe(403);
    const portal = await resellerUser.agent.get('/partner');
    expect(portal.status).toBe(200);
    expect(portal.text).toContain('Scope Reseller');
    expect(portal.text).not.toContain('Scope Other');
  });

  it('staff pages and staff API routes are closed to partner users', async () => {
    expect((await distributorUser.agent.get('/admin/partners')).status).toBe(403);
    expect((await distributorUser.agent.get(`/admin/partners/${distributor._id}`)).status).toBe(403);
    expect((await distributorUser.agent.get('/admin/sale-reviews')).status).toBe(403);
    expect((await api().get('/api/v1/partners/scorecards').set(distributorUser.auth)).status).toBe(403);
    expect((await api().post(`/api/v1/sale-reviews/${otherReviewId}/decision`).set(distributorUser.auth).send({ decision: 'approved', reasons: 'self-approved' })).status).toBe(403);
    expect((await api().post('/api/v1/partners').set(distributorUser.auth).send({ name: 'x', type: 'reseller' })).status).toBe(403);
  });

  it('a partner can pass units only to its own child partners', async () => {
    const { units } = await allocatedUnits(ctx, distributor._id, 2);
    const unitIds = units.map((u) => u._id).join('\n');
    const toStranger = await distributorUser.agent.form('/partner/pass-on', { toId: other._id, units: unitIds }, '/partner');
    expect(toStranger.status).toBe(400);
    expect(toStranger.text).toContain('Choose one of your own partners.');
    expect(toStranger.text).toContain(units[0]!._id); // what was typed is kept
    const toChild = await distributorUser.agent.form('/partner/pass-on', { toId: reseller._id, units: unitIds }, '/partner');
    expect(toChild.status).toBe(303);
    expect(await ChannelUnit.findById(units[0]!._id).lean()).toMatchObject({ holderId: reseller._id, chain: [distributor._id, reseller._id] });
    // The reseller cannot pass them back up: it has no children.
    const back = await resellerUser.agent.form('/partner/pass-on', { toId: distributor._id, units: unitIds }, '/partner');
    expect(back.status).toBe(400);
  });
});

describe('allocation by the catalogue import', () => {
  it('a partner column allocates the imported units; an unknown partner is refused with its line', async () => {
    const distributor = await makePartner(ctx, { name: 'Import Distributor Ltd' });
    const model = await makeModel(ctx);
    const rows = Array.from({ length: 5 }, (_, i) => `${model._id},IMP-${i},,,,,${i === 4 ? 'Nobody We Know' : 'import distributor'}`);
    const csv = ['sku,serial,manufactured_at,channel_partner,ship_to_country,sold_at,partner', ...rows].join('\n');
    const { job, done } = await ctx.services.catalogue.startImport(Readable.from([csv]), 'units.csv', { userId: null });
    await done;
    const finished = await ctx.services.catalogue.getImport(job._id);
    expect(finished.counts).toMatchObject({ rows: 5, imported: 4, rejected: 1 });
    expect(finished.rowErrors).toEqual([{ line: 6, field: 'partner', message: expect.stringContaining('unknown channel partner "Nobody We Know"') }]);
    const partner = await Partner.findById(distributor._id).lean();
    expect(partner!.tallies?.allocated).toBe(4);
    expect(await ChannelUnit.findById(`${model._id}:IMP-0`).lean()).toMatchObject({ holderId: distributor._id });
    expect((await ctx.services.catalogue.getUnit(`${model._id}:IMP-0`)).firstSale?.channelPartner).toBe('Import Distributor Ltd');
  });
});

describe('sell-through by API key', () => {
  it('reports sales idempotently; another partner’s key is refused (403) for the same units', async () => {
    const mine = await makePartner(ctx, { territories: ['KE'] });
    const theirs = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, mine._id, 3);
    const sales = units.map((u) => saleOf(u));
    const key = await partnerKey(ctx, mine._id);

    const first = await reportSales(ctx, key, sales);
    expect(first.status).toBe(200);
    expect(first.body.results).toEqual(units.map((u) => ({ unitId: u._id, outcome: 'recorded' })));
    const again = await reportSales(ctx, key, sales);
    expect(again.status).toBe(200);
    expect(again.body.results.map((r: { outcome: string }) => r.outcome)).toEqual(['repeated', 'repeated', 'repeated']);
    expect((await ChannelUnit.findById(units[0]!._id).lean())!.sales).toHaveLength(1);
    expect((await Partner.findById(mine._id).lean())!.tallies?.sold).toBe(3);

    const refused = await reportSales(ctx, await partnerKey(ctx, theirs._id), sales);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('not_your_units');
    expect((await ChannelUnit.findById(units[0]!._id).lean())!.sales).toHaveLength(1);
  });

  it('answers at once and folds later: the sale reaches its unit, the rules and the scorecard once, however often the fold runs', async () => {
    const partner = await makePartner(ctx, { territories: ['KE'] });
    const { units } = await allocatedUnits(ctx, partner._id, 2);
    const key = await partnerKey(ctx, partner._id);
    const res = await api().post('/api/v1/sell-through').set(key).send({ sales: [saleOf(units[0]!, { country: 'RU' }), saleOf(units[1]!), saleOf(units[1]!)] });
    expect(res.status).toBe(200);
    expect(res.body.results).toEqual([
      { unitId: units[0]!._id, outcome: 'recorded' },
      { unitId: units[1]!._id, outcome: 'recorded' },
      { unitId: units[1]!._id, outcome: 'repeated' },
    ]);
    // Before the fold: in the ledger only.
    const reported = () => AuditEntry.find({ action: 'partner.sales-reported', subjectId: partner._id }).lean();
    expect((await ChannelUnit.findById(units[0]!._id).lean())!.sales).toHaveLength(0);
    expect(await Flag.findById(`flg_sale-outside-territory_${units[0]!._id}`).lean()).toBeNull();
    expect((await Partner.findById(partner._id).lean())!.tallies?.sold).toBe(0);
    expect(await reported()).toEqual([]);

    await ctx.services.partners.settleSales();
    await ctx.services.partners.settleSales();
    // The report in the audit log, under the key that sent it, once however often the fold runs.
    const keyId = (await AuditEntry.findOne({ action: 'partner.api-key-created', subjectId: partner._id }).lean())?.detail.apiKeyId;
    expect(keyId).toEqual(expect.any(String));
    expect(await reported()).toEqual([expect.objectContaining({ actorKind: 'api-key', actorId: keyId, detail: expect.objectContaining({ recorded: 2, repeated: 1 }) })]);
    expect((await ChannelUnit.findById(units[0]!._id).lean())!.sales).toMatchObject([{ country: 'RU', held: false }]);
    expect((await ChannelUnit.findById(units[1]!._id).lean())!.sales).toHaveLength(1);
    expect(await Flag.countDocuments({ rule: 'sale-outside-territory', unitId: units[0]!._id })).toBe(1);
    expect((await Partner.findById(partner._id).lean())!.tallies).toMatchObject({ sold: 2, flags: 1 });
  });

  it('a distributor reports for the reseller holding the unit, but not once the unit went further down the tree', async () => {
    const distributor = await makePartner(ctx, { type: 'distributor' });
    const reseller = await makePartner(ctx, { type: 'distributor', parentId: distributor._id }); // a regional distributor, with resellers of its own
    const subReseller = await makePartner(ctx, { type: 'reseller', parentId: reseller._id });
    const { units } = await allocatedUnits(ctx, distributor._id, 2);
    const [passed, kept] = units as [(typeof units)[0], (typeof units)[0]];
    const at = (partnerId: string) => ({ kind: 'partner' as const, partnerId, userId: null, apiKeyId: null });
    await ctx.services.partners.passOn(at(distributor._id), reseller._id, [{ sku: passed.modelId, serial: passed.serial }]);
    const key = await partnerKey(ctx, distributor._id);

    expect((await reportSales(ctx, key, [saleOf(passed), saleOf(kept)])).body.results.map((r: { outcome: string }) => r.outcome)).toEqual(['recorded', 'recorded']);
    const sold = await ChannelUnit.findById(passed._id).lean();
    expect(sold!.sales).toMatchObject([{ partnerId: reseller._id }]);
    expect((await Partner.findById(reseller._id).lean())!.tallies?.sold).toBe(1);
    expect((await Partner.findById(distributor._id).lean())!.tallies?.sold).toBe(1);

    await ctx.services.partners.passOn(at(reseller._id), subReseller._id, [{ sku: passed.modelId, serial: passed.serial }]);
    const refused = await reportSales(ctx, key, [saleOf(passed, { customerName: 'Another Buyer' })]);
    expect(refused.status).toBe(403);
    expect((await ChannelUnit.findById(passed._id).lean())!.sales).toHaveLength(1);
  });

  it('an admin creates a partner’s key through the API; a partner user cannot', async () => {
    const partner = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, partner._id, 1);
    const admin = await apiUser(ctx, 'admin');
    const created = await api().post(`/api/v1/partners/${partner._id}/api-keys`).set(admin.auth).send({ keyName: 'ERP' });
    expect(created.status).toBe(201);
    expect(created.body.apiKey.scopes).toEqual(['sell-through']);
    const sold = await reportSales(ctx, { Authorization: `Bearer ${created.body.key}` }, [saleOf(units[0]!)]);
    expect(sold.body.results).toEqual([{ unitId: units[0]!._id, outcome: 'recorded' }]);
    const user = await partnerUser(ctx, partner._id);
    expect((await api().post(`/api/v1/partners/${partner._id}/api-keys`).set(user.auth).send({ keyName: 'mine' })).status).toBe(403);
  });

  it('refuses a user token, a check-ins key and bad fields, naming them', async () => {
    const partner = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, partner._id, 1);
    const admin = await apiUser(ctx, 'admin');
    expect((await reportSales(ctx, admin.auth, [saleOf(units[0]!)])).status).toBe(401);
    const { key } = await ctx.services.auth.createApiKey({ name: 'updates', scopes: ['check-ins'] }, null);
    expect((await reportSales(ctx, { Authorization: `Bearer ${key}` }, [saleOf(units[0]!)])).status).toBe(403);
    // A full report of 1,000 sales with long declared end uses is read (its units are unknown here: 400, not 413).
    const full = Array.from({ length: 1000 }, (_, i) => saleOf({ modelId: 'NO-SUCH', serial: `S${i}` }, { endUse: 'x'.repeat(1000) }));
    const big = await reportSales(ctx, await partnerKey(ctx, partner._id), full);
    expect(big.status).toBe(400);
    expect(big.body.error.fields['sales.999']).toMatch(/No unit NO-SUCH:S999/);
    const bad = await reportSales(ctx, await partnerKey(ctx, partner._id), [saleOf(units[0]!, { customerType: 'spy', soldAt: '2026-02-30' })]);
    expect(bad.status).toBe(400);
    expect(Object.keys(bad.body.error.fields).sort()).toEqual(['sales.0.customerType', 'sales.0.soldAt']);
  });
});

describe('diversion rules: each raises its flag once per unit and rule, on a case', () => {
  const flagOf = (rule: string, unitId: string) => Flag.findById(`flg_${rule}_${unitId}`).lean();

  async function expectFlagOnCase(rule: string, unitId: string) {
    const flag = await flagOf(rule, unitId);
    expect(flag).toMatchObject({ rule, unitId, source: { kind: 'sale' } });
    const c = await Case.findById(flag!.caseId).lean();
    expect(c!.rules).toContain(rule);
    expect(c!.unitIds).toContain(unitId);
    return flag!;
  }

  it('a sale outside the authorised territories', async () => {
    const partner = await makePartner(ctx, { territories: ['KE', 'TZ'] });
    const { units } = await allocatedUnits(ctx, partner._id, 1);
    const key = await partnerKey(ctx, partner._id);
    const res = await reportSales(ctx, key, [saleOf(units[0]!, { country: 'RU' })]);
    expect(res.body.results[0].outcome).toBe('recorded');
    const flag = await expectFlagOnCase('sale-outside-territory', units[0]!._id);
    expect(flag.evidence).toMatchObject({ country: 'RU', territories: ['KE', 'TZ'], partnerId: partner._id });
    // Reported again as another sale (a second customer): sold twice, but the territory flag stays one.
    await reportSales(ctx, key, [saleOf(units[0]!, { country: 'RU', customerName: 'Someone Else' })]);
    expect(await Flag.countDocuments({ rule: 'sale-outside-territory', unitId: units[0]!._id })).toBe(1);
    await expectFlagOnCase('unit-sold-twice', units[0]!._id);
    expect((await Partner.findById(partner._id).lean())!.tallies?.flags).toBe(2);
  });

  it('a model the partner is not authorised to sell', async () => {
    const partner = await makePartner(ctx, { authorisedRiskLevels: ['low'] });
    const { units } = await allocatedUnits(ctx, partner._id, 1, { riskLevel: 'elevated' });
    const res = await reportSales(ctx, await partnerKey(ctx, partner._id), [saleOf(units[0]!)]);
    expect(res.body.results[0].outcome).toBe('recorded');
    await expectFlagOnCase('unauthorised-model-sale', units[0]!._id);
  });

  it('the sale of a unit never allocated to the partner: recorded and flagged, or refused when another partner holds it', async () => {
    const partner = await makePartner(ctx);
    const { unit } = await makeUnit(ctx);
    const key = await partnerKey(ctx, partner._id);
    const res = await reportSales(ctx, key, [saleOf(unit)]);
    expect(res.status).toBe(200);
    expect(res.body.results[0].outcome).toBe('recorded');
    await expectFlagOnCase('unallocated-unit-sale', unit._id);
    expect(await ChannelUnit.findById(unit._id).lean()).toMatchObject({ holderId: partner._id, chain: [] });

    const holder = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, holder._id, 1);
    expect((await reportSales(ctx, key, [saleOf(units[0]!)])).status).toBe(403);
    expect((await reportSales(ctx, key, [saleOf(units[0]!)])).status).toBe(403);
    expect(await Flag.countDocuments({ rule: 'unallocated-unit-sale', unitId: units[0]!._id })).toBe(1);
  });

  it('a sale needing review reported as done without an approval; with one, no flag and the sale names it', async () => {
    const partner = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, partner._id, 2, { riskLevel: 'high' });
    const key = await partnerKey(ctx, partner._id);
    const unapproved = await reportSales(ctx, key, [saleOf(units[0]!, { customerType: 'police-security' })]);
    expect(unapproved.body.results[0].outcome).toBe('recorded');
    const flag = await expectFlagOnCase('unapproved-high-risk-sale', units[0]!._id);
    expect(flag.evidence).toMatchObject({ criteria: ['high-risk-model', 'high-risk-end-user'] });

    const user = await partnerUser(ctx, partner._id);
    const submitted = await api().post('/api/v1/sale-reviews').set(user.auth).send(reviewOf(units[1]!, { customerType: 'police-security' }));
    const investigator = await apiUser(ctx, 'investigator');
    await api().post(`/api/v1/sale-reviews/${submitted.body.review.id}/decision`).set(investigator.auth).send({ decision: 'approved', reasons: 'End-use certificate checked.' });
    const approved = await reportSales(ctx, key, [saleOf(units[1]!, { customerType: 'police-security' })]);
    expect(approved.body.results[0].outcome).toBe('recorded');
    expect(await flagOf('unapproved-high-risk-sale', units[1]!._id)).toBeNull();
    expect((await ChannelUnit.findById(units[1]!._id).lean())!.sales[0]!.reviewId).toBe(submitted.body.review.id);
  });
});

describe('high-risk sale review', () => {
  it('the partner submits, compliance approves with conditions, the partner sees the decision; every step audited', async () => {
    const partner = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, partner._id, 1, { riskLevel: 'high' });
    const user = await partnerUser(ctx, partner._id);
    const submitted = await api().post('/api/v1/sale-reviews').set(user.auth).send({ ...reviewOf(units[0]!, { customerType: 'military' }), plannedAt: '2026-04-01' });
    expect(submitted.status).toBe(201);
    expect(submitted.body.review).toMatchObject({ status: 'pending', criteria: ['high-risk-model', 'high-risk-end-user'], plannedAt: '2026-04-01' });
    const id = submitted.body.review.id;

    const investigator = await signedInAgent(ctx, 'investigator');
    const noConditions = await investigator.agent.form(`/admin/sale-reviews/${id}/decision`, { decision: 'approved-with-conditions', reasons: 'Border-control use only.', conditions: '' }, `/admin/sale-reviews/${id}`);
    expect(noConditions.status).toBe(400);
    expect(summaryOf(noConditions.text)).toContain('<a href="#f-conditions">Conditions: Name at least one condition, one per line.</a>');
    expect(noConditions.text).toContain('Border-control use only.');
    const decided = await investigator.agent.form(`/admin/sale-reviews/${id}/decision`, { decision: 'approved-with-conditions', reasons: 'Border-control use only.', conditions: 'Firmware updates only via the vendor\nSite visit within 6 months' }, `/admin/sale-reviews/${id}`);
    expect(decided.status).toBe(303);

    const seen = await api().get(`/api/v1/sale-reviews/${id}`).set(user.auth);
    expect(seen.body.review).toMatchObject({ status: 'approved-with-conditions', decisions: [{ decision: 'approved-with-conditions', reasons: 'Border-control use only.', conditions: ['Firmware updates only via the vendor', 'Site visit within 6 months'] }] });
    const page = await user.agent.get(`/partner/reviews/${id}`);
    expect(page.text).toContain('Site visit within 6 months');

    const again = await api().post(`/api/v1/sale-reviews/${id}/decision`).set((await apiUser(ctx, 'investigator')).auth).send({ decision: 'rejected', reasons: 'changed my mind' });
    expect(again.status).toBe(409);
    const audited = await AuditEntry.find({ subjectKind: 'sale-review', subjectId: id }).sort({ seq: 1 }).lean();
    expect(audited.map((e) => e.action)).toEqual(['sale-review.submitted', 'sale-review.decided']);
    expect(audited[1]!.detail).toMatchObject({ decision: 'approved-with-conditions', conditions: ['Firmware updates only via the vendor', 'Site visit within 6 months'] });
  });

  it('asking for more information: the partner answers, and the review goes back to compliance', async () => {
    const partner = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, partner._id, 1, { riskLevel: 'high' });
    const user = await partnerUser(ctx, partner._id);
    const id = (await api().post('/api/v1/sale-reviews').set(user.auth).send(reviewOf(units[0]!))).body.review.id;
    const investigator = await apiUser(ctx, 'investigator');
    await api().post(`/api/v1/sale-reviews/${id}/decision`).set(investigator.auth).send({ decision: 'more-information', reasons: 'Who operates the network?' });
    const answered = await user.agent.form(`/partner/reviews/${id}/answer`, { text: 'The port authority’s IT department.' }, `/partner/reviews/${id}`);
    expect(answered.status).toBe(303);
    expect(await SaleReview.findById(id).lean()).toMatchObject({ status: 'pending', notes: [{ text: 'The port authority’s IT department.' }] });
  });

  it('a sale meeting no criterion is not taken for review', async () => {
    const partner = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, partner._id, 1);
    const user = await partnerUser(ctx, partner._id);
    const res = await api().post('/api/v1/sale-reviews').set(user.auth).send(reviewOf(units[0]!));
    expect(res.status).toBe(400);
    expect(res.body.error.fields.customerType).toMatch(/no review criterion/);
  });
});

describe('sell-through by CSV in the portal', () => {
  it('records the good lines and names the bad one by its line number', async () => {
    const partner = await makePartner(ctx);
    const { units } = await allocatedUnits(ctx, partner._id, 3);
    const user = await partnerUser(ctx, partner._id);
    const csv = [
      'sku,serial,customer_name,customer_type,country,end_use,sold_at',
      ...units.map((u, i) => `${u.modelId},${u.serial},Customer ${i},commercial-company,KE,office,${i === 1 ? '2026-13-01' : '2026-03-0' + (i + 1)}`),
    ].join('\n');
    const token = await user.agent.csrf('/partner/sales');
    const res = await user.agent.post('/partner/sales/csv').field('_csrf', token).attach('file', Buffer.from(csv), 'sales.csv');
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/3 lines read: 2 sales recorded, 0 already reported, 1 refused/);
    expect(res.text).toMatch(/<td>3<\/td><td>sold_at<\/td>/);
    await ctx.services.partners.settleSales();
    expect((await ChannelUnit.findById(units[0]!._id).lean())!.sales).toHaveLength(1);
    expect((await ChannelUnit.findById(units[1]!._id).lean())!.sales).toHaveLength(0);
  });
});

describe('merging near-duplicate partners', () => {
  it('lists near-duplicates and merges one into the other with its units', async () => {
    const kept = await makePartner(ctx, { name: 'Zephyr Telecom Ltd' });
    const dup = await makePartner(ctx, { name: 'ZEPHYR TELECOM LIMITED.' });
    const { units } = await allocatedUnits(ctx, dup._id, 2);
    const admin = await signedInAgent(ctx, 'admin');
    const page = await admin.agent.get('/admin/partners/merge');
    expect(page.text).toContain('ZEPHYR TELECOM LIMITED.');
    const res = await admin.agent.form('/admin/partners/merge', { fromId: dup._id, intoId: kept._id }, '/admin/partners/merge');
    expect(res.status).toBe(303);
    expect(await Partner.findById(dup._id).lean()).toBeNull();
    expect(await Partner.findById(kept._id).lean()).toMatchObject({ aliases: ['ZEPHYR TELECOM LIMITED.'], tallies: { allocated: 2 } });
    expect(await ChannelUnit.findById(units[0]!._id).lean()).toMatchObject({ holderId: kept._id });
  });
});

describe('requests from cases', () => {
  it('a case’s “notify channel partner” reaches the partner; overdue shows on the scorecard; the answer comes back on the case', async () => {
    const partner = await makePartner(ctx, { name: 'Lakeside Integrators' });
    const { units } = await allocatedUnits(ctx, partner._id, 1);
    const investigator = await makeStaff(ctx);
    const { caseId } = await makeFlagCase(ctx, { unitId: units[0]!._id, modelId: units[0]!.modelId });
    await ctx.services.cases.assign(caseId, investigator.actor.id, investigator.actor);
    const dueBy = new Date(ctx.clock.now().getTime() + 7 * 86_400_000).toISOString().slice(0, 10);

    const unknown = await api().post(`/api/v1/cases/${caseId}/actions`).set(investigator.auth).send({ kind: 'notify-channel-partner', channelPartner: 'Nobody & Co', description: 'Who bought it?', dueBy });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.fields.channelPartner).toMatch(/No channel partner named/);

    const sent = await api().post(`/api/v1/cases/${caseId}/actions`).set(investigator.auth).send({ kind: 'notify-channel-partner', channelPartner: 'LAKESIDE integrators', description: 'Who is the end user of this unit?', unitIds: [units[0]!._id], dueBy });
    expect(sent.status).toBe(201);
    const user = await partnerUser(ctx, partner._id);
    const listed = await api().get('/api/v1/partner-requests').set(user.auth);
    expect(listed.body.items).toEqual([expect.objectContaining({ caseId, questions: 'Who is the end user of this unit?', unitIds: [units[0]!._id], dueBy, status: 'open' })]);
    const requestId = listed.body.items[0].id;
    const stranger = await partnerUser(ctx, (await makePartner(ctx))._id);
    expect((await api().get(`/api/v1/partner-requests/${requestId}`).set(stranger.auth)).status).toBe(403);
    expect((await api().post(`/api/v1/partner-requests/${requestId}/answer`).set(stranger.auth).send({ answer: 'not me' })).status).toBe(403);

    // Fresh credentials each time: the clock moves past a session's lifetime below.
    const scorecardOf = async () => (await api().get(`/api/v1/partners/${partner._id}`).set(await freshAuth(ctx, investigator.user))).body.scorecard;
    expect(await scorecardOf()).toMatchObject({ overdueRequests: 0, medianAnswerDays: null });
    ctx.clock.advance(8 * 86_400_000);
    expect(await scorecardOf()).toMatchObject({ overdueRequests: 1 });
    const agent = pageAgent(ctx);
    expect((await agent.form('/login', { email: user.email, password: TEST_PASSWORD })).headers.location).toBe('/partner');
    expect((await agent.get('/partner')).text).toContain('1 overdue');

    const empty = await agent.form(`/partner/requests/${requestId}/answer`, { answer: '' }, `/partner/requests/${requestId}`);
    expect(empty.status).toBe(400);
    expect(empty.text).toContain('Answer is required.');
    const answered = await agent.form(`/partner/requests/${requestId}/answer`, { answer: 'Sold to the county water board, who still operate it.' }, `/partner/requests/${requestId}`);
    expect(answered.status).toBe(303);

    const c = (await api().get(`/api/v1/cases/${caseId}`).set(await freshAuth(ctx, investigator.user))).body.case;
    const action = c.actions.find((a: { kind: string }) => a.kind === 'notify-channel-partner');
    expect(action).toMatchObject({ status: 'done', outcome: expect.stringContaining('Lakeside Integrators answered on') });
    expect(action.outcome).toContain('Sold to the county water board');
    expect((await Case.findById(caseId).lean())!.history.map((h) => h.action)).toContain('partner-answered');
    expect(await scorecardOf()).toMatchObject({ overdueRequests: 0, medianAnswerDays: 8 });
    expect((await api().post(`/api/v1/partner-requests/${requestId}/answer`).set(await freshAuth(ctx, user.user)).send({ answer: 'again' })).status).toBe(409);
  });
});

describe('free-text channel partners from older data (migration 003)', () => {
  it('maps each spelling to a partner, allocates its units once, and leaves near-duplicates for the merge page', async () => {
    const model = await makeModel(ctx);
    const named = async (channelPartner: string) => (await makeUnit(ctx, { model, firstSale: { channelPartner, shipToCountry: 'KE', soldAt: null } })).unit;
    const a = await named('Savannah Distribution Ltd');
    const b = await named('SAVANNAH DISTRIBUTION');
    const c = await named('Savanah Distribution');
    const lines: number[] = [];
    await channelPartnersMigration().run((done) => lines.push(done));
    expect(lines.at(-1)).toBeGreaterThanOrEqual(3);

    const savannah = (await Partner.findOne({ name: 'Savannah Distribution Ltd' }).lean())!;
    expect(savannah).toMatchObject({ aliases: ['SAVANNAH DISTRIBUTION'], tallies: { allocated: 2 } });
    expect(await ChannelUnit.findById(a._id).lean()).toMatchObject({ holderId: savannah._id });
    expect(await ChannelUnit.findById(b._id).lean()).toMatchObject({ holderId: savannah._id });
    const typo = (await Partner.findOne({ name: 'Savanah Distribution' }).lean())!;
    expect((await ChannelUnit.findById(c._id).lean())!.holderId).toBe(typo._id);

    await channelPartnersMigration().run(() => {});
    expect((await Partner.findById(savannah._id).lean())!.tallies?.allocated).toBe(2); // resumed or run again: nothing twice
    expect(await Partner.countDocuments({ nameKey: 'savannah distribution' })).toBe(1);

    const admin = await signedInAgent(ctx, 'admin');
    const page = await admin.agent.get('/admin/partners/merge');
    expect(page.text).toMatch(/Savannah Distribution Ltd<\/strong> and <strong>Savanah Distribution|Savanah Distribution<\/strong> and <strong>Savannah Distribution Ltd/);
  });
});

describe('diversion rules that wait for a grace period (the partner-diversion job)', () => {
  it('a unit registered elsewhere than it was sold to, and an unreported unit checking in abroad, each flagged once after its grace period', async () => {
    const partner = await makePartner(ctx, { territories: ['KE'] });
    const { units } = await allocatedUnits(ctx, partner._id, 3);
    const [movedAway, unreported, stayed] = units as [(typeof units)[0], (typeof units)[0], (typeof units)[0]];
    const key = await partnerKey(ctx, partner._id);
    const today = ctx.clock.now().toISOString().slice(0, 10);
    await reportSales(ctx, key, [saleOf(movedAway, { country: 'KE', soldAt: today }), saleOf(stayed, { country: 'KE', soldAt: today })]);
    await makeRegistration(ctx, { unit: movedAway, country: 'TZ', region: 'Arusha', city: 'Arusha' });
    await makeRegistration(ctx, { unit: stayed, country: 'KE' });
    ctx.clock.advance(86_400_000);
    const device = await makeApiKey(ctx);
    await sendCheckIn(ctx, device.auth, checkInItem(unreported, { country: 'UG', observedAt: hoursAgo(ctx, 1) }));

    const flagOf = (rule: string, unitId: string) => Flag.findById(`flg_${rule}_${unitId}`).lean();
    await ctx.services.partners.sweepDiversion();
    expect(await flagOf('sale-country-mismatch', movedAway._id)).toBeNull(); // within PARTNER_SALE_GRACE_DAYS (30)
    expect(await flagOf('unreported-sale', unreported._id)).toBeNull(); // within PARTNER_UNREPORTED_DAYS (90)

    ctx.clock.advance(30 * 86_400_000);
    await ctx.services.partners.sweepDiversion();
    const mismatch = await flagOf('sale-country-mismatch', movedAway._id);
    expect(mismatch).toMatchObject({ country: 'TZ', evidence: { soldTo: 'KE', seenIn: 'TZ', where: 'registration', partnerId: partner._id } });
    expect((await Case.findById(mismatch!.caseId).lean())!.rules).toContain('sale-country-mismatch');
    expect(await flagOf('sale-country-mismatch', stayed._id)).toBeNull();
    expect(await flagOf('unreported-sale', unreported._id)).toBeNull();

    ctx.clock.advance(60 * 86_400_000);
    await ctx.services.partners.sweepDiversion();
    await ctx.services.partners.sweepDiversion();
    expect(await flagOf('unreported-sale', unreported._id)).toMatchObject({ country: 'UG', evidence: { checkInCountry: 'UG', territories: ['KE'] } });
    expect(await Flag.countDocuments({ unitId: { $in: [movedAway._id, unreported._id] }, rule: { $in: ['sale-country-mismatch', 'unreported-sale'] } })).toBe(2);
    expect((await Partner.findById(partner._id).lean())!.tallies?.flags).toBe(2);
  });
});

describe('partners on the dashboard: footprints against territories', () => {
  it('shows a country a partner’s unit checks in from outside its territories, counted once however often the sweep runs, and rebuilt from nothing', async () => {
    // High-risk models and, once flagged, many flags per 1,000 units: among the dashboard's first ten.
    const partner = await makePartner(ctx, { name: 'Footprint Distributor', territories: ['KE', 'TZ'], authorisedRiskLevels: ['high'] });
    const { units } = await allocatedUnits(ctx, partner._id, 3);
    const [abroad, home] = units as [(typeof units)[0], (typeof units)[0]];
    ctx.clock.advance(86_400_000);
    const device = await makeApiKey(ctx);
    await sendCheckIn(ctx, device.auth, checkInItem(abroad, { country: 'UG', observedAt: hoursAgo(ctx, 1) }));
    await sendCheckIn(ctx, device.auth, checkInItem(home, { country: 'KE', observedAt: hoursAgo(ctx, 1) }));

    const rowOf = async () => (await ctx.services.partners.dashboardPartners()).rows.find((r) => r.partner.id === partner._id);
    expect(await PartnerFootprint.findById(partner._id).lean()).toBeNull(); // not counted before the sweep

    const counted = { units: 3, observedUnits: 2, outsideCountries: 1 };
    const countries = [
      { country: 'KE', name: 'Kenya', units: 1, checkIns: 1, registrations: 0, outsideTerritory: false },
      { country: 'UG', name: 'Uganda', units: 1, checkIns: 1, registrations: 0, outsideTerritory: true },
    ];
    await ctx.services.partners.sweepDiversion();
    expect(await PartnerFootprint.findById(partner._id).lean()).toMatchObject({ units: 3, observedUnits: 2, countries: countries.map(({ country, units, checkIns, registrations }) => ({ country, units, checkIns, registrations })) });
    ctx.clock.advance(90 * 86_400_000); // past PARTNER_UNREPORTED_DAYS: the unit in UG is flagged too
    await ctx.services.partners.sweepDiversion();
    await ctx.services.partners.sweepDiversion();
    const row = await rowOf();
    expect(row?.footprint).toMatchObject({ ...counted, countries, computedAt: ctx.clock.now() });
    expect(row?.scorecard).toMatchObject({ allocated: 3, flags: 1 });

    const { agent } = await signedInAgent(ctx, 'investigator');
    await ctx.services.insight.refreshDashboard();
    const page = await agent.get('/dashboard');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h2 id="channel-partners">Channel partners</h2>');
    expect(page.text).toContain('href="/admin/partners/scorecards"');
    expect(page.text).toMatch(new RegExp(`<a href="/admin/partners/${partner._id}">Footprint Distributor</a>[^]*?<td class="num">333\\.3</td>`));
    const table = page.text.slice(page.text.indexOf(`id="footprint-${partner._id}"`));
    expect(table).toMatch(/^[^]*?<strong>Footprint Distributor<\/strong>: authorised in Kenya, Tanzania · 2 of 3 units seen/);
    expect(table).toMatch(/^[^]*?<tr class="attention"><td>Uganda <span class="muted">UG<\/span><\/td>\s*<td><strong>outside territory<\/strong><\/td>/);
    expect(table).toMatch(/^[^]*?<tr><td>Kenya <span class="muted">KE<\/span><\/td>\s*<td>in territory<\/td>/);

    const investigator = await apiUser(ctx, 'investigator');
    const json = await api().get('/api/v1/dashboard').set(investigator.auth);
    expect(json.status).toBe(200);
    expect(json.body.partners.rows.find((r: { partner: { id: string } }) => r.partner.id === partner._id)).toMatchObject({
      territories: [{ country: 'KE', name: 'Kenya' }, { country: 'TZ', name: 'Tanzania' }],
      footprint: { ...counted, countries },
    });

    // The rebuild command's work: from no footprint at all to the same figures.
    await PartnerFootprint.deleteMany({});
    expect((await rowOf())?.footprint).toBeNull();
    const rebuilt = await ctx.services.partners.rebuildFootprints();
    expect(rebuilt.units).toBeGreaterThanOrEqual(3);
    expect((await rowOf())?.footprint).toMatchObject({ ...counted, countries });
    expect(await PartnerFootprint.countDocuments({})).toBe(await Partner.countDocuments({}));
  });

  it('counts a unit in every country it checked in from, not only the last one', async () => {
    const partner = await makePartner(ctx, { name: 'Roaming Distributor', territories: ['KE'] });
    const { units } = await allocatedUnits(ctx, partner._id, 1);
    const unit = units[0]!;
    const device = await makeApiKey(ctx);
    await sendCheckIn(ctx, device.auth, checkInItem(unit, { country: 'UG', observedAt: hoursAgo(ctx, 3) }));
    await sendCheckIn(ctx, device.auth, checkInItem(unit, { country: 'KE', observedAt: hoursAgo(ctx, 2) }));
    await sendCheckIn(ctx, device.auth, checkInItem(unit, { country: 'KE', observedAt: hoursAgo(ctx, 1) }));

    expect((await Unit.findById(unit._id, { checkIns: 1 }).lean())?.checkIns).toMatchObject({ count: 3, lastCountry: 'KE', countries: ['KE', 'UG'] });
    await ctx.services.partners.rebuildFootprints();
    expect(await PartnerFootprint.findById(partner._id).lean()).toMatchObject({
      units: 1,
      observedUnits: 1,
      countries: [
        { country: 'KE', units: 1, checkIns: 1, registrations: 0 },
        { country: 'UG', units: 1, checkIns: 1, registrations: 0 },
      ],
    });
  });
});
