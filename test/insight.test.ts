import { Readable } from 'node:stream';
import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { Case } from '../models/cases';
import { Unit, UnitCheckInHistory } from '../models/catalogue';
import { Flag } from '../models/flags';
import { InsightSnapshot, InsightState, UNIT_TALLIES, UnitTally } from '../models/insight';
import { Report } from '../models/reports';
import { createLogger } from '../server/logger';
import { SNAPSHOT_TTL_MS, createInsightService, suppressCells, unitEpcisEvents } from '../server/services/insight';
import { createStores } from '../server/store';
import { readUnitTallies, rebuildUnitTallies, tallyUnits, unitCheckInChange } from '../server/store/insight';
import { freshAuth, makeFlagCase, makeReportCase, makeStaff, triageFields } from './helpers/cases';
import { makeModel, makeRegistration, makeUnit } from './helpers/catalogue';
import { createTestContext, type TestContext } from './helpers/context';
import { apiUser, signedInAgent } from './helpers/factories';
import { bulkUnits, epcisSchema, lineCounter, unitsIn } from './helpers/insight';

const DAY = 86_400_000;
const HOUR = 3_600_000;

let ctx: TestContext;
let investigator: Awaited<ReturnType<typeof makeStaff>>;
let admin: Awaited<ReturnType<typeof makeStaff>>;

beforeAll(async () => {
  ctx = await createTestContext();
  investigator = await makeStaff(ctx, 'investigator');
  admin = await makeStaff(ctx, 'admin');
});
afterAll(() => ctx.close());

/** Tests move the clock (deadlines, periods): each starts with sessions valid at its own time. */
async function refreshSessions() {
  investigator.auth = await freshAuth(ctx, investigator.user);
  admin.auth = await freshAuth(ctx, admin.user);
}
beforeEach(refreshSessions);

const exportAudits = (subjectId: string) => AuditEntry.find({ action: 'export.downloaded', subjectId }).lean();

/** Another app instance on the same database: its own service, sharing nothing in memory. */
const anotherInstance = (config: { transparencyMinCount: number } = ctx.config) =>
  createInsightService({ clock: ctx.clock, config, audit: ctx.services.audit, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
const viewer = () => ({ userId: String(investigator.user._id) });

describe('dashboard', () => {
  it('shows investigators where units are, on a map and in a table, filtered by model', async () => {
    const model = await unitsIn(ctx, { KE: 5, UG: 2 }, { riskLevel: 'high', name: 'Mapped camera' });
    const { agent } = await signedInAgent(ctx, 'investigator');
    await ctx.services.insight.refreshDashboard();

    const res = await agent.get(`/dashboard?model=${model._id}`);
    expect(res.status).toBe(200);
    expect(res.text).toContain('<svg class="world"');
    expect(res.text).toMatch(/<title>Kenya: 5<\/title>/);
    expect(res.text).toMatch(/Uganda <span class="muted">UG<\/span><\/td><td class="num">2<\/td>/);
    expect(res.text).not.toMatch(/<script/i);

    const byCheckIn = await agent.get(`/dashboard?model=${model._id}&map=check-in`);
    expect(byCheckIn.text).toMatch(/<title>Syria: 1<\/title>/);
    expect(byCheckIn.text).toMatch(/<tr class="attention"><td>Syria/); // checks in where none is registered
  });

  it('counts units, registrations, flags, reports and cases by database aggregation', async () => {
    const { unit, model } = await makeRegistration(ctx, { riskLevel: 'high', endUserType: 'military', country: 'KE' });
    await makeUnit(ctx, { model });
    await makeFlagCase(ctx, { unitId: unit._id, modelId: model._id, country: 'SY' });
    const { caseId } = await makeReportCase(ctx, { unitId: unit._id, modelId: model._id, country: 'KE', withEvidence: false });
    await ctx.services.insight.refreshDashboard();

    const res = await request(ctx.app).get(`/api/v1/dashboard?model=${model._id}`).set(investigator.auth);
    expect(res.status).toBe(200);
    expect(res.body.units.totals).toEqual({ units: 2, registered: 1, withCheckIns: 0, transferPending: 0 });
    expect(res.body.units.byRegisteredCountry).toEqual([{ country: 'KE', name: 'Kenya', n: 1 }]);
    const rules = Object.fromEntries(res.body.flags.series.map((s: { rule: string; total: number }) => [s.rule, s.total]));
    expect(rules).toMatchObject({ 'high-risk-end-user': 1, 'country-mismatch': 1, 'restricted-country': 0 });
    expect(res.body.flags.months).toHaveLength(12);
    expect(res.body.flags.months.at(-1)).toBe(ctx.clock.now().toISOString().slice(0, 7));
    expect(res.body.cases.total).toBe(await Case.countDocuments({ modelIds: model._id }));
    expect(res.body.cases.byStatus.find((s: { status: string }) => s.status === 'new').n).toBe(3);
    expect(res.body.reports.byCountry.find((c: { country: string }) => c.country === 'KE').n).toBeGreaterThanOrEqual(1);
    expect(res.body.reports.byHarm.find((h: { category: string }) => h.category === 'privacy-surveillance').n).toBeGreaterThanOrEqual(1);
    expect(res.body.reports.byHarm.find((h: { category: string }) => h.category === 'labour-rights').n).toBe(0);
    expect(caseId).toMatch(/^C-/);
  });

  it('measures median and 90th-percentile time to acknowledge, first action and close, and counts overdue cases', async () => {
    const model = await makeModel(ctx, { riskLevel: 'elevated' });
    const caseIds: string[] = [];
    for (let i = 0; i < 3; i++) caseIds.push((await makeReportCase(ctx, { modelId: model._id, withEvidence: false })).caseId);
    const [a, b, c] = caseIds as [string, string, string];
    await Case.updateMany({ _id: { $in: caseIds } }, { $set: { modelIds: [model._id] } });

    ctx.clock.advance(2 * HOUR);
    await ctx.services.cases.acknowledge(a, admin.actor);
    ctx.clock.advance(2 * HOUR);
    await ctx.services.cases.acknowledge(b, admin.actor);
    await ctx.services.cases.triage(b, triageFields(), admin.actor);
    const asked = await ctx.services.cases.addAction(b, { kind: 'request-information', customer: 'Clinic' }, admin.actor);
    await ctx.services.cases.transition(b, { to: 'closed', reason: 'Customer answered.', closureReason: 'unsubstantiated', openActions: { [asked]: 'keep' } }, admin.actor);
    ctx.clock.advance(8 * DAY); // c is now past its 7-day acknowledgement deadline
    await refreshSessions();
    await ctx.services.insight.refreshDashboard();

    const res = await request(ctx.app).get(`/api/v1/dashboard?model=${model._id}`).set(investigator.auth);
    expect(res.status).toBe(200);
    expect(res.body.cases.times.acknowledge).toEqual({ n: 2, medianMs: 2 * HOUR, p90Ms: 4 * HOUR });
    expect(res.body.cases.times.firstAction).toEqual({ n: 1, medianMs: 4 * HOUR, p90Ms: 4 * HOUR });
    expect(res.body.cases.times.close).toEqual({ n: 1, medianMs: 4 * HOUR, p90Ms: 4 * HOUR });
    expect(res.body.cases.overdue).toMatchObject({ acknowledge: 1, any: 1 });
    expect(c).toBeDefined();

    const page = await (await signedInAgent(ctx, 'admin')).agent.get(`/dashboard?model=${model._id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('first leverage action');
    expect(page.text).toMatch(/any deadline<\/a><\/td><td class="num"><strong>1<\/strong>/);
  });

  it('filters by risk level', async () => {
    const low = await unitsIn(ctx, { PE: 4 }, { riskLevel: 'low' });
    await unitsIn(ctx, { PE: 3 }, { riskLevel: 'elevated' });
    await ctx.services.insight.refreshDashboard();
    const res = await request(ctx.app).get('/api/v1/dashboard?risk=low').set(investigator.auth);
    expect(res.status).toBe(200);
    expect(res.body.units.byRegisteredCountry.find((c: { country: string }) => c.country === 'PE').n).toBe(4);
    expect(await Unit.countDocuments({ modelId: low._id })).toBe(4);
  });

  it('serves one snapshot of flags, reports and cases for five minutes, then refreshes it in the background', async () => {
    const { unit, model } = await makeUnit(ctx);
    await makeFlagCase(ctx, { unitId: unit._id, modelId: model._id, country: 'SY' });
    await ctx.services.insight.refreshDashboard();
    const first = (await ctx.services.insight.dashboard({ model: model._id }, viewer()))!;
    const flagsOf = (d: typeof first) => d.flags.series.find((x) => x.rule === 'country-mismatch')!.total;
    expect(flagsOf(first)).toBe(1);
    await makeFlagCase(ctx, { unitId: unit._id, modelId: model._id, country: 'IR' }, 'restricted-country');
    expect(await Flag.countDocuments({ modelId: model._id })).toBe(2);

    ctx.clock.advance(SNAPSHOT_TTL_MS - 1);
    const same = (await ctx.services.insight.dashboard({ model: model._id }, viewer()))!;
    expect(same.asOf).toEqual(first.asOf);
    expect(same.flags.series.find((x) => x.rule === 'restricted-country')!.total).toBe(0);
    ctx.clock.advance(1);
    const stale = (await ctx.services.insight.dashboard({ model: model._id }, viewer()))!; // served at once; the refresh starts
    expect(stale.asOf).toEqual(first.asOf);
    let fresh = stale;
    for (let waited = 0; fresh.asOf.getTime() === first.asOf.getTime() && waited < 10_000; waited += 50) {
      await new Promise((r) => setTimeout(r, 50));
      fresh = (await ctx.services.insight.dashboard({ model: model._id }, viewer()))!;
    }
    expect(fresh.asOf.getTime()).toBe(ctx.clock.now().getTime());
    expect(fresh.flags.series.find((x) => x.rule === 'restricted-country')!.total).toBe(1);
  });

  it('says the figures are on their way when the first snapshot takes longer than the wait', async () => {
    await InsightSnapshot.deleteMany({});
    const insight = anotherInstance();
    expect(await insight.dashboard({}, viewer(), 0)).toBeNull();
    const later = await insight.dashboard({}, viewer(), 10_000);
    expect(later!.units.totals.units).toBe(await Unit.countDocuments({}));
  });

  it('is one snapshot for every app instance: another instance serves the figures it finds fresh instead of computing its own', async () => {
    const { unit, model } = await makeUnit(ctx);
    await makeFlagCase(ctx, { unitId: unit._id, modelId: model._id, country: 'SY' });
    await ctx.services.insight.refreshDashboard();
    const first = (await ctx.services.insight.dashboard({ model: model._id }, viewer()))!;
    await makeFlagCase(ctx, { unitId: unit._id, modelId: model._id, country: 'IR' }, 'restricted-country');
    ctx.clock.advance(60_000);
    const elsewhere = (await anotherInstance().dashboard({ model: model._id }, viewer()))!;
    expect(elsewhere.asOf).toEqual(first.asOf);
    expect(elsewhere.flags.series.find((x) => x.rule === 'restricted-country')!.total).toBe(0);
    expect(await InsightSnapshot.findById('dashboard', { computedAt: 1 }).lean()).toMatchObject({ computedAt: first.asOf });
  });

  it('is for investigators and admins only', async () => {
    const customer = await apiUser(ctx, 'customer');
    expect((await request(ctx.app).get('/api/v1/dashboard').set(customer.auth)).status).toBe(403);
    expect((await request(ctx.app).get('/api/v1/dashboard')).status).toBe(401);
    const anonymous = await request(ctx.app).get('/dashboard');
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.location).toBe('/login?next=%2Fdashboard');
    const { agent } = await signedInAgent(ctx, 'customer');
    expect((await agent.get('/dashboard')).status).toBe(403);
  });

  it('refuses a bad filter with 400 naming the field, and shows the form again', async () => {
    const api = await request(ctx.app).get('/api/v1/dashboard?risk=extreme&map=globe').set(investigator.auth);
    expect(api.status).toBe(400);
    expect(api.body.error.fields).toEqual({ risk: 'Choose low, elevated or high.', map: 'Choose registered or check-in.' });
    const unknown = await request(ctx.app).get('/api/v1/dashboard?model=NO-SUCH-MODEL').set(investigator.auth);
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.fields).toEqual({ model: 'No product model with this SKU.' });

    const { agent } = await signedInAgent(ctx, 'investigator');
    const page = await agent.get('/dashboard?risk=extreme');
    expect(page.status).toBe(400);
    expect(page.text).toContain('Choose low, elevated or high.');
    expect(page.text).toContain('<form method="get" action="/dashboard"');
  });
});

describe('unit tallies kept on write', () => {
  const tallyOf = async (modelId: string) => (await readUnitTallies()).find((t) => t.modelId === modelId);
  const nonZero = (counts: Record<string, number>) => Object.fromEntries(Object.entries(counts).filter(([, n]) => n !== 0));

  it('follow unit creation, CSV import, registration, relocation, transfer approval and refusal, and resale, and the dashboard shows them at once', async () => {
    const model = await makeModel(ctx, { riskLevel: 'high' });
    const { agent } = await signedInAgent(ctx, 'investigator');
    await ctx.services.insight.refreshDashboard();
    const totals = async () => (await request(ctx.app).get(`/api/v1/dashboard?model=${model._id}`).set(investigator.auth)).body.units;

    // Created one by one and imported from CSV: units, none registered.
    await makeUnit(ctx, { model });
    const csv = `sku,serial\n${model._id},IMP-1\n${model._id},IMP-2\n${model._id},IMP-3\n`;
    const { done } = await ctx.services.catalogue.startImport(Readable.from([csv]), 'units.csv', { userId: String(admin.user._id) });
    await done;
    expect(await Unit.countDocuments({ modelId: model._id })).toBe(4);
    expect((await totals()).totals).toEqual({ units: 4, registered: 0, withCheckIns: 0, transferPending: 0 });

    // Registered in KE and GH.
    const { unit: kenyan, user } = await makeRegistration(ctx, { model, country: 'KE' });
    await makeRegistration(ctx, { model, country: 'GH' });
    let units = await totals();
    expect(units.totals).toEqual({ units: 6, registered: 2, withCheckIns: 0, transferPending: 0 });
    expect(units.byRegisteredCountry).toEqual([{ country: 'GH', name: 'Ghana', n: 1 }, { country: 'KE', name: 'Kenya', n: 1 }]);

    // A high-risk model's relocation waits for approval (transfer pending), then moves the unit KE → UG.
    const asked = await ctx.services.registrations.requestTransfer(kenyan._id, { kind: 'relocation', country: 'UG', reason: 'New branch office', effectiveDate: ctx.clock.now() }, String(user._id));
    expect((await totals()).totals).toMatchObject({ registered: 2, transferPending: 1 });
    await ctx.services.registrations.decideTransfer(asked.transfer._id, 'approve', 'Same customer, new site.', String(admin.user._id));
    units = await totals();
    expect(units.totals).toMatchObject({ registered: 2, transferPending: 0 });
    expect(units.byRegisteredCountry).toEqual([{ country: 'GH', name: 'Ghana', n: 1 }, { country: 'UG', name: 'Uganda', n: 1 }]);

    // A refused transfer leaves the unit where it was.
    const refused = await ctx.services.registrations.requestTransfer(kenyan._id, { kind: 'relocation', country: 'TZ', reason: 'Project moved', effectiveDate: ctx.clock.now() }, String(user._id));
    expect((await totals()).totals.transferPending).toBe(1);
    await ctx.services.registrations.decideTransfer(refused.transfer._id, 'refuse', 'Not cleared.', String(admin.user._id));
    expect((await totals()).totals).toMatchObject({ registered: 2, transferPending: 0 });

    // A resale: the unit is unregistered again, at the place the seller named (as the unit summary says).
    const resale = await ctx.services.registrations.requestTransfer(kenyan._id, { kind: 'resale', newOwner: { organisation: 'Lake Hotels', endUserType: 'commercial-company' }, country: 'RW', reason: 'Sold on', effectiveDate: ctx.clock.now() }, String(user._id));
    await ctx.services.registrations.decideTransfer(resale.transfer._id, 'approve', 'Buyer checked.', String(admin.user._id));
    units = await totals();
    expect(units.totals).toEqual({ units: 6, registered: 1, withCheckIns: 0, transferPending: 0 });
    expect(units.byRegisteredCountry).toEqual([{ country: 'GH', name: 'Ghana', n: 1 }, { country: 'RW', name: 'Rwanda', n: 1 }]);
    expect(await Unit.findById(kenyan._id, { status: 1, current: 1 }).lean()).toMatchObject({ status: 'unregistered', current: { country: 'RW' } });

    // What the database holds: one tally document for the model, the page shows it without a refresh.
    const doc = await UnitTally.findById(model._id).lean();
    expect(doc).toMatchObject({ units: 6, registered: 1, transferPending: 0 });
    const page = await agent.get(`/dashboard?model=${model._id}`);
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/<strong>6<\/strong> units/);
    expect(page.text).toMatch(/<title>Rwanda: 1<\/title>/);
    expect(page.text).toMatch(/Rwanda <span class="muted">RW<\/span><\/td><td class="num">1<\/td>/);
  });

  it('count a first check-in as a unit checking in and later ones as moves between countries (the check-ins contract)', async () => {
    const { unit, model } = await makeUnit(ctx);
    // What the check-ins service does per unit and batch: the summary by `_id`, then the tally.
    await Unit.updateOne({ _id: unit._id }, { $set: { 'checkIns.count': 2, 'checkIns.lastCountry': 'KE' } });
    await tallyUnits([unitCheckInChange(model._id, null, 'KE')]);
    expect(await tallyOf(model._id)).toMatchObject({ units: 1, withCheckIns: 1, byCheckInCountry: { KE: 1 } });
    await Unit.updateOne({ _id: unit._id }, { $set: { 'checkIns.count': 3, 'checkIns.lastCountry': 'SO' } });
    await tallyUnits([unitCheckInChange(model._id, 'KE', 'SO'), unitCheckInChange(model._id, 'SO', 'SO')]);
    const kept = (await tallyOf(model._id))!;
    expect(kept).toMatchObject({ units: 1, withCheckIns: 1 });
    expect(nonZero(kept.byCheckInCountry)).toEqual({ SO: 1 });
    const res = await request(ctx.app).get(`/api/v1/dashboard?model=${model._id}`).set(investigator.auth);
    expect(res.body.units.byCheckInCountry).toEqual([{ country: 'SO', name: 'Somalia', n: 1 }]);
    await rebuildUnitTallies({ now: ctx.clock.now() });
    expect(await tallyOf(model._id)).toMatchObject({ withCheckIns: 1, byCheckInCountry: { SO: 1 } });
  });

  it('are rebuilt from the units with the same figures as kept on write, and rebuilt by the app when never built', async () => {
    const model = await makeModel(ctx, { riskLevel: 'elevated' });
    for (const country of ['KE', 'KE', 'NG']) await makeRegistration(ctx, { model, country });
    await makeUnit(ctx, { model });
    await bulkUnits(ctx, model._id, 5, (i) => ({ country: i < 2 ? 'NG' : null, checkInCountry: i % 2 ? 'BJ' : null }));
    const kept = await tallyOf(model._id);
    expect(kept).toMatchObject({ units: 9, registered: 5, withCheckIns: 2, transferPending: 0 });

    await UnitTally.updateOne({ _id: model._id }, { $set: { units: 1000, 'byRegisteredCountry.KE': 7 } }); // drifted
    const done = await rebuildUnitTallies({ now: ctx.clock.now() });
    expect(done.units).toBe(await Unit.countDocuments({}));
    const rebuilt = (await tallyOf(model._id))!;
    expect({ ...rebuilt, byRegisteredCountry: nonZero(rebuilt.byRegisteredCountry), byCheckInCountry: nonZero(rebuilt.byCheckInCountry) }).toEqual({
      ...kept!,
      byRegisteredCountry: nonZero(kept!.byRegisteredCountry),
      byCheckInCountry: nonZero(kept!.byCheckInCountry),
    });
    expect(rebuilt.byRegisteredCountry).toEqual({ KE: 2, NG: 3 });
    expect(rebuilt.byCheckInCountry).toEqual({ BJ: 2 });
    expect(await InsightState.findById(UNIT_TALLIES).lean()).toMatchObject({ units: done.units, rebuiltAt: ctx.clock.now() });

    // A database that never had a rebuild (first start of this version): the dashboard builds the tallies itself.
    await InsightState.deleteMany({});
    await UnitTally.deleteMany({});
    const insight = anotherInstance();
    const figures = (await insight.dashboard({ model: model._id }, viewer(), 10_000))!;
    expect(figures.units.totals).toEqual({ units: 9, registered: 5, withCheckIns: 2, transferPending: 0 });
    expect(await InsightState.findById(UNIT_TALLIES).lean()).not.toBeNull();
    expect(await UnitTally.countDocuments({ _id: model._id })).toBe(1);
  });
});

describe('the first tally rebuild across instances', () => {
  it('runs in one instance: another one waits while it builds, and takes over a rebuild whose instance stopped', async () => {
    const model = await makeModel(ctx);
    await bulkUnits(ctx, model._id, 3, () => ({ country: 'KE' }));
    await InsightState.deleteMany({});
    await UnitTally.deleteMany({});
    // Another instance claimed the rebuild a moment ago and is still at it.
    await InsightState.create({ _id: UNIT_TALLIES, status: 'building', startedAt: ctx.clock.now(), heartbeatAt: ctx.clock.now() });
    const second = anotherInstance();
    expect(await second.dashboard({ model: model._id }, viewer(), 1_500)).toBeNull();
    expect(await UnitTally.countDocuments({})).toBe(0); // it waited instead of rebuilding too

    ctx.clock.advance(3 * 60_000); // that instance stopped: its heartbeat is old
    await refreshSessions();
    await second.ensureUnitTallies();
    expect(await InsightState.findById(UNIT_TALLIES).lean()).toMatchObject({ status: 'ready', rebuiltAt: ctx.clock.now() });
    expect((await readUnitTallies()).find((t) => t.modelId === model._id)).toMatchObject({ units: 3, registered: 3, byRegisteredCountry: { KE: 3 } });
    // Ready: a third instance finds nothing to do.
    const before = await InsightState.findById(UNIT_TALLIES).lean();
    await anotherInstance().ensureUnitTallies();
    expect(await InsightState.findById(UNIT_TALLIES).lean()).toEqual(before);
  });
});

describe('transparency report', () => {
  // These tests go back in time to have periods of their own; later tests continue after them.
  afterAll(() => ctx.clock.set('2026-06-01T10:00:00Z'));

  /** `n` reports (each with its case) received on `day`. */
  async function reportsOn(day: string, n: number) {
    ctx.clock.set(`${day}T09:00:00Z`);
    const caseIds: string[] = [];
    for (let i = 0; i < n; i++) caseIds.push((await makeReportCase(ctx, { country: 'KE', withEvidence: false, contact: { name: 'Achieng Otieno', email: 'achieng@haki.example' } })).caseId);
    return caseIds;
  }
  const publicReport = (query: string) => request(ctx.app).get(`/api/v1/transparency?${query}`);

  type Published = number | { lessThan: number } | { withheld: true };
  /** Every count of a report by figure (`received`, `status:closed`, `harm:…`, `action:…`, `times:close`). */
  function countsOf(body: { reports: { received: Published; byStatus: Array<{ status: string; count: Published }> }; cases: { opened: Published; byHarmCategory: Array<{ category: string; count: Published }>; byOutcome: Array<{ outcome: string; count: Published }> }; leverageActions: Array<{ kind: string; count: Published }>; responseTimes: Record<string, { cases: Published }> }) {
    return new Map<string, Published>([
      ['received', body.reports.received],
      ...body.reports.byStatus.map((s) => [`status:${s.status}`, s.count] as [string, Published]),
      ['opened', body.cases.opened],
      ...body.cases.byOutcome.map((o) => [`outcome:${o.outcome}`, o.count] as [string, Published]),
      ...body.cases.byHarmCategory.map((h) => [`harm:${h.category}`, h.count] as [string, Published]),
      ...body.leverageActions.map((a) => [`action:${a.kind}`, a.count] as [string, Published]),
      ...Object.entries(body.responseTimes).map(([k, t]) => [`times:${k}`, t.cases] as [string, Published]),
    ]);
  }

  it('publishes counts at or above the threshold and hides smaller ones as "fewer than 5"', async () => {
    const caseIds = await reportsOn('2025-03-10', 6);
    ctx.clock.advance(DAY);
    for (const id of caseIds) {
      await ctx.services.cases.acknowledge(id, admin.actor);
      await ctx.services.cases.triage(id, triageFields({ harmCategories: ['privacy-surveillance'] }), admin.actor);
    }
    for (const id of caseIds) await ctx.services.cases.addAction(id, { kind: 'request-information', customer: 'Clinic' }, admin.actor);
    for (const id of caseIds.slice(0, 2)) await ctx.services.cases.addAction(id, { kind: 'audit-visit' }, admin.actor);
    ctx.clock.set('2025-04-01T08:00:00Z'); // the month has ended

    const res = await publicReport('period=2025-03');
    expect(res.status).toBe(200);
    expect(res.body.period).toEqual({ name: '2025-03', kind: 'month', from: '2025-03-01', to: '2025-03-31' });
    expect(res.body.threshold).toBe(5);
    expect(res.body.reports.received).toBe(6);
    expect(res.body.reports.byStatus).toContainEqual({ status: 'acknowledged', count: 6 });
    expect(res.body.reports.byStatus).toContainEqual({ status: 'received', count: { lessThan: 5 } }); // none left unacknowledged
    expect(res.body.cases.byHarmCategory).toContainEqual({ category: 'privacy-surveillance', count: 6 });
    expect(res.body.cases.byHarmCategory).toContainEqual({ category: 'labour-rights', count: { lessThan: 5 } });
    expect(res.body.leverageActions).toContainEqual({ kind: 'audit-visit', count: { lessThan: 5 } }); // 2 taken
    expect(res.body.responseTimes.acknowledge).toEqual({ cases: 6, medianDays: 1 });
    expect(res.body.leverageActions).toContainEqual({ kind: 'request-information', count: 6 });
    expect(res.body.responseTimes.firstAction).toEqual({ cases: 6, medianDays: 1 });
    expect(res.body.responseTimes.close).toEqual({ cases: { lessThan: 5 }, medianDays: null }); // none closed

    // The quarter holds the same six (January and February had none).
    const quarter = await publicReport('period=2025-Q1');
    expect(quarter.status).toBe(200);
    expect(quarter.body.period).toEqual({ name: '2025-Q1', kind: 'quarter', from: '2025-01-01', to: '2025-03-31' });
    expect(quarter.body.reports.received).toBe(6);

    const text = JSON.stringify(res.body);
    expect(text).not.toMatch(/Achieng|haki\.example|C-20\d\d-|rpt_/);
    expect(await Case.countDocuments({ _id: { $in: caseIds }, status: 'triaged' })).toBe(6);
  });

  it('shows the public page without signing in, with small counts hidden and the periods offered', async () => {
    await reportsOn('2024-05-02', 3);
    ctx.clock.set('2024-06-02T08:00:00Z');
    const res = await request(ctx.app).get('/transparency?period=2024-05');
    expect(res.status).toBe(200);
    expect(res.text).toMatch(/<strong>fewer than 5<\/strong> reports received/);
    expect(res.text).not.toMatch(/<strong>3<\/strong>/);
    expect(res.text).not.toContain('Achieng');
    expect(res.text).toContain('<option value="2024-05" selected>May 2024</option>');
    expect(res.text).toContain('<option value="2024-Q1">2024 Q1 (January–March)</option>');
    expect(res.text).not.toContain('value="2024-06"'); // still running
    expect(res.text).not.toContain('type="date"');

    const byDefault = await request(ctx.app).get('/transparency');
    expect(byDefault.status).toBe(200);
    expect(byDefault.text).toContain('<option value="2024-Q1" selected>'); // the last quarter that has ended
  });

  it('follows TRANSPARENCY_MIN_COUNT', async () => {
    const insight = anotherInstance({ transparencyMinCount: 2 });
    ctx.clock.set('2024-07-01T09:00:00Z');
    for (let i = 0; i < 3; i++) await makeReportCase(ctx, { withEvidence: false });
    ctx.clock.set('2024-08-01T00:00:00Z');
    const report = await insight.transparency({ kind: 'month', year: 2024, index: 7 });
    expect(report.reports.received).toBe(3);
    expect(report.cases.byOutcome).toContainEqual({ outcome: 'open', count: 3 });
    expect(report.cases.byOutcome).toContainEqual({ outcome: 'substantiated', count: { lessThan: 2 } });
    expect(await Case.countDocuments({ openedAt: new Date('2024-07-01T09:00:00Z') })).toBe(3);
  });

  it('hides more counts where a small one could be worked out from its total', async () => {
    // Pure rule: which cells are hidden, for a total and its parts.
    const hiddenOf = (total: number, parts: number[], min: number, addsUp = true) => {
      const values = new Map<string, number>([['total', total], ...parts.map((n, i): [string, number] => [`p${i}`, n])]);
      return [...suppressCells(values, addsUp ? [{ total: 'total', parts: parts.map((_, i) => `p${i}`) }] : [], min)].sort();
    };
    expect(hiddenOf(12, [10, 2], 5)).toEqual(['p0', 'p1']); // 12 − 10 would give the 2
    expect(hiddenOf(12, [6, 5, 1], 5)).toEqual(['p1', 'p2']);
    expect(hiddenOf(3, [3], 5)).toEqual(['p0', 'total']);
    expect(hiddenOf(12, [6, 3, 3], 5)).toEqual(['p1', 'p2']); // two hidden: 6 of which neither is known
    expect(hiddenOf(12, [8, 2, 2], 5)).toEqual(['p0', 'p1', 'p2']); // 12 − 8 would give 4, a small count
    expect(hiddenOf(12, [12, 0], 5)).toEqual(['p1']); // that nobody is in a part may be known
    expect(hiddenOf(12, [10, 2], 5, false)).toEqual(['p1']);

    // Through the service: threshold 2, reports by status 2 + 2 + 2 + 1 = 7 received.
    const insight = anotherInstance({ transparencyMinCount: 2 });
    ctx.clock.set('2023-02-10T09:00:00Z');
    const made = [];
    for (let i = 0; i < 7; i++) made.push(await makeReportCase(ctx, { withEvidence: false }));
    const statuses = ['received', 'received', 'acknowledged', 'acknowledged', 'under-investigation', 'under-investigation', 'closed'];
    for (const [i, m] of made.entries()) await Report.updateOne({ _id: m.reportId }, { $set: { status: statuses[i] } });
    ctx.clock.set('2023-04-01T00:00:00Z');
    const report = await insight.transparency({ kind: 'month', year: 2023, index: 2 });
    expect(report.reports.received).toBe(7);
    expect(report.reports.byStatus).toEqual([
      { status: 'received', count: { withheld: true } },
      { status: 'acknowledged', count: 2 },
      { status: 'under-investigation', count: 2 },
      { status: 'closed', count: { lessThan: 2 } },
    ]);
    expect(await Report.countDocuments({ receivedAt: { $gte: new Date('2023-02-01T00:00:00Z'), $lt: new Date('2023-03-01T00:00:00Z') } })).toBe(7);
  });

  it('cannot be differenced: periods of days are refused, and no small count follows from subtracting the months and quarter offered', async () => {
    // Issue 20, finding 6: six reports, then exactly one more on a later day.
    await reportsOn('2022-10-05', 6);
    await reportsOn('2022-11-03', 1);

    // Spans of days, a day, and a period still running are refused, naming the field.
    ctx.clock.set('2022-11-20T12:00:00Z');
    const days = await publicReport('from=2022-10-01&to=2022-11-02');
    expect(days.status).toBe(400);
    expect(days.body.error.fields).toEqual({ from: 'Periods are calendar months or quarters: use period=2026-03 or period=2026-Q1.', to: 'Periods are calendar months or quarters: use period=2026-03 or period=2026-Q1.' });
    const oneDay = await publicReport('period=2022-11-03');
    expect(oneDay.status).toBe(400);
    expect(oneDay.body.error.fields).toEqual({ period: 'Choose a calendar month or quarter, like 2026-03 or 2026-Q1.' });
    const running = await publicReport('period=2022-11');
    expect(running.status).toBe(400);
    expect(running.body.error.fields).toEqual({ period: 'This period has not ended yet: choose a month or quarter that has.' });
    const page = await request(ctx.app).get('/transparency?to=2022-11-03');
    expect(page.status).toBe(400);
    expect(page.text).toContain('Periods are calendar months or quarters');

    // Every period offered once the quarter has ended: the one report of November stays hidden.
    ctx.clock.set('2023-01-05T12:00:00Z');
    const offered = ['2022-10', '2022-11', '2022-12', '2022-Q4'];
    const reports = new Map<string, Map<string, Published>>();
    for (const period of offered) {
      const res = await publicReport(`period=${period}`);
      expect(res.status).toBe(200);
      reports.set(period, countsOf(res.body));
    }
    const received = offered.map((p) => reports.get(p)!.get('received'));
    expect(received).toEqual([{ withheld: true }, { lessThan: 5 }, { lessThan: 5 }, 7]); // October's 6 would give November's 1

    const quarter = reports.get('2022-Q4')!;
    const months = offered.slice(0, 3).map((p) => reports.get(p)!);
    for (const [figure, total] of quarter) {
      if (typeof total !== 'number') continue;
      const shown = months.map((m) => m.get(figure)).filter((c): c is number => typeof c === 'number');
      if (shown.length === 3) continue;
      const worked = total - shown.reduce((a, b) => a + b, 0);
      expect({ figure, worked: worked > 0 && worked < 5 }).toEqual({ figure, worked: false });
    }
    for (const counts of [...months, quarter]) {
      for (const [total, parts] of [['received', ['received', 'acknowledged', 'under-investigation', 'closed'].map((s) => `status:${s}`)], ['opened', ['open', 'substantiated', 'unsubstantiated', 'referred', 'duplicate', 'out-of-scope'].map((o) => `outcome:${o}`)]] as const) {
        const t = counts.get(total);
        if (typeof t !== 'number') continue;
        const worked = t - parts.map((p) => counts.get(p)).reduce<number>((a, c) => a + (typeof c === 'number' ? c : 0), 0);
        expect({ total, worked: worked > 0 && worked < 5 }).toEqual({ total, worked: false });
      }
    }
    expect(await Report.countDocuments({ receivedAt: { $gte: new Date('2022-11-01T00:00:00Z'), $lt: new Date('2022-12-01T00:00:00Z') } })).toBe(1);
  });
});

describe('exports', () => {
  it('streams units as CSV with the page filters, and writes the export to the audit log', async () => {
    const model = await unitsIn(ctx, { KE: 3, UG: 2 });
    const before = (await exportAudits('units.csv')).length;
    const res = await request(ctx.app).get(`/api/v1/exports/units?model=${model._id}&country=KE`).set(investigator.auth);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(res.headers['content-disposition']).toMatch(/^attachment; filename="downstream-units-\d{8}-\d{6}\.csv"$/);
    const lines = res.text.trim().split('\r\n');
    expect(lines[0]).toBe('unitId,modelId,serial,status,currentCountry,currentOwner,endUserType,registrationId,firstSaleCountry,channelPartner,soldAt,checkIns,lastCheckInCountry,updates,warranty');
    expect(lines).toHaveLength(4);
    expect(lines.slice(1).every((l) => l.startsWith(`${model._id}:`) && l.includes(',KE,'))).toBe(true);

    const audits = await exportAudits('units.csv');
    expect(audits).toHaveLength(before + 1);
    expect(audits.at(-1)).toMatchObject({ actorKind: 'user', actorId: String(investigator.user._id), detail: { kind: 'units', format: 'csv', filters: { model: model._id, country: 'KE' } } });
  });

  it('exports JSON arrays of registrations, check-in summaries, cases and actions', async () => {
    const { unit, model, registration } = await makeRegistration(ctx, { riskLevel: 'high', country: 'GH', endUserType: 'police-security' });
    const run = { country: 'TG', count: 4, firstAt: ctx.clock.now(), lastAt: ctx.clock.now(), firstFirmware: '3.0', lastFirmware: '3.0' };
    const period = ctx.clock.now().toISOString().slice(0, 7);
    await Unit.updateOne({ _id: unit._id }, { $set: { checkIns: { count: 4, lastAt: ctx.clock.now(), lastCountry: 'TG', lastFirmware: '3.0', lastRun: run, periods: [period] } } });
    await UnitCheckInHistory.create({ _id: `${unit._id}:${period}`, unitId: unit._id, period, count: 4, runs: [run] });
    const { caseId } = await makeReportCase(ctx, { unitId: unit._id, modelId: model._id, withEvidence: false });
    await ctx.services.cases.addAction(caseId, { kind: 'withhold-updates', unitIds: [unit._id] }, admin.actor);

    const get = (kind: string, query = '') => request(ctx.app).get(`/api/v1/exports/${kind}?format=json&model=${model._id}${query}`).set(admin.auth);
    const regs = await get('registrations');
    expect(regs.status).toBe(200);
    expect(regs.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(regs.body).toEqual([expect.objectContaining({ registrationId: registration._id, country: 'GH', endUserType: 'police-security' })]);
    expect(JSON.stringify(regs.body)).not.toContain('it@clinic.example'); // contact details stay out

    expect((await get('check-ins')).body).toEqual([expect.objectContaining({ unitId: unit._id, checkIns: 4, lastCountry: 'TG', registeredCountry: 'GH', countries: ['TG'] })]);
    const cases = (await get('cases')).body as Array<{ caseId: string; actions: number }>;
    expect(cases.find((c) => c.caseId === caseId)).toMatchObject({ actions: 1, status: 'new' });
    expect((await get('actions', '&status=open')).body).toEqual([expect.objectContaining({ caseId, kind: 'withhold-updates', status: 'open', units: 1 })]);
    expect((await get('actions', '&status=done')).body).toEqual([]);
    expect((await exportAudits('actions.json')).length).toBe(2);
  });

  it('leaves a case out of the exports and dashboard of an investigator conflicted on it, and keeps it for the others', async () => {
    const { unit, model } = await makeRegistration(ctx, { country: 'GH' });
    const { caseId } = await makeReportCase(ctx, { unitId: unit._id, modelId: model._id, withEvidence: false });
    await ctx.services.cases.addAction(caseId, { kind: 'request-information', customer: 'Clinic' }, admin.actor);
    const conflicted = await makeStaff(ctx, 'investigator');
    await ctx.services.cases.declareConflict(caseId, String(conflicted.user._id), 'Former employer of the reporter.', admin.actor);
    expect((await request(ctx.app).get(`/api/v1/cases/${caseId}`).set(conflicted.auth)).status).toBe(404); // the rule followed

    const get = (who: { auth: Record<string, string> }, kind: string, format = 'json') => request(ctx.app).get(`/api/v1/exports/${kind}?format=${format}&model=${model._id}`).set(who.auth);
    for (const kind of ['cases', 'actions']) {
      const hidden = await get(conflicted, kind);
      expect(hidden.status).toBe(200);
      expect(hidden.body).toEqual([]);
      const csv = await get(conflicted, kind, 'csv');
      expect(csv.status).toBe(200);
      expect(csv.text).not.toContain(caseId);
      const shown = await get(investigator, kind);
      expect(shown.status).toBe(200);
      expect(shown.body).toEqual([expect.objectContaining({ caseId })]);
    }

    await ctx.services.insight.refreshDashboard();
    const casesSeenBy = async (who: { auth: Record<string, string> }) => (await request(ctx.app).get(`/api/v1/dashboard?model=${model._id}`).set(who.auth)).body.cases;
    expect(await casesSeenBy(conflicted)).toMatchObject({ total: 0, times: { firstAction: { n: 0 } } });
    expect(await casesSeenBy(investigator)).toMatchObject({ total: 1, times: { firstAction: { n: 1 } } });
    expect((await Case.findById(caseId, { conflictedUserIds: 1 }).lean())!.conflictedUserIds.map(String)).toEqual([String(conflicted.user._id)]);
  });

  it('is for staff only and refuses bad filters naming the field', async () => {
    const customer = await apiUser(ctx, 'customer');
    expect((await request(ctx.app).get('/api/v1/exports/units').set(customer.auth)).status).toBe(403);
    expect((await request(ctx.app).get('/api/v1/exports/cases')).status).toBe(401);
    const bad = await request(ctx.app).get('/api/v1/exports/units?format=xlsx&country=Kenya&status=lost').set(investigator.auth);
    expect(bad.status).toBe(400);
    expect(bad.body.error.fields).toEqual({ format: 'Choose csv or json.', country: 'Use a two-letter ISO country code, e.g. KE.', status: 'Choose one of: unregistered, registered, transfer-pending.' });
    const noStatus = await request(ctx.app).get('/api/v1/exports/check-ins?status=open').set(investigator.auth);
    expect(noStatus.status).toBe(400);
    expect(noStatus.body.error.fields).toEqual({ status: 'This export has no status filter.' });
  });

  it('offers the same exports from the dashboard with the page session', async () => {
    const model = await unitsIn(ctx, { CL: 2 });
    const { agent } = await signedInAgent(ctx, 'investigator');
    await ctx.services.insight.refreshDashboard();
    const page = await agent.get(`/dashboard?model=${model._id}`);
    expect(page.text).toContain(`href="/dashboard/exports/units?model=${model._id}&amp;format=csv"`);
    const csv = await agent.get(`/dashboard/exports/units?model=${model._id}&format=csv`);
    expect(csv.status).toBe(200);
    expect(csv.text.trim().split('\r\n')).toHaveLength(3);
  });
});

describe('EPCIS 2.0', () => {
  it("exports a unit's first sale, registration, transfer and check-ins as ObjectEvents that validate against the EPCIS 2.0 schema", async () => {
    const { unit, model, user } = await makeRegistration(ctx, { country: 'KE' });
    await ctx.services.catalogue.updateUnit(unit._id, { firstSale: { channelPartner: 'Savannah Distribution', shipToCountry: 'KE', soldAt: new Date('2025-12-01T00:00:00Z') } }, { userId: null });
    ctx.clock.advance(DAY);
    await ctx.services.registrations.requestTransfer(unit._id, { kind: 'relocation', country: 'UG', reason: 'New branch office', effectiveDate: ctx.clock.now() }, String(user._id));
    const key = await ctx.services.auth.createApiKey({ name: 'updates', scopes: ['check-ins'] }, null);
    await ctx.services.checkIns.ingest(String(key.apiKey._id), [1, 2, 3].map((h) => ({ serial: unit.serial, model: model._id, firmware: `2.${h}`, observedAt: new Date(ctx.clock.now().getTime() + h * HOUR), country: 'UG' })));
    await ctx.services.checkIns.settled();
    await refreshSessions();

    const res = await request(ctx.app).get(`/api/v1/exports/epcis/units/${unit._id}`).set(investigator.auth);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/ld\+json/);
    const validate = epcisSchema();
    expect(validate.errors ?? []).toEqual([]);
    const valid = validate(res.body);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
    // The schema has teeth: an event without its time zone offset is refused.
    const broken = structuredClone(res.body);
    delete broken.epcisBody.eventList[0].eventTimeZoneOffset;
    expect(validate(broken)).toBe(false);

    const events = res.body.epcisBody.eventList as Array<Record<string, unknown>>;
    expect(events.map((e) => e.bizStep)).toEqual(['shipping', 'accepting', 'transporting', 'urn:downstream:bizstep:firmware-check-in']);
    expect(events.every((e) => e.type === 'ObjectEvent' && (e.epcList as string[])[0] === `urn:downstream:unit:${unit._id}` && e.eventTimeZoneOffset === '+00:00')).toBe(true);
    expect(events[1]).toMatchObject({ bizLocation: { id: 'urn:downstream:location:country:KE' }, disposition: 'in_progress' });
    expect(events[2]).toMatchObject({ destinationList: [{ type: 'location', destination: 'urn:downstream:location:country:UG' }] });
    expect(events[3]).toMatchObject({ readPoint: { id: 'urn:downstream:location:country:UG' }, 'downstream:checkInCount': 3, 'downstream:lastFirmware': '2.3' });
    expect(JSON.stringify(res.body)).not.toContain('Wanjiru'); // parties by id, never by name
    expect(await exportAudits(`epcis:unit:${unit._id}`)).toHaveLength(1);
  });

  it("streams a model's units as one EPCIS document that validates", async () => {
    const model = await makeModel(ctx);
    for (let i = 0; i < 3; i++) await makeRegistration(ctx, { model, country: 'RW' });
    const res = await request(ctx.app).get(`/api/v1/exports/epcis/models/${model._id}`).set(investigator.auth).buffer(true).parse((r, cb) => {
      let text = '';
      r.on('data', (c: Buffer) => (text += c.toString('utf8')));
      r.on('end', () => cb(null, JSON.parse(text)));
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-disposition']).toBe(`attachment; filename="downstream-epcis-${model._id}.jsonld"`);
    expect(epcisSchema()(res.body)).toBe(true);
    expect(res.body.epcisBody.eventList).toHaveLength(3);
  });

  it('answers 404 for an unknown unit or model and 400 for a malformed id', async () => {
    expect((await request(ctx.app).get('/api/v1/exports/epcis/units/NOPE:NOTHING').set(investigator.auth)).status).toBe(404);
    expect((await request(ctx.app).get('/api/v1/exports/epcis/models/NOPE').set(investigator.auth)).status).toBe(404);
    const bad = await request(ctx.app).get('/api/v1/exports/epcis/units/no-colon').set(investigator.auth);
    expect(bad.status).toBe(400);
    expect(bad.body.error.fields).toEqual({ unitId: 'Use a unit id like SKU:SERIAL.' });
  });

  it('leaves out transfers that did not happen', () => {
    const at = new Date('2026-01-01T00:00:00Z');
    const events = unitEpcisEvents({ _id: 'M:1', modelId: 'M', createdAt: at }, [], [{ _id: 'trf_1', registrationId: 'reg_1', kind: 'resale', status: 'pending', newLocation: { country: 'KE' }, effectiveDate: at, createdAt: at }]);
    expect(events).toEqual([]);
  });
});

// Last: 100,000 units make every later scan slow (FerretDB v1 scans on any filter but `_id`).
describe('a large export', () => {
  it('streams 100,000 units without holding them: every row arrives', async () => {
    const model = await makeModel(ctx, { riskLevel: 'low' });
    await bulkUnits(ctx, model._id, 100_000, (i) => ({ country: i % 2 ? 'KE' : 'TZ' }));
    const res = await request(ctx.app).get(`/api/v1/exports/units?model=${model._id}`).set(investigator.auth).buffer(true).parse(lineCounter as never);
    expect(res.status).toBe(200);
    const body = res.body as { lines: number; bytes: number; head: string };
    expect(body.lines).toBe(100_001); // header + one line per unit
    expect(body.head.split('\r\n')[1]).toMatch(new RegExp(`^${model._id}:B\\d{7},`));
  }, 600_000);
});
