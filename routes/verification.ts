import type { Request } from 'express';
import { z } from 'zod';
import { UNIT_FINDINGS, VISIT_STATUSES } from '../server/domain/verification';
import { requireRole } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { uploads } from '../server/middleware/uploads';
import { pageBody, pagination, parseBody, parseQuery, requiredText, shortText, toPage } from '../server/middleware/validate';
import type { OutcomeInput } from '../server/services/verification';
import { MAX_UNITS_PER_VISIT } from '../server/services/verification';
import type { VisitDoc } from '../server/store/verification';
import type { RouteContext } from './context';
import { labelled } from './form-labels';
import { Router } from './router';

// ----- input at the edge -----

const needed = (max: number, label: string) => z.preprocess((v) => v ?? '', requiredText(max, label));
const blank = (v: unknown) => (v === '' ? undefined : v);
/** A list typed one item per line (or comma-separated for unit ids); a JSON array is taken as is. */
const lines = (max: number, split: RegExp) => z.preprocess((v) => (Array.isArray(v) ? v : String(v ?? '').split(split)), z.array(z.string().trim().max(500)).transform((l) => l.filter(Boolean)).pipe(z.array(z.string()).max(max, `At most ${max}.`)));
const yes = z.preprocess((v) => v ?? '0', z.enum(['1', 'true', 'on', 'yes', '0', 'false', 'off', 'no'], 'Use yes or no.')).transform((v) => ['1', 'true', 'on', 'yes'].includes(v));

export const planInput = z.object({
  plannedFor: z.preprocess((v) => v ?? '', z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'Give the date as YYYY-MM-DD.').transform((d) => new Date(`${d}T00:00:00Z`))),
  inspector: needed(200, 'The inspector'),
  site: needed(500, 'The site'),
  partner: z.preprocess(blank, shortText(200, 'The partner').optional()),
  caseId: z.preprocess(blank, z.string().trim().regex(/^C-\d{4}-\d{6}$/, 'A case number looks like C-2026-000123.').optional()),
  unitIds: lines(MAX_UNITS_PER_VISIT, /[\s,;]+/),
  checklist: lines(50, /\n+/),
});

/**
 * The outcome, as the form sends it: per planned unit (in the visit's order) `finding_<i>`,
 * `serial_<i>` and `note_<i>`; then the visit's own answers.
 */
function outcomeInput(visit: VisitDoc) {
  const perUnit = Object.fromEntries(
    visit.unitIds.flatMap((_, i) => [
      [`finding_${i}`, z.preprocess((v) => v ?? '', z.enum(UNIT_FINDINGS, 'Say whether the unit was seen, found elsewhere or not found.'))],
      [`serial_${i}`, yes],
      [`note_${i}`, z.preprocess((v) => v ?? '', shortText(1000, 'The note'))],
    ]),
  );
  return z
    .object({ ...perUnit, locationConfirmed: yes, endUseConsistent: yes, findings: z.preprocess((v) => v ?? '', shortText(5000, 'The findings')) })
    .transform((o): OutcomeInput => {
      const fields = o as Record<string, unknown>;
      return {
        units: visit.unitIds.map((unitId, i) => ({ unitId, finding: fields[`finding_${i}`] as OutcomeInput['units'][number]['finding'], serialConfirmed: fields[`serial_${i}`] as boolean, note: fields[`note_${i}`] as string })),
        locationConfirmed: fields.locationConfirmed as boolean,
        endUseConsistent: fields.endUseConsistent as boolean,
        findings: fields.findings as string,
      };
    });
}

const statusQuery = pagination.extend({ status: z.enum(VISIT_STATUSES, 'Choose planned or done.').default('planned') });
const staff = requireRole('admin', 'investigator');
const photosOf = (req: Request) => (req.files as Record<string, Express.Multer.File[]> | undefined)?.photos ?? [];

const publicVisit = (v: Omit<VisitDoc, 'outcome'> & { outcome?: VisitDoc['outcome'] }) => ({
  id: v._id,
  status: v.status,
  plannedFor: v.plannedFor.toISOString().slice(0, 10),
  inspector: v.inspector,
  site: v.site,
  partner: v.partner,
  caseId: v.caseId,
  unitIds: v.unitIds,
  checklist: v.checklist,
  outcome: v.outcome ? { ...v.outcome, photos: v.outcome.photos.map((p) => ({ sha256: p.sha256, mediaType: p.mediaType, size: p.size, originalName: p.originalName })) } : null,
});

// ----- pages -----

/** The visit forms' labels (see ./form-labels). */
const planLabels = { plannedFor: 'Date', inspector: 'Inspector', site: 'Site', partner: 'Channel partner', caseId: 'From case', unitIds: 'Units to verify', checklist: 'Checklist' };
const outcomeLabels = {
  locationConfirmed: 'Location confirmed',
  endUseConsistent: 'End use consistent with the declaration',
  findings: 'Findings',
  photos: 'Photos',
};

export function verificationPages(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();

  router.get('/visits', staff, async (req, res) => {
    const query = parseQuery(statusQuery, req);
    const page = toPage(query);
    const { items, total } = await services.verification.list(query.status, page);
    res.render('verification/list', { title: 'Verification visits', visits: items, total, page, status: query.status, statuses: VISIT_STATUSES });
  });

  router.get('/visits/due', staff, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    res.render('verification/due', { title: 'Units due a verification visit', ...(await services.verification.dueForVerification(page)), page, months: services.verification.dueMonths });
  });

  const planPage = (req: Request) => ({ title: 'Plan a verification visit', values: { unitIds: req.query.unitId ?? '', caseId: req.query.caseId ?? '' } });
  router.get('/visits/new', staff, labelled(planLabels), (req, res) => res.render('verification/new', planPage(req)));
  router.post(
    '/visits/new',
    staff,
    labelled(planLabels),
    formAction('verification/new', planPage, async (req, res) => {
      const visit = await services.verification.plan(parseBody(planInput, req), req.user!.id);
      res.flash('Visit planned.');
      res.redirect(303, `/visits/${visit._id}`);
    }),
  );

  const visitPage = async (req: Request) => ({ title: 'Verification visit', visit: await services.verification.getVisit(String(req.params.visitId)), findings: UNIT_FINDINGS });
  router.get('/visits/:visitId', staff, labelled(outcomeLabels), async (req, res) => res.render('verification/show', await visitPage(req)));
  router.post(
    '/visits/:visitId',
    staff,
    labelled(outcomeLabels),
    ...uploads(ctx, [{ name: 'photos' }]),
    formAction('verification/show', visitPage, async (req, res) => {
      const visit = await services.verification.getVisit(String(req.params.visitId));
      const { flaggedUnits } = await services.verification.recordOutcome(visit._id, parseBody(outcomeInput(visit), req), photosOf(req), req.user!.id);
      res.flash(flaggedUnits.length ? `Outcome recorded. Red flag raised for ${flaggedUnits.join(', ')} (not found where declared).` : 'Outcome recorded: every unit seen.');
      res.redirect(303, `/visits/${visit._id}`);
    }),
  );

  return router;
}

// ----- API -----

export function visitsApi(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();
  router.use(staff);

  router.get('/', async (req, res) => {
    const query = parseQuery(statusQuery, req);
    const page = toPage(query);
    const { items, total } = await services.verification.list(query.status, page);
    res.json(pageBody(items.map(publicVisit), total, page));
  });

  router.get('/due', async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, more, since } = await services.verification.dueForVerification(page);
    res.json({ items, more, notVerifiedSince: since, page: page.page, perPage: page.perPage });
  });

  router.post('/', async (req, res) => {
    res.status(201).json({ visit: publicVisit(await services.verification.plan(parseBody(planInput.strict(), req), req.user!.id)) });
  });

  router.get('/:visitId', async (req, res) => {
    res.json({ visit: publicVisit(await services.verification.getVisit(String(req.params.visitId))) });
  });

  router.post('/:visitId/outcome', ...uploads(ctx, [{ name: 'photos' }], { csrf: false }), async (req, res) => {
    const visit = await services.verification.getVisit(String(req.params.visitId));
    const { visit: done, flaggedUnits } = await services.verification.recordOutcome(visit._id, parseBody(outcomeInput(visit), req), photosOf(req), req.user!.id);
    res.json({ visit: publicVisit(done), flaggedUnits });
  });

  return router;
}
