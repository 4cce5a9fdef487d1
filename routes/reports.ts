import { type Request, type RequestHandler, type Response } from 'express';
import { Router } from './router';
import multer from 'multer';
import { z } from 'zod';
import { COUNTRY_OPTIONS, isCountryCode } from '../server/countries';
import { HttpError } from '../server/errors';
import { formAction } from '../server/middleware/forms';
import { csrfBeforeBody, uploads } from '../server/middleware/uploads';
import { email, pagination, parseBody, parseQuery, requiredText, shortText, toPage, pageBody } from '../server/middleware/validate';
import type { IncomingFile } from '../server/services/files';
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
const list = <T extends z.ZodType>(item: T, max: number, tooMany: string, min = 0, tooFew = '') =>
  z.preprocess(
    (v) => (v === undefined || v === null ? [] : (Array.isArray(v) ? v : [v]).flatMap((s) => (typeof s === 'string' ? s.split(/[\n,;]+/) : [s])).map((s) => (typeof s === 'string' ? s.trim() : s)).filter((s) => s !== '')),
    z.array(item).max(max, tooMany).min(min, tooFew),
  );

const optionalDate = (label: string) =>
  z.preprocess(
    (v) => (v === '' || v === null || v === undefined ? null : v),
    z.coerce.date({ error: `${label}: enter a date as YYYY-MM-DD.` }).nullable(),
  );

export const reportInput = z.object({
  reporterKind: z.enum(REPORTER_KINDS, 'Choose who you are (or "Other").'),
  contactName: shortText(120, 'Name').optional(),
  contactOrganisation: shortText(200, 'Organisation').optional(),
  contactEmail: z.union([z.literal(''), email]).optional(),
  serials: list(z.string().max(64, 'A serial number has at most 64 characters.'), 20, 'Give at most 20 serial numbers.'),
  modelText: shortText(200, 'Model').optional(),
  deviceDescription: shortText(2000, 'Device description').optional(),
  country: z
    .string('Choose the country where it happened.')
    .trim()
    .toUpperCase()
    .refine(isCountryCode, 'Choose the country where it happened.'),
  place: shortText(200, 'Place').optional(),
  from: optionalDate('Date'),
  until: optionalDate('End of the period'),
  harmCategories: list(z.enum(HARM_CATEGORIES, 'Choose from the list.'), HARM_CATEGORIES.length, 'Choose from the list.', 1, 'Choose at least one kind of harm ("Other" if none fits).'),
  description: requiredText(10_000, 'Description'),
  affected: shortText(2000, 'Who is affected').optional(),
  ongoing: z.enum(ONGOING, 'Choose yes, no or "I do not know".').default('unknown'),
  keepFileNames: z.preprocess((v) => v === true || v === 'yes' || v === 'on' || v === 'true', z.boolean()),
});

const receiptInput = z.object({ receipt: z.string().max(64).optional(), page: z.coerce.number().int().min(1).max(1000).default(1) });
const messageInput = z.object({ text: requiredText(5000, 'Message') });

/** The form token of a multipart post, read before its body: from the address or a header. */
const challengeBeforeBody = (req: Request): unknown => req.query.challenge ?? req.get('X-Report-Challenge');
const evidenceFiles = (req: Request): IncomingFile[] => ((req.files as Record<string, Express.Multer.File[]> | undefined)?.evidence ?? []);

/**
 * The page forms' upload step: a multer refusal (too big, too many) must show the form again
 * with what was typed, so it is held for the form handler instead of ending the request.
 */
function pageUploads(ctx: RouteContext): RequestHandler[] {
  const [parser, ...rest] = uploads(ctx, [{ name: 'evidence' }]);
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

const filesOrUploadError = (req: Request, res: Response) => {
  if (res.locals.uploadError) throw res.locals.uploadError as HttpError;
  return evidenceFiles(req);
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

export function reportPages(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();
  const clientOf = ctx.middleware.limits.clientKey;

  const formLocals = async (req: Request, res: Response) => ({
    title: 'Report misuse',
    labels: LABELS,
    countries: COUNTRY_OPTIONS,
    models: await services.reports.publicModels(),
    form: await services.reports.formState(req.body as Record<string, unknown> | undefined, res.locals.evidence?.files),
    evidenceProblems: (res.locals.evidence?.problems as string[] | undefined) ?? [],
    limits: ctx.config.uploads,
  });

  router.get('/report', async (req, res) => res.render('reports/new', { ...(await formLocals(req, res)), values: { ongoing: 'unknown' } }));

  router.post(
    '/report',
    ...beforeUpload(ctx, (req, client) => services.reports.admitReportUpload({ challenge: challengeBeforeBody(req), client })),
    ...pageUploads(ctx),
    formAction('reports/new', formLocals, async (req, res) => {
      const body = req.body as Record<string, unknown>;
      // Files first, so that a field to correct never costs the reporter the files just sent.
      res.locals.evidence = await services.reports.acceptEvidence({
        challenge: body.challenge,
        pow: body.pow,
        keptEvidence: body.keptEvidence,
        files: filesOrUploadError(req, res),
      });
      const filed = await services.reports.submit(parseBody(reportInput, req), res.locals.evidence, { challenge: String(body.challenge), client: clientOf(req) });
      res.render('reports/receipt', { title: 'Your report was received', receipt: filed.receipt, evidence: filed.evidence });
    }),
  );

  const statusLocals = async (req: Request) => {
    const { receipt, page } = parseBody(receiptInput, req);
    return { title: 'Your report', labels: LABELS, receipt, view: await services.reports.followUp(receipt, clientOf(req), page) };
  };

  router.get('/follow-up', (_req, res) => res.render('reports/follow-up', { title: 'Follow up on a report' }));

  router.post(
    '/follow-up',
    formAction('reports/follow-up', () => ({ title: 'Follow up on a report' }), async (req, res) => {
      res.render('reports/status', await statusLocals(req));
    }),
  );

  router.post(
    '/follow-up/messages',
    formAction('reports/status', statusLocals, async (req, res) => {
      const { receipt } = parseBody(receiptInput, req);
      const view = await services.reports.reporterMessage(receipt, clientOf(req), parseBody(messageInput, req).text);
      res.render('reports/status', { title: 'Your report', labels: LABELS, receipt, view, notice: 'Your message was sent to the investigators.' });
    }),
  );

  router.post(
    '/follow-up/evidence',
    ...beforeUpload(ctx, (_req, client) => services.reports.admitFollowUpUpload({ client })),
    csrfBeforeBody(ctx),
    ...pageUploads(ctx),
    formAction('reports/status', statusLocals, async (req, res) => {
      const { receipt } = parseBody(receiptInput, req);
      const view = await services.reports.reporterEvidence(receipt, clientOf(req), filesOrUploadError(req, res));
      res.render('reports/status', { title: 'Your report', labels: LABELS, receipt, view, notice: 'Your files were added to the report.' });
    }),
  );

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
    ...uploads(ctx, [{ name: 'evidence' }], { csrf: false }),
    async (req, res) => {
      const input = parseBody(reportInput, req);
      const body = req.body as Record<string, unknown>;
      const challenge = body.challenge ?? challengeBeforeBody(req);
      const evidence = await services.reports.acceptEvidence({ challenge, pow: body.pow, files: evidenceFiles(req), strict: true });
      const filed = await services.reports.submit(input, evidence, { challenge: String(challenge), client: clientOf(req) });
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
