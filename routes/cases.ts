import { type Request, type Response } from 'express';
import { Router } from './router';
import { z } from 'zod';
import { requireRole } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { uploads } from '../server/middleware/uploads';
import { pagination, parseBody, parseQuery, requiredText, shortText, toPage, pageBody } from '../server/middleware/validate';
import { ACTION_STATUSES, CASE_STATUSES, CLOSURE_REASONS, HARM_CATEGORIES, INVOLVEMENTS, LEVERAGE_ACTIONS, PRIORITY_LEVELS } from '../server/domain/cases';
import { overdueOf, type Actor, type EvidenceFile } from '../server/services/cases';
import type { RouteContext } from './context';
import { labelled, type FieldLabels } from './form-labels';

// ----- input at the edge -----

/** An empty form field means "not given". */
const blank = (v: unknown) => (v === '' ? undefined : v);
const optional = <T extends z.ZodType>(schema: T) => z.preprocess(blank, schema.optional());
/** Checkbox groups arrive as one string, several, or nothing. */
const asList = (v: unknown) => (v === undefined || v === '' ? [] : Array.isArray(v) ? v : [v]);
const flag = z.preprocess(blank, z.enum(['1', 'true', 'on', '0', 'false', 'off'], 'Use 1 or 0.').optional()).transform((v) => v === '1' || v === 'true' || v === 'on');
const rating = (label: string) => z.coerce.number(`${label}: choose 1 to 4.`).int(`${label}: choose 1 to 4.`).min(1, `${label}: choose 1 to 4.`).max(4, `${label}: choose 1 to 4.`);
const objectIdText = (message: string) => z.preprocess((v) => v ?? '', z.string(message).regex(/^[a-f0-9]{24}$/i, message));
/** A required text whose absence is worded like an empty field, not as a type error. */
const needed = (max: number, label: string) => z.preprocess((v) => v ?? '', requiredText(max, label));

export const queueQuery = pagination.extend({
  status: optional(z.enum([...CASE_STATUSES, 'open', 'all'], 'Choose a status from the list.')),
  priority: optional(z.enum(PRIORITY_LEVELS, 'Choose a priority from the list.')),
  harm: optional(z.enum(HARM_CATEGORIES, 'Choose a harm category from the list.')),
  country: optional(z.string().trim().toUpperCase().regex(/^[A-Z]{2}$/, 'Use a two-letter ISO country code, e.g. KE.')),
  model: optional(z.string().trim().toUpperCase().max(64, 'A model SKU is at most 64 characters.')),
  assignee: optional(objectIdText('Choose an investigator from the list.')),
  mine: flag,
  overdue: flag,
  source: optional(z.enum(['flag', 'report'], 'Choose flag or report.')),
  sort: optional(z.enum(['opened', 'priority', 'updated'], 'Sort by opened, priority or updated.')),
});

export const triageInput = z.object({
  harmCategories: z.preprocess(asList, z.array(z.enum(HARM_CATEGORIES, 'Choose harm categories from the list.')).min(1, 'Choose at least one harm category.')),
  scale: rating('Scale'),
  scope: rating('Scope'),
  irremediable: rating('Irremediable character'),
  likelihood: rating('Likelihood'),
  involvement: z.enum(INVOLVEMENTS, 'Choose cause, contribute or directly linked.'),
  involvementRationale: needed(4000, 'Rationale'),
});

/** A form sends each open action's fate as `openAction-<actionId>` (flat: no dotted keys); the API as one object. */
const OPEN_ACTION_FIELD = 'openAction-';
const withOpenActions = (body: unknown) => {
  if (!body || typeof body !== 'object') return body;
  const flat = Object.entries(body).filter(([k]) => k.startsWith(OPEN_ACTION_FIELD));
  return flat.length ? { ...body, openActions: Object.fromEntries(flat.map(([k, v]) => [k.slice(OPEN_ACTION_FIELD.length), v])) } : body;
};

export const transitionInput = z.preprocess(
  withOpenActions,
  z.object({
    to: z.enum(CASE_STATUSES, 'Choose the next status.'),
    reason: needed(2000, 'Reason'),
    closureReason: optional(z.enum(CLOSURE_REASONS, 'Choose a closure reason from the list.')),
    openActions: z.record(z.string().regex(/^act_[a-f0-9]{16}$/, 'Not an action id.'), z.enum(['end', 'keep'], 'Choose to end the action or keep it.')).optional(),
  }),
);

export const assignInput = z.object({ userId: objectIdText('Choose an investigator from the list.') });
export const conflictInput = z.object({
  conflictUserId: objectIdText('Choose an investigator from the list.'),
  conflictReason: needed(1000, 'Reason'),
});
export const noteInput = z.object({ note: needed(10_000, 'Note') });
export const actionInput = z.object({
  kind: z.enum(LEVERAGE_ACTIONS, 'Choose an action from the list.'),
  customer: shortText(200, 'Customer').optional(),
  channelPartner: shortText(200, 'Channel partner').optional(),
  unitIds: z.preprocess(asList, z.array(z.string().trim().min(1).max(200)).max(500, 'At most 500 units per action.')),
  dueBy: optional(z.iso.date('Use a date like 2026-03-31.').transform((d) => new Date(`${d}T00:00:00Z`))),
  description: shortText(4000, 'Description').optional(),
});
export const actionUpdateInput = z.object({
  status: z.enum(ACTION_STATUSES, 'Choose a status from the list.'),
  outcome: shortText(4000, 'Outcome').optional(),
});
export const remediationInput = z.object({
  provided: needed(4000, 'What was provided or enabled'),
  toWhom: needed(500, 'To whom'),
  reporterFeedback: shortText(4000, 'Feedback to the reporter').optional(),
});
export const mergeInput = z.object({
  intoCaseId: z.string().trim().toUpperCase().regex(/^C-\d{4}-\d{6}$/, 'Use a case number like C-2026-000123.'),
  mergeReason: needed(2000, 'Reason'),
});
export const splitInput = z.object({ reportId: needed(200, 'Report') });
export const legalHoldInput = z.object({
  hold: z.enum(['on', 'off'], 'Choose on or off.'),
  holdReason: needed(1000, 'Reason'),
});
export const linkReviewInput = z.object({
  confirmed: z.preprocess((v) => (typeof v === 'boolean' ? String(v) : v), z.enum(['true', 'false'], 'Choose confirm (true) or reject (false).')).transform((v) => v === 'true'),
});
const linkIndex = (v: unknown) => z.coerce.number().int().min(0).max(1000).catch(-1).parse(v);
const filesOf = (req: Request) => ((req.files as Record<string, Express.Multer.File[]> | undefined)?.evidence ?? []);

export const identityRequestInput = z.object({ reason: needed(2000, 'Reason') });
export const identityDecisionInput = z.object({
  decision: z.enum(['approve', 'refuse'], 'Choose approve or refuse.'),
  reason: shortText(2000, 'Reason').optional(),
});
const identityDecisionQuery = z.object({ decision: z.enum(['approve', 'refuse']).catch('approve') });

export const messageInput = z.object({
  reportId: needed(200, 'Report'),
  message: needed(5000, 'Message'),
});

/** The labels of each form on the case page (see ./form-labels): the page shows them all, a post names its own form's fields. */
const CASE_FORMS = {
  message: { reportId: 'Report', message: 'Message to the reporter' },
  evidence: { evidence: 'Add evidence to this report' },
  triage: {
    harmCategories: 'Harm categories',
    scale: 'Scale: how grave the harm',
    scope: 'Scope: how many people',
    irremediable: 'Irremediable character: how hard to restore',
    likelihood: 'Likelihood',
    involvement: 'Involvement',
    involvementRationale: 'Rationale for the involvement',
  },
  transition: { to: 'Next status', closureReason: 'Closure reason (when closing)', reason: 'Why' },
  assign: { userId: 'Assign' },
  conflict: { conflictUserId: 'Investigator', conflictReason: 'Reason' },
  identity: { reason: 'Why do you need the reporter’s identity?' },
  action: { kind: 'Action', unitIds: 'Units (serials)', customer: 'Customer', channelPartner: 'Channel partner', dueBy: 'Due by', description: 'What exactly' },
  actionUpdate: { status: 'Status', outcome: 'Outcome' },
  remediation: { provided: 'What was provided or enabled', toWhom: 'To whom', reporterFeedback: 'Feedback given to the reporter' },
  note: { note: 'Add a note (never shown to the reporter)' },
  merge: { intoCaseId: 'Merge this case into case number', mergeReason: 'Why' },
  split: { reportId: 'Report' },
  legalHold: { hold: 'Legal hold', holdReason: 'Reason' },
  linkReview: { confirmed: 'Confirm or reject' },
} satisfies Record<string, FieldLabels>;

/** The lists the case forms offer, from the model's enums. */
const VOCABULARY = {
  harmCategories: HARM_CATEGORIES,
  involvements: INVOLVEMENTS,
  closureReasons: CLOSURE_REASONS,
  leverageActions: LEVERAGE_ACTIONS,
  actionStatuses: ACTION_STATUSES,
};

const actorOf = (req: Request): Actor => ({ id: req.user!.id, role: req.user!.role });
const staff = requireRole('investigator', 'admin');

/** The queue's query string without the page, for the pager and filter links. */
function queueUrl(query: Record<string, unknown>) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (typeof v === 'string' && v && k !== 'page' && k !== 'perPage') params.set(k, v);
  const qs = params.toString();
  return qs ? `/cases?${qs}` : '/cases';
}

function sendEvidence(res: Response, file: EvidenceFile) {
  res.setHeader('Content-Type', file.mediaType);
  // Always a download: evidence is never rendered inside the portal's origin.
  res.attachment(file.name);
  if (file.size) res.setHeader('Content-Length', String(file.size));
  file.stream.pipe(res);
}

// ----- pages -----

export function casePages(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();
  const cases = services.cases;

  const queuePage = async (req: Request) => {
    const filters = parseQuery(queueQuery, req);
    const page = toPage(filters);
    const result = await cases.queue(filters, page, actorOf(req));
    return { title: filters.mine ? 'My cases' : 'Cases', ...result, filters, page, baseUrl: queueUrl(req.query as Record<string, unknown>), harmCategories: HARM_CATEGORIES };
  };
  // A bad filter shows the queue unfiltered, with the field named, instead of an error page.
  const unfilteredQueue = async (req: Request) => {
    const page = toPage({ page: 1, perPage: 25 });
    // The filter form shows what was typed (from the query string), with the error by it.
    return { title: 'Cases', ...(await cases.queue({}, page, actorOf(req))), filters: req.query, page, baseUrl: '/cases', harmCategories: HARM_CATEGORIES };
  };

  router.get(
    '/cases',
    staff,
    formAction('cases/queue', unfilteredQueue, async (req, res) => res.render('cases/queue', await queuePage(req))),
  );

  const casePage = async (req: Request) => {
    const dossier = await cases.dossier(String(req.params.id), actorOf(req), { withIdentity: true });
    return { title: `Case ${dossier.case._id}`, ...dossier, vocab: VOCABULARY, forms: CASE_FORMS };
  };

  router.get('/cases/:id', staff, async (req, res) => res.render('cases/show', await casePage(req)));

  /** Every change on the case page: a form post, shown again with its errors, or a redirect back. */
  const post = (path: string, anchor: string, labels: FieldLabels, action: (req: Request, actor: Actor, id: string) => Promise<string>) =>
    router.post(
      `/cases/:id${path}`,
      staff,
      labelled(labels),
      formAction('cases/show', casePage, async (req, res) => {
        const id = String(req.params.id);
        res.flash(await action(req, actorOf(req), id));
        res.redirect(303, `/cases/${encodeURIComponent(id)}#${anchor}`);
      }),
    );

  post('/triage', 'triage', CASE_FORMS.triage, async (req, actor, id) => {
    const c = await cases.triage(id, parseBody(triageInput, req), actor);
    return `Triage saved: priority ${c.priorityLevel}.`;
  });
  post('/transition', 'summary', CASE_FORMS.transition, async (req, actor, id) => {
    const c = await cases.transition(id, parseBody(transitionInput, req), actor);
    return `The case is now ${c.status}.`;
  });
  post('/acknowledge', 'summary', {}, async (_req, actor, id) => {
    await cases.acknowledge(id, actor);
    return 'Receipt acknowledged; feedback is due within 3 months.';
  });
  post('/assignees', 'people', CASE_FORMS.assign, async (req, actor, id) => {
    await cases.assign(id, parseBody(assignInput, req).userId, actor);
    return 'Investigator assigned.';
  });
  post('/assignees/:userId/remove', 'people', {}, async (req, actor, id) => {
    await cases.unassign(id, String(req.params.userId), actor);
    return 'Investigator unassigned.';
  });
  post('/conflicts', 'people', CASE_FORMS.conflict, async (req, actor, id) => {
    const input = parseBody(conflictInput, req);
    await cases.declareConflict(id, input.conflictUserId, input.conflictReason, actor);
    return 'Conflict of interest recorded; that person can no longer see this case.';
  });
  post('/notes', 'notes', CASE_FORMS.note, async (req, actor, id) => {
    await cases.addNote(id, parseBody(noteInput, req).note, actor);
    return 'Note added.';
  });
  post('/actions', 'actions', CASE_FORMS.action, async (req, actor, id) => {
    await cases.addAction(id, parseBody(actionInput, req), actor);
    return 'Action recorded.';
  });
  post('/actions/:actionId', 'actions', CASE_FORMS.actionUpdate, async (req, actor, id) => {
    await cases.updateAction(id, String(req.params.actionId), parseBody(actionUpdateInput, req), actor);
    return 'Action updated.';
  });
  post('/remediation', 'remediation', CASE_FORMS.remediation, async (req, actor, id) => {
    await cases.addRemediation(id, parseBody(remediationInput, req), actor);
    return 'Remediation recorded.';
  });
  post('/legal-hold', 'retention', CASE_FORMS.legalHold, async (req, actor, id) => {
    const input = parseBody(legalHoldInput, req);
    await cases.setLegalHold(id, { on: input.hold === 'on', reason: input.holdReason }, actor);
    return input.hold === 'on' ? 'Legal hold placed: reporter data will not be deleted.' : 'Legal hold released.';
  });
  post('/identity-requests', 'identity', CASE_FORMS.identity, async (req, actor, id) => {
    await cases.requestIdentity(id, parseBody(identityRequestInput, req).reason, actor);
    return 'Your request is waiting for approval by an admin or identity custodian.';
  });
  post('/messages', 'reports', CASE_FORMS.message, async (req, actor, id) => {
    const input = parseBody(messageInput, req);
    await cases.postMessage(id, input.reportId, input.message, actor);
    return 'Message sent to the reporter.';
  });

  // Merge and split lead to another case: redirect there.
  router.post(
    '/cases/:id/merge',
    staff,
    labelled(CASE_FORMS.merge),
    formAction('cases/show', casePage, async (req, res) => {
      const input = parseBody(mergeInput, req);
      const into = await cases.merge(String(req.params.id), input.intoCaseId, input.mergeReason, actorOf(req));
      res.flash(`Merged into ${into}.`);
      res.redirect(303, `/cases/${encodeURIComponent(into)}`);
    }),
  );
  router.post(
    '/cases/:id/split',
    staff,
    labelled(CASE_FORMS.split),
    formAction('cases/show', casePage, async (req, res) => {
      const created = await cases.split(String(req.params.id), parseBody(splitInput, req).reportId, actorOf(req));
      res.flash(`The report is now case ${created}.`);
      res.redirect(303, `/cases/${encodeURIComponent(created)}`);
    }),
  );

  router.post(
    '/cases/:id/reports/:reportId/evidence',
    staff,
    labelled(CASE_FORMS.evidence),
    ...uploads(ctx, [{ name: 'evidence' }]),
    formAction('cases/show', casePage, async (req, res) => {
      const id = String(req.params.id);
      const added = await cases.addEvidence(id, String(req.params.reportId), filesOf(req), actorOf(req));
      res.flash(`${added.length} file(s) added to the report.`);
      res.redirect(303, `/cases/${encodeURIComponent(id)}#reports`);
    }),
  );
  post('/reports/:reportId/links/:index', 'reports', CASE_FORMS.linkReview, async (req, actor, id) => {
    const { confirmed } = parseBody(linkReviewInput, req);
    await cases.reviewLink(id, String(req.params.reportId), linkIndex(req.params.index), confirmed, actor);
    return confirmed ? 'Link confirmed.' : 'Link rejected.';
  });

  router.get('/cases/:id/contact', staff, async (req, res) => {
    const { case: c, contacts } = await cases.reporterContact(String(req.params.id), actorOf(req));
    res.render('cases/contact', { title: `Reporter contact · ${c._id}`, case: c, contacts });
  });

  router.get('/cases/:id/reports/:reportId/evidence/:fileId', staff, async (req, res) => {
    sendEvidence(res, await cases.openEvidence(String(req.params.id), String(req.params.reportId), String(req.params.fileId), actorOf(req)));
  });

  // Admins and identity custodians: requests to see reporters' identity, each decided on a
  // confirmation page (a plain form post, no JavaScript needed).
  router.get('/admin/identity-requests', staff, async (req, res) => {
    res.render('cases/identity-requests', { title: 'Identity requests', requests: await cases.pendingIdentityRequests(actorOf(req)) });
  });

  const decisionPage = async (req: Request) => ({
    title: 'Decide an identity request',
    ...(await cases.identityRequestForDecision(String(req.params.requestId), actorOf(req))),
    decision: req.method === 'GET' ? parseQuery(identityDecisionQuery, req).decision : parseBody(identityDecisionInput.pick({ decision: true }).catch({ decision: 'approve' }), req).decision,
  });

  router.get('/admin/identity-requests/:requestId', staff, async (req, res) => res.render('cases/identity-decision', await decisionPage(req)));

  router.post(
    '/admin/identity-requests/:requestId',
    staff,
    formAction('cases/identity-decision', decisionPage, async (req, res) => {
      const input = parseBody(identityDecisionInput, req);
      const decided = await cases.decideIdentityRequest(String(req.params.requestId), input, actorOf(req));
      res.flash(input.decision === 'approve' ? `Approved: the investigator can see the reporter’s identity on ${decided.caseId} until ${decided.expiresAt!.toISOString().slice(0, 16).replace('T', ' ')} UTC.` : `Refused: the request on ${decided.caseId} is closed.`);
      res.redirect(303, '/admin/identity-requests');
    }),
  );

  return router;
}

// ----- JSON API (/api/v1/cases) -----

/** A case as the API shows it: the stored fields plus which deadlines are missed now. */
const caseJson = (c: { status: string; deadlines?: unknown }, now: Date) => ({ ...c, overdue: overdueOf(c as Parameters<typeof overdueOf>[0], now) });

export function casesApi(ctx: RouteContext) {
  const { services, clock } = ctx;
  const router = Router();
  const cases = services.cases;
  router.use(staff);

  router.get('/', async (req, res) => {
    const filters = parseQuery(queueQuery, req);
    const page = toPage(filters);
    const { items, total, counts } = await cases.queue(filters, page, actorOf(req));
    res.json({ ...pageBody(items, total, page), counts });
  });

  router.get('/:id', async (req, res) => {
    const d = await cases.dossier(String(req.params.id), actorOf(req));
    res.json({ case: caseJson(d.case, d.now), flags: d.flags, reports: d.reports, timelines: d.timelines, isAssigned: d.isAssigned, next: d.next });
  });

  const one = async (res: Response, c: Promise<{ status: string }>) => void res.json({ case: caseJson(await c, clock.now()) });

  router.post('/:id/triage', async (req, res) => one(res, cases.triage(String(req.params.id), parseBody(triageInput, req), actorOf(req))));
  router.post('/:id/transitions', async (req, res) => one(res, cases.transition(String(req.params.id), parseBody(transitionInput, req), actorOf(req))));
  router.post('/:id/acknowledge', async (req, res) => one(res, cases.acknowledge(String(req.params.id), actorOf(req))));
  router.post('/:id/assignees', async (req, res) => one(res, cases.assign(String(req.params.id), parseBody(assignInput, req).userId, actorOf(req))));
  router.delete('/:id/assignees/:userId', async (req, res) => one(res, cases.unassign(String(req.params.id), String(req.params.userId), actorOf(req))));
  router.post('/:id/conflicts', async (req, res) => {
    const input = parseBody(conflictInput, req);
    await one(res, cases.declareConflict(String(req.params.id), input.conflictUserId, input.conflictReason, actorOf(req)));
  });
  router.put('/:id/legal-hold', async (req, res) => {
    const input = parseBody(legalHoldInput, req);
    await one(res, cases.setLegalHold(String(req.params.id), { on: input.hold === 'on', reason: input.holdReason }, actorOf(req)));
  });

  router.post('/:id/notes', async (req, res) => {
    res.status(201).json({ id: await cases.addNote(String(req.params.id), parseBody(noteInput, req).note, actorOf(req)) });
  });
  router.post('/:id/actions', async (req, res) => {
    res.status(201).json({ id: await cases.addAction(String(req.params.id), parseBody(actionInput, req), actorOf(req)) });
  });
  router.patch('/:id/actions/:actionId', async (req, res) => {
    await cases.updateAction(String(req.params.id), String(req.params.actionId), parseBody(actionUpdateInput, req), actorOf(req));
    res.status(204).end();
  });
  router.post('/:id/remediation', async (req, res) => {
    res.status(201).json({ id: await cases.addRemediation(String(req.params.id), parseBody(remediationInput, req), actorOf(req)) });
  });
  router.post('/:id/merge', async (req, res) => {
    const input = parseBody(mergeInput, req);
    res.json({ caseId: await cases.merge(String(req.params.id), input.intoCaseId, input.mergeReason, actorOf(req)) });
  });
  router.post('/:id/split', async (req, res) => {
    res.status(201).json({ caseId: await cases.split(String(req.params.id), parseBody(splitInput, req).reportId, actorOf(req)) });
  });

  router.get('/:id/identity-requests', async (req, res) => {
    res.json({ items: await cases.identityRequestsOfCase(String(req.params.id), actorOf(req)) });
  });
  router.post('/:id/identity-requests', async (req, res) => {
    res.status(201).json({ request: await cases.requestIdentity(String(req.params.id), parseBody(identityRequestInput, req).reason, actorOf(req)) });
  });
  router.post('/:id/identity-requests/:requestId/decision', async (req, res) => {
    const input = parseBody(identityDecisionInput, req);
    res.json({ request: await cases.decideIdentityRequest(String(req.params.requestId), { ...input, caseId: String(req.params.id) }, actorOf(req)) });
  });

  router.get('/:id/contact', async (req, res) => {
    const { contacts } = await cases.reporterContact(String(req.params.id), actorOf(req));
    res.json({ contacts });
  });
  router.get('/:id/reports/:reportId/messages', async (req, res) => {
    res.json({ items: await cases.messages(String(req.params.id), String(req.params.reportId), actorOf(req)) });
  });
  router.post('/:id/reports/:reportId/messages', async (req, res) => {
    const { message } = parseBody(messageInput.pick({ message: true }), req);
    res.status(201).json({ message: await cases.postMessage(String(req.params.id), String(req.params.reportId), message, actorOf(req)) });
  });
  router.post('/:id/reports/:reportId/evidence', ...uploads(ctx, [{ name: 'evidence' }], { csrf: false }), async (req, res) => {
    const added = await cases.addEvidence(String(req.params.id), String(req.params.reportId), filesOf(req), actorOf(req));
    res.status(201).json({ items: added });
  });
  router.post('/:id/reports/:reportId/links/:index', async (req, res) => {
    const { confirmed } = parseBody(linkReviewInput, req);
    await cases.reviewLink(String(req.params.id), String(req.params.reportId), linkIndex(req.params.index), confirmed, actorOf(req));
    res.status(204).end();
  });
  router.get('/:id/reports/:reportId/evidence/:fileId', async (req, res) => {
    sendEvidence(res, await cases.openEvidence(String(req.params.id), String(req.params.reportId), String(req.params.fileId), actorOf(req)));
  });

  return router;
}
