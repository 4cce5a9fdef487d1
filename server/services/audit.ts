import crypto from 'node:crypto';
import type { Clock } from '../clock';
import type { Stores } from '../store';
import { auditEntryId } from '../store/audit';

export const GENESIS_HASH = '0'.repeat(64);

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

/** Writers that lost a sequence number back off a little, at random, so they stop colliding in step. */
const backOff = (attempt: number) => new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(2 + attempt, 25)));
/** Far more than any burst of concurrent writers needs: reaching it means the database is failing. */
const MAX_ATTEMPTS = 1000;

/** What the audit page filters by: who, which action, and a range of days (UTC, inclusive). */
export interface AuditFilters {
  actorId?: string;
  action?: string;
  from?: Date;
  to?: Date;
}

export function createAuditService(deps: { clock: Clock; stores: Pick<Stores, 'audit' | 'auth'> }) {
  const { clock } = deps;
  const store = deps.stores.audit;

  /**
   * A page of entries, newest first. The head says how many there are, and entry ids are
   * their sequence numbers, so a page is a handful of `_id` lookups however long the log.
   */
  async function newestEntries(page: { skip: number; limit: number }) {
    const total = (await store.head())?.seq ?? 0;
    const top = total - page.skip;
    const seqs = Array.from({ length: Math.max(0, Math.min(page.limit, top)) }, (_, i) => top - i);
    return { items: await store.entriesAt(seqs), total };
  }

  return {
    /**
     * Appends one entry to the chain; resolves with its sequence number. Writers in any number
     * of processes serialise through the database: entry N is inserted with `_id` N and the
     * hash of entry N-1, and only one insert of N succeeds. A loser reads the winner's entry
     * by `_id` and tries N+1 on top of it, so the chain never forks and never needs a lock.
     * The head document is only a shortcut to the tip; it may lag (a writer died between
     * inserting and moving it), which costs the next writer a collision, never a broken link.
     */
    async record(event: AuditEvent): Promise<number> {
      let tip = (await store.head()) ?? { seq: 0, hash: GENESIS_HASH };
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const seq = tip.seq + 1;
        const base = {
          seq,
          at: clock.now(),
          actorKind: event.actorKind,
          actorId: event.actorId ?? null,
          action: event.action,
          subjectKind: event.subjectKind,
          subjectId: event.subjectId,
          detail: event.detail ?? {},
          prevHash: tip.hash,
        };
        const hash = entryHash(base);
        if (await store.appendEntry({ ...base, hash })) {
          await store.advanceHead(seq, hash);
          return seq;
        }
        const taken = await store.entryAt(seq);
        // Inserted a moment ago by the winner, so it is there; re-read the head if not.
        tip = taken ? { seq: taken.seq, hash: taken.hash } : ((await store.head()) ?? tip);
        if (attempt > 0) await backOff(attempt);
      }
      throw new Error(`audit log: could not append after ${MAX_ATTEMPTS} attempts`);
    },

    list: newestEntries,

    /**
     * The audit page: entries under the filters (newest first), with the names of the people
     * who acted, and the staff to filter by. A user id the accounts no longer know shows as such.
     */
    async browse(filters: AuditFilters, page: { skip: number; limit: number }) {
      const filtered = Boolean(filters.actorId || filters.action || filters.from || filters.to);
      const to = filters.to ? new Date(filters.to.getTime() + 86_400_000) : undefined; // the whole last day
      const { items, total } = filtered ? await store.filteredEntries({ ...filters, to }, page) : await newestEntries(page);
      const userIds = [...new Set(items.filter((e) => e.actorKind === 'user' && e.actorId).map((e) => e.actorId!))];
      const [people, staff] = await Promise.all([deps.stores.auth.people(userIds), deps.stores.auth.staff()]);
      const names = new Map(people.map((p) => [String(p._id), p.name]));
      const actorName = (e: { actorKind: string; actorId?: string | null }) =>
        e.actorKind === 'user' ? (e.actorId ? (names.get(e.actorId) ?? 'a former user') : 'someone') : e.actorKind === 'api-key' ? `API key ${e.actorId ?? ''}`.trim() : e.actorKind === 'reporter' ? 'a reporter' : 'the system';
      return {
        items: items.map((e) => ({ ...e, actorName: actorName(e) })),
        total,
        staff: staff.map((u) => ({ id: String(u._id), name: u.name })),
      };
    },

    /** Walks the whole chain in order (streamed), checking every hash and link. */
    async verify(onProgress?: (checked: number) => void): Promise<VerifyResult> {
      let prevHash = GENESIS_HASH;
      let expectedSeq = 1;
      let checked = 0;
      for await (const e of store.entriesInOrder()) {
        const reason =
          e.seq !== expectedSeq
            ? `sequence gap: expected ${expectedSeq}, found ${e.seq}`
            : e._id !== auditEntryId(e.seq)
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
