import crypto from 'node:crypto';
import type { AnyBulkWriteOperation } from 'mongoose';
import type { Clock } from '../clock';
import type { Logger } from '../logger';
import { chunksOf } from '../store/engine';
import { CheckIn, CheckInBatch, UnknownSerial, WITHHELD_UNITS_ID, WithheldUnits } from '../../models/check-ins';
import { normaliseCode, SerialIndex, storedRuns, Unit, unitId, unitRuns, type CheckInRun } from '../../models/catalogue';
import { tallyUnits, unitCheckInChange, type UnitTallyChange } from '../store/insight';
import { Transfer } from '../../models/registrations';
import type { FlagRule } from '../../models/flags';
import { knownCountries, SETTLED_AFTER_CHECK_INS, type FlagHit, type FlagsService } from './flags';

/**
 * Check-ins: ingest from update servers and devices, the per-unit summaries they feed, and the
 * unit controls that decide what a check-in is answered (`allowed` / `withheld`).
 *
 * The control functions are the one way leverage actions reach units: a case's "withhold
 * firmware updates" action calls `withholdUpdates`, lifting it calls `liftWithholding`.
 * Several cases may withhold the same unit; updates resume only when none does.
 *
 * Ingest is the hot path (tens of millions of check-ins) and only appends: one outbox
 * document for the batch (CheckInBatch), the log with one unordered `insertMany` whose `_id`s
 * carry idempotency, and the answers from the one withheld-units document. No unit is read
 * or written per check-in: profiled at scale 1 on FerretDB v1, a unit summary update costs
 * 5-10 ms, so a batch of 1,000 took 17 s while its `insertMany` took ~90 ms.
 *
 * The summariser folds the outbox in the background, several batches at a time so a unit
 * seen in many batches is written once: each unit's summary gets ONE update by `_id`
 * (FerretDB v1 only pushes down a filter that is `_id` alone), red flags are raised, and the
 * batch is deleted. Summaries and flags therefore trail the log by the summariser's backlog
 * (`backlog()`, shown on /readyz); on MongoDB that is milliseconds.
 */

export const MAX_BATCH = 1_000;
/** Runs kept on the unit; older ones stay in the check-in log. */
export const MAX_RUNS = 50;
/** At most this many check-ins are folded together (bounds the summariser's memory). */
export const FOLD_MAX_CHECK_INS = 25_000;
/** …and at most this many batches (each unit keeps the ids of the batches folded into it). */
const FOLD_MAX_BATCHES = 32;
/** A fold gives up (its batches stay in the outbox) when units keep changing under it this often. */
const FOLD_ATTEMPTS = 3;
/** Batch ids a unit remembers: more than a fold can hold, so a fold run again always sees its own. */
const BATCH_IDS_KEPT = 2 * FOLD_MAX_BATCHES;
/** A batch not ingested by this process is folded once this old (its writer may still be at work before). */
export const ABANDONED_WRITE_MS = 60_000;
/** Folding waits for this long without ingest… */
const INGEST_QUIET_MS = 200;
/** …unless the oldest pending batch has waited this long. */
export const SUMMARY_MAX_LAG_MS = 60_000;

export type UpdateAnswer = 'allowed' | 'withheld';

export interface CheckInItem {
  serial: string;
  /** SKU; when missing or not in the catalogue the serial alone is looked up. */
  model?: string | null;
  firmware: string;
  observedAt: Date;
  country: string;
  /** The caller's own id for this event: a retry with the same id is not stored twice. */
  eventId?: string | null;
}

export interface CheckInAnswer {
  serial: string;
  model: string | null;
  answer: UpdateAnswer;
  duplicate?: true;
}

/** What ingest reads of a unit: the summary it updates and the facts the rules need. */
interface UnitFacts {
  _id: string;
  modelId: string;
  serial: string;
  status: string;
  current?: { country?: string | null } | null;
  countries?: Array<{ country: string; source: string }>;
  checkIns?: { count?: number; lastAt?: Date | null; lastCountry?: string | null; lastFirmware?: string | null; runsJson?: string; runs?: CheckInRun[]; batchIds?: string[] } | null;
  controls?: { updates?: UpdateAnswer } | null;
}

const UNIT_FIELDS = { modelId: 1, serial: 1, status: 1, current: 1, countries: 1, checkIns: 1, controls: 1 } as const;

/** A stored check-in as the summariser folds it. */
interface Entry {
  id: string;
  batchId: string;
  serial: string;
  model: string | null;
  unitId: string | null;
  firmware: string;
  observedAt: Date;
  country: string;
}
type Fold = ReturnType<typeof foldRuns<Entry>>;

/**
 * Folds check-ins (any order) into the runs: consecutive check-ins from one country collapse
 * into one run. Returns the new runs (at most MAX_RUNS, newest last), the check-ins that
 * started a run, and the runs that reached `settleAt` check-ins in this fold.
 */
export function foldRuns<T extends { observedAt: Date; country: string; firmware: string }>(
  previous: readonly CheckInRun[],
  checkIns: readonly T[],
  settleAt: number,
): { runs: CheckInRun[]; started: Array<{ checkIn: T; run: CheckInRun }>; settled: Array<{ checkIn: T; run: CheckInRun }> } {
  const runs = previous.map((r) => ({ ...r }));
  const started: Array<{ checkIn: T; run: CheckInRun }> = [];
  const settled: Array<{ checkIn: T; run: CheckInRun }> = [];
  const ordered = [...checkIns].sort((a, b) => a.observedAt.getTime() - b.observedAt.getTime());
  for (const checkIn of ordered) {
    const last = runs.at(-1);
    if (last && last.country === checkIn.country) {
      last.count += 1;
      if (checkIn.observedAt >= last.lastAt) {
        last.lastAt = checkIn.observedAt;
        last.lastFirmware = checkIn.firmware;
      }
      if (last.count === settleAt) settled.push({ checkIn, run: { ...last } });
      continue;
    }
    const run = { country: checkIn.country, count: 1, firstAt: checkIn.observedAt, lastAt: checkIn.observedAt, firstFirmware: checkIn.firmware, lastFirmware: checkIn.firmware };
    runs.push(run);
    started.push({ checkIn, run });
    if (settleAt === 1) settled.push({ checkIn, run: { ...run } });
  }
  return { runs: runs.slice(-MAX_RUNS), started, settled };
}


const isDuplicateKey = (e: { code?: number }) => e.code === 11000;
const newBatchId = () => `cib_${crypto.randomBytes(12).toString('hex')}`;
/** A flag's id from the check-in that showed it and the rule: a batch folded twice raises nothing twice. */
export const checkInFlagId = (checkInId: string, rule: string) => `flg_${crypto.createHash('sha256').update(`${checkInId}|${rule}`).digest('hex').slice(0, 20)}`;
/** The serial part of a unit id (`SKU:SERIAL`; codes hold no colon). */
const serialOf = (id: string) => id.slice(id.indexOf(':') + 1);

type Hit = { hit: FlagHit; checkInId: string; country: string };
type Raise = { hits: Hit[]; subject: { unitId: string | null; modelId: string | null; serial: string } };
type BatchDoc = { _id: string; receivedAt: Date; size: number; payload: string };
type PayloadRow = [id: string, serial: string, model: string | null, unitId: string | null, firmware: string, observedAt: string, country: string];

const toPayload = (entries: ReadonlyArray<Omit<Entry, 'batchId'>>) => JSON.stringify(entries.map((e): PayloadRow => [e.id, e.serial, e.model, e.unitId, e.firmware, e.observedAt.toISOString(), e.country]));
const fromPayload = (batch: BatchDoc): Entry[] =>
  (JSON.parse(batch.payload) as PayloadRow[]).map(([id, serial, model, unitIdValue, firmware, observedAt, country]) => ({ id, batchId: batch._id, serial, model, unitId: unitIdValue, firmware, observedAt: new Date(observedAt), country }));

export interface SummaryBacklog {
  /** Batches this process knows to be waiting for the summariser, and their check-ins. */
  batches: number;
  checkIns: number;
  oldestReceivedAt: Date | null;
  /** Check-ins folded into summaries by this process since it started. */
  folded: number;
}

export function createCheckInsService(deps: { clock: Clock; flags: FlagsService; logger?: Pick<Logger, 'error' | 'info'> }) {
  const { clock, flags, logger } = deps;

  /** Units by `_id` (in parallel: FerretDB runs `$in` as a scan), then bare serials by SerialIndex. */
  async function resolveUnits(items: ReadonlyArray<{ model?: string | null; serial: string }>): Promise<Array<UnitFacts | null>> {
    const byId = new Map<string, Promise<UnitFacts | null>>();
    const read = (id: string) => {
      let found = byId.get(id);
      if (!found) {
        found = Unit.collection.findOne({ _id: id as never }, { projection: UNIT_FIELDS }) as Promise<UnitFacts | null>;
        byId.set(id, found);
      }
      return found;
    };
    const serials = new Map<string, Promise<UnitFacts | null>>();
    const bySerial = (serial: string) => {
      let found = serials.get(serial);
      if (!found) {
        found = SerialIndex.findById(normaliseCode(serial))
          .lean()
          .then((index) => (index?.unitIds.length === 1 ? read(index.unitIds[0]!) : null));
        serials.set(serial, found);
      }
      return found;
    };
    return Promise.all(items.map(async (item) => (item.model ? await read(unitId(item.model, item.serial)) : null) ?? bySerial(item.serial)));
  }

  /**
   * What each item is answered, and the unit it is logged under, without reading units: an item
   * naming its model is logged under that unit id (the summariser corrects the rare entry whose
   * unit turns out to be another or none); bare serials, and serials some withheld unit has, are
   * resolved exactly, so `withheld` is answered exactly when the unit the item resolves to is.
   */
  async function answersFor(items: readonly CheckInItem[]): Promise<Array<{ answer: UpdateAnswer; model: string | null; unitId: string | null }>> {
    const withheld = new Set((await WithheldUnits.findById(WITHHELD_UNITS_ID).lean())?.unitIds ?? []);
    const withheldSerials = new Set([...withheld].map(serialOf));
    const exact = items.map((item) => !item.model || withheldSerials.has(normaliseCode(item.serial)));
    const resolved = await resolveUnits(items.filter((_, i) => exact[i]));
    let next = 0;
    return items.map((item, i) => {
      if (!exact[i]) return { answer: 'allowed' as const, model: item.model!, unitId: unitId(item.model!, item.serial) };
      const unit = resolved[next++];
      if (!unit) return { answer: 'allowed' as const, model: item.model ?? null, unitId: null };
      return { answer: withheld.has(unit._id) ? ('withheld' as const) : ('allowed' as const), model: unit.modelId, unitId: unit._id };
    });
  }

  /** Inserts the log entries; returns, per entry, whether it was new (the rest were already stored). */
  async function insertLog(docs: Array<Record<string, unknown> & { _id: string }>): Promise<boolean[]> {
    const inserted = docs.map(() => true);
    try {
      await CheckIn.collection.insertMany(docs as never[], { ordered: false });
    } catch (err) {
      const writeErrors = (err as { writeErrors?: Array<{ index: number; code?: number }> | { index: number; code?: number } }).writeErrors;
      const list = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : null;
      // An empty list is no proof: a connection lost mid-batch comes as a bulk error with no
      // write errors, and was answered as stored (acknowledged, then missing; found by test/soak).
      if (!list?.length || !list.every(isDuplicateKey)) throw err;
      for (const e of list) inserted[e.index] = false;
    }
    return inserted;
  }

  // ----- the summariser -----

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
    if (unit.status !== 'transfer-pending') return [];
    const transfers = await Transfer.find({ unitId: unit._id, status: 'pending' }, { 'newLocation.country': 1 }).lean();
    return transfers.flatMap((t) => (t.newLocation?.country ? [t.newLocation.country] : []));
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

  const batchIdsAfter = (before: readonly string[] | undefined, entries: readonly Entry[]) => [...new Set([...(before ?? []), ...entries.map((e) => e.batchId)])].slice(-BATCH_IDS_KEPT);

  /**
   * One `_id` update per unit: counters, last seen, the recomputed runs and the batches now
   * folded in. Absolute values, not `$inc`, guarded by the count they were computed from (see
   * foldUnits): a fold repeated after a crash must not count twice. Also says the unit's new
   * last check-in country (null: unchanged) for the dashboard's tallies.
   */
  function summaryUpdate(unit: UnitFacts, entries: Entry[], fold: { runs: CheckInRun[] }): { write: AnyBulkWriteOperation; lastCountry: string | null } {
    const latest = entries.reduce((a, b) => (b.observedAt > a.observedAt ? b : a));
    const newer = !unit.checkIns?.lastAt || latest.observedAt >= unit.checkIns.lastAt;
    const count = unit.checkIns?.count ?? 0;
    const $set = {
      'checkIns.count': count + entries.length,
      'checkIns.runsJson': storedRuns(fold.runs),
      'checkIns.batchIds': batchIdsAfter(unit.checkIns?.batchIds, entries),
      ...(newer ? { 'checkIns.lastAt': latest.observedAt, 'checkIns.lastCountry': latest.country, 'checkIns.lastFirmware': latest.firmware } : {}),
    };
    return {
      write: {
        updateOne: {
          filter: { _id: unit._id, 'checkIns.count': count ? count : { $in: [0, null] } },
          update: { $set, ...(unit.checkIns?.runs ? { $unset: { 'checkIns.runs': '' } } : {}) },
        },
      },
      lastCountry: newer ? latest.country : null,
    };
  }


  /** Unknown serials: one small summary each; a hit when a run of them starts (first or new country). */
  async function unknownFold(key: string, all: Entry[], restricted: ReadonlySet<string>): Promise<{ hits: Hit[]; write: AnyBulkWriteOperation | null }> {
    const known = await UnknownSerial.findById(key).lean();
    const entries = all.filter((e) => !known?.batchIds?.includes(e.batchId));
    if (!entries.length) return { hits: [], write: null };
    const sample = entries[0]!;
    const fold = foldRuns(known ? [{ country: known.lastCountry, count: known.count, firstAt: known.firstAt, lastAt: known.lastAt, firstFirmware: '', lastFirmware: known.lastFirmware }] : [], entries, Infinity);
    const latest = entries.reduce((a, b) => (b.observedAt > a.observedAt ? b : a));
    const newer = !known || latest.observedAt >= known.lastAt;
    const hits: Hit[] = [];
    for (const { checkIn } of fold.started) {
      for (const hit of [flags.rules.unregisteredCheckIn(null, checkIn.serial, checkIn.model ?? ''), flags.rules.restrictedCountry(checkIn.country, restricted, 'check-in')]) {
        if (hit) hits.push({ hit, checkInId: checkIn.id, country: checkIn.country });
      }
    }
    const write = {
      updateOne: {
        filter: { _id: key },
        update: {
          $set: {
            count: (known?.count ?? 0) + entries.length,
            batchIds: batchIdsAfter(known?.batchIds, entries),
            ...(newer ? { lastAt: latest.observedAt, lastCountry: latest.country, lastFirmware: latest.firmware } : {}),
          },
          $setOnInsert: { modelSku: sample.model ?? '', serial: sample.serial, firstAt: latest.observedAt },
        },
        upsert: true,
      },
    };
    return { hits, write };
  }

  async function raise(hits: Hit[], subject: { unitId: string | null; modelId: string | null; serial: string }) {
    const fired = new Map<string, FlagRule[]>();
    for (const { hit, checkInId, country } of hits) {
      await flags.raise(hit, { ...subject, country }, { kind: 'check-in', id: checkInId }, { id: checkInFlagId(checkInId, hit.rule) });
      fired.set(checkInId, [...(fired.get(checkInId) ?? []), hit.rule]);
    }
    // Rare (rules fire when they start to hold): the log entry records what it raised.
    await Promise.all([...fired].map(([id, rules]) => CheckIn.updateOne({ _id: id }, { $set: { flags: rules } })));
  }

  /** Bulk writes in commands FerretDB v1 can finish (see chunksOf); returns how many matched. */
  async function writeChunked(model: { bulkWrite(ops: never, opts: { ordered: false }): Promise<{ matchedCount: number; upsertedCount: number }> }, writes: AnyBulkWriteOperation[]) {
    let matched = 0;
    for (const chunk of chunksOf(writes)) {
      const res = await model.bulkWrite(chunk as never, { ordered: false });
      matched += res.matchedCount + res.upsertedCount;
    }
    return matched;
  }

  /**
   * Folds each unit's new check-ins into its summary and raises what they show. Each write is
   * guarded by the check-in count it was computed from (an `_id` lookup on the patched
   * embedded FerretDB too), so a unit that another process folded into meanwhile is re-read
   * and folded again rather than overwritten. Flags go before summaries: a crash in between
   * folds the batch again, and the flags' ids make raising them again a no-op, whereas a
   * summary written first would hide the hit for good.
   */
  async function foldUnits(groups: Array<{ unit: UnitFacts; entries: Entry[] }>, restricted: ReadonlySet<string>) {
    let todo = groups;
    let written = 0;
    let refolded = 0;
    let flagged = 0;
    // Per unit, the last check-in country's move for the dashboard (recomputed when a unit is refolded).
    const moves = new Map<string, UnitTallyChange>();
    for (let attempt = 0; todo.length; attempt++) {
      if (attempt === FOLD_ATTEMPTS) throw new Error(`check-in summaries: ${todo.length} units kept changing during the fold`);
      if (attempt) refolded += todo.length;
      const writes: AnyBulkWriteOperation[] = [];
      for (const { unit, entries } of todo) {
        const runs = foldRuns(unitRuns(unit.checkIns), entries, SETTLED_AFTER_CHECK_INS);
        const update = summaryUpdate(unit, entries, runs);
        writes.push(update.write);
        moves.delete(unit._id);
        if (update.lastCountry && update.lastCountry !== unit.checkIns?.lastCountry) moves.set(unit._id, unitCheckInChange(unit.modelId, unit.checkIns?.lastCountry, update.lastCountry));
        const hits = await unitHits(unit, runs, restricted);
        if (hits.length) await raise(hits, { unitId: unit._id, modelId: unit.modelId, serial: unit.serial });
        flagged += hits.length;
      }
      const matched = await writeChunked(Unit, writes);
      written += matched;
      if (matched === writes.length) break;
      // Someone else folded into some of these units: fold again what each still lacks.
      const fresh = await Promise.all(todo.map(({ unit }) => Unit.collection.findOne({ _id: unit._id as never }, { projection: UNIT_FIELDS }) as Promise<UnitFacts | null>));
      todo = todo.flatMap(({ entries }, i) => {
        const unit = fresh[i];
        const missing = unit ? entries.filter((e) => !unit.checkIns?.batchIds?.includes(e.batchId)) : [];
        return unit && missing.length ? [{ unit, entries: missing }] : [];
      });
    }
    await tallyUnits([...moves.values()]);
    return { written, refolded, flags: flagged };
  }

  /** The entries of a batch ingested elsewhere (or before a restart): those the log holds under this batch. */
  async function storedEntriesOf(entries: Entry[]): Promise<Entry[]> {
    const logged = await Promise.all(entries.map((e) => CheckIn.findById(e.id, { batchId: 1 }).lean()));
    return entries.filter((e, i) => logged[i]?.batchId === e.batchId);
  }

  /** Folds stored batches into unit and unknown-serial summaries, raises their flags, then deletes them. */
  async function fold(batches: BatchDoc[]) {
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
    const resolved = await resolveUnits(entries);
    lap('read');
    // The log names the unit ingest guessed from SKU and serial; correct the few it got wrong.
    const corrections: AnyBulkWriteOperation[] = [];
    entries.forEach((e, i) => {
      const unit = resolved[i];
      if ((unit?._id ?? null) !== e.unitId) corrections.push({ updateOne: { filter: { _id: e.id }, update: { $set: { unitId: unit?._id ?? null, modelSku: unit?.modelId ?? e.model ?? '' } } } });
    });
    await writeChunked(CheckIn, corrections);
    lap('corrections');

    const perUnit = new Map<string, { unit: UnitFacts; entries: Entry[] }>();
    const perUnknown = new Map<string, Entry[]>();
    entries.forEach((e, i) => {
      const unit = resolved[i];
      if (!unit) {
        const key = unitId(e.model || '-', e.serial);
        const group = perUnknown.get(key) ?? [];
        group.push(e);
        perUnknown.set(key, group);
      } else if (!unit.checkIns?.batchIds?.includes(e.batchId)) {
        const group = perUnit.get(unit._id) ?? { unit, entries: [] };
        group.entries.push(e);
        perUnit.set(unit._id, group);
      }
    });

    const restricted = await flags.restrictedCountries();
    const unknownWrites: AnyBulkWriteOperation[] = [];
    const unknownRaises: Raise[] = [];
    // Each unknown serial reads its own summary: in parallel (one `_id` read each).
    const unknown = await Promise.all([...perUnknown].map(async ([key, mine]) => ({ mine, ...(await unknownFold(key, mine, restricted)) })));
    for (const { mine, hits, write } of unknown) {
      if (write) unknownWrites.push(write);
      if (hits.length) unknownRaises.push({ hits, subject: { unitId: null, modelId: mine[0]!.model || null, serial: mine[0]!.serial } });
    }
    lap('rules');
    const units = await foldUnits([...perUnit.values()], restricted);
    lap('units');
    for (const { hits, subject } of unknownRaises) await raise(hits, subject);
    await writeChunked(UnknownSerial, unknownWrites);
    lap('unknown');
    await Promise.all(batches.map((b) => CheckInBatch.deleteOne({ _id: b._id })));
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
      const docs = (await Promise.all(take.map((id) => CheckInBatch.findById(id).lean()))) as Array<BatchDoc | null>;
      const now = clock.now().getTime();
      // A batch from elsewhere may still be being written: its writer's to finish, unless long gone.
      const ready = docs.filter((b): b is BatchDoc => !!b && (!!pending.get(b._id)?.duplicates || now - b.receivedAt.getTime() > ABANDONED_WRITE_MS));
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
    /**
     * Stores a batch of check-ins and answers each, in input order, whether an update may be
     * served. Retried items (same API key and event id) are answered again, marked
     * `duplicate`, and change nothing. Items must already be validated and normalised.
     * Unit summaries and red flags follow in the background (`settled()` waits for them).
     */
    async ingest(apiKeyId: string, items: readonly CheckInItem[]): Promise<CheckInAnswer[]> {
      ingesting++;
      try {
        return await ingestBatch(apiKeyId, items);
      } finally {
        ingesting--;
        lastIngestEnded = performance.now();
      }
    },

    /**
     * Picks up batches this process did not ingest: left by an earlier run or another process,
     * folded once they are ABANDONED_WRITE_MS old (their writer may still be at work before).
     * The outbox is drained continuously, so this scan of it stays small. Run at start and then
     * periodically (startCheckInSummariser).
     */
    async sweep(): Promise<void> {
      const rows = await CheckInBatch.find({}, { receivedAt: 1, size: 1 }).sort({ receivedAt: 1 }).lean();
      for (const row of rows) if (!pending.has(row._id)) pending.set(row._id, { receivedAt: row.receivedAt, size: row.size ?? MAX_BATCH });
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

    ...createControls(),
  };

  async function ingestBatch(apiKeyId: string, items: readonly CheckInItem[]): Promise<CheckInAnswer[]> {
    const receivedAt = clock.now();
    const answers = await answersFor(items);
    const batchId = newBatchId();
    const entries = items.map((item, i) => ({
      id: item.eventId ? `${apiKeyId}:${item.eventId}` : `ci_${crypto.randomBytes(12).toString('hex')}`,
      serial: item.serial,
      model: item.model ?? null,
      unitId: answers[i]!.unitId,
      firmware: item.firmware,
      observedAt: item.observedAt,
      country: item.country,
    }));
    // Outbox first: whatever part of the log gets written, the summariser will find it.
    await CheckInBatch.collection.insertOne({ _id: batchId, apiKeyId, receivedAt, size: entries.length, payload: toPayload(entries) } as never);
    const inserted = await insertLog(
      entries.map((e, i) => ({
        _id: e.id,
        unitId: e.unitId,
        modelSku: answers[i]!.model ?? '',
        serial: e.serial,
        firmware: e.firmware,
        observedAt: e.observedAt,
        receivedAt,
        country: e.country,
        apiKeyId,
        answer: answers[i]!.answer,
        flags: [],
        batchId,
      })),
    );
    const duplicates = inserted.flatMap((isNew, i) => (isNew ? [] : [i]));
    pending.set(batchId, { receivedAt, size: items.length - duplicates.length, duplicates });
    void kick();
    return items.map((item, i) => ({
      serial: item.serial,
      model: answers[i]!.model,
      answer: answers[i]!.answer,
      ...(inserted[i] ? {} : { duplicate: true as const }),
    }));
  }
}

/**
 * Withholding and lifting, one change at a time in this process (a lift reads the unit, then
 * clears it: a withhold slipping in between must not be undone).
 */
function createControls() {
  let tail: Promise<unknown> = Promise.resolve();
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
  return {
    withholdUpdates(unitIds: string[], caseId: string): Promise<number> {
      return serially(async () => {
        // The registry first: a crash before the units are marked errs on the side of withholding.
        await WithheldUnits.updateOne({ _id: WITHHELD_UNITS_ID }, { $addToSet: { unitIds: { $each: unitIds } } }, { upsert: true });
        const missing: string[] = [];
        for (const _id of unitIds) {
          const res = await Unit.updateOne({ _id }, { $addToSet: { 'controls.withheldByCaseIds': caseId }, $set: { 'controls.updates': 'withheld' } });
          if (!res.matchedCount) missing.push(_id);
        }
        if (missing.length) await WithheldUnits.updateOne({ _id: WITHHELD_UNITS_ID }, { $pullAll: { unitIds: missing } });
        return unitIds.length - missing.length;
      });
    },

    liftWithholding(unitIds: string[], caseId: string): Promise<number> {
      return serially(async () => {
        let changed = 0;
        const cleared: string[] = [];
        for (const _id of unitIds) {
          const res = await Unit.updateOne({ _id }, { $pull: { 'controls.withheldByCaseIds': caseId } });
          changed += res.matchedCount;
          // Allowed again only once no other case withholds it.
          const unit = await Unit.findById(_id, { 'controls.withheldByCaseIds': 1 }).lean();
          if (unit && !unit.controls?.withheldByCaseIds?.length) {
            await Unit.updateOne({ _id }, { $set: { 'controls.updates': 'allowed' } });
            cleared.push(_id);
          }
        }
        if (cleared.length) await WithheldUnits.updateOne({ _id: WITHHELD_UNITS_ID }, { $pullAll: { unitIds: cleared } });
        return changed;
      });
    },
  };
}

export type CheckInsService = ReturnType<typeof createCheckInsService>;

/** Sweeps the summariser's outbox at start and every `everyMs`; returns a stop function. */
export function startCheckInSummariser(services: { checkIns: CheckInsService }, logger: Pick<Logger, 'error'>, everyMs = 30_000) {
  const sweep = () => services.checkIns.sweep().catch((err: unknown) => logger.error({ err }, 'check-in summaries: sweep failed'));
  void sweep();
  const timer = setInterval(() => void sweep(), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
