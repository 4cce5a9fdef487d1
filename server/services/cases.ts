import crypto from 'node:crypto';
import mongoose, { type FilterQuery, type UpdateQuery } from 'mongoose';
import type { Clock } from '../clock';
import type { Config } from '../config';
import { ConflictError, ForbiddenError, NotFoundError, ServiceUnavailableError, ValidationError } from '../errors';
import { User, type Role } from '../../models/auth';
import { Unit } from '../../models/catalogue';
import {
  Case,
  CASE_STATUSES,
  CaseQueueStamp,
  Counter,
  OpenCaseKey,
  RECENT_CASE_CHANGES,
  type ActionStatus,
  type CaseDoc,
  type CaseStatus,
  type ClosureReason,
  type HarmCategory,
  type Involvement,
  type LeverageActionKind,
  type PriorityLevel,
} from '../../models/cases';
import { Flag, type FlagRule } from '../../models/flags';
import { Report } from '../../models/reports';
import type { AuditService } from './audit';
import type { CheckInsService } from './check-ins';
import type { IncomingFile } from './files';

const DAY = 86_400_000;
/** EU Whistleblower Directive: acknowledge within 7 days, feedback within 3 months of that. */
export const ACKNOWLEDGE_WITHIN_DAYS = 7;
export const FEEDBACK_WITHIN_MONTHS = 3;
/** Flag-only cases get a review date instead, moved forward each time the case moves on. */
export const REVIEW_WITHIN_DAYS = 30;
/** How many linked units' timelines and flags the case page loads (the rest are listed). */
const PAGE_DETAIL_CAP = 20;

export function addMonths(date: Date, months: number): Date {
  const d = new Date(date);
  d.setUTCMonth(d.getUTCMonth() + months);
  return d;
}

export interface CaseSubject {
  unitId?: string | null;
  modelId?: string | null;
  serial?: string | null;
  country?: string | null;
}

// ---------------------------------------------------------------------------------------
// Rules as pure functions
// ---------------------------------------------------------------------------------------

/**
 * The workflow, encoded once. Leaving `closed` is reopening and needs a reason like every
 * other move; entering `closed` also needs a closure reason.
 */
export const TRANSITIONS: Readonly<Record<CaseStatus, readonly CaseStatus[]>> = {
  new: ['triaged', 'closed'],
  triaged: ['investigating', 'closed'],
  investigating: ['action', 'remediation', 'closed'],
  action: ['investigating', 'remediation', 'closed'],
  remediation: ['action', 'closed'],
  closed: ['investigating'],
};

export const canTransition = (from: CaseStatus, to: CaseStatus) => TRANSITIONS[from].includes(to);

export interface Severity {
  scale: number;
  scope: number;
  irremediable: number;
}

/**
 * UNGP prioritisation: severity first, likelihood second. `priority` is a sort key in which
 * any increase in severity outranks every likelihood (likelihood adds 0–3, severity steps 4),
 * so a severe but uncertain case comes before a likely but minor one.
 */
export function priorityOf(severity: Severity, likelihood: number): { priority: number; level: PriorityLevel; severity: number } {
  const total = severity.scale + severity.scope + severity.irremediable;
  // Grave and irreversible harm (loss of life, torture) is critical however few are affected.
  const effective = severity.scale === 4 && severity.irremediable === 4 ? Math.max(total, 10) : total;
  const level: PriorityLevel = effective >= 10 ? 'critical' : effective >= 8 ? 'high' : effective >= 6 ? 'medium' : 'low';
  return { priority: effective * 4 + (likelihood - 1), level, severity: total };
}

export interface Deadlines {
  acknowledgeBy?: Date | null;
  acknowledgedAt?: Date | null;
  feedbackBy?: Date | null;
  feedbackGivenAt?: Date | null;
  reviewBy?: Date | null;
}

export type OverdueKind = 'acknowledge' | 'feedback' | 'review';

/** Which deadlines an open case has missed at `now`. Closed cases are never overdue. */
export function overdueOf(c: { status: string; deadlines?: Deadlines | null }, now: Date): Array<{ kind: OverdueKind; due: Date }> {
  const d = c.deadlines ?? {};
  if (c.status === 'closed') return [];
  const late: Array<{ kind: OverdueKind; due: Date }> = [];
  if (d.acknowledgeBy && !d.acknowledgedAt && d.acknowledgeBy < now) late.push({ kind: 'acknowledge', due: d.acknowledgeBy });
  if (d.feedbackBy && !d.feedbackGivenAt && d.feedbackBy < now) late.push({ kind: 'feedback', due: d.feedbackBy });
  if (d.reviewBy && d.reviewBy < now) late.push({ kind: 'review', due: d.reviewBy });
  return late;
}

/** The same rule as `overdueOf`, as a database filter for the queue. */
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

export type RetentionDecision = 'keep' | 'hold' | 'delete' | 'done';

/**
 * Reporter data (contact details, messages, evidence) goes `months` after closure unless a
 * legal hold suspends it. The case itself stays, with a trace of what was deleted and when.
 */
export function retentionDecision(
  c: { status: string; closedAt?: Date | null; legalHold?: { on?: boolean | null } | null; retention?: { reporterDataDeletedAt?: Date | null } | null },
  now: Date,
  months: number,
): RetentionDecision {
  if (c.retention?.reporterDataDeletedAt) return 'done';
  if (c.status !== 'closed' || !c.closedAt || addMonths(c.closedAt, months) > now) return 'keep';
  return c.legalHold?.on ? 'hold' : 'delete';
}

/**
 * Whether a report names this person (their e-mail, or their full name as words): such an
 * investigator has a conflict of interest in the case.
 */
export function namesPerson(texts: readonly string[], person: { email: string; name: string }): boolean {
  const haystack = texts.join('\n').toLowerCase();
  if (person.email && haystack.includes(person.email.toLowerCase())) return true;
  const name = person.name.trim().toLowerCase().replace(/\s+/g, ' ');
  if (name.split(' ').length < 2) return false; // a lone first name is too common to mean this person
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/ /g, '\\s+');
  return new RegExp(`(^|[^\\p{L}])${escaped}($|[^\\p{L}])`, 'u').test(haystack);
}

/** Every string inside a value (a report as the reports service gives it). */
function stringsIn(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) stringsIn(v, out);
  else if (value && typeof value === 'object' && !(value instanceof Date)) for (const v of Object.values(value)) stringsIn(v, out);
  return out;
}

// ---------------------------------------------------------------------------------------
// Collaborators (built after this service: they open cases, so they come in lazily)
// ---------------------------------------------------------------------------------------

/** What cases need from the reporting channel (server/services/reports.ts). */
export interface ReportsPort {
  getReportForStaff(reportId: string): Promise<unknown>;
  listMessages(reportId: string): Promise<unknown>;
  postInvestigatorMessage(reportId: string, userId: string, text: string): Promise<unknown>;
  openEvidence(reportId: string, fileId: string): Promise<EvidenceFile>;
  deleteReporterData(reportId: string): Promise<unknown>;
  setStatus(reportId: string, status: ReporterStatus, userId?: string | null): Promise<unknown>;
  setFeedback(reportId: string, text: string, userId: string): Promise<unknown>;
  addInvestigatorEvidence(reportId: string, file: IncomingFile, userId: string): Promise<{ fileId: string }>;
  confirmLink(reportId: string, linkIndex: number, confirmed: boolean, userId: string): Promise<unknown>;
}

/** What the reporter sees of the case's progress on their follow-up page. */
export type ReporterStatus = 'received' | 'acknowledged' | 'under-investigation' | 'closed';

/** The case's status, as the reporter's follow-up page words it. */
export const reporterStatusOf = (status: CaseStatus): ReporterStatus | null =>
  status === 'closed' ? 'closed' : status === 'new' ? null : 'under-investigation';

export interface EvidenceFile {
  stream: NodeJS.ReadableStream;
  mediaType: string;
  size?: number | null;
  originalName?: string | null;
}

/** What cases need from registrations (server/services/registrations.ts). */
export interface RegistrationsPort {
  timeline(unitId: string): Promise<unknown>;
  setWarranty(registrationId: string, status: 'void', actor: { userId: string | null; caseId?: string }): Promise<unknown>;
}

export interface CasePeers {
  checkIns: Pick<CheckInsService, 'withholdUpdates' | 'liftWithholding'>;
  reports?: ReportsPort;
  registrations?: RegistrationsPort;
}

/** The signed-in person acting on a case. */
export interface Actor {
  id: string;
  role: Role;
}

export interface QueueFilters {
  status?: CaseStatus | 'open' | 'all';
  priority?: PriorityLevel;
  harm?: HarmCategory;
  country?: string;
  model?: string;
  assignee?: string;
  mine?: boolean;
  overdue?: boolean;
  source?: 'flag' | 'report';
  sort?: 'opened' | 'priority' | 'updated';
}

export interface TriageInput {
  harmCategories: HarmCategory[];
  scale: number;
  scope: number;
  irremediable: number;
  likelihood: number;
  involvement: Involvement;
  involvementRationale: string;
}

export interface TransitionInput {
  to: CaseStatus;
  reason: string;
  closureReason?: ClosureReason;
}

export interface ActionInput {
  kind: LeverageActionKind;
  customer?: string;
  channelPartner?: string;
  unitIds?: string[];
  dueBy?: Date | null;
  description?: string;
}

export interface ActionUpdate {
  status: ActionStatus;
  outcome?: string;
}

export interface RemediationInput {
  provided: string;
  toWhom: string;
  reporterFeedback?: string;
}

type LeanCase = NonNullable<Awaited<ReturnType<typeof loadCase>>>;
const loadCase = (id: string) => Case.findById(id).lean();

const oid = (id: string) => new mongoose.Types.ObjectId(id);
/** A report or timeline that is gone shows as absent; any other failure is a real error. */
const unlessMissing = (err: unknown): null => {
  if (err instanceof NotFoundError) return null;
  throw err;
};

/**
 * Runs changes to one key one after another in this process. Measured on the embedded
 * FerretDB v1: 20 concurrent `$inc`s on one document left 11, and guarded updates that all
 * matched overwrote each other, so a document update is not atomic under concurrency there.
 * Serialising each case's read-check-write here keeps the rules true for one app process
 * (the embedded set-up); on MongoDB the revision guard alone already suffices.
 */
function keyedLock() {
  const tails = new Map<string, Promise<unknown>>();
  return function locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const run = (tails.get(key) ?? Promise.resolve()).then(fn, fn);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    tails.set(key, tail);
    void tail.then(() => {
      if (tails.get(key) === tail) tails.delete(key);
    });
    return run;
  };
}
const newId = (prefix: string) => `${prefix}_${crypto.randomBytes(8).toString('hex')}`;
const has = (ids: readonly unknown[] | undefined, userId: string) => (ids ?? []).some((x) => String(x) === userId);

export const isAssignee = (c: { assigneeIds?: readonly unknown[] }, actor: Actor) => has(c.assigneeIds, actor.id);
export const isConflicted = (c: { conflictedUserIds?: readonly unknown[] }, userId: string) => has(c.conflictedUserIds, userId);

/** What the queue holds of a case (and what its items show): all but the long lists. */
const QUEUE_PROJECTION = { notes: 0, history: 0, remediation: 0, conflicts: 0 } as const;

/** A field that is an array of values (or, in older documents, one value) holds `value`: Mongo's equality on arrays. */
const holds = (field: unknown, value: string) => (Array.isArray(field) ? field.includes(value) : field === value);

/** Mongo's order: missing and null before any number or date. */
const sortKey = (v: Date | number | null | undefined) => (v === null || v === undefined ? -Infinity : typeof v === 'number' ? v : new Date(v).getTime());
const ascending = (a: Date | number | null | undefined, b: Date | number | null | undefined) => {
  const [x, y] = [sortKey(a), sortKey(b)];
  return x === y ? 0 : x < y ? -1 : 1;
};
const byId = (a: { _id: string }, b: { _id: string }) => (a._id === b._id ? 0 : a._id < b._id ? -1 : 1);

/** A value with its ObjectIds as hex strings (as JSON shows them): half the memory of a lean case. */
type IdsAsStrings<T> = T extends mongoose.Types.ObjectId
  ? string
  : T extends Date
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<IdsAsStrings<U>>
      : T extends object
        ? { [K in keyof T]: IdsAsStrings<T[K]> }
        : T;
function idsAsStrings<T>(value: T): IdsAsStrings<T> {
  if (value instanceof mongoose.Types.ObjectId) return value.toHexString() as IdsAsStrings<T>;
  if (Array.isArray(value)) return value.map(idsAsStrings) as IdsAsStrings<T>;
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, idsAsStrings(v)])) as IdsAsStrings<T>;
  }
  return value as IdsAsStrings<T>;
}

type QueueCase = { _id: string; openedAt?: Date | null; updatedAt?: Date | null; priority?: number | null };
/** The queue's sort orders, as the database sorted them (ties broken by case number). */
const QUEUE_SORTS: Record<NonNullable<QueueFilters['sort']>, (a: QueueCase, b: QueueCase) => number> = {
  opened: (a, b) => ascending(b.openedAt, a.openedAt) || byId(b, a),
  priority: (a, b) => ascending(b.priority, a.priority) || ascending(a.openedAt, b.openedAt) || byId(a, b),
  updated: (a, b) => ascending(b.updatedAt, a.updatedAt) || byId(b, a),
};

export function createCasesService(deps: { clock: Clock; config?: Pick<Config, 'retentionMonths'>; audit?: AuditService; peers?: () => CasePeers }) {
  const { clock } = deps;
  const locked = keyedLock();
  const retentionMonths = deps.config?.retentionMonths ?? 24;
  const peers = (): CasePeers => {
    if (!deps.peers) throw new ServiceUnavailableError('Case actions are not wired to the other services.');
    return deps.peers();
  };

  // ----- the queue's read model -----
  //
  // Measured on FerretDB v1 at scale 1 (2,200 cases): any scan of the cases collection costs
  // 1.2-1.8 s even when projecting `_id` alone (FerretDB decodes every document), and the
  // queue ran two (the page and the counts per status). An `_id` lookup costs ~2 ms. So each
  // process keeps the queue's rows (cases without notes, history, remediation and conflicts)
  // in memory, filters, counts, sorts and pages them there, and stays fresh by one `_id` read
  // of the version stamp per request (see CaseQueueStamp): cases this process wrote, and the
  // cases other processes wrote since the stamp it saw, are re-read by `_id`; a missing or
  // replaced stamp, or more changes than the stamp remembers, rebuilds the rows from one scan.

  type QueueRow = IdsAsStrings<LeanCase>;
  /** `byUnit`: case ids per unit id, so a unit's timeline does not filter every row (~0.6 ms a request at 1,500 cases). */
  type QueueModel = { epoch: string; seq: number; rows: Map<string, QueueRow>; byUnit: Map<string, Set<string>> };
  let queueModel: QueueModel | null = null;
  /** Cases this process changed and has not re-read yet: the queue shows its own writes at once. */
  const dirtyCases = new Set<string>();
  const STAMP_ID = 'cases';
  const readQueueCase = (id: string) => Case.findById(id, QUEUE_PROJECTION).lean();

  /** Keeps the newer of two reads of a case (`rev` grows with every change through this service). */
  function putRow(model: QueueModel, id: string, c: LeanCase | null) {
    const held = model.rows.get(id);
    if (c && held && (held.rev ?? 0) > (c.rev ?? 0)) return;
    for (const unitId of held?.unitIds ?? []) model.byUnit.get(unitId)?.delete(id);
    if (!c) return void model.rows.delete(id);
    const row = idsAsStrings(c);
    model.rows.set(id, row);
    for (const unitId of row.unitIds ?? []) {
      const ids = model.byUnit.get(unitId) ?? new Set<string>();
      model.byUnit.set(unitId, ids.add(id));
    }
  }

  async function rebuildQueue(seen: { epoch: string; seq: number } | null) {
    let stamp = seen;
    if (!stamp) {
      await CaseQueueStamp.create({ _id: STAMP_ID, epoch: crypto.randomBytes(8).toString('hex'), seq: 0, recent: [] }).catch((err: { code?: number }) => {
        if (err.code !== 11000) throw err; // another process created it first
      });
      stamp = await CaseQueueStamp.findById(STAMP_ID, { recent: 0 }).lean();
      if (!stamp) throw new Error('the case queue stamp could not be read back');
    }
    // Writes committed before this scan starts are in it; later ones mark themselves dirty again.
    dirtyCases.clear();
    const all = await Case.find({}, QUEUE_PROJECTION).lean();
    const model: QueueModel = { epoch: stamp.epoch, seq: stamp.seq, rows: new Map(), byUnit: new Map() };
    for (const c of all) putRow(model, c._id, c);
    queueModel = model;
    return model;
  }

  const syncQueue = keyedLock();
  /** The queue's rows, brought up to date: one `_id` read of the stamp, plus what changed. */
  function queueRows(): Promise<QueueModel> {
    return syncQueue('sync', async () => {
      const stamp = await CaseQueueStamp.findById(STAMP_ID).lean();
      const model = queueModel;
      const behind = model && stamp && stamp.epoch === model.epoch ? stamp.seq - model.seq : -1;
      if (!model || !stamp || behind < 0 || behind > stamp.recent.length) return rebuildQueue(stamp);
      const ids = [...new Set([...dirtyCases, ...(behind > 0 ? stamp.recent.slice(-behind) : [])])];
      dirtyCases.clear();
      try {
        for (let i = 0; i < ids.length; i += 20) {
          const chunk = ids.slice(i, i + 20);
          const fresh = await Promise.all(chunk.map(readQueueCase));
          chunk.forEach((id, k) => putRow(model, id, fresh[k] ?? null));
        }
      } catch (err) {
        for (const id of ids) dirtyCases.add(id);
        throw err;
      }
      model.seq = stamp.seq;
      return model;
    });
  }

  /**
   * Called after every write of a case: this process re-reads it on its next queue request,
   * and the stamp tells other processes. Concurrent calls share one stamp update.
   */
  let stampBatch: { ids: string[]; done: Promise<void> } | null = null;
  let stampTail: Promise<unknown> = Promise.resolve();
  function queueChanged(caseId: string): Promise<void> {
    dirtyCases.add(caseId);
    if (!stampBatch) {
      const batch: { ids: string[]; done: Promise<void> } = { ids: [], done: Promise.resolve() };
      batch.done = stampTail.then(async () => {
        if (stampBatch === batch) stampBatch = null; // from here on, new changes go in the next batch
        // No upsert: while the stamp is missing, every process rebuilds from a scan anyway.
        const stamp = await CaseQueueStamp.findOneAndUpdate(
          { _id: STAMP_ID },
          { $inc: { seq: batch.ids.length }, $push: { recent: { $each: batch.ids, $slice: -RECENT_CASE_CHANGES } } },
          { new: true }, // the whole (small) document: FerretDB v1 refuses a projection in findAndModify
        ).lean();
        // FerretDB v1 ignores `$slice` in `$push` (measured: 300 pushes kept 300), so trim here now
        // and then, guarded by `seq` so that a later change is never undone. (Several processes
        // share a MongoDB, where `$slice` works and this never runs.)
        if (stamp && stamp.recent.length > RECENT_CASE_CHANGES + 32) {
          await CaseQueueStamp.updateOne({ _id: STAMP_ID, seq: stamp.seq }, { $set: { recent: stamp.recent.slice(-RECENT_CASE_CHANGES) } });
        }
      });
      stampTail = batch.done.catch(() => undefined);
      stampBatch = batch;
    }
    stampBatch.ids.push(caseId);
    return stampBatch.done;
  }

  function nextCaseId(now: Date): Promise<string> {
    const year = now.getUTCFullYear();
    return locked(`counter:${year}`, async () => {
      const counter = await Counter.findOneAndUpdate({ _id: `case-${year}` }, { $inc: { seq: 1 } }, { upsert: true, new: true }).lean();
      return `C-${year}-${String(counter!.seq).padStart(6, '0')}`;
    });
  }

  /**
   * Attaches a source to the open case under `key`, or opens one. Uniqueness of the key's
   * `_id` decides races: of two concurrent openers, one inserts the key and the other attaches.
   */
  async function openOrAttach(
    key: string,
    source: { kind: 'flag' | 'report'; id: string; rule: FlagRule | null },
    subject: CaseSubject,
    init: { title: string; deadlines: { acknowledgeBy: Date | null; feedbackBy: Date | null; reviewBy: Date | null } },
  ): Promise<{ caseId: string; opened: boolean }> {
    const now = clock.now();
    const sourceDoc = { ...source, at: now };
    const addSubject = {
      sources: sourceDoc,
      sourceKinds: source.kind,
      ...(source.rule ? { rules: source.rule } : {}),
      ...(subject.unitId ? { unitIds: subject.unitId } : {}),
      ...(subject.modelId ? { modelIds: subject.modelId } : {}),
      ...(subject.country ? { countries: subject.country } : {}),
    };

    for (let attempt = 0; attempt < 3; attempt++) {
      const existing = await OpenCaseKey.findById(key).lean();
      if (existing) {
        const { sources, ...sets } = addSubject;
        const updated = await locked(existing.caseId, () => Case.updateOne(
          { _id: existing.caseId, status: { $ne: 'closed' } },
          {
            $push: { sources, history: { at: now, byUserId: null, action: 'source-added', detail: `${source.kind} ${source.id}` } },
            $addToSet: sets,
            $set: { updatedAt: now },
            $inc: { rev: 1 }, // a concurrent investigator edit of the sources then retries
          },
        ));
        if (updated.matchedCount === 1) {
          await queueChanged(existing.caseId);
          return { caseId: existing.caseId, opened: false };
        }
        // The case closed under us: drop the stale key and open a new case.
        await OpenCaseKey.deleteOne({ _id: key, caseId: existing.caseId });
        continue;
      }
      const caseId = await nextCaseId(now);
      try {
        await OpenCaseKey.create({ _id: key, caseId });
      } catch (err) {
        if ((err as { code?: number }).code === 11000) continue; // someone else opened it
        throw err;
      }
      await Case.create({
        _id: caseId,
        title: init.title,
        status: 'new',
        sources: [sourceDoc],
        sourceKinds: [source.kind],
        rules: source.rule ? [source.rule] : [],
        unitIds: subject.unitId ? [subject.unitId] : [],
        modelIds: subject.modelId ? [subject.modelId] : [],
        countries: subject.country ? [subject.country] : [],
        deadlines: init.deadlines,
        openedAt: now,
        updatedAt: now,
        history: [{ at: now, byUserId: null, action: 'opened', detail: `${source.kind} ${source.id}` }],
      });
      await queueChanged(caseId);
      return { caseId, opened: true };
    }
    throw new Error(`could not open or attach a case for ${key}`);
  }

  const subjectKey = (subject: CaseSubject) =>
    subject.unitId ? `unit:${subject.unitId}` : subject.serial ? `serial:${subject.serial}` : `model:${subject.modelId ?? 'none'}`;

  const reportDeadlines = (receivedAt: Date) => {
    const acknowledgeBy = new Date(receivedAt.getTime() + ACKNOWLEDGE_WITHIN_DAYS * DAY);
    // Provisional until acknowledged: then it runs from the acknowledgement.
    return { acknowledgeBy, feedbackBy: addMonths(acknowledgeBy, FEEDBACK_WITHIN_MONTHS), reviewBy: null };
  };

  async function getCase(id: string) {
    const found = await loadCase(id);
    if (!found) throw new NotFoundError('No such case.');
    return found;
  }

  /** Investigators and admins, for the assignee pickers (users are a small collection). */
  async function staffDirectory() {
    const people = await User.find({ role: { $in: ['investigator', 'admin'] }, disabled: { $ne: true } }, { name: 1, role: 1 }).sort({ name: 1 }).limit(500).lean();
    return people.map((u) => ({ id: String(u._id), name: u.name, role: u.role }));
  }

  // ----- access -----

  /** A case as this person may see it: conflicted investigators and customers get "no such case". */
  async function visibleCase(caseId: string, actor: Actor): Promise<LeanCase> {
    const found = await loadCase(caseId);
    if (!found || !['investigator', 'admin'].includes(actor.role) || isConflicted(found, actor.id)) throw new NotFoundError('No such case.');
    return found;
  }

  /** Changes are made by the case's investigators; admins may step in. */
  async function writableCase(caseId: string, actor: Actor): Promise<LeanCase> {
    const found = await visibleCase(caseId, actor);
    if (!isAssignee(found, actor) && actor.role !== 'admin') {
      throw new ForbiddenError('Only investigators assigned to this case can change it. Assign yourself first.');
    }
    return found;
  }

  /** Reporter identity, messages and evidence: only for the case's assigned investigators. */
  async function assignedCase(caseId: string, actor: Actor): Promise<LeanCase> {
    const found = await visibleCase(caseId, actor);
    if (!isAssignee(found, actor)) throw new ForbiddenError('Only investigators assigned to this case can see the reporter’s identity, messages and evidence.');
    return found;
  }

  const reportIdsOf = (c: LeanCase) => c.sources.filter((s) => s.kind === 'report').map((s) => s.id);

  function requireReportOf(c: LeanCase, reportId: string) {
    if (!reportIdsOf(c).includes(reportId)) throw new NotFoundError('No such report on this case.');
  }

  function reports(): ReportsPort {
    const r = peers().reports;
    if (!r) throw new ServiceUnavailableError('The reporting channel is not available.');
    return r;
  }

  // ----- writes -----

  const record = (actor: Actor | null, action: string, subjectId: string, detail: Record<string, unknown> = {}, subjectKind = 'case') =>
    deps.audit?.record({ actorKind: actor ? 'user' : 'system', actorId: actor?.id ?? null, action, subjectKind, subjectId, detail });

  /**
   * One investigator change: a single atomic update guarded by the revision read (so a stale
   * page cannot overwrite someone else's change), a history line and an audit entry.
   */
  async function apply(
    c: LeanCase,
    actor: Actor | null,
    update: UpdateQuery<CaseDoc>,
    what: { action: string; detail: string; audit?: Record<string, unknown>; guard?: FilterQuery<CaseDoc> },
  ) {
    const now = clock.now();
    const res = await Case.updateOne(
      { _id: c._id, rev: c.rev ?? 0, ...what.guard },
      {
        ...update,
        $set: { ...(update.$set ?? {}), updatedAt: now },
        $inc: { rev: 1 },
        $push: { ...(update.$push ?? {}), history: { at: now, byUserId: actor ? oid(actor.id) : null, action: what.action, detail: what.detail } },
      },
    );
    if (res.matchedCount === 0) throw new ConflictError('The case changed while you were working on it. Reload the page and try again.');
    await queueChanged(c._id);
    await record(actor, `case.${what.action}`, c._id, { detail: what.detail, ...what.audit });
  }

  async function investigator(userId: string, field: string) {
    const user = mongoose.isValidObjectId(userId) ? await User.findById(userId, { name: 1, email: 1, role: 1, disabled: 1 }).lean() : null;
    if (!user || user.disabled || !['investigator', 'admin'].includes(user.role)) {
      throw new ValidationError({ [field]: 'Choose an active investigator or admin.' });
    }
    return user;
  }

  /** Whether any report on the case names this person (then they may not work on it). */
  async function namedInReports(c: LeanCase, person: { email: string; name: string }): Promise<boolean> {
    const r = peers().reports;
    if (!r) return false;
    for (const reportId of reportIdsOf(c)) {
      const report = await r.getReportForStaff(reportId).catch(unlessMissing);
      if (report && namesPerson(stringsIn(report), person)) return true;
    }
    return false;
  }

  /** Tells the case's reporters (through their follow-up page), skipping reports retention cleared. */
  async function tellReporters(c: LeanCase, tell: (r: ReportsPort, reportId: string) => Promise<unknown>) {
    const r = peers().reports;
    if (!r) return;
    for (const reportId of reportIdsOf(c)) if (!c.retention?.deletedReportIds?.includes(reportId)) await tell(r, reportId);
  }

  function checkUnitsOfCase(c: LeanCase, unitIds: string[]) {
    const foreign = unitIds.filter((u) => !c.unitIds.includes(u));
    if (foreign.length) throw new ValidationError({ unitIds: `Not linked to this case: ${foreign.join(', ')}.` });
  }

  /** The leverage action's effect on units, when it is created (`on`) or stops being open. */
  async function applyEffect(caseId: string, action: { kind: string; target: { unitIds: string[] } }, on: boolean, actor: Actor) {
    const unitIds = action.target.unitIds;
    if (action.kind === 'withhold-updates') {
      const { checkIns } = peers();
      await (on ? checkIns.withholdUpdates(unitIds, caseId) : checkIns.liftWithholding(unitIds, caseId));
    } else if (action.kind === 'void-warranty' && on) {
      const registrations = peers().registrations;
      if (!registrations) throw new ServiceUnavailableError('Registrations are not available, so the warranty cannot be changed.');
      for (const registrationId of await registrationsOf(unitIds)) await registrations.setWarranty(registrationId, 'void', { userId: actor.id, caseId });
    }
  }

  async function registrationsOf(unitIds: string[]): Promise<string[]> {
    const ids: string[] = [];
    for (const _id of unitIds) {
      const unit = await Unit.findById(_id, { registrationId: 1 }).lean();
      if (!unit?.registrationId) throw new ValidationError({ unitIds: `${_id} has no registration whose warranty could be voided.` });
      ids.push(unit.registrationId);
    }
    return ids;
  }

  async function closeKeys(caseId: string, pointTo: string | null) {
    // Keys are few (one per open case and subject); this filter runs only on close/merge.
    if (pointTo) await OpenCaseKey.updateMany({ caseId }, { $set: { caseId: pointTo } });
    else await OpenCaseKey.deleteMany({ caseId });
  }

  // ----- queue -----

  /** The queue's filters (all but status) as a test of one row, exactly as the database filter was. */
  function queueMatch(filters: QueueFilters, actor: Actor, now: Date): (c: QueueRow) => boolean {
    const tests: Array<(c: QueueRow) => boolean> = [(c) => !isConflicted(c, actor.id)];
    const { priority, harm, country, model, source } = filters;
    if (priority) tests.push((c) => c.priorityLevel === priority);
    if (harm) tests.push((c) => holds(c.harmCategories, harm));
    if (country) tests.push((c) => holds(c.countries, country));
    if (model) tests.push((c) => holds(c.modelIds, model));
    if (source) tests.push((c) => holds(c.sourceKinds, source));
    const assignee = filters.mine ? actor.id : filters.assignee;
    if (assignee) {
      if (!mongoose.isValidObjectId(assignee)) throw new ValidationError({ assignee: 'Choose an investigator from the list.' });
      const id = oid(assignee).toHexString();
      tests.push((c) => has(c.assigneeIds, id));
    }
    if (filters.overdue) tests.push((c) => overdueOf(c, now).length > 0);
    return (c) => tests.every((t) => t(c));
  }

  return {
    // ----- used by flags and reports: signatures kept -----

    /** A raised red flag: one open case per unit (or serial) and rule; further hits add to it. */
    async openOrUpdateForFlag(flag: { id: string; rule: FlagRule } & CaseSubject) {
      const now = clock.now();
      const what = flag.unitId ?? flag.serial ?? flag.modelId ?? 'unknown unit';
      return openOrAttach(`${subjectKey(flag)}|${flag.rule}`, { kind: 'flag', id: flag.id, rule: flag.rule }, flag, {
        title: `Red flag ${flag.rule} on ${what}`,
        deadlines: { acknowledgeBy: null, feedbackBy: null, reviewBy: new Date(now.getTime() + REVIEW_WITHIN_DAYS * DAY) },
      });
    },

    /**
     * A misuse report: attached to the open report case of the same unit, or a new case with
     * the Whistleblower Directive's deadlines.
     */
    async openOrAttachForReport(report: { id: string; receivedAt: Date; title: string } & CaseSubject) {
      const key = report.unitId ? `unit:${report.unitId}|report` : `report:${report.id}`;
      return openOrAttach(key, { kind: 'report', id: report.id, rule: null }, report, {
        title: report.title,
        deadlines: reportDeadlines(report.receivedAt),
      });
    },

    getCase,

    // ----- investigators -----

    /**
     * Every case, open or closed, that names this unit, oldest first: from the queue's
     * in-memory rows (see "the queue's read model" above), so a unit timeline needs no scan
     * of the cases and no lookup per rule.
     */
    async casesOfUnit(unitIdValue: string) {
      const { rows, byUnit } = await queueRows();
      return [...(byUnit.get(unitIdValue) ?? [])].map((id) => rows.get(id)!).sort((a, b) => ascending(a.openedAt, b.openedAt) || byId(a, b));
    },

    /**
     * The queue: filters, counts per status, sorting and pages over the in-memory rows (see
     * "the queue's read model" above); the overdue badges are computed at `now`.
     */
    async queue(filters: QueueFilters, page: { skip: number; limit: number }, actor: Actor) {
      const now = clock.now();
      const matches = queueMatch(filters, actor, now);
      const s = filters.status ?? 'open';
      const inStatus = (status: string) => s === 'all' || (s === 'open' ? status !== 'closed' : status === s);
      const [{ rows }, staff] = await Promise.all([queueRows(), staffDirectory()]);
      const perStatus = new Map<string, number>();
      const hits: QueueRow[] = [];
      for (const c of rows.values()) {
        if (!matches(c)) continue;
        perStatus.set(c.status, (perStatus.get(c.status) ?? 0) + 1);
        if (inStatus(c.status)) hits.push(c);
      }
      hits.sort(QUEUE_SORTS[filters.sort ?? 'opened']);
      const counts = Object.fromEntries(CASE_STATUSES.filter((x) => perStatus.has(x)).map((x) => [x, perStatus.get(x)!])) as Partial<Record<CaseStatus, number>>;
      const items = hits.slice(page.skip, page.skip + page.limit);
      return { items: items.map((c) => ({ ...c, overdue: overdueOf(c, now) })), total: hits.length, counts, now, staff };
    },

    /** Everything the case page shows, for this person (never the reporter's identity). */
    async dossier(caseId: string, actor: Actor) {
      const c = await visibleCase(caseId, actor);
      const now = clock.now();
      const { reports: reportsPeer, registrations } = peers();
      const assigned = isAssignee(c, actor);
      const flagIds = c.sources.filter((s) => s.kind === 'flag').map((s) => s.id).slice(-PAGE_DETAIL_CAP);
      const flags = (await Promise.all(flagIds.map((id) => Flag.findById(id).lean()))).filter((f) => f !== null);
      const reports = await Promise.all(
        reportIdsOf(c).map(async (id) => {
          const deleted = c.retention?.deletedReportIds?.includes(id) ?? false;
          const report = reportsPeer && !deleted ? await reportsPeer.getReportForStaff(id).catch(unlessMissing) : null;
          return { id, deleted, report: report ? staffView(report, assigned) : null };
        }),
      );
      const timelines = registrations
        ? await Promise.all(c.unitIds.slice(0, PAGE_DETAIL_CAP).map(async (unitId) => ({ unitId, timeline: await registrations.timeline(unitId).catch(unlessMissing) })))
        : [];
      const units = await Promise.all(c.unitIds.slice(0, PAGE_DETAIL_CAP).map((id) => Unit.findById(id, { serial: 1, modelId: 1, controls: 1, current: 1, registrationId: 1 }).lean()));
      const userIds = new Set<string>([...c.assigneeIds, ...c.conflictedUserIds, ...c.notes.map((n) => n.byUserId), ...c.history.map((h) => h.byUserId)].filter(Boolean).map(String));
      const people = await User.find({ _id: { $in: [...userIds].map(oid) } }, { name: 1, email: 1, role: 1 }).lean();
      return {
        case: c,
        now,
        overdue: overdueOf(c, now),
        isAssigned: assigned,
        canWrite: assigned || actor.role === 'admin',
        next: TRANSITIONS[c.status as CaseStatus],
        flags,
        reports,
        timelines,
        units: units.filter((u) => u !== null),
        names: Object.fromEntries(people.map((p) => [String(p._id), p.name])) as Record<string, string>,
        staff: await staffDirectory(),
      };
    },

    triage(caseId: string, input: TriageInput, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        if (c.status === 'closed') throw new ConflictError('A closed case cannot be triaged. Reopen it first.', { status: 'The case is closed.' });
        const severity = { scale: input.scale, scope: input.scope, irremediable: input.irremediable };
        const { priority, level } = priorityOf(severity, input.likelihood);
        const now = clock.now();
        const advance = c.status === 'new';
        await apply(
          c,
          actor,
          {
            $set: {
              harmCategories: input.harmCategories,
              triage: { severity, likelihood: input.likelihood, involvement: input.involvement, involvementRationale: input.involvementRationale, at: now, byUserId: oid(actor.id) },
              priority,
              priorityLevel: level,
              ...(advance ? { status: 'triaged' } : {}),
            },
          },
          {
            action: 'triaged',
            detail: `priority ${level} (severity ${severity.scale}/${severity.scope}/${severity.irremediable}, likelihood ${input.likelihood}), ${input.involvement}${advance ? '; new → triaged' : ''}`,
            audit: { priority, level, harmCategories: input.harmCategories, involvement: input.involvement },
          },
        );
        return getCase(caseId);
      });
    },

    transition(caseId: string, input: TransitionInput, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        const from = c.status as CaseStatus;
        if (!canTransition(from, input.to)) {
          throw new ValidationError({ to: `A ${from} case cannot move to ${input.to}; it can move to ${TRANSITIONS[from].join(' or ')}.` });
        }
        if (input.to === 'triaged' && !c.triage) throw new ValidationError({ to: 'Record the triage (severity, likelihood, involvement) first.' });
        if (input.to === 'closed' && !input.closureReason) throw new ValidationError({ closureReason: 'Choose why the case is closed.' });
        const now = clock.now();
        const closing = input.to === 'closed';
        const reopening = from === 'closed';
        const reviewBy = c.deadlines?.reviewBy && !closing ? { 'deadlines.reviewBy': new Date(now.getTime() + REVIEW_WITHIN_DAYS * DAY) } : {};
        await apply(
          c,
          actor,
          { $set: { status: input.to, closureReason: closing ? input.closureReason : null, closedAt: closing ? now : null, ...reviewBy } },
          {
            action: reopening ? 'reopened' : 'status-changed',
            detail: `${from} → ${input.to}${closing ? ` (${input.closureReason})` : ''}: ${input.reason}`,
            audit: { from, to: input.to, reason: input.reason, closureReason: input.closureReason ?? null },
            guard: { status: from },
          },
        );
        if (closing) await closeKeys(caseId, null);
        const shown = reporterStatusOf(input.to);
        if (shown) await tellReporters(c, (r, reportId) => r.setStatus(reportId, shown, actor.id));
        return getCase(caseId);
      });
    },

    /** Report-sourced cases: receipt acknowledged; feedback is then due 3 months later. */
    acknowledge(caseId: string, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        if (!c.deadlines?.acknowledgeBy) throw new ValidationError({ acknowledge: 'Only cases with a report have a receipt to acknowledge.' });
        if (c.deadlines.acknowledgedAt) throw new ConflictError('The report was already acknowledged.', { acknowledge: 'Already acknowledged.' });
        const now = clock.now();
        await apply(c, actor, { $set: { 'deadlines.acknowledgedAt': now, 'deadlines.feedbackBy': addMonths(now, FEEDBACK_WITHIN_MONTHS) } }, { action: 'acknowledged', detail: 'receipt acknowledged to the reporter' });
        await tellReporters(c, (r, reportId) => r.setStatus(reportId, 'acknowledged', actor.id));
        return getCase(caseId);
      });
    },

    assign(caseId: string, userId: string, actor: Actor) {
      return locked(caseId, async () => {
        const c = await visibleCase(caseId, actor);
        const user = await investigator(userId, 'userId');
        if (isConflicted(c, userId)) throw new ValidationError({ userId: `${user.name} has a conflict of interest in this case and cannot be assigned.` });
        if (await namedInReports(c, user)) throw new ValidationError({ userId: `${user.name} is named in a report on this case and cannot be assigned.` });
        if (has(c.assigneeIds, userId)) throw new ConflictError(`${user.name} is already assigned.`, { userId: 'Already assigned.' });
        await apply(c, actor, { $addToSet: { assigneeIds: oid(userId) } }, { action: 'assigned', detail: user.name, audit: { userId } });
        return getCase(caseId);
      });
    },

    unassign(caseId: string, userId: string, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        if (!has(c.assigneeIds, userId)) throw new NotFoundError('That person is not assigned to this case.');
        await apply(c, actor, { $pull: { assigneeIds: oid(userId) } }, { action: 'unassigned', detail: userId, audit: { userId } });
        return getCase(caseId);
      });
    },

    /** Marks an investigator conflicted: unassigned, and the case disappears for them. */
    declareConflict(caseId: string, userId: string, reason: string, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        const user = await investigator(userId, 'conflictUserId');
        if (isConflicted(c, userId)) throw new ConflictError(`${user.name} is already marked conflicted.`, { conflictUserId: 'Already marked conflicted.' });
        await apply(
          c,
          actor,
          { $addToSet: { conflictedUserIds: oid(userId) }, $pull: { assigneeIds: oid(userId) }, $push: { conflicts: { userId: oid(userId), reason, at: clock.now(), byUserId: oid(actor.id) } } },
          { action: 'conflict-declared', detail: `${user.name}: ${reason}`, audit: { userId, reason } },
        );
        return getCase(caseId);
      });
    },

    addNote(caseId: string, text: string, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        const id = newId('note');
        await apply(c, actor, { $push: { notes: { _id: id, at: clock.now(), byUserId: oid(actor.id), text } } }, { action: 'note-added', detail: id, audit: { noteId: id } });
        return id;
      });
    },

    /** Records a leverage action; withholding and voiding take effect on the units at once. */
    addAction(caseId: string, input: ActionInput, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        if (c.status === 'closed') throw new ConflictError('Reopen the case to record a new action.', { kind: 'The case is closed.' });
        const unitIds = [...new Set(input.unitIds ?? [])];
        checkUnitsOfCase(c, unitIds);
        if ((input.kind === 'withhold-updates' || input.kind === 'void-warranty') && unitIds.length === 0) {
          throw new ValidationError({ unitIds: 'Choose the units (serials) this action applies to.' });
        }
        const now = clock.now();
        const action = {
          _id: newId('act'),
          kind: input.kind,
          target: { customer: input.customer ?? '', channelPartner: input.channelPartner ?? '', unitIds },
          status: 'open' as const,
          dueBy: input.dueBy ?? null,
          description: input.description ?? '',
          outcome: '',
          createdAt: now,
          createdByUserId: oid(actor.id),
          updatedAt: now,
        };
        if (input.kind === 'void-warranty') await registrationsOf(unitIds); // refuse before recording
        await apply(c, actor, { $push: { actions: action } }, { action: 'action-added', detail: `${action.kind} ${action._id}${unitIds.length ? ` on ${unitIds.join(', ')}` : ''}`, audit: { actionId: action._id, kind: action.kind, unitIds } });
        await applyEffect(caseId, action, true, actor);
        return action._id;
      });
    },

    /** Moves an action on (done, lifted, cancelled) with its outcome; leaving `open` ends its effect. */
    updateAction(caseId: string, actionId: string, input: ActionUpdate, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        const action = c.actions.find((a) => a._id === actionId);
        if (!action) throw new NotFoundError('No such action on this case.');
        if (action.status !== 'open' && input.status !== action.status) throw new ValidationError({ status: `This action is already ${action.status}.` });
        if (input.status === 'lifted' && action.kind !== 'withhold-updates') throw new ValidationError({ status: 'Only a withholding can be lifted; use done or cancelled.' });
        const now = clock.now();
        const actions = c.actions.map((a) => (a._id === actionId ? { ...a, status: input.status, outcome: input.outcome ?? a.outcome, updatedAt: now } : a));
        await apply(c, actor, { $set: { actions } }, { action: 'action-updated', detail: `${action.kind} ${actionId}: ${action.status} → ${input.status}`, audit: { actionId, kind: action.kind, from: action.status, to: input.status, outcome: input.outcome ?? '' } });
        if (action.status === 'open' && input.status !== 'open') await applyEffect(caseId, { kind: action.kind, target: { unitIds: action.target?.unitIds ?? [] } }, false, actor);
      });
    },

    addRemediation(caseId: string, input: RemediationInput, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        const now = clock.now();
        const id = newId('rem');
        const feedback = input.reporterFeedback ? { 'deadlines.feedbackGivenAt': now } : {};
        await apply(
          c,
          actor,
          { $push: { remediation: { _id: id, at: now, byUserId: oid(actor.id), provided: input.provided, toWhom: input.toWhom, reporterFeedback: input.reporterFeedback ?? '' } }, $set: feedback },
          { action: 'remediation-recorded', detail: `${input.provided.slice(0, 80)} → ${input.toWhom.slice(0, 80)}`, audit: { remediationId: id, feedbackGiven: Boolean(input.reporterFeedback) } },
        );
        const feedbackText = input.reporterFeedback;
        if (feedbackText) await tellReporters(c, (r, reportId) => r.setFeedback(reportId, feedbackText, actor.id));
        return id;
      });
    },

    /**
     * Folds a duplicate into `intoCaseId`: the survivor gains its sources and subjects, the
     * duplicate closes (reason: duplicate) and its open-case keys point at the survivor, so
     * further flags on those units attach there instead of reopening the duplicate.
     */
    merge(caseId: string, intoCaseId: string, reason: string, actor: Actor) {
      if (caseId === intoCaseId) throw new ValidationError({ intoCaseId: 'Choose another case to merge into.' });
      const [a, b] = [caseId, intoCaseId].sort() as [string, string];
      return locked(a, () => locked(b, async () => {
        const c = await writableCase(caseId, actor);
        const into = await visibleCase(intoCaseId, actor).catch((err: unknown) => {
          throw err instanceof NotFoundError ? new ValidationError({ intoCaseId: 'No such case.' }) : err;
        });
        if (c.status === 'closed') throw new ConflictError('This case is already closed.', { intoCaseId: 'This case is closed.' });
        if (into.status === 'closed') throw new ValidationError({ intoCaseId: 'That case is closed; reopen it or choose another.' });
        if (c.actions.some((a) => a.status === 'open' && a.kind === 'withhold-updates')) {
          throw new ConflictError('Lift or finish this case’s withholding first: it is tied to this case.', { intoCaseId: 'This case still withholds updates.' });
        }
        await apply(
          into,
          actor,
          {
            $addToSet: {
              sources: { $each: c.sources },
              sourceKinds: { $each: c.sourceKinds },
              rules: { $each: c.rules },
              unitIds: { $each: c.unitIds },
              modelIds: { $each: c.modelIds },
              countries: { $each: c.countries },
            },
          },
          { action: 'merged-in', detail: `${caseId}: ${reason}`, audit: { from: caseId, reason } },
        );
        await apply(
          c,
          actor,
          { $set: { status: 'closed', closureReason: 'duplicate', closedAt: clock.now(), mergedIntoCaseId: intoCaseId } },
          { action: 'merged', detail: `into ${intoCaseId}: ${reason}`, audit: { into: intoCaseId, reason }, guard: { status: c.status } },
        );
        await closeKeys(caseId, intoCaseId);
        // Flags and reports name their case; keep them pointing at the survivor (a scan of each
        // collection's caseId, off the hot path: merges are rare and by hand).
        await Flag.updateMany({ caseId }, { $set: { caseId: intoCaseId } });
        await Report.updateMany({ caseId }, { $set: { caseId: intoCaseId } });
        return intoCaseId;
      }));
    },

    /** A report attached to the wrong case becomes a case of its own. */
    split(caseId: string, reportId: string, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        const source = c.sources.find((s) => s.kind === 'report' && s.id === reportId);
        if (!source) throw new ValidationError({ reportId: 'Choose a report attached to this case.' });
        if (c.sources.length < 2) throw new ValidationError({ reportId: 'This is the case’s only source; there is nothing to split it from.' });
        const now = clock.now();
        const newCaseId = await nextCaseId(now);
        const deadlines = reportDeadlines(source.at);
        await Case.create({
          _id: newCaseId,
          title: `Report ${reportId} (split from ${caseId})`,
          status: 'new',
          sources: [source],
          sourceKinds: ['report'],
          deadlines,
          assigneeIds: c.assigneeIds,
          conflictedUserIds: c.conflictedUserIds,
          openedAt: now,
          updatedAt: now,
          history: [{ at: now, byUserId: oid(actor.id), action: 'opened', detail: `split from ${caseId}` }],
        });
        await queueChanged(newCaseId);
        await OpenCaseKey.create({ _id: `report:${reportId}`, caseId: newCaseId }).catch((err: { code?: number }) => {
          if (err.code !== 11000) throw err;
        });
        const stillHasReports = c.sources.some((s) => s.kind === 'report' && s.id !== reportId);
        await apply(
          c,
          actor,
          // $set of the filtered array rather than $pull by fields: FerretDB v1 cannot pull by a sub-document condition.
          { $set: { sources: c.sources.filter((s) => s !== source), sourceKinds: stillHasReports ? c.sourceKinds : c.sourceKinds.filter((k) => k !== 'report') } },
          { action: 'split', detail: `report ${reportId} → ${newCaseId}`, audit: { reportId, newCaseId } },
        );
        await Report.updateOne({ _id: reportId }, { $set: { caseId: newCaseId } });
        await record(actor, 'case.opened-by-split', newCaseId, { from: caseId, reportId });
        return newCaseId;
      });
    },

    setLegalHold(caseId: string, input: { on: boolean; reason: string }, actor: Actor) {
      return locked(caseId, async () => {
        const c = await writableCase(caseId, actor);
        if (Boolean(c.legalHold?.on) === input.on) throw new ConflictError(input.on ? 'The case is already on legal hold.' : 'The case is not on legal hold.', { holdReason: 'Nothing to change.' });
        await apply(
          c,
          actor,
          { $set: { legalHold: { on: input.on, reason: input.reason, at: clock.now(), byUserId: oid(actor.id) } } },
          { action: input.on ? 'legal-hold-placed' : 'legal-hold-released', detail: input.reason, audit: { reason: input.reason } },
        );
        return getCase(caseId);
      });
    },

    /** The reporters' contact details, for assigned investigators only; every view is logged. */
    async reporterContact(caseId: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      const r = reports();
      const contacts = [];
      for (const reportId of reportIdsOf(c)) {
        if (c.retention?.deletedReportIds?.includes(reportId)) continue;
        const report = await r.getReportForStaff(reportId).catch(unlessMissing);
        contacts.push({ reportId, contact: report ? identityOf(report) : null });
      }
      await record(actor, 'identity.viewed', c._id, { reportIds: contacts.map((x) => x.reportId) });
      return { case: c, contacts };
    },

    async postMessage(caseId: string, reportId: string, text: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      requireReportOf(c, reportId);
      const posted = await reports().postInvestigatorMessage(reportId, actor.id, text);
      await record(actor, 'case.message-posted', c._id, { reportId });
      return posted;
    },

    async messages(caseId: string, reportId: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      requireReportOf(c, reportId);
      return reports().listMessages(reportId);
    },

    /** Investigators add their own evidence to a report of the case (cleaned like the reporter's). */
    async addEvidence(caseId: string, reportId: string, files: IncomingFile[], actor: Actor) {
      const c = await assignedCase(caseId, actor);
      requireReportOf(c, reportId);
      if (!files.length) throw new ValidationError({ evidence: 'Choose a file to add.' });
      const added = [];
      for (const file of files) added.push(await reports().addInvestigatorEvidence(reportId, file, actor.id));
      await record(actor, 'case.evidence-added', c._id, { reportId, fileIds: added.map((f) => f.fileId) });
      return added;
    },

    /** Confirms or rejects the linker's proposed link of a report to a unit, model or registration. */
    async reviewLink(caseId: string, reportId: string, linkIndex: number, confirmed: boolean, actor: Actor) {
      const c = await writableCase(caseId, actor);
      requireReportOf(c, reportId);
      await reports().confirmLink(reportId, linkIndex, confirmed, actor.id);
      await record(actor, confirmed ? 'case.link-confirmed' : 'case.link-rejected', c._id, { reportId, linkIndex });
    },

    /** An evidence file of one of the case's reports, for its investigators; logged. */
    async openEvidence(caseId: string, reportId: string, fileId: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      requireReportOf(c, reportId);
      const file = await reports().openEvidence(reportId, fileId);
      await record(actor, 'evidence.downloaded', c._id, { reportId, fileId });
      return file;
    },

    /**
     * Deletes reporter data of cases closed longer than the retention period (unless on legal
     * hold), keeping the case and a dated trace. Scans closed cases: a small, off-path job.
     */
    async runRetention() {
      const now = clock.now();
      const cutoff = addMonths(now, -retentionMonths);
      const due = await Case.find({ status: 'closed', closedAt: { $lte: cutoff }, 'retention.reporterDataDeletedAt': null }, { _id: 1 }).lean();
      const counts = { checked: due.length, deleted: 0, held: 0, reports: 0 };
      for (const { _id } of due) {
        const decision = await locked(_id, async () => {
          const c = await loadCase(_id);
          const decided = c ? retentionDecision(c, now, retentionMonths) : 'done';
          if (!c || decided !== 'delete') return decided;
          const reportIds = reportIdsOf(c);
          for (const reportId of reportIds) await reports().deleteReporterData(reportId);
          await apply(c, null, { $set: { 'retention.reporterDataDeletedAt': now, 'retention.deletedReportIds': reportIds } }, {
            action: 'retention-deleted',
            detail: `reporter data of ${reportIds.length} report(s) deleted after ${retentionMonths} months`,
            audit: { reportIds, retentionMonths },
          });
          counts.reports += reportIds.length;
          return decided;
        });
        if (decision === 'hold') counts.held++;
        if (decision === 'delete') counts.deleted++;
      }
      return counts;
    },
  };
}

/** Contact fields a staff report may carry; shown only through `reporterContact`. */
const IDENTITY_KEYS = ['contact', 'reporterContact', 'identity', 'reporter'] as const;

function identityOf(report: unknown): Record<string, unknown> | null {
  const r = report as Record<string, unknown>;
  for (const k of IDENTITY_KEYS) if (r?.[k] && typeof r[k] === 'object') return r[k] as Record<string, unknown>;
  return null;
}

/** A report for the case page: never the identity; messages only for assigned investigators. */
function staffView(report: unknown, assigned: boolean): Record<string, unknown> {
  const copy = { ...(report as Record<string, unknown>) };
  for (const k of IDENTITY_KEYS) delete copy[k];
  if (!assigned) copy.messages = [];
  return copy;
}

export type CasesService = ReturnType<typeof createCasesService>;

/**
 * Starts the hourly retention job (closed cases' reporter data, and evidence no report
 * claimed); the timer never keeps the process alive.
 */
export function startRetentionSchedule(
  services: { cases: CasesService; reports: { removeUnclaimedEvidence(): Promise<{ removed: number; kept: number }> } },
  logger: { info(o: object, m: string): void; error(o: object, m: string): void },
  everyMs = 3_600_000,
) {
  const run = () =>
    Promise.all([
      services.cases.runRetention().then(
        (counts) => logger.info({ retention: counts }, 'retention run'),
        (err: unknown) => logger.error({ err }, 'retention run failed'),
      ),
      services.reports.removeUnclaimedEvidence().then(
        (counts) => logger.info({ unclaimedEvidence: counts }, 'unclaimed evidence removed'),
        (err: unknown) => logger.error({ err }, 'removing unclaimed evidence failed'),
      ),
    ]);
  const timer = setInterval(() => void run(), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
