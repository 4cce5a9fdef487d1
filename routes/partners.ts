import fs from 'node:fs';
import express, { type Request } from 'express';
import { z } from 'zod';
import { Router } from './router';
import { labelled, type FieldLabels } from './form-labels';
import type { RouteContext } from './context';
import { countryCode, dayField } from './catalogue';
import { COUNTRY_OPTIONS } from '../server/countries';
import { RISK_LEVELS } from '../server/domain/catalogue';
import { CLAUSE_KINDS, DD_ANSWERS, MATURITY_LEVELS, PARTNER_TYPES, QUESTIONNAIRE_DECISIONS, REVIEW_DECISIONS } from '../server/domain/partners';
import { END_USER_TYPES } from '../server/domain/registrations';
import { ValidationError } from '../server/errors';
import { requireApiKey } from '../server/middleware/api-key';
import { requireRole } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { uploads } from '../server/middleware/uploads';
import { email, pageBody, pagination, parseBody, parseQuery, password, requiredText, shortText, toPage, type Page } from '../server/middleware/validate';
import { modelOf, serialOf } from '../server/services/catalogue/codes';
import { csvCell } from '../server/services/insight';
import { MERGE_THRESHOLD, SALES_CSV_HEADER, type PartnerActor, type PartnersService } from '../server/services/partners';

// ----- inputs -----

const lines = (v: unknown) => (typeof v === 'string' ? v.split(/[\r\n,;]+/).map((s) => s.trim()).filter(Boolean) : v);
/** A list from an API array or a form's textarea / comma-separated text. */
const listOf = <T extends z.ZodType>(item: T) => z.preprocess(lines, z.array(item));
const optionalDay = (label: string) =>
  z.preprocess((v) => (v === '' || v === undefined ? null : v), dayField(label).nullable());
const partnerIdField = z.string().trim().regex(/^ptn_[0-9a-f]{20}$/, 'Choose a partner from the list.');

const clause = z.object({ kind: z.enum(CLAUSE_KINDS, `A clause is one of: ${CLAUSE_KINDS.join(', ')}.`), since: dayField('Clause in force since'), until: optionalDay('Clause in force until') });

export const partnerInput = z.object({
  name: requiredText(200, 'Name'),
  type: z.enum(PARTNER_TYPES, `Choose a type: ${PARTNER_TYPES.join(', ')}.`),
  parentId: z.preprocess((v) => (v === '' ? null : v), partnerIdField.nullable()).default(null),
  territories: listOf(countryCode).default([]),
  authorisedModels: listOf(z.string().trim().toUpperCase().max(64)).default([]),
  authorisedRiskLevels: listOf(z.enum(RISK_LEVELS, `Risk levels are: ${RISK_LEVELS.join(', ')}.`)).default([]),
  clauses: z.array(clause).max(20).default([]),
  maturity: z.enum(MATURITY_LEVELS, `Choose a maturity level: ${MATURITY_LEVELS.join(', ')}.`).default('none'),
  lastReviewAt: optionalDay('Last review').default(null),
  nextReviewAt: optionalDay('Next review').default(null),
});

/**
 * The form sends one row of inputs per clause kind (a checkbox and its dates); unticked
 * kinds are not in force.
 */
const partnerForm = z.preprocess((body) => {
  const b = { ...(body as Record<string, unknown>) };
  b.clauses = CLAUSE_KINDS.filter((k) => b[`clause_${k}`]).map((k) => ({ kind: k, since: b[`clause_${k}_since`], until: b[`clause_${k}_until`] }));
  for (const k of Object.keys(b)) if (k.startsWith('clause_')) delete b[k];
  return b;
}, partnerInput);

type FieldErrorAt = (path: string[], message: string) => [field: string, message: string];

/** A form shows a list in one input: a bad item's error (`units.3`) goes under the list's field. */
const underList: FieldErrorAt = ([list], message) => [list!, message];

/** A form post parsed with `schema`, its errors moved by `errorAt` under the inputs that show them. */
function parseForm<S extends z.ZodType>(schema: S, req: Request, errorAt: FieldErrorAt = underList): z.infer<S> {
  try {
    return parseBody(schema, req);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    const fields: Record<string, string> = {};
    for (const [key, message] of Object.entries(err.fields ?? {})) {
      const [field, shown] = errorAt(key.split('.'), message);
      fields[field] ??= shown;
    }
    throw new ValidationError(fields);
  }
}

/** The partner form: a list's bad item by its list's field, a clause's date by that clause's row. */
function parsePartnerForm(req: Request) {
  const body = req.body as Record<string, unknown>;
  const clauseKinds = CLAUSE_KINDS.filter((k) => body[`clause_${k}`]);
  return parseForm(partnerForm, req, (path, message) => {
    const [list, index, date] = path;
    if (list !== 'clauses' || index === undefined || !date) return underList(path, message);
    // The row's label names the clause and the date ("In force since (no re-export)"): the message need not.
    return [`clause_${clauseKinds[Number(index)]}_${date}`, message.replace(/^Clause in force (since|until): e/, 'E')];
  });
}

const partnerUserInput = z.object({ memberEmail: email, memberPassword: password, memberName: requiredText(120, 'The user’s name') }).transform((i) => ({ email: i.memberEmail, password: i.memberPassword, name: i.memberName }));
const apiKeyInput = z.object({ keyName: requiredText(120, 'Key name') });

const saleFields = {
  sku: requiredText(64, 'SKU'),
  serial: requiredText(64, 'Serial number'),
  customerName: requiredText(200, 'End customer name'),
  customerType: z.enum(END_USER_TYPES, `Choose an end-user type: ${END_USER_TYPES.join(', ')}.`),
  country: countryCode,
  endUse: shortText(1000, 'Declared end use').default(''),
};
export const saleInput = z.object({ ...saleFields, soldAt: dayField('Sale date') });
export const salesInput = z.object({ sales: z.array(saleInput.strict()).min(1, 'Send at least one sale.').max(1000, 'At most 1,000 sales per request.') }).strict();
export const reviewInput = z.object({ ...saleFields, plannedAt: optionalDay('Planned delivery').default(null) });
export const decisionInput = z.object({
  decision: z.enum(REVIEW_DECISIONS, `Choose a decision: ${REVIEW_DECISIONS.join(', ')}.`),
  reasons: requiredText(2000, 'Reasons'),
  conditions: listOf(shortText(500, 'A condition')).default([]),
});
const answerInput = z.object({ text: requiredText(2000, 'Answer') });
export const requestAnswerInput = z.object({ answer: requiredText(5000, 'Answer') });
const passOnInput = z.object({
  toId: partnerIdField,
  units: z.preprocess(
    lines,
    z
      .array(z.string().regex(/^[^:\s]+:[^:\s]+$/, 'Write each unit as SKU:SERIAL.'))
      .min(1, 'Name at least one unit, as SKU:SERIAL, one per line.')
      .max(5000, 'At most 5,000 units at once.'),
  ),
});
const mergeInput = z.object({ fromId: partnerIdField, intoId: partnerIdField });

// ----- due diligence -----

export const questionSetInput = z.object({
  questions: z.preprocess(
    (v) => (typeof v === 'string' ? v.split(/\r?\n/).map((s) => s.trim()).filter(Boolean) : v),
    z.array(requiredText(1000, 'A question')).min(1, 'Write at least one question, one per line.').max(100, 'At most 100 questions.'),
  ),
});
const answerChoice = z.enum(DD_ANSWERS, `Answer yes, partly or no.`);
export const questionnaireInput = z.object({
  version: z.coerce.number().int().positive('Give the version of the questions you answered.'),
  answers: z.array(z.object({ questionId: z.string().trim().min(1).max(20), answer: answerChoice, comment: shortText(2000, 'A comment').default('') }).strict()).max(100),
});
/** The form sends `answer_<questionId>` and `comment_<questionId>` per question; errors go back under those names. */
function parseQuestionnaireForm(req: Request) {
  const body = req.body as Record<string, unknown>;
  const ids = Object.keys(body).filter((k) => k.startsWith('answer_') || k.startsWith('comment_')).map((k) => k.slice(k.indexOf('_') + 1));
  const questionIds = [...new Set(ids)].filter((id) => body[`answer_${id}`]);
  const form = { body: { version: body.version, answers: questionIds.map((id) => ({ questionId: id, answer: body[`answer_${id}`], comment: body[`comment_${id}`] ?? '' })) } } as Request;
  return parseForm(questionnaireInput, form, (path, message) => {
    const [list, index, sub] = path;
    return [list === 'answers' && index !== undefined ? `${sub === 'comment' ? 'comment' : 'answer'}_${questionIds[Number(index)]}` : list!, message];
  });
}

export const questionnaireReviewInput = z.object({
  decision: z.enum(QUESTIONNAIRE_DECISIONS, `Choose a decision: ${QUESTIONNAIRE_DECISIONS.join(', ')}.`),
  reason: shortText(2000, 'Reason').default(''),
  maturity: z.preprocess((v) => (v === '' ? null : v), z.enum(MATURITY_LEVELS, `Choose a maturity level: ${MATURITY_LEVELS.join(', ')}.`).nullable()).default(null),
  nextReviewAt: optionalDay('Next review').default(null),
});
export const trainingInput = z.object({ person: requiredText(200, 'Who'), training: requiredText(200, 'Training'), completedAt: dayField('Completed on') });

// ----- the forms' labels -----

const clauseName = (kind: string) => kind.replace(/-/g, ' ');
const SALE_LABELS = { sku: 'SKU', serial: 'Serial number', customerName: 'End customer', customerType: 'End-user type', country: 'End customer country', endUse: 'Declared end use' };
const PARTNER_LABELS = {
  name: 'Name',
  type: 'Type',
  parentId: 'Parent distributor',
  territories: 'Authorised territories',
  authorisedModels: 'Authorised models',
  authorisedRiskLevels: 'Authorised risk levels',
  ...Object.fromEntries(CLAUSE_KINDS.flatMap((k) => [[`clause_${k}_since`, `In force since (${clauseName(k)})`], [`clause_${k}_until`, `In force until (${clauseName(k)}, optional)`]])),
  maturity: 'Due-diligence maturity',
  lastReviewAt: 'Last due-diligence review',
  nextReviewAt: 'Next review due',
};

/**
 * Each page's labels, for its `<label>`s and its error summary alike (routes/form-labels.ts).
 * A page with several forms has one map for all of them: their field names differ, and the
 * page shown again after one form's error still labels the others.
 */
const PARTNER_FORMS = {
  list: PARTNER_LABELS,
  partner: { ...PARTNER_LABELS, memberName: 'The user’s name', memberEmail: 'E-mail', memberPassword: 'First password', keyName: 'Key name' },
  questions: { questions: 'Questions' },
  merge: { fromId: 'Partner merged away', intoId: 'Partner kept' },
  saleReview: { decision: 'Decision', reasons: 'Reasons', conditions: 'Conditions', text: 'Your answer' },
  dueDiligence: { answers: 'Answers', version: 'Version', decision: 'Decision', reason: 'Reason', maturity: 'Maturity level (when accepting)', nextReviewAt: 'Next review (when accepting)', person: 'Who', training: 'Training', completedAt: 'Completed on' },
  portal: { toId: 'Pass to', units: 'Units' },
  sales: { file: 'CSV file', ...SALE_LABELS, soldAt: 'Sale date' },
  reviews: { ...SALE_LABELS, plannedAt: 'Planned delivery date' },
  request: { answer: 'Your answer' },
} satisfies Record<string, FieldLabels>;

/** The questionnaire's fields are its questions': `answer_<id>` and `comment_<id>`, numbered as the form shows them. */
const questionnaireLabels = (set: { questions: Array<{ id: string }> } | null): FieldLabels =>
  Object.fromEntries((set?.questions ?? []).flatMap((q, i) => [[`answer_${q.id}`, `Question ${i + 1}`], [`comment_${q.id}`, `Comment on question ${i + 1} (optional)`]]));

// ----- output shapes -----

type Partner = Awaited<ReturnType<PartnersService['getPartner']>>['partner'];
type Review = Awaited<ReturnType<PartnersService['getReview']>>;

const day = (d: Date | null | undefined) => (d ? d.toISOString().slice(0, 10) : null);

export const publicPartner = (p: Partner) => ({
  id: p._id,
  name: p.name,
  aliases: p.aliases,
  type: p.type,
  parentId: p.parentId ?? null,
  territories: p.territories,
  authorisedModels: p.authorisedModels,
  authorisedRiskLevels: p.authorisedRiskLevels,
  clauses: p.clauses.map((c) => ({ kind: c.kind, since: day(c.since), until: day(c.until) })),
  dueDiligence: { maturity: p.dueDiligence?.maturity ?? 'none', lastReviewAt: day(p.dueDiligence?.lastReviewAt), nextReviewAt: day(p.dueDiligence?.nextReviewAt) },
  createdAt: p.createdAt,
});

export const publicReview = (r: Review) => ({
  id: r._id,
  partnerId: r.partnerId,
  unitId: r.unitId,
  customerName: r.customerName,
  customerType: r.customerType,
  country: r.country,
  endUse: r.endUse,
  plannedAt: day(r.plannedAt),
  criteria: r.criteria,
  status: r.status,
  decisions: r.decisions.map((d) => ({ decision: d.decision, reasons: d.reasons, conditions: d.conditions, at: d.at })),
  notes: r.notes.map((n) => ({ text: n.text ?? '', at: n.at ?? null })),
  submittedAt: r.submittedAt,
});

type QuestionSet = NonNullable<Awaited<ReturnType<PartnersService['currentQuestionSet']>>>;
export const publicQuestionSet = (q: QuestionSet) => ({ version: q._id, questions: q.questions.map((x) => ({ id: x.id, text: x.text })), publishedAt: q.publishedAt });

export const publicDueDiligence = (p: Partner) => {
  const dd = p.dueDiligence;
  const q = dd?.questionnaire;
  return {
    partnerId: p._id,
    maturity: dd?.maturity ?? 'none',
    lastReviewAt: day(dd?.lastReviewAt),
    nextReviewAt: day(dd?.nextReviewAt),
    questionnaire: q
      ? {
          version: q.version,
          status: q.status,
          questions: q.questions.map((x) => ({ id: x.id, text: x.text })),
          answers: q.answers.map((a) => ({ questionId: a.questionId, answer: a.answer, comment: a.comment ?? '' })),
          submittedAt: q.submittedAt,
          reviewedAt: q.reviewedAt ?? null,
          reason: q.reason ?? '',
        }
      : null,
    trainings: (dd?.trainings ?? []).map((t) => ({ person: t.person, training: t.training, completedAt: day(t.completedAt), recordedAt: t.recordedAt })),
  };
};

/** The form's values for an existing partner (dates as YYYY-MM-DD, lists one per line). */
const formValues = (p: Partner) => ({
  ...publicPartner(p),
  territories: p.territories.join(', '),
  authorisedModels: p.authorisedModels.join('\n'),
  authorisedRiskLevels: p.authorisedRiskLevels,
  maturity: p.dueDiligence?.maturity ?? 'none',
  lastReviewAt: day(p.dueDiligence?.lastReviewAt) ?? '',
  nextReviewAt: day(p.dueDiligence?.nextReviewAt) ?? '',
  ...Object.fromEntries(p.clauses.flatMap((c) => [[`clause_${c.kind}`, 'on'], [`clause_${c.kind}_since`, day(c.since)], [`clause_${c.kind}_until`, day(c.until) ?? '']])),
});

// ----- who is acting -----

const staffRoles = requireRole('admin', 'investigator');
const adminOnly = requireRole('admin');
const partnerOnly = requireRole('partner');
const staffActor = (req: Request) => ({ kind: 'staff' as const, userId: req.user!.id });

/** Staff act as themselves; a partner's user or key acts for its partner (checked on every record). */
async function actorOf(partners: PartnersService, req: Request): Promise<PartnerActor> {
  if (req.apiKey) return partners.actorFor({ apiKeyId: req.apiKey.id });
  if (req.user?.role === 'partner') return partners.actorFor({ userId: req.user.id });
  return staffActor(req);
}
const partnerActorOf = (partners: PartnersService, req: Request) => partners.actorFor({ userId: req.user!.id });

const formOptions = {
  partnerTypes: PARTNER_TYPES,
  clauseKinds: CLAUSE_KINDS,
  maturityLevels: MATURITY_LEVELS,
  riskLevels: RISK_LEVELS,
  endUserTypes: END_USER_TYPES,
  decisions: REVIEW_DECISIONS,
  ddAnswers: DD_ANSWERS,
  questionnaireDecisions: QUESTIONNAIRE_DECISIONS,
  countries: COUNTRY_OPTIONS,
  salesCsvHeader: SALES_CSV_HEADER,
};

/** The due-diligence page, staff's or the partner's: its labels include the questions of the version shown. */
const dueDiligenceLocals = (profile: Awaited<ReturnType<PartnersService['dueDiligenceOf']>>, staffView: boolean) => ({
  title: 'Due diligence',
  ...profile,
  staffView,
  fieldLabels: { ...PARTNER_FORMS.dueDiligence, ...questionnaireLabels(profile.questionSet) },
  ...formOptions,
});

/** The one-sale form names an unknown unit by its serial field, where the API names it by the sale's index. */
async function reportOneSale(partners: PartnersService, actor: Parameters<PartnersService['reportSales']>[0], sale: z.infer<typeof saleInput>) {
  try {
    const [outcome] = await partners.reportSales(actor, [sale]);
    return outcome!;
  } catch (err) {
    const unknownUnit = err instanceof ValidationError ? err.fields?.['sales.0'] : undefined;
    throw unknownUnit ? new ValidationError({ serial: unknownUnit }) : err;
  }
}

/** The uploaded CSV of sales (small: the portal reads it at once). */
function uploadedText(req: Request): string {
  const file = (req.files as Record<string, Express.Multer.File[]> | undefined)?.file?.[0];
  if (!file) throw new ValidationError({ file: `Choose a CSV file whose first line is: ${SALES_CSV_HEADER}` });
  return fs.readFileSync(file.path, 'utf8');
}

// ----- pages: staff -----

export function partnerPages(ctx: RouteContext) {
  const { services } = ctx;
  const partners = services.partners;
  const router = Router();

  const listPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const [{ items, total }, all] = await Promise.all([partners.listPartners(staffActor(req), page), partners.allPartners()]);
    return { title: 'Channel partners', partners: items, total, page, parents: all.filter((p) => p.type === 'distributor'), ...formOptions };
  };

  router.get('/admin/partners', staffRoles, labelled(PARTNER_FORMS.list), async (req, res) => res.render('partners/list', await listPage(req)));

  router.post(
    '/admin/partners',
    adminOnly,
    labelled(PARTNER_FORMS.list),
    formAction('partners/list', listPage, async (req, res) => {
      const partner = await partners.createPartner(parsePartnerForm(req), staffActor(req));
      res.flash(`Partner ${partner.name} created.`);
      res.redirect(303, `/admin/partners/${partner._id}`);
    }),
  );

  const scorecardsPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await partners.scorecards(page);
    return { title: 'Partner scorecards', rows: items, total, page };
  };
  router.get('/admin/partners/scorecards', staffRoles, async (req, res) => res.render('partners/scorecards', await scorecardsPage(req)));

  const questionsPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await partners.questionSets(page);
    return { title: 'Due-diligence questions', sets: items, total, page, current: items[0] && page.page === 1 ? items[0] : await partners.currentQuestionSet() };
  };
  router.get('/admin/partners/questions', staffRoles, labelled(PARTNER_FORMS.questions), async (req, res) => res.render('partners/questions', await questionsPage(req)));
  router.post(
    '/admin/partners/questions',
    adminOnly,
    labelled(PARTNER_FORMS.questions),
    formAction('partners/questions', questionsPage, async (req, res) => {
      const set = await partners.publishQuestionSet(parseForm(questionSetInput, req).questions, staffActor(req));
      res.flash(`Version ${set._id} published: partners answer it from now on; answers already given keep their questions.`);
      res.redirect(303, '/admin/partners/questions');
    }),
  );

  const staffDueDiligencePage = async (req: Request) => dueDiligenceLocals(await partners.dueDiligenceOf(String(req.params.partnerId), staffActor(req)), true);
  router.get('/admin/partners/:partnerId/due-diligence', staffRoles, async (req, res) => res.render('partners/due-diligence', await staffDueDiligencePage(req)));
  router.post(
    '/admin/partners/:partnerId/due-diligence/review',
    staffRoles,
    formAction('partners/due-diligence', staffDueDiligencePage, async (req, res) => {
      const partner = await partners.reviewQuestionnaire(String(req.params.partnerId), parseBody(questionnaireReviewInput, req), staffActor(req));
      res.flash(`Questionnaire ${partner.dueDiligence?.questionnaire?.status === 'accepted' ? 'accepted' : 'sent back'}.`);
      res.redirect(303, `/admin/partners/${partner._id}/due-diligence`);
    }),
  );
  router.post(
    '/admin/partners/:partnerId/due-diligence/trainings',
    staffRoles,
    formAction('partners/due-diligence', staffDueDiligencePage, async (req, res) => {
      const partner = await partners.attestTraining(String(req.params.partnerId), parseBody(trainingInput, req), staffActor(req));
      res.flash('Training recorded.');
      res.redirect(303, `/admin/partners/${partner._id}/due-diligence`);
    }),
  );

  const mergePage = async () => ({ title: 'Merge near-duplicate partners', pairs: await partners.nearDuplicates(), threshold: MERGE_THRESHOLD });
  router.get('/admin/partners/merge', adminOnly, labelled(PARTNER_FORMS.merge), async (_req, res) => res.render('partners/merge', await mergePage()));
  router.post(
    '/admin/partners/merge',
    adminOnly,
    labelled(PARTNER_FORMS.merge),
    formAction('partners/merge', mergePage, async (req, res) => {
      const { fromId, intoId } = parseBody(mergeInput, req);
      const into = await partners.mergePartners(fromId, intoId, staffActor(req));
      res.flash(`Merged into ${into.name}.`);
      res.redirect(303, '/admin/partners/merge');
    }),
  );

  const detailPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const id = String(req.params.partnerId);
    const [detail, units, all] = await Promise.all([partners.getPartner(id, staffActor(req)), partners.unitsOf(id, staffActor(req), page), partners.allPartners()]);
    return { title: detail.partner.name, ...detail, partnerValues: formValues(detail.partner), units: units.items, total: units.total, page, parents: all.filter((p) => p.type === 'distributor' && p._id !== id), createdKey: null, ...formOptions };
  };

  router.get('/admin/partners/:partnerId', staffRoles, labelled(PARTNER_FORMS.partner), async (req, res) => {
    const locals = await detailPage(req);
    res.render('partners/partner', locals);
  });

  router.post(
    '/admin/partners/:partnerId',
    adminOnly,
    labelled(PARTNER_FORMS.partner),
    formAction('partners/partner', detailPage, async (req, res) => {
      const partner = await partners.updatePartner(String(req.params.partnerId), parsePartnerForm(req), staffActor(req));
      res.flash('The partner was saved.');
      res.redirect(303, `/admin/partners/${partner._id}`);
    }),
  );

  router.post(
    '/admin/partners/:partnerId/users',
    adminOnly,
    labelled(PARTNER_FORMS.partner),
    formAction('partners/partner', detailPage, async (req, res) => {
      const user = await partners.addPartnerUser(String(req.params.partnerId), parseBody(partnerUserInput, req), staffActor(req));
      res.flash(`${user.email} can now sign in to the partner portal.`);
      res.redirect(303, `/admin/partners/${String(req.params.partnerId)}`);
    }),
  );

  router.post(
    '/admin/partners/:partnerId/api-keys',
    adminOnly,
    labelled(PARTNER_FORMS.partner),
    formAction('partners/partner', detailPage, async (req, res) => {
      const created = await partners.createPartnerKey(String(req.params.partnerId), parseBody(apiKeyInput, req).keyName, staffActor(req));
      // Shown once, on this response only: never stored in the clear.
      const locals = await detailPage(req);
      res.status(201).render('partners/partner', { ...locals, createdKey: created.key });
    }),
  );

  const queuePage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await partners.listReviews(staffActor(req), page, true);
    return { title: 'High-risk sales to review', reviews: items, total, page };
  };
  router.get('/admin/sale-reviews', staffRoles, async (req, res) => res.render('partners/reviews', { ...(await queuePage(req)), staffView: true }));

  const reviewPage = async (req: Request) => {
    const review = await partners.getReview(String(req.params.reviewId), staffActor(req));
    const detail = await partners.getPartner(review.partnerId, staffActor(req));
    return { title: 'Sale review', review, partner: detail.partner, risk: detail.risk, staffView: true, ...formOptions };
  };
  router.get('/admin/sale-reviews/:reviewId', staffRoles, labelled(PARTNER_FORMS.saleReview), async (req, res) => res.render('partners/review', await reviewPage(req)));
  router.post(
    '/admin/sale-reviews/:reviewId/decision',
    staffRoles,
    labelled(PARTNER_FORMS.saleReview),
    formAction('partners/review', reviewPage, async (req, res) => {
      const review = await partners.decide(String(req.params.reviewId), parseForm(decisionInput, req), staffActor(req));
      res.flash(`Decision recorded: ${review.status}.`);
      res.redirect(303, `/admin/sale-reviews/${review._id}`);
    }),
  );

  return router;
}

// ----- pages: the partner portal -----

export function partnerPortalPages(ctx: RouteContext) {
  const { services } = ctx;
  const partners = services.partners;
  const router = Router();

  const portalPage = async (req: Request) => {
    const actor = await partnerActorOf(partners, req);
    const page = toPage(parseQuery(pagination, req));
    const [detail, units] = await Promise.all([partners.getPartner(actor.partnerId, actor), partners.unitsOf(actor.partnerId, actor, page)]);
    return { title: 'Partner portal', ...detail, units: units.items, total: units.total, page, ...formOptions };
  };

  router.get('/partner', partnerOnly, labelled(PARTNER_FORMS.portal), async (req, res) => res.render('partners/portal', await portalPage(req)));

  router.post(
    '/partner/pass-on',
    partnerOnly,
    labelled(PARTNER_FORMS.portal),
    formAction('partners/portal', portalPage, async (req, res) => {
      const input = parseForm(passOnInput, req);
      const actor = await partnerActorOf(partners, req);
      const { moved, notHeld } = await partners.passOn(
        actor,
        input.toId,
        input.units.map((u) => ({ sku: modelOf(u), serial: serialOf(u) })),
      );
      res.flash(`${moved.length} units passed on.${notHeld.length ? ` Not held by you, so not passed: ${notHeld.slice(0, 10).join(', ')}${notHeld.length > 10 ? '…' : ''}.` : ''}`);
      res.redirect(303, '/partner');
    }),
  );

  /** Another of the partner's records (its child partner): only within its tree. */
  router.get('/partner/partners/:partnerId', partnerOnly, async (req, res) => {
    const actor = await partnerActorOf(partners, req);
    const page = toPage(parseQuery(pagination, req));
    const [detail, units] = await Promise.all([partners.getPartner(String(req.params.partnerId), actor), partners.unitsOf(String(req.params.partnerId), actor, page)]);
    res.render('partners/child', { title: detail.partner.name, ...detail, units: units.items, total: units.total, page });
  });

  const salesPage = async () => ({ title: 'Report sales', result: null, ...formOptions });
  router.get('/partner/sales', partnerOnly, labelled(PARTNER_FORMS.sales), async (_req, res) => res.render('partners/sales', await salesPage()));

  router.post(
    '/partner/sales',
    partnerOnly,
    labelled(PARTNER_FORMS.sales),
    formAction('partners/sales', salesPage, async (req, res) => {
      const outcome = await reportOneSale(partners, await partnerActorOf(partners, req), parseBody(saleInput, req));
      res.flash(outcome.outcome === 'repeated' ? `The sale of ${outcome.unitId} was already reported: nothing changed.` : `Sale of ${outcome.unitId} recorded. Its checks (screening, diversion rules) follow within a minute: see Your units.`);
      res.redirect(303, '/partner/sales');
    }),
  );

  router.post(
    '/partner/sales/csv',
    partnerOnly,
    labelled(PARTNER_FORMS.sales),
    ...uploads(ctx, [{ name: 'file', maxCount: 1 }]),
    formAction('partners/sales', salesPage, async (req, res) => {
      const result = await partners.reportSalesCsv(await partnerActorOf(partners, req), uploadedText(req));
      res.render('partners/sales', { ...(await salesPage()), result });
    }),
  );

  const reviewsPage = async (req: Request) => {
    const actor = await partnerActorOf(partners, req);
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await partners.listReviews(actor, page);
    return { title: 'High-risk sale reviews', reviews: items, total, page, staffView: false, ...formOptions };
  };
  router.get('/partner/reviews', partnerOnly, labelled(PARTNER_FORMS.reviews), async (req, res) => res.render('partners/reviews', await reviewsPage(req)));
  router.post(
    '/partner/reviews',
    partnerOnly,
    labelled(PARTNER_FORMS.reviews),
    formAction('partners/reviews', reviewsPage, async (req, res) => {
      const review = await partners.submitReview(await partnerActorOf(partners, req), parseBody(reviewInput, req));
      res.flash('Submitted for review: do not deliver until compliance has decided.');
      res.redirect(303, `/partner/reviews/${review._id}`);
    }),
  );

  const partnerReviewPage = async (req: Request) => ({ title: 'Sale review', review: await partners.getReview(String(req.params.reviewId), await partnerActorOf(partners, req)), staffView: false, risk: null, partner: null, ...formOptions });
  router.get('/partner/reviews/:reviewId', partnerOnly, labelled(PARTNER_FORMS.saleReview), async (req, res) => res.render('partners/review', await partnerReviewPage(req)));
  router.post(
    '/partner/reviews/:reviewId/answer',
    partnerOnly,
    labelled(PARTNER_FORMS.saleReview),
    formAction('partners/review', partnerReviewPage, async (req, res) => {
      const review = await partners.answer(String(req.params.reviewId), parseBody(answerInput, req).text, await partnerActorOf(partners, req));
      res.flash('Your answer was sent to compliance.');
      res.redirect(303, `/partner/reviews/${review._id}`);
    }),
  );

  const dueDiligencePage = async (req: Request) => {
    const actor = await partnerActorOf(partners, req);
    return dueDiligenceLocals(await partners.dueDiligenceOf(actor.partnerId, actor), false);
  };
  router.get('/partner/due-diligence', partnerOnly, async (req, res) => res.render('partners/due-diligence', await dueDiligencePage(req)));
  router.post(
    '/partner/due-diligence',
    partnerOnly,
    formAction('partners/due-diligence', dueDiligencePage, async (req, res) => {
      const actor = await partnerActorOf(partners, req);
      await partners.answerQuestionnaire(actor.partnerId, parseQuestionnaireForm(req), actor);
      res.flash('Thank you: your answers went to compliance for review.');
      res.redirect(303, '/partner/due-diligence');
    }),
  );
  router.post(
    '/partner/due-diligence/trainings',
    partnerOnly,
    formAction('partners/due-diligence', dueDiligencePage, async (req, res) => {
      const actor = await partnerActorOf(partners, req);
      await partners.attestTraining(actor.partnerId, parseBody(trainingInput, req), actor);
      res.flash('Training recorded.');
      res.redirect(303, '/partner/due-diligence');
    }),
  );

  const requestsPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await partners.listRequests(await partnerActorOf(partners, req), page);
    return { title: 'Requests from us', requests: items, total, page, now: ctx.clock.now() };
  };
  router.get('/partner/requests', partnerOnly, async (req, res) => res.render('partners/requests', await requestsPage(req)));

  const requestPage = async (req: Request) => ({ title: 'Request', request: await partners.getRequest(String(req.params.requestId), await partnerActorOf(partners, req)), now: ctx.clock.now() });
  router.get('/partner/requests/:requestId', partnerOnly, labelled(PARTNER_FORMS.request), async (req, res) => res.render('partners/request', await requestPage(req)));
  router.post(
    '/partner/requests/:requestId/answer',
    partnerOnly,
    labelled(PARTNER_FORMS.request),
    formAction('partners/request', requestPage, async (req, res) => {
      const request = await partners.answerRequest(String(req.params.requestId), parseBody(requestAnswerInput, req).answer, await partnerActorOf(partners, req));
      res.flash('Thank you: your answer is on the case.');
      res.redirect(303, `/partner/requests/${request._id}`);
    }),
  );

  return router;
}

// ----- API -----

const scorecardRow = (r: Awaited<ReturnType<PartnersService['scorecards']>>['items'][number]) => ({ partner: { id: r.partner._id, name: r.partner.name, type: r.partner.type }, risk: r.risk, scorecard: r.scorecard });

const SCORECARD_COLUMNS = ['partner_id', 'name', 'type', 'risk_tier', 'risk_score', 'allocated', 'passed_on', 'sold', 'completeness', 'flags', 'flags_per_1000', 'open_cases', 'closed_cases', 'overdue_requests', 'median_answer_days', 'maturity', 'review_overdue'];
const scorecardCells = (r: Awaited<ReturnType<PartnersService['scorecards']>>['items'][number]) => {
  const s = r.scorecard;
  return [r.partner._id, r.partner.name, r.partner.type, r.risk.tier, r.risk.score, s.allocated, s.passedOn, s.sold, s.completeness, s.flags, s.flagsPerThousand, s.openCases, s.closedCases, s.overdueRequests, s.medianAnswerDays, s.maturity, s.reviewOverdue];
};

export function partnersApi({ services }: RouteContext) {
  const partners = services.partners;
  const router = Router();
  const anyPartnerUser = requireRole('admin', 'investigator', 'partner');

  router.get('/', anyPartnerUser, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await partners.listPartners(await actorOf(partners, req), page);
    res.json(pageBody(items.map(publicPartner), total, page));
  });

  router.post('/', adminOnly, async (req, res) => {
    res.status(201).json({ partner: publicPartner(await partners.createPartner(parseBody(partnerInput.strict(), req), staffActor(req))) });
  });

  router.get('/scorecards', staffRoles, async (req, res) => {
    const { format, ...paging } = parseQuery(pagination.extend({ format: z.enum(['json', 'csv'], 'format is json or csv.').default('json') }), req);
    if (format === 'csv') {
      const rows = await partners.exportScorecards(staffActor(req));
      const lines = [SCORECARD_COLUMNS.join(','), ...rows.map((r) => scorecardCells(r).map(csvCell).join(','))];
      res.type('text/csv').attachment('partner-scorecards.csv').send(`${lines.join('\r\n')}\r\n`);
      return;
    }
    const page: Page = toPage(paging);
    const { items, total } = await partners.scorecards(page);
    res.json(pageBody(items.map(scorecardRow), total, page));
  });

  router.get('/due-diligence-questions', anyPartnerUser, async (_req, res) => {
    const set = await partners.currentQuestionSet();
    res.json({ questionSet: set && publicQuestionSet(set) });
  });

  router.post('/due-diligence-questions', adminOnly, async (req, res) => {
    res.status(201).json({ questionSet: publicQuestionSet(await partners.publishQuestionSet(parseBody(questionSetInput.strict(), req).questions, staffActor(req))) });
  });

  router.get('/:partnerId/due-diligence', anyPartnerUser, async (req, res) => {
    const profile = await partners.dueDiligenceOf(String(req.params.partnerId), await actorOf(partners, req));
    res.json({ dueDiligence: publicDueDiligence(profile.partner), questionSet: profile.questionSet && publicQuestionSet(profile.questionSet) });
  });

  router.put('/:partnerId/due-diligence/answers', partnerOnly, async (req, res) => {
    const partner = await partners.answerQuestionnaire(String(req.params.partnerId), parseBody(questionnaireInput.strict(), req), await partnerActorOf(partners, req));
    res.json({ dueDiligence: publicDueDiligence(partner) });
  });

  router.post('/:partnerId/due-diligence/review', staffRoles, async (req, res) => {
    const partner = await partners.reviewQuestionnaire(String(req.params.partnerId), parseBody(questionnaireReviewInput.strict(), req), staffActor(req));
    res.json({ dueDiligence: publicDueDiligence(partner) });
  });

  router.post('/:partnerId/due-diligence/trainings', anyPartnerUser, async (req, res) => {
    const partner = await partners.attestTraining(String(req.params.partnerId), parseBody(trainingInput.strict(), req), await actorOf(partners, req));
    res.status(201).json({ dueDiligence: publicDueDiligence(partner) });
  });

  router.get('/:partnerId', anyPartnerUser, async (req, res) => {
    const { partner, risk, scorecard } = await partners.getPartner(String(req.params.partnerId), await actorOf(partners, req));
    res.json({ partner: publicPartner(partner), risk, scorecard });
  });

  router.put('/:partnerId', adminOnly, async (req, res) => {
    res.json({ partner: publicPartner(await partners.updatePartner(String(req.params.partnerId), parseBody(partnerInput.strict(), req), staffActor(req))) });
  });

  /** A `sell-through` key bound to the partner; the full key is in this answer only. */
  router.post('/:partnerId/api-keys', adminOnly, async (req, res) => {
    const { apiKey, key } = await partners.createPartnerKey(String(req.params.partnerId), parseBody(apiKeyInput.strict(), req).keyName, staffActor(req));
    res.status(201).json({ apiKey: { id: apiKey._id, name: apiKey.name, scopes: apiKey.scopes }, key });
  });

  router.get('/:partnerId/units', anyPartnerUser, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await partners.unitsOf(String(req.params.partnerId), await actorOf(partners, req), page);
    res.json(pageBody(items.map((u) => ({ unitId: u.unitId, holderId: u.holderId, sales: u.sales.map((s) => ({ id: s.key, partnerId: s.partnerId, customerName: s.customerName, customerType: s.customerType, country: s.country, endUse: s.endUse, soldAt: day(s.soldAt), reviewId: s.reviewId ?? null, held: s.held ?? false })) })), total, page));
  });

  return router;
}

/**
 * A full report (1,000 sales, each with up to 1,000 characters of declared end use) is larger
 * than the app's default body limit; only this route gets the larger parser (app.ts).
 */
export const SELL_THROUGH_PATH = '/api/v1/sell-through';
export const sellThroughBodyParser = express.json({ limit: '1536kb' });

/** Sell-through by a partner's `sell-through` API key: the key decides which partner reports. */
export function sellThroughApi({ services }: RouteContext) {
  const partners = services.partners;
  const router = Router();

  router.post('/', requireApiKey(services.auth, 'sell-through'), async (req, res) => {
    const actor = await partners.actorFor({ apiKeyId: req.apiKey!.id });
    res.json({ results: await partners.reportSales(actor, parseBody(salesInput, req).sales) });
  });

  return router;
}

type PartnerRequestDoc = Awaited<ReturnType<PartnersService['getRequest']>>;
export const publicRequest = (r: PartnerRequestDoc) => ({
  id: r._id,
  partnerId: r.partnerId,
  caseId: r.caseId,
  questions: r.questions,
  unitIds: r.unitIds,
  dueBy: day(r.dueBy),
  status: r.status,
  answer: r.answer ?? '',
  answeredAt: r.answeredAt ?? null,
  createdAt: r.createdAt,
});

/** Requests from cases, for a partner's user. */
export function partnerRequestsApi({ services }: RouteContext) {
  const partners = services.partners;
  const router = Router();
  router.use(partnerOnly);

  router.get('/', async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await partners.listRequests(await partnerActorOf(partners, req), page);
    res.json(pageBody(items.map(publicRequest), total, page));
  });

  router.get('/:requestId', async (req, res) => {
    res.json({ request: publicRequest(await partners.getRequest(String(req.params.requestId), await partnerActorOf(partners, req))) });
  });

  router.post('/:requestId/answer', async (req, res) => {
    res.json({ request: publicRequest(await partners.answerRequest(String(req.params.requestId), parseBody(requestAnswerInput.strict(), req).answer, await partnerActorOf(partners, req))) });
  });

  return router;
}

export function saleReviewsApi({ services }: RouteContext) {
  const partners = services.partners;
  const router = Router();
  const anyPartnerUser = requireRole('admin', 'investigator', 'partner');

  router.get('/', anyPartnerUser, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await partners.listReviews(await actorOf(partners, req), page);
    res.json(pageBody(items.map(publicReview), total, page));
  });

  router.post('/', partnerOnly, async (req, res) => {
    res.status(201).json({ review: publicReview(await partners.submitReview(await partnerActorOf(partners, req), parseBody(reviewInput.strict(), req))) });
  });

  router.get('/:reviewId', anyPartnerUser, async (req, res) => {
    res.json({ review: publicReview(await partners.getReview(String(req.params.reviewId), await actorOf(partners, req))) });
  });

  router.post('/:reviewId/decision', staffRoles, async (req, res) => {
    res.json({ review: publicReview(await partners.decide(String(req.params.reviewId), parseBody(decisionInput.strict(), req), staffActor(req))) });
  });

  return router;
}
