import crypto from 'node:crypto';
import type { Clock } from '../../clock';
import { isCountryCode } from '../../countries';
import { ConflictError, NotFoundError, ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import type { CatalogueStore } from '../../store/catalogue';
import type { CheckInHistoryStore } from '../../store/check-in-history';
import type { FlagsStore } from '../../store/flags';
import type { RegistrationsStore } from '../../store/registrations';
import type { CertificatesStore } from '../../store/certificates';
import type { VerificationStore } from '../../store/verification';
import type { AuditService } from '../audit';
import type { AuthService, NewUser } from '../auth';
import type { NotificationsService } from '../notifications';
import type { UserDoc } from '../../store/auth';
import type { CasesService } from '../cases';
import { normaliseCode, unitId } from '../catalogue/codes';
import type { FilesService, IncomingFile } from '../files';
import type { FlagsService } from '../flags';
import type { ScreeningService } from '../screening';
import type { CertificatesService } from '../certificates';
import type { EpcisStore } from '../../store/epcis';
import type { WebhookEmitter } from '../webhooks';
import { registrationNotices } from './notices';
import { createTimeline, isStaff, type Viewer } from './timeline';
import type { EndUserType } from '../../domain/registrations';
import type { RiskLevel } from '../../domain/catalogue';

export type { TimelineEntry, Viewer } from './timeline';

/**
 * Warranty registrations, transfers and the unit's destination timeline (timeline.ts).
 *
 * Writes follow one order so that a crash never leaves a unit pointing at nothing: the
 * registration or transfer document is written first, then a claim key is inserted (its
 * unique `_id` decides which of two concurrent writers wins), then the winner updates the
 * unit summary by `_id`. A crash between the key and the unit update leaves that registration
 * slot taken without effect; an admin would clear the key (not automated).
 */

export interface RegistrationInput {
  modelSku: string;
  serial: string;
  ownerOrganisation: string;
  contactName: string;
  contactEmail: string;
  contactPhone?: string;
  country: string;
  region?: string;
  city?: string;
  endUserType: EndUserType;
  intendedUse: string;
  declaredEndUse: string;
  purchaseDate: Date;
  seller?: string;
  /** The terms version the form showed; must still be the model's current one. */
  termsVersion: number;
  acceptTerms: boolean;
}

export type Registrant = { userId: string } | { signUp: NewUser };

export interface TransferInput {
  kind: 'resale' | 'relocation';
  newOwner?: { organisation: string; contactName?: string; contactEmail?: string; endUserType: EndUserType };
  country: string;
  region?: string;
  city?: string;
  reason: string;
  effectiveDate: Date;
}

export type Warranty = 'valid' | 'limited' | 'void';

/** Intended-use choice meaning "none of the model's listed uses". */
export const OTHER_USE = 'other';

const unknownSerial = () =>
  new ValidationError({ serial: 'No unit of this model has this serial number. Check the label on the product, or contact us if it is right.' });

type RegistrationDoc = NonNullable<Awaited<ReturnType<RegistrationsStore['registrationById']>>>;
/** A registration made (or found already made by the same customer). */
export interface Registered {
  registration: RegistrationDoc;
  created: boolean;
  user: UserDoc | null;
  flags: string[];
  /** A party matched a screening list: the registration waits for an investigator's review before it takes effect. */
  held?: boolean;
}
/** Sign-up with an e-mail that already had an account: nothing registered, the holder told by e-mail. */
export interface NotRegistered {
  registration: null;
  created: false;
  user: null;
  flags: string[];
}

const randomId = (prefix: string) => `${prefix}_${crypto.randomBytes(10).toString('hex')}`;

export function createRegistrationsService(deps: {
  clock: Clock;
  audit: AuditService;
  auth: AuthService;
  files: FilesService;
  flags: FlagsService;
  notifications: NotificationsService;
  cases: CasesService;
  screening: Pick<ScreeningService, 'screenRecord' | 'isHeld'>;
  certificates: Pick<CertificatesService, 'rules' | 'requirement' | 'ofUnit'>;
  webhooks: WebhookEmitter;
  stores: {
    registrations: RegistrationsStore;
    catalogue: CatalogueStore;
    checkInHistory: CheckInHistoryStore;
    flags: Pick<FlagsStore, 'flagsByIds'>;
    certificates: Pick<CertificatesStore, 'certificatesOfUnit'>;
    verification: Pick<VerificationStore, 'visitsOfUnit'>;
    epcis: Pick<EpcisStore, 'unitEvents'>;
  };
}) {
  const { clock, audit, auth, files, flags, notifications, screening, certificates } = deps;
  const store = deps.stores.registrations;
  const catalogue = deps.stores.catalogue;
  const notices = registrationNotices({ auth, notifications });
  const { timeline, timelineFor } = createTimeline({ clock, registrations: store, catalogue, history: deps.stores.checkInHistory, flags: deps.stores.flags, cases: deps.cases, certificates: deps.stores.certificates, visits: deps.stores.verification, epcis: deps.stores.epcis });

  async function loadModelAndUnit(modelSku: string, serial: string) {
    const model = await catalogue.modelById(normaliseCode(modelSku));
    if (!model) throw new ValidationError({ modelSku: 'We do not know this model number. Check the label on the product.' });
    const unit = await catalogue.unitById(unitId(modelSku, serial));
    if (!unit) throw unknownSerial();
    return { model, unit };
  }

  /** The red-flag rules a registration meets when it takes effect. */
  async function raiseRegistrationFlags(
    r: { _id: string; unitId: string; serial: string; country: string; endUserType: EndUserType; intendedUse: string; declaredEndUse: string },
    model: { _id: string; riskLevel: RiskLevel; intendedUses: string[] },
  ) {
    const restricted = await flags.restrictedCountries();
    const certified = (await certificates.ofUnit(r.unitId)).filter((c) => c.attachments.some((a) => a.id === r._id)).length;
    return flags.raiseAll(
      [
        flags.rules.restrictedCountry(r.country, restricted, 'registration'),
        flags.rules.highRiskEndUser(model.riskLevel, r.endUserType),
        flags.rules.endUseOutsideIntended(model.intendedUses, r.intendedUse, r.declaredEndUse),
        certificates.rules.missing(certificates.requirement, model.riskLevel, r.endUserType, certified),
      ],
      { unitId: r.unitId, modelId: model._id, serial: r.serial, country: r.country },
      { kind: 'registration', id: r._id },
    );
  }

  /** Checks everything that can be checked before an account is created or a file stored. */
  function checkInput(input: RegistrationInput, model: { intendedUses: string[]; endUseTerms: Array<{ version: number }> }) {
    const errors: Record<string, string> = {};
    if (!isCountryCode(input.country)) errors.country = 'Choose a country from the list (ISO 3166-1 alpha-2 code).';
    const uses = model.intendedUses.map((u) => u.toLowerCase());
    if (input.intendedUse !== OTHER_USE && !uses.includes(input.intendedUse.toLowerCase())) errors.intendedUse = 'Choose one of the listed uses, or "other" and describe it.';
    const current = model.endUseTerms.at(-1);
    if (!current) throw new ConflictError('This model cannot be registered yet: its end-use terms are not published. Please contact us.');
    if (!input.acceptTerms) errors.acceptTerms = 'You must accept the end-use terms to register the product.';
    else if (input.termsVersion !== current.version) errors.acceptTerms = `The end-use terms changed (now version ${current.version}). Please read them again and accept the current version.`;
    if (input.purchaseDate.getTime() > clock.now().getTime()) errors.purchaseDate = 'The purchase date cannot be in the future.';
    if (Object.keys(errors).length) throw new ValidationError(errors);
    return current;
  }

  /**
   * A unit registered to someone else is answered exactly like a serial we do not know (same
   * status, message and field), so the form cannot be used to learn which serials are sold and
   * registered; the owner is told of the attempt instead.
   */
  async function refuseTaken(registrationId: string | null | undefined, serial: string) {
    const owner = registrationId ? await store.registrationById(registrationId) : null;
    const account = owner ? await auth.getUser(String(owner.customerUserId)).catch(() => null) : null;
    if (account) {
      await notifications.sendMail({
        to: account.email,
        subject: `Someone tried to register your unit ${serial}`,
        text: [
          `Hello ${account.name},`,
          '',
          `Someone tried to register your unit ${serial} (${owner!.modelId}) to another account. It stays registered to you; nothing was changed.`,
          'If you sold or gave the unit away, report the resale from "My products" so that its new owner can register it.',
        ].join('\n'),
      });
    }
    return unknownSerial();
  }

  async function existingFor(unit: { registrationId?: string | null; serial: string }, userId: string | null) {
    if (!unit.registrationId) return null;
    const existing = await store.registrationById(unit.registrationId);
    if (existing && userId && String(existing.customerUserId) === userId) return existing;
    throw await refuseTaken(unit.registrationId, unit.serial);
  }

  function register(input: RegistrationInput, registrant: { userId: string }, proofOfPurchase?: IncomingFile): Promise<Registered>;
  function register(input: RegistrationInput, registrant: Registrant, proofOfPurchase?: IncomingFile): Promise<Registered | NotRegistered>;
  async function register(input: RegistrationInput, registrant: Registrant, proofOfPurchase?: IncomingFile): Promise<Registered | NotRegistered> {
    const { model, unit } = await loadModelAndUnit(input.modelSku, input.serial);
    // Before the other fields: a unit someone else registered must answer like an unknown serial.
    const knownUserId = 'userId' in registrant ? registrant.userId : null;
    const already = await existingFor(unit, knownUserId);
    const terms = checkInput(input, model);
    if (already) return { registration: already, created: false, user: null, flags: [] as string[] };

    const proof = proofOfPurchase ? await files.store(proofOfPurchase, 'proofOfPurchase') : null;
    let user: UserDoc | null = null;
    if ('signUp' in registrant) {
      user = await auth.signUp(registrant.signUp);
      if (!user) {
        // The e-mail has an account: its holder was told by e-mail; the caller answers as for
        // a new account, and the unit is registered once they sign in and register it.
        if (proof) await files.remove(proof.fileId);
        return { registration: null, created: false, user: null, flags: [] as string[] };
      }
    }
    const customerUserId = knownUserId ?? String(user!._id);

    const now = clock.now();
    // The id is decided by the unit and its registration count, so a retry after a failure
    // half-way (database gone after the insert) finds its own document instead of leaving an
    // orphan next to a second one; found by the soak test killing the database (test/soak).
    const claimKey = `registration:${unit._id}|${unit.registrationIds?.length ?? 0}`;
    const id = `reg_${crypto.createHash('sha256').update(claimKey).digest('hex').slice(0, 20)}`;
    const inserted = await store.insertRegistration({
      _id: id,
      unitId: unit._id,
      modelId: model._id,
      serial: unit.serial,
      customerUserId,
      ownerOrganisation: input.ownerOrganisation,
      contact: { name: input.contactName, email: input.contactEmail, phone: input.contactPhone ?? '' },
      country: input.country,
      region: input.region ?? '',
      city: input.city ?? '',
      endUserType: input.endUserType,
      intendedUse: input.intendedUse,
      declaredEndUse: input.declaredEndUse,
      purchaseDate: input.purchaseDate,
      seller: input.seller ?? '',
      termsAccepted: { version: terms.version, acceptedAt: now },
      proofOfPurchase: proof,
      createdAt: now,
    });
    if (!inserted) {
      // An earlier attempt of this same registration got this far (or someone else just won).
      if (proof) await files.remove(proof.fileId);
      const earlier = await store.registrationById(id);
      if (!earlier || String(earlier.customerUserId) !== customerUserId) throw await refuseTaken(earlier?._id, unit.serial);
    }

    const winner = await store.claim(claimKey, id, clock.now());
    if (winner && winner !== id) {
      // Someone registered the unit between our read and our claim: ours never takes effect.
      await store.deleteRegistration(id);
      if (proof) await files.remove(proof.fileId);
      const theirs = await store.registrationById(winner);
      if (theirs && String(theirs.customerUserId) === customerUserId) return { registration: theirs, created: false, user, flags: [] as string[] };
      throw await refuseTaken(winner, unit.serial);
    }
    // Screened after the claim (the slot is ours) and before the unit changes: a listed party's
    // registration waits for review instead of taking effect. A retry screens again and finds
    // the same hits, so it stays held until they are decided.
    const { held } = await screening.screenRecord({ kind: 'registration', id, unitId: unit._id, parties: [{ role: 'owner', name: input.ownerOrganisation, country: input.country }, { role: 'contact', name: input.contactName, country: input.country }] });
    if (held) {
      await store.addToCustomer(customerUserId, id);
      await audit.record({ actorKind: 'user', actorId: customerUserId, action: 'registration.held', subjectKind: 'registration', subjectId: id, detail: { unitId: unit._id, country: input.country, reason: 'screening' } });
      return { registration: (await store.registrationById(id))!, created: true, user, flags: [] as string[], held: true };
    }
    const current = { country: input.country, region: [input.city, input.region].filter(Boolean).join(', '), owner: input.ownerOrganisation, endUserType: input.endUserType, since: now };
    if (!(await store.applyRegistration(unit._id, id, customerUserId, current))) return { registration: (await store.registrationById(id))!, created: false, user, flags: [] as string[] };
    await store.addToCustomer(customerUserId, id);
    await audit.record({ actorKind: 'user', actorId: customerUserId, action: 'registration.created', subjectKind: 'registration', subjectId: id, detail: { unitId: unit._id, country: input.country, endUserType: input.endUserType, termsVersion: terms.version } });
    await notices.registrationConfirmed({ customerUserId, serial: unit.serial, modelId: model._id });

    const fired = await raiseRegistrationFlags({ ...input, _id: id, unitId: unit._id, serial: unit.serial }, model);
    return { registration: (await store.registrationById(id))!, created: true, user, flags: fired };
  }

  /**
   * A registration held by screening takes effect once its hits are cleared (the screening
   * review calls this), with the red-flag rules it would have met at submission.
   */
  async function releaseHeldRegistration(id: string, byUserId: string) {
    const r = await store.registrationById(id);
    if (!r) throw new NotFoundError('No such registration.');
    const current = { country: r.country, region: [r.city, r.region].filter(Boolean).join(', '), owner: r.ownerOrganisation, endUserType: r.endUserType, since: clock.now() };
    if (!(await store.applyRegistration(r.unitId, id, String(r.customerUserId), current))) return;
    await audit.record({ actorKind: 'user', actorId: byUserId, action: 'registration.released', subjectKind: 'registration', subjectId: id, detail: { unitId: r.unitId, reason: 'screening cleared' } });
    await notices.registrationConfirmed(r);
    const model = await catalogue.modelById(r.modelId);
    if (model) await raiseRegistrationFlags(r, model);
  }

  async function getRegistration(id: string, viewer: Viewer) {
    const registration = await store.registrationById(id);
    // Someone else's registration is "not found": its existence is not theirs to learn.
    if (!registration || (!isStaff(viewer.role) && String(registration.customerUserId) !== viewer.id)) throw new NotFoundError('No such registration.');
    return registration;
  }

  /** The unit, if the viewer may see it: staff always, a customer only while it is theirs. */
  async function unitFor(unitIdValue: string, viewer: Viewer) {
    const unit = await catalogue.unitById(unitIdValue);
    if (!unit || (!isStaff(viewer.role) && String(unit.ownerUserId) !== viewer.id)) throw new NotFoundError('No such unit.');
    return unit;
  }

  // ----- transfers -----

  /**
   * What an effective transfer does to the unit summary.
   * - relocation: same owner and registration, new location;
   * - resale: the old registration is superseded and the unit goes back to `unregistered`,
   *   with the new owner (as the seller told us) on the summary until they register it
   *   themselves and accept the terms: we never register someone on another's word.
   * `expectStatus` guards the write so a unit changed meanwhile is not overwritten.
   */
  async function applyTransfer(transfer: { unitId: string; registrationId: string; kind: string; newOwner?: { organisation?: string | null; endUserType?: string | null } | null; newLocation?: { country: string; region?: string | null; city?: string | null } | null }, expectStatus: string) {
    const now = clock.now();
    const loc = transfer.newLocation!;
    const where = { 'current.country': loc.country, 'current.region': [loc.city, loc.region].filter(Boolean).join(', '), 'current.since': now };
    const resale = transfer.kind === 'resale';
    const set = resale
      ? { ...where, status: 'unregistered', registrationId: null, ownerUserId: null, 'current.owner': transfer.newOwner?.organisation ?? '', 'current.endUserType': transfer.newOwner?.endUserType ?? null }
      : { ...where, status: 'registered' };
    if (!(await store.applyTransferToUnit(transfer, expectStatus, set, { country: loc.country, at: now }, resale))) throw new ConflictError('The unit changed while this transfer was processed; reload and try again.');
  }

  async function requestTransfer(unitIdValue: string, input: TransferInput, userId: string) {
    const unit = await unitFor(unitIdValue, { id: userId, role: 'customer' });
    if (!unit.registrationId) throw new NotFoundError('No such unit.');
    if (unit.status === 'transfer-pending') throw new ConflictError('A transfer of this unit is already waiting for approval.');
    const errors: Record<string, string> = {};
    if (!isCountryCode(input.country)) errors.country = 'Choose a country from the list (ISO 3166-1 alpha-2 code).';
    if (input.kind === 'resale' && !input.newOwner?.organisation) errors.newOwnerOrganisation = 'Name the new owner (organisation or person).';
    if (input.kind === 'resale' && !input.newOwner?.endUserType) errors.newOwnerEndUserType = 'Choose the new owner\'s type of end user.';
    if (Object.keys(errors).length) throw new ValidationError(errors);

    const model = await catalogue.modelById(unit.modelId);
    if (!model) throw new NotFoundError('No such unit.');
    const now = clock.now();
    const id = randomId('trf');
    // A resale to a listed party waits for approval whatever the model's risk, held until its hits are reviewed.
    const screened = input.kind === 'resale'
      ? await screening.screenRecord({ kind: 'transfer', id, unitId: unit._id, parties: [{ role: 'new-owner', name: input.newOwner!.organisation, country: input.country }, { role: 'new-owner-contact', name: input.newOwner!.contactName ?? '', country: input.country }] })
      : { held: false };
    const needsApproval = model.riskLevel === 'high' || screened.held;
    const newOwner = input.kind === 'resale' ? { organisation: input.newOwner!.organisation, contactName: input.newOwner!.contactName ?? '', contactEmail: input.newOwner!.contactEmail ?? '', endUserType: input.newOwner!.endUserType } : {};
    const transfer = {
      _id: id,
      unitId: unit._id,
      registrationId: unit.registrationId,
      requestedByUserId: userId,
      kind: input.kind,
      newOwner,
      newLocation: { country: input.country, region: input.region ?? '', city: input.city ?? '' },
      reason: input.reason,
      effectiveDate: input.effectiveDate,
      status: needsApproval ? ('pending' as const) : ('effective' as const),
      createdAt: now,
    };
    await store.insertTransfer(transfer);
    if (await store.claim(`transfer:${unit._id}|${unit.transferIds?.length ?? 0}`, id, now)) {
      await store.deleteTransfer(id);
      throw new ConflictError('Another transfer of this unit was reported at the same time; reload and check before reporting again.');
    }
    await store.recordTransferOnUnit(unit._id, id, needsApproval ? now : null);
    if (!needsApproval) await applyTransfer(transfer, 'registered');
    await audit.record({ actorKind: 'user', actorId: userId, action: needsApproval ? 'transfer.requested' : 'transfer.effective', subjectKind: 'transfer', subjectId: id, detail: { unitId: unit._id, kind: input.kind, country: input.country } });
    if (needsApproval) await notices.transferPending(transfer);

    const restricted = await flags.restrictedCountries();
    const fired = await flags.raiseAll(
      [flags.rules.restrictedCountry(input.country, restricted, 'transfer'), input.kind === 'resale' ? flags.rules.highRiskEndUser(model.riskLevel, input.newOwner!.endUserType) : null],
      { unitId: unit._id, modelId: model._id, serial: unit.serial, country: input.country },
      { kind: 'transfer', id },
    );
    return { transfer: (await store.transferById(id))!, flags: fired, held: screened.held };
  }

  /** An admin or investigator approves (the transfer becomes effective at once) or refuses. */
  async function decideTransfer(id: string, decision: 'approve' | 'refuse', reason: string, staffUserId: string) {
    const now = clock.now();
    if (!(await store.transferById(id))) throw new NotFoundError('No such transfer.');
    if (decision === 'approve' && (await screening.isHeld('transfer', id))) throw new ConflictError('The new owner matched a screening list: review the screening hits before approving this transfer.');
    const transfer = await store.decideTransfer(id, decision === 'approve' ? 'effective' : 'refused', { byUserId: staffUserId, at: now, reason });
    if (!transfer) throw new ConflictError('This transfer has already been decided.');
    if (decision === 'approve') await applyTransfer(transfer, 'transfer-pending');
    else await store.unitBackToRegistered(transfer.unitId, now);
    await audit.record({ actorKind: 'user', actorId: staffUserId, action: decision === 'approve' ? 'transfer.approved' : 'transfer.refused', subjectKind: 'transfer', subjectId: id, detail: { unitId: transfer.unitId, reason } });
    await deps.webhooks.emit('transfer.decided', id, { transferId: id, unitId: transfer.unitId, kind: transfer.kind, decision: decision === 'approve' ? 'approved' : 'refused', decidedAt: now.toISOString() });
    await notices.transferDecided(transfer);
    return transfer;
  }

  /** A customer's registrations, newest first, from their one list document. */
  async function listMine(userId: string, page: Page) {
    const ids = [...(await store.customerRegistrationIds(userId))].reverse();
    return { items: await store.registrationsByIds(ids.slice(page.skip, page.skip + page.limit)), total: ids.length };
  }

  return {
    OTHER_USE,
    register,
    getRegistration,

    listMine,

    /** "My products": each registration with its unit's status and owner timeline. */
    async myProducts(userId: string, page: Page) {
      const { items, total } = await listMine(userId, page);
      const products = await Promise.all(
        items.map(async (registration) => {
          const current = registration.status === 'active';
          return { registration, timeline: current ? await timeline(registration.unitId, { id: userId, role: 'customer' }) : null };
        }),
      );
      return { items: products, total };
    },

    /** What the registration form needs to show for a model: intended uses and current terms. */
    async formModel(modelSku: string) {
      const model = await catalogue.modelById(normaliseCode(modelSku));
      if (!model) return null;
      return { sku: model._id, name: model.publicName || model.name, intendedUses: model.intendedUses, terms: model.endUseTerms.at(-1) ?? null };
    },

    unitFor,
    releaseHeldRegistration,
    requestTransfer,
    decideTransfer,

    async getTransfer(id: string, viewer: Viewer) {
      const transfer = await store.transferById(id);
      if (!transfer || (!isStaff(viewer.role) && String(transfer.requestedByUserId) !== viewer.id)) throw new NotFoundError('No such transfer.');
      return transfer;
    },

    listPendingTransfers: (page: Page) => store.pendingTransfers(page),

    /**
     * Marks a registration's warranty and the unit control that goes with it (a leverage
     * action of a case: void or limit the warranty).
     */
    async setWarranty(registrationId: string, warranty: Warranty, actor: { userId: string | null; caseId?: string }) {
      const registration = await store.setWarranty(registrationId, warranty);
      if (!registration) throw new NotFoundError('No such registration.');
      await audit.record({ actorKind: actor.userId ? 'user' : 'system', actorId: actor.userId, action: 'registration.warranty-set', subjectKind: 'registration', subjectId: registrationId, detail: { warranty, unitId: registration.unitId, caseId: actor.caseId ?? null } });
      return registration;
    },

    timeline,
    timelineFor,
  };
}

export type RegistrationsService = ReturnType<typeof createRegistrationsService>;
export type UnitTimeline = Awaited<ReturnType<RegistrationsService['timeline']>>;
