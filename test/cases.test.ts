import fs from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { Case, OpenCaseKey } from '../models/cases';
import { Unit } from '../models/catalogue';
import { Flag } from '../models/flags';
import { Registration } from '../models/registrations';
import { Report } from '../models/reports';
import { addMonths, priorityOf } from '../server/services/cases';
import { OPENER_GRACE_MS } from '../server/services/cases/opening';
import { actorOf, freshAuth, makeFlagCase, makeReportCase, makeStaff, triageFields } from './helpers/cases';
import { makeRegistration, makeUnit } from './helpers/catalogue';
import { jpegWithGps, notAnImage, pngImage, sha256 } from './helpers/reports';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createStores } from '../server/store';
import { noteCaseChanged, RECENT_CASE_CHANGES } from '../server/store/case-queue';
import { createTestContext, type TestContext } from './helpers/context';
import { apiUser, makeUser, pageAgent, signedInAgent } from './helpers/factories';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const CUSTODIAN_EMAIL = 'identity-custodian@example.test';

describe('investigation cases', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ RATE_LIMIT_PUBLIC_POST_PER_MIN: '10000', RATE_LIMIT_LOGIN_PER_15MIN: '10000', IDENTITY_CUSTODIAN_EMAILS: CUSTODIAN_EMAIL });
  });
  afterAll(() => ctx.close());

  /** A report case with `investigator` assigned (through the service). */
  async function assignedReportCase(fields: Parameters<typeof makeReportCase>[1] = {}) {
    const investigator = await makeStaff(ctx);
    const made = await makeReportCase(ctx, fields);
    await ctx.services.cases.assign(made.caseId, investigator.actor.id, investigator.actor);
    return { ...made, investigator };
  }

  const auditFor = (caseId: string, action: string) => AuditEntry.find({ subjectKind: 'case', subjectId: caseId, action }).lean();

  describe('triage', () => {
    it('records severity, likelihood and involvement, derives the priority and moves a new case to triaged', async () => {
      const { caseId, investigator } = await assignedReportCase();
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/triage`).set(investigator.auth).send(triageFields({ scale: 4, scope: 2, irremediable: 4, likelihood: 1 }));
      expect(res.status).toBe(200);
      expect(res.body.case).toMatchObject({ status: 'triaged', priorityLevel: 'critical', harmCategories: ['privacy-surveillance'] });
      const stored = await Case.findById(caseId).lean();
      expect(stored!.triage).toMatchObject({ severity: { scale: 4, scope: 2, irremediable: 4 }, likelihood: 1, involvement: 'directly-linked' });
      expect(stored!.priority).toBe(priorityOf({ scale: 4, scope: 2, irremediable: 4 }, 1).priority);
      expect(stored!.history.at(-1)).toMatchObject({ action: 'triaged', byUserId: expect.anything() });
      expect(String(stored!.history.at(-1)!.byUserId)).toBe(investigator.actor.id);
      expect(await auditFor(caseId, 'case.triaged')).toHaveLength(1);
    });

    it('names every bad triage field and changes nothing', async () => {
      const { caseId, investigator } = await assignedReportCase();
      const res = await request(ctx.app)
        .post(`/api/v1/cases/${caseId}/triage`)
        .set(investigator.auth)
        .send({ harmCategories: ['mind-control'], scale: 5, scope: 0, irremediable: 'x', likelihood: 2.5, involvement: 'blame', involvementRationale: '  ' });
      expect(res.status).toBe(400);
      expect(Object.keys(res.body.error.fields).sort()).toEqual(['harmCategories.0', 'involvement', 'involvementRationale', 'irremediable', 'likelihood', 'scale', 'scope']);
      const empty = await request(ctx.app).post(`/api/v1/cases/${caseId}/triage`).set(investigator.auth).send(triageFields({ harmCategories: [] }));
      expect(empty.status).toBe(400);
      expect(empty.body.error.fields).toEqual({ harmCategories: 'Choose at least one harm category.' });
      const stored = await Case.findById(caseId).lean();
      expect(stored).toMatchObject({ status: 'new', triage: null, priority: null });
    });

    it('keeps what was typed when the triage form is refused', async () => {
      const { agent, user } = await signedInAgent(ctx, 'investigator');
      const { caseId } = await makeReportCase(ctx);
      await ctx.services.cases.assign(caseId, String(user._id), actorOf(user));
      const res = await agent.form(`/cases/${caseId}/triage`, { harmCategories: 'labour-rights', scale: '3', scope: '9', irremediable: '2', likelihood: '2', involvement: 'cause', involvementRationale: 'Kept rationale text' }, `/cases/${caseId}`);
      expect(res.status).toBe(400);
      expect(res.text).toContain('Scope: choose 1 to 4.');
      expect(res.text).toContain('Kept rationale text');
      expect(res.text).toMatch(/value="labour-rights" checked/);
      expect((await Case.findById(caseId).lean())!.triage).toBeNull();
    });

    it('names the refused triage fields in the error summary by the labels the form shows, never by their codes', async () => {
      const { agent, user } = await signedInAgent(ctx, 'investigator');
      const { caseId } = await makeReportCase(ctx);
      await ctx.services.cases.assign(caseId, String(user._id), actorOf(user));
      const res = await agent.form(`/cases/${caseId}/triage`, { scale: '3', scope: '9', irremediable: '2', likelihood: '2', involvement: 'cause', involvementRationale: '' }, `/cases/${caseId}`);
      expect(res.status).toBe(400);
      const summary = /<div class="error-summary"[\s\S]*?<\/div>/.exec(res.text)![0];
      expect(summary).toContain('<a href="#f-harmCategories">Harm categories: Choose at least one harm category.</a>');
      expect(summary).toContain('<a href="#f-involvementRationale">Rationale for the involvement: ');
      // A message that names its field already is not named twice.
      expect(summary).toContain('<a href="#f-scope">Scope: choose 1 to 4.</a>');
      expect(summary).not.toMatch(/harmCategories:|involvementRationale:/);
      expect(res.text).toContain('<legend>Harm categories</legend>');
      expect((await Case.findById(caseId).lean())!.triage).toBeNull();
    });
  });

  describe('status workflow', () => {
    it('refuses a transition the workflow does not allow, naming the field', async () => {
      const { caseId, investigator } = await assignedReportCase();
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/transitions`).set(investigator.auth).send({ to: 'action', reason: 'skip ahead' });
      expect(res.status).toBe(400);
      expect(res.body.error.fields.to).toMatch(/cannot move to action/);
      const toTriaged = await request(ctx.app).post(`/api/v1/cases/${caseId}/transitions`).set(investigator.auth).send({ to: 'triaged', reason: 'looks fine' });
      expect(toTriaged.status).toBe(400);
      expect(toTriaged.body.error.fields.to).toMatch(/triage/);
      expect((await Case.findById(caseId).lean())!.status).toBe('new');
    });

    it('needs a reason for every move and a closure reason to close', async () => {
      const { caseId, investigator } = await assignedReportCase();
      const noReason = await request(ctx.app).post(`/api/v1/cases/${caseId}/transitions`).set(investigator.auth).send({ to: 'closed', closureReason: 'referred' });
      expect(noReason.status).toBe(400);
      expect(noReason.body.error.fields).toEqual({ reason: 'Reason is required.' });
      const noClosure = await request(ctx.app).post(`/api/v1/cases/${caseId}/transitions`).set(investigator.auth).send({ to: 'closed', reason: 'done' });
      expect(noClosure.status).toBe(400);
      expect(noClosure.body.error.fields).toEqual({ closureReason: 'Choose why the case is closed.' });
      const badClosure = await request(ctx.app).post(`/api/v1/cases/${caseId}/transitions`).set(investigator.auth).send({ to: 'closed', reason: 'done', closureReason: 'bored' });
      expect(badClosure.status).toBe(400);
      expect(Object.keys(badClosure.body.error.fields)).toEqual(['closureReason']);
      expect((await Case.findById(caseId).lean())!.status).toBe('new');
    });

    it('walks new → closed, recording who, when and why, drops the open-case key, and reopens with a reason', async () => {
      const { unit } = await makeUnit(ctx);
      const { caseId, investigator } = await assignedReportCase({ unitId: unit._id, modelId: unit.modelId });
      expect(await OpenCaseKey.findById(`unit:${unit._id}|report`).lean()).toMatchObject({ caseId });
      const api = (body: object) => request(ctx.app).post(`/api/v1/cases/${caseId}/transitions`).set(investigator.auth).send(body);
      expect((await request(ctx.app).post(`/api/v1/cases/${caseId}/triage`).set(investigator.auth).send(triageFields())).status).toBe(200);
      ctx.clock.advance(60_000);
      expect((await api({ to: 'investigating', reason: 'Gathering facts' })).status).toBe(200);
      expect((await api({ to: 'action', reason: 'Customer must answer' })).status).toBe(200);
      expect((await api({ to: 'remediation', reason: 'Remedy agreed' })).status).toBe(200);
      const closed = await api({ to: 'closed', reason: 'Remedy delivered', closureReason: 'substantiated' });
      expect(closed.status).toBe(200);
      expect(closed.body.case).toMatchObject({ status: 'closed', closureReason: 'substantiated' });
      expect((await Report.findById((await Case.findById(caseId).lean())!.sources[0]!.id).lean())!.status).toBe('closed');

      const stored = await Case.findById(caseId).lean();
      expect(stored!.closedAt!.toISOString()).toBe(ctx.clock.now().toISOString());
      const moves = stored!.history.filter((h) => h.action === 'status-changed');
      expect(moves.map((h) => h.detail)).toEqual([
        'triaged → investigating: Gathering facts',
        'investigating → action: Customer must answer',
        'action → remediation: Remedy agreed',
        'remediation → closed (substantiated): Remedy delivered',
      ]);
      expect(moves.every((h) => String(h.byUserId) === investigator.actor.id)).toBe(true);
      expect(await OpenCaseKey.findById(`unit:${unit._id}|report`).lean()).toBeNull();
      const audited = await auditFor(caseId, 'case.status-changed');
      expect(audited.map((a) => (a.detail as { to: string }).to)).toEqual(['investigating', 'action', 'remediation', 'closed']);
      expect(audited.every((a) => a.actorId === investigator.actor.id && a.actorKind === 'user')).toBe(true);

      // A new report on the same unit now opens a new case instead of attaching to the closed one.
      const next = await makeReportCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      expect(next.caseId).not.toBe(caseId);

      const reopenWithout = await api({ to: 'investigating' });
      expect(reopenWithout.status).toBe(400);
      const reopened = await api({ to: 'investigating', reason: 'The reporter sent new evidence' });
      expect(reopened.status).toBe(200);
      expect(reopened.body.case).toMatchObject({ status: 'investigating', closureReason: null, closedAt: null });
      expect((await Case.findById(caseId).lean())!.history.at(-1)).toMatchObject({ action: 'reopened', detail: 'closed → investigating: The reporter sent new evidence' });
      expect(await auditFor(caseId, 'case.reopened')).toHaveLength(1);
    });

    it('lets only one of two simultaneous moves from the same status through', async () => {
      const { caseId, investigator } = await assignedReportCase();
      const results = await Promise.allSettled([
        ctx.services.cases.transition(caseId, { to: 'closed', reason: 'first', closureReason: 'duplicate' }, investigator.actor),
        ctx.services.cases.transition(caseId, { to: 'closed', reason: 'second', closureReason: 'referred' }, investigator.actor),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const stored = (await Case.findById(caseId).lean())!;
      expect(stored.history.filter((h) => h.action === 'status-changed')).toHaveLength(1);
      expect(await auditFor(caseId, 'case.status-changed')).toHaveLength(1);
    });
  });

  describe('two app instances racing', () => {
    it('lets exactly one of two instances make the same transition and the same assignment; the other gets a 409', async () => {
      const other = createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
      const { caseId, investigator } = await assignedReportCase();
      const newcomer = await makeStaff(ctx);

      const moves = await Promise.allSettled([
        ctx.services.cases.transition(caseId, { to: 'closed', reason: 'first', closureReason: 'duplicate' }, investigator.actor),
        other.cases.transition(caseId, { to: 'closed', reason: 'second', closureReason: 'referred' }, investigator.actor),
      ]);
      expect(moves.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const lost = moves.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason).toMatchObject({ status: 409 });
      // The same move asked once the other's is stored (read after, not before) is the same conflict.
      await expect(other.cases.transition(caseId, { to: 'closed', reason: 'third', closureReason: 'referred' }, investigator.actor)).rejects.toMatchObject({ status: 409 });
      const closed = (await Case.findById(caseId).lean())!;
      expect(closed.status).toBe('closed');
      expect(closed.history.filter((h) => h.action === 'status-changed')).toHaveLength(1);
      expect(await auditFor(caseId, 'case.status-changed')).toHaveLength(1);

      const assignments = await Promise.allSettled([
        ctx.services.cases.assign(caseId, newcomer.actor.id, investigator.actor),
        other.cases.assign(caseId, newcomer.actor.id, investigator.actor),
      ]);
      expect(assignments.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect((assignments.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason).toMatchObject({ status: 409 });
      const assigned = (await Case.findById(caseId).lean())!;
      expect(assigned.assigneeIds.map(String)).toEqual([investigator.actor.id, newcomer.actor.id]);
      // The lead's own assignment, and the newcomer's once.
      expect(assigned.history.filter((h) => h.action === 'assigned')).toHaveLength(2);
      expect((await auditFor(caseId, 'case.assigned')).map((e) => e.detail.userId)).toEqual([investigator.actor.id, newcomer.actor.id]);
    });
  });

  describe('report cases opened from two instances', () => {
    it('a report waits for another instance between claiming its unit’s case key and writing the case, and joins that case', async () => {
      const { unit } = await makeUnit(ctx);
      const template = (await Case.findById((await makeReportCase(ctx, { country: 'UG' })).caseId).lean())!;
      const theirs = `C-2026-9${String(Date.now() % 100_000).padStart(5, '0')}`;
      // The other instance claimed the key just now, and writes its case right after this
      // instance finds the key without one.
      await OpenCaseKey.create({ _id: `unit:${unit._id}|report`, caseId: theirs, claimedAt: ctx.clock.now() });
      const stores = createStores(ctx.db.engine);
      let written = false;
      const caseExists = async (caseId: string) => {
        const exists = await stores.cases.caseExists(caseId);
        if (!exists && !written) {
          written = true;
          await Case.create({ ...template, _id: theirs, sources: [], sourceKinds: [], history: [], pendingEvents: [], unitIds: [unit._id], modelIds: [unit.modelId] });
        }
        return exists;
      };
      const services = createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: { ...stores, cases: { ...stores.cases, caseExists } } });

      const { caseId, opened } = await services.cases.openOrAttachForReport({ id: 'rpt_waits', receivedAt: ctx.clock.now(), title: 'Misuse report', unitId: unit._id, modelId: unit.modelId, country: 'KE' });
      expect(written).toBe(true);
      expect({ caseId, opened }).toEqual({ caseId: theirs, opened: false });
      expect((await Case.findById(theirs).lean())!.sources.map((s) => s.id)).toEqual(['rpt_waits']);
      expect(await Case.countDocuments({ unitIds: unit._id })).toBe(1);
    });

    it('a report takes a unit’s case key over once the instance that claimed it is surely dead', async () => {
      const { unit } = await makeUnit(ctx);
      await OpenCaseKey.create({ _id: `unit:${unit._id}|report`, caseId: 'C-2026-999998', claimedAt: ctx.clock.now() });
      ctx.clock.advance(OPENER_GRACE_MS + 1);
      const { reportId, caseId } = await makeReportCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      expect(caseId).not.toBe('C-2026-999998');
      expect((await Case.findById(caseId).lean())!.sources.map((s) => s.id)).toEqual([reportId]);
      expect(await OpenCaseKey.findById(`unit:${unit._id}|report`).lean()).toMatchObject({ caseId });
    });
  });

  describe('deadlines', () => {
    it('shows a report case overdue once 7 days pass unacknowledged, and acknowledging sets feedback 3 months on', async () => {
      const { caseId, reportId, investigator } = await assignedReportCase();
      const opened = (await Case.findById(caseId).lean())!;
      expect(opened.deadlines!.acknowledgeBy!.getTime() - opened.openedAt.getTime()).toBe(7 * DAY);

      ctx.clock.advance(8 * DAY);
      try {
        investigator.auth = await freshAuth(ctx, investigator.user);
        const list = await request(ctx.app).get('/api/v1/cases?overdue=1&perPage=200&status=all').set(investigator.auth);
        expect(list.status).toBe(200);
        const item = list.body.items.find((c: { _id: string }) => c._id === caseId);
        expect(item.overdue).toEqual([{ kind: 'acknowledge', due: opened.deadlines!.acknowledgeBy!.toISOString() }]);
        const page = await request(ctx.app).get(`/api/v1/cases/${caseId}`).set(investigator.auth);
        expect(page.body.case.overdue[0].kind).toBe('acknowledge');

        const ack = await request(ctx.app).post(`/api/v1/cases/${caseId}/acknowledge`).set(investigator.auth);
        expect(ack.status).toBe(200);
        const stored = (await Case.findById(caseId).lean())!;
        expect(stored.deadlines!.acknowledgedAt!.toISOString()).toBe(ctx.clock.now().toISOString());
        expect(stored.deadlines!.feedbackBy!.toISOString()).toBe(addMonths(ctx.clock.now(), 3).toISOString());
        expect((await Report.findById(reportId).lean())!.status).toBe('acknowledged'); // what the reporter's follow-up shows
        const after = await request(ctx.app).get('/api/v1/cases?overdue=1&perPage=200&status=all').set(investigator.auth);
        expect(after.body.items.map((c: { _id: string }) => c._id)).not.toContain(caseId);
        const twice = await request(ctx.app).post(`/api/v1/cases/${caseId}/acknowledge`).set(investigator.auth);
        expect(twice.status).toBe(409);
      } finally {
        ctx.clock.advance(-8 * DAY);
      }
    });

    it('gives flag cases a review date instead, which moving the case pushes forward', async () => {
      const { unit } = await makeUnit(ctx);
      const { caseId } = await makeFlagCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      const admin = await makeStaff(ctx, 'admin');
      const before = (await Case.findById(caseId).lean())!.deadlines!;
      expect(before.acknowledgeBy).toBeNull();
      expect(before.reviewBy!.getTime()).toBe(ctx.clock.now().getTime() + 30 * DAY);
      const ack = await request(ctx.app).post(`/api/v1/cases/${caseId}/acknowledge`).set(admin.auth);
      expect(ack.status).toBe(400);
      expect(ack.body.error.fields.acknowledge).toBeDefined();
      ctx.clock.advance(10 * DAY);
      try {
        await ctx.services.cases.triage(caseId, triageFields({ harmCategories: ['other'] }), admin.actor);
        await ctx.services.cases.transition(caseId, { to: 'investigating', reason: 'look' }, admin.actor);
        expect((await Case.findById(caseId).lean())!.deadlines!.reviewBy!.getTime()).toBe(ctx.clock.now().getTime() + 30 * DAY);
      } finally {
        ctx.clock.advance(-10 * DAY);
      }
    });
  });

  describe('assignment and conflicts of interest', () => {
    it('assigns investigators and records it in history and the audit log', async () => {
      const lead = await makeStaff(ctx);
      const second = await makeStaff(ctx);
      const { caseId } = await makeReportCase(ctx);
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/assignees`).set(lead.auth).send({ userId: lead.actor.id });
      expect(res.status).toBe(200);
      const two = await request(ctx.app).post(`/api/v1/cases/${caseId}/assignees`).set(lead.auth).send({ userId: second.actor.id });
      expect(two.status).toBe(200);
      expect((await Case.findById(caseId).lean())!.assigneeIds.map(String)).toEqual([lead.actor.id, second.actor.id]);
      expect((await auditFor(caseId, 'case.assigned')).map((a) => (a.detail as { userId: string }).userId)).toEqual([lead.actor.id, second.actor.id]);
      const again = await request(ctx.app).post(`/api/v1/cases/${caseId}/assignees`).set(lead.auth).send({ userId: second.actor.id });
      expect(again.status).toBe(409);
      const removed = await request(ctx.app).delete(`/api/v1/cases/${caseId}/assignees/${second.actor.id}`).set(lead.auth);
      expect(removed.status).toBe(200);
      expect((await Case.findById(caseId).lean())!.assigneeIds.map(String)).toEqual([lead.actor.id]);
    });

    it('refuses to assign a customer, an unknown id or a malformed id, naming the field', async () => {
      const admin = await makeStaff(ctx, 'admin');
      const customer = await makeUser(ctx, 'customer');
      const { caseId } = await makeReportCase(ctx);
      for (const userId of [String(customer.user._id), '64b000000000000000000000', 'not-an-id']) {
        const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/assignees`).set(admin.auth).send({ userId });
        expect(res.status).toBe(400);
        expect(Object.keys(res.body.error.fields)).toEqual(['userId']);
      }
      expect((await Case.findById(caseId).lean())!.assigneeIds).toEqual([]);
    });

    it('will not assign an investigator named in a report on the case', async () => {
      const named = await makeUser(ctx, 'investigator', { name: 'Peter Mwangi' });
      const admin = await makeStaff(ctx, 'admin');
      const { caseId } = await makeReportCase(ctx, { description: 'The installer, Peter Mwangi from the vendor, set up the cameras.' });
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/assignees`).set(admin.auth).send({ userId: String(named.user._id) });
      expect(res.status).toBe(400);
      expect(res.body.error.fields.userId).toMatch(/named in a report/);
      expect((await Case.findById(caseId).lean())!.assigneeIds).toEqual([]);
    });

    it('hides the case from an investigator marked conflicted and refuses to assign them', async () => {
      const lead = await makeStaff(ctx);
      const conflicted = await makeStaff(ctx);
      const { caseId } = await makeReportCase(ctx, { country: 'ZW' });
      await ctx.services.cases.assign(caseId, lead.actor.id, lead.actor);
      await ctx.services.cases.assign(caseId, conflicted.actor.id, lead.actor);
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/conflicts`).set(lead.auth).send({ conflictUserId: conflicted.actor.id, conflictReason: 'Brother works for the customer' });
      expect(res.status).toBe(200);
      const stored = (await Case.findById(caseId).lean())!;
      expect(stored.conflictedUserIds.map(String)).toEqual([conflicted.actor.id]);
      expect(stored.assigneeIds.map(String)).toEqual([lead.actor.id]);

      expect((await request(ctx.app).get(`/api/v1/cases/${caseId}`).set(conflicted.auth)).status).toBe(404);
      const queue = await request(ctx.app).get('/api/v1/cases?country=ZW&status=all').set(conflicted.auth);
      expect(queue.body.items.map((c: { _id: string }) => c._id)).not.toContain(caseId);
      const reassign = await request(ctx.app).post(`/api/v1/cases/${caseId}/assignees`).set(lead.auth).send({ userId: conflicted.actor.id });
      expect(reassign.status).toBe(400);
      expect(reassign.body.error.fields.userId).toMatch(/conflict of interest/);
      expect(await auditFor(caseId, 'case.conflict-declared')).toHaveLength(1);
    });
  });

  describe('notes', () => {
    it('adds internal notes shown on the case page, never to reporters', async () => {
      const { caseId, investigator } = await assignedReportCase();
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/notes`).set(investigator.auth).send({ note: 'Called the distributor <b>twice</b>' });
      expect(res.status).toBe(201);
      expect(res.body.id).toMatch(/^note_/);
      const stored = (await Case.findById(caseId).lean())!;
      expect(stored.notes).toEqual([expect.objectContaining({ _id: res.body.id, text: 'Called the distributor <b>twice</b>' })]);
      const blank = await request(ctx.app).post(`/api/v1/cases/${caseId}/notes`).set(investigator.auth).send({ note: '' });
      expect(blank.status).toBe(400);
      expect(blank.body.error.fields).toEqual({ note: 'Note is required.' });
      expect((await Case.findById(caseId).lean())!.notes).toHaveLength(1);
    });
  });

  describe('leverage actions', () => {
    it('withholds firmware updates for the named serials at once, and lifting restores them', async () => {
      const { unit } = await makeUnit(ctx);
      const { caseId, investigator } = await assignedReportCase({ unitId: unit._id, modelId: unit.modelId });
      const res = await request(ctx.app)
        .post(`/api/v1/cases/${caseId}/actions`)
        .set(investigator.auth)
        .send({ kind: 'withhold-updates', unitIds: [unit._id], customer: 'Clinic Ltd', dueBy: '2026-02-15', description: 'Until the customer explains the cameras' });
      expect(res.status).toBe(201);
      expect((await Unit.findById(unit._id).lean())!.controls).toMatchObject({ updates: 'withheld', withheldByCaseIds: [caseId] });
      const stored = (await Case.findById(caseId).lean())!;
      expect(stored.actions[0]).toMatchObject({ _id: res.body.id, kind: 'withhold-updates', status: 'open', target: { customer: 'Clinic Ltd', unitIds: [unit._id] } });
      expect(stored.actions[0]!.dueBy!.toISOString()).toBe('2026-02-15T00:00:00.000Z');
      expect(await auditFor(caseId, 'case.action-added')).toHaveLength(1);

      const lifted = await request(ctx.app).patch(`/api/v1/cases/${caseId}/actions/${res.body.id}`).set(investigator.auth).send({ status: 'lifted', outcome: 'Customer removed the cameras' });
      expect(lifted.status).toBe(204);
      expect((await Unit.findById(unit._id).lean())!.controls).toMatchObject({ updates: 'allowed', withheldByCaseIds: [] });
      expect((await Case.findById(caseId).lean())!.actions[0]).toMatchObject({ status: 'lifted', outcome: 'Customer removed the cameras' });
      const again = await request(ctx.app).patch(`/api/v1/cases/${caseId}/actions/${res.body.id}`).set(investigator.auth).send({ status: 'done' });
      expect(again.status).toBe(400);
      expect(again.body.error.fields.status).toMatch(/already lifted/);
    });

    it('refuses units not linked to the case, and a withholding without units', async () => {
      const { unit } = await makeUnit(ctx);
      const { unit: stranger } = await makeUnit(ctx);
      const { caseId, investigator } = await assignedReportCase({ unitId: unit._id, modelId: unit.modelId });
      const foreign = await request(ctx.app).post(`/api/v1/cases/${caseId}/actions`).set(investigator.auth).send({ kind: 'withhold-updates', unitIds: [stranger._id] });
      expect(foreign.status).toBe(400);
      expect(foreign.body.error.fields.unitIds).toContain(stranger._id);
      const none = await request(ctx.app).post(`/api/v1/cases/${caseId}/actions`).set(investigator.auth).send({ kind: 'withhold-updates' });
      expect(none.status).toBe(400);
      expect(Object.keys(none.body.error.fields)).toEqual(['unitIds']);
      const bad = await request(ctx.app).post(`/api/v1/cases/${caseId}/actions`).set(investigator.auth).send({ kind: 'nuke-from-orbit', dueBy: '31/02/2026' });
      expect(bad.status).toBe(400);
      expect(Object.keys(bad.body.error.fields).sort()).toEqual(['dueBy', 'kind']);
      expect((await Unit.findById(stranger._id).lean())!.controls!.updates).toBe('allowed');
      expect((await Case.findById(caseId).lean())!.actions).toEqual([]);
      const unknownAction = await request(ctx.app).patch(`/api/v1/cases/${caseId}/actions/act_guessed`).set(investigator.auth).send({ status: 'done' });
      expect(unknownAction.status).toBe(404);
    });

    it('voids the warranty of the unit’s registration', async () => {
      const { registration, unit } = await makeRegistration(ctx);
      const { caseId, investigator } = await assignedReportCase({ unitId: unit._id, modelId: unit.modelId });
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/actions`).set(investigator.auth).send({ kind: 'void-warranty', unitIds: [unit._id] });
      expect(res.status).toBe(201);
      expect((await Registration.findById(registration._id).lean())!.warranty).toBe('void');
      expect((await Unit.findById(unit._id).lean())!.controls!.warranty).toBe('void');
    });

    it('records other leverage with its target and outcome, without touching units', async () => {
      const { caseId, investigator } = await assignedReportCase();
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/actions`).set(investigator.auth).send({ kind: 'training-guidance', channelPartner: 'Savannah Distribution' });
      expect(res.status).toBe(201);
      const done = await request(ctx.app).patch(`/api/v1/cases/${caseId}/actions/${res.body.id}`).set(investigator.auth).send({ status: 'done', outcome: 'Partner stopped sales to the customer' });
      expect(done.status).toBe(204);
      expect((await Case.findById(caseId).lean())!.actions[0]).toMatchObject({ kind: 'training-guidance', status: 'done', target: { channelPartner: 'Savannah Distribution' }, outcome: 'Partner stopped sales to the customer' });
      const lift = await request(ctx.app).post(`/api/v1/cases/${caseId}/actions`).set(investigator.auth).send({ kind: 'audit-visit' });
      const wrong = await request(ctx.app).patch(`/api/v1/cases/${caseId}/actions/${lift.body.id}`).set(investigator.auth).send({ status: 'lifted' });
      expect(wrong.status).toBe(400);
    });
  });

  describe('the workbench: before assignment, pre-filled triage, closing with open leverage', () => {
    it('lets any investigator acknowledge and triage an unassigned case, but not one assigned to others', async () => {
      const { caseId } = await makeReportCase(ctx);
      const passer = await makeStaff(ctx);
      const ack = await request(ctx.app).post(`/api/v1/cases/${caseId}/acknowledge`).set(passer.auth);
      expect(ack.status).toBe(200);
      const triaged = await request(ctx.app).post(`/api/v1/cases/${caseId}/triage`).set(passer.auth).send(triageFields());
      expect(triaged.status).toBe(200);
      const stored = (await Case.findById(caseId).lean())!;
      expect(stored).toMatchObject({ status: 'triaged', assigneeIds: [] });
      expect(String(stored.triage!.byUserId)).toBe(passer.actor.id);

      const owner = await makeStaff(ctx);
      await ctx.services.cases.assign(caseId, owner.actor.id, owner.actor);
      const again = await request(ctx.app).post(`/api/v1/cases/${caseId}/triage`).set(passer.auth).send(triageFields({ scale: 1 }));
      expect(again.status).toBe(403);
    });

    it("pre-fills triage's harm from the reporter's categories and a flag's rule, saying from where", async () => {
      const { caseId, reportId } = await makeReportCase(ctx);
      const { agent } = await signedInAgent(ctx, 'investigator');
      const page = await agent.get(`/cases/${caseId}`);
      expect(page.text).toMatch(/value="privacy-surveillance" checked/);
      expect(page.text).toContain(`privacy surveillance (from report ${reportId})`);
      const saved = await agent.form(`/cases/${caseId}/triage`, { harmCategories: 'privacy-surveillance', scale: '2', scope: '2', irremediable: '2', likelihood: '2', involvement: 'contribute', involvementRationale: 'First save' }, `/cases/${caseId}`);
      expect(saved.status).toBe(303);
      expect((await Case.findById(caseId).lean())!.harmCategories).toEqual(['privacy-surveillance']);

      const { unit } = await makeUnit(ctx);
      const flagged = await makeFlagCase(ctx, { unitId: unit._id, modelId: unit.modelId }, 'restricted-country');
      const flagPage = await agent.get(`/cases/${flagged.caseId}`);
      expect(flagPage.text).toMatch(/value="life-liberty-security" checked/);
      expect(flagPage.text).toContain('life liberty security (from red flag restricted country)');
    });

    it('asks, before closing, whether each open action ends or stays; ending lifts a withholding, and the audit records the choice', async () => {
      const { unit } = await makeUnit(ctx);
      const { caseId, investigator } = await assignedReportCase({ unitId: unit._id, modelId: unit.modelId });
      const withhold = await ctx.services.cases.addAction(caseId, { kind: 'withhold-updates', unitIds: [unit._id] }, investigator.actor);
      const visit = await ctx.services.cases.addAction(caseId, { kind: 'audit-visit' }, investigator.actor);
      const close = (body: object) => request(ctx.app).post(`/api/v1/cases/${caseId}/transitions`).set(investigator.auth).send({ to: 'closed', reason: 'Out of our hands', closureReason: 'referred', ...body });

      const asked = await close({ openActions: { [visit]: 'keep' } });
      expect(asked.status).toBe(400);
      expect(Object.keys(asked.body.error.fields)).toEqual([`openActions.${withhold}`]);
      expect(asked.body.error.message).toMatch(/2 open actions/);
      expect((await Case.findById(caseId).lean())!.status).not.toBe('closed');

      const closed = await close({ openActions: { [withhold]: 'end', [visit]: 'keep' } });
      expect(closed.status).toBe(200);
      const stored = (await Case.findById(caseId).lean())!;
      expect(stored.status).toBe('closed');
      expect(stored.actions.map((a) => [a._id, a.status])).toEqual([[withhold, 'lifted'], [visit, 'open']]);
      expect((await Unit.findById(unit._id).lean())!.controls).toMatchObject({ updates: 'allowed' });
      const [audit] = await auditFor(caseId, 'case.status-changed');
      expect(audit!.detail).toMatchObject({ to: 'closed', openActions: { [withhold]: 'end', [visit]: 'keep' } });
    });
  });

  describe('remediation', () => {
    it('records what was provided, to whom and the feedback given, which meets the feedback deadline and reaches the reporter', async () => {
      const { caseId, reportId, investigator } = await assignedReportCase();
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/remediation`).set(investigator.auth).send({ provided: 'Funded legal aid', toWhom: 'Clinic patients', reporterFeedback: 'Cameras were removed' });
      expect(res.status).toBe(201);
      const stored = (await Case.findById(caseId).lean())!;
      expect(stored.remediation[0]).toMatchObject({ provided: 'Funded legal aid', toWhom: 'Clinic patients', reporterFeedback: 'Cameras were removed' });
      expect(stored.deadlines!.feedbackGivenAt!.toISOString()).toBe(ctx.clock.now().toISOString());
      expect((await Report.findById(reportId).lean())!.feedback).toMatchObject({ text: 'Cameras were removed', byUserId: investigator.actor.id });
      const bad = await request(ctx.app).post(`/api/v1/cases/${caseId}/remediation`).set(investigator.auth).send({ provided: '', toWhom: 'x'.repeat(501) });
      expect(bad.status).toBe(400);
      expect(Object.keys(bad.body.error.fields).sort()).toEqual(['provided', 'toWhom']);
    });
  });

  describe('merge and split', () => {
    it('merges a duplicate: the survivor gains its sources, the duplicate closes and its keys and flags follow', async () => {
      const { unit } = await makeUnit(ctx);
      const admin = await makeStaff(ctx, 'admin');
      const flagged = await makeFlagCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      const reported = await makeReportCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      const res = await request(ctx.app).post(`/api/v1/cases/${flagged.caseId}/merge`).set(admin.auth).send({ intoCaseId: reported.caseId.toLowerCase(), mergeReason: 'Same cameras' });
      expect(res.status).toBe(200);
      expect(res.body.caseId).toBe(reported.caseId);
      const [dup, survivor] = await Promise.all([Case.findById(flagged.caseId).lean(), Case.findById(reported.caseId).lean()]);
      expect(dup).toMatchObject({ status: 'closed', closureReason: 'duplicate', mergedIntoCaseId: reported.caseId });
      expect(survivor!.sources.map((s) => s.id).sort()).toEqual([flagged.flagId, reported.reportId].sort());
      expect(survivor!.sourceKinds.sort()).toEqual(['flag', 'report']);
      expect(await OpenCaseKey.findById(`unit:${unit._id}|country-mismatch`).lean()).toMatchObject({ caseId: reported.caseId });
      expect((await Flag.findById(flagged.flagId).lean())!.caseId).toBe(reported.caseId);
      // The next flag of that rule on the unit lands on the survivor.
      const again = await makeFlagCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      expect(again.caseId).toBe(reported.caseId);
      expect(await auditFor(flagged.caseId, 'case.merged')).toHaveLength(1);
    });

    it('merging moves the duplicate case\'s reports to the survivor', async () => {
      const admin = await makeStaff(ctx, 'admin');
      const [dup, survivor] = [await makeReportCase(ctx), await makeReportCase(ctx)];
      expect(dup.caseId).not.toBe(survivor.caseId);
      const res = await request(ctx.app).post(`/api/v1/cases/${dup.caseId}/merge`).set(admin.auth).send({ intoCaseId: survivor.caseId, mergeReason: 'Same clinic' });
      expect(res.status).toBe(200);
      const reports = await Report.find({ _id: { $in: [dup.reportId, survivor.reportId] } }).lean();
      expect(reports.map((r) => r.caseId)).toEqual([survivor.caseId, survivor.caseId]);
    });

    it('refuses to merge into itself, a closed case or an unknown case', async () => {
      const admin = await makeStaff(ctx, 'admin');
      const a = await makeReportCase(ctx);
      const b = await makeReportCase(ctx);
      await ctx.services.cases.transition(b.caseId, { to: 'closed', reason: 'x', closureReason: 'out-of-scope' }, admin.actor);
      for (const [intoCaseId, status] of [[a.caseId, 400], [b.caseId, 400], ['C-1999-000001', 400], ['nonsense', 400]] as const) {
        const res = await request(ctx.app).post(`/api/v1/cases/${a.caseId}/merge`).set(admin.auth).send({ intoCaseId, mergeReason: 'dup' });
        expect(res.status).toBe(status);
        expect(Object.keys(res.body.error.fields)).toEqual(['intoCaseId']);
      }
      expect((await Case.findById(a.caseId).lean())!.status).toBe('new');
    });

    it('splits a wrongly attached report into a case of its own with its own deadlines', async () => {
      const { unit } = await makeUnit(ctx);
      const first = await makeReportCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      ctx.clock.advance(DAY);
      const second = await makeReportCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      ctx.clock.advance(-DAY);
      expect(second.caseId).toBe(first.caseId);
      const admin = await makeStaff(ctx, 'admin');
      const res = await request(ctx.app).post(`/api/v1/cases/${first.caseId}/split`).set(admin.auth).send({ reportId: second.reportId });
      expect(res.status).toBe(201);
      const [original, created] = await Promise.all([Case.findById(first.caseId).lean(), Case.findById(res.body.caseId).lean()]);
      expect(original!.sources.map((s) => s.id)).toEqual([first.reportId]);
      expect(created!.sources.map((s) => s.id)).toEqual([second.reportId]);
      expect(created!.deadlines!.acknowledgeBy!.getTime()).toBe(ctx.clock.now().getTime() + 8 * DAY);
      expect(await OpenCaseKey.findById(`report:${second.reportId}`).lean()).toMatchObject({ caseId: res.body.caseId });
      const reports = await Report.find({ _id: { $in: [first.reportId, second.reportId] } }).lean();
      expect(Object.fromEntries(reports.map((r) => [r._id, r.caseId]))).toEqual({ [first.reportId]: first.caseId, [second.reportId]: res.body.caseId });
      const lone = await request(ctx.app).post(`/api/v1/cases/${res.body.caseId}/split`).set(admin.auth).send({ reportId: second.reportId });
      expect(lone.status).toBe(400);
      const foreign = await request(ctx.app).post(`/api/v1/cases/${first.caseId}/split`).set(admin.auth).send({ reportId: 'rpt_guessed' });
      expect(foreign.status).toBe(400);
      expect(foreign.body.error.fields.reportId).toBeDefined();
    });
  });

  describe('reporter identity, messages and evidence', () => {
    /** An assigned investigator's reasoned request, made on the case page (the form, no JavaScript). */
    async function requestOnPage(agent: Awaited<ReturnType<typeof signedInAgent>>['agent'], caseId: string, reason: string) {
      const res = await agent.form(`/cases/${caseId}/identity-requests`, { reason }, `/cases/${caseId}`);
      expect(res.status).toBe(303);
    }

    it('hides the reporter identity from the case page and API until someone else approves a reasoned request, and again once the grant runs out', async () => {
      const { caseId } = await makeReportCase(ctx);
      const investigator = await signedInAgent(ctx, 'investigator');
      const actor = actorOf(investigator.user);
      await ctx.services.cases.assign(caseId, actor.id, actor);
      const bearer = await freshAuth(ctx, investigator.user);

      // Assigned is not enough any more: no identity on the page, in the case API or from /contact.
      const before = await investigator.agent.get(`/cases/${caseId}`);
      expect(before.status).toBe(200);
      expect(before.text).not.toContain('achieng@haki.example');
      expect(before.text).toContain('Request access');
      expect(JSON.stringify((await request(ctx.app).get(`/api/v1/cases/${caseId}`).set(bearer)).body)).not.toContain('achieng@haki.example');
      const refusedContact = await request(ctx.app).get(`/api/v1/cases/${caseId}/contact`).set(bearer);
      expect(refusedContact.status).toBe(403);
      expect(refusedContact.body.error.code).toBe('identity_grant_required');
      expect(JSON.stringify(refusedContact.body)).not.toContain('achieng@haki.example');
      expect((await investigator.agent.get(`/cases/${caseId}/contact`)).status).toBe(403);

      await requestOnPage(investigator.agent, caseId, 'We must ask the reporter where the cameras are mounted.');
      const listed = await request(ctx.app).get(`/api/v1/cases/${caseId}/identity-requests`).set(bearer);
      expect(listed.status).toBe(200);
      expect(listed.body.items).toEqual([expect.objectContaining({ status: 'pending', reason: 'We must ask the reporter where the cameras are mounted.', requesterId: actor.id })]);
      const requestId = listed.body.items[0]._id as string;
      expect((await investigator.agent.get(`/cases/${caseId}`)).text).toContain('waiting for approval');
      // Asking twice while waiting is refused.
      expect((await request(ctx.app).post(`/api/v1/cases/${caseId}/identity-requests`).set(bearer).send({ reason: 'again' })).status).toBe(409);
      // Neither the requester nor a plain investigator can approve it.
      const self = await request(ctx.app).post(`/api/v1/cases/${caseId}/identity-requests/${requestId}/decision`).set(bearer).send({ decision: 'approve' });
      expect(self.status).toBe(403);
      expect((await investigator.agent.get(`/cases/${caseId}`)).text).not.toContain('achieng@haki.example');

      // An admin sees it in the queue, confirms on a page of its own, and approves by a form post.
      const admin = await signedInAgent(ctx, 'admin');
      const queue = await admin.agent.get('/admin/identity-requests');
      expect(queue.status).toBe(200);
      expect(queue.text).toContain(caseId);
      expect(queue.text).toContain('We must ask the reporter where the cameras are mounted.');
      const confirm = await admin.agent.get(`/admin/identity-requests/${requestId}?decision=approve`);
      expect(confirm.status).toBe(200);
      expect(confirm.text).toContain('Yes, approve');
      const approved = await admin.agent.form(`/admin/identity-requests/${requestId}`, { decision: 'approve', reason: 'Needed to reach the witness.' }, `/admin/identity-requests/${requestId}?decision=approve`);
      expect(approved.status).toBe(303);
      const grant = (await request(ctx.app).get(`/api/v1/cases/${caseId}/identity-requests`).set(bearer)).body.items[0];
      expect(grant).toMatchObject({ status: 'approved', decidedByUserId: String(admin.user._id), expiresAt: new Date(ctx.clock.now().getTime() + 24 * HOUR).toISOString() });

      const during = await investigator.agent.get(`/cases/${caseId}`);
      expect(during.text).toContain('achieng@haki.example');
      expect(during.text).toContain('Achieng Otieno');
      const contact = await request(ctx.app).get(`/api/v1/cases/${caseId}/contact`).set(bearer);
      expect(contact.status).toBe(200);
      expect(contact.body.contacts[0].contact).toMatchObject({ name: 'Achieng Otieno', email: 'achieng@haki.example' });
      // The grant is this investigator's: the approving admin, not assigned, still sees nothing.
      expect((await admin.agent.get(`/cases/${caseId}`)).text).not.toContain('achieng@haki.example');

      // IDENTITY_GRANT_HOURS (24) later the identity is gone again (sessions too: sign in anew).
      ctx.clock.advance(24 * HOUR + 60_000);
      const later = await freshAuth(ctx, investigator.user);
      const expired = await request(ctx.app).get(`/api/v1/cases/${caseId}/contact`).set(later);
      expect(expired.status).toBe(403);
      expect(JSON.stringify(expired.body)).not.toContain('achieng@haki.example');
      const again = pageAgent(ctx);
      expect((await again.form('/login', { email: investigator.email, password: investigator.password })).status).toBe(303);
      const after = await again.get(`/cases/${caseId}`);
      expect(after.status).toBe(200);
      expect(after.text).not.toContain('achieng@haki.example');
      expect(after.text).toContain('Request access');

      // A second request, refused through the API.
      const second = await request(ctx.app).post(`/api/v1/cases/${caseId}/identity-requests`).set(later).send({ reason: 'One more question for the reporter.' });
      expect(second.status).toBe(201);
      const adminBearer = await freshAuth(ctx, admin.user);
      const refused = await request(ctx.app).post(`/api/v1/cases/${caseId}/identity-requests/${second.body.request._id}/decision`).set(adminBearer).send({ decision: 'refuse', reason: 'Ask through the messages instead.' });
      expect(refused.status).toBe(200);
      expect(refused.body.request).toMatchObject({ status: 'refused', expiresAt: null });
      expect((await request(ctx.app).get(`/api/v1/cases/${caseId}/contact`).set(later)).status).toBe(403);

      const steps = await AuditEntry.find({ subjectKind: 'case', subjectId: caseId, action: /^identity\./ }).sort({ seq: 1 }).lean();
      expect(steps.map((e) => e.action)).toEqual(['identity.requested', 'identity.approved', 'identity.viewed', 'identity.viewed', 'identity.expired', 'identity.requested', 'identity.refused']);
      expect(steps.find((e) => e.action === 'identity.approved')).toMatchObject({ actorId: String(admin.user._id), detail: { requestId, userId: actor.id } });
      expect(steps.filter((e) => e.action === 'identity.viewed').every((e) => e.actorId === actor.id)).toBe(true);
      expect(steps.find((e) => e.action === 'identity.expired')).toMatchObject({ actorKind: 'system', detail: { requestId } });
    });

    it('never lets an admin approve their own request; another admin or a custodian can', async () => {
      const { caseId } = await makeReportCase(ctx);
      const admin = await makeStaff(ctx, 'admin');
      await ctx.services.cases.assign(caseId, admin.actor.id, admin.actor);
      const asked = await request(ctx.app).post(`/api/v1/cases/${caseId}/identity-requests`).set(admin.auth).send({ reason: 'I lead this case.' });
      expect(asked.status).toBe(201);
      const own = await request(ctx.app).post(`/api/v1/cases/${caseId}/identity-requests/${asked.body.request._id}/decision`).set(admin.auth).send({ decision: 'approve' });
      expect(own.status).toBe(403);
      expect(own.body.error.code).toBe('own_request');
      expect((await request(ctx.app).get(`/api/v1/cases/${caseId}/contact`).set(admin.auth)).status).toBe(403);

      // A custodian (an investigator named in IDENTITY_CUSTODIAN_EMAILS) decides instead.
      const { user: custodianUser } = await makeUser(ctx, 'investigator', { email: CUSTODIAN_EMAIL });
      const custodian = { Authorization: `Bearer ${(await ctx.services.auth.issueSession(custodianUser)).token}` };
      const plain = await makeStaff(ctx);
      expect((await request(ctx.app).post(`/api/v1/cases/${caseId}/identity-requests/${asked.body.request._id}/decision`).set(plain.auth).send({ decision: 'approve' })).status).toBe(403);
      const decided = await request(ctx.app).post(`/api/v1/cases/${caseId}/identity-requests/${asked.body.request._id}/decision`).set(custodian).send({ decision: 'approve' });
      expect(decided.status).toBe(200);
      expect((await request(ctx.app).get(`/api/v1/cases/${caseId}/contact`).set(admin.auth)).body.contacts[0].contact).toMatchObject({ email: 'achieng@haki.example' });
      expect((await auditFor(caseId, 'identity.approved'))[0]).toMatchObject({ actorId: String(custodianUser._id) });
    });

    it('lets assigned investigators message the reporter through the report', async () => {
      const { caseId, reportId, investigator } = await assignedReportCase();
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${reportId}/messages`).set(investigator.auth).send({ message: 'Can you tell us when the cameras were installed?' });
      expect(res.status).toBe(201);
      const stored = (await Report.findById(reportId).lean())!;
      expect(stored.messages.at(-1)).toMatchObject({ from: 'investigator', text: 'Can you tell us when the cameras were installed?', userId: investigator.actor.id });
      const list = await request(ctx.app).get(`/api/v1/cases/${caseId}/reports/${reportId}/messages`).set(investigator.auth);
      expect(list.body.items.map((m: { text: string }) => m.text)).toContain('Can you tell us when the cameras were installed?');
      const empty = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${reportId}/messages`).set(investigator.auth).send({ message: ' ' });
      expect(empty.status).toBe(400);
      expect(empty.body.error.fields).toEqual({ message: 'Message is required.' });
    });

    it('streams evidence to assigned investigators as a download, logged; nothing by guessed ids', async () => {
      const { caseId, reportId, evidence, investigator } = await assignedReportCase();
      const other = await assignedReportCase();
      const fileId = evidence[0]!.fileId;
      const res = await request(ctx.app).get(`/api/v1/cases/${caseId}/reports/${reportId}/evidence/${fileId}`).set(investigator.auth).buffer(true);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('image/png');
      expect(res.headers['content-disposition']).toMatch(/^attachment/);
      expect((await auditFor(caseId, 'evidence.downloaded')).map((a) => a.detail)).toEqual([{ reportId, fileId }]);
      // Another case's report and file, through this case: not reachable.
      expect((await request(ctx.app).get(`/api/v1/cases/${caseId}/reports/${other.reportId}/evidence/${other.evidence[0]!.fileId}`).set(investigator.auth)).status).toBe(404);
      expect((await request(ctx.app).get(`/api/v1/cases/${caseId}/reports/${reportId}/evidence/${other.evidence[0]!.fileId}`).set(investigator.auth)).status).toBe(404);
      expect((await request(ctx.app).get(`/api/v1/cases/${caseId}/reports/${reportId}/evidence/../../etc`).set(investigator.auth)).status).toBe(404);
    });
  });

  describe('investigator evidence and link review', () => {
    it('adds investigator evidence to a report, metadata stripped, and logs it', async () => {
      const { caseId, reportId, investigator } = await assignedReportCase();
      const photo = await jpegWithGps();
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${reportId}/evidence`).set(investigator.auth).attach('evidence', photo, 'site-visit.jpg');
      expect(res.status).toBe(201);
      const stored = (await Report.findById(reportId).lean())!;
      const added = stored.evidence.find((e) => e.fileId === res.body.items[0].fileId)!;
      expect(added).toMatchObject({ addedBy: 'investigator', addedByUserId: investigator.actor.id, name: 'evidence-2.jpg', originalName: null });
      expect(added.sha256).not.toBe(sha256(photo)); // re-encoded: EXIF/GPS gone
      expect(await auditFor(caseId, 'case.evidence-added')).toHaveLength(1);
      const none = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${reportId}/evidence`).set(investigator.auth).field('note', 'no file');
      expect(none.status).toBe(400);
      expect(Object.keys(none.body.error.fields)).toEqual(['evidence']);
      const script = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${reportId}/evidence`).set(investigator.auth).attach('evidence', notAnImage(), 'photo.jpg');
      expect(script.status).toBe(400);
      expect(Object.keys(script.body.error.fields)).toEqual(['evidence']);
      expect((await Report.findById(reportId).lean())!.evidence).toHaveLength(2);
    });

    it('uploads evidence from the case page form (multipart, with the CSRF token)', async () => {
      const { agent, user } = await signedInAgent(ctx, 'investigator');
      const { caseId, reportId } = await makeReportCase(ctx);
      await ctx.services.cases.assign(caseId, String(user._id), actorOf(user));
      const token = await agent.csrf(`/cases/${caseId}`);
      const res = await agent.post(`/cases/${caseId}/reports/${reportId}/evidence`).field('_csrf', token).attach('evidence', await pngImage(), 'map.png');
      expect(res.status).toBe(303);
      expect((await Report.findById(reportId).lean())!.evidence.map((e) => [e.name, e.originalName]).at(-1)).toEqual(['evidence-2.png', null]);
      const forged = await agent.post(`/cases/${caseId}/reports/${reportId}/evidence`).attach('evidence', await pngImage(), 'x.png');
      expect(forged.status).toBe(403);
    });

    it('confirms or rejects the linker’s proposed links, naming a bad index or value', async () => {
      const { unit } = await makeUnit(ctx);
      const { caseId, reportId, investigator } = await assignedReportCase({ unitId: unit._id, modelId: unit.modelId });
      const res = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${reportId}/links/0`).set(investigator.auth).send({ confirmed: true });
      expect(res.status).toBe(204);
      expect((await Report.findById(reportId).lean())!.links[0]).toMatchObject({ kind: 'unit', targetId: unit._id, confirmed: true, confirmedBy: investigator.actor.id });
      expect(await auditFor(caseId, 'case.link-confirmed')).toHaveLength(1);
      const badIndex = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${reportId}/links/7`).set(investigator.auth).send({ confirmed: 'false' });
      expect(badIndex.status).toBe(400);
      expect(Object.keys(badIndex.body.error.fields)).toEqual(['linkIndex']);
      const badValue = await request(ctx.app).post(`/api/v1/cases/${caseId}/reports/${reportId}/links/0`).set(investigator.auth).send({ confirmed: 'maybe' });
      expect(badValue.status).toBe(400);
      expect(Object.keys(badValue.body.error.fields)).toEqual(['confirmed']);
      expect((await Report.findById(reportId).lean())!.links[0]!.confirmed).toBe(true);
    });
  });

  describe('retention', () => {
    it('deletes reporter data of cases closed longer than the period, keeping a dated trace, and spares legal holds', async () => {
      const admin = await makeStaff(ctx, 'admin');
      const expired = await makeReportCase(ctx);
      const held = await makeReportCase(ctx);
      const recent = await makeReportCase(ctx);
      for (const { caseId } of [expired, held]) await ctx.services.cases.transition(caseId, { to: 'closed', reason: 'handled', closureReason: 'substantiated' }, admin.actor);
      const hold = await request(ctx.app).put(`/api/v1/cases/${held.caseId}/legal-hold`).set(admin.auth).send({ hold: 'on', holdReason: 'Court order 12/2026' });
      expect(hold.status).toBe(200);
      const noReason = await request(ctx.app).put(`/api/v1/cases/${held.caseId}/legal-hold`).set(admin.auth).send({ hold: 'off' });
      expect(noReason.status).toBe(400);
      expect(Object.keys(noReason.body.error.fields)).toEqual(['holdReason']);

      const fileOf = (e: { fileId: string }) => path.join(ctx.config.dataDir, 'files', e.fileId.slice(0, 2), e.fileId);
      expect(fs.existsSync(fileOf(expired.evidence[0]!))).toBe(true);

      ctx.clock.advance(24 * 31 * DAY);
      try {
        await ctx.services.cases.transition(recent.caseId, { to: 'closed', reason: 'handled', closureReason: 'referred' }, admin.actor);
        const counts = await ctx.services.cases.runRetention();
        // Other tests' closed cases fall due too: this one's three are checked one by one below.
        expect(counts.deleted).toBeGreaterThanOrEqual(1);
        expect(counts.held).toBeGreaterThanOrEqual(1);
        const [gone, kept, fresh] = await Promise.all([expired, held, recent].map(({ reportId }) => Report.findById(reportId).lean()));
        expect(gone).toMatchObject({ contact: null, messages: [], evidence: [] });
        expect(gone!.erased!.at!.toISOString()).toBe(ctx.clock.now().toISOString());
        expect(fs.existsSync(fileOf(expired.evidence[0]!))).toBe(false);
        expect(kept!.contact).toMatchObject({ email: 'achieng@haki.example' });
        expect(fresh!.contact).toMatchObject({ email: 'achieng@haki.example' });

        const trace = (await Case.findById(expired.caseId).lean())!;
        expect(trace.retention).toMatchObject({ deletedReportIds: [expired.reportId] });
        expect(trace.retention!.reporterDataDeletedAt!.toISOString()).toBe(ctx.clock.now().toISOString());
        expect(trace).toMatchObject({ status: 'closed', harmCategories: [], sources: [expect.objectContaining({ id: expired.reportId })] });
        expect(await auditFor(expired.caseId, 'case.retention-deleted')).toHaveLength(1);
        expect((await ctx.services.cases.runRetention()).deleted).toBe(0); // idempotent
      } finally {
        ctx.clock.advance(-24 * 31 * DAY);
      }
    });
  });

  describe('queue', () => {
    it('filters by status, priority, harm, country, model, assignee, source and overdue, with counts and pages', async () => {
      const lead = await makeStaff(ctx);
      const { unit } = await makeUnit(ctx);
      const a = await makeReportCase(ctx, { country: 'MZ', unitId: unit._id, modelId: unit.modelId });
      const b = await makeReportCase(ctx, { country: 'MZ' });
      const c = await makeFlagCase(ctx, { unitId: unit._id, modelId: unit.modelId, country: 'MZ' });
      await ctx.services.cases.assign(a.caseId, lead.actor.id, lead.actor);
      await ctx.services.cases.triage(a.caseId, triageFields({ harmCategories: ['labour-rights'], scale: 4, scope: 4, irremediable: 4 }), lead.actor);
      const ids = async (qs: string) => {
        const res = await request(ctx.app).get(`/api/v1/cases?country=mz&${qs}`).set(lead.auth);
        expect(res.status).toBe(200);
        return res.body.items.map((x: { _id: string }) => x._id).sort();
      };
      expect(await ids('')).toEqual([a.caseId, b.caseId, c.caseId].sort());
      expect(await ids('status=triaged')).toEqual([a.caseId]);
      expect(await ids('priority=critical')).toEqual([a.caseId]);
      expect(await ids('harm=labour-rights')).toEqual([a.caseId]);
      expect(await ids(`model=${unit.modelId.toLowerCase()}`)).toEqual([a.caseId, c.caseId].sort());
      expect(await ids(`assignee=${lead.actor.id}`)).toEqual([a.caseId]);
      expect(await ids('mine=1')).toEqual([a.caseId]);
      expect(await ids('source=flag')).toEqual([c.caseId]);
      expect(await ids('overdue=1')).toEqual([]);

      const sorted = await request(ctx.app).get('/api/v1/cases?country=MZ&sort=priority&perPage=1').set(lead.auth);
      expect(sorted.body).toMatchObject({ total: 3, page: 1, perPage: 1, counts: { new: 2, triaged: 1 } });
      expect(sorted.body.items.map((x: { _id: string }) => x._id)).toEqual([a.caseId]);
      const second = await request(ctx.app).get('/api/v1/cases?country=MZ&sort=priority&perPage=1&page=3').set(lead.auth);
      expect(second.body.items).toHaveLength(1);
    });

    it('pages, counts and sorts exactly as the database sorts and counts the same cases', async () => {
      const lead = await makeStaff(ctx);
      const made: string[] = [];
      const started = ctx.clock.now();
      try {
        // Distinct opening times (the database's order within equal times is unspecified), some untriaged (no priority).
        for (let i = 0; i < 5; i++) {
          ctx.clock.advance(60_000);
          made.push((await makeReportCase(ctx, { country: 'MW', withEvidence: false })).caseId);
        }
        for (const id of made) await ctx.services.cases.assign(id, lead.actor.id, lead.actor);
        ctx.clock.advance(60_000);
        await ctx.services.cases.triage(made[1]!, triageFields({ scale: 2, scope: 2, irremediable: 2 }), lead.actor);
        await ctx.services.cases.triage(made[3]!, triageFields({ scale: 4, scope: 4, irremediable: 4 }), lead.actor);
        ctx.clock.advance(60_000);
        await ctx.services.cases.triage(made[4]!, triageFields({ scale: 2, scope: 2, irremediable: 2, likelihood: 4 }), lead.actor);
        await ctx.services.cases.transition(made[0]!, { to: 'closed', reason: 'handled', closureReason: 'out-of-scope' }, lead.actor);
        ctx.clock.advance(60_000);
        await ctx.services.cases.addNote(made[2]!, 'checked the serials', lead.actor); // most recently updated

        const dbSorts = { opened: { openedAt: -1, _id: -1 }, priority: { priority: -1, openedAt: 1 }, updated: { updatedAt: -1, _id: -1 } } as const;
        const dbStatus = { open: { status: { $ne: 'closed' } }, all: {}, triaged: { status: 'triaged' }, closed: { status: 'closed' } } as const;
        for (const sort of ['opened', 'priority', 'updated'] as const) {
          for (const status of ['open', 'all', 'triaged', 'closed'] as const) {
            const expected = (await Case.find({ countries: 'MW', ...dbStatus[status] }, { _id: 1 }).sort(dbSorts[sort]).lean()).map((c) => c._id);
            const shown: string[] = [];
            for (const page of [1, 2, 3]) {
              const res = await request(ctx.app).get(`/api/v1/cases?country=MW&sort=${sort}&status=${status}&perPage=2&page=${page}`).set(lead.auth);
              expect(res.status).toBe(200);
              expect(res.body.total).toBe(expected.length);
              expect(res.body.counts).toEqual({ new: 1, triaged: 3, closed: 1 });
              shown.push(...res.body.items.map((c: { _id: string }) => c._id));
            }
            expect({ sort, status, shown }).toEqual({ sort, status, shown: expected });
          }
        }
        const grouped = await Case.aggregate<{ _id: string; n: number }>([{ $match: { countries: 'MW' } }, { $group: { _id: '$status', n: { $sum: 1 } } }]);
        expect(Object.fromEntries(grouped.map((g) => [g._id, g.n]))).toEqual({ new: 1, triaged: 3, closed: 1 });
      } finally {
        ctx.clock.set(started);
      }
    });

    it('shows a change made through the service at once: a triaged priority, a closed or reopened case, a declared conflict', async () => {
      const lead = await makeStaff(ctx);
      const colleague = await makeStaff(ctx);
      const { caseId } = await makeReportCase(ctx, { country: 'LS' });
      await ctx.services.cases.assign(caseId, lead.actor.id, lead.actor);
      await ctx.services.cases.assign(caseId, colleague.actor.id, lead.actor);
      const list = async (who: { auth: Record<string, string> }, qs: string) => {
        const res = await request(ctx.app).get(`/api/v1/cases?country=LS&${qs}`).set(who.auth);
        expect(res.status).toBe(200);
        return { ids: res.body.items.map((c: { _id: string }) => c._id), items: res.body.items, counts: res.body.counts, total: res.body.total };
      };
      expect(await list(lead, 'priority=high')).toMatchObject({ ids: [], total: 0 }); // the queue is read before each change

      await ctx.services.cases.triage(caseId, triageFields({ scale: 3, scope: 3, irremediable: 2 }), lead.actor);
      expect((await Case.findById(caseId).lean())!).toMatchObject({ status: 'triaged', priorityLevel: 'high' });
      const high = await list(lead, 'priority=high');
      expect(high).toMatchObject({ ids: [caseId], total: 1, counts: { triaged: 1 } });
      expect(high.items[0]).toMatchObject({ status: 'triaged', priorityLevel: 'high', harmCategories: ['privacy-surveillance'] });

      await ctx.services.cases.transition(caseId, { to: 'closed', reason: 'handled', closureReason: 'referred' }, lead.actor);
      expect((await Case.findById(caseId).lean())!.status).toBe('closed');
      expect(await list(lead, '')).toMatchObject({ ids: [], total: 0, counts: { closed: 1 } });
      expect((await list(lead, 'status=closed')).ids).toEqual([caseId]);

      await ctx.services.cases.transition(caseId, { to: 'investigating', reason: 'new evidence' }, lead.actor);
      expect((await list(lead, 'status=investigating')).ids).toEqual([caseId]);
      expect((await list(colleague, 'mine=1')).ids).toEqual([caseId]);

      await ctx.services.cases.declareConflict(caseId, colleague.actor.id, 'Knows the customer', lead.actor);
      expect((await Case.findById(caseId).lean())!.conflictedUserIds.map(String)).toEqual([colleague.actor.id]);
      expect(await list(colleague, 'status=all')).toMatchObject({ ids: [], total: 0, counts: {} });
      expect((await list(lead, '')).items[0]).toMatchObject({ _id: caseId, assigneeIds: [lead.actor.id], conflictedUserIds: [colleague.actor.id] });
    });

    it('shows a write through one app instance in another instance’s queue and unit timeline on its next request', async () => {
      // A second set of services on the same database, as another app instance would have.
      const other = createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
      const lead = await makeStaff(ctx);
      const { unit } = await makeUnit(ctx);
      const first = await makeReportCase(ctx, { country: 'SZ', unitId: unit._id });
      const ids = async (services: typeof other, filters: Parameters<typeof other.cases.queue>[0] = {}) =>
        (await services.cases.queue({ country: 'SZ', ...filters }, { skip: 0, limit: 50 }, lead.actor)).items.map((c) => c._id);
      expect(await ids(other)).toEqual([first.caseId]);
      expect((await other.cases.casesOfUnit(unit._id, lead.actor)).map((c) => c._id)).toEqual([first.caseId]);
      expect(await ids(ctx.services, { priority: 'critical' })).toEqual([]);

      await ctx.services.cases.assign(first.caseId, lead.actor.id, lead.actor);
      await ctx.services.cases.triage(first.caseId, triageFields({ scale: 4, scope: 4, irremediable: 4 }), lead.actor);
      expect(await ids(other, { priority: 'critical' })).toEqual([first.caseId]);
      expect(await ids(other, { mine: true })).toEqual([first.caseId]);
      ctx.clock.advance(1000);
      const second = await makeReportCase(ctx, { country: 'SZ' }); // opened through the first instance
      expect(await ids(other)).toEqual([second.caseId, first.caseId]);

      await other.cases.transition(first.caseId, { to: 'closed', reason: 'handled', closureReason: 'substantiated' }, lead.actor);
      expect((await Case.findById(first.caseId).lean())!.status).toBe('closed');
      expect(await ids(ctx.services)).toEqual([second.caseId]);
      expect(await ids(ctx.services, { status: 'closed' })).toEqual([first.caseId]);
      expect((await ctx.services.cases.casesOfUnit(unit._id, lead.actor)).map((c) => ({ id: c._id, status: c.status }))).toEqual([{ id: first.caseId, status: 'closed' }]);
    });

    it('shows cases written straight into the collection to an instance started afterwards (as the bench generator writes them)', async () => {
      const lead = await makeStaff(ctx);
      const freshInstance = () => createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
      const ids = async (services: typeof ctx.services) => (await services.cases.queue({ country: 'TZ', status: 'all' }, { skip: 0, limit: 50 }, lead.actor)).items.map((c) => c._id);
      expect(await ids(freshInstance())).toEqual([]);
      const now = ctx.clock.now();
      await Case.create({ _id: 'C-2025-900001', title: 'Inserted directly', status: 'new', sourceKinds: ['flag'], countries: ['TZ'], openedAt: now, updatedAt: now });
      expect(await ids(freshInstance())).toEqual(['C-2025-900001']);
      await Case.updateOne({ _id: 'C-2025-900001' }, { $set: { countries: ['KE'] } });
      expect(await ids(freshInstance())).toEqual([]);
    });

    it('keeps an instance\'s queue right after more changes than the change log remembers', async () => {
      const lead = await makeStaff(ctx, 'admin');
      const watcher = createServices({ config: ctx.config, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
      const country = 'BI';
      const ids = async () => (await watcher.cases.queue({ country, status: 'all', sort: 'opened' }, { skip: 0, limit: 500 }, lead.actor)).items.map((c) => c._id);
      const [one, two] = [(await makeUnit(ctx)).unit, (await makeUnit(ctx)).unit];
      const first = await makeFlagCase(ctx, { unitId: one._id, modelId: one.modelId, country });
      expect(await ids()).toEqual([first.caseId]);
      // A change of the first case, then more case writes elsewhere than the log's window, then one more case in the country.
      await ctx.services.cases.addNote(first.caseId, 'a note', lead.actor);
      await noteCaseChanged(Array.from({ length: RECENT_CASE_CHANGES + 5 }, (_, i) => `C-1999-${String(i).padStart(6, '0')}`));
      ctx.clock.advance(1000);
      const second = await makeFlagCase(ctx, { unitId: two._id, modelId: two.modelId, country });
      expect(await ids()).toEqual([second.caseId, first.caseId]);
    }, 60_000);

    it('lists a unit’s cases, oldest first, also those written straight into the collection once rebuilt', async () => {
      const lead = await makeStaff(ctx);
      const { unit } = await makeUnit(ctx);
      const reported = await makeReportCase(ctx, { unitId: unit._id });
      ctx.clock.advance(1000);
      const flagged = await ctx.services.flags.raise({ rule: 'country-mismatch', evidence: {} }, { unitId: unit._id }, { kind: 'check-in', id: 'ci_timeline' });
      const opened = new Date(ctx.clock.now().getTime() + 1000);
      await Case.create({ _id: 'C-2025-900002', title: 'Inserted directly', status: 'closed', unitIds: [unit._id], openedAt: opened, updatedAt: opened });
      expect((await ctx.services.cases.casesOfUnit(unit._id, lead.actor)).map((c) => c._id)).toEqual([reported.caseId, flagged.caseId].concat(ctx.db.engine.secondaryIndexes ? ['C-2025-900002'] : []));
      await createStores(ctx.db.engine).cases.rebuildUnitCases();
      expect((await ctx.services.cases.casesOfUnit(unit._id, lead.actor)).map((c) => c._id)).toEqual([reported.caseId, flagged.caseId, 'C-2025-900002']);
    });

    it('names each bad filter', async () => {
      const lead = await makeStaff(ctx);
      const res = await request(ctx.app).get('/api/v1/cases?status=lost&priority=urgent&country=Kenya&sort=random&assignee=me&overdue=maybe&page=0').set(lead.auth);
      expect(res.status).toBe(400);
      expect(Object.keys(res.body.error.fields).sort()).toEqual(['assignee', 'country', 'overdue', 'page', 'priority', 'sort', 'status']);
      const { agent } = await signedInAgent(ctx, 'investigator');
      const page = await agent.get('/cases?country=Kenya');
      expect(page.status).toBe(400);
      expect(page.text).toContain('Use a two-letter ISO country code');
      expect(page.text).toContain('value="Kenya"');
    });

    it('renders the queue and "my cases" pages', async () => {
      const { agent, user } = await signedInAgent(ctx, 'investigator');
      const { caseId } = await makeReportCase(ctx, { country: 'BW' });
      await ctx.services.cases.assign(caseId, String(user._id), actorOf(user));
      const queue = await agent.get('/cases?country=BW');
      expect(queue.status).toBe(200);
      expect(queue.text).toContain(`href="/cases/${caseId}"`);
      const mine = await agent.get('/cases?mine=1');
      expect(mine.text).toContain('<h1>My cases</h1>');
      expect(mine.text).toContain(caseId);
    });
  });

  describe('page forms', () => {
    it('takes every change as a form post and redirects back to the case', async () => {
      const { unit } = await makeUnit(ctx);
      const { agent, user } = await signedInAgent(ctx, 'investigator');
      const { caseId } = await makeReportCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      const page = `/cases/${caseId}`;
      const assign = await agent.form(`${page}/assignees`, { userId: String(user._id) }, page);
      expect(assign.status).toBe(303);
      expect(assign.headers.location).toBe(`${page}#people`);
      expect((await agent.form(`${page}/acknowledge`, {}, page)).status).toBe(303);
      expect((await agent.form(`${page}/triage`, { harmCategories: ['privacy-surveillance', 'life-liberty-security'], scale: '3', scope: '2', irremediable: '3', likelihood: '3', involvement: 'contribute', involvementRationale: 'We trained the installer.' }, page)).status).toBe(303);
      expect((await agent.form(`${page}/notes`, { note: 'Checked the serial' }, page)).status).toBe(303);
      expect((await agent.form(`${page}/actions`, { kind: 'withhold-updates', unitIds: unit._id, dueBy: '' }, page)).status).toBe(303);
      expect((await agent.form(`${page}/transition`, { to: 'investigating', reason: 'Facts needed', closureReason: '' }, page)).status).toBe(303);
      const stored = (await Case.findById(caseId).lean())!;
      expect(stored).toMatchObject({ status: 'investigating', harmCategories: ['privacy-surveillance', 'life-liberty-security'] });
      expect(stored.deadlines!.acknowledgedAt).not.toBeNull();
      expect(stored.notes.map((n) => n.text)).toEqual(['Checked the serial']);
      expect((await Unit.findById(unit._id).lean())!.controls!.updates).toBe('withheld');

      const shown = await agent.get(page);
      expect(shown.status).toBe(200);
      for (const anchor of ['summary', 'triage', 'people', 'units', 'reports', 'flags', 'actions', 'remediation', 'notes', 'merge', 'retention', 'history']) expect(shown.text).toContain(`id="${anchor}"`);
      expect(shown.text).toContain('withheld');
      expect(shown.text).not.toMatch(/<script|style=/);

      const refused = await agent.form(`${page}/transition`, { to: 'new', reason: 'Kept reason' }, page);
      expect(refused.status).toBe(400);
      expect(refused.text).toContain('Kept reason');
      expect(refused.text).toContain('cannot move to new');
    });
  });

  describe('authorisation of every route', () => {
    let caseId: string;
    let reportId: string;
    let fileId: string;
    let actionId: string;
    let assigned: Awaited<ReturnType<typeof makeStaff>>;
    let unassigned: Awaited<ReturnType<typeof makeStaff>>;
    let conflicted: Awaited<ReturnType<typeof makeStaff>>;
    let customer: Awaited<ReturnType<typeof apiUser>>;

    beforeAll(async () => {
      assigned = await makeStaff(ctx);
      unassigned = await makeStaff(ctx);
      conflicted = await makeStaff(ctx);
      customer = await apiUser(ctx, 'customer');
      const made = await makeReportCase(ctx);
      ({ caseId, reportId } = made);
      fileId = made.evidence[0]!.fileId;
      await ctx.services.cases.assign(caseId, assigned.actor.id, assigned.actor);
      await ctx.services.cases.declareConflict(caseId, conflicted.actor.id, 'Related to the customer', assigned.actor);
      actionId = await ctx.services.cases.addAction(caseId, { kind: 'request-information', customer: 'X' }, assigned.actor);
    });

    type Route = { method: 'get' | 'post' | 'put' | 'patch' | 'delete'; path: () => string; body?: () => object; unassigned: number };
    // `unassigned`: what an investigator who is not on the case gets (reading is allowed).
    const routes: Route[] = [
      { method: 'get', path: () => `/api/v1/cases/${caseId}`, unassigned: 200 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/triage`, body: () => (triageFields()), unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/transitions`, body: () => ({ to: 'closed', reason: 'x', closureReason: 'referred' }), unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/acknowledge`, unassigned: 403 },
      { method: 'delete', path: () => `/api/v1/cases/${caseId}/assignees/${assigned.actor.id}`, unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/conflicts`, body: () => ({ conflictUserId: assigned.actor.id, conflictReason: 'x' }), unassigned: 403 },
      { method: 'put', path: () => `/api/v1/cases/${caseId}/legal-hold`, body: () => ({ hold: 'on', holdReason: 'x' }), unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/notes`, body: () => ({ note: 'x' }), unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/actions`, body: () => ({ kind: 'audit-visit' }), unassigned: 403 },
      { method: 'patch', path: () => `/api/v1/cases/${caseId}/actions/${actionId}`, body: () => ({ status: 'done' }), unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/remediation`, body: () => ({ provided: 'x', toWhom: 'y' }), unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/merge`, body: () => ({ intoCaseId: 'C-2026-999999', mergeReason: 'x' }), unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/split`, body: () => ({ reportId }), unassigned: 403 },
      { method: 'get', path: () => `/api/v1/cases/${caseId}/contact`, unassigned: 403 },
      { method: 'get', path: () => `/api/v1/cases/${caseId}/identity-requests`, unassigned: 200 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/identity-requests`, body: () => ({ reason: 'x' }), unassigned: 403 },
      { method: 'get', path: () => `/api/v1/cases/${caseId}/reports/${reportId}/messages`, unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/reports/${reportId}/messages`, body: () => ({ message: 'x' }), unassigned: 403 },
      { method: 'get', path: () => `/api/v1/cases/${caseId}/reports/${reportId}/evidence/${fileId}`, unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/reports/${reportId}/evidence`, unassigned: 403 },
      { method: 'post', path: () => `/api/v1/cases/${caseId}/reports/${reportId}/links/0`, body: () => ({ confirmed: true }), unassigned: 403 },
    ];

    const call = (r: Route, auth?: Record<string, string>, path = r.path()) => {
      const req = request(ctx.app)[r.method](path);
      if (auth) req.set(auth);
      return r.body ? req.send(r.body()) : req;
    };

    it.each(routes.map((r) => [`${r.method.toUpperCase()} ${r.path.toString().replace(/^\(\) => /, '')}`, r] as const))('%s: 401 anonymous, 403 customer, 404 conflicted or guessed id, unassigned as expected', async (_name, r) => {
      const before = await Case.findById(caseId).lean();
      expect((await call(r)).status).toBe(401);
      expect((await call(r, customer.auth)).status).toBe(403);
      expect((await call(r, conflicted.auth)).status).toBe(404);
      expect((await call(r, unassigned.auth)).status).toBe(r.unassigned);
      expect((await call(r, assigned.auth, r.path().replace(caseId, 'C-2026-999998'))).status).toBe(404);
      const after = await Case.findById(caseId).lean();
      expect(after!.rev).toBe(before!.rev); // none of the refused calls changed the case
    });

    it('lists cases for staff only, never for customers, and hides cases from the conflicted', async () => {
      expect((await request(ctx.app).get('/api/v1/cases')).status).toBe(401);
      expect((await request(ctx.app).get('/api/v1/cases').set(customer.auth)).status).toBe(403);
      const list = await request(ctx.app).get('/api/v1/cases?status=all&perPage=200').set(conflicted.auth);
      expect(list.status).toBe(200);
      expect(list.body.items.map((c: { _id: string }) => c._id)).not.toContain(caseId);
    });

    it('lets any investigator assign (take) a case they are not conflicted in; customers cannot', async () => {
      const { caseId: fresh } = await makeReportCase(ctx);
      expect((await request(ctx.app).post(`/api/v1/cases/${fresh}/assignees`).set(customer.auth).send({ userId: customer.user._id })).status).toBe(403);
      expect((await request(ctx.app).post(`/api/v1/cases/${fresh}/assignees`).send({ userId: unassigned.actor.id })).status).toBe(401);
      expect((await request(ctx.app).post(`/api/v1/cases/${caseId}/assignees`).set(conflicted.auth).send({ userId: conflicted.actor.id })).status).toBe(404);
      expect((await request(ctx.app).post(`/api/v1/cases/${fresh}/assignees`).set(unassigned.auth).send({ userId: unassigned.actor.id })).status).toBe(200);
    });

    // Each with a body that would pass validation, so only the access rules can refuse it.
    const pageForms: Array<[string, () => Record<string, unknown>]> = [
      ['/triage', () => ({ ...triageFields(), scale: '3', scope: '2', irremediable: '3', likelihood: '2' })],
      ['/transition', () => ({ to: 'closed', reason: 'x', closureReason: 'referred' })],
      ['/acknowledge', () => ({})],
      ['/conflicts', () => ({ conflictUserId: assigned.actor.id, conflictReason: 'x' })],
      ['/notes', () => ({ note: 'x' })],
      ['/actions', () => ({ kind: 'audit-visit' })],
      ['/remediation', () => ({ provided: 'x', toWhom: 'y' })],
      ['/legal-hold', () => ({ hold: 'on', holdReason: 'x' })],
      ['/messages', () => ({ reportId, message: 'x' })],
      ['/merge', () => ({ intoCaseId: 'C-2026-999999', mergeReason: 'x' })],
      ['/split', () => ({ reportId })],
      ['/assignees/ASSIGNED/remove', () => ({})],
      ['/actions/ACTION', () => ({ status: 'done' })],
      ['/reports/REPORT/links/0', () => ({ confirmed: 'true' })],
    ];
    it.each(pageForms)('page form POST /cases/:id%s: 403 without a token, 403 customer, 404 conflicted, 403 unassigned, nothing changed', async (suffix, body) => {
      const path = `/cases/${caseId}${suffix.replace('ASSIGNED', assigned.actor.id).replace('ACTION', actionId).replace('REPORT', reportId)}`;
      const before = await Case.findById(caseId).lean();
      const anonymous = await request(ctx.app).post(path).type('form').send({});
      expect(anonymous.status).toBe(403); // no CSRF token without a session page: refused before anything else
      const cust = await signedInAgent(ctx, 'customer');
      expect((await cust.agent.form(path, body(), '/account')).status).toBe(403);
      const outsider = await signedInAgent(ctx, 'investigator');
      await ctx.services.cases.declareConflict(caseId, String(outsider.user._id), 'test', assigned.actor);
      expect((await outsider.agent.form(path, body(), '/cases')).status).toBe(404);
      const reader = await signedInAgent(ctx, 'investigator');
      expect((await reader.agent.form(path, body(), `/cases/${caseId}`)).status).toBe(403);
      const after = await Case.findById(caseId).lean();
      expect(after!.rev).toBe(before!.rev + 1); // only the conflict declared by this test
    });

    it('keeps customers and visitors out of the case pages, and the conflicted out of the case', async () => {
      const anonymous = await request(ctx.app).get(`/cases/${caseId}`);
      expect(anonymous.status).toBe(303);
      expect(anonymous.headers.location).toBe(`/login?next=${encodeURIComponent(`/cases/${caseId}`)}`);
      const cust = await signedInAgent(ctx, 'customer');
      for (const p of ['/cases', `/cases/${caseId}`, `/cases/${caseId}/contact`, `/cases/${caseId}/reports/${reportId}/evidence/${fileId}`]) expect((await cust.agent.get(p)).status).toBe(403);
      const conflictedAgent = await signedInAgent(ctx, 'investigator');
      await ctx.services.cases.declareConflict(caseId, String(conflictedAgent.user._id), 'Knows the reporter', assigned.actor);
      expect((await conflictedAgent.agent.get(`/cases/${caseId}`)).status).toBe(404);
      expect((await conflictedAgent.agent.form(`/cases/${caseId}/notes`, { note: 'x' }, '/cases')).status).toBe(404);
      const reader = await signedInAgent(ctx, 'investigator');
      expect((await reader.agent.get(`/cases/${caseId}`)).status).toBe(200);
      expect((await reader.agent.get(`/cases/${caseId}/contact`)).status).toBe(403);
      expect((await reader.agent.form(`/cases/${caseId}/notes`, { note: 'x' }, `/cases/${caseId}`)).status).toBe(403);
      const noCsrf = await reader.agent.post(`/cases/${caseId}/assignees`).type('form').send({ userId: String(reader.user._id) });
      expect(noCsrf.status).toBe(403);
      expect((await Case.findById(caseId).lean())!.assigneeIds.map(String)).not.toContain(String(reader.user._id));
    });
  });
});
