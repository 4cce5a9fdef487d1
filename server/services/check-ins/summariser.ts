import type { Clock } from '../../clock';
import { checkInCountriesOf } from '../../domain/catalogue';
import { ingestFirst } from '../../concurrency';
import type { Logger } from '../../logger';
import { bucketId, periodOf, type BucketWrite, type CheckInHistoryStore } from '../../store/check-in-history';
import type { CheckInsStore, StoredBatch, SummaryWrite, UnitFacts } from '../../store/check-ins';
import type { RegistrationsStore } from '../../store/registrations';
import { unitId } from '../catalogue/codes';
import { knownCountries, SETTLED_AFTER_CHECK_INS, type FlagHit, type FlagsService } from '../flags';
import { checkInFlagId, type Entry } from './entries';
import { foldRuns, MAX_RUNS_PER_PERIOD } from './runs';

/**
 * The summariser: folds the outbox (CheckInBatch) into unit summaries, history buckets and
 * unknown-serial summaries in the background, several batches at a time so a unit seen in
 * many batches is written once, and raises the red flags the check-ins show.
 *
 * Every write is one guarded single-document update, so any number of processes may fold at
 * once: a document that changed under a fold is read and folded again. A fold repeated after
 * a crash adds nothing: units and buckets remember the batches folded into them, and flags
 * have ids derived from the check-in and rule.
 */

/** At most this many check-ins are folded together (bounds the summariser's memory). */
export const FOLD_MAX_CHECK_INS = 25_000;
/** …and at most this many batches (each document keeps the ids of the batches folded into it). */
const FOLD_MAX_BATCHES = 32;
/** A fold gives up (its batches stay in the outbox) when documents keep changing under it this often. */
const FOLD_ATTEMPTS = 3;
/** Batch ids a document remembers: more than a fold can hold, so a fold run again always sees its own. */
const BATCH_IDS_KEPT = 2 * FOLD_MAX_BATCHES;
/**
 * A batch whose log entries are not all written yet is folded once this old: its writer may
 * still be at work before, after that it died between the outbox and the end of the log.
 */
export const ABANDONED_WRITE_MS = 60_000;
/** /readyz's view of the outbox is re-read when this process has not looked for this long. */
const BACKLOG_REFRESH_MS = 2_000;
/** Folding gives way to ingest unless the oldest waiting batch has waited this long. */
export const SUMMARY_MAX_LAG_MS = 60_000;

type Fold = ReturnType<typeof foldRuns<Entry>>;
type Hit = { hit: FlagHit; checkInId: string; country: string };
type Raise = { hits: Hit[]; subject: { unitId: string | null; modelId: string | null; serial: string } };


const batchIdsAfter = (before: readonly string[] | undefined, entries: readonly Entry[]) => [...new Set([...(before ?? []), ...entries.map((e) => e.batchId)])].slice(-BATCH_IDS_KEPT);
const latestOf = (entries: readonly Entry[]) => entries.reduce((a, b) => (b.observedAt > a.observedAt ? b : a));

export interface SummaryBacklog {
  /** Batches waiting for the summariser as this process last saw the outbox, and their check-ins. */
  batches: number;
  checkIns: number;
  oldestReceivedAt: Date | null;
  /** Check-ins folded into summaries by this process since it started. */
  folded: number;
}

export interface SummariserDeps {
  clock: Clock;
  flags: FlagsService;
  logger?: Pick<Logger, 'error' | 'info'>;
  store: CheckInsStore;
  history: CheckInHistoryStore;
  registrations: Pick<RegistrationsStore, 'pendingTransferCountries'>;
  /** Units by item (SKU and serial), as ingest resolves them. */
  resolveUnits(items: ReadonlyArray<{ model?: string | null; serial: string }>): Promise<Array<UnitFacts | null>>;
}

export function createSummariser(deps: SummariserDeps) {
  const { clock, flags, logger, store, history } = deps;

  /** The outbox as this process last saw it (for /readyz), oldest first; `seen` bumps on every change. */
  let waiting = new Map<string, { receivedAt: Date; size: number }>();
  let seen = { version: 0, at: -Infinity };
  let refreshing: Promise<void> | null = null;
  let draining: Promise<boolean> | null = null;
  let folded = 0;
  /** Ingest calls in flight and when the last one ended: folding gives way to them (see drain). */
  const gate = ingestFirst(clock, SUMMARY_MAX_LAG_MS);

  const viewChanged = () => (seen = { version: seen.version + 1, at: performance.now() });

  /** Pending transfers' countries are only looked for when a run has already settled somewhere unannounced. */
  async function pendingTransferCountries(unit: UnitFacts): Promise<string[]> {
    return unit.status === 'transfer-pending' ? deps.registrations.pendingTransferCountries(unit._id) : [];
  }

  /** The rules a unit's new check-ins make start to hold, each with the check-in that showed it. */
  async function unitHits(unit: UnitFacts, fold: Fold, restricted: ReadonlySet<string>) {
    const hits: Hit[] = [];
    const add = (hit: FlagHit | null, checkIn: { id: string; country: string }) => hit && hits.push({ hit, checkInId: checkIn.id, country: checkIn.country });
    for (const { checkIn } of fold.started) {
      add(flags.rules.restrictedCountry(checkIn.country, restricted, 'check-in'), checkIn);
      add(flags.rules.countryMismatch(checkIn.country, unit.current?.country), checkIn);
      add(flags.rules.unregisteredCheckIn(unit, unit.serial, unit.modelId), checkIn);
    }
    for (const { checkIn, run } of fold.settled) {
      if (!flags.rules.unnotifiedTransfer(run, knownCountries(unit, []))) continue;
      add(flags.rules.unnotifiedTransfer(run, knownCountries(unit, await pendingTransferCountries(unit))), checkIn);
    }
    return hits;
  }

  /**
   * Every hit of the fold in one bulk raise (each subject's hits in order: a later one joins
   * the case an earlier one opened), then the log entries record what they raised, in bulk.
   * Raised one at a time, flags were 87-97 % of a fold's time (half a dozen round trips each,
   * every case write alone under the engine's write lock). A crash in between raises nothing
   * twice when the batch is folded again (the flags' ids), and records the rules then.
   */
  async function raiseEach(raises: readonly Raise[]) {
    const hits = raises.flatMap(({ hits, subject }) => hits.map(({ hit, checkInId, country }) => ({ checkInId, hit, subject: { ...subject, country } })));
    await flags.raiseMany(hits.map(({ hit, subject, checkInId }) => ({ hit, subject, source: { kind: 'check-in' as const, id: checkInId }, id: checkInFlagId(checkInId, hit.rule) })));
    const fired = new Map<string, string[]>();
    for (const { checkInId, hit } of hits) fired.set(checkInId, [...(fired.get(checkInId) ?? []), hit.rule]);
    await store.markLogFlags([...fired].map(([id, rules]) => ({ id, rules })));
  }

  /** Unknown serials: one small summary each; a hit when a run of them starts (first or new country). */
  async function unknownFold(key: string, all: Entry[], restricted: ReadonlySet<string>) {
    const known = await store.unknownSerial(key);
    const entries = all.filter((e) => !known?.batchIds?.includes(e.batchId));
    if (!entries.length) return { hits: [] as Hit[], write: null };
    const fold = foldRuns(known ? [{ country: known.lastCountry, count: known.count, firstAt: known.firstAt, lastAt: known.lastAt, firstFirmware: '', lastFirmware: known.lastFirmware }] : [], entries, Infinity);
    const latest = latestOf(entries);
    const hits: Hit[] = [];
    for (const { checkIn } of fold.started) {
      for (const hit of [flags.rules.unregisteredCheckIn(null, checkIn.serial, checkIn.model ?? ''), flags.rules.restrictedCountry(checkIn.country, restricted, 'check-in')]) {
        if (hit) hits.push({ hit, checkInId: checkIn.id, country: checkIn.country });
      }
    }
    const newer = !known || latest.observedAt >= known.lastAt;
    return {
      hits,
      write: {
        key,
        count: (known?.count ?? 0) + entries.length,
        batchIds: batchIdsAfter(known?.batchIds, entries),
        latest: newer ? { at: latest.observedAt, country: latest.country, firmware: latest.firmware } : null,
        first: { at: latest.observedAt, modelSku: entries[0]!.model ?? '', serial: entries[0]!.serial },
      },
    };
  }

  /**
   * The units' history buckets: each year a fold touches gets one guarded write with its runs
   * refolded; a bucket that changed under the fold is read and folded again. Entries a bucket
   * already holds (by batch) are skipped, so buckets written before a crash stay as they are.
   */
  async function foldHistory(groups: ReadonlyArray<{ unit: UnitFacts; entries: Entry[] }>) {
    let todo = new Map<string, { unitId: string; period: string; entries: Entry[] }>();
    for (const { unit, entries } of groups) {
      for (const e of entries) {
        const period = periodOf(e.observedAt);
        const id = bucketId(unit._id, period);
        const bucket = todo.get(id) ?? { unitId: unit._id, period, entries: [] };
        bucket.entries.push(e);
        todo.set(id, bucket);
      }
    }
    for (let attempt = 0; todo.size; attempt++) {
      if (attempt === FOLD_ATTEMPTS) throw new Error(`check-in history: ${todo.size} buckets kept changing during the fold`);
      const ids = [...todo.keys()];
      const buckets = await history.buckets(ids);
      const writes: BucketWrite[] = [];
      ids.forEach((id, i) => {
        const { unitId: unitIdValue, period, entries } = todo.get(id)!;
        const bucket = buckets[i];
        const fresh = entries.filter((e) => !bucket?.batchIds.includes(e.batchId));
        if (!fresh.length) return;
        writes.push({
          unitId: unitIdValue,
          period,
          countSeen: bucket?.count ?? 0,
          exists: !!bucket,
          added: fresh.length,
          runs: foldRuns(bucket?.runs ?? [], fresh, Infinity).runs.slice(-MAX_RUNS_PER_PERIOD),
          batchIds: batchIdsAfter(bucket?.batchIds, fresh),
        });
      });
      const conflicts = new Set(await history.write(writes));
      todo = new Map([...todo].filter(([id]) => conflicts.has(id)));
    }
  }

  /**
   * Folds each unit's new check-ins into its history and summary and raises what they show.
   * Flags and the history buckets go first, then the summary (which names the batches it
   * holds): a crash in between folds the batch again, the flags' ids make raising them again
   * a no-op and the buckets skip what they hold, whereas a summary written first would hide
   * the rest for good. Each summary write is guarded by the count it was computed from; a unit
   * another process folded into meanwhile is read and folded again for what it still lacks.
   */
  async function foldUnits(groups: Array<{ unit: UnitFacts; entries: Entry[] }>, restricted: ReadonlySet<string>, giveWay: () => Promise<void>) {
    let todo = groups;
    let written = 0;
    let refolded = 0;
    let flagged = 0;
    const ms = { flags: 0, history: 0, summaries: 0, gaveWay: 0 };
    const timed = async <T>(phase: keyof typeof ms, work: () => Promise<T>) => {
      const t0 = performance.now();
      try {
        return await work();
      } finally {
        ms[phase] += Math.round(performance.now() - t0);
      }
    };
    // Per unit, the last check-in country's move for the dashboard (recomputed when a unit is refolded).
    const moves = new Map<string, { modelId: string; from: string | null | undefined; to: string }>();
    for (let attempt = 0; todo.length; attempt++) {
      if (attempt === FOLD_ATTEMPTS) throw new Error(`check-in summaries: ${todo.length} units kept changing during the fold`);
      if (attempt) refolded += todo.length;
      const writes: SummaryWrite[] = [];
      const raises: Raise[] = [];
      for (const { unit, entries } of todo) {
        const summary = unit.checkIns;
        const fold = foldRuns(summary?.lastRun ? [summary.lastRun] : [], entries, SETTLED_AFTER_CHECK_INS);
        const latest = latestOf(entries);
        const newer = !summary?.lastAt || latest.observedAt >= summary.lastAt;
        writes.push({
          unitId: unit._id,
          countSeen: summary?.count ?? 0,
          count: (summary?.count ?? 0) + entries.length,
          lastRun: fold.runs.at(-1)!,
          countries: [...new Set([...checkInCountriesOf(summary), ...entries.map((e) => e.country)])].sort(),
          periods: [...new Set([...(summary?.periods ?? []), ...entries.map((e) => periodOf(e.observedAt))])].sort(),
          batchIds: batchIdsAfter(summary?.batchIds, entries),
          latest: newer ? { at: latest.observedAt, country: latest.country, firmware: latest.firmware } : null,
        });
        moves.delete(unit._id);
        if (newer && latest.country !== summary?.lastCountry) moves.set(unit._id, { modelId: unit.modelId, from: summary?.lastCountry, to: latest.country });
        const hits = await unitHits(unit, fold, restricted);
        if (hits.length) raises.push({ hits, subject: { unitId: unit._id, modelId: unit.modelId, serial: unit.serial } });
        flagged += hits.length;
      }
      // Both bulk-written, one after the other: the embedded engine holds a pooled connection
      // per statement of every command in flight and hangs once they outnumber its pool (a fold
      // raising its flags beside the history buckets did).
      // Between phases (seconds each) the fold waits for ingest requests to pass, as it does
      // before it starts: a fold begun in a lull would otherwise take the engine from them.
      await timed('gaveWay', giveWay);
      await timed('flags', () => raiseEach(raises));
      await timed('gaveWay', giveWay);
      await timed('history', () => foldHistory(todo));
      await timed('gaveWay', giveWay);
      const conflicts = new Set(await timed('summaries', () => store.writeSummaries(writes)));
      written += writes.length - conflicts.size;
      if (!conflicts.size) break;
      // Someone else folded into some of these units: fold again what each still lacks.
      const stale = todo.filter(({ unit }) => conflicts.has(unit._id));
      const fresh = await store.unitFacts(stale.map(({ unit }) => unit._id));
      todo = stale.flatMap(({ entries }, i) => {
        const unit = fresh[i];
        const missing = unit ? entries.filter((e) => !unit.checkIns?.batchIds?.includes(e.batchId)) : [];
        return unit && missing.length ? [{ unit, entries: missing }] : [];
      });
    }
    await store.tallyLastCountryMoves([...moves.values()]);
    return { written, refolded, flags: flagged, ms };
  }

  /**
   * The entries a batch stored in the log, or null while its writer may still be at work: a
   * batch is complete once every entry it names is in the log (stored by this batch, or by an
   * earlier one as a duplicate), or once ABANDONED_WRITE_MS old (its writer died between the
   * outbox and the end of the log). Only the entries this batch stored are its own.
   */
  async function storedEntriesOf(batches: StoredBatch[]): Promise<Map<string, Entry[] | null>> {
    const result = new Map<string, Entry[] | null>();
    const readable = batches.filter((batch) => {
      if (Array.isArray(batch.logIds) && batch.logIds.every((id) => typeof id === 'string')) return true;
      // Left in the outbox for someone to look at; the batches behind it go on.
      logger?.error({ batchId: batch._id }, 'check-in summaries: unreadable batch left in the outbox');
      return false;
    });
    const logged = await store.loggedEntries(readable.flatMap((batch) => batch.logIds));
    const now = clock.now().getTime();
    let next = 0;
    for (const batch of readable) {
      const entries = logged.slice(next, (next += batch.logIds.length));
      const complete = entries.every((e) => e !== null);
      const abandoned = now - batch.receivedAt.getTime() > ABANDONED_WRITE_MS;
      if (!complete && !abandoned) {
        result.set(batch._id, null);
        continue;
      }
      // An event id repeated within the batch is one log entry, named twice: folded once.
      const own = new Map(entries.flatMap((e) => (e && e.batchId === batch._id ? [[e._id, e] as const] : [])));
      result.set(batch._id, [...own.values()].map((e) => ({ id: e._id, batchId: batch._id, serial: e.serial, model: e.modelSku || null, unitId: e.unitId, firmware: e.firmware, observedAt: e.observedAt, country: e.country })));
    }
    return result;
  }

  /** Folds the entries of stored batches into unit and unknown-serial summaries, raises their flags, then deletes the batches. */
  async function fold(batchIds: string[], entries: Entry[], oldest: Date) {
    const giveWay = () => gate.giveWay(oldest);
    const started = Date.now();
    const phases: Record<string, number> = {};
    const lap = (name: string) => (phases[name] = Date.now() - started - Object.values(phases).reduce((a, b) => a + b, 0));
    const resolved = await deps.resolveUnits(entries);
    lap('read');
    // The log names the unit ingest guessed from SKU and serial; correct the few it got wrong.
    const corrections = entries.flatMap((e, i) => {
      const unit = resolved[i];
      return (unit?._id ?? null) !== e.unitId ? [{ id: e.id, unitId: unit?._id ?? null, modelSku: unit?.modelId ?? e.model ?? '' }] : [];
    });
    await store.correctLogUnits(corrections);
    lap('corrections');

    const perUnit = new Map<string, { unit: UnitFacts; entries: Entry[] }>();
    const perUnknown = new Map<string, Entry[]>();
    entries.forEach((e, i) => {
      const unit = resolved[i];
      if (!unit) {
        const key = unitId(e.model || '-', e.serial);
        perUnknown.set(key, [...(perUnknown.get(key) ?? []), e]);
      } else if (!unit.checkIns?.batchIds?.includes(e.batchId)) {
        const group = perUnit.get(unit._id) ?? { unit, entries: [] };
        group.entries.push(e);
        perUnit.set(unit._id, group);
      }
    });

    const restricted = await flags.restrictedCountries();
    // Each unknown serial reads its own summary: in parallel (one `_id` read each).
    const unknown = await Promise.all([...perUnknown].map(async ([key, mine]) => ({ mine, ...(await unknownFold(key, mine, restricted)) })));
    const unknownRaises: Raise[] = unknown.flatMap(({ mine, hits }) => (hits.length ? [{ hits, subject: { unitId: null, modelId: mine[0]!.model || null, serial: mine[0]!.serial } }] : []));
    lap('rules');
    // Unknown serials open or join their own cases (by serial), after the units' (bulk writes go
    // one at a time, as in foldUnits). Each summary is written after its flags, as a unit's is.
    const unknownWrites = unknown.flatMap(({ write }) => (write ? [write] : []));
    const units = await foldUnits([...perUnit.values()], restricted, giveWay);
    await raiseEach(unknownRaises);
    await store.writeUnknownSerials(unknownWrites);
    lap('units');
    await store.deleteBatches(batchIds);
    folded += entries.length;
    logger?.info({ batches: batchIds.length, checkIns: entries.length, units: units.written, refolded: units.refolded, unknown: unknownWrites.length, corrections: corrections.length, flags: units.flags + unknownRaises.reduce((n, r) => n + r.hits.length, 0), ms: Date.now() - started, phases, unitPhases: units.ms }, 'check-in summaries: folded');
  }


  /**
   * One pass over the outbox as the database holds it, up to FOLD_MAX_CHECK_INS check-ins per
   * fold, oldest first. Resolves whether batches were waiting (the job then comes back soon).
   */
  async function drain(defaultSize: number): Promise<boolean> {
    const rows = await store.waitingBatches();
    waiting = new Map(rows.map((r) => [r._id, { receivedAt: r.receivedAt, size: r.size ?? defaultSize }]));
    viewChanged();
    const queue = [...waiting.keys()];
    while (queue.length) {
      await gate.giveWay(waiting.get(queue[0]!)!.receivedAt);
      const take: string[] = [];
      let size = 0;
      for (const id of queue) {
        const p = waiting.get(id)!;
        if (take.length && (size + p.size > FOLD_MAX_CHECK_INS || take.length >= FOLD_MAX_BATCHES)) break;
        take.push(id);
        size += p.size;
      }
      queue.splice(0, take.length);
      try {
        const docs = (await store.batches(take)).filter((b): b is StoredBatch => !!b);
        const stored = await storedEntriesOf(docs);
        const ready = docs.filter((b) => stored.get(b._id));
        if (ready.length) await fold(ready.map((b) => b._id), ready.flatMap((b) => stored.get(b._id)!), waiting.get(take[0]!)!.receivedAt);
      } catch (err) {
        // They stay in the outbox and the next pass folds them again; one bad fold must not
        // hold up the batches behind it.
        logger?.error({ err, batchIds: take }, 'check-in summaries: fold failed; the batches stay in the outbox for the next sweep');
      }
      for (const id of take) waiting.delete(id);
      viewChanged();
    }
    return rows.length > 0;
  }

  /** One pass at a time in this process; another process may fold at the same time (the writes are guarded). */
  function sweep(defaultSize: number): Promise<boolean> {
    draining ??= drain(defaultSize).finally(() => {
      draining = null;
    });
    return draining;
  }

  /** The outbox as the database holds it now, unless this process changed its view meanwhile. */
  function refreshView(defaultSize: number) {
    const version = seen.version;
    refreshing ??= store
      .waitingBatches()
      .then((rows) => {
        if (seen.version !== version || draining) return;
        waiting = new Map(rows.map((r) => [r._id, { receivedAt: r.receivedAt, size: r.size ?? defaultSize }]));
        viewChanged();
      })
      .catch(() => {}) // the database is away: /readyz says so itself
      .finally(() => {
        refreshing = null;
      });
  }

  return {
    /** Wraps an ingest call: folding in this process gives way while any is in flight. */
    duringIngest: gate.during,

    /**
     * A batch this process just stored (`size`: its new entries), for /readyz's view. Only
     * noted: the instance holding the summariser's lease folds it (`sweep`).
     */
    stored(batchId: string, receivedAt: Date, size: number) {
      waiting.set(batchId, { receivedAt, size });
      viewChanged();
    },

    /**
     * Folds what the outbox holds, whoever ingested it: the summariser job's run. A batch
     * whose log is still being written waits for its writer (see `storedEntriesOf`).
     * Resolves true when batches were waiting.
     */
    sweep,

    /**
     * Folds everything waiting now, without giving way to ingest; resolves when done (or a
     * fold failed: see the log). For tests and scripts that run no job runner.
     */
    async settled(defaultSize: number): Promise<void> {
      await gate.urgently(async () => {
        // A pass under way may have listed the outbox before the caller's batches were stored.
        await draining?.catch(() => {});
        await sweep(defaultSize);
      });
    },

    /**
     * How far summaries trail the log, as this process last saw the outbox (shown on /readyz):
     * its own sweeps and ingest keep it current; otherwise a read refreshes it in the background.
     */
    backlog(defaultSize: number): SummaryBacklog {
      if (!draining && performance.now() - seen.at >= BACKLOG_REFRESH_MS) refreshView(defaultSize);
      let checkIns = 0;
      let oldest: Date | null = null;
      for (const p of waiting.values()) {
        checkIns += p.size;
        if (!oldest || p.receivedAt < oldest) oldest = p.receivedAt;
      }
      return { batches: waiting.size, checkIns, oldestReceivedAt: oldest, folded };
    },
  };
}
