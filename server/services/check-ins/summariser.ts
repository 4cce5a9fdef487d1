import type { Clock } from '../../clock';
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
/** A batch not ingested by this process is folded once this old (its writer may still be at work before). */
export const ABANDONED_WRITE_MS = 60_000;
/** Folding waits for this long without ingest… */
const INGEST_QUIET_MS = 200;
/** …unless the oldest pending batch has waited this long. */
export const SUMMARY_MAX_LAG_MS = 60_000;

type Fold = ReturnType<typeof foldRuns<Entry>>;
type Hit = { hit: FlagHit; checkInId: string; country: string };
type Raise = { hits: Hit[]; subject: { unitId: string | null; modelId: string | null; serial: string } };
type PayloadRow = [id: string, serial: string, model: string | null, unitId: string | null, firmware: string, observedAt: string, country: string];

export const toPayload = (entries: ReadonlyArray<Omit<Entry, 'batchId'>>) => JSON.stringify(entries.map((e): PayloadRow => [e.id, e.serial, e.model, e.unitId, e.firmware, e.observedAt.toISOString(), e.country]));
const fromPayload = (batch: StoredBatch): Entry[] =>
  (JSON.parse(batch.payload) as PayloadRow[]).map(([id, serial, model, unitIdValue, firmware, observedAt, country]) => ({ id, batchId: batch._id, serial, model, unitId: unitIdValue, firmware, observedAt: new Date(observedAt), country }));

const batchIdsAfter = (before: readonly string[] | undefined, entries: readonly Entry[]) => [...new Set([...(before ?? []), ...entries.map((e) => e.batchId)])].slice(-BATCH_IDS_KEPT);
const latestOf = (entries: readonly Entry[]) => entries.reduce((a, b) => (b.observedAt > a.observedAt ? b : a));

export interface SummaryBacklog {
  /** Batches this process knows to be waiting for the summariser, and their check-ins. */
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

  /**
   * Batches waiting to be folded, in arrival order. `duplicates` (indexes of entries the log
   * already held) is known for batches this process ingested; for others the log is asked.
   */
  const pending = new Map<string, { receivedAt: Date; size: number; duplicates?: number[] }>();
  let draining: Promise<void> | null = null;
  let folded = 0;
  /** Ingest calls in flight and when the last one ended: folding gives way to them (see drain). */
  let ingesting = 0;
  let lastIngestEnded = 0;
  let urgent = false;

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

  async function raise(hits: Hit[], subject: Raise['subject']) {
    const fired = new Map<string, string[]>();
    for (const { hit, checkInId, country } of hits) {
      await flags.raise(hit, { ...subject, country }, { kind: 'check-in', id: checkInId }, { id: checkInFlagId(checkInId, hit.rule) });
      fired.set(checkInId, [...(fired.get(checkInId) ?? []), hit.rule]);
    }
    // Rare (rules fire when they start to hold): the log entry records what it raised.
    await Promise.all([...fired].map(([id, rules]) => store.markLogFlags(id, rules)));
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
   * The units' history buckets: each month a fold touches gets one guarded write with its runs
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
   * Flags go first, then the history buckets, then the summary (which names the batches it
   * holds): a crash in between folds the batch again, the flags' ids make raising them again
   * a no-op and the buckets skip what they hold, whereas a summary written first would hide
   * the rest for good. Each summary write is guarded by the count it was computed from; a unit
   * another process folded into meanwhile is read and folded again for what it still lacks.
   */
  async function foldUnits(groups: Array<{ unit: UnitFacts; entries: Entry[] }>, restricted: ReadonlySet<string>) {
    let todo = groups;
    let written = 0;
    let refolded = 0;
    let flagged = 0;
    // Per unit, the last check-in country's move for the dashboard (recomputed when a unit is refolded).
    const moves = new Map<string, { modelId: string; from: string | null | undefined; to: string }>();
    for (let attempt = 0; todo.length; attempt++) {
      if (attempt === FOLD_ATTEMPTS) throw new Error(`check-in summaries: ${todo.length} units kept changing during the fold`);
      if (attempt) refolded += todo.length;
      const writes: SummaryWrite[] = [];
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
          periods: [...new Set([...(summary?.periods ?? []), ...entries.map((e) => periodOf(e.observedAt))])].sort(),
          batchIds: batchIdsAfter(summary?.batchIds, entries),
          latest: newer ? { at: latest.observedAt, country: latest.country, firmware: latest.firmware } : null,
        });
        moves.delete(unit._id);
        if (newer && latest.country !== summary?.lastCountry) moves.set(unit._id, { modelId: unit.modelId, from: summary?.lastCountry, to: latest.country });
        const hits = await unitHits(unit, fold, restricted);
        if (hits.length) await raise(hits, { unitId: unit._id, modelId: unit.modelId, serial: unit.serial });
        flagged += hits.length;
      }
      await foldHistory(todo);
      const conflicts = new Set(await store.writeSummaries(writes));
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
    return { written, refolded, flags: flagged };
  }

  /** The entries of a batch ingested elsewhere (or before a restart): those the log holds under this batch. */
  async function storedEntriesOf(entries: Entry[]): Promise<Entry[]> {
    const logged = await store.loggedBatchIds(entries.map((e) => e.id));
    return entries.filter((e, i) => logged[i] === e.batchId);
  }

  /** Folds stored batches into unit and unknown-serial summaries, raises their flags, then deletes them. */
  async function fold(batches: StoredBatch[]) {
    const started = Date.now();
    const phases: Record<string, number> = {};
    const lap = (name: string) => (phases[name] = Date.now() - started - Object.values(phases).reduce((a, b) => a + b, 0));
    const entries: Entry[] = [];
    for (const batch of batches) {
      const all = fromPayload(batch);
      const duplicates = pending.get(batch._id)?.duplicates;
      if (duplicates) {
        const duplicate = new Set(duplicates);
        entries.push(...all.filter((_, i) => !duplicate.has(i)));
      } else {
        entries.push(...(await storedEntriesOf(all)));
      }
    }

    lap('batches');
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
    const units = await foldUnits([...perUnit.values()], restricted);
    lap('units');
    for (const { hits, subject } of unknownRaises) await raise(hits, subject);
    const unknownWrites = unknown.flatMap(({ write }) => (write ? [write] : []));
    await store.writeUnknownSerials(unknownWrites);
    lap('unknown');
    await store.deleteBatches(batches.map((b) => b._id));
    folded += entries.length;
    logger?.info({ batches: batches.length, checkIns: entries.length, units: units.written, refolded: units.refolded, unknown: unknownWrites.length, corrections: corrections.length, flags: units.flags + unknownRaises.reduce((n, r) => n + r.hits.length, 0), ms: Date.now() - started, phases }, 'check-in summaries: folded');
  }

  /**
   * Ingest first: while batches keep arriving, folding waits (the devices are waiting for their
   * answers, the summaries are not), unless the oldest pending batch has waited
   * SUMMARY_MAX_LAG_MS. On a shared 2-core machine a fold competing with ingest halves both.
   */
  async function giveWayToIngest() {
    for (;;) {
      const oldest = pending.values().next().value;
      const quiet = ingesting === 0 && performance.now() - lastIngestEnded >= INGEST_QUIET_MS;
      if (urgent || quiet || !oldest || clock.now().getTime() - oldest.receivedAt.getTime() >= SUMMARY_MAX_LAG_MS) return;
      await new Promise((resolve) => setTimeout(resolve, INGEST_QUIET_MS));
    }
  }

  /** Folds what is pending, up to FOLD_MAX_CHECK_INS check-ins at a time, oldest first. */
  async function drain() {
    while (pending.size) {
      await giveWayToIngest();
      const take: string[] = [];
      let size = 0;
      for (const [id, p] of pending) {
        if (take.length && (size + p.size > FOLD_MAX_CHECK_INS || take.length >= FOLD_MAX_BATCHES)) break;
        take.push(id);
        size += p.size;
      }
      const docs = await store.batches(take);
      const now = clock.now().getTime();
      // A batch from elsewhere may still be being written: its writer's to finish, unless long gone.
      const ready = docs.filter((b): b is StoredBatch => !!b && (!!pending.get(b._id)?.duplicates || now - b.receivedAt.getTime() > ABANDONED_WRITE_MS));
      try {
        if (ready.length) await fold(ready);
      } catch (err) {
        // They stay in the outbox and the next sweep folds them again; one bad batch must not
        // hold up the batches behind it.
        logger?.error({ err, batchIds: take }, 'check-in summaries: fold failed; the batches stay in the outbox for the next sweep');
      }
      for (const id of take) pending.delete(id);
    }
  }

  function kick(): Promise<void> {
    draining ??= drain()
      .catch((err: unknown) => logger?.error({ err }, 'check-in summaries: outbox unreadable; retried at the next ingest or sweep'))
      .finally(() => {
        draining = null;
      });
    return draining;
  }

  return {
    /** Wraps an ingest call: folding gives way while any is in flight. */
    async duringIngest<T>(work: () => Promise<T>): Promise<T> {
      ingesting++;
      try {
        return await work();
      } finally {
        ingesting--;
        lastIngestEnded = performance.now();
      }
    },

    /** A batch this process just stored, with the indexes of entries the log already held. */
    stored(batchId: string, receivedAt: Date, size: number, duplicates: number[]) {
      pending.set(batchId, { receivedAt, size, duplicates });
      void kick();
    },

    /**
     * Picks up batches this process did not ingest: left by an earlier run or another process,
     * folded once they are ABANDONED_WRITE_MS old (their writer may still be at work before).
     */
    async sweep(defaultSize: number): Promise<void> {
      for (const row of await store.waitingBatches()) if (!pending.has(row._id)) pending.set(row._id, { receivedAt: row.receivedAt, size: row.size ?? defaultSize });
      await kick();
    },

    /** Folds everything this process knows of now, without giving way to ingest; resolves when done (or a fold failed: see the log). */
    async settled(): Promise<void> {
      urgent = true;
      try {
        while (pending.size) {
          const before = pending.size;
          await kick();
          if (pending.size >= before) return;
        }
        await draining;
      } finally {
        urgent = false;
      }
    },

    /** How far summaries trail the log, as this process sees it (shown on /readyz). */
    backlog(): SummaryBacklog {
      let checkIns = 0;
      let oldest: Date | null = null;
      for (const p of pending.values()) {
        checkIns += p.size;
        if (!oldest || p.receivedAt < oldest) oldest = p.receivedAt;
      }
      return { batches: pending.size, checkIns, oldestReceivedAt: oldest, folded };
    },
  };
}
