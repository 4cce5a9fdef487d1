import type { Request } from 'express';
import { z } from 'zod';
import { requireRole } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { uploads } from '../server/middleware/uploads';
import { pageBody, pagination, parseBody, parseQuery, requiredText, toPage } from '../server/middleware/validate';
import type { CertificateDoc } from '../server/store/certificates';
import type { CertifiedSubject } from '../server/services/certificates';
import { normaliseCode } from '../server/services/catalogue/codes';
import type { RouteContext } from './context';
import { labelled } from './form-labels';
import { Router } from './router';

// ----- input at the edge -----

const date = (label: string) => z.preprocess((v) => v ?? '', z.string().regex(/^\d{4}-\d{2}-\d{2}$/, `${label}: give a date as YYYY-MM-DD.`).transform((d) => new Date(`${d}T00:00:00Z`)));
const blank = (v: unknown) => (v === '' ? undefined : v);

/** Covered models as text, one per line or `;`-separated: `SKU: quantity`. */
const itemsText = z.preprocess(
  (v) => v ?? '',
  z
    .string()
    .max(4000)
    .transform((text, ctx) => {
      const items: Array<{ modelId: string; quantity: number }> = [];
      for (const part of text.split(/[\n;]+/).map((p) => p.trim()).filter(Boolean)) {
        const m = /^([^:×x\s][^:×]*?)\s*[:×]\s*(\d{1,7})$/.exec(part);
        if (!m) {
          ctx.addIssue({ code: 'custom', message: `"${part}" is not "SKU: quantity".` });
          return z.NEVER;
        }
        items.push({ modelId: normaliseCode(m[1]!), quantity: Number(m[2]) });
      }
      if (!items.length) ctx.addIssue({ code: 'custom', message: 'Name at least one covered model and its quantity, e.g. "CAM-200: 5".' });
      return items.filter((i) => i.quantity > 0);
    }),
);

const subjectFields = {
  registrationId: z.preprocess(blank, z.string().trim().max(64).optional()),
  transferId: z.preprocess(blank, z.string().trim().max(64).optional()),
  /** A partner sale's key, as the partner's units page and the sell-through API show it. */
  saleId: z.preprocess(blank, z.string().trim().max(400).optional()),
};
type SubjectFields = { registrationId?: string; transferId?: string; saleId?: string };
/** Exactly one record: the certificate covers a registration, a transfer or a partner sale. */
const oneSubject = (i: SubjectFields) => [i.registrationId, i.transferId, i.saleId].filter(Boolean).length === 1;

export const certificateInput = z
  .object({
    issuingAuthority: z.preprocess((v) => v ?? '', requiredText(200, 'The issuing authority')),
    number: z.preprocess((v) => v ?? '', requiredText(100, 'The certificate number')),
    endUser: z.preprocess((v) => v ?? '', requiredText(200, 'The end user')),
    statedEndUse: z.preprocess((v) => v ?? '', requiredText(2000, 'The stated end use')),
    validFrom: date('Valid from'),
    validUntil: date('Valid until'),
    items: itemsText,
    ...subjectFields,
  })
  .refine(oneSubject, { message: 'Give the registration, the transfer or the partner sale the certificate covers (one of them).', path: ['registrationId'] });

export const attachInput = z.object(subjectFields).strict().refine(oneSubject, { message: 'Give a registration, a transfer or a partner sale (one of them).', path: ['registrationId'] });

const subjectOf = (i: SubjectFields): CertifiedSubject =>
  i.registrationId ? { kind: 'registration', id: i.registrationId } : i.transferId ? { kind: 'transfer', id: i.transferId } : { kind: 'sale', id: i.saleId! };
const listQuery = pagination.extend({ expiring: z.preprocess(blank, z.enum(['1', '0'], 'Use 1 or 0.').optional()) });

const staff = requireRole('admin', 'investigator');
const fileOf = (req: Request) => (req.files as Record<string, Express.Multer.File[]> | undefined)?.certificate?.[0];

const day = (d: Date) => d.toISOString().slice(0, 10);
const publicCertificate = (c: CertificateDoc) => ({
  id: c._id,
  issuingAuthority: c.issuingAuthority,
  number: c.number,
  endUser: c.endUser,
  statedEndUse: c.statedEndUse,
  validFrom: day(c.validFrom),
  validUntil: day(c.validUntil),
  items: c.items,
  attachments: c.attachments,
  file: { sha256: c.file.sha256, size: c.file.size, originalName: c.file.originalName },
  createdAt: c.createdAt,
});

// ----- pages -----

/** The certificate form's labels (see ./form-labels). */
const certificateLabels = {
  registrationId: 'Registration it covers',
  transferId: 'Or the transfer it covers',
  saleId: 'Or the partner sale it covers',
  issuingAuthority: 'Issuing authority',
  number: 'Certificate number',
  endUser: 'End user',
  statedEndUse: 'Stated end use',
  validFrom: 'Valid from',
  validUntil: 'Valid until',
  items: 'Covered models and quantities',
  certificate: 'Certificate (PDF)',
};

export function certificatePages(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();

  router.get('/certificates', staff, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const [expiring, all] = await Promise.all([services.certificates.expiringSoon({ page: 1, perPage: 50, skip: 0, limit: 50 }), services.certificates.list(page)]);
    res.render('certificates/list', { title: 'End-use certificates', expiring: expiring.items, expiringTotal: expiring.total, certificates: all.items, total: all.total, page, now: ctx.clock.now() });
  });

  const newPage = (req: Request) => ({ title: 'Add an end-use certificate', values: { registrationId: req.query.registrationId ?? '', transferId: req.query.transferId ?? '', saleId: req.query.saleId ?? '' } });
  router.get('/certificates/new', staff, labelled(certificateLabels), (req, res) => res.render('certificates/new', newPage(req)));

  router.post(
    '/certificates/new',
    staff,
    labelled(certificateLabels),
    ...uploads(ctx, [{ name: 'certificate', maxCount: 1 }]),
    formAction('certificates/new', newPage, async (req, res) => {
      const { registrationId, transferId, saleId, ...input } = parseBody(certificateInput, req);
      const { certificate, flags } = await services.certificates.upload(input, fileOf(req), subjectOf({ registrationId, transferId, saleId }), req.user!.id);
      res.flash(flags.length ? `Certificate saved. It covers fewer units of this model than are attached: red flag raised.` : 'Certificate saved.');
      res.redirect(303, `/certificates/${certificate._id}`);
    }),
  );

  router.get('/certificates/:certificateId', staff, async (req, res) => {
    res.render('certificates/show', { title: 'End-use certificate', certificate: await services.certificates.getCertificate(String(req.params.certificateId)), now: ctx.clock.now() });
  });

  return router;
}

// ----- API -----

export function certificatesApi(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();
  router.use(staff);

  router.get('/', async (req, res) => {
    const query = parseQuery(listQuery, req);
    const page = toPage(query);
    const { items, total } = query.expiring === '1' ? await services.certificates.expiringSoon(page) : await services.certificates.list(page);
    res.json(pageBody(items.map(publicCertificate), total, page));
  });

  router.post('/', ...uploads(ctx, [{ name: 'certificate', maxCount: 1 }], { csrf: false }), async (req, res) => {
    const { registrationId, transferId, saleId, ...input } = parseBody(certificateInput, req);
    const { certificate, flags } = await services.certificates.upload(input, fileOf(req), subjectOf({ registrationId, transferId, saleId }), req.user!.id);
    res.status(201).json({ certificate: publicCertificate(certificate), flags });
  });

  router.get('/:certificateId', async (req, res) => {
    res.json({ certificate: publicCertificate(await services.certificates.getCertificate(String(req.params.certificateId))) });
  });

  router.post('/:certificateId/attachments', async (req, res) => {
    const { certificate, flags } = await services.certificates.attach(String(req.params.certificateId), subjectOf(parseBody(attachInput, req)), req.user!.id);
    res.json({ certificate: publicCertificate(certificate), flags });
  });

  return router;
}
