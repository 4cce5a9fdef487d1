import { EndUseCertificate, UnitCertificates } from '../../models/certificates';
import { existingByIds } from './by-ids';
import type { Engine } from './engine';
import { isDuplicateKey } from './engine';

/**
 * End-use certificates and each unit's list of them (`UnitCertificates`, read by `_id`).
 * Certificates are a small collection (one per export licence or high-risk sale), so the
 * expiry sweep and the "expiring soon" list filter it; MongoDB answers both from `validUntil`.
 */

export interface Attachment {
  kind: 'registration' | 'transfer' | 'sale';
  id: string;
  unitId: string;
  modelId: string;
  country: string | null;
}

export interface CertificateDoc {
  _id: string;
  issuingAuthority: string;
  number: string;
  endUser: string;
  statedEndUse: string;
  validFrom: Date;
  validUntil: Date;
  items: Array<{ modelId: string; quantity: number }>;
  attachments: Attachment[];
  file: { fileId: string; sha256: string; mediaType: string; size: number; originalName: string };
  expiryFlaggedAt: Date | null;
  createdAt: Date;
  createdByUserId: string;
}

export function createCertificatesStore(engine: Engine) {
  async function addToUnit(unitId: string, certificateId: string) {
    const add = () => UnitCertificates.updateOne({ _id: unitId }, { $addToSet: { certificateIds: certificateId } }, { upsert: true });
    // Two first certificates of one unit may both create its list: the loser's retry is an update.
    await add().catch((err: unknown) => {
      if (!isDuplicateKey(err)) throw err;
      return add();
    });
  }

  return {
    async insertCertificate(doc: Omit<CertificateDoc, 'expiryFlaggedAt'>) {
      await EndUseCertificate.create({ ...doc, expiryFlaggedAt: null });
      for (const a of doc.attachments) await addToUnit(a.unitId, doc._id);
    },

    certificateById: async (id: string) => (await EndUseCertificate.findById(id).lean()) as CertificateDoc | null,

    /** Attaches once (a repeat adds nothing); the certificate as it now is, or null when unknown. */
    async attach(id: string, attachment: Attachment): Promise<CertificateDoc | null> {
      const updated = (await EndUseCertificate.findOneAndUpdate({ _id: id, 'attachments.id': { $ne: attachment.id } }, { $push: { attachments: attachment } }, { new: true }).lean()) as CertificateDoc | null;
      if (updated) await addToUnit(attachment.unitId, id);
      return updated ?? ((await EndUseCertificate.findById(id).lean()) as CertificateDoc | null);
    },

    async certificatesOfUnit(unitId: string): Promise<CertificateDoc[]> {
      const ids = (await UnitCertificates.findById(unitId).lean())?.certificateIds ?? [];
      return existingByIds<CertificateDoc>(engine, EndUseCertificate as never, ids);
    },

    /** Certificates past their validity whose expiry has not raised its flags yet. */
    expiredUnflagged: async (now: Date) => (await EndUseCertificate.find({ validUntil: { $lt: now }, expiryFlaggedAt: null }).limit(500).lean()) as CertificateDoc[],

    /** Marks an expiry as flagged, once: false when another instance did it first. */
    markExpiryFlagged: async (id: string, at: Date) => (await EndUseCertificate.updateOne({ _id: id, expiryFlaggedAt: null }, { $set: { expiryFlaggedAt: at } })).modifiedCount === 1,

    /** Certificates whose validity ends in [from, to), soonest first. */
    async expiringBetween(from: Date, to: Date, page: { skip: number; limit: number }) {
      const filter = { validUntil: { $gte: from, $lt: to } };
      const [items, total] = await Promise.all([EndUseCertificate.find(filter).sort({ validUntil: 1, _id: 1 }).skip(page.skip).limit(page.limit).lean(), EndUseCertificate.countDocuments(filter)]);
      return { items: items as CertificateDoc[], total };
    },

    /** Every certificate, newest first (the compliance list). */
    async certificates(page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([EndUseCertificate.find({}).sort({ createdAt: -1, _id: 1 }).skip(page.skip).limit(page.limit).lean(), EndUseCertificate.estimatedDocumentCount()]);
      return { items: items as CertificateDoc[], total };
    },
  };
}

export type CertificatesStore = ReturnType<typeof createCertificatesStore>;
