import fs from 'node:fs';
import path from 'node:path';
import type { Request, RequestHandler } from 'express';
import multer from 'multer';
import { z } from 'zod';
import { HIT_DECISIONS, HIT_STATUSES } from '../server/domain/screening';
import { ValidationError } from '../server/errors';
import { requireRole } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { multipart } from '../server/middleware/uploads';
import { pageBody, pagination, parseBody, parseQuery, requiredText, toPage } from '../server/middleware/validate';
import type { StoredHit } from '../server/store/screening';
import type { RouteContext } from './context';
import { labelled } from './form-labels';
import { Router } from './router';

// ----- input at the edge -----

/** A list file is read whole to parse it; this bounds it (a national list is a few MB). */
export const MAX_LIST_BYTES = 50 * 1024 * 1024;

export const listInput = z.object({
  listId: z.string().trim().toLowerCase().regex(/^[a-z0-9][a-z0-9-]{1,62}$/, 'Use 2–63 lower-case letters, digits and hyphens, e.g. opensanctions-default.'),
  name: requiredText(200, 'The list name'),
  source: requiredText(500, 'The source'),
  versionDate: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'Give the version date as YYYY-MM-DD.').transform((d) => new Date(`${d}T00:00:00Z`)),
  format: z.preprocess((v) => (v === '' ? undefined : v), z.enum(['ftm', 'csl'], 'Choose FollowTheMoney JSON lines (ftm) or the Consolidated Screening List CSV (csl).').optional()),
});

export const queueQuery = pagination.extend({ status: z.enum(HIT_STATUSES, 'Choose open, true-match or false-positive.').default('open') });

export const decisionInput = z.object({
  decision: z.enum(HIT_DECISIONS, 'Choose "true match" or "false positive".'),
  reason: z.preprocess((v) => v ?? '', requiredText(2000, 'The reason')),
});

const admin = requireRole('admin');
const staff = requireRole('admin', 'investigator');

function listUpload(ctx: RouteContext, opts: { csrf: boolean }): RequestHandler[] {
  const dir = path.join(ctx.config.dataDir, 'tmp-imports');
  const parser = multer({ dest: dir, limits: { fileSize: MAX_LIST_BYTES, files: 1, fields: 10 } }).single('file');
  const cleanUp: RequestHandler = (req, res, next) => {
    res.on('finish', () => {
      if (req.file?.path) fs.promises.rm(req.file.path, { force: true }).catch(() => undefined);
    });
    fs.promises.mkdir(dir, { recursive: true, mode: 0o700 }).then(() => next(), next);
  };
  return opts.csrf ? [cleanUp, ...multipart(parser), ctx.middleware.csrf.protect] : [cleanUp, ...multipart(parser)];
}

async function uploadedList(req: Request) {
  const input = parseBody(listInput, req);
  if (!req.file) throw new ValidationError({ file: 'Choose a list file: FollowTheMoney JSON lines or a Consolidated Screening List CSV.' });
  return { ...input, text: await fs.promises.readFile(req.file.path, 'utf8') };
}

/** What the API shows of a hit: everything the reviewer sees (staff only). */
const publicHit = (h: StoredHit) => ({
  id: h._id,
  status: h.status,
  subject: h.subject,
  party: h.party,
  entity: h.entity,
  score: h.score,
  explanation: h.explanation,
  held: h.held,
  raisedAt: h.raisedAt,
  decision: h.decision ?? null,
  caseId: h.caseId ?? null,
});

// ----- pages -----

/** The screening forms' labels (see ./form-labels). */
const listLabels = { listId: 'List id', name: 'Name', source: 'Source', versionDate: 'Version date', format: 'Format', file: 'List file' };
const hitDecisionLabels = { decision: 'This is', reason: 'Reason' };

export function screeningPages(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();

  const listsPage = async () => ({ title: 'Screening lists', lists: await services.screening.lists(), run: await services.screening.rescreenRun(), threshold: services.screening.threshold, cutoff: services.screening.cutoff });

  router.get('/admin/screening', admin, labelled(listLabels), async (_req, res) => {
    const locals = await listsPage();
    // Progress without JavaScript: the page reloads itself while a re-screening runs.
    if (locals.run && locals.run.status !== 'done') res.set('Refresh', '5');
    res.render('screening/lists', locals);
  });

  router.post(
    '/admin/screening',
    admin,
    labelled(listLabels),
    ...listUpload(ctx, { csrf: true }),
    formAction('screening/lists', listsPage, async (req, res) => {
      const { entities, skipped, list } = await services.screening.importList(await uploadedList(req), req.user!.id);
      res.flash(`Imported ${entities} parties into "${list.name}"${skipped ? ` (${skipped} other entities skipped)` : ''}. Every stored party is being screened again.`);
      res.redirect(303, '/admin/screening');
    }),
  );

  router.get('/screening', staff, async (req, res) => {
    const query = parseQuery(queueQuery, req);
    const page = toPage(query);
    const { items, total } = await services.screening.queue(query.status, page);
    res.render('screening/queue', { title: 'Screening hits', hits: items, total, page, status: query.status, statuses: HIT_STATUSES });
  });

  const hitPage = async (req: Request) => ({ title: 'Screening hit', hit: await services.screeningReview.hit(String(req.params.hitId)) });

  router.get('/screening/:hitId', staff, labelled(hitDecisionLabels), async (req, res) => res.render('screening/hit', await hitPage(req)));

  router.post(
    '/screening/:hitId',
    staff,
    labelled(hitDecisionLabels),
    formAction('screening/hit', hitPage, async (req, res) => {
      const { decision, reason } = parseBody(decisionInput, req);
      const decided = await services.screeningReview.decide(String(req.params.hitId), decision, reason, req.user!.id);
      if (decided.caseId) {
        res.flash(`Confirmed as a listed party: red flag raised, case ${decided.caseId}.`);
        res.redirect(303, `/cases/${decided.caseId}`);
        return;
      }
      res.flash('Recorded as a false positive: it will not be raised again for this party and entity.');
      res.redirect(303, '/screening');
    }),
  );

  return router;
}

// ----- API -----

export function screeningApi(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();

  router.get('/lists', staff, async (_req, res) => {
    res.json({ lists: (await services.screening.lists()).map((l) => ({ id: l._id, name: l.name, source: l.source, format: l.format, versionDate: l.versionDate, entityCount: l.entityCount, importedAt: l.importedAt })) });
  });

  router.post('/lists', admin, ...listUpload(ctx, { csrf: false }), async (req, res) => {
    const { list, entities, skipped } = await services.screening.importList(await uploadedList(req), req.user!.id);
    res.status(201).json({ list: { id: list._id, name: list.name, source: list.source, format: list.format, versionDate: list.versionDate, entityCount: list.entityCount, importedAt: list.importedAt }, entities, skipped });
  });

  router.get('/rescreen', staff, async (_req, res) => {
    const run = await services.screening.rescreenRun();
    res.json({ run: run ? { status: run.status, requestedAt: run.requestedAt, startedAt: run.startedAt, finishedAt: run.finishedAt, screened: run.screened, raised: run.raised } : null });
  });

  router.get('/hits', staff, async (req, res) => {
    const query = parseQuery(queueQuery, req);
    const page = toPage(query);
    const { items, total } = await services.screening.queue(query.status, page);
    res.json(pageBody(items.map(publicHit), total, page));
  });

  router.get('/hits/:hitId', staff, async (req, res) => {
    res.json({ hit: publicHit(await services.screeningReview.hit(String(req.params.hitId))) });
  });

  router.post('/hits/:hitId/decision', staff, async (req, res) => {
    const { decision, reason } = parseBody(decisionInput.strict(), req);
    res.json({ hit: publicHit(await services.screeningReview.decide(String(req.params.hitId), decision, reason, req.user!.id)) });
  });

  return router;
}
