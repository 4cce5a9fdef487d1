import { type Request, type RequestHandler, type Response } from 'express';
import { Router } from './router';
import multer from 'multer';
import { z } from 'zod';
import { isCountryCode } from '../server/countries';
import { countryOptions, DEFAULT_LANGUAGE, languageMiddleware, translator, type Language, type Translate } from '../server/i18n';
import { HttpError } from '../server/errors';
import { formAction } from '../server/middleware/forms';
import { csrfBeforeBody, isOversize, uploads } from '../server/middleware/uploads';
import { email, pagination, parseBody, parseQuery, shortText, toPage, pageBody } from '../server/middleware/validate';
import { FOLLOW_UP_SESSION_MS, RECEIPT_SHOWN_AGAIN_MS } from '../server/services/reports';
import { safeDisplayName, type IncomingFile } from '../server/services/files';
import { HARM_CATEGORIES, ONGOING, REPORTER_KINDS } from '../server/domain/reports';
import type { RouteContext } from './context';

/**
 * The public reporting channel: `/report` and `/follow-up` pages, and their API twins under
 * /api/v1/reports and /api/v1/follow-up. All stay under the request log's private prefixes
 * (no address or user agent logged). The receipt only ever travels in POST bodies: the
 * follow-up page carries it in a hidden field, so nothing persists in the browser once the
 * tab is closed (no cookie on a shared phone), and pages are sent `no-store` (server/app.ts).
 */

export const LABELS = {
  reporterKind: {
    ngo: 'NGO or civil-society organisation',
    journalist: 'Journalist',
    employee: 'Employee of a customer or reseller',
    'affected-person': 'Affected person',
    other: 'Other',
  },
  harm: {
    'privacy-surveillance': 'Privacy and surveillance',
    'expression-assembly-association': 'Freedom of expression, assembly and association',
    'life-liberty-security': 'Life, liberty and security of person (including use against civilians)',
    discrimination: 'Discrimination',
    'labour-rights': 'Labour rights',
    'environment-health': 'Environment and health',
    'consumer-safety': 'Consumer safety',
    other: 'Other',
  },
  ongoing: { yes: 'Yes, it is still happening', no: 'No, it has stopped', unknown: 'I do not know' },
  status: {
    received: 'Received: waiting for an investigator to acknowledge it',
    acknowledged: 'Acknowledged: an investigator has read it',
    'under-investigation': 'Under investigation',
    closed: 'Closed',
  },
} as const;

/** One or many values (textarea lines, repeated form fields, a JSON array) → trimmed list. */
/** What a text field may carry in a multipart form: far past any limit, so that the limit's own message answers. */
const LONG_TEXT_BYTES = 1024 * 1024;

const list = <T extends z.ZodType>(item: T, max: number, tooMany: string, min = 0, tooFew = '') =>
  z.preprocess(
    (v) => (v === undefined || v === null ? [] : (Array.isArray(v) ? v : [v]).flatMap((s) => (typeof s === 'string' ? s.split(/[\n,;]+/) : [s])).map((s) => (typeof s === 'string' ? s.trim() : s)).filter((s) => s !== '')),
    z.array(item).max(max, tooMany).min(min, tooFew),
  );

const optionalDate = (message: string) =>
  z.preprocess((v) => (v === '' || v === null || v === undefined ? null : v), z.coerce.date({ error: message }).nullable());

/** The longest texts a report and a message take (characters); stated on the form, counted in the browser. */
export const TEXT_LIMITS = { description: 10_000, deviceDescription: 2000, affected: 2000, message: 5000 } as const;

/**
 * The report's fields, with messages in the reporter's language. A text over its limit is
 * refused with its length and the limit, and comes back whole in the form.
 */
export function reportInputIn(t: Translate) {
  const text = (max: number, label: string) =>
    z.string().trim().superRefine((v, check) => {
      if (v.length > max) check.addIssue({ code: 'custom', message: t('error.tooLong', { label, max, count: v.length }) });
    });
  const required = (max: number, label: string) => text(max, label).refine((v) => v.length > 0, t('error.required', { label }));
  return z.object({
    reporterKind: z.enum(REPORTER_KINDS, t('error.reporterKind')),
    contactName: text(120, t('report.contactName')).optional(),
    contactOrganisation: text(200, t('report.contactOrganisation')).optional(),
    contactEmail: z.union([z.literal(''), email]).optional(),
    contactNews: z.preprocess((v) => v === true || v === 'yes' || v === 'on' || v === 'true', z.boolean()),
    serials: list(z.string().max(64, t('error.serial')), 20, t('error.serials')),
    modelText: text(200, t('report.model')).optional(),
    deviceDescription: text(TEXT_LIMITS.deviceDescription, t('report.deviceDescription')).optional(),
    country: z.string(t('error.country')).trim().toUpperCase().refine(isCountryCode, t('error.country')),
    place: text(200, t('report.place')).optional(),
    from: optionalDate(t('error.date')),
    until: optionalDate(t('error.date')),
    harmCategories: list(z.enum(HARM_CATEGORIES, t('error.harm')), HARM_CATEGORIES.length, t('error.harm'), 1, t('error.harmNone')),
    description: required(TEXT_LIMITS.description, t('report.description')),
    affected: text(TEXT_LIMITS.affected, t('report.affected')).optional(),
    ongoing: z.enum(ONGOING, t('error.ongoing')).default('unknown'),
    keepFileNames: z.preprocess((v) => v === true || v === 'yes' || v === 'on' || v === 'true', z.boolean()),
  }).superRefine((v, check) => {
    // News can only be sent to an address: named on the box, so nothing typed is lost.
    if (v.contactNews && !v.contactEmail) check.addIssue({ code: 'custom', path: ['contactNews'], message: t('error.contactNews') });
  });
}
const english = translator(DEFAULT_LANGUAGE);
export const reportInput = reportInputIn(english);
const messageInputIn = (t: Translate) => z.object({ text: z.string().trim().min(1, t('error.required', { label: t('status.message') })).max(TEXT_LIMITS.message, t('error.tooLongShort', { label: t('status.message'), max: TEXT_LIMITS.message })) });

const receiptInput = z.object({ receipt: z.string().max(64).optional(), page: z.coerce.number().int().min(1).max(1000).default(1) });
const pageQuery = z.object({ page: z.coerce.number().int().min(1).max(1000).default(1), done: z.enum(['message', 'files']).optional() });
const messageInput = messageInputIn(english);

/** The form token of a multipart post, read before its body: from the address or a header. */
const challengeBeforeBody = (req: Request): unknown => req.query.challenge ?? req.get('X-Report-Challenge');
const evidenceFiles = (req: Request): IncomingFile[] => ((req.files as Record<string, Express.Multer.File[]> | undefined)?.evidence ?? []);

/**
 * The page forms' upload step: a multer refusal (too big, too many) must show the form again
 * with what was typed, so it is held for the form handler instead of ending the request.
 */
function pageUploads(ctx: RouteContext): RequestHandler[] {
  const [parser, ...rest] = uploads(ctx, [{ name: 'evidence' }], { fieldBytes: LONG_TEXT_BYTES, setAsideOversize: true });
  const mb = Math.round(ctx.config.uploads.maxFileBytes / 1024 / 1024);
  const messages: Record<string, string> = {
    LIMIT_FILE_SIZE: `Each file can be at most ${mb} MB. Leave out the larger file or send a smaller copy.`,
    LIMIT_FILE_COUNT: `Send at most ${ctx.config.uploads.maxFiles} files at a time.`,
    LIMIT_UNEXPECTED_FILE: `Send at most ${ctx.config.uploads.maxFiles} files at a time.`,
  };
  const tolerant: RequestHandler = (req, res, next) =>
    parser!(req, res, (err?: unknown) => {
      if (!(err instanceof multer.MulterError)) return next(err);
      const message = messages[err.code] ?? 'The files could not be received. Please try again.';
      res.locals.uploadError = new HttpError(413, `upload_${err.code.toLowerCase()}`, message, { evidence: message });
      next();
    });
  return [tolerant, ...rest];
}

/**
 * A page form's files: those to store, and a message naming each one set aside for its size
 * (the others are kept, so one 30 MB video does not cost the reporter their photos).
 */
const uploadedEvidence = (req: Request, res: Response, maxFileBytes: number) => {
  if (res.locals.uploadError) throw res.locals.uploadError as HttpError;
  const all = evidenceFiles(req);
  const tooLarge = (res.locals.t as Translate)('evidence.tooLarge', { mb: Math.round(maxFileBytes / 1024 / 1024) });
  return { files: all.filter((f) => !isOversize(f)), refused: all.filter(isOversize).map((f) => `"${safeDisplayName(f.originalname)}": ${tooLarge}`) };
};

/**
 * What an anonymous upload passes before its body is read (issue 20, finding 3): a place among
 * the uploads in progress, then the form's own check (`admit`, from the service), so that a
 * request without a live form token, or from a client past its allowance, never sends its files.
 */
function beforeUpload(ctx: RouteContext, admit: (req: Request, client: string) => Promise<void>): RequestHandler[] {
  const { clientKey } = ctx.middleware.limits;
  const admission: RequestHandler = async (req, _res, next) => {
    if (req.is('multipart/form-data')) await admit(req, clientKey(req));
    next();
  };
  return [ctx.middleware.uploadSlots(clientKey), admission];
}

const namesOf = (evidence: Array<{ name: string; mediaType: string; size: number; sha256: string }>) =>
  evidence.map((f) => ({ name: f.name, mediaType: f.mediaType, size: f.size, sha256: f.sha256 }));

/** The receipt page's sealed cookie (server/services/reports/intake.ts `receiptTicket`). */
const RECEIPT_COOKIE = 'report_receipt';
/** The follow-up pages' sealed session: the report's `_id`, never the receipt. */
const FOLLOW_UP_COOKIE = 'follow_up';

export function reportPages(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();
  const clientOf = ctx.middleware.limits.clientKey;
  const cookie = (path: string, maxAge?: number) => ({ httpOnly: true, sameSite: 'lax' as const, secure: ctx.config.cookieSecure, path, ...(maxAge ? { maxAge } : {}) });
  const t = (res: Response) => res.locals.t as Translate;

  // The reporter-facing pages speak the reporter's language, and offer the onion address when there is one.
  router.use(['/report', '/follow-up'], languageMiddleware(ctx.config), (_req, res, next) => {
    if (ctx.config.onionAddress) res.set('Onion-Location', `http://${ctx.config.onionAddress}${_req.originalUrl}`);
    next();
  });

  const common = (res: Response) => ({ labels: LABELS, textLimits: TEXT_LIMITS, limits: ctx.config.uploads, countryName: (code: string) => countryOptions(res.locals.lang as Language).find(([c]) => c === code)?.[1] ?? code });

  const formLocals = async (req: Request, res: Response) => ({
    ...common(res),
    title: t(res)('report.title'),
    countries: countryOptions(res.locals.lang as Language),
    models: await services.reports.publicModels(),
    form: await services.reports.formState(req.body as Record<string, unknown> | undefined, res.locals.evidence?.files),
    evidenceProblems: (res.locals.evidence?.problems as string[] | undefined) ?? [],
  });

  router.get('/report', async (req, res) => res.render('reports/new', { ...(await formLocals(req, res)), values: { ongoing: 'unknown' } }));

  /** A form whose report was filed (a reload, the back button, a double click) is answered with the receipt page, never a second report. */
  const answeredBefore: RequestHandler = async (req, res, next) => {
    const token = (req.body as Record<string, unknown> | undefined)?.challenge ?? challengeBeforeBody(req);
    if (await services.reports.formAlreadySent(token)) return res.redirect(303, '/report/received');
    next();
  };

  router.post(
    '/report',
    answeredBefore,
    ...beforeUpload(ctx, (req, client) => services.reports.admitReportUpload({ challenge: challengeBeforeBody(req), client })),
    ...pageUploads(ctx),
    formAction('reports/new', formLocals, async (req, res) => {
      const body = req.body as Record<string, unknown>;
      // Files first, so that a field to correct (or a form sent too soon) never costs the reporter the files just sent.
      res.locals.evidence = await services.reports.acceptEvidence({
        challenge: body.challenge,
        keptEvidence: body.keptEvidence,
        removeEvidence: body.removeEvidence,
        ...uploadedEvidence(req, res, ctx.config.uploads.maxFileBytes),
      });
      const input = parseBody(reportInputIn(t(res)), req);
      const filed = await services.reports.submit(input, res.locals.evidence, { challenge: String(body.challenge), pow: body.pow, client: clientOf(req) });
      res.cookie(RECEIPT_COOKIE, services.reports.receiptTicket(filed), cookie('/report', RECEIPT_SHOWN_AGAIN_MS));
      res.redirect(303, '/report/received');
    }),
  );

  router.get('/report/received', (req, res) =>
    res.render('reports/receipt', {
      title: t(res)('receipt.title'),
      shown: services.reports.shownReceipt(req.cookies?.[RECEIPT_COOKIE]),
      shownForMinutes: RECEIPT_SHOWN_AGAIN_MS / 60_000,
    }),
  );

  const followUpLocals = (req: Request, res: Response) => ({
    title: t(res)('followUp.title'),
    typedReceipt: typeof req.body?.receipt === 'string' ? (req.body.receipt as string).slice(0, 64) : '',
  });

  const statusLocals = async (req: Request, res: Response) => {
    const { page, done } = parseQuery(pageQuery, req);
    return {
      ...common(res),
      title: t(res)('status.title'),
      view: await services.reports.followUpBySession(req.cookies?.[FOLLOW_UP_COOKIE], page),
      notice: done ? t(res)(done === 'message' ? 'status.messageSent' : 'status.filesAdded') : '',
      sessionMinutes: FOLLOW_UP_SESSION_MS / 60_000,
    };
  };

  router.get('/follow-up', (req, res) => res.render('reports/follow-up', followUpLocals(req, res)));

  router.post(
    '/follow-up',
    formAction('reports/follow-up', followUpLocals, async (req, res) => {
      const session = await services.reports.openFollowUpSession(parseBody(receiptInput, req).receipt, clientOf(req));
      res.cookie(FOLLOW_UP_COOKIE, session, cookie('/follow-up'));
      res.redirect(303, '/follow-up/report');
    }),
  );

  // A lapsed session shows the receipt form again, with why.
  router.get('/follow-up/report', formAction('reports/follow-up', followUpLocals, async (req, res) => res.render('reports/status', await statusLocals(req, res))));

  router.post(
    '/follow-up/messages',
    formAction('reports/status', statusLocals, async (req, res) => {
      await services.reports.reporterMessageBySession(req.cookies?.[FOLLOW_UP_COOKIE], parseBody(messageInputIn(t(res)), req).text);
      res.redirect(303, '/follow-up/report?done=message');
    }),
  );

  router.post(
    '/follow-up/evidence',
    ...beforeUpload(ctx, (_req, client) => services.reports.admitFollowUpUpload({ client })),
    csrfBeforeBody(ctx),
    ...pageUploads(ctx),
    formAction('reports/status', statusLocals, async (req, res) => {
      const { files, refused } = uploadedEvidence(req, res, ctx.config.uploads.maxFileBytes);
      await services.reports.reporterEvidenceBySession(req.cookies?.[FOLLOW_UP_COOKIE], files, refused);
      res.redirect(303, '/follow-up/report?done=files');
    }),
  );

  router.post('/follow-up/leave', (_req, res) => {
    res.clearCookie(FOLLOW_UP_COOKIE, cookie('/follow-up'));
    res.redirect(303, '/follow-up');
  });

  // The forms' addresses opened by GET (the back button, a bookmark) lead to the page they belong to.
  for (const path of ['/follow-up/messages', '/follow-up/evidence']) router.get(path, (_req, res) => res.redirect(303, '/follow-up/report'));

  return router;
}

export function reportsApi(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();
  const clientOf = ctx.middleware.limits.clientKey;

  router.get('/challenge', (_req, res) => void res.json(services.reports.newChallenge()));

  router.get('/models', async (req, res) => {
    const query = parseQuery(pagination.extend({ q: shortText(200).default('') }), req);
    const page = toPage(query);
    const models = await services.reports.publicModels(query.q);
    res.json(pageBody(models.slice(page.skip, page.skip + page.limit), models.length, page));
  });

  router.post(
    '/',
    ...beforeUpload(ctx, (req, client) => services.reports.admitReportUpload({ challenge: challengeBeforeBody(req), client })),
    ...uploads(ctx, [{ name: 'evidence' }], { csrf: false, fieldBytes: LONG_TEXT_BYTES }),
    async (req, res) => {
      const input = parseBody(reportInput, req);
      const body = req.body as Record<string, unknown>;
      const challenge = body.challenge ?? challengeBeforeBody(req);
      const evidence = await services.reports.acceptEvidence({ challenge, files: evidenceFiles(req), strict: true });
      const filed = await services.reports.submit(input, evidence, { challenge: String(challenge), pow: body.pow, client: clientOf(req) });
      res.status(201).json({ receipt: filed.receipt, receivedAt: filed.receivedAt, status: 'received', evidence: namesOf(filed.evidence) });
    },
  );

  return router;
}

export function followUpApi(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();
  const clientOf = ctx.middleware.limits.clientKey;

  router.post('/', async (req, res) => {
    const { receipt, page } = parseBody(receiptInput, req);
    res.json(await services.reports.followUp(receipt, clientOf(req), page));
  });

  router.post('/messages', async (req, res) => {
    const { receipt } = parseBody(receiptInput, req);
    res.status(201).json(await services.reports.reporterMessage(receipt, clientOf(req), parseBody(messageInput, req).text));
  });

  router.post('/evidence', ...beforeUpload(ctx, (_req, client) => services.reports.admitFollowUpUpload({ client })), ...uploads(ctx, [{ name: 'evidence' }], { csrf: false }), async (req, res) => {
    const { receipt } = parseBody(receiptInput, req);
    res.status(201).json(await services.reports.reporterEvidence(receipt, clientOf(req), evidenceFiles(req)));
  });

  return router;
}
