import { AuditEntry, AuditHead } from '../../models/audit';
import { type Engine, isDuplicateKey, DUPLICATE_KEY } from './engine';

/** An entry as stored: its `_id` is its sequence number, zero-padded. */
export interface StoredAuditEntry {
  seq: number;
  at: Date;
  actorKind: 'user' | 'api-key' | 'system' | 'reporter';
  actorId: string | null;
  action: string;
  subjectKind: string;
  subjectId: string;
  detail: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export const auditEntryId = (seq: number) => String(seq).padStart(12, '0');

/**
 * The hash-chained audit log. Appending is a plain insert whose `_id` is the sequence number:
 * the unique `_id` lets exactly one writer, in any process, take each number.
 */
export function createAuditStore(engine: Engine) {
  return {
    /** The chain's tip as last recorded (it may lag behind the entries by a crashed writer). */
    head: () => AuditHead.findById('head').lean<{ seq: number; hash: string } | null>(),

    /** Inserts entry `seq`; false when another writer already took that number. */
    async appendEntry(entry: StoredAuditEntry): Promise<boolean> {
      try {
        await AuditEntry.create({ _id: auditEntryId(entry.seq), ...entry });
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    entryAt: (seq: number) => AuditEntry.findById(auditEntryId(seq)).lean(),

    /** Moves the tip forward (never back), creating it on the first append. */
    async advanceHead(seq: number, hash: string) {
      const moved = await AuditHead.updateOne({ _id: 'head', seq: { $lt: seq } }, { $set: { seq, hash } });
      if (moved.matchedCount === 0 && !(await AuditHead.exists({ _id: 'head' }))) {
        await AuditHead.create({ _id: 'head', seq, hash }).catch((err: { code?: number }) => {
          if (err.code !== DUPLICATE_KEY) throw err;
        });
      }
    },

    /** Entries by sequence number, in the order asked: one `$in` on MongoDB, `_id` reads on FerretDB. */
    async entriesAt(seqs: readonly number[]) {
      const ids = seqs.map(auditEntryId);
      const found = engine.secondaryIndexes
        ? await AuditEntry.find({ _id: { $in: ids } }).lean()
        : (await Promise.all(ids.map((id) => AuditEntry.findById(id).lean()))).filter((e) => e !== null);
      const byId = new Map(found.map((e) => [e._id, e]));
      return ids.map((id) => byId.get(id)).filter((e) => e !== undefined);
    },

    /**
     * A page of entries under filters, newest first. MongoDB answers from the indexes declared
     * on the model; FerretDB scans the log, which is acceptable only because filtering is an
     * admin's occasional look-up (the unfiltered page stays a handful of `_id` reads).
     */
    async filteredEntries(filters: { actorId?: string; action?: string; from?: Date; to?: Date }, page: { skip: number; limit: number }) {
      const query: Record<string, unknown> = {};
      if (filters.actorId) query.actorId = filters.actorId;
      if (filters.action) query.action = filters.action;
      if (filters.from || filters.to) query.at = { ...(filters.from ? { $gte: filters.from } : {}), ...(filters.to ? { $lt: filters.to } : {}) };
      const [items, total] = await Promise.all([AuditEntry.find(query).sort({ seq: -1 }).skip(page.skip).limit(page.limit).lean(), AuditEntry.countDocuments(query)]);
      return { items, total };
    },

    /** The whole chain in sequence order, streamed. */
    entriesInOrder: () => AuditEntry.find({}).sort({ seq: 1 }).lean().cursor(),
  };
}

export type AuditStore = ReturnType<typeof createAuditStore>;
