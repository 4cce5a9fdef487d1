import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { Flag } from '../models/flags';
import { Visit } from '../models/verification';
import { createTestContext, type TestContext } from './helpers/context';
import { makeRegistration } from './helpers/catalogue';
import { apiUser, signedInAgent } from './helpers/factories';

describe('post-shipment verification visits', () => {
  let ctx: TestContext;
  let staff: Awaited<ReturnType<typeof apiUser>>;
  beforeAll(async () => {
    ctx = await createTestContext({ VERIFICATION_DUE_MONTHS: '6' });
    staff = await apiUser(ctx, 'investigator');
  });
  afterAll(() => ctx.close());

  const plan = (unitIds: string[], fields: Record<string, unknown> = {}) =>
    request(ctx.app).post('/api/v1/visits').set(staff.auth).send({ plannedFor: '2026-02-10', inspector: 'A. Mwangi', site: 'Wildlife HQ, Nairobi', unitIds, checklist: ['serial plate readable', 'installed at the declared site'], ...fields });

  it('plans a visit and, when it does not find a unit, raises verification-failed and shows it on that unit\'s timeline', async () => {
    const seen = await makeRegistration(ctx, { riskLevel: 'high' });
    const missing = await makeRegistration(ctx, { riskLevel: 'high' });
    const planned = await plan([seen.unit._id, missing.unit._id]);
    expect(planned.status).toBe(201);
    expect(planned.body.visit).toMatchObject({ status: 'planned', unitIds: [seen.unit._id, missing.unit._id], outcome: null });

    const res = await request(ctx.app)
      .post(`/api/v1/visits/${planned.body.visit.id}/outcome`)
      .set(staff.auth)
      .field({ finding_0: 'seen', serial_0: 'yes', note_0: '', finding_1: 'not-found', note_1: 'Store room empty; staff say it was moved to Goma.', locationConfirmed: 'yes', endUseConsistent: 'no', findings: 'One radio missing.' });
    expect(res.status).toBe(200);
    expect(res.body.flaggedUnits).toEqual([missing.unit._id]);
    expect(res.body.visit.outcome).toMatchObject({ locationConfirmed: true, endUseConsistent: false, units: [{ unitId: seen.unit._id, finding: 'seen', serialConfirmed: true }, { unitId: missing.unit._id, finding: 'not-found', serialConfirmed: false }] });

    const flag = await Flag.findOne({ rule: 'verification-failed', unitId: missing.unit._id }).lean();
    expect(flag).toMatchObject({ source: { kind: 'visit', id: planned.body.visit.id }, evidence: { finding: 'not-found', site: 'Wildlife HQ, Nairobi' }, caseId: expect.stringMatching(/^C-2026-/) });
    expect(await Flag.countDocuments({ rule: 'verification-failed', unitId: seen.unit._id })).toBe(0);
    expect(await AuditEntry.countDocuments({ action: 'visit.outcome-recorded', subjectId: planned.body.visit.id })).toBe(1);

    const timeline = await request(ctx.app).get(`/api/v1/units/${encodeURIComponent(missing.unit._id)}/timeline`).set(staff.auth);
    expect(timeline.body.entries).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'visit', title: 'Verification visit (unit not found)' }), expect.objectContaining({ kind: 'flag', title: 'Red flag: verification-failed' })]));
    // The owner sees neither the visit nor the flag.
    const owner = (await request(ctx.app).get(`/api/v1/units/${encodeURIComponent(missing.unit._id)}/timeline`).set({ Authorization: `Bearer ${(await ctx.services.auth.issueSession(missing.user as never)).token}` })).body;
    expect(owner.entries.map((e: { kind: string }) => e.kind)).not.toContain('visit');

    // An outcome is recorded once.
    const again = await request(ctx.app).post(`/api/v1/visits/${planned.body.visit.id}/outcome`).set(staff.auth).field({ finding_0: 'seen', finding_1: 'seen' });
    expect(again.status).toBe(409);
  });

  it('names bad fields of a plan and of an outcome, and keeps what was typed on the page', async () => {
    const bad = await plan(['NOPE:1'], { plannedFor: 'next week', inspector: '' });
    expect(bad.status).toBe(400);
    expect(Object.keys(bad.body.error.fields).sort()).toEqual(['inspector', 'plannedFor']);
    const unknown = await plan(['NOPE:1']);
    expect(unknown.body.error.fields).toEqual({ unitIds: 'No such unit: NOPE:1.' });

    const { unit } = await makeRegistration(ctx, { riskLevel: 'high' });
    const planned = await plan([unit._id]);
    const missingFinding = await request(ctx.app).post(`/api/v1/visits/${planned.body.visit.id}/outcome`).set(staff.auth).field({ findings: 'x' });
    expect(missingFinding.status).toBe(400);
    expect(missingFinding.body.error.fields).toHaveProperty('finding_0');

    const { agent } = await signedInAgent(ctx, 'investigator');
    const page = await agent.form('/visits/new', { plannedFor: '2026-02-10', inspector: '', site: 'Depot 4, Mombasa', unitIds: unit._id });
    expect(page.status).toBe(400);
    expect(page.text).toContain('The inspector is required.');
    expect(page.text).toContain('value="Depot 4, Mombasa"');
    expect(await Visit.countDocuments({ site: 'Depot 4, Mombasa' })).toBe(0);
  });

  it('lists highest-risk units with no verification in N months as due, until a visit sees them', async () => {
    const { unit } = await makeRegistration(ctx, { riskLevel: 'high' });
    const low = await makeRegistration(ctx, { riskLevel: 'low' });
    const due = async () => (await request(ctx.app).get('/api/v1/visits/due?perPage=200').set(staff.auth)).body.items.map((u: { unitId: string }) => u.unitId);
    expect(await due()).toContain(unit._id);
    expect(await due()).not.toContain(low.unit._id);

    const planned = await plan([unit._id]);
    await request(ctx.app).post(`/api/v1/visits/${planned.body.visit.id}/outcome`).set(staff.auth).field({ finding_0: 'seen', serial_0: '1', locationConfirmed: '1', endUseConsistent: '1' });
    expect(await due()).not.toContain(unit._id);

    // The dashboard lists the due units and the certificates expiring soon.
    const { agent } = await signedInAgent(ctx, 'investigator');
    const dashboard = await agent.get('/dashboard');
    expect(dashboard.status).toBe(200);
    expect(dashboard.text).toContain('high-risk units not verified in 6 months');
    expect(dashboard.text).toContain('end-use certificates expiring in 30 days');

    // Seven months on it is due again (signed in afresh: sessions do not last months).
    ctx.clock.advance(7 * 31 * 86_400_000);
    staff = await apiUser(ctx, 'investigator');
    expect(await due()).toContain(unit._id);
  });
});
