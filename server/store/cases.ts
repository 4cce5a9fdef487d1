import mongoose, { type FilterQuery, type UpdateQuery } from 'mongoose';
import { Case, Counter, OpenCaseKey, UnitCases, type CaseDoc } from '../../models/cases';
import { CASE_STATUSES, type CaseStatus, type HarmCategory, type PriorityLevel } from '../domain/cases';
import type { FlagRule } from '../domain/flags';
import { byIds, existingByIds } from './by-ids';
import { createCaseChangeFollower, createCaseQueueRows, noteCaseChanged, type CaseRow } from './case-queue';
import { chunksOf, duplicatesIn, type Engine, isDuplicateKey } from './engine';
import { guardedBulkWrite } from './guarded-writes';
import type { OutboxEvent } from './webhooks';

const oid = (id: string) => new mongoose.Types.ObjectId(id);

export type StoredCase = NonNullable<Awaited<ReturnType<typeof readCase>>>;
// Webhook events waiting in the case are the webhook job's, not part of the case as shown.
const readCase = (id: string) => Case.findById(id, { pendingEvents: 0 }).lean();

export interface CaseSource {
  kind: 'flag' | 'report';
  id: string;
  rule?: FlagRule | null;
  at: Date;
}

/** One line of a case's history; `byUserId` null is the system. */
export interface HistoryLine {
  at: Date;
  byUserId: string | null;
  action: string;
  detail: string;
}

export interface NewCase {
  _id: string;
  title: string;
  sources: CaseSource[];
  sourceKinds: Array<'flag' | 'report'>;
  rules: FlagRule[];
  unitIds: string[];
  modelIds: string[];
  countries: string[];
  deadlines: { acknowledgeBy: Date | null; feedbackBy: Date | null; reviewBy: Date | null };
  assigneeIds?: unknown[];
  conflictedUserIds?: unknown[];
  openedAt: Date;
  history: HistoryLine[];
  /** Webhook events of the opening (case.opened, flag.raised…), written with the case. */
  pendingEvents?: OutboxEvent[];
}

/** Sources joining an open case in one update, with their subjects, history lines and webhook events. */
export interface Attachment {
  caseId: string;
  /** The case's revision when it was read (null: a case never changed since it was written). */
  rev: number | null;
  sources: CaseSource[];
  subjects: { rules: FlagRule[]; unitIds: string[]; modelIds: string[]; countries: string[] };
  lines: HistoryLine[];
  announce: OutboxEvent[];
}

/**
 * What must still hold for a change to apply: each read-check-write of the cases service is
 * one guarded update, so of two racing writers (in any processes) exactly one wins.
 */
export interface CaseGuard {
  /** Nothing changed since this revision was read (for rewrites of whole arrays). */
  rev?: number;
  /** Still in this status (workflow transitions). */
  status?: CaseStatus;
  /** Not closed. */
  open?: true;
  assigned?: string;
  notAssigned?: string;
  notConflicted?: string;
  notAcknowledged?: true;
  /** The legal hold is currently on (true) or off (false). */
  legalHold?: boolean;
  /** Retention has not deleted the reporters' data yet. */
  reporterDataKept?: true;
}

/** Fields a change may add to (as sets), remove one value from, or append entries to. */
type CaseSets = 'sources' | 'sourceKinds' | 'rules' | 'unitIds' | 'modelIds' | 'countries' | 'assigneeIds' | 'conflictedUserIds';
type CaseLists = 'notes' | 'actions' | 'remediation' | 'conflicts';
export interface CaseChange {
  /** Top-level or dotted fields (`deadlines.acknowledgedAt`) to set; user ids as strings. */
  set?: Record<string, unknown>;
  addToSets?: Partial<Record<CaseSets, readonly unknown[]>>;
  removeFromSets?: Partial<Record<'assigneeIds', string>>;
  append?: Partial<Record<CaseLists, Record<string, unknown>>>;
  /** Webhook events of this change, written in the same update (see `pendingWebhookEvents`). */
  announce?: readonly OutboxEvent[];
}

function guardFilter(caseId: string, guard: CaseGuard): FilterQuery<CaseDoc> {
  const filter: FilterQuery<CaseDoc> = { _id: caseId };
  if (guard.rev !== undefined) filter.rev = guard.rev;
  if (guard.status) filter.status = guard.status;
  else if (guard.open) filter.status = { $ne: 'closed' };
  if (guard.assigned) filter.assigneeIds = oid(guard.assigned);
  else if (guard.notAssigned) filter.assigneeIds = { $ne: oid(guard.notAssigned) };
  if (guard.notConflicted) filter.conflictedUserIds = { $ne: oid(guard.notConflicted) };
  if (guard.notAcknowledged) filter['deadlines.acknowledgedAt'] = null;
  if (guard.legalHold !== undefined) filter['legalHold.on'] = guard.legalHold ? true : { $ne: true };
  if (guard.reporterDataKept) filter['retention.reporterDataDeletedAt'] = null;
  return filter;
}

/** The queue's query, in the domain's words; the store turns it into one filter. */
export interface QueueQuery {
  status: CaseStatus | 'open' | 'all';
  priority?: PriorityLevel;
  harm?: HarmCategory;
  country?: string;
  model?: string;
  source?: 'flag' | 'report';
  assigneeId?: string;
  /** Only cases with a deadline missed at this time. */
  overdueAt?: Date;
  /** Conflicted investigators never see the case. */
  hiddenFrom: string;
  sort: 'opened' | 'priority' | 'updated';
  skip: number;
  limit: number;
}

/** The same rule as `overdueOf` (server/services/cases/rules.ts), as a database filter. */
export function overdueFilter(now: Date): FilterQuery<CaseDoc> {
  return {
    status: { $ne: 'closed' },
    $or: [
      { 'deadlines.acknowledgedAt': null, 'deadlines.acknowledgeBy': { $lt: now } },
      { 'deadlines.feedbackGivenAt': null, 'deadlines.feedbackBy': { $lt: now } },
      { 'deadlines.reviewBy': { $lt: now } },
    ],
  };
}

/** What the queue and a unit's timeline show of a case: all but the long lists. */
const QUEUE_PROJECTION = { notes: 0, history: 0, remediation: 0, conflicts: 0 } as const;

/** A case as the queue lists it. */
export type QueueCase = Awaited<ReturnType<typeof readCase>> extends infer C ? Omit<NonNullable<C>, 'notes' | 'history' | 'remediation' | 'conflicts'> : never;

/** Ties broken by case number, so pages never overlap. */
const QUEUE_SORTS = {
  opened: { openedAt: -1, _id: -1 },
  priority: { priority: -1, openedAt: 1, _id: 1 },
  updated: { updatedAt: -1, _id: -1 },
} as const;

function statusFilter(status: QueueQuery['status']): FilterQuery<CaseDoc> {
  if (status === 'all') return {};
  return status === 'open' ? { status: { $ne: 'closed' } } : { status };
}

/** Everything but the status: the counts per status share it. Ids cast here (aggregate does not). */
function queueFilter(q: QueueQuery): FilterQuery<CaseDoc> {
  const filter: FilterQuery<CaseDoc> = { conflictedUserIds: { $ne: oid(q.hiddenFrom) } };
  if (q.priority) filter.priorityLevel = q.priority;
  if (q.harm) filter.harmCategories = q.harm;
  if (q.country) filter.countries = q.country;
  if (q.model) filter.modelIds = q.model;
  if (q.source) filter.sourceKinds = q.source;
  if (q.assigneeId) filter.assigneeIds = oid(q.assigneeId);
  if (q.overdueAt) filter.$and = [overdueFilter(q.overdueAt)];
  return filter;
}

type PendingCaseEvents = { _id: string; rev?: number; pendingEvents: OutboxEvent[] };
const HAS_PENDING_EVENTS = { 'pendingEvents._id': { $exists: true } };
const PENDING_EVENTS_PROJECTION = { pendingEvents: 1, rev: 1 } as const;

/**
 * The cases holding webhook events, on an engine without secondary indexes. Filtering the
 * cases for them is a scan there (measured 4–15 s at 4,000–6,700 cases on a loaded machine),
 * and the webhook job asks every few seconds, so it follows the case change log instead and
 * reads by `_id` only the cases changed since its last look, plus those it last found holding
 * events (the job may have cleared them or not). A full scan only on its first look, after
 * falling behind the log, and every ten minutes (a change whose log entry was lost to a crash).
 */
function createPendingEventsReader(engine: Engine) {
  const follower = createCaseChangeFollower();
  let holding = new Set<string>();
  return {
    async read(limit: number): Promise<PendingCaseEvents[]> {
      try {
        const changed = await follower.changedSince();
        const found =
          changed === null
            ? await Case.find(HAS_PENDING_EVENTS, PENDING_EVENTS_PROJECTION).lean<PendingCaseEvents[]>()
            : (await existingByIds<PendingCaseEvents>(engine, Case as never, [...new Set([...holding, ...changed])], PENDING_EVENTS_PROJECTION)).filter((c) => c.pendingEvents?.length);
        holding = new Set(found.map((c) => c._id));
        return found.slice(0, limit);
      } catch (err) {
        follower.forget();
        throw err;
      }
    },
  };
}

/**
 * Cases, their open-case keys and the case-number counter. Cases are a small collection (a
 * few thousand): the queue is a query over it, served by the declared indexes on MongoDB and
 * by a scan on FerretDB.
 */
export function createCasesStore(engine: Engine) {
  // Without secondary indexes every queue filter is a scan of the cases: rows kept per
  // process and followed through the change log instead (server/store/case-queue.ts).
  const queueRows = engine.secondaryIndexes ? null : createCaseQueueRows(QUEUE_PROJECTION);
  const noteChanged = (caseIds: readonly string[]) => (queueRows ? noteCaseChanged(caseIds) : Promise.resolve());
  const pendingEvents = engine.secondaryIndexes ? null : createPendingEventsReader(engine);

  /**
   * On FerretDB a unit's timeline reads its cases by `_id` (measured: a scan of 1,500 cases
   * costs 0.5-0.8 s there, on every timeline request), so each case that gains units is
   * added to their UnitCases documents. MongoDB's `unitIds` index serves the timeline.
   */
  // Indexed before the case is written, so a crash in between leaves an extra id (dropped on
  // read: the case does not name the unit) rather than a case missing from the timeline.
  // Returns the number of units written.
  async function indexUnits(cases: ReadonlyArray<{ caseId: string; unitIds: readonly string[] }>): Promise<number> {
    if (engine.secondaryIndexes) return 0;
    const perUnit = new Map<string, string[]>();
    for (const { caseId, unitIds } of cases) for (const u of unitIds) perUnit.set(u, [...(perUnit.get(u) ?? []), caseId]);
    for (const chunk of chunksOf([...perUnit])) {
      await UnitCases.bulkWrite(chunk.map(([unitId, caseIds]) => ({ updateOne: { filter: { _id: unitId }, update: { $addToSet: { caseIds: { $each: caseIds } } }, upsert: true } })));
    }
    return perUnit.size;
  }

  /** Counter of `year`'s case numbers moved on by `n`: the last number reserved. */
  async function reserveNumbers(year: number, n: number): Promise<number> {
    const bump = () => Counter.findOneAndUpdate({ _id: `case-${year}` }, { $inc: { seq: n } }, { upsert: true, new: true }).lean();
    // Two first-of-the-year upserts may both insert: the loser's retry then increments.
    const counter = await bump().catch((err: unknown) => {
      if (isDuplicateKey(err)) return bump();
      throw err;
    });
    return counter!.seq;
  }

  const newCaseDoc = (c: NewCase) => ({ status: 'new', updatedAt: c.openedAt, ...c });

  return {
    caseById: readCase,

    /** Cases by id, in the order asked (missing ones left out). */
    casesByIds: (ids: readonly string[]) => existingByIds<StoredCase>(engine, Case as never, ids, { pendingEvents: 0 }),

    /** The next number of `year`'s sequence (1, 2, …), atomically. */
    nextCaseNumber: (year: number) => reserveNumbers(year, 1),

    /**
     * `n` consecutive numbers of `year`'s sequence in one atomic increment: the first of them.
     * Numbers reserved but not used (a crash, a key another process claimed first) are gaps
     * in the sequence, which case numbers allow: they identify, they do not count.
     */
    reserveCaseNumbers: async (year: number, n: number) => (await reserveNumbers(year, n)) - n + 1,

    async insertCase(c: NewCase) {
      await indexUnits([{ caseId: c._id, unitIds: c.unitIds }]);
      await Case.create(newCaseDoc(c));
      await noteChanged([c._id]);
    },

    /**
     * New cases in bulk, each already holding its key. The change log is left to the caller
     * (`noteCasesChanged`), so that one update of it covers every case a raise touched.
     */
    async insertCases(cases: readonly NewCase[]) {
      await indexUnits(cases.map((c) => ({ caseId: c._id, unitIds: c.unitIds })));
      for (const chunk of chunksOf(cases)) await Case.insertMany(chunk.map(newCaseDoc), { ordered: false });
    },

    /** After changes made by the bulk verbs: the queue's readers re-read these cases. */
    noteCasesChanged: (caseIds: readonly string[]) => noteChanged([...new Set(caseIds)]),

    // ----- "one open case per subject": keys with a unique `_id` -----

    /** The case under a key and when the key was claimed (null: no open case). */
    async caseUnderKey(key: string): Promise<{ caseId: string; claimedAt: Date | null } | null> {
      const found = await OpenCaseKey.findById(key).lean<{ caseId: string; claimedAt?: Date | null } | null>();
      return found ? { caseId: found.caseId, claimedAt: found.claimedAt ?? null } : null;
    },

    caseExists: async (caseId: string) => (await Case.exists({ _id: caseId })) !== null,

    /** The case under each key and when it was claimed, in the order asked (null: no open case). */
    openCaseKeys: async (keys: readonly string[]) =>
      (await byIds<{ _id: string; caseId: string; claimedAt?: Date | null }>(engine, OpenCaseKey as never, keys)).map((k) => (k ? { caseId: k.caseId, claimedAt: k.claimedAt ?? null } : null)),

    /** True when this call took the key; false when another case holds it. */
    async claimKey(key: string, caseId: string, claimedAt: Date): Promise<boolean> {
      try {
        await OpenCaseKey.create({ _id: key, caseId, claimedAt });
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    /** Claims keys in unordered bulk inserts: the keys another case holds already (not claimed). */
    async claimKeys(claims: ReadonlyArray<{ key: string; caseId: string }>, claimedAt: Date): Promise<string[]> {
      const taken: string[] = [];
      for (const chunk of chunksOf(claims)) {
        const refused = await duplicatesIn(() => OpenCaseKey.collection.insertMany(chunk.map((c) => ({ _id: c.key, caseId: c.caseId, claimedAt })) as never[], { ordered: false }));
        taken.push(...refused.map((i) => chunk[i]!.key));
      }
      return taken;
    },

    /** Drops a key still pointing at a case that closed under it. */
    dropStaleKey: (key: string, caseId: string) => OpenCaseKey.deleteOne({ _id: key, caseId }),

    /** A closed case's keys go; a merged one's point at the survivor. Few keys, and only on close or merge. */
    releaseKeys: (caseId: string) => OpenCaseKey.deleteMany({ caseId }),
    repointKeys: (caseId: string, toCaseId: string) => OpenCaseKey.updateMany({ caseId }, { $set: { caseId: toCaseId } }),

    // ----- changes -----

    /** Adds a source (and its subjects) to a case unless it closed meanwhile; false if it did. */
    async attachSource(caseId: string, source: CaseSource, subjects: { rules?: FlagRule; unitIds?: string; modelIds?: string; countries?: string }, line: HistoryLine, announce: readonly OutboxEvent[] = []): Promise<boolean> {
      if (subjects.unitIds) await indexUnits([{ caseId, unitIds: [subjects.unitIds] }]);
      const res = await Case.updateOne(
        { _id: caseId, status: { $ne: 'closed' } },
        {
          $push: { sources: source, history: line, ...(announce.length ? { pendingEvents: { $each: [...announce] } } : {}) },
          $addToSet: { sourceKinds: source.kind, ...subjects },
          $set: { updatedAt: line.at },
          $inc: { rev: 1 }, // a concurrent rewrite of the sources then fails its revision guard
        },
      );
      if (res.matchedCount === 1) await noteChanged([caseId]);
      return res.matchedCount === 1;
    },

    /**
     * Adds each attachment's sources to its case in one update guarded by the revision the
     * caller read (`sourcesOfCases`), sent as bulk commands. Returns the cases whose update may
     * not have applied (the case changed or closed meanwhile), for the caller to read again: a
     * bulk result does not say which filter missed.
     */
    async attachSources(attachments: readonly Attachment[]): Promise<string[]> {
      await indexUnits(attachments.map((a) => ({ caseId: a.caseId, unitIds: a.subjects.unitIds })));
      return guardedBulkWrite(
        Case.collection,
        attachments.map((a) => ({
          id: a.caseId,
          update: {
            filter: { _id: a.caseId, status: { $ne: 'closed' }, rev: a.rev ?? { $exists: false } },
            update: {
              $push: { sources: { $each: a.sources }, history: { $each: a.lines }, ...(a.announce.length ? { pendingEvents: { $each: a.announce } } : {}) },
              $addToSet: { sourceKinds: { $each: [...new Set(a.sources.map((s) => s.kind))] }, ...Object.fromEntries(Object.entries(a.subjects).filter(([, v]) => v.length).map(([field, values]) => [field, { $each: values }])) },
              $set: { updatedAt: a.lines.at(-1)!.at },
              $inc: { rev: 1 }, // a concurrent rewrite of the sources then fails its revision guard
            },
          },
        })),
      );
    },

    /** Whether each case is open, the ids of its sources and its revision (null: no such case), in the order asked. */
    async sourcesOfCases(caseIds: readonly string[]) {
      const found = await byIds<{ _id: string; status: CaseStatus; sources: CaseSource[]; rev?: number }>(engine, Case as never, caseIds, { status: 1, sources: 1, rev: 1 });
      return found.map((c) => (c ? { open: c.status !== 'closed', sourceIds: new Set(c.sources.map((s) => s.id)), rev: c.rev ?? null } : null));
    },

    /**
     * One change of a case as a single atomic update, if `guard` still holds: the change, a
     * history line, `updatedAt` and the revision. False when the guard no longer holds.
     */
    async changeCase(caseId: string, guard: CaseGuard, change: CaseChange, line: HistoryLine): Promise<boolean> {
      const update: UpdateQuery<CaseDoc> = {
        $set: { ...change.set, updatedAt: line.at },
        $inc: { rev: 1 },
        $push: { ...change.append, history: line, ...(change.announce?.length ? { pendingEvents: { $each: [...change.announce] } } : {}) },
      };
      const sets = Object.entries(change.addToSets ?? {});
      if (sets.length) update.$addToSet = Object.fromEntries(sets.map(([field, values]) => [field, { $each: values }]));
      if (change.removeFromSets) update.$pull = change.removeFromSets;
      if (change.addToSets?.unitIds) await indexUnits([{ caseId, unitIds: change.addToSets.unitIds as string[] }]);
      const res = await Case.updateOne(guardFilter(caseId, guard), update);
      if (res.matchedCount === 1) await noteChanged([caseId]);
      return res.matchedCount === 1;
    },

    // ----- webhook events written with the changes (the webhook job's outbox) -----

    /** Cases with webhook events waiting, and those events (the sparse index on MongoDB; the change log on the embedded engine). */
    pendingWebhookEvents: (limit: number): Promise<PendingCaseEvents[]> =>
      pendingEvents ? pendingEvents.read(limit) : Case.find(HAS_PENDING_EVENTS, PENDING_EVENTS_PROJECTION).limit(limit).lean<PendingCaseEvents[]>(),

    /**
     * Takes the events moved to the webhook outbox out of the case, unless the case changed
     * since they were read (every change that adds events bumps `rev`): those are moved on the
     * next run. The revision stays as it is, so an investigator's change in progress still
     * applies. (FerretDB v1 has no `$pull` by condition, hence the guard.)
     */
    async clearPendingWebhookEvents(caseId: string, revSeen: number | undefined): Promise<boolean> {
      const res = await Case.updateOne({ _id: caseId, rev: revSeen ?? { $exists: false } }, { $unset: { pendingEvents: '' } });
      return res.modifiedCount === 1;
    },

    // ----- reads of many cases -----

    /** A page of the queue, its size, and the counts per status under the same filters. */
    async queue(q: QueueQuery) {
      const inStatus = (s: string) => q.status === 'all' || (q.status === 'open' ? s !== 'closed' : s === q.status);
      const filter = queueFilter(q);
      let items: CaseRow[];
      let perStatus: Map<string, number>;
      if (queueRows) {
        const matching = await queueRows.find(filter, QUEUE_SORTS[q.sort]);
        perStatus = new Map();
        for (const c of matching) perStatus.set(c.status, (perStatus.get(c.status) ?? 0) + 1);
        items = matching.filter((c) => inStatus(c.status)).slice(q.skip, q.skip + q.limit);
      } else {
        const [found, grouped] = await Promise.all([
          Case.find({ ...filter, ...statusFilter(q.status) }, QUEUE_PROJECTION).sort(QUEUE_SORTS[q.sort]).skip(q.skip).limit(q.limit).lean(),
          Case.aggregate<{ _id: CaseStatus; n: number }>([{ $match: filter }, { $group: { _id: '$status', n: { $sum: 1 } } }]),
        ]);
        items = found as unknown as CaseRow[];
        perStatus = new Map(grouped.map((g) => [g._id, g.n]));
      }
      const counts = Object.fromEntries(CASE_STATUSES.filter((s) => perStatus.has(s)).map((s) => [s, perStatus.get(s)!])) as Partial<Record<CaseStatus, number>>;
      const total = CASE_STATUSES.filter(inStatus).reduce((sum, s) => sum + (perStatus.get(s) ?? 0), 0);
      return { items: items as unknown as QueueCase[], total, counts };
    },

    /** Every case, open or closed, naming this unit, oldest first. */
    async casesOfUnit(unitId: string) {
      if (engine.secondaryIndexes) return Case.find({ unitIds: unitId }, QUEUE_PROJECTION).sort({ openedAt: 1, _id: 1 }).lean();
      const caseIds = (await UnitCases.findById(unitId).lean())?.caseIds ?? [];
      const found = (await existingByIds<StoredCase>(engine, Case as never, caseIds, QUEUE_PROJECTION)).filter((c) => c.unitIds.includes(unitId));
      return found.sort((a, b) => a.openedAt.getTime() - b.openedAt.getTime() || (a._id < b._id ? -1 : 1));
    },

    /**
     * Rebuilds the UnitCases documents from one scan of the cases: for databases whose cases
     * were written before them or straight into the collection (the bench generator).
     */
    async rebuildUnitCases() {
      if (engine.secondaryIndexes) return 0;
      const cases: Array<{ caseId: string; unitIds: string[] }> = [];
      for await (const c of Case.find({}, { unitIds: 1 }).lean().cursor()) cases.push({ caseId: c._id, unitIds: c.unitIds });
      return indexUnits(cases);
    },

    /** Open, assigned cases with their deadlines, for the daily digest (a small, off-path scan). */
    openAssignedCases: () =>
      Case.find({ status: { $ne: 'closed' }, 'assigneeIds.0': { $exists: true } }, { title: 1, status: 1, deadlines: 1, assigneeIds: 1 }).lean(),

    /** Closed cases whose reporter data is due for deletion (a small, off-path scan). */
    async casesDueForRetention(closedBy: Date): Promise<string[]> {
      const due = await Case.find({ status: 'closed', closedAt: { $lte: closedBy }, 'retention.reporterDataDeletedAt': null }, { _id: 1 }).lean();
      return due.map((c) => c._id);
    },
  };
}

export type CasesStore = ReturnType<typeof createCasesStore>;
