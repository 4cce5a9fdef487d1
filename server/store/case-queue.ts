import { Query } from 'mingo';
import type { FilterQuery } from 'mongoose';
import { Case, CaseChanges, type CaseDoc } from '../../models/cases';

/**
 * How many changed case ids the change log keeps; a reader further behind reloads every row
 * (about a second at 1,500 cases on the embedded engine). Enough for one check-in fold, which
 * raises its flags in bulk (1,600–1,800 cases touched per fold of 25,000 bench check-ins), so
 * the queue and the webhook job follow a fold without reading every case; about 40 KB.
 */
export const RECENT_CASE_CHANGES = 2_000;
/**
 * Rows older than this are read again even when the log says nothing changed: the safety net
 * for a case write whose log update was lost (a crash in between). A full read costs about a
 * second on the embedded engine, so it is rare; the log covers every write that completes.
 */
const MAX_ROW_AGE_MS = 10 * 60_000;
const CHANGE_LOG_ID = 'cases';

/**
 * Records that cases changed, after the changes themselves (so a reader never caches a write
 * not yet made): one update of the log for any number of cases, as `seq` counts the ids pushed.
 */
export async function noteCaseChanged(caseIds: readonly string[]): Promise<void> {
  if (!caseIds.length) return;
  await CaseChanges.updateOne({ _id: CHANGE_LOG_ID }, { $inc: { seq: caseIds.length }, $push: { recent: { $each: [...caseIds], $slice: -RECENT_CASE_CHANGES } } }, { upsert: true });
}

/**
 * A reader that wants the cases changed since it last looked (the webhook job, for the events
 * changes wrote into cases): their ids, or null when it must read them all (its first look,
 * fallen behind the log's window, or MAX_ROW_AGE_MS since its last full read: the same
 * safety net as the queue's rows). `forget` after a failed read makes the next look a full one.
 */
export function createCaseChangeFollower() {
  let seq = -1;
  let fullAt = 0;
  return {
    async changedSince(): Promise<string[] | null> {
      const log = await CaseChanges.findById(CHANGE_LOG_ID).lean();
      const currentSeq = log?.seq ?? 0;
      const recent = log?.recent ?? [];
      const behind = currentSeq - seq;
      const readAll = seq < 0 || behind < 0 || behind > recent.length || Date.now() - fullAt >= MAX_ROW_AGE_MS;
      seq = currentSeq;
      if (!readAll) return [...new Set(recent.slice(recent.length - behind))];
      fullAt = Date.now();
      return null;
    },
    forget: () => (seq = -1),
  };
}

type Row = Record<string, unknown> & { _id: string };
/** A case as the queue shows it, and the same with ids as strings for matching. */
type Entry = { doc: CaseRow; row: Row };
export type CaseRow = Record<string, unknown> & { _id: string; status: string };

/**
 * The case queue on an engine without secondary indexes (the embedded FerretDB). Measured
 * there at 1,500 cases: one scan of the cases takes 0.3–1.2 s (it decodes every document),
 * and the queue needs a page and the counts per status, against a 150 ms target; reads by
 * `_id` take a few ms. So each process keeps the queue's rows and, on every request, reads
 * the change log by `_id` and re-reads only the cases changed since, by `_id`. The rows
 * agree across instances because every instance follows the same log in the database.
 * The queue's filter and sort are the same MongoDB query the indexed path sends to the
 * database, evaluated over the rows by mingo (MongoDB's query language in memory).
 */
export function createCaseQueueRows(projection: Record<string, 0>) {
  let rows = new Map<string, Entry>();
  let seq = -1;
  let loadedAt = 0;
  let refreshing: Promise<void> | null = null;

  const toEntry = (doc: unknown): Entry => ({ doc: doc as CaseRow, row: normalise(doc) as Row });

  async function reloadAll(currentSeq: number) {
    const next = new Map<string, Entry>();
    for await (const doc of Case.find({}, projection).lean().cursor({ batchSize: 500 })) next.set(doc._id, toEntry(doc));
    rows = next;
    seq = currentSeq;
    loadedAt = Date.now();
  }

  async function refresh() {
    const log = await CaseChanges.findById(CHANGE_LOG_ID).lean();
    const currentSeq = log?.seq ?? 0;
    if (seq === currentSeq && Date.now() - loadedAt < MAX_ROW_AGE_MS) return;
    const behind = currentSeq - seq;
    const recent = log?.recent ?? [];
    if (seq < 0 || behind < 0 || behind > recent.length || Date.now() - loadedAt >= MAX_ROW_AGE_MS) return reloadAll(currentSeq);
    const changed = [...new Set(recent.slice(recent.length - behind))];
    const docs = await Promise.all(changed.map((id) => Case.findById(id, projection).lean()));
    changed.forEach((id, i) => {
      const doc = docs[i];
      if (doc) rows.set(id, toEntry(doc));
      else rows.delete(id);
    });
    seq = currentSeq;
  }

  return {
    /** The rows matching `filter`, sorted, as the database would answer the same query. */
    async find(filter: FilterQuery<CaseDoc>, sort: Record<string, 1 | -1>): Promise<CaseRow[]> {
      // Concurrent requests share one refresh.
      refreshing ??= refresh().finally(() => (refreshing = null));
      await refreshing;
      const current = rows;
      const found = new Query(normalise(filter) as Record<string, unknown>).find<Row>([...current.values()].map((e) => e.row)).sort(sort).all();
      return found.map((row) => current.get(row._id)!.doc);
    },
  };
}

/** ObjectIds as strings, in rows and filters alike, so mingo compares them by value. */
function normalise(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return value;
  if (Array.isArray(value)) return value.map(normalise);
  if ((value as { _bsontype?: string })._bsontype === 'ObjectId') return String(value);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v)]));
}
