import { type Request } from 'express';
import { Router } from './router';
import { z } from 'zod';
import { END_USER_TYPES, TRANSFER_KINDS } from '../server/domain/registrations';
import { COUNTRY_OPTIONS, countryName } from '../server/countries';
import { requireRole, requireSignedIn } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { uploads } from '../server/middleware/uploads';
import { email, pagination, parseBody, parseQuery, requiredText, shortText, toPage, pageBody } from '../server/middleware/validate';
import type { NewUser } from '../server/services/auth';
import type { RegistrationInput, TransferInput } from '../server/services/registrations';
import { SIGN_UP_ANSWER, signUpInput } from './auth';
import { countryCode, dayField } from './catalogue';
import type { RouteContext } from './context';
import { labelled } from './form-labels';

// ----- inputs -----

const endUserType = z.enum(END_USER_TYPES, 'Choose the type of end user.');
/** A form checkbox ("yes"/"on") or a JSON `true`; anything else is "not accepted". */
const accepted = z.preprocess((v) => v === true || v === 'yes' || v === 'on' || v === 'true', z.boolean());
const blankToUndefined = (v: unknown) => (v === '' ? undefined : v);

export const registrationInput = z.object({
  modelSku: requiredText(64, 'Model number'),
  serial: requiredText(64, 'Serial number'),
  ownerOrganisation: requiredText(200, 'Owner organisation'),
  contactName: requiredText(120, 'Contact name'),
  contactEmail: email,
  contactPhone: shortText(40, 'Phone').optional(),
  country: countryCode,
  region: shortText(120, 'Region').optional(),
  city: shortText(120, 'City').optional(),
  endUserType,
  intendedUse: requiredText(200, 'Intended use'),
  declaredEndUse: requiredText(2000, 'Declared end use'),
  purchaseDate: dayField('Purchase date'),
  seller: shortText(200, 'Seller').optional(),
  termsVersion: z.coerce.number('The terms version is missing; reload the form.').int().min(1),
  acceptTerms: accepted,
}) satisfies z.ZodType<RegistrationInput, unknown>;

/** The register form's labels (see ./form-labels); the model step asks for `model`, the form posts it as `modelSku`. */
const registrationLabels = {
  model: 'Model number (SKU)',
  modelSku: 'Model number (SKU)',
  serial: 'Serial number',
  ownerOrganisation: 'Owner organisation (or your name)',
  contactName: 'Contact person',
  contactEmail: 'Contact e-mail',
  contactPhone: 'Contact phone',
  country: 'Country',
  region: 'Region',
  city: 'City',
  endUserType: 'Who uses it (end user)',
  intendedUse: 'Use',
  declaredEndUse: 'Describe the end use',
  purchaseDate: 'Purchase date',
  seller: 'Bought from (seller)',
  proofOfPurchase: 'Proof of purchase (optional)',
  termsVersion: 'End-use terms',
  acceptTerms: 'I have read and accept these end-use terms',
  name: 'Your name',
  email: 'E-mail (to sign in)',
  password: 'Password',
};

/** Shown and required only when nobody is signed in: an account is made in the same step. */
const newAccountFields = signUpInput.pick({ name: true, email: true, password: true }).shape;

export const transferInput = z.object({
  kind: z.enum(TRANSFER_KINDS, 'Choose resale (new owner) or relocation (same owner, new place).'),
  newOwnerOrganisation: shortText(200, 'New owner').optional(),
  newOwnerContactName: shortText(120, 'Contact name').optional(),
  newOwnerContactEmail: z.preprocess(blankToUndefined, email.optional()),
  newOwnerEndUserType: z.preprocess(blankToUndefined, endUserType.optional()),
  country: countryCode,
  region: shortText(120, 'Region').optional(),
  city: shortText(120, 'City').optional(),
  reason: requiredText(2000, 'Reason'),
  effectiveDate: dayField('Effective date'),
});
const transferLabels = {
  kind: 'What happens',
  newOwnerOrganisation: 'New owner (organisation or person)',
  newOwnerContactName: 'Their contact person',
  newOwnerContactEmail: 'Their e-mail',
  newOwnerEndUserType: 'Who will use it',
  country: 'Country',
  region: 'Region',
  city: 'City',
  reason: 'Reason',
  effectiveDate: 'Date of the resale or move',
};
const transferApiInput = transferInput.extend({ unitId: requiredText(200, 'Unit') }).strict();

const toTransfer = (i: z.infer<typeof transferInput>): TransferInput => ({
  kind: i.kind,
  newOwner:
    i.kind === 'resale'
      ? { organisation: i.newOwnerOrganisation ?? '', contactName: i.newOwnerContactName, contactEmail: i.newOwnerContactEmail, endUserType: i.newOwnerEndUserType! }
      : undefined,
  country: i.country,
  region: i.region,
  city: i.city,
  reason: i.reason,
  effectiveDate: i.effectiveDate,
});

const decisionInput = z.object({
  decision: z.enum(['approve', 'refuse'], 'Choose approve or refuse.'),
  reason: requiredText(2000, 'Reason'),
});

const decisionLabels = { decision: 'Decision', reason: 'Reason for the decision' };

const modelQuery = z.object({ model: shortText(64).optional() });

// ----- output shapes -----

type Services = RouteContext['services'];
type LeanRegistration = Awaited<ReturnType<Services['registrations']['getRegistration']>>;
type LeanTransfer = Awaited<ReturnType<Services['registrations']['getTransfer']>>;

export const publicRegistration = (r: LeanRegistration) => ({
  id: r._id,
  unitId: r.unitId,
  modelSku: r.modelId,
  serial: r.serial,
  ownerOrganisation: r.ownerOrganisation,
  contact: r.contact,
  country: r.country,
  region: r.region,
  city: r.city,
  endUserType: r.endUserType,
  intendedUse: r.intendedUse,
  declaredEndUse: r.declaredEndUse,
  purchaseDate: r.purchaseDate,
  seller: r.seller,
  termsAccepted: r.termsAccepted,
  proofOfPurchase: r.proofOfPurchase ? { sha256: r.proofOfPurchase.sha256, mediaType: r.proofOfPurchase.mediaType, size: r.proofOfPurchase.size, originalName: r.proofOfPurchase.originalName } : null,
  status: r.status,
  warranty: r.warranty,
  createdAt: r.createdAt,
});

export const publicTransfer = (t: LeanTransfer) => ({
  id: t._id,
  unitId: t.unitId,
  registrationId: t.registrationId,
  kind: t.kind,
  newOwner: t.kind === 'resale' ? t.newOwner : null,
  newLocation: t.newLocation,
  reason: t.reason,
  effectiveDate: t.effectiveDate,
  status: t.status,
  decision: t.decision ? { at: t.decision.at, reason: t.decision.reason } : null,
  createdAt: t.createdAt,
});

const viewerOf = (req: Request) => ({ id: req.user!.id, role: req.user!.role });
const staff = requireRole('admin', 'investigator');
const formOptions = {
  countries: COUNTRY_OPTIONS,
  endUserTypes: END_USER_TYPES.map((t) => [t, t.replace(/-/g, ' ')] as [string, string]),
  countryName,
};

// ----- pages -----

export function registrationPages(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();
  const registrations = services.registrations;

  /** The form for the model in `?model=` (GET) or the posted `modelSku`; the model step otherwise. */
  const registerPage = async (req: Request) => {
    const sku = typeof req.body?.modelSku === 'string' ? req.body.modelSku : (parseQuery(modelQuery, req).model ?? '');
    const model = sku ? await registrations.formModel(sku) : null;
    return { title: 'Register a product', model, askedSku: sku, ...formOptions };
  };

  router.get('/register', labelled(registrationLabels), async (req, res) => {
    const locals = await registerPage(req);
    const errors = locals.askedSku && !locals.model ? { modelSku: 'We do not know this model number. Check the label on the product.' } : {};
    res.status(locals.askedSku && !locals.model ? 400 : 200).render('registrations/register', { ...locals, values: { modelSku: locals.askedSku }, errors });
  });

  router.post(
    '/register',
    labelled(registrationLabels),
    ...uploads(ctx, [{ name: 'proofOfPurchase', maxCount: 1 }]),
    formAction('registrations/register', registerPage, async (req, res) => {
      // One parse, so every bad field (registration and account alike) is named at once.
      const input: RegistrationInput & Partial<NewUser> = parseBody(req.user ? registrationInput : registrationInput.extend(newAccountFields), req);
      const registrant = req.user ? { userId: req.user.id } : { signUp: { name: input.name!, email: input.email!, password: input.password! } };
      const proof = (req.files as Record<string, Express.Multer.File[]> | undefined)?.proofOfPurchase?.[0];
      const { created } = await registrations.register(input, registrant, proof);
      if ('signUp' in registrant) {
        // The same answer whether the e-mail was new (account and registration made, waiting
        // for confirmation) or had an account (its holder is told by e-mail).
        res.render('auth/check-email', { title: 'Check your e-mail', message: `${SIGN_UP_ANSWER} Then sign in to see your product under "My products".` });
        return;
      }
      res.flash(created ? 'Your product is registered. Thank you.' : 'This product was already registered to you; nothing was changed.');
      res.redirect(303, '/account/products');
    }),
  );

  router.get('/account/products', requireSignedIn, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await registrations.myProducts(req.user!.id, page);
    res.render('registrations/products', { title: 'My products', products: items, total, page, countryName });
  });

  const transferPage = async (req: Request) => ({
    title: 'Report a resale or move',
    unit: await registrations.unitFor(String(req.params.unitId), { id: req.user!.id, role: 'customer' }),
    ...formOptions,
  });

  router.get('/account/products/:unitId/transfer', requireSignedIn, labelled(transferLabels), async (req, res) => res.render('registrations/transfer', await transferPage(req)));

  router.post(
    '/account/products/:unitId/transfer',
    requireSignedIn,
    labelled(transferLabels),
    formAction('registrations/transfer', transferPage, async (req, res) => {
      const { transfer } = await registrations.requestTransfer(String(req.params.unitId), toTransfer(parseBody(transferInput, req)), req.user!.id);
      res.flash(transfer.status === 'pending' ? 'Thank you. This product needs our approval before the transfer takes effect; we will review it.' : 'Thank you. The transfer is recorded.');
      res.redirect(303, '/account/products');
    }),
  );

  // Staff: the pending-transfer queue, one page per decision, and the unit timeline.
  router.get('/admin/transfers', staff, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await registrations.listPendingTransfers(page);
    res.render('registrations/transfers', { title: 'Transfers waiting for approval', transfers: items, total, page, countryName });
  });

  const decisionPage = async (req: Request) => {
    const transfer = await registrations.getTransfer(String(req.params.transferId), viewerOf(req));
    return { title: 'Transfer', transfer, timeline: await registrations.timeline(transfer.unitId, viewerOf(req)), countryName };
  };

  router.get('/admin/transfers/:transferId', staff, labelled(decisionLabels), async (req, res) => res.render('registrations/decision', await decisionPage(req)));

  router.post(
    '/admin/transfers/:transferId',
    staff,
    labelled(decisionLabels),
    formAction('registrations/decision', decisionPage, async (req, res) => {
      const { decision, reason } = parseBody(decisionInput, req);
      await registrations.decideTransfer(String(req.params.transferId), decision, reason, req.user!.id);
      res.flash(decision === 'approve' ? 'Transfer approved: it is now effective.' : 'Transfer refused.');
      res.redirect(303, '/admin/transfers');
    }),
  );

  router.get('/units/:unitId', staff, async (req, res) => {
    const timeline = await registrations.timeline(String(req.params.unitId), viewerOf(req));
    res.render('registrations/unit', { title: `Unit ${timeline.unit.id}`, timeline, countryName });
  });

  return router;
}

// ----- API -----

export function registrationsApi(ctx: RouteContext) {
  const router = Router();
  const registrations = ctx.services.registrations;

  router.post('/', requireSignedIn, ...uploads(ctx, [{ name: 'proofOfPurchase', maxCount: 1 }], { csrf: false }), async (req, res) => {
    const proof = (req.files as Record<string, Express.Multer.File[]> | undefined)?.proofOfPurchase?.[0];
    // Which red flags fired is for investigators, never told to the registrant.
    const { registration, created } = await registrations.register(parseBody(registrationInput.strict(), req), { userId: req.user!.id }, proof);
    res.status(created ? 201 : 200).json({ registration: publicRegistration(registration), created });
  });

  router.get('/', requireSignedIn, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await registrations.listMine(req.user!.id, page);
    res.json(pageBody(items.map(publicRegistration), total, page));
  });

  router.get('/:registrationId', requireSignedIn, async (req, res) => {
    res.json({ registration: publicRegistration(await registrations.getRegistration(String(req.params.registrationId), viewerOf(req))) });
  });

  return router;
}

export function transfersApi({ services }: RouteContext) {
  const router = Router();
  const registrations = services.registrations;

  router.post('/', requireSignedIn, async (req, res) => {
    const { unitId, ...input } = parseBody(transferApiInput, req);
    const { transfer } = await registrations.requestTransfer(unitId, toTransfer(input), req.user!.id);
    res.status(201).json({ transfer: publicTransfer(transfer) });
  });

  /** The staff queue: pending transfers, oldest first. */
  router.get('/', staff, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await registrations.listPendingTransfers(page);
    res.json(pageBody(items.map(publicTransfer), total, page));
  });

  router.get('/:transferId', requireSignedIn, async (req, res) => {
    res.json({ transfer: publicTransfer(await registrations.getTransfer(String(req.params.transferId), viewerOf(req))) });
  });

  router.post('/:transferId/decision', staff, async (req, res) => {
    const { decision, reason } = parseBody(decisionInput.strict(), req);
    res.json({ transfer: publicTransfer(await registrations.decideTransfer(String(req.params.transferId), decision, reason, req.user!.id)) });
  });

  return router;
}

/** The destination timeline: staff see everything; the owner sees their unit without flags or cases. */
export function unitTimelineApi({ services }: RouteContext) {
  const router = Router();
  router.get('/:unitId/timeline', requireSignedIn, async (req, res) => {
    res.json(await services.registrations.timelineFor(String(req.params.unitId), viewerOf(req)));
  });
  return router;
}
