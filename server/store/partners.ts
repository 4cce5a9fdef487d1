import crypto from 'node:crypto';
import { Case } from '../../models/cases';
import { ChannelUnit, DueDiligenceQuestionSet, Partner, PartnerAllocation, PartnerFootprint, PartnerMember, PartnerRequest, SaleBatch, SaleRecord, SaleReview } from '../../models/partners';
import type { AllocationSource, ReviewStatus } from '../domain/partners';
import { byIds, existingByIds } from './by-ids';
import type { StoredParty } from './screening';
import { chunksOf, duplicatesIn, type Engine, isDuplicateKey } from './engine';

/**
 * Channel partners, their members (users and API keys), allocations of units, each unit's
 * channel record (holder and reported sales) and high-risk sale reviews. Every write is one
 * single-document atomic update, guarded where two writers could race (a pass-on is guarded
 * by the unit's holder, a sale by its idempotency key, a decision by the review's status).
 */

const partnerById = (id: string) => Partner.findById(id).lean();
const reviewById = (id: string) => SaleReview.findById(id).lean();
const requestById = (id: string) => PartnerRequest.findById(id).lean();
export type LeanRequest = NonNullable<Awaited<ReturnType<typeof requestById>>>;
export type LeanPartner = NonNullable<Awaited<ReturnType<typeof partnerById>>>;
/** The fields of a partner its scorecard and risk tier read (`scoredPartners`). */
const SCORED_FIELDS = {
  name: 1,
  type: 1,
  parentId: 1,
  territories: 1,
  authorisedModels: 1,
  authorisedRiskLevels: 1,
  caseIds: 1,
  tallies: 1,
  'dueDiligence.maturity': 1,
  'dueDiligence.nextReviewAt': 1,
  'dueDiligence.questionnaire.status': 1,
  'dueDiligence.questionnaire.answers': 1,
} as const;
export type ScoredPartner = Pick<LeanPartner, '_id' | 'name' | 'type' | 'parentId' | 'territories' | 'authorisedModels' | 'authorisedRiskLevels' | 'caseIds' | 'tallies'> & {
  dueDiligence?: { maturity?: string | null; nextReviewAt?: Date | null; questionnaire?: { status: string; answers: Array<{ answer: string }> } | null } | null;
};
export type LeanReview = NonNullable<Awaited<ReturnType<typeof reviewById>>>;
type LeanChannelUnit = { _id: string; modelId: string; holderId: string; chain: string[]; allocatedAt: Date; sales: StoredSale[] };
type LeanAllocation = { _id: string; partnerId: string; fromPartnerId: string | null; source: AllocationSource; unitIds: string[]; at: Date };

export interface NewPartner {
  _id: string;
  name: string;
  nameKey: string;
  aliases: string[];
  type: string;
  parentId: string | null;
  territories: string[];
  authorisedModels: string[];
  authorisedRiskLevels: string[];
  clauses: Array<{ kind: string; since: Date; until: Date | null }>;
  dueDiligence: { maturity: string; lastReviewAt: Date | null; nextReviewAt: Date | null };
  createdAt: Date;
  updatedAt: Date;
}

export interface StoredQuestionnaire {
  version: number;
  questions: Array<{ id: string; text: string }>;
  answers: Array<{ questionId: string; answer: string; comment: string }>;
  status: 'submitted';
  submittedAt: Date;
  submittedByUserId: string | null;
  reviewedAt: null;
  reviewedByUserId: null;
  reason: '';
}

export interface StoredSale {
  key: string;
  partnerId: string;
  customerName: string;
  customerType: string;
  country: string;
  endUse: string;
  soldAt: Date;
  reportedAt: Date;
  reviewId: string | null;
  held: boolean;
}

/** A sale as the ledger stores it: `_id` = the sale's key, with its unit and the report that stored it. */
export type LedgerSale = Omit<StoredSale, 'key'> & { _id: string; unitId: string; modelId: string; batchId: string };

export interface NewSaleBatch {
  _id: string;
  reportedBy: string;
  receivedAt: Date;
  size: number;
  saleIds: string[];
  /** Absent on reports stored before the fold wrote their audit entry (their request did). */
  actor?: { actorKind: 'user' | 'api-key'; actorId: string | null } | null;
}

/** Where a partner's units have been seen (models/partners.ts, PartnerFootprint). */
export interface StoredFootprint {
  _id: string;
  units: number;
  observedUnits: number;
  countries: Array<{ country: string; units: number; checkIns: number; registrations: number }>;
  computedAt: Date;
}

/** Sell-through batches a partner remembers having counted (far more than one fold takes). */
const SALE_BATCHES_KEPT = 256;

export interface NewReview {
  _id: string;
  partnerId: string;
  unitId: string;
  customerName: string;
  customerType: string;
  country: string;
  endUse: string;
  plannedAt: Date | null;
  criteria: string[];
  status: 'pending';
  submittedByUserId: string | null;
  submittedAt: Date;
  updatedAt: Date;
}

const allocationId = () => `alc_${crypto.randomBytes(10).toString('hex')}`;

/**
 * Gives units straight from the vendor to a partner: one allocation document, the partner's
 * list and counter, and a channel record per unit. A unit already in the channel keeps its
 * holder (an import run twice allocates nothing twice). Returns the ids newly allocated.
 * Also called by the catalogue import (server/store/catalogue.ts) for its `partner` column.
 */
export async function allocateFromVendor(partnerId: string, units: ReadonlyArray<{ _id: string; modelId: string }>, source: AllocationSource, at: Date): Promise<string[]> {
  if (!units.length) return [];
  const taken = new Set(await duplicatesIn(() => ChannelUnit.collection.insertMany(units.map((u) => ({ _id: u._id, modelId: u.modelId, holderId: partnerId, chain: [partnerId], allocatedAt: at, sales: [] })) as never[], { ordered: false })));
  const allocated = units.filter((_, i) => !taken.has(i)).map((u) => u._id);
  if (allocated.length) await recordAllocation(partnerId, null, source, allocated, at);
  return allocated;
}

async function recordAllocation(partnerId: string, fromPartnerId: string | null, source: AllocationSource, unitIds: string[], at: Date) {
  const _id = allocationId();
  await PartnerAllocation.create({ _id, partnerId, fromPartnerId, source, unitIds, at });
  await Partner.updateOne({ _id: partnerId }, { $push: { allocationIds: _id }, $inc: { 'tallies.allocated': unitIds.length } });
  if (fromPartnerId) await Partner.updateOne({ _id: fromPartnerId }, { $inc: { 'tallies.passedOn': unitIds.length } });
}

/** Unit ids of allocations kept in memory: 300,000 take about 40 MB of heap as sets (1,000,000 measured at 141 MB). */
const ALLOCATED_UNITS_CACHED = 300_000;

/** An allocation as the scope check reads it: when it was given, and its units as a set (a report asks after a few of 100,000). */
export interface HeldUnits {
  _id: string;
  at: Date;
  unitIds: ReadonlySet<string>;
}

export function createPartnersStore(engine: Engine) {
  const allocationCache = new Map<string, HeldUnits>();
  let unitsCached = 0;
  return {
    // ----- partners (a small collection: scans are fine) -----

    /** False when the `_id` is taken. */
    async insertPartner(doc: NewPartner): Promise<boolean> {
      try {
        await Partner.create(doc);
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    partnerById,

    partnersByIds: (ids: readonly string[]) => existingByIds<LeanPartner>(engine, Partner as never, ids),

    updatePartner: (id: string, set: Record<string, unknown>): Promise<LeanPartner | null> => Partner.findOneAndUpdate({ _id: id }, { $set: set }, { new: true, runValidators: true }).lean(),

    async listPartners(page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([Partner.find({}).sort({ name: 1, _id: 1 }).skip(page.skip).limit(page.limit).lean(), Partner.countDocuments({})]);
      return { items, total };
    },

    /** Every partner (ids, names, tree): for name matching, the parent picker and the scorecard table. */
    allPartners: () => Partner.find({}).sort({ name: 1, _id: 1 }).lean(),

    /**
     * Every partner as its scorecard and risk tier read it, in one read per request: not its
     * allocation and batch lists, which grow with its units and reports, nor its
     * questionnaire's texts and trainings. The scorecards rank them, so no sort here.
     */
    scoredPartners: () => Partner.find({}, SCORED_FIELDS).lean<ScoredPartner[]>(),

    /** The partner tree with each partner's allocations, for a sell-through report's scope check: nothing else of the partners. */
    channelTree: () => Partner.find({}, { parentId: 1, allocationIds: 1 }).lean<Array<{ _id: string; parentId: string | null; allocationIds: string[] }>>(),

    /** Partners' ids, folded names and merged spellings, for the catalogue import's `partner` column. */
    partnerNames: () => Partner.find({}, { nameKey: 1, name: 1, aliases: 1 }).lean<Array<{ _id: string; name: string; nameKey: string; aliases: string[] }>>(),

    /**
     * Partner records and every sale's end customer, for re-screening after a list import (the
     * sales ledger in one streamed scan, off the request path). A partner has territories, not
     * a country of its own, so it is screened by name alone.
     */
    async *screenedParties(): AsyncGenerator<StoredParty> {
      for await (const p of Partner.find({}, { name: 1 }).lean().cursor({ batchSize: 1_000 })) {
        yield { subject: { kind: 'partner', id: p._id, unitId: null, role: 'partner' }, name: p.name, country: null };
      }
      for await (const s of SaleRecord.find({}, { unitId: 1, customerName: 1, country: 1 }).lean<Array<{ _id: string; unitId: string; customerName: string; country: string }>>().cursor({ batchSize: 1_000 })) {
        yield { subject: { kind: 'sale', id: s._id, unitId: s.unitId, role: 'end-customer' }, name: s.customerName, country: s.country };
      }
    },

    childrenOf: (parentId: string) => Partner.find({ parentId }).sort({ name: 1 }).lean(),

    countPartnerFlag: (id: string, caseId: string) => Partner.updateOne({ _id: id }, { $inc: { 'tallies.flags': 1 }, $addToSet: { caseIds: caseId } }),

    /**
     * Folds `fromId` into `intoId`: its spellings, allocations, counters and cases; its
     * children and units move to the survivor; then it goes. Merges are rare and by hand.
     */
    async mergePartners(fromId: string, intoId: string, names: string[]) {
      const from = await partnerById(fromId);
      if (!from) return false;
      await Partner.updateOne(
        { _id: intoId },
        {
          $addToSet: { aliases: { $each: names }, allocationIds: { $each: from.allocationIds }, caseIds: { $each: from.caseIds } },
          $inc: { 'tallies.allocated': from.tallies?.allocated ?? 0, 'tallies.passedOn': from.tallies?.passedOn ?? 0, 'tallies.sold': from.tallies?.sold ?? 0, 'tallies.flags': from.tallies?.flags ?? 0 },
        },
      );
      await Partner.updateMany({ parentId: fromId }, { $set: { parentId: intoId } });
      for (const allocation of await existingByIds<LeanAllocation>(engine, PartnerAllocation as never, from.allocationIds)) {
        await PartnerAllocation.updateOne({ _id: allocation._id }, { $set: { partnerId: intoId } });
        for (const chunk of chunksOf(allocation.unitIds)) {
          await ChannelUnit.bulkWrite(chunk.map((_id) => ({ updateOne: { filter: { _id, holderId: fromId }, update: { $set: { holderId: intoId } } } })), { ordered: false });
        }
      }
      await PartnerMember.updateMany({ partnerId: fromId }, { $set: { partnerId: intoId } });
      await SaleReview.updateMany({ partnerId: fromId }, { $set: { partnerId: intoId } });
      await Partner.deleteOne({ _id: fromId });
      return true;
    },

    // ----- due diligence: the question set's versions and each partner's questionnaire -----

    latestQuestionSet: () => DueDiligenceQuestionSet.findOne({}).sort({ _id: -1 }).lean(),

    async listQuestionSets(page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([DueDiligenceQuestionSet.find({}).sort({ _id: -1 }).skip(page.skip).limit(page.limit).lean(), DueDiligenceQuestionSet.countDocuments({})]);
      return { items, total };
    },

    /** False when another admin published this version number first. */
    async insertQuestionSet(doc: { _id: number; questions: Array<{ id: string; text: string }>; publishedByUserId: string; publishedAt: Date }): Promise<boolean> {
      try {
        await DueDiligenceQuestionSet.create(doc);
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    /** Replaces the questionnaire unless one is waiting for compliance; false if one is. */
    async submitQuestionnaire(partnerId: string, questionnaire: StoredQuestionnaire): Promise<boolean> {
      const res = await Partner.updateOne({ _id: partnerId, 'dueDiligence.questionnaire.status': { $ne: 'submitted' } }, { $set: { 'dueDiligence.questionnaire': questionnaire } });
      return res.modifiedCount === 1;
    },

    /** Compliance's review, guarded by the questionnaire still waiting for it; false if it is not. */
    async reviewQuestionnaire(partnerId: string, set: Record<string, unknown>): Promise<boolean> {
      const res = await Partner.updateOne({ _id: partnerId, 'dueDiligence.questionnaire.status': 'submitted' }, { $set: set });
      return res.modifiedCount === 1;
    },

    addTraining: (partnerId: string, training: { person: string; training: string; completedAt: Date; recordedAt: Date; recordedByUserId: string | null }) =>
      Partner.updateOne({ _id: partnerId }, { $push: { 'dueDiligence.trainings': training } }),

    // ----- members: users and API keys acting for a partner -----

    addMember: (memberId: string, partnerId: string, at: Date) => PartnerMember.create({ _id: memberId, partnerId, createdAt: at }),

    partnerOfMember: async (memberId: string) => (await PartnerMember.findById(memberId).lean())?.partnerId ?? null,

    membersOf: (partnerId: string) => PartnerMember.find({ partnerId }).lean(),

    // ----- allocations and the units' channel records -----

    allocateFromVendor,

    /**
     * Passes units from a holder to one of its child partners, each guarded by its holder:
     * a unit passed on meanwhile (or never held) is left out. Returns the ids passed on.
     */
    async passOn(fromId: string, toId: string, unitIds: readonly string[], at: Date): Promise<string[]> {
      const moved: string[] = [];
      for (const chunk of chunksOf(unitIds)) {
        const results = await Promise.all(chunk.map((_id) => ChannelUnit.updateOne({ _id, holderId: fromId }, { $set: { holderId: toId }, $push: { chain: toId } })));
        chunk.forEach((id, i) => results[i]!.modifiedCount === 1 && moved.push(id));
      }
      if (moved.length) await recordAllocation(toId, fromId, 'pass-on', moved, at);
      return moved;
    },

    channelUnitById: (id: string) => ChannelUnit.findById(id).lean<LeanChannelUnit>(),

    channelUnitsByIds: (ids: readonly string[]) => existingByIds<LeanChannelUnit>(engine, ChannelUnit as never, ids),

    allocationsByIds: (ids: readonly string[]) => existingByIds<LeanAllocation>(engine, PartnerAllocation as never, ids),

    /**
     * The units of these allocations with when each was given, by `_id`. An allocation's units
     * and date never change once written (a merge only moves it to another partner's list), so
     * this process keeps the ones it has read: a partner's reports then cost no allocation read
     * but its new ones. Nothing depends on the copy but speed: every instance reads the same.
     */
    async allocationUnits(ids: readonly string[]): Promise<HeldUnits[]> {
      // What this call answers from, apart from the cache: a fill may clear it midway.
      const found = new Map(ids.flatMap((id) => (allocationCache.has(id) ? [[id, allocationCache.get(id)!] as const] : [])));
      const missing = ids.filter((id) => !found.has(id));
      for (const a of await existingByIds<{ _id: string; at: Date; unitIds: string[] }>(engine, PartnerAllocation as never, missing, { at: 1, unitIds: 1 })) {
        const held = { _id: a._id, at: a.at, unitIds: new Set(a.unitIds) };
        found.set(a._id, held);
        if (unitsCached + a.unitIds.length > ALLOCATED_UNITS_CACHED) {
          allocationCache.clear();
          unitsCached = 0;
        }
        allocationCache.set(a._id, held);
        unitsCached += a.unitIds.length;
      }
      return ids.flatMap((id) => found.get(id) ?? []);
    },

    /** Who holds each unit now (the scope check of a sell-through report), by `_id`; units outside the channel are left out. */
    holdersOf: (ids: readonly string[]) => existingByIds<{ _id: string; modelId: string; holderId: string }>(engine, ChannelUnit as never, ids, { modelId: 1, holderId: 1 }),

    /**
     * Stores a sell-through report: the outbox entry first (whatever part of the ledger gets
     * written, the fold will find it), then the sales in one unordered insert whose `_id`s
     * (the sales' keys) decide what is new: true at their index, false for a sale already in
     * the ledger (a replay, or the same sale twice in one report). The fold reads the sales
     * back from the ledger, so the request writes each sale once.
     */
    async appendSales(batch: NewSaleBatch, sales: readonly LedgerSale[]): Promise<boolean[]> {
      await SaleBatch.collection.insertOne(batch as never);
      const isNew = sales.map(() => true);
      for (const i of await duplicatesIn(() => SaleRecord.collection.insertMany(sales as never[], { ordered: false }))) isNew[i] = false;
      return isNew;
    },

    /** The outbox, oldest first (a small collection: it holds what waits for the fold). */
    waitingSaleBatches: () => SaleBatch.find({}, { receivedAt: 1, size: 1 }).sort({ receivedAt: 1, _id: 1 }).lean<Array<{ _id: string; receivedAt: Date; size: number }>>(),

    saleBatchesByIds: (ids: readonly string[]) => existingByIds<NewSaleBatch>(engine, SaleBatch as never, ids),

    /** Ledger sales by key, in order (null where none). */
    salesByKeys: (keys: readonly string[]) => byIds<LedgerSale>(engine, SaleRecord as never, keys),

    /** What the fold decided about a few sales (held by screening, or naming their approval), on the ledger. */
    async markSales(marks: ReadonlyArray<{ key: string; held: boolean; reviewId: string | null }>) {
      for (const chunk of chunksOf(marks)) {
        await SaleRecord.bulkWrite(chunk.map(({ key, held, reviewId }) => ({ updateOne: { filter: { _id: key }, update: { $set: { held, reviewId } } } })), { ordered: false });
      }
    },

    /**
     * Copies folded sales onto their units' channel records, one statement per unit: a unit
     * outside the channel gets its record (held by the seller); the others get their sales
     * appended unless the record holds any of them already (a fold run again after a crash).
     */
    async appendToChannelUnits(units: ReadonlyArray<{ unitId: string; modelId: string; exists: boolean; sales: StoredSale[] }>) {
      const fresh = units.filter((u) => !u.exists);
      const existing = units.filter((u) => u.exists);
      for (const chunk of chunksOf(fresh)) {
        const refused = await duplicatesIn(() => ChannelUnit.collection.insertMany(chunk.map((u) => ({ _id: u.unitId, modelId: u.modelId, holderId: u.sales[0]!.partnerId, chain: [], allocatedAt: u.sales[0]!.reportedAt, sales: u.sales })) as never[], { ordered: false }));
        // Allocated, or created by an earlier run of this fold, meanwhile: appended to instead.
        for (const i of refused) existing.push(chunk[i]!);
      }
      for (const chunk of chunksOf(existing)) {
        await ChannelUnit.bulkWrite(
          chunk.map((u) => ({ updateOne: { filter: { _id: u.unitId, 'sales.key': { $nin: u.sales.map((sale) => sale.key) } }, update: { $push: { sales: { $each: u.sales as never[] } } } } })),
          { ordered: false },
        );
      }
    },

    /**
     * Counts a batch's completed sales on a partner's scorecard, once: the partner remembers
     * the batches it counted (the newest SALE_BATCHES_KEPT; batches fold oldest first, so an
     * older one never comes back).
     */
    async countBatchSales(partnerId: string, batchId: string, n: number) {
      // One guarded update: the count and the batch's id, the list kept to its newest ids by $slice.
      await Partner.updateOne({ _id: partnerId, saleBatchIds: { $ne: batchId } }, { $inc: { 'tallies.sold': n }, $push: { saleBatchIds: { $each: [batchId], $slice: -SALE_BATCHES_KEPT } } });
    },

    deleteSaleBatches: (ids: readonly string[]) => SaleBatch.deleteMany({ _id: { $in: [...ids] } }),

    /** A sale in the ledger, by its key. */
    saleByKey: (key: string) => SaleRecord.findById(key).lean<StoredSale & { _id: string; unitId: string }>(),

    /**
     * Lets a sale held for screening review count as made: the ledger's guarded update decides
     * (false when it was not held, or another reviewer released it first), then the unit's copy.
     */
    async releaseSale(key: string, unitId: string): Promise<boolean> {
      const res = await SaleRecord.updateOne({ _id: key, held: true }, { $set: { held: false } });
      // By index, guarded by the key there (the embedded engine has no positional `$`); sales are only appended.
      const unit = await ChannelUnit.findById(unitId, { sales: 1 }).lean<{ sales: StoredSale[] }>();
      const at = unit?.sales.findIndex((s) => s.key === key) ?? -1;
      if (at >= 0) await ChannelUnit.updateOne({ _id: unitId, [`sales.${at}.key`]: key }, { $set: { [`sales.${at}.held`]: false } });
      return res.modifiedCount === 1;
    },

    countSales: (id: string, n: number) => Partner.updateOne({ _id: id }, { $inc: { 'tallies.sold': n } }),

    // Reads of cases: move to server/store/cases.ts at merge
    /** The status of these cases, for partners' scorecards, by `_id` (the embedded engine would scan every case for an `$in`), without their history. */
    caseStatuses: (ids: readonly string[]) => existingByIds<{ _id: string; status: string }>(engine, Case as never, [...new Set(ids)], { status: 1 }),

    // ----- requests from cases (few: one per leverage action) -----

    insertRequest: (doc: { _id: string; partnerId: string; caseId: string; actionId: string; questions: string; unitIds: string[]; dueBy: Date | null; status: 'open'; createdAt: Date }) => PartnerRequest.create(doc),

    requestById,

    async requestsOf(partnerIds: readonly string[], page: { skip: number; limit: number }) {
      const filter = { partnerId: { $in: [...partnerIds] } };
      const [items, total] = await Promise.all([PartnerRequest.find(filter).sort({ createdAt: -1, _id: 1 }).skip(page.skip).limit(page.limit).lean(), PartnerRequest.countDocuments(filter)]);
      return { items, total };
    },

    /** The timing of every request to these partners, for their scorecards (requests are few: one per leverage action). */
    requestTimesOf: (partnerIds: readonly string[] | null) => PartnerRequest.find(partnerIds ? { partnerId: { $in: [...partnerIds] } } : {}, { partnerId: 1, status: 1, dueBy: 1, createdAt: 1, answeredAt: 1 }).lean(),

    /** Records the answer once: false when the request was answered already. */
    async answerRequest(id: string, answer: string, at: Date, byUserId: string | null) {
      const res = await PartnerRequest.updateOne({ _id: id, status: 'open' }, { $set: { status: 'answered', answer, answeredAt: at, answeredByUserId: byUserId } });
      return res.modifiedCount === 1;
    },

    // ----- high-risk sale reviews (few: only high-risk sales) -----

    insertReview: (doc: NewReview) => SaleReview.create(doc),

    reviewById,

    async reviewsOf(partnerIds: readonly string[], page: { skip: number; limit: number }) {
      const filter = { partnerId: { $in: [...partnerIds] } };
      const [items, total] = await Promise.all([SaleReview.find(filter).sort({ submittedAt: -1, _id: 1 }).skip(page.skip).limit(page.limit).lean(), SaleReview.countDocuments(filter)]);
      return { items, total };
    },

    async reviewsWithStatus(statuses: readonly ReviewStatus[], page: { skip: number; limit: number }) {
      const filter = { status: { $in: [...statuses] } };
      const [items, total] = await Promise.all([SaleReview.find(filter).sort({ submittedAt: 1, _id: 1 }).skip(page.skip).limit(page.limit).lean(), SaleReview.countDocuments(filter)]);
      return { items, total };
    },

    /** The approving reviews of these units (reviews are few: only high-risk sales). */
    approvedReviewsOf: async (unitIds: readonly string[], approving: readonly ReviewStatus[]) =>
      unitIds.length ? SaleReview.find({ unitId: { $in: [...new Set(unitIds)] }, status: { $in: [...approving] } }, { unitId: 1, partnerId: 1 }).lean() : [],

    /** Records a decision if the review is still in `from`: false when another decision came first. */
    async decideReview(id: string, from: readonly ReviewStatus[], status: ReviewStatus, decision: { decision: string; reasons: string; conditions: string[]; byUserId: string; at: Date }) {
      const res = await SaleReview.updateOne({ _id: id, status: { $in: [...from] } }, { $set: { status, updatedAt: decision.at }, $push: { decisions: decision } });
      return res.modifiedCount === 1;
    },

    /** The partner's answer to "more information": back to compliance's queue. */
    async answerReview(id: string, text: string, at: Date) {
      const res = await SaleReview.updateOne({ _id: id, status: 'more-information' }, { $set: { status: 'pending', updatedAt: at }, $push: { notes: { text, at } } });
      return res.modifiedCount === 1;
    },

    // ----- footprints: where each partner's units were seen (one document per partner) -----

    /**
     * Writes every partner's footprint whole (`$set`, upserted: a run repeated writes the same
     * figures) and drops those of partners no longer listed (merged away).
     */
    async saveFootprints(footprints: readonly StoredFootprint[]) {
      for (const chunk of chunksOf(footprints)) {
        await PartnerFootprint.bulkWrite(chunk.map(({ _id, ...tally }) => ({ updateOne: { filter: { _id }, update: { $set: tally as never }, upsert: true } })), { ordered: false });
      }
      await PartnerFootprint.deleteMany({ _id: { $nin: footprints.map((f) => f._id) } });
    },

    footprintsByIds: (ids: readonly string[]) => existingByIds<StoredFootprint>(engine, PartnerFootprint as never, ids),
  };
}

export type PartnersStore = ReturnType<typeof createPartnersStore>;
