import mongoose, { Schema } from 'mongoose';
import { CAPABILITIES, IMPORT_STATUSES, RISK_LEVELS } from '../server/domain/catalogue';

/**
 * Catalogue: product models and their units.
 *
 * Access paths (the embedded engine pushes down only `_id` equality, see README "Database"):
 *  - a product model by `_id` = its normalised SKU;
 *  - a unit by `_id` = `unitId(sku, serial)`, i.e. `SKU:SERIAL`;
 *  - a bare serial (from a report or a check-in without model) through `SerialIndex`,
 *    `_id` = normalised serial → the unit ids carrying it.
 * The unit document also carries the per-unit summary (owner, location, country history,
 * check-in summary, controls) that pages read, updated atomically by `_id` on each write; its
 * check-in history lives in yearly buckets (UnitCheckInHistory).
 */

export { CAPABILITIES, IMPORT_ERRORS_KEPT, IMPORT_STATUSES, RISK_LEVELS, type CheckInRun, type RiskLevel } from '../server/domain/catalogue';

const endUseTermsSchema = new Schema(
  {
    version: { type: Number, required: true, min: 1 },
    text: { type: String, required: true, maxlength: 20_000 },
    publishedAt: { type: Date, required: true },
  },
  { _id: false },
);

const productModelSchema = new Schema(
  {
    _id: { type: String, required: true }, // normalised SKU
    sku: { type: String, required: true, maxlength: 64 }, // as the admin typed it
    name: { type: String, required: true, trim: true, maxlength: 200 },
    category: { type: String, required: true, trim: true, maxlength: 100 },
    riskLevel: { type: String, enum: RISK_LEVELS, required: true },
    capabilities: { type: [String], enum: CAPABILITIES, default: [] },
    intendedUses: { type: [String], default: [] },
    /** Every version ever published; the last one is current. Registrations keep the version they accepted. */
    endUseTerms: { type: [endUseTermsSchema], default: [] },
    /** Shown in the public report form's model picker. */
    publicName: { type: String, trim: true, maxlength: 200 },
    /** GTIN-14 of the model's trade item (EPCIS SGTINs and GS1 Digital Links name units by it); `ModelGtin` keeps it unique. */
    gtin: { type: String, default: null },
    unitCount: { type: Number, default: 0 },
    createdAt: { type: Date, required: true },
    updatedAt: { type: Date, required: true },
  },
  { versionKey: false },
);

export const ProductModel = mongoose.model('ProductModel', productModelSchema);

/** GTIN-14 → the model carrying it: its `_id` makes a GTIN name one model on every engine. */
const modelGtinSchema = new Schema(
  {
    _id: { type: String, required: true }, // GTIN-14
    modelId: { type: String, required: true },
  },
  { versionKey: false },
);
export const ModelGtin = mongoose.model('ModelGtin', modelGtinSchema, 'modelGtins');

const countryVisitSchema = new Schema(
  {
    country: { type: String, required: true }, // ISO 3166-1 alpha-2
    source: { type: String, enum: ['first-sale', 'registration', 'transfer', 'check-in'], required: true },
    firstSeen: { type: Date, required: true },
    lastSeen: { type: Date, required: true },
  },
  { _id: false },
);

const checkInRunSchema = new Schema(
  {
    country: { type: String, required: true },
    count: { type: Number, required: true },
    firstAt: { type: Date, required: true },
    lastAt: { type: Date, required: true },
    firstFirmware: { type: String, default: '' },
    lastFirmware: { type: String, default: '' },
  },
  { _id: false },
);

const unitSchema = new Schema(
  {
    _id: { type: String, required: true }, // `SKU:SERIAL`, both normalised
    modelId: { type: String, required: true, ref: 'ProductModel' },
    serial: { type: String, required: true, maxlength: 64 }, // normalised
    manufacturedAt: { type: Date, default: null },
    firstSale: {
      channelPartner: { type: String, trim: true, maxlength: 200, default: '' },
      shipToCountry: { type: String, default: null },
      soldAt: { type: Date, default: null },
    },
    createdAt: { type: Date, required: true },
    updatedAt: { type: Date, default: null },

    // ----- summary, maintained by the registrations and check-ins services -----
    status: { type: String, enum: ['unregistered', 'registered', 'transfer-pending'], default: 'unregistered' },
    /** The effective registration (owner) of the unit, if any. */
    registrationId: { type: String, default: null },
    ownerUserId: { type: Schema.Types.ObjectId, ref: 'User', default: null },
    current: {
      country: { type: String, default: null },
      region: { type: String, default: '' },
      owner: { type: String, default: '' },
      endUserType: { type: String, default: null },
      since: { type: Date, default: null },
    },
    countries: { type: [countryVisitSchema], default: [] },
    /** Every registration and transfer of the unit, oldest first: the timeline reads them by `_id`. */
    registrationIds: { type: [String], default: [] },
    transferIds: { type: [String], default: [] },
    checkIns: {
      count: { type: Number, default: 0 },
      lastAt: { type: Date, default: null },
      lastCountry: { type: String, default: null },
      lastFirmware: { type: String, default: null },
      /**
       * Every country it checked in from (ISO codes, in code order): the partners' footprints
       * count a unit in each. Units folded before this list existed start it at their last country.
       */
      countries: { type: [String], default: undefined },
      /** The unit's current run (its last one): the red-flag rules continue it on the next fold. */
      lastRun: { type: checkInRunSchema, default: null },
      /** The periods (`YYYY-MM`) with a history bucket (UnitCheckInHistory), oldest first. */
      periods: { type: [String], default: [] },
      /** The latest ingest batches folded in (see CheckInBatch): a batch folded again after a crash is skipped. */
      batchIds: { type: [String], default: [] },
    },
    /** Unit controls set by leverage actions: what a check-in is answered. */
    controls: {
      updates: { type: String, enum: ['allowed', 'withheld'], default: 'allowed' },
      withheldByCaseIds: { type: [String], default: [] },
      warranty: { type: String, enum: ['valid', 'limited', 'void'], default: 'valid' },
    },
  },
  { versionKey: false },
);
// For MongoDB deployments; the embedded engine scans regardless (see README). A bare serial is found
// through SerialIndex on both engines (CONTRIBUTING.md, "Stored shape").
unitSchema.index({ modelId: 1, serial: 1 }, { unique: true });
unitSchema.index({ ownerUserId: 1 });
unitSchema.index({ 'current.country': 1 });

export const Unit = mongoose.model('Unit', unitSchema);
export type UnitDoc = InstanceType<typeof Unit>;

/** Bare serial → the units carrying it (serials are unique per model, not globally). */
const serialIndexSchema = new Schema(
  {
    _id: { type: String, required: true }, // normalised serial
    unitIds: { type: [String], default: [] },
  },
  { versionKey: false },
);
export const SerialIndex = mongoose.model('SerialIndex', serialIndexSchema);

/**
 * A unit's check-in history, bucketed per calendar year (UTC): `_id` = `<unitId>:<YYYY>`,
 * holding that month's runs (consecutive check-ins from one country), most recent last. A run
 * that goes on into the next month continues in that month's bucket; readers join the two.
 * The timeline reads the unit's buckets by `_id`; the summariser updates one bucket with one
 * guarded write (its `count`), and the batches it holds make a repeated fold add nothing.
 */
const unitCheckInHistorySchema = new Schema(
  {
    _id: { type: String, required: true },
    unitId: { type: String, required: true },
    period: { type: String, required: true }, // YYYY-MM
    count: { type: Number, default: 0 },
    runs: { type: [checkInRunSchema], default: [] },
    /** The latest ingest batches folded into this bucket. */
    batchIds: { type: [String], default: [] },
  },
  { versionKey: false },
);
unitCheckInHistorySchema.index({ unitId: 1, period: 1 });

export const UnitCheckInHistory = mongoose.model('UnitCheckInHistory', unitCheckInHistorySchema, 'unitCheckInHistory');

/**
 * One bulk CSV import of units, updated after every batch so its page can show progress.
 * `rowErrors` holds the first rows that were refused, each with its line number in the file.
 */
const importJobSchema = new Schema(
  {
    _id: { type: String, required: true }, // imp_…
    fileName: { type: String, default: '' },
    status: { type: String, enum: IMPORT_STATUSES, required: true },
    createdByUserId: { type: Schema.Types.ObjectId, ref: 'User', default: null },
    counts: {
      rows: { type: Number, default: 0 },
      imported: { type: Number, default: 0 },
      skipped: { type: Number, default: 0 },
      rejected: { type: Number, default: 0 },
    },
    rowErrors: {
      type: [new Schema({ line: Number, field: String, message: String }, { _id: false })],
      default: [],
    },
    /** Why the whole file stopped (unreadable CSV, missing columns); rows before it stay imported. */
    failure: { type: String, default: null },
    startedAt: { type: Date, required: true },
    finishedAt: { type: Date, default: null },
  },
  { versionKey: false },
);
importJobSchema.index({ startedAt: -1 });

export const ImportJob = mongoose.model('ImportJob', importJobSchema);
export type ImportJobDoc = InstanceType<typeof ImportJob>;
