import mongoose, { Schema } from 'mongoose';
import { END_USER_TYPES, TRANSFER_KINDS, TRANSFER_STATUSES } from '../server/domain/registrations';

/**
 * Warranty registrations (who owns a unit, where, for what use, under which end-use terms)
 * and transfers (resale or relocation). Ids are random strings (`reg_…`, `trf_…`) so pages can
 * look them up by `_id`; a unit's effective registration is on the unit summary.
 */

export { END_USER_TYPES, HIGH_RISK_END_USER_TYPES, TRANSFER_KINDS, TRANSFER_STATUSES, type EndUserType } from '../server/domain/registrations';

const registrationSchema = new Schema(
  {
    _id: { type: String, required: true },
    unitId: { type: String, required: true, ref: 'Unit' },
    modelId: { type: String, required: true },
    serial: { type: String, required: true },
    customerUserId: { type: Schema.Types.ObjectId, ref: 'User', required: true },
    ownerOrganisation: { type: String, required: true, trim: true, maxlength: 200 },
    contact: {
      name: { type: String, required: true, trim: true, maxlength: 120 },
      email: { type: String, required: true, trim: true, lowercase: true, maxlength: 254 },
      phone: { type: String, trim: true, maxlength: 40, default: '' },
    },
    country: { type: String, required: true, match: /^[A-Z]{2}$/ },
    region: { type: String, trim: true, maxlength: 120, default: '' },
    city: { type: String, trim: true, maxlength: 120, default: '' },
    endUserType: { type: String, enum: END_USER_TYPES, required: true },
    /** One of the model's intended uses, or 'other' (then `declaredEndUse` says what). */
    intendedUse: { type: String, required: true, trim: true, maxlength: 200 },
    declaredEndUse: { type: String, required: true, trim: true, maxlength: 2000 },
    purchaseDate: { type: Date, required: true },
    seller: { type: String, trim: true, maxlength: 200, default: '' },
    termsAccepted: {
      version: { type: Number, required: true },
      acceptedAt: { type: Date, required: true },
    },
    proofOfPurchase: {
      type: new Schema(
        { fileId: String, sha256: String, mediaType: String, size: Number, originalName: String },
        { _id: false },
      ),
      default: null,
    },
    /** active: the unit's current owner; superseded: an effective transfer replaced it. */
    status: { type: String, enum: ['active', 'superseded'], default: 'active' },
    warranty: { type: String, enum: ['valid', 'limited', 'void'], default: 'valid' },
    createdAt: { type: Date, required: true },
  },
  { versionKey: false },
);
registrationSchema.index({ customerUserId: 1, createdAt: -1 });
registrationSchema.index({ unitId: 1 });
registrationSchema.index({ country: 1, modelId: 1 });

export const Registration = mongoose.model('Registration', registrationSchema);
export type RegistrationDoc = InstanceType<typeof Registration>;

const transferSchema = new Schema(
  {
    _id: { type: String, required: true },
    unitId: { type: String, required: true, ref: 'Unit' },
    registrationId: { type: String, required: true, ref: 'Registration' },
    requestedByUserId: { type: Schema.Types.ObjectId, ref: 'User', required: true },
    kind: { type: String, enum: TRANSFER_KINDS, required: true },
    newOwner: {
      organisation: { type: String, trim: true, maxlength: 200, default: '' },
      contactName: { type: String, trim: true, maxlength: 120, default: '' },
      contactEmail: { type: String, trim: true, lowercase: true, maxlength: 254, default: '' },
      endUserType: { type: String, enum: [...END_USER_TYPES, null], default: null },
    },
    newLocation: {
      country: { type: String, required: true, match: /^[A-Z]{2}$/ },
      region: { type: String, trim: true, maxlength: 120, default: '' },
      city: { type: String, trim: true, maxlength: 120, default: '' },
    },
    reason: { type: String, required: true, trim: true, maxlength: 2000 },
    effectiveDate: { type: Date, required: true },
    status: { type: String, enum: TRANSFER_STATUSES, required: true },
    decision: {
      type: new Schema({ byUserId: Schema.Types.ObjectId, at: Date, reason: String }, { _id: false }),
      default: null,
    },
    createdAt: { type: Date, required: true },
  },
  { versionKey: false },
);
transferSchema.index({ status: 1, createdAt: 1 });
transferSchema.index({ unitId: 1 });

export const Transfer = mongoose.model('Transfer', transferSchema);
export type TransferDoc = InstanceType<typeof Transfer>;

/**
 * A customer's registrations, newest last, keyed by the user id: "my products" and
 * `GET /registrations` read one document by `_id` instead of scanning registrations.
 */
const customerRegistrationsSchema = new Schema(
  {
    _id: { type: String, required: true }, // the customer's user id
    registrationIds: { type: [String], default: [] },
  },
  { versionKey: false },
);
export const CustomerRegistrations = mongoose.model('CustomerRegistrations', customerRegistrationsSchema);

/**
 * Active registrations by product model and country, keyed `<modelId>|<country>`, newest last:
 * what a misuse report naming a model and a country is linked to. One `_id` read per model and
 * country, on every engine, instead of a query over every registration (which the embedded
 * engine answers by scanning all of them, so the report path's cost grew with the catalogue).
 * Bounded: only the newest `REGISTRATION_PLACE_MAX` are kept, more than a report is linked to.
 */
const registrationPlaceSchema = new Schema(
  {
    _id: { type: String, required: true },
    registrations: { type: [new Schema({ _id: { type: String, required: true }, unitId: { type: String, required: true } }, { _id: false })], default: [] },
  },
  { versionKey: false },
);
export const RegistrationPlace = mongoose.model('RegistrationPlace', registrationPlaceSchema);

/**
 * Unique keys that decide races where one decision spans several documents: a duplicate `_id`
 * insert is refused on every engine, so whoever inserts the key first wins:
 *  - `registration:<unitId>|<n>`: the unit's n-th registration (n = registrations so far);
 *  - `transfer:<unitId>|<n>`: the unit's n-th transfer;
 */
const claimKeySchema = new Schema(
  {
    _id: { type: String, required: true },
    ref: { type: String, required: true }, // the registration, transfer or deciding user it went to
    at: { type: Date, required: true },
  },
  { versionKey: false },
);
export const ClaimKey = mongoose.model('ClaimKey', claimKeySchema);
