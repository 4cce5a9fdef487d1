import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import type { DueDiligenceAnswer, MaturityLevel, QuestionnaireDecision } from '../../domain/partners';
import { auditActor, type PartnerActor, type PartnerDeps, partnerScope } from './context';

export interface QuestionnaireAnswers {
  /** The question set's version the partner was shown: answers to an older one are refused. */
  version: number;
  answers: Array<{ questionId: string; answer: DueDiligenceAnswer; comment: string }>;
}

export interface QuestionnaireReview {
  decision: QuestionnaireDecision;
  reason: string;
  maturity: MaturityLevel | null;
  nextReviewAt: Date | null;
}

export interface TrainingAttestation {
  person: string;
  training: string;
  completedAt: Date;
}

/** An accepted questionnaire is due again a year later unless compliance sets another date. */
const REVIEW_EVERY_MS = 365 * 86_400_000;

/**
 * The due-diligence profile: versioned questions (admins publish a version; a partner answers
 * the latest and keeps a copy of the questions it answered), compliance's review (accept, or
 * send back with a reason), and training attestations. Accepting a questionnaire is the
 * partner's review: it sets the last and next review dates the risk tier reads.
 */
export function partnerDueDiligence(deps: PartnerDeps) {
  const { clock, audit } = deps;
  const store = deps.stores.partners;
  const scope = partnerScope(deps);

  /** A partner answers and attests only for itself (not for its children); staff for anyone. */
  async function ownPartner(partnerId: string, actor: PartnerActor) {
    if (actor.kind === 'partner' && actor.partnerId !== partnerId) {
      if (!(await store.partnerById(partnerId))) throw new NotFoundError('No such partner.');
      throw new ForbiddenError('This questionnaire is not yours.');
    }
    const partner = await store.partnerById(partnerId);
    if (!partner) throw new NotFoundError('No such partner.');
    return partner;
  }

  return {
    currentQuestionSet: () => store.latestQuestionSet(),

    questionSets: (page: Page) => store.listQuestionSets(page),

    /** A new version of the questions; questionnaires already answered keep theirs. */
    async publishQuestionSet(texts: string[], actor: PartnerActor & { kind: 'staff' }) {
      const latest = await store.latestQuestionSet();
      const version = (latest?._id ?? 0) + 1;
      const questions = texts.map((text, i) => ({ id: `q${i + 1}`, text }));
      if (!(await store.insertQuestionSet({ _id: version, questions, publishedByUserId: actor.userId, publishedAt: clock.now() }))) {
        throw new ConflictError('Another version was published meanwhile: reload and check it before publishing yours.');
      }
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'partner.questions-published', subjectKind: 'due-diligence-questions', subjectId: String(version), detail: { questions: questions.length } });
      return (await store.latestQuestionSet())!;
    },

    /** The partner's profile: its questionnaire as answered, the questions to answer now, its trainings. */
    async dueDiligenceOf(partnerId: string, actor: PartnerActor) {
      const partner = actor.kind === 'partner' ? await ownPartner(partnerId, actor) : await scope.visiblePartner(actor, partnerId);
      return { partner, questionnaire: partner.dueDiligence?.questionnaire ?? null, questionSet: await store.latestQuestionSet(), trainings: partner.dueDiligence?.trainings ?? [] };
    },

    /** The partner answers the latest questions; every question needs an answer. */
    async answerQuestionnaire(partnerId: string, input: QuestionnaireAnswers, actor: PartnerActor & { kind: 'partner' }) {
      await ownPartner(partnerId, actor);
      const set = await store.latestQuestionSet();
      if (!set) throw new ConflictError('There are no due-diligence questions yet.');
      if (set._id !== input.version) throw new ConflictError(`The questions changed meanwhile (now version ${set._id}): your answers are below; check them against the new questions and send again.`);
      const given = new Map(input.answers.map((a) => [a.questionId, a]));
      const missing = set.questions.map((q, i) => ({ q, n: i + 1 })).filter(({ q }) => !given.has(q.id));
      if (missing.length) throw new ValidationError(Object.fromEntries(missing.map(({ q, n }) => [`answer_${q.id}`, `Question ${n} needs an answer: yes, partly or no.`])));
      const unknown = input.answers.filter((a) => !set.questions.some((q) => q.id === a.questionId));
      if (unknown.length) throw new ValidationError({ answers: `No such question in version ${set._id}: ${unknown.map((a) => a.questionId).join(', ')}.` });
      const submitted = await store.submitQuestionnaire(partnerId, {
        version: set._id,
        questions: set.questions.map((q) => ({ id: q.id, text: q.text })),
        answers: set.questions.map((q) => ({ questionId: q.id, answer: given.get(q.id)!.answer, comment: given.get(q.id)!.comment })),
        status: 'submitted',
        submittedAt: clock.now(),
        submittedByUserId: actor.userId,
        reviewedAt: null,
        reviewedByUserId: null,
        reason: '',
      });
      if (!submitted) throw new ConflictError('Your questionnaire is waiting for compliance’s review: you can answer again once it is reviewed.');
      await audit.record({ ...auditActor(actor), action: 'partner.questionnaire-submitted', subjectKind: 'partner', subjectId: partnerId, detail: { version: set._id } });
      return (await store.partnerById(partnerId))!;
    },

    /** Compliance accepts (the partner's review is done: dates and maturity set) or sends back with a reason. */
    async reviewQuestionnaire(partnerId: string, input: QuestionnaireReview, actor: PartnerActor & { kind: 'staff' }) {
      if (!(await store.partnerById(partnerId))) throw new NotFoundError('No such partner.');
      const now = clock.now();
      const set: Record<string, unknown> = { 'dueDiligence.questionnaire.reviewedAt': now, 'dueDiligence.questionnaire.reviewedByUserId': actor.userId, updatedAt: now };
      if (input.decision === 'accept') {
        if (input.nextReviewAt && input.nextReviewAt.getTime() <= now.getTime()) throw new ValidationError({ nextReviewAt: 'The next review must be in the future.' });
        Object.assign(set, {
          'dueDiligence.questionnaire.status': 'accepted',
          'dueDiligence.questionnaire.reason': input.reason,
          'dueDiligence.lastReviewAt': now,
          'dueDiligence.nextReviewAt': input.nextReviewAt ?? new Date(now.getTime() + REVIEW_EVERY_MS),
          ...(input.maturity ? { 'dueDiligence.maturity': input.maturity } : {}),
        });
      } else {
        if (!input.reason) throw new ValidationError({ reason: 'Say why it is sent back, so the partner knows what to change.' });
        Object.assign(set, { 'dueDiligence.questionnaire.status': 'sent-back', 'dueDiligence.questionnaire.reason': input.reason });
      }
      if (!(await store.reviewQuestionnaire(partnerId, set))) throw new ConflictError('There is no questionnaire waiting for review (it was reviewed meanwhile, or not yet answered).');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'partner.questionnaire-reviewed', subjectKind: 'partner', subjectId: partnerId, detail: { decision: input.decision, reason: input.reason } });
      return (await store.partnerById(partnerId))!;
    },

    /** Who took which training, when: recorded by the partner for itself, or by staff. */
    async attestTraining(partnerId: string, input: TrainingAttestation, actor: PartnerActor) {
      await ownPartner(partnerId, actor);
      const now = clock.now();
      if (input.completedAt.getTime() > now.getTime()) throw new ValidationError({ completedAt: 'A training cannot be completed in the future.' });
      await store.addTraining(partnerId, { ...input, recordedAt: now, recordedByUserId: actor.userId });
      await audit.record({ ...auditActor(actor), action: 'partner.training-attested', subjectKind: 'partner', subjectId: partnerId, detail: { person: input.person, training: input.training } });
      return (await store.partnerById(partnerId))!;
    },
  };
}
