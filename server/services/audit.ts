import crypto from 'node:crypto';
import type { Clock } from '../clock';
import { AuditEntry, AuditHead } from '../../models/audit';

export const GENESIS_HASH = '0'.repeat(64);
const seqId = (seq: number) => String(seq).padStart(12, '0');

export interface AuditEvent {
  actorKind: 'user' | 'api-key' | 'system' | 'reporter';
  actorId?: string | null;
  action: string;
  subjectKind: string;
  subjectId: string;
  detail?: Record<string, unknown>;
}

/** Canonical JSON (sorted keys) so the hash does not depend on property order. */
function canonical(value: unknown): string {
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.keys(value as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

export function entryHash(entry: { seq: number; at: Date; actorKind: string; actorId: string | null; action: string; subjectKind: string; subjectId: string; detail: unknown; prevHash: string }): string {
  const { seq, at, actorKind, actorId, action, subjectKind, subjectId, detail, prevHash } = entry;
  return crypto
    .createHash('sha256')
    .update(canonical({ seq, at, actorKind, actorId, action, subjectKind, subjectId, detail, prevHash }))
    .digest('hex');
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  /** The first entry whose hash or link does not match, with why. */
  firstBroken: { seq: number; reason: string } | null;
}

export function createAuditService(deps: { clock: Clock }) {
  const { clock } = deps;
  // Appends from this process go one at a time, so they never race each other for a seq;
  // the unique `_id` still guards against other processes.
  let tail: Promise<unknown> = Promise.resolve();

  /**
   * The tip is read by `_id` (hot path stays an `_id` lookup on FerretDB). If a writer died
   * between inserting entry N and moving the head, the next append collides on N, reads that
   * entry by `_id`, moves the head forward and tries again.
   */
  async function head(): Promise<{ seq: number; hash: string }> {
    return (await AuditHead.findById('head').lean()) ?? { seq: 0, hash: GENESIS_HASH };
  }

  async function moveHead(seq: number, hash: string) {
    const moved = await AuditHead.updateOne({ _id: 'head', seq: { $lt: seq } }, { $set: { seq, hash } });
    if (moved.matchedCount === 0 && !(await AuditHead.exists({ _id: 'head' }))) {
      await AuditHead.create({ _id: 'head', seq, hash }).catch((err: { code?: number }) => {
        if (err.code !== 11000) throw err;
      });
    }
  }

  async function appendNow(event: AuditEvent) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const last = await head();
      const seq = last.seq + 1;
      const base = {
        seq,
        at: clock.now(),
        actorKind: event.actorKind,
        actorId: event.actorId ?? null,
        action: event.action,
        subjectKind: event.subjectKind,
        subjectId: event.subjectId,
        detail: event.detail ?? {},
        prevHash: last.hash,
      };
      const hash = entryHash(base);
      try {
        await AuditEntry.create({ _id: seqId(seq), ...base, hash });
        await moveHead(seq, hash);
        return seq;
      } catch (err) {
        if ((err as { code?: number }).code !== 11000) throw err;
        const taken = await AuditEntry.findById(seqId(seq), { seq: 1, hash: 1 }).lean();
        if (taken) await moveHead(taken.seq, taken.hash);
      }
    }
    throw new Error('audit log: could not append after 50 attempts');
  }

  return {
    /** Appends one entry to the chain; resolves with its sequence number. */
    record(event: AuditEvent): Promise<number> {
      const result = tail.then(() => appendNow(event));
      tail = result.catch(() => undefined);
      return result;
    },

    /**
     * A page of entries, newest first. The head says how many there are, and entry ids are
     * their sequence numbers, so a page is a handful of `_id` lookups however long the log.
     */
    async list(page: { skip: number; limit: number }) {
      const total = (await head()).seq;
      const top = total - page.skip;
      const seqs = Array.from({ length: Math.max(0, Math.min(page.limit, top)) }, (_, i) => top - i);
      const items = (await Promise.all(seqs.map((seq) => AuditEntry.findById(seqId(seq)).lean()))).filter((e) => e !== null);
      return { items, total };
    },

    /** Walks the whole chain in order (streamed), checking every hash and link. */
    async verify(onProgress?: (checked: number) => void): Promise<VerifyResult> {
      let prevHash = GENESIS_HASH;
      let expectedSeq = 1;
      let checked = 0;
      for await (const e of AuditEntry.find({}).sort({ seq: 1 }).lean().cursor()) {
        const reason =
          e.seq !== expectedSeq
            ? `sequence gap: expected ${expectedSeq}, found ${e.seq}`
            : e._id !== seqId(e.seq)
              ? 'id does not match sequence'
              : e.prevHash !== prevHash
                ? 'link to the previous entry is broken'
                : entryHash({ ...e, actorId: e.actorId ?? null }) !== e.hash
                  ? 'content does not match its hash (entry was changed)'
                  : null;
        if (reason) return { ok: false, checked, firstBroken: { seq: e.seq, reason } };
        prevHash = e.hash;
        expectedSeq++;
        checked++;
        if (onProgress && checked % 1000 === 0) onProgress(checked);
      }
      return { ok: true, checked, firstBroken: null };
    },
  };
}

export type AuditService = ReturnType<typeof createAuditService>;
