import crypto from 'node:crypto';
import type { Clock } from '../clock';
import { countryName, isCountryCode } from '../countries';
import { ConflictError, NotFoundError, ValidationError } from '../errors';
import type { Page } from '../middleware/validate';
import type { Role, UserDoc } from '../../models/auth';
import { ProductModel, Unit, normaliseCode, unitId, unitRuns, type UnitDoc } from '../../models/catalogue';
import { writeLocked } from './catalogue';
import { Flag } from '../../models/flags';
import { tallyUnits, unitStateChange } from '../store/insight';
import { ClaimKey, CustomerRegistrations, Registration, Transfer, type EndUserType } from '../../models/registrations';
import type { AuditService } from './audit';
import type { AuthService, NewUser } from './auth';
import type { CasesService } from './cases';
import type { FilesService, IncomingFile } from './files';
import type { FlagsService } from './flags';

/**
 * Warranty registrations, transfers and the unit's destination timeline.
 *
 * Writes follow one order so that a crash never leaves a unit pointing at nothing: the
 * Registration/Transfer document is written first, then a `ClaimKey` is inserted (its unique
 * `_id` decides which of two concurrent writers wins, see models/registrations.ts), then the
 * winner updates the unit summary by `_id`. A crash between the key and the unit update leaves
 * that registration slot taken without effect; an admin would clear the key (not automated).
 * Every change of a unit's status or `current.country` is then passed on to the dashboard's
 * tallies (`tallyUnits`, models/insight.ts) with the values the write replaced.
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

export interface Viewer {
  id: string;
  role: Role;
}

export type Warranty = 'valid' | 'limited' | 'void';

export interface TimelineEntry {
  at: Date;
  kind: 'first-sale' | 'registration' | 'transfer' | 'check-ins' | 'flag' | 'case';
  title: string;
  detail: string;
  country: string | null;
}

/** Intended-use choice meaning "none of the model's listed uses". */
export const OTHER_USE = 'other';

const isStaff = (role: Role) => role === 'admin' || role === 'investigator';
const randomId = (prefix: string) => `${prefix}_${crypto.randomBytes(10).toString('hex')}`;
const day = (d: Date) => d.toISOString().slice(0, 10);
// One formatter for the process: `toLocaleDateString` with options builds a new one per call
// (~0.12 ms), which was a third of a 35-run timeline's time (issue 7, heavy unit p95).
const shortDayFormat = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
const shortDay = (d: Date) => shortDayFormat.format(d);
/** Flags read per open case on the timeline: enough to see the pattern, bounded. */
const FLAGS_PER_CASE = 20;

export function createRegistrationsService(deps: { clock: Clock; audit: AuditService; auth: AuthService; files: FilesService; flags: FlagsService; cases: CasesService }) {
  const { clock, audit, auth, files, flags } = deps;

  async function loadModelAndUnit(modelSku: string, serial: string) {
    const model = await ProductModel.findById(normaliseCode(modelSku)).lean();
    if (!model) throw new ValidationError({ modelSku: 'We do not know this model number. Check the label on the product.' });
    const unit = await Unit.findById(unitId(modelSku, serial)).lean();
    if (!unit) throw new ValidationError({ serial: 'No unit of this model has this serial number. Check the label on the product, or contact us if it is right.' });
    return { model, unit };
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

  /** Inserts a race-deciding key: null if we won it, else whom it already went to. */
  async function claim(key: string, ref: string): Promise<string | null> {
    try {
      await ClaimKey.create({ _id: key, ref, at: clock.now() });
      return null;
    } catch (err) {
      if ((err as { code?: number }).code !== 11000) throw err;
      return (await ClaimKey.findById(key).lean())?.ref ?? 'unknown';
    }
  }

  /** Two first registrations of one customer may both try to create the index: the loser retries as an update. */
  async function addToCustomerIndex(userId: string, registrationId: string) {
    const add = () => writeLocked([`customer:${userId}`], () => CustomerRegistrations.updateOne({ _id: userId }, { $addToSet: { registrationIds: registrationId } }, { upsert: true }));
    await add().catch((err: { code?: number }) => {
      if (err.code !== 11000) throw err;
      return add();
    });
  }

  /** A registration by someone else is refused without saying anything about them. */
  const takenError = () =>
    new ConflictError('This product is already registered to another customer. If you bought it second-hand, ask the seller to report the resale to us, or contact us.', {
      serial: 'This product is already registered to another customer.',
    });

  async function existingFor(unit: { registrationId?: string | null }, userId: string | null) {
    if (!unit.registrationId) return null;
    const existing = await Registration.findById(unit.registrationId).lean();
    if (existing && userId && String(existing.customerUserId) === userId) return existing;
    throw takenError();
  }

  async function register(input: RegistrationInput, registrant: Registrant, proofOfPurchase?: IncomingFile) {
    const { model, unit } = await loadModelAndUnit(input.modelSku, input.serial);
    const terms = checkInput(input, model);
    const knownUserId = 'userId' in registrant ? registrant.userId : null;
    const already = await existingFor(unit, knownUserId);
    if (already) return { registration: already, created: false, user: null, flags: [] as string[] };

    const proof = proofOfPurchase ? await files.store(proofOfPurchase, 'proofOfPurchase') : null;
    let user: UserDoc | null = null;
    if ('signUp' in registrant) {
      try {
        user = await auth.signUp(registrant.signUp);
      } catch (err) {
        if (proof) await files.remove(proof.fileId); // e.g. the e-mail has an account already
        throw err;
      }
    }
    const customerUserId = knownUserId ?? String(user!._id);

    const now = clock.now();
    // The id is decided by the unit and its registration count, so a retry after a failure
    // half-way (database gone after the insert) finds its own document instead of leaving an
    // orphan next to a second one; found by the soak test killing the database (test/soak).
    const claimKey = `registration:${unit._id}|${unit.registrationIds?.length ?? 0}`;
    const id = `reg_${crypto.createHash('sha256').update(claimKey).digest('hex').slice(0, 20)}`;
    const registration = await Registration.create({
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
    }).then(
      () => Registration.findById(id).lean().orFail(),
      async (err: { code?: number }) => {
        if (err.code !== 11000) throw err;
        // An earlier attempt of this same registration got this far (or someone else just won).
        if (proof) await files.remove(proof.fileId);
        const earlier = await Registration.findById(id).lean();
        if (!earlier || String(earlier.customerUserId) !== customerUserId) throw takenError();
        return earlier;
      },
    );

    const winner = await claim(claimKey, id);
    if (winner && winner !== id) {
      // Someone registered the unit between our read and our claim: ours never takes effect.
      await Registration.deleteOne({ _id: id });
      if (proof) await files.remove(proof.fileId);
      const theirs = await Registration.findById(winner).lean();
      if (theirs && String(theirs.customerUserId) === customerUserId) return { registration: theirs, created: false, user, flags: [] as string[] };
      throw takenError();
    }
    const current = { country: input.country, region: [input.city, input.region].filter(Boolean).join(', '), owner: input.ownerOrganisation, endUserType: input.endUserType, since: now };
    const before = await writeLocked([`unit:${unit._id}`], () =>
      Unit.findOneAndUpdate(
        // Once only: a concurrent submission of this same registration may have applied it already.
        { _id: unit._id, registrationId: { $ne: id } },
        {
          $set: { status: 'registered', registrationId: id, ownerUserId: customerUserId, current, updatedAt: now },
          $push: { countries: { country: input.country, source: 'registration', firstSeen: now, lastSeen: now }, registrationIds: id },
        },
        // The unit as it was: the values replaced, for the dashboard's tallies (FerretDB v1 has no projection here).
        { new: false },
      ).lean(),
    );
    if (!before) return { registration, created: false, user, flags: [] as string[] };
    await tallyUnits([unitStateChange(unit.modelId, { status: before.status, country: before.current?.country }, { status: 'registered', country: input.country })]);
    await addToCustomerIndex(customerUserId, id);
    await audit.record({ actorKind: 'user', actorId: customerUserId, action: 'registration.created', subjectKind: 'registration', subjectId: id, detail: { unitId: unit._id, country: input.country, endUserType: input.endUserType, termsVersion: terms.version } });

    const restricted = await flags.restrictedCountries();
    const fired = await flags.raiseAll(
      [
        flags.rules.restrictedCountry(input.country, restricted, 'registration'),
        flags.rules.highRiskEndUser(model.riskLevel, input.endUserType),
        flags.rules.endUseOutsideIntended(model.intendedUses, input.intendedUse, input.declaredEndUse),
      ],
      { unitId: unit._id, modelId: model._id, serial: unit.serial, country: input.country },
      { kind: 'registration', id },
    );
    return { registration: (await Registration.findById(registration._id).lean())!, created: true, user, flags: fired };
  }

  async function getRegistration(id: string, viewer: Viewer) {
    const registration = await Registration.findById(id).lean();
    // Someone else's registration is "not found": its existence is not theirs to learn.
    if (!registration || (!isStaff(viewer.role) && String(registration.customerUserId) !== viewer.id)) throw new NotFoundError('No such registration.');
    return registration;
  }

  /** The unit, if the viewer may see it: staff always, a customer only while it is theirs. */
  async function unitFor(unitIdValue: string, viewer: Viewer) {
    const unit = await Unit.findById(unitIdValue).lean();
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
  async function applyTransfer(transfer: { _id: string; unitId: string; registrationId: string; kind: string; newOwner?: { organisation?: string | null; endUserType?: string | null } | null; newLocation?: { country: string; region?: string | null; city?: string | null } | null }, expectStatus: string) {
    const now = clock.now();
    const loc = transfer.newLocation!;
    const where = { 'current.country': loc.country, 'current.region': [loc.city, loc.region].filter(Boolean).join(', '), 'current.since': now };
    const resale = transfer.kind === 'resale';
    const set = resale
      ? { ...where, status: 'unregistered', registrationId: null, ownerUserId: null, 'current.owner': transfer.newOwner?.organisation ?? '', 'current.endUserType': transfer.newOwner?.endUserType ?? null }
      : { ...where, status: 'registered' };
    const before = await writeLocked([`unit:${transfer.unitId}`], () =>
      Unit.findOneAndUpdate(
        { _id: transfer.unitId, registrationId: transfer.registrationId, status: expectStatus },
        { $set: { ...set, updatedAt: now }, $push: { countries: { country: loc.country, source: 'transfer', firstSeen: now, lastSeen: now } } },
        { new: false },
      ).lean(),
    );
    if (!before) throw new ConflictError('The unit changed while this transfer was processed; reload and try again.');
    await tallyUnits([unitStateChange(before.modelId, { status: before.status, country: before.current?.country }, { status: set.status, country: loc.country })]);
    if (resale) await writeLocked([`registration:${transfer.registrationId}`], () => Registration.updateOne({ _id: transfer.registrationId }, { $set: { status: 'superseded' } }));
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

    const model = await ProductModel.findById(unit.modelId).lean().orFail();
    const needsApproval = model.riskLevel === 'high';
    const now = clock.now();
    const id = randomId('trf');
    const newOwner = input.kind === 'resale' ? { organisation: input.newOwner!.organisation, contactName: input.newOwner!.contactName ?? '', contactEmail: input.newOwner!.contactEmail ?? '', endUserType: input.newOwner!.endUserType } : {};
    const transfer = await Transfer.create({
      _id: id,
      unitId: unit._id,
      registrationId: unit.registrationId,
      requestedByUserId: userId,
      kind: input.kind,
      newOwner,
      newLocation: { country: input.country, region: input.region ?? '', city: input.city ?? '' },
      reason: input.reason,
      effectiveDate: input.effectiveDate,
      status: needsApproval ? 'pending' : 'effective',
      createdAt: now,
    });
    if (await claim(`transfer:${unit._id}|${unit.transferIds?.length ?? 0}`, id)) {
      await Transfer.deleteOne({ _id: id });
      throw new ConflictError('Another transfer of this unit was reported at the same time; reload and check before reporting again.');
    }
    const before = await writeLocked([`unit:${unit._id}`], () =>
      Unit.findOneAndUpdate({ _id: unit._id }, { $push: { transferIds: id }, ...(needsApproval ? { $set: { status: 'transfer-pending', updatedAt: now } } : {}) }, { new: false }).lean(),
    );
    if (needsApproval && before) await tallyUnits([unitStateChange(unit.modelId, { status: before.status, country: before.current?.country }, { status: 'transfer-pending', country: before.current?.country ?? null })]);
    if (!needsApproval) await applyTransfer(transfer.toObject(), 'registered');
    await audit.record({ actorKind: 'user', actorId: userId, action: needsApproval ? 'transfer.requested' : 'transfer.effective', subjectKind: 'transfer', subjectId: id, detail: { unitId: unit._id, kind: input.kind, country: input.country } });

    const restricted = await flags.restrictedCountries();
    const fired = await flags.raiseAll(
      [flags.rules.restrictedCountry(input.country, restricted, 'transfer'), input.kind === 'resale' ? flags.rules.highRiskEndUser(model.riskLevel, input.newOwner!.endUserType) : null],
      { unitId: unit._id, modelId: model._id, serial: unit.serial, country: input.country },
      { kind: 'transfer', id },
    );
    return { transfer: (await Transfer.findById(id).lean())!, flags: fired };
  }

  /** An admin or investigator approves (the transfer becomes effective at once) or refuses. */
  async function decideTransfer(id: string, decision: 'approve' | 'refuse', reason: string, staffUserId: string) {
    const now = clock.now();
    const pending = await Transfer.findById(id).lean();
    if (!pending) throw new NotFoundError('No such transfer.');
    if (pending.status !== 'pending' || (await claim(`decision:${id}`, staffUserId))) throw new ConflictError('This transfer has already been decided.');
    const transfer = (await Transfer.findOneAndUpdate(
      { _id: id },
      { $set: { status: decision === 'approve' ? 'effective' : 'refused', decision: { byUserId: staffUserId, at: now, reason } } },
      { new: true },
    ).lean())!;
    if (decision === 'approve') await applyTransfer(transfer, 'transfer-pending');
    else {
      const refused = await writeLocked([`unit:${transfer.unitId}`], () => Unit.findOneAndUpdate({ _id: transfer.unitId, status: 'transfer-pending' }, { $set: { status: 'registered', updatedAt: now } }, { new: false }).lean());
      if (refused) await tallyUnits([{ modelId: refused.modelId, transferPending: -1 }]);
    }
    await audit.record({ actorKind: 'user', actorId: staffUserId, action: decision === 'approve' ? 'transfer.approved' : 'transfer.refused', subjectKind: 'transfer', subjectId: id, detail: { unitId: transfer.unitId, reason } });
    return transfer;
  }

  // ----- timeline -----

  const readUnit = (id: string) => Unit.findById(id).lean();
  type LeanUnit = NonNullable<Awaited<ReturnType<typeof readUnit>>>;

  /** The unit's cases, open and closed, from the cases service's in-memory rows (no scan, no lookup per rule). */
  const linkedCases = (unitIdValue: string) => deps.cases.casesOfUnit(unitIdValue);

  function checkInRunEntry(run: { country: string; count: number; firstAt: Date; lastAt: Date; firstFirmware?: string | null; lastFirmware?: string | null }): TimelineEntry {
    const firmware = run.firstFirmware && run.lastFirmware && run.firstFirmware !== run.lastFirmware ? `v${run.firstFirmware}→v${run.lastFirmware}` : run.lastFirmware ? `v${run.lastFirmware}` : '';
    const span = day(run.firstAt) === day(run.lastAt) ? shortDay(run.firstAt) : `${shortDay(run.firstAt)}–${shortDay(run.lastAt)}`;
    return {
      at: run.firstAt,
      kind: 'check-ins',
      title: `${run.count} check-in${run.count === 1 ? '' : 's'} from ${run.country}`,
      detail: [firmware, span].filter(Boolean).join(', '),
      country: run.country,
    };
  }

  /**
   * The unit's destination timeline, oldest first, as plain data for any page (this module's,
   * the cases page) and the API. `audience: 'owner'` leaves out flags and cases: the
   * investigation is not the customer's to see.
   */
  async function timeline(unitIdValue: string, opts: { audience?: 'staff' | 'owner' } = {}) {
    const unit = await readUnit(unitIdValue);
    if (!unit) throw new NotFoundError('No such unit.');
    return timelineOf(unit, opts.audience ?? 'staff');
  }

  /**
   * The timeline as `viewer` may see it: staff everything, the owner their own unit without
   * flags or cases, anyone else "no such unit". One read of the unit for the check and the
   * timeline: the unit summary is the costliest document to read (FerretDB decodes every
   * stored field on each read; see `checkIns.runsJson` in models/catalogue.ts).
   */
  async function timelineFor(unitIdValue: string, viewer: Viewer) {
    const unit = await readUnit(unitIdValue);
    if (!unit || (!isStaff(viewer.role) && String(unit.ownerUserId) !== viewer.id)) throw new NotFoundError('No such unit.');
    return timelineOf(unit, isStaff(viewer.role) ? 'staff' : 'owner');
  }

  async function timelineOf(unit: LeanUnit, audience: 'staff' | 'owner') {
    const staff = audience !== 'owner';
    const [registrations, transfers, cases] = await Promise.all([
      Promise.all((unit.registrationIds ?? []).map((id) => Registration.findById(id).lean())),
      Promise.all((unit.transferIds ?? []).map((id) => Transfer.findById(id).lean())),
      staff ? linkedCases(unit._id) : Promise.resolve([]),
    ]);
    const flagIds = cases.flatMap((c) => c.sources.filter((s) => s.kind === 'flag').slice(-FLAGS_PER_CASE).map((s) => s.id));
    const raised = (await Promise.all(flagIds.map((id) => Flag.findById(id).lean()))).flatMap((f) => (f && f.unitId === unit._id ? [f] : []));

    const entries: TimelineEntry[] = [];
    const sale = unit.firstSale;
    if (sale?.soldAt || sale?.shipToCountry || sale?.channelPartner) {
      entries.push({ at: sale.soldAt ?? unit.createdAt, kind: 'first-sale', title: `First sale${sale.channelPartner ? ` through ${sale.channelPartner}` : ''}`, detail: sale.shipToCountry ? `Shipped to ${countryName(sale.shipToCountry)}` : '', country: sale.shipToCountry ?? null });
    }
    for (const r of registrations) {
      if (!r) continue;
      const place = [r.city, r.region, countryName(r.country)].filter(Boolean).join(', ');
      entries.push({ at: r.createdAt, kind: 'registration', title: `Registered by ${r.ownerOrganisation}${r.status === 'superseded' ? ' (later resold)' : ''}`, detail: `${place} · ${r.endUserType} · end-use terms v${r.termsAccepted?.version ?? '?'}`, country: r.country });
    }
    for (const t of transfers) {
      if (!t) continue;
      const what = t.kind === 'resale' ? `Resale to ${t.newOwner?.organisation || 'a new owner'}` : 'Relocation';
      const decided = t.decision?.reason ? ` · ${t.status === 'refused' ? 'refused' : 'approved'}: ${t.decision.reason}` : '';
      entries.push({ at: t.createdAt, kind: 'transfer', title: `${what} (${t.status})`, detail: `To ${countryName(t.newLocation?.country ?? '')}, effective ${day(t.effectiveDate)} · ${t.reason}${decided}`, country: t.newLocation?.country ?? null });
    }
    for (const run of unitRuns(unit.checkIns)) entries.push(checkInRunEntry(run));
    for (const f of raised) entries.push({ at: f.raisedAt, kind: 'flag', title: `Red flag: ${f.rule}`, detail: `raised by ${f.source?.kind ?? 'unknown'} ${f.source?.id ?? ''}${f.caseId ? ` · case ${f.caseId}` : ''}`, country: f.country ?? null });
    for (const c of cases) entries.push({ at: c.openedAt, kind: 'case', title: `Case ${c._id} opened`, detail: `${c.title} · ${c.status}`, country: null });
    entries.sort((a, b) => a.at.getTime() - b.at.getTime());

    return {
      unit: {
        id: unit._id,
        modelId: unit.modelId,
        serial: unit.serial,
        status: unit.status,
        registrationId: unit.registrationId ?? null,
        warranty: unit.controls?.warranty ?? 'valid',
        updates: unit.controls?.updates ?? 'allowed',
      },
      current: {
        country: unit.current?.country ?? sale?.shipToCountry ?? null,
        region: unit.current?.region ?? '',
        owner: unit.current?.owner ?? '',
        endUserType: unit.current?.endUserType ?? null,
        since: unit.current?.since ?? null,
        /** Known only from the first sale until someone registers the unit. */
        source: unit.current?.country ? 'registration' : sale?.shipToCountry ? 'first-sale' : 'unknown',
      },
      countries: (unit.countries ?? []).map((c) => ({ country: c.country, name: countryName(c.country), source: c.source, firstSeen: c.firstSeen, lastSeen: c.lastSeen })),
      entries,
    };
  }

  /** A customer's registrations, newest first, from their one lookup document. */
  async function listMine(userId: string, page: Page) {
    const index = await CustomerRegistrations.findById(userId).lean();
    const ids = [...(index?.registrationIds ?? [])].reverse();
    const items = (await Promise.all(ids.slice(page.skip, page.skip + page.limit).map((id) => Registration.findById(id).lean()))).filter((r) => r !== null);
    return { items, total: ids.length };
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
          return { registration, timeline: current ? await timeline(registration.unitId, { audience: 'owner' }) : null };
        }),
      );
      return { items: products, total };
    },

    /** What the registration form needs to show for a model: intended uses and current terms. */
    async formModel(modelSku: string) {
      const model = await ProductModel.findById(normaliseCode(modelSku)).lean();
      if (!model) return null;
      return { sku: model._id, name: model.publicName || model.name, intendedUses: model.intendedUses, terms: model.endUseTerms.at(-1) ?? null };
    },

    unitFor,
    requestTransfer,
    decideTransfer,

    async getTransfer(id: string, viewer: Viewer) {
      const transfer = await Transfer.findById(id).lean();
      if (!transfer || (!isStaff(viewer.role) && String(transfer.requestedByUserId) !== viewer.id)) throw new NotFoundError('No such transfer.');
      return transfer;
    },

    /** Pending transfers, oldest first (the staff queue). Transfers are a small collection. */
    async listPendingTransfers(page: Page) {
      const filter = { status: 'pending' };
      const [items, total] = await Promise.all([Transfer.find(filter).sort({ createdAt: 1 }).skip(page.skip).limit(page.limit).lean(), Transfer.countDocuments(filter)]);
      return { items, total };
    },

    /**
     * Marks a registration's warranty and the unit control that goes with it (a leverage
     * action of a case: void or limit the warranty).
     */
    async setWarranty(registrationId: string, warranty: Warranty, actor: { userId: string | null; caseId?: string }) {
      const registration = await writeLocked([`registration:${registrationId}`], () => Registration.findOneAndUpdate({ _id: registrationId }, { $set: { warranty } }, { new: true }).lean());
      if (!registration) throw new NotFoundError('No such registration.');
      // The unit control follows only while this registration is the unit's effective one.
      await writeLocked([`unit:${registration.unitId}`], () => Unit.updateOne({ _id: registration.unitId, registrationId }, { $set: { 'controls.warranty': warranty } }));
      await audit.record({ actorKind: actor.userId ? 'user' : 'system', actorId: actor.userId, action: 'registration.warranty-set', subjectKind: 'registration', subjectId: registrationId, detail: { warranty, unitId: registration.unitId, caseId: actor.caseId ?? null } });
      return registration;
    },

    timeline,
    timelineFor,
  };
}

export type RegistrationsService = ReturnType<typeof createRegistrationsService>;
export type UnitTimeline = Awaited<ReturnType<RegistrationsService['timeline']>>;
export type { UnitDoc };
