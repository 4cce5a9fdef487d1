import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { Partner } from '../models/partners';
import { createTestContext, type TestContext } from './helpers/context';
import { apiUser, signedInAgent } from './helpers/factories';
import { makePartner, partnerUser } from './helpers/partners';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(() => ctx.close());

const api = () => request(ctx.app);
const DAY = 86_400_000;
/** The error summary at the top of a form shown again. */
const summaryOf = (html: string) => /<div class="error-summary"[\s\S]*?<\/div>/.exec(html)?.[0] ?? '';

/** Publishes a new version of the questions (the set is shared: each test reads the version it made). */
async function publish(questions: string[]) {
  const admin = await apiUser(ctx, 'admin');
  const res = await api().post('/api/v1/partners/due-diligence-questions').set(admin.auth).send({ questions });
  expect(res.status).toBe(201);
  return res.body.questionSet as { version: number; questions: Array<{ id: string; text: string }> };
}

describe('due-diligence questionnaire', () => {
  it('an admin publishes versions; a partner answers the latest; a new version changes no answers already given', async () => {
    const admin = await apiUser(ctx, 'admin');
    const empty = await api().post('/api/v1/partners/due-diligence-questions').set(admin.auth).send({ questions: [] });
    expect(empty.status).toBe(400);
    expect(empty.body.error.fields).toHaveProperty('questions');
    const investigator = await apiUser(ctx, 'investigator');
    expect((await api().post('/api/v1/partners/due-diligence-questions').set(investigator.auth).send({ questions: ['Q?'] })).status).toBe(403);

    const v1 = await publish(['Do you screen end customers?', 'Do you train sales staff on end-use red flags?']);
    const partner = await makePartner(ctx);
    const member = await partnerUser(ctx, partner._id);

    const incomplete = await api().put(`/api/v1/partners/${partner._id}/due-diligence/answers`).set(member.auth).send({ version: v1.version, answers: [{ questionId: 'q1', answer: 'yes' }] });
    expect(incomplete.status).toBe(400);
    expect(incomplete.body.error.fields).toEqual({ answer_q2: expect.stringMatching(/yes, partly or no/) });

    const answered = await api()
      .put(`/api/v1/partners/${partner._id}/due-diligence/answers`)
      .set(member.auth)
      .send({ version: v1.version, answers: [{ questionId: 'q1', answer: 'yes', comment: 'Against the consolidated list' }, { questionId: 'q2', answer: 'no' }] });
    expect(answered.status).toBe(200);
    expect(answered.body.dueDiligence.questionnaire).toMatchObject({ version: v1.version, status: 'submitted', answers: [{ questionId: 'q1', answer: 'yes', comment: 'Against the consolidated list' }, { questionId: 'q2', answer: 'no', comment: '' }] });
    const again = await api().put(`/api/v1/partners/${partner._id}/due-diligence/answers`).set(member.auth).send({ version: v1.version, answers: [{ questionId: 'q1', answer: 'no' }, { questionId: 'q2', answer: 'no' }] });
    expect(again.status).toBe(409);

    const v2 = await publish(['Do you screen end customers and their end users?']);
    const profile = await api().get(`/api/v1/partners/${partner._id}/due-diligence`).set(member.auth);
    expect(profile.status).toBe(200);
    expect(profile.body.questionSet).toMatchObject({ version: v2.version, questions: [{ id: 'q1', text: 'Do you screen end customers and their end users?' }] });
    expect(profile.body.dueDiligence.questionnaire.questions.map((q: { text: string }) => q.text)).toEqual(['Do you screen end customers?', 'Do you train sales staff on end-use red flags?']);
    const stored = await Partner.findById(partner._id).lean();
    expect(stored!.dueDiligence!.questionnaire).toMatchObject({ version: v1.version, status: 'submitted', answers: [{ answer: 'yes' }, { answer: 'no' }] });
  });

  it('compliance sends back with a reason, then accepts: review dates, maturity and the risk tier follow', async () => {
    const v = await publish(['Do you screen end customers?', 'Do you keep end-use declarations?', 'Do you audit resellers?']);
    const partner = await makePartner(ctx, { maturity: 'basic' });
    const member = await partnerUser(ctx, partner._id);
    const investigator = await apiUser(ctx, 'investigator');
    const answer = (answers: string[]) =>
      api()
        .put(`/api/v1/partners/${partner._id}/due-diligence/answers`)
        .set(member.auth)
        .send({ version: v.version, answers: answers.map((a, i) => ({ questionId: `q${i + 1}`, answer: a })) });
    const review = (body: object) => api().post(`/api/v1/partners/${partner._id}/due-diligence/review`).set(investigator.auth).send(body);

    expect((await review({ decision: 'accept' })).status).toBe(409); // nothing submitted yet
    expect((await answer(['yes', 'yes', 'yes'])).status).toBe(200);
    const noReason = await review({ decision: 'send-back' });
    expect(noReason.status).toBe(400);
    expect(noReason.body.error.fields).toHaveProperty('reason');
    const sentBack = await review({ decision: 'send-back', reason: 'Say how you audit resellers.' });
    expect(sentBack.status).toBe(200);
    expect(sentBack.body.dueDiligence.questionnaire).toMatchObject({ status: 'sent-back', reason: 'Say how you audit resellers.' });
    const seen = await api().get(`/api/v1/partners/${partner._id}`).set(investigator.auth);
    expect(seen.body.risk.factors).toEqual(expect.arrayContaining([{ factor: 'Due-diligence answers', value: 'sent back', points: 1 }]));

    expect((await answer(['yes', 'no', 'no'])).status).toBe(200);
    const accepted = await review({ decision: 'accept', maturity: 'established' });
    expect(accepted.status).toBe(200);
    const now = ctx.clock.now();
    expect(accepted.body.dueDiligence).toMatchObject({
      maturity: 'established',
      lastReviewAt: now.toISOString().slice(0, 10),
      nextReviewAt: new Date(now.getTime() + 365 * DAY).toISOString().slice(0, 10),
      questionnaire: { status: 'accepted' },
    });
    expect((await review({ decision: 'accept' })).status).toBe(409);

    const assessed = await api().get(`/api/v1/partners/${partner._id}`).set(investigator.auth);
    expect(assessed.body.risk.factors).toEqual(expect.arrayContaining([{ factor: 'Due-diligence answers', value: 'accepted: 2 "no", 0 "partly"', points: 2 }, expect.objectContaining({ factor: 'Due-diligence review', points: 0 })]));
    expect(assessed.body.scorecard).toMatchObject({ dueDiligenceStatus: 'accepted', reviewOverdue: false, maturity: 'established' });
    // The ranked table reads less of each partner than its page does, and comes to the same tier and figures.
    const ranked = await api().get('/api/v1/partners/scorecards?perPage=100').set(investigator.auth);
    expect(ranked.body.items.find((r: { partner: { id: string } }) => r.partner.id === partner._id)).toEqual({ partner: { id: partner._id, name: partner.name, type: partner.type }, risk: assessed.body.risk, scorecard: assessed.body.scorecard });

    // Review age: a year and a day on, the review is overdue and the tier says so.
    ctx.clock.advance(366 * DAY);
    const later = await api().get(`/api/v1/partners/${partner._id}`).set((await apiUser(ctx, 'investigator')).auth); // sessions of a year ago have expired
    expect(later.body.risk.factors).toEqual(expect.arrayContaining([expect.objectContaining({ factor: 'Due-diligence review', points: 2 })]));
    expect(later.body.scorecard.reviewOverdue).toBe(true);
    expect(await AuditEntry.countDocuments({ action: 'partner.questionnaire-reviewed', subjectId: partner._id })).toBe(2);
  });

  it('a partner sees and answers only its own questionnaire, not another partner’s nor its child’s', async () => {
    const v = await publish(['Do you screen end customers?']);
    const distributor = await makePartner(ctx);
    const reseller = await makePartner(ctx, { type: 'reseller', parentId: distributor._id });
    const other = await makePartner(ctx);
    const distributorUser = await partnerUser(ctx, distributor._id);
    const body = { version: v.version, answers: [{ questionId: 'q1', answer: 'yes' }] };

    for (const target of [other._id, reseller._id]) {
      expect((await api().get(`/api/v1/partners/${target}/due-diligence`).set(distributorUser.auth)).status).toBe(403);
      expect((await api().put(`/api/v1/partners/${target}/due-diligence/answers`).set(distributorUser.auth).send(body)).status).toBe(403);
      expect((await api().post(`/api/v1/partners/${target}/due-diligence/trainings`).set(distributorUser.auth).send({ person: 'A', training: 'B', completedAt: '2026-01-01' })).status).toBe(403);
    }
    expect((await api().post(`/api/v1/partners/${distributor._id}/due-diligence/review`).set(distributorUser.auth).send({ decision: 'accept' })).status).toBe(403);
    for (const target of [other._id, reseller._id]) expect((await Partner.findById(target).lean())!.dueDiligence!.questionnaire ?? null).toBeNull();

    // Its own page shows its questions only; staff pages are not for it.
    const page = await distributorUser.agent.get('/partner/due-diligence');
    expect(page.status).toBe(200);
    expect(page.text).toContain('Do you screen end customers?');
    expect((await distributorUser.agent.get(`/admin/partners/${other._id}/due-diligence`)).status).toBe(403);
  });

  it('the portal form names the unanswered question and keeps what was typed; staff review it on the partner’s page', async () => {
    const v = await publish(['Do you screen end customers?', 'Do you check delivery addresses?']);
    const partner = await makePartner(ctx);
    const member = await partnerUser(ctx, partner._id);

    const missing = await member.agent.form('/partner/due-diligence', { form: 'answers', version: String(v.version), answer_q1: 'partly', comment_q1: 'Only new customers', comment_q2: 'We ask for proof' });
    expect(missing.status).toBe(400);
    expect(missing.text).toMatch(/id="f-answer_q2-error">Question 2 needs an answer/);
    // The summary names the question as the form numbers it, and a comment's field by its question.
    expect(summaryOf(missing.text)).toContain('<a href="#f-answer_q2">Question 2 needs an answer: yes, partly or no.</a>');
    expect(missing.text).toContain('<legend>Question 2: Do you check delivery addresses?');
    expect(missing.text).toContain('<label for="f-comment_q2">Comment on question 2 (optional)</label>');
    expect(missing.text).toContain('value="partly" checked');
    expect(missing.text).toContain('Only new customers');
    expect(missing.text).toContain('We ask for proof');
    expect((await Partner.findById(partner._id).lean())!.dueDiligence!.questionnaire ?? null).toBeNull();

    const sent = await member.agent.form('/partner/due-diligence', { form: 'answers', version: String(v.version), answer_q1: 'partly', answer_q2: 'yes' });
    expect(sent.status).toBe(303);
    expect((await Partner.findById(partner._id).lean())!.dueDiligence!.questionnaire).toMatchObject({ status: 'submitted', answers: [{ questionId: 'q1', answer: 'partly' }, { questionId: 'q2', answer: 'yes' }] });

    const staff = await signedInAgent(ctx, 'investigator');
    const noReason = await staff.agent.form(`/admin/partners/${partner._id}/due-diligence/review`, { form: 'review', decision: 'send-back', reason: '' }, `/admin/partners/${partner._id}/due-diligence`);
    expect(noReason.status).toBe(400);
    expect(noReason.text).toMatch(/id="f-reason-error">Say why/);
    expect(summaryOf(noReason.text)).toContain('<a href="#f-reason">Reason: Say why it is sent back, so the partner knows what to change.</a>');
    expect(noReason.text).toContain('<option value="send-back" selected>');
    const back = await staff.agent.form(`/admin/partners/${partner._id}/due-diligence/review`, { form: 'review', decision: 'send-back', reason: 'Which addresses?' }, `/admin/partners/${partner._id}/due-diligence`);
    expect(back.status).toBe(303);
    const shown = await member.agent.get('/partner/due-diligence');
    expect(shown.text).toMatch(/id="dd-reason">Which addresses\?/);
  });

  it('training attestations: who, which training, when; not in the future', async () => {
    const partner = await makePartner(ctx);
    const member = await partnerUser(ctx, partner._id);
    const future = await api().post(`/api/v1/partners/${partner._id}/due-diligence/trainings`).set(member.auth).send({ person: 'Amina Otieno', training: 'End-use screening', completedAt: new Date(ctx.clock.now().getTime() + 2 * DAY).toISOString().slice(0, 10) });
    expect(future.status).toBe(400);
    expect(future.body.error.fields).toHaveProperty('completedAt');
    const missing = await member.agent.form('/partner/due-diligence/trainings', { form: 'training', person: 'Amina Otieno', training: '', completedAt: '2026-01-10' }, '/partner/due-diligence');
    expect(missing.status).toBe(400);
    expect(missing.text).toMatch(/id="f-training-error">Training is required/);
    expect(missing.text).toContain('value="Amina Otieno"');

    const recorded = await api().post(`/api/v1/partners/${partner._id}/due-diligence/trainings`).set(member.auth).send({ person: 'Amina Otieno', training: 'End-use screening', completedAt: '2026-01-10' });
    expect(recorded.status).toBe(201);
    expect(recorded.body.dueDiligence.trainings).toEqual([expect.objectContaining({ person: 'Amina Otieno', training: 'End-use screening', completedAt: '2026-01-10' })]);
    const stored = await Partner.findById(partner._id).lean();
    expect(stored!.dueDiligence!.trainings).toEqual([expect.objectContaining({ person: 'Amina Otieno', training: 'End-use screening', completedAt: new Date('2026-01-10T00:00:00Z') })]);

    // Editing the partner's record sets its maturity and dates, and leaves the attestations alone.
    const admin = await apiUser(ctx, 'admin');
    const edited = await api().put(`/api/v1/partners/${partner._id}`).set(admin.auth).send({ name: partner.name, type: partner.type, maturity: 'leading' });
    expect(edited.status).toBe(200);
    expect((await Partner.findById(partner._id).lean())!.dueDiligence).toMatchObject({ maturity: 'leading', trainings: [expect.objectContaining({ person: 'Amina Otieno' })] });
  });
});
