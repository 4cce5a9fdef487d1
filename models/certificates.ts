import mongoose, { Schema } from 'mongoose';

/**
 * End-use and end-user certificates (EUC): the document in which an end user states the end
 * use and undertakes not to re-export, with its number, validity and the models and quantities
 * it covers; attached to the registrations and transfers it covers. `UnitCertificates` lists a
 * unit's certificates under the unit's id, so the timeline reads them by `_id`.
 */

const fileSchema = new Schema({ fileId: String, sha256: String, mediaType: String, size: Number, originalName: String }, { _id: false });

const certificateSchema = new Schema(
  {
    _id: { type: String, required: true }, // `euc_…`
    issuingAuthority: { type: String, required: true, trim: true, maxlength: 200 },
    number: { type: String, required: true, trim: true, maxlength: 100 },
    endUser: { type: String, required: true, trim: true, maxlength: 200 },
    statedEndUse: { type: String, required: true, trim: true, maxlength: 2000 },
    validFrom: { type: Date, required: true },
    validUntil: { type: Date, required: true },
    items: { type: [new Schema({ modelId: { type: String, required: true }, quantity: { type: Number, required: true, min: 1 } }, { _id: false })], default: [] },
    /** The registrations and transfers it is attached to, each with its unit and model. */
    attachments: {
      type: [new Schema({ kind: { type: String, enum: ['registration', 'transfer', 'sale'], required: true }, id: { type: String, required: true }, unitId: { type: String, required: true }, modelId: { type: String, required: true }, country: { type: String, default: null } }, { _id: false })],
      default: [],
    },
    file: { type: fileSchema, required: true },
    /** Set once its expiry has raised the `certificate-expired` flags. */
    expiryFlaggedAt: { type: Date, default: null },
    createdAt: { type: Date, required: true },
    createdByUserId: { type: String, required: true },
  },
  { versionKey: false },
);
// The expiry sweep and "expiring within 30 days"; a certificate's number per authority.
certificateSchema.index({ validUntil: 1 });
certificateSchema.index({ issuingAuthority: 1, number: 1 });
export const EndUseCertificate = mongoose.model('EndUseCertificate', certificateSchema);

const unitCertificatesSchema = new Schema(
  {
    _id: { type: String, required: true }, // the unit id
    certificateIds: { type: [String], default: [] },
  },
  { versionKey: false },
);
export const UnitCertificates = mongoose.model('UnitCertificates', unitCertificatesSchema);
