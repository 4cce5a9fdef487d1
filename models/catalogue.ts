import mongoose, { Schema } from 'mongoose';

/**
 * Catalogue: product models and their units.
 *
 * Access paths (FerretDB v1 pushes down only `_id` equality, see README "Database"):
 *  - a product model by `_id` = its normalised SKU;
 *  - a unit by `_id` = `unitId(sku, serial)`, i.e. `SKU:SERIAL`;
 *  - a bare serial (from a report or a check-in without model) through `SerialIndex`,
 *    `_id` = normalised serial → the unit ids carrying it.
 * The unit document also carries the per-unit summary (owner, location, country history,
 * check-in runs, controls) that pages read, updated atomically by `_id` on each write.
 */

export const RISK_LEVELS = ['low', 'elevated', 'high'] as const;
export type RiskLevel = (typeof RISK_LEVELS)[number];

export const CAPABILITIES = ['surveillance-capable', 'dual-use', 'export-controlled', 'lawful-intercept', 'encryption', 'uav'] as const;

/** Trimmed, upper-cased, inner whitespace removed: how SKUs and serials are compared. */
export const normaliseCode = (s: string) => s.trim().toUpperCase().replace(/\s+/g, '');
export const unitId = (sku: string, serial: string) => `${normaliseCode(sku)}:${normaliseCode(serial)}`;

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
    unitCount: { type: Number, default: 0 },
    createdAt: { type: Date, required: true },
    updatedAt: { type: Date, required: true },
  },
  { versionKey: false },
);

export const ProductModel = mongoose.model('ProductModel', productModelSchema);

const countryVisitSchema = new Schema(
  {
    country: { type: String, required: true }, // ISO 3166-1 alpha-2
    source: { type: String, enum: ['first-sale', 'registration', 'transfer', 'check-in'], required: true },
    firstSeen: { type: Date, required: true },
    lastSeen: { type: Date, required: true },
  },
  { _id: false },
);

/** Consecutive check-ins from one country, collapsed: "42 check-ins from KE, v2.1→v2.3, 3 Jan–9 Mar". */
export interface CheckInRun {
  country: string;
  count: number;
  firstAt: Date;
  lastAt: Date;
  firstFirmware: string;
  lastFirmware: string;
}

/** How a unit's runs are stored (`checkIns.runsJson`): one string, see the schema. */
export const storedRuns = (runs: readonly CheckInRun[]): string => JSON.stringify(runs);

/**
 * A unit's runs, most recent last, from `checkIns.runsJson`, or from the `checkIns.runs` array
 * of a unit not folded since runs moved to a string (the next fold rewrites it).
 */
export function unitRuns(checkIns: { runsJson?: string | null; runs?: readonly CheckInRun[] | null } | null | undefined): CheckInRun[] {
  if (typeof checkIns?.runsJson === 'string') {
    return (JSON.parse(checkIns.runsJson) as Array<CheckInRun & { firstAt: string; lastAt: string }>).map((r) => ({ ...r, firstAt: new Date(r.firstAt), lastAt: new Date(r.lastAt) }));
  }
  return [...(checkIns?.runs ?? [])];
}

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
    _id: { type: String, required: true }, // unitId(sku, serial)
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
       * The runs, most recent last (older runs beyond the cap are dropped; the log keeps them),
       * as one JSON string, read and written through `unitRuns` and `storedRuns`. FerretDB v1
       * decodes every stored field of a document on each read, whatever the projection: as an
       * array of sub-documents, the 41 runs of the bench's heaviest unit made each `_id` read of
       * it cost 9–12 ms against 2–5 ms for a typical unit, even projecting `_id` alone; as one
       * string, 2.7–4.7 ms (issue 7).
       */
      runsJson: { type: String },
      /** The runs as they were stored before runsJson: read as a fallback, removed by the unit's next fold. */
      runs: { type: [checkInRunSchema], default: undefined },
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
// For MongoDB deployments; FerretDB v1 scans regardless (see README).
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

export const IMPORT_STATUSES = ['running', 'done', 'failed'] as const;
/** Row errors kept on the job for display; further ones are only counted. */
export const IMPORT_ERRORS_KEPT = 500;

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
