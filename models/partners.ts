import mongoose, { Schema } from 'mongoose';
import { END_USER_TYPES } from '../server/domain/registrations';
import { RISK_LEVELS } from '../server/domain/catalogue';
import { ALLOCATION_SOURCES, CLAUSE_KINDS, DD_ANSWERS, MATURITY_LEVELS, PARTNER_TYPES, QUESTIONNAIRE_STATUSES, REVIEW_CRITERIA, REVIEW_STATUSES } from '../server/domain/partners';

/**
 * Channel partners and what flows through them.
 *
 * Access paths (the embedded engine pushes down only `_id` equality, see README "Database"):
 *  - partners, their members and sale reviews are small collections (hundreds to thousands):
 *    a scan is fine;
 *  - a unit's channel record by `_id` = the unit's id (`SKU:SERIAL`): who holds it, and the
 *    sales reported for it. It grows with the units, so it is read by `_id` only;
 *  - a partner's units through its allocations: the partner lists its allocation ids, each
 *    allocation holds a batch of unit ids (one import batch or one pass-on).
 */

const clauseSchema = new Schema(
  {
    kind: { type: String, enum: CLAUSE_KINDS, required: true },
    since: { type: Date, required: true },
    until: { type: Date, default: null },
  },
  { _id: false },
);

/**
 * A partner's due-diligence questionnaire: the questions as they stood in the version it
 * answered (copied, so a later version changes no answer already given), its answers and
 * compliance's review.
 */
const questionnaireSchema = new Schema(
  {
    version: { type: Number, required: true },
    questions: { type: [new Schema({ id: { type: String, required: true }, text: { type: String, required: true } }, { _id: false })], default: [] },
    answers: {
      type: [new Schema({ questionId: { type: String, required: true }, answer: { type: String, enum: DD_ANSWERS, required: true }, comment: { type: String, default: '', maxlength: 2000 } }, { _id: false })],
      default: [],
    },
    status: { type: String, enum: QUESTIONNAIRE_STATUSES, required: true },
    submittedAt: { type: Date, required: true },
    submittedByUserId: { type: String, default: null },
    reviewedAt: { type: Date, default: null },
    reviewedByUserId: { type: String, default: null },
    /** Why compliance sent it back. */
    reason: { type: String, default: '', maxlength: 2000 },
  },
  { _id: false },
);

/** Someone at the partner completed a training (recorded by the partner or by staff). */
const trainingSchema = new Schema(
  {
    person: { type: String, required: true, maxlength: 200 },
    training: { type: String, required: true, maxlength: 200 },
    completedAt: { type: Date, required: true },
    recordedAt: { type: Date, required: true },
    recordedByUserId: { type: String, default: null },
  },
  { _id: false },
);

const partnerSchema = new Schema(
  {
    _id: { type: String, required: true }, // ptn_…
    name: { type: String, required: true, trim: true, maxlength: 200 },
    /** The name folded for matching free-text values (case, accents, punctuation, legal forms). */
    nameKey: { type: String, required: true },
    /** Other spellings merged into this partner (free-text `channelPartner` values, merged duplicates). */
    aliases: { type: [String], default: [] },
    type: { type: String, enum: PARTNER_TYPES, required: true },
    parentId: { type: String, default: null },
    territories: { type: [String], default: [] }, // ISO 3166-1 alpha-2
    authorisedModels: { type: [String], default: [] }, // model ids (SKUs); empty: any model of an authorised risk level
    authorisedRiskLevels: { type: [String], enum: RISK_LEVELS, default: [] },
    clauses: { type: [clauseSchema], default: [] },
    dueDiligence: {
      maturity: { type: String, enum: MATURITY_LEVELS, default: 'none' },
      lastReviewAt: { type: Date, default: null },
      nextReviewAt: { type: Date, default: null },
      questionnaire: { type: questionnaireSchema, default: null },
      trainings: { type: [trainingSchema], default: [] },
    },
    allocationIds: { type: [String], default: [] },
    /** Counters kept on write (the scorecard's read model); `npm run` rebuild: rebuildScorecards. */
    tallies: {
      allocated: { type: Number, default: 0 },
      passedOn: { type: Number, default: 0 },
      sold: { type: Number, default: 0 },
      flags: { type: Number, default: 0 },
    },
    /** The last sell-through batches whose completed sales `tallies.sold` counts: a fold run again counts nothing twice. */
    saleBatchIds: { type: [String], default: [] },
    /** Cases opened or joined by the flags this partner's reports raised. */
    caseIds: { type: [String], default: [] },
    createdAt: { type: Date, required: true },
    updatedAt: { type: Date, required: true },
  },
  { versionKey: false },
);
partnerSchema.index({ parentId: 1 });
partnerSchema.index({ nameKey: 1 });

export const Partner = mongoose.model('Partner', partnerSchema);

/**
 * The due-diligence questions, one document per version (`_id` = the version number, so two
 * admins publishing at once cannot both take the same number). Admins publish a new version;
 * old versions stay, for the questionnaires answered under them. A small collection.
 */
const questionSetSchema = new Schema(
  {
    _id: { type: Number, required: true },
    questions: { type: [new Schema({ id: { type: String, required: true }, text: { type: String, required: true, maxlength: 1000 } }, { _id: false })], default: [] },
    publishedByUserId: { type: String, required: true },
    publishedAt: { type: Date, required: true },
  },
  { versionKey: false },
);
export const DueDiligenceQuestionSet = mongoose.model('DueDiligenceQuestionSet', questionSetSchema, 'dueDiligenceQuestionSets');

/** Who acts for a partner: `_id` = `user:<userId>` or `key:<apiKeyId>`. */
const partnerMemberSchema = new Schema(
  {
    _id: { type: String, required: true },
    partnerId: { type: String, required: true },
    createdAt: { type: Date, required: true },
  },
  { versionKey: false },
);
partnerMemberSchema.index({ partnerId: 1 });
export const PartnerMember = mongoose.model('PartnerMember', partnerMemberSchema, 'partnerMembers');

/** A batch of units given to a partner at once. */
const partnerAllocationSchema = new Schema(
  {
    _id: { type: String, required: true }, // alc_…
    partnerId: { type: String, required: true },
    fromPartnerId: { type: String, default: null }, // null: shipped by the vendor
    source: { type: String, enum: ALLOCATION_SOURCES, required: true },
    unitIds: { type: [String], default: [] },
    at: { type: Date, required: true },
  },
  { versionKey: false },
);
partnerAllocationSchema.index({ partnerId: 1, at: -1 });
export const PartnerAllocation = mongoose.model('PartnerAllocation', partnerAllocationSchema, 'partnerAllocations');

const saleSchema = new Schema(
  {
    /** Idempotency: the same unit, day and end customer is the same sale. */
    key: { type: String, required: true },
    partnerId: { type: String, required: true },
    customerName: { type: String, required: true, maxlength: 200 },
    customerType: { type: String, enum: END_USER_TYPES, required: true },
    country: { type: String, required: true },
    endUse: { type: String, default: '', maxlength: 1000 },
    soldAt: { type: Date, required: true },
    reportedAt: { type: Date, required: true },
    reviewId: { type: String, default: null },
    /** Held for screening review: its end customer matched a listed party (recorded, not yet counted as sold). */
    held: { type: Boolean, default: false },
  },
  { _id: false },
);

/**
 * The sales ledger: one document per reported sale, `_id` = the sale's key (unit, day, end
 * customer), so a sale reported again is refused by the unique `_id` and counted once. The
 * unit's channel record holds the same sales for reading, once the fold has copied them there
 * (`batchId` names the report that stored the sale; `modelId` is the unit's, for the rules).
 */
const saleRecordSchema = new Schema(
  { _id: { type: String, required: true }, unitId: { type: String, required: true }, modelId: { type: String, default: '' }, batchId: { type: String, default: null }, ...saleSchema.obj },
  { versionKey: false },
);
saleRecordSchema.remove('key');
saleRecordSchema.index({ partnerId: 1, reportedAt: -1 });
saleRecordSchema.index({ unitId: 1 });
export const SaleRecord = mongoose.model('SaleRecord', saleRecordSchema, 'sales');

/**
 * The sell-through outbox: one document per report, naming the sales it sent. The request
 * stores this and the ledger and answers; the fold (server/jobs, `partner-sales`) copies the
 * sales onto their units' channel records, applies the diversion rules and counts them on the
 * scorecards, then deletes the batch. Small: it holds only what waits for the fold.
 */
const saleBatchSchema = new Schema(
  {
    _id: { type: String, required: true }, // sab_…
    reportedBy: { type: String, required: true },
    receivedAt: { type: Date, required: true },
    size: { type: Number, required: true },
    /** The keys of the report's sales, in the ledger (a small document: the request writes the sales once). */
    saleIds: { type: [String], default: [] },
    /** Who sent the report: the fold records it in the audit log under this actor. */
    actor: {
      type: new Schema({ actorKind: { type: String, enum: ['user', 'api-key'], required: true }, actorId: { type: String, default: null } }, { _id: false }),
      default: null,
    },
  },
  { versionKey: false },
);
saleBatchSchema.index({ receivedAt: 1 });
export const SaleBatch = mongoose.model('SaleBatch', saleBatchSchema, 'saleBatches');

/** A unit's place in the sales channel: `_id` = the unit's id. */
const channelUnitSchema = new Schema(
  {
    _id: { type: String, required: true },
    modelId: { type: String, required: true },
    /** The partner holding the unit now; `chain` is every holder, the vendor's first partner first. */
    holderId: { type: String, required: true },
    chain: { type: [String], default: [] },
    allocatedAt: { type: Date, required: true },
    sales: { type: [saleSchema], default: [] },
  },
  { versionKey: false },
);
channelUnitSchema.index({ holderId: 1 });
export const ChannelUnit = mongoose.model('ChannelUnit', channelUnitSchema, 'channelUnits');

/** A high-risk sale submitted before delivery, and compliance's decision on it. */
const saleReviewSchema = new Schema(
  {
    _id: { type: String, required: true }, // rev_…
    partnerId: { type: String, required: true },
    unitId: { type: String, required: true },
    customerName: { type: String, required: true, maxlength: 200 },
    customerType: { type: String, enum: END_USER_TYPES, required: true },
    country: { type: String, required: true },
    endUse: { type: String, default: '', maxlength: 1000 },
    plannedAt: { type: Date, default: null },
    criteria: { type: [String], enum: REVIEW_CRITERIA, default: [] },
    status: { type: String, enum: REVIEW_STATUSES, required: true },
    /** Every decision, oldest first; the last one stands. */
    decisions: {
      type: [
        new Schema(
          {
            decision: { type: String, required: true },
            reasons: { type: String, required: true, maxlength: 2000 },
            conditions: { type: [String], default: [] },
            byUserId: { type: String, required: true },
            at: { type: Date, required: true },
          },
          { _id: false },
        ),
      ],
      default: [],
    },
    /** The partner's answer to "more information", appended. */
    notes: { type: [new Schema({ text: String, at: Date }, { _id: false })], default: [] },
    submittedByUserId: { type: String, default: null },
    submittedAt: { type: Date, required: true },
    updatedAt: { type: Date, required: true },
  },
  { versionKey: false },
);
saleReviewSchema.index({ status: 1, submittedAt: 1 });
saleReviewSchema.index({ partnerId: 1, submittedAt: -1 });
saleReviewSchema.index({ unitId: 1 });
export const SaleReview = mongoose.model('SaleReview', saleReviewSchema, 'saleReviews');

/**
 * A case's request to a partner (the "notify channel partner" leverage action): questions and
 * a deadline; the partner answers in its portal and the answer goes onto the case's action.
 */
const partnerRequestSchema = new Schema(
  {
    _id: { type: String, required: true }, // prq_…
    partnerId: { type: String, required: true },
    caseId: { type: String, required: true },
    actionId: { type: String, required: true },
    questions: { type: String, required: true, maxlength: 5000 },
    unitIds: { type: [String], default: [] },
    dueBy: { type: Date, default: null },
    status: { type: String, enum: ['open', 'answered'], required: true },
    answer: { type: String, default: '', maxlength: 5000 },
    answeredAt: { type: Date, default: null },
    answeredByUserId: { type: String, default: null },
    createdAt: { type: Date, required: true },
  },
  { versionKey: false },
);
partnerRequestSchema.index({ partnerId: 1, createdAt: -1 });
partnerRequestSchema.index({ caseId: 1 });
export const PartnerRequest = mongoose.model('PartnerRequest', partnerRequestSchema, 'partnerRequests');

/**
 * Where each partner's units have been seen: one document per partner (`_id` = the partner's
 * id), each unit counted for its current holder, in the country it last checked in from and
 * every country it was registered in. A read model for the dashboard, recomputed whole by the
 * `partner-diversion` sweep (which walks these units anyway) and by `npm run partners:rebuild`:
 * every write `$set`s the whole tally, so a run repeated never counts twice. One document per
 * partner: a small collection.
 */
const footprintCountrySchema = new Schema(
  {
    country: { type: String, required: true }, // ISO 3166-1 alpha-2
    /** Units seen in this country by either source (a unit seen both ways counts once). */
    units: { type: Number, required: true },
    /** Units whose last check-in came from this country. */
    checkIns: { type: Number, required: true },
    /** Units registered (or transferred) to this country. */
    registrations: { type: Number, required: true },
  },
  { _id: false },
);

const partnerFootprintSchema = new Schema(
  {
    _id: { type: String, required: true }, // the partner's id
    /** Units the partner holds now. */
    units: { type: Number, required: true },
    /** Of those, units seen in at least one country. */
    observedUnits: { type: Number, required: true },
    /** Most units first. */
    countries: { type: [footprintCountrySchema], default: [] },
    computedAt: { type: Date, required: true },
  },
  { versionKey: false },
);
export const PartnerFootprint = mongoose.model('PartnerFootprint', partnerFootprintSchema, 'partnerFootprints');
