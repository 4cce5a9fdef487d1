import type { Model } from 'mongoose';
import { Report, ReportKey, ReportLinkWait, UnclaimedEvidence, type ReportRecord as InferredReport } from '../../models/reports';
import type { WrappedKey } from '../crypto/envelope';
import type { LinkKind, Confidence, MessageKind, ReportParty, ReportStatus } from '../domain/reports';
import { byIds } from './by-ids';
import { type Engine, isDuplicateKey } from './engine';

/**
 * Misuse reports and the evidence files of report forms not yet sent. A report is one
 * document under `_id` = a keyed hash of its receipt, with its messages, evidence and links
 * embedded: every read the reporter or an investigator makes is an `_id` lookup, and every
 * change is one single-document update, guarded where a cap or a state must still hold, so
 * any number of app instances may write at once.
 *
 * Scans (any filter but `_id` on FerretDB; declared indexes on MongoDB) only off the request
 * path and never of the reports on a timer: the hourly unclaimed-evidence clean-up and a case
 * merge (rare, by hand). The reports waiting for the link pass are queued in a collection of
 * their own (ReportLinkWait), since filtering the reports for them cost 2–11 s per run on the
 * embedded engine at 500–2,400 reports, and grew with every report filed.
 */

/**
 * A wait whose report cannot be read is dropped only after this long: the wait is written
 * before its report, so a report still being filed must not lose it.
 */
const ORPHAN_WAIT_MS = 10 * 60_000;

/** A report as `.lean()` reads it back: its embedded arrays are plain arrays of plain objects. */
export type ReportRecord = Omit<InferredReport, 'evidence' | 'links' | 'messages'> & { evidence: NewEvidence[]; links: StoredLink[]; messages: StoredMessage[] };

export interface NewReport {
  _id: string;
  reporterKind: string;
  anonymous: boolean;
  contact: { name: string; organisation: string; email: string; newsByEmail?: boolean } | null;
  product: { serials: string[]; modelText: string; deviceDescription: string };
  where: { country: string; place: string };
  when: { from: Date | null; until: Date | null };
  what: { harmCategories: string[]; description: string; affected: string; ongoing: string };
  evidence: NewEvidence[];
  links: NewLink[];
  linking: 'pending' | 'done';
  status: ReportStatus;
  sealed: boolean;
  receivedAt: Date;
  updatedAt: Date;
}

export interface NewEvidence {
  fileId: string;
  sha256: string;
  mediaType: string;
  size: number;
  name: string;
  originalName: string | null;
  addedAt: Date;
  addedBy: ReportParty;
  addedByUserId: string | null;
  /** The file's key sealed by the report's data key; null: a file stored in the clear (before encryption at rest). */
  key: string | null;
}

export interface NewLink {
  kind: LinkKind;
  targetId: string;
  confidence: Confidence;
  reason: string;
}

/** null: not yet reviewed; true/false: an investigator confirmed or rejected it. */
export type StoredLink = NewLink & { confirmed: boolean | null; confirmedBy: string | null; confirmedAt: Date | null };

/** A message as stored (and as `.lean()` reads it back). */
export interface StoredMessage {
  _id: string;
  from: ReportParty;
  kind: MessageKind;
  userId: string | null;
  text: string;
  at: Date;
}

/** What retention leaves of a reporter's data. */
export interface ErasedTrace {
  at: Date;
  evidenceFiles: number;
  messages: number;
  evidenceSha256: string[];
}

/** What the link pass reads of a report. */
export type ReportToLink = Pick<ReportRecord, '_id' | 'links' | 'where' | 'linking'>;

export function createReportsStore(engine: Engine) {
  /** Deletes by `_id`: one `$in` on MongoDB, one `_id` equality each on FerretDB (its `$in` scans). */
  async function deleteByIds(model: Model<never>, ids: readonly string[]) {
    if (!ids.length) return;
    if (engine.secondaryIndexes) await model.collection.deleteMany({ _id: { $in: [...ids] } } as never);
    else await Promise.all(ids.map((id) => model.collection.deleteOne({ _id: id } as never)));
  }

  return {
    reportById: (reportId: string) => Report.findById(reportId).lean<ReportRecord>(),

    /** False when the `_id` is taken: a receipt collision, for the caller to draw again. */
    async insertReport(report: NewReport): Promise<boolean> {
      // The wait first: a crash between the two leaves a wait without a report (dropped by the
      // pass), never a pending report that no pass will find.
      if (report.linking === 'pending') await ReportLinkWait.updateOne({ _id: report._id }, { $setOnInsert: { queuedAt: report.receivedAt } }, { upsert: true });
      try {
        await Report.create(report);
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    /** Appends a message while the conversation is under `max`; false when full or gone. */
    async appendMessage(reportId: string, message: StoredMessage, max: number): Promise<boolean> {
      const updated = await Report.updateOne(
        { _id: reportId, messageCount: { $lt: max } },
        { $push: { messages: message }, $inc: { messageCount: 1 }, $set: { updatedAt: message.at } },
      );
      return updated.matchedCount === 1;
    },

    /** Appends evidence while the report stays at most `max` files and is not erased; false otherwise or gone. */
    async appendEvidence(reportId: string, refs: NewEvidence[], max: number, at: Date): Promise<boolean> {
      const updated = await Report.updateOne(
        { _id: reportId, erased: null, [`evidence.${max - refs.length}`]: { $exists: false } },
        { $push: { evidence: { $each: refs } }, $set: { updatedAt: at } },
      );
      return updated.matchedCount === 1;
    },

    /** False when there is no such report. */
    async setFeedback(reportId: string, feedback: { text: string; at: Date; byUserId: string }): Promise<boolean> {
      const updated = await Report.updateOne({ _id: reportId }, { $set: { feedback, updatedAt: feedback.at } });
      return updated.matchedCount === 1;
    },

    /** From `from` to `to`, guarded by `from`: of two racing changes one applies (true). */
    async changeStatus(reportId: string, from: ReportStatus, to: ReportStatus, at: Date, outcome: string | null = null): Promise<boolean> {
      const closure = to === 'closed' ? { closedAt: at, outcome } : { closedAt: null, outcome: null };
      const updated = await Report.updateOne({ _id: reportId, status: from }, { $set: { status: to, ...closure, updatedAt: at } });
      return updated.matchedCount === 1;
    },

    /** An investigator's verdict on the link at `index` (links never move, so an index names one). */
    async reviewLink(reportId: string, index: number, review: { confirmed: boolean; by: string; at: Date }) {
      await Report.updateOne(
        { _id: reportId },
        { $set: { [`links.${index}.confirmed`]: review.confirmed, [`links.${index}.confirmedBy`]: review.by, [`links.${index}.confirmedAt`]: review.at, updatedAt: review.at } },
      );
    },

    /** Retention: contact, messages and evidence go in one update; the trace stays. */
    async eraseReporterData(reportId: string, erased: ErasedTrace) {
      await Report.updateOne({ _id: reportId }, { $set: { contact: null, messages: [], messageCount: 0, evidence: [], erased, updatedAt: erased.at } });
    },

    // -- the linker's second step

    /** Reports whose linking step is still to run, oldest first, at most `limit`. */
    async pendingLinks(limit: number): Promise<string[]> {
      return (await ReportLinkWait.find({}, { _id: 1 }).sort({ queuedAt: 1, _id: 1 }).limit(limit).lean()).map((w) => w._id);
    },

    /**
     * The reports among `ids` still pending, with what the pass needs of them. Waits of reports
     * already done (a pass that stopped after finishing them) go; so do those whose report
     * never came, once ORPHAN_WAIT_MS old.
     */
    async reportsToLink(ids: readonly string[], now: Date): Promise<ReportToLink[]> {
      const found = await byIds<ReportToLink>(engine, Report as unknown as Model<never>, ids, { links: 1, where: 1, linking: 1 });
      const done = ids.filter((_, i) => found[i] && found[i]!.linking !== 'pending');
      const missing = ids.filter((_, i) => !found[i]);
      if (done.length) await ReportLinkWait.deleteMany({ _id: { $in: done } });
      if (missing.length) await ReportLinkWait.deleteMany({ _id: { $in: missing }, queuedAt: { $lt: new Date(now.getTime() - ORPHAN_WAIT_MS) } });
      return found.filter((r): r is ReportToLink => r !== null && r.linking === 'pending');
    },

    /**
     * Appends the pass's new links and marks the report done, guarded by `linking: 'pending'`:
     * of two passes finishing one report (two instances, or a lease that lapsed mid-pass) the
     * first applies and the second changes nothing, so no link is appended twice. False: done
     * already (or gone).
     */
    async finishLinking(reportId: string, fresh: NewLink[], at: Date): Promise<boolean> {
      const updated = await Report.updateOne({ _id: reportId, linking: 'pending' }, { $push: { links: { $each: fresh } }, $set: { linking: 'done', updatedAt: at } });
      await ReportLinkWait.deleteOne({ _id: reportId });
      return updated.matchedCount === 1;
    },

    // -- evidence of report forms not yet sent

    /** Files a form's first step stored: removed by the clean-up unless a report claims them. */
    async noteUnclaimedEvidence(fileIds: readonly string[], at: Date) {
      if (fileIds.length) await UnclaimedEvidence.insertMany(fileIds.map((_id) => ({ _id, storedAt: at })));
    },

    /** A filed report took these files. */
    claimEvidence: (fileIds: readonly string[]) => deleteByIds(UnclaimedEvidence as unknown as Model<never>, fileIds),

    /** Unclaimed files stored before `cutoff`, at most `limit` (a small collection: forms in flight). */
    async unclaimedEvidenceBefore(cutoff: Date, limit: number): Promise<string[]> {
      return (await UnclaimedEvidence.find({ storedAt: { $lt: cutoff } }, { _id: 1 }).limit(limit).lean()).map((u) => u._id);
    },

    /** Which of these files some report holds, whatever the unclaimed records say (hourly; a scan on FerretDB). */
    async evidenceHeldByReports(fileIds: readonly string[]): Promise<Set<string>> {
      if (!fileIds.length) return new Set();
      const holders = await Report.find({ 'evidence.fileId': { $in: [...fileIds] } }, { 'evidence.fileId': 1 }).lean();
      return new Set(holders.flatMap((r) => (r.evidence ?? []).map((e) => e.fileId)));
    },

    forgetUnclaimedEvidence: (fileId: string) => UnclaimedEvidence.deleteOne({ _id: fileId }).then(() => undefined),

    // -- data keys (encryption at rest)

    /** False when the `_id` is taken (a receipt collision: the report's `_id` is drawn again). */
    async insertReportKey(reportId: string, key: WrappedKey, at: Date): Promise<boolean> {
      try {
        await ReportKey.create({ _id: reportId, ...key, createdAt: at });
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    reportKeyById: (reportId: string) => ReportKey.findById(reportId, { keyId: 1, wrapped: 1 }).lean<WrappedKey & { _id: string }>(),

    /** Crypto-shredding: the report's texts and files can no longer be decrypted, wherever copies of them lie. */
    destroyReportKey: (reportId: string) => ReportKey.deleteOne({ _id: reportId }).then((r) => r.deletedCount === 1),

    /** Keys not yet under `keyId` (a rotation's work; one scan on FerretDB, the `keyId` index on MongoDB). */
    countKeysNotUnder: (keyId: string) => ReportKey.countDocuments({ keyId: { $ne: keyId } }),

    keysNotUnder: (keyId: string): AsyncIterable<WrappedKey & { _id: string }> => ReportKey.find({ keyId: { $ne: keyId } }, { keyId: 1, wrapped: 1 }).lean<Array<WrappedKey & { _id: string }>>().cursor({ batchSize: 200 }),

    /** Re-wrapped, guarded by the key it replaces: a second rotation run racing this one changes nothing twice. */
    async rewrapReportKey(reportId: string, from: WrappedKey, to: WrappedKey): Promise<boolean> {
      const updated = await ReportKey.updateOne({ _id: reportId, keyId: from.keyId, wrapped: from.wrapped }, { $set: to });
      return updated.matchedCount === 1;
    },

    // -- reports written in the clear (the encryption migration)

    countUnsealedReports: () => Report.countDocuments({ sealed: { $ne: true } }),

    /** One scan (FerretDB) or the `sealed` index (MongoDB); a migration's run, not a request's. */
    unsealedReports: (): AsyncIterable<ReportRecord> => Report.find({ sealed: { $ne: true } }).lean<ReportRecord[]>().cursor({ batchSize: 100 }),

    /**
     * Replaces a clear report's texts, messages and evidence with their sealed versions in one
     * update, guarded so that a message or file added meanwhile is never overwritten (false: read it again).
     */
    async sealReport(before: Pick<ReportRecord, '_id' | 'messageCount' | 'evidence'>, sealed: Pick<ReportRecord, 'contact' | 'product' | 'where' | 'what' | 'messages' | 'feedback' | 'outcome' | 'evidence'>): Promise<boolean> {
      const updated = await Report.updateOne(
        { _id: before._id, sealed: { $ne: true }, messageCount: before.messageCount ?? 0, [`evidence.${(before.evidence ?? []).length}`]: { $exists: false } },
        { $set: { ...sealed, sealed: true } },
      );
      return updated.matchedCount === 1;
    },

    // -- the case a report belongs to (written by case intake and the cases module)

    setCaseOfReport: (reportId: string, caseId: string) => Report.updateOne({ _id: reportId }, { $set: { caseId } }).then(() => undefined),

    /** A merged case's reports name the survivor (a `caseId` scan on FerretDB: merges are rare and by hand). */
    moveReportsToCase: (fromCaseId: string, toCaseId: string) => Report.updateMany({ caseId: fromCaseId }, { $set: { caseId: toCaseId } }).then(() => undefined),
  };
}

export type ReportsStore = ReturnType<typeof createReportsStore>;
