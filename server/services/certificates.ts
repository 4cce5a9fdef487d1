import crypto from 'node:crypto';
import type { Clock } from '../clock';
import type { Config } from '../config';
import type { RiskLevel } from '../domain/catalogue';
import type { EndUserType } from '../domain/registrations';
import { NotFoundError, ValidationError } from '../errors';
import type { Page } from '../middleware/validate';
import type { CatalogueStore } from '../store/catalogue';
import type { Attachment, CertificateDoc, CertificatesStore } from '../store/certificates';
import type { PartnersStore } from '../store/partners';
import type { RegistrationsStore } from '../store/registrations';
import type { AuditService } from './audit';
import type { FilesService, IncomingFile } from './files';
import type { FlagHit, FlagsService } from './flags';

/**
 * End-use and end-user certificates: uploaded as a PDF with the same checks as evidence,
 * attached to the registrations, transfers and partner sales they cover, and three red flags:
 * - `certificate-missing`: a registration whose model's risk level or end-user type requires a
 *   certificate (CERTIFICATE_REQUIRED_*), raised when it takes effect (the registrations
 *   module asks `rules.missing`);
 * - `certificate-expired`: raised for every unit a certificate covers once its validity ends
 *   (the hourly sweep, on the injected clock);
 * - `certificate-over-quantity`: a certificate attached to more units of a model than it covers.
 */

/** What a person states about a certificate: the stored record less its files and bookkeeping. */
export type CertificateInput = Pick<CertificateDoc, 'issuingAuthority' | 'number' | 'endUser' | 'statedEndUse' | 'validFrom' | 'validUntil' | 'items'>;

/** A sale is a partner's sell-through sale, by its key. */
export type CertifiedSubject = { kind: 'registration' | 'transfer' | 'sale'; id: string };

export const rules = {
  /** Whether a registration needs a certificate: its model's risk level, or its end-user type. */
  required(requirement: Config['certificates'], riskLevel: RiskLevel, endUserType: EndUserType | null | undefined): boolean {
    return requirement.requiredRiskLevels.includes(riskLevel) || (!!endUserType && requirement.requiredEndUserTypes.includes(endUserType));
  },

  missing(requirement: Config['certificates'], riskLevel: RiskLevel, endUserType: EndUserType | null | undefined, certificates: number): FlagHit | null {
    if (certificates > 0 || !rules.required(requirement, riskLevel, endUserType)) return null;
    return { rule: 'certificate-missing', evidence: { riskLevel, endUserType: endUserType ?? null, requiredRiskLevels: requirement.requiredRiskLevels, requiredEndUserTypes: requirement.requiredEndUserTypes } };
  },

  /** More attachments of `modelId` than the certificate covers (a model it does not list covers none). */
  overQuantity(certificate: Pick<CertificateDoc, '_id' | 'number' | 'items' | 'attachments'>, modelId: string): FlagHit | null {
    const covered = certificate.items.filter((i) => i.modelId === modelId).reduce((n, i) => n + i.quantity, 0);
    const attached = certificate.attachments.filter((a) => a.modelId === modelId).length;
    if (attached <= covered) return null;
    return { rule: 'certificate-over-quantity', evidence: { certificateId: certificate._id, number: certificate.number, modelId, covered, attached } };
  },

  expired(certificate: Pick<CertificateDoc, '_id' | 'number' | 'validUntil'>, now: Date): FlagHit | null {
    if (certificate.validUntil.getTime() > now.getTime()) return null;
    return { rule: 'certificate-expired', evidence: { certificateId: certificate._id, number: certificate.number, validUntil: certificate.validUntil.toISOString().slice(0, 10) } };
  },
};

const DAY_MS = 86_400_000;
/** "Expiring soon" on the dashboard and the certificates page. */
export const EXPIRING_WITHIN_DAYS = 30;

export function createCertificatesService(deps: {
  config: Config;
  clock: Clock;
  audit: AuditService;
  files: FilesService;
  flags: Pick<FlagsService, 'raise'>;
  stores: { certificates: CertificatesStore; registrations: Pick<RegistrationsStore, 'registrationById' | 'transferById'>; catalogue: Pick<CatalogueStore, 'unitById'>; partners: Pick<PartnersStore, 'saleByKey'> };
}) {
  const { config, clock, audit, files, flags } = deps;
  const store = deps.stores.certificates;

  /** What a certificate attached to this record covers: its unit, model and country. */
  async function attachmentOf(subject: CertifiedSubject): Promise<Attachment> {
    if (subject.kind === 'registration') {
      const r = await deps.stores.registrations.registrationById(subject.id);
      if (!r) throw new ValidationError({ registrationId: 'No such registration.' });
      return { kind: 'registration', id: r._id, unitId: r.unitId, modelId: r.modelId, country: r.country };
    }
    if (subject.kind === 'sale') {
      const sale = await deps.stores.partners.saleByKey(subject.id);
      const unit = sale ? await deps.stores.catalogue.unitById(sale.unitId) : null;
      if (!sale || !unit) throw new ValidationError({ saleId: 'No such sale.' });
      return { kind: 'sale', id: sale._id, unitId: sale.unitId, modelId: unit.modelId, country: sale.country };
    }
    const t = await deps.stores.registrations.transferById(subject.id);
    const unit = t ? await deps.stores.catalogue.unitById(t.unitId) : null;
    if (!t || !unit) throw new ValidationError({ transferId: 'No such transfer.' });
    return { kind: 'transfer', id: t._id, unitId: t.unitId, modelId: unit.modelId, country: t.newLocation?.country ?? null };
  }

  const flagSubject = (a: Attachment) => ({ unitId: a.unitId, modelId: a.modelId, country: a.country });
  /** Derived ids keep each flag once per certificate and record, whoever raises it again. */
  const flagId = (rule: string, certificateId: string, recordId: string) => `flg_${crypto.createHash('sha256').update(`${rule}|${certificateId}|${recordId}`).digest('hex').slice(0, 20)}`;

  async function checkQuantity(certificate: CertificateDoc, attachment: Attachment) {
    const hit = rules.overQuantity(certificate, attachment.modelId);
    if (hit) await flags.raise(hit, flagSubject(attachment), { kind: attachment.kind, id: attachment.id }, { id: flagId(hit.rule, certificate._id, attachment.id) });
    return hit ? [hit.rule] : [];
  }

  function checkInput(input: CertificateInput) {
    const errors: Record<string, string> = {};
    if (input.validUntil.getTime() <= input.validFrom.getTime()) errors.validUntil = 'The certificate must be valid until a date after it starts.';
    if (!input.items.length) errors.items = 'Name at least one covered model and its quantity.';
    if (Object.keys(errors).length) throw new ValidationError(errors);
  }

  return {
    rules,

    /** Stores a certificate (a PDF, checked and cleaned like evidence) attached to one record. */
    async upload(input: CertificateInput, file: IncomingFile | undefined, subject: CertifiedSubject, byUserId: string) {
      checkInput(input);
      const attachment = await attachmentOf(subject);
      if (!file) throw new ValidationError({ certificate: 'Attach the certificate as a PDF.' });
      const stored = await files.store(file, 'certificate');
      if (stored.mediaType !== 'application/pdf') {
        await files.remove(stored.fileId);
        throw new ValidationError({ certificate: 'The certificate must be a PDF.' });
      }
      const certificate: CertificateDoc = { _id: `euc_${crypto.randomBytes(10).toString('hex')}`, ...input, attachments: [attachment], file: stored, expiryFlaggedAt: null, createdAt: clock.now(), createdByUserId: byUserId };
      await store.insertCertificate(certificate);
      await audit.record({ actorKind: 'user', actorId: byUserId, action: 'certificate.uploaded', subjectKind: 'certificate', subjectId: certificate._id, detail: { number: input.number, issuingAuthority: input.issuingAuthority, validUntil: input.validUntil.toISOString().slice(0, 10), attachedTo: subject } });
      return { certificate, flags: await checkQuantity(certificate, attachment) };
    },

    /** Attaches a stored certificate to another record it covers. */
    async attach(certificateId: string, subject: CertifiedSubject, byUserId: string) {
      const attachment = await attachmentOf(subject);
      const certificate = await store.attach(certificateId, attachment);
      if (!certificate) throw new NotFoundError('No such certificate.');
      await audit.record({ actorKind: 'user', actorId: byUserId, action: 'certificate.attached', subjectKind: 'certificate', subjectId: certificateId, detail: { attachedTo: subject } });
      return { certificate, flags: await checkQuantity(certificate, attachment) };
    },

    async getCertificate(id: string) {
      const certificate = await store.certificateById(id);
      if (!certificate) throw new NotFoundError('No such certificate.');
      return certificate;
    },

    ofUnit: (unitId: string) => store.certificatesOfUnit(unitId),

    list: (page: Page) => store.certificates(page),

    /** Certificates whose validity ends within `days` from now, soonest first. */
    expiringSoon(page: Page, days = EXPIRING_WITHIN_DAYS) {
      const now = clock.now();
      return store.expiringBetween(now, new Date(now.getTime() + days * DAY_MS), page);
    },

    /**
     * Raises `certificate-expired` for every record an expired certificate covers, then marks
     * it done. The flag ids are derived, so a sweep cut off half-way raises nothing twice.
     */
    async sweepExpired() {
      const now = clock.now();
      let raised = 0;
      for (const certificate of await store.expiredUnflagged(now)) {
        const hit = rules.expired(certificate, now)!;
        for (const a of certificate.attachments) {
          await flags.raise(hit, flagSubject(a), { kind: a.kind, id: a.id }, { id: flagId(hit.rule, certificate._id, a.id) });
          raised++;
        }
        await store.markExpiryFlagged(certificate._id, now);
      }
      return { raised };
    },

    requirement: config.certificates,
  };
}

export type CertificatesService = ReturnType<typeof createCertificatesService>;
