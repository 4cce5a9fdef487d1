import type { FlagRule, FlagSourceKind } from '../../domain/flags';
import type { NewCase } from '../../store/cases';
import type { OutboxEvent } from '../../store/webhooks';
import { webhookEvent } from '../webhooks';
import type { CaseDeps } from './context';
import type { CaseNotices } from './notices';
import { flagDeadlines, reportDeadlines } from './rules';

/**
 * Opening cases: a raised flag or a misuse report opens a case, or joins the open case of the
 * same subject. "One open case per unit and rule" is a key with a unique `_id`
 * (`unit:<unitId>|<rule>`, `serial:<serial>|<rule>`, `unit:<unitId>|report`, `report:<id>`),
 * so of two concurrent openers in any processes one inserts the key and the other attaches.
 */

export interface CaseSubject {
  unitId?: string | null;
  modelId?: string | null;
  serial?: string | null;
  country?: string | null;
}

const subjectKey = (subject: CaseSubject) =>
  subject.unitId ? `unit:${subject.unitId}` : subject.serial ? `serial:${subject.serial}` : `model:${subject.modelId ?? 'none'}`;

/** A raised red flag, as its case records it. */
export type RaisedFlag = { id: string; rule: FlagRule; source: FlagSourceKind } & CaseSubject;

/** Flags of one key in one pass: the open case they join, if there is one. */
type KeyGroup = { key: string; caseId: string; flags: RaisedFlag[] };

/** How often a key's flags may find their case gone, unwritten yet or their key taken before a raise gives up. */
const OPENING_ROUNDS = 5;
/**
 * A key whose case is not there yet is an opener at work between claiming it and writing the
 * case (the next bulk command it sends, a few seconds at most under load): its flags wait for
 * it, a round later. Past this age the opener failed in between (its database connection lost,
 * or its process gone), and the key is dropped as stale. Every fold that names such a key fails
 * and is retried until then, so the grace is kept short: the soak test's database kills left
 * the check-in outbox stuck for the whole of a 60 s grace.
 */
export const OPENER_GRACE_MS = 15_000;
const OPENER_WAIT_MS = 100;

/** A key claimed this recently whose case is missing is an opener at work, not a stale key. */
const openerAtWork = (claimedAt: Date | null, now: Date) => !!claimedAt && now.getTime() - claimedAt.getTime() < OPENER_GRACE_MS;
/** Before each round after the first: a little longer each time, for an opener to write its case. */
const nextRound = (round: number) => (round ? new Promise((resolve) => setTimeout(resolve, OPENER_WAIT_MS * round)) : Promise.resolve());

const caseIdOf = (year: number, n: number) => `C-${year}-${String(n).padStart(6, '0')}`;

/** `C-2026-000123`: the year's counter, incremented atomically. */
export function caseNumbers(deps: Pick<CaseDeps, 'stores'>) {
  return async function nextCaseId(now: Date): Promise<string> {
    const year = now.getUTCFullYear();
    return caseIdOf(year, await deps.stores.cases.nextCaseNumber(year));
  };
}

const uniq = <T>(values: ReadonlyArray<T | null | undefined>) => [...new Set(values.filter((v): v is T => v != null))];

export function caseOpening(deps: Pick<CaseDeps, 'clock' | 'stores'>, notices: Pick<CaseNotices, 'opened' | 'reportAdded'>) {
  const { clock } = deps;
  const store = deps.stores.cases;
  const nextCaseId = caseNumbers(deps);

  /** Attaches a source to the open case under `key`, or opens one. */
  async function openOrAttach(
    key: string,
    source: { kind: 'flag' | 'report'; id: string; rule: FlagRule | null },
    subject: CaseSubject,
    init: { title: string; deadlines: { acknowledgeBy: Date | null; feedbackBy: Date | null; reviewBy: Date | null } },
    /** The webhook events of the source itself (flag.raised, report.received), written with the case. */
    announce: (caseId: string) => OutboxEvent[],
  ): Promise<{ caseId: string; opened: boolean }> {
    const now = clock.now();
    const sourceDoc = { ...source, at: now };
    const line = { at: now, byUserId: null, detail: `${source.kind} ${source.id}` };
    for (let round = 0; round < OPENING_ROUNDS; round++) {
      await nextRound(round);
      const under = await store.caseUnderKey(key);
      if (under) {
        const existing = under.caseId;
        const subjects = {
          ...(source.rule ? { rules: source.rule } : {}),
          ...(subject.unitId ? { unitIds: subject.unitId } : {}),
          ...(subject.modelId ? { modelIds: subject.modelId } : {}),
          ...(subject.country ? { countries: subject.country } : {}),
        };
        if (await store.attachSource(existing, sourceDoc, subjects, { ...line, action: 'source-added' }, announce(existing))) {
          if (source.kind === 'report') await notices.reportAdded(existing);
          return { caseId: existing, opened: false };
        }
        // Not open: an opener between claiming the key and writing its case (wait for it, as the
        // flag path does), or the case closed under us or its opener died: drop the stale key.
        const beingWritten = openerAtWork(under.claimedAt, now) && !(await store.caseExists(existing));
        if (!beingWritten) await store.dropStaleKey(key, existing);
        continue;
      }
      const caseId = await nextCaseId(now);
      if (!(await store.claimKey(key, caseId, now))) continue; // someone else opened it
      await store.insertCase({
        _id: caseId,
        title: init.title,
        sources: [sourceDoc],
        sourceKinds: [source.kind],
        rules: source.rule ? [source.rule] : [],
        unitIds: subject.unitId ? [subject.unitId] : [],
        modelIds: subject.modelId ? [subject.modelId] : [],
        countries: subject.country ? [subject.country] : [],
        deadlines: init.deadlines,
        openedAt: now,
        history: [{ ...line, action: 'opened' }],
        pendingEvents: [webhookEvent('case.opened', caseId, { caseId, openedAt: now.toISOString(), source: source.kind, rule: source.rule }, now), ...announce(caseId)],
      });
      await notices.opened(caseId, init.title, source.kind);
      return { caseId, opened: true };
    }
    throw new Error(`could not open or attach a case for ${key}`);
  }

  const raised = (flag: RaisedFlag, caseId: string, now: Date) =>
    webhookEvent('flag.raised', flag.id, { flagId: flag.id, rule: flag.rule, caseId, unitId: flag.unitId ?? null, modelId: flag.modelId ?? null, country: flag.country ?? null, source: flag.source, raisedAt: now.toISOString() }, now);
  const sourceOf = (flag: RaisedFlag, now: Date) => ({ kind: 'flag' as const, id: flag.id, rule: flag.rule, at: now });
  const lineOf = (flag: RaisedFlag, action: string, now: Date) => ({ at: now, byUserId: null, action, detail: `flag ${flag.id}` });
  const subjectsOf = (flags: readonly RaisedFlag[]) => ({
    rules: uniq(flags.map((f) => f.rule)),
    unitIds: uniq(flags.map((f) => f.unitId)),
    modelIds: uniq(flags.map((f) => f.modelId)),
    countries: uniq(flags.map((f) => f.country)),
  });

  /** A new case holding a key's flags, in order: the first opened it, the others joined. */
  function flagCase({ caseId, flags }: KeyGroup, now: Date): NewCase {
    const [first] = flags as [RaisedFlag];
    return {
      _id: caseId,
      title: `Red flag ${first.rule} on ${first.unitId ?? first.serial ?? first.modelId ?? 'unknown unit'}`,
      sources: flags.map((f) => sourceOf(f, now)),
      sourceKinds: ['flag'],
      ...subjectsOf(flags),
      deadlines: flagDeadlines(now),
      openedAt: now,
      history: flags.map((f, i) => lineOf(f, i ? 'source-added' : 'opened', now)),
      pendingEvents: [webhookEvent('case.opened', caseId, { caseId, openedAt: now.toISOString(), source: 'flag', rule: first.rule }, now), ...flags.map((f) => raised(f, caseId, now))],
    };
  }

  /**
   * Flags raised together (a fold of check-ins): each joins the open case of its unit (or
   * serial) and rule, or opens it, in a few bulk commands rather than half a dozen round
   * trips per flag, with the guarantees of `openOrAttach`: the key's unique `_id` keeps one
   * open case per key across processes; a case gains a flag, its subjects, history line and
   * `flag.raised` event in one guarded update; a flag already on its case (a raise replayed
   * after a crash) is not added again. Returns the case of each flag, in order.
   */
  async function openOrUpdateForFlags(flags: readonly RaisedFlag[]): Promise<string[]> {
    const now = clock.now();
    const year = now.getUTCFullYear();
    const caseOfFlag = new Map<string, string>();
    const changed: string[] = [];
    const settle = (caseId: string, settled: readonly RaisedFlag[]) => {
      for (const f of settled) caseOfFlag.set(f.id, caseId);
    };
    let pending = new Map<string, RaisedFlag[]>();
    for (const flag of flags) {
      const key = `${subjectKey(flag)}|${flag.rule}`;
      pending.set(key, [...(pending.get(key) ?? []), flag]);
    }
    for (let round = 0; pending.size; round++) {
      if (round === OPENING_ROUNDS) throw new Error(`could not open or attach cases for ${[...pending.keys()].join(', ')}`);
      await nextRound(round);
      const next = new Map<string, RaisedFlag[]>();
      const keys = [...pending.keys()];
      const under = await store.openCaseKeys(keys);

      // What the open cases hold already: a flag a replay finds on its case is not added again.
      const found = keys.flatMap((key, i) => (under[i] ? [{ key, ...under[i], flags: pending.get(key)! }] : []));
      const seen = await store.sourcesOfCases(found.map((g) => g.caseId));
      const joining: Array<KeyGroup & { rev: number | null }> = [];
      for (const [i, g] of found.entries()) {
        const held = seen[i];
        settle(g.caseId, g.flags.filter((f) => held?.sourceIds.has(f.id)));
        const rest = g.flags.filter((f) => !held?.sourceIds.has(f.id));
        if (!rest.length) continue;
        if (held?.open) {
          joining.push({ key: g.key, caseId: g.caseId, flags: rest, rev: held.rev });
          continue;
        }
        next.set(g.key, rest);
        const beingWritten = !held && openerAtWork(g.claimedAt, now);
        // The case closed, or its opener died before writing it: drop the stale key, open a new one.
        if (!beingWritten) await store.dropStaleKey(g.key, g.caseId);
      }

      const opening = keys.filter((_, i) => !under[i]);
      const claimed: KeyGroup[] = [];
      if (opening.length) {
        const first = await store.reserveCaseNumbers(year, opening.length);
        const claims = opening.map((key, i) => ({ key, caseId: caseIdOf(year, first + i), flags: pending.get(key)! }));
        // A key another process claimed first: its flags join that case in the next round.
        const taken = new Set(await store.claimKeys(claims, now));
        for (const c of claims) {
          if (taken.has(c.key)) next.set(c.key, c.flags);
          else claimed.push(c);
        }
      }

      const opened = claimed.map((g) => flagCase(g, now));
      // The claimed keys' cases first, so that other openers wait on them as briefly as can be; a
      // failure gives the keys back where it still can. One bulk command at a time: the embedded
      // engine holds a pooled connection per statement of every command in flight, and hangs once
      // they outnumber its pool (server/store/engine.ts).
      await store.insertCases(opened).catch(async (err: unknown) => {
        // Only keys whose case is not there: a bulk insert may have written some before it failed.
        await Promise.allSettled(claimed.map(async (g) => (await store.caseExists(g.caseId)) || store.dropStaleKey(g.key, g.caseId)));
        throw err;
      });
      const unsure = await store.attachSources(joining.map((g) => ({ caseId: g.caseId, rev: g.rev, sources: g.flags.map((f) => sourceOf(f, now)), subjects: subjectsOf(g.flags), lines: g.flags.map((f) => lineOf(f, 'source-added', now)), announce: g.flags.map((f) => raised(f, g.caseId, now)) })));
      for (const [i, c] of opened.entries()) {
        settle(c._id, claimed[i]!.flags);
        changed.push(c._id);
        await notices.opened(c._id, c.title, 'flag');
      }
      // An update a bulk result cannot vouch for (the case changed since it was read): the next
      // round reads what the case holds now.
      const suspects = new Set(unsure);
      for (const g of joining) {
        if (suspects.has(g.caseId)) next.set(g.key, g.flags);
        else {
          settle(g.caseId, g.flags);
          changed.push(g.caseId);
        }
      }
      pending = next;
    }
    await store.noteCasesChanged(changed);
    return flags.map((f) => caseOfFlag.get(f.id)!);
  }

  return {
    openOrUpdateForFlags,

    /**
     * A misuse report: attached to the open report case of the same unit, or a new case with
     * the Whistleblower Directive's deadlines.
     */
    openOrAttachForReport(report: { id: string; receivedAt: Date; title: string } & CaseSubject) {
      const key = report.unitId ? `unit:${report.unitId}|report` : `report:${report.id}`;
      // Only the case and the time: nothing of what the reporter wrote leaves the portal.
      const received = (caseId: string) => [webhookEvent('report.received', report.id, { caseId, receivedAt: report.receivedAt.toISOString() }, report.receivedAt)];
      return openOrAttach(key, { kind: 'report', id: report.id, rule: null }, report, { title: report.title, deadlines: reportDeadlines(report.receivedAt) }, received);
    },
  };
}
