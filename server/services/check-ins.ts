import crypto from 'node:crypto';
import type { AnyBulkWriteOperation } from 'mongoose';
import type { Clock } from '../clock';
import { CheckIn, UnknownSerial } from '../../models/check-ins';
import { normaliseCode, SerialIndex, Unit, unitId } from '../../models/catalogue';
import { Transfer } from '../../models/registrations';
import type { FlagRule } from '../../models/flags';
import { knownCountries, SETTLED_AFTER_CHECK_INS, type FlagHit, type FlagsService } from './flags';

/**
 * Check-ins: ingest from update servers and devices, and the unit controls that decide what a
 * check-in is answered (`allowed` / `withheld`).
 *
 * The control functions are the one way leverage actions reach units: a case's "withhold
 * firmware updates" action calls `withholdUpdates`, lifting it calls `liftWithholding`.
 * Several cases may withhold the same unit; updates resume only when none does.
 *
 * Ingest is the hot path (tens of millions of check-ins). Per batch: every unit is read by
 * `_id` (never a scan), the log is written with one unordered `insertMany` whose `_id`s carry
 * idempotency, and each unit's summary gets ONE update by `_id` (FerretDB v1 only pushes
 * down a filter that is `_id` alone, so no optimistic filter on other fields).
 */

export const MAX_BATCH = 1_000;
/** Runs kept on the unit; older ones stay in the check-in log. */
export const MAX_RUNS = 50;
/** Unit summary updates per bulkWrite command (see ingest: FerretDB v1 deadlocks above ~100). */
export const SUMMARY_WRITES_PER_COMMAND = 50;

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

export interface CheckInRun {
  country: string;
  count: number;
  firstAt: Date;
  lastAt: Date;
  firstFirmware: string;
  lastFirmware: string;
}

/** What ingest reads of a unit: the summary it updates and the facts the rules need. */
interface UnitFacts {
  _id: string;
  modelId: string;
  serial: string;
  status: string;
  current?: { country?: string | null } | null;
  countries?: Array<{ country: string; source: string }>;
  checkIns?: { count?: number; lastAt?: Date | null; lastCountry?: string | null; lastFirmware?: string | null; runs?: CheckInRun[] } | null;
  controls?: { updates?: UpdateAnswer } | null;
}

const UNIT_FIELDS = { modelId: 1, serial: 1, status: 1, current: 1, countries: 1, checkIns: 1, controls: 1 } as const;

type Entry = CheckInItem & { id: string };
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

/**
 * Serialises summary writes per unit within this process: a batch registers on all its
 * units at once (synchronously), then waits for the batches registered before it, so two
 * batches never interleave read-compute-write on one unit and cannot deadlock.
 */
function createKeyedLock() {
  const tails = new Map<string, Promise<void>>();
  return async function lockAll(keys: Iterable<string>): Promise<() => void> {
    const mine = [...new Set(keys)];
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const before: Promise<void>[] = [];
    for (const key of mine) {
      const tail = tails.get(key);
      if (tail) before.push(tail);
      tails.set(key, held);
    }
    await Promise.all(before);
    return () => {
      for (const key of mine) if (tails.get(key) === held) tails.delete(key);
      release();
    };
  };
}

const isDuplicateKey = (e: { code?: number }) => e.code === 11000;

export function createCheckInsService(deps: { clock: Clock; flags: FlagsService }) {
  const { clock, flags } = deps;
  const lockAll = createKeyedLock();

  /** Units by `_id` (in parallel: FerretDB runs `$in` as a scan), then bare serials by SerialIndex. */
  async function resolveUnits(items: readonly CheckInItem[]): Promise<Array<UnitFacts | null>> {
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
        found = SerialIndex.findById(serial)
          .lean()
          .then((index) => (index?.unitIds.length === 1 ? read(index.unitIds[0]!) : null));
        serials.set(serial, found);
      }
      return found;
    };
    return Promise.all(items.map(async (item) => (item.model ? await read(unitId(item.model, item.serial)) : null) ?? bySerial(item.serial)));
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

  /** Pending transfers' countries are only looked for when a run has already settled somewhere unannounced. */
  async function pendingTransferCountries(unit: UnitFacts): Promise<string[]> {
    if (unit.status !== 'transfer-pending') return [];
    const pending = await Transfer.find({ unitId: unit._id, status: 'pending' }, { 'newLocation.country': 1 }).lean();
    return pending.flatMap((t) => (t.newLocation?.country ? [t.newLocation.country] : []));
  }

  /** The rules a unit's new check-ins make start to hold, each with the check-in that showed it. */
  async function unitHits(unit: UnitFacts, fold: Fold, restricted: ReadonlySet<string>) {
    const hits: Array<{ hit: FlagHit; checkInId: string; country: string }> = [];
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

  /** One `_id` update per unit: counters, last seen, and the recomputed runs. */
  function summaryUpdate(unit: UnitFacts, entries: Entry[], fold: { runs: CheckInRun[] }): AnyBulkWriteOperation {
    const latest = entries.reduce((a, b) => (b.observedAt > a.observedAt ? b : a));
    const newer = !unit.checkIns?.lastAt || latest.observedAt >= unit.checkIns.lastAt;
    return {
      updateOne: {
        filter: { _id: unit._id },
        update: {
          $inc: { 'checkIns.count': entries.length },
          $set: {
            'checkIns.runs': fold.runs,
            ...(newer ? { 'checkIns.lastAt': latest.observedAt, 'checkIns.lastCountry': latest.country, 'checkIns.lastFirmware': latest.firmware } : {}),
          },
        },
      },
    };
  }

  /** Unknown serials: one small summary each; a hit when a run of them starts (first or new country). */
  async function recordUnknown(key: string, entries: Entry[], restricted: ReadonlySet<string>) {
    const known = await UnknownSerial.findById(key).lean();
    const sample = entries[0]!;
    const fold = foldRuns(known ? [{ country: known.lastCountry, count: known.count, firstAt: known.firstAt, lastAt: known.lastAt, firstFirmware: '', lastFirmware: known.lastFirmware }] : [], entries, Infinity);
    const latest = entries.reduce((a, b) => (b.observedAt > a.observedAt ? b : a));
    const newer = !known || latest.observedAt >= known.lastAt;
    await UnknownSerial.updateOne(
      { _id: key },
      {
        $inc: { count: entries.length },
        $setOnInsert: { modelSku: sample.model ?? '', serial: sample.serial, firstAt: latest.observedAt },
        ...(newer ? { $set: { lastAt: latest.observedAt, lastCountry: latest.country, lastFirmware: latest.firmware } } : {}),
      },
      { upsert: true },
    );
    const hits: Array<{ hit: FlagHit; checkInId: string; country: string }> = [];
    for (const { checkIn } of fold.started) {
      for (const hit of [flags.rules.unregisteredCheckIn(null, checkIn.serial, checkIn.model ?? ''), flags.rules.restrictedCountry(checkIn.country, restricted, 'check-in')]) {
        if (hit) hits.push({ hit, checkInId: checkIn.id, country: checkIn.country });
      }
    }
    return hits;
  }

  async function raise(hits: Array<{ hit: FlagHit; checkInId: string; country: string }>, subject: { unitId: string | null; modelId: string | null; serial: string }) {
    const fired = new Map<string, FlagRule[]>();
    for (const { hit, checkInId, country } of hits) {
      await flags.raise(hit, { ...subject, country }, { kind: 'check-in', id: checkInId });
      fired.set(checkInId, [...(fired.get(checkInId) ?? []), hit.rule]);
    }
    // Rare (rules fire when they start to hold): the log entry records what it raised.
    await Promise.all([...fired].map(([id, rules]) => CheckIn.updateOne({ _id: id }, { $set: { flags: rules } })));
  }

  return {
    /**
     * Stores a batch of check-ins and answers each, in input order, whether an update may be
     * served. Retried items (same API key and event id) are answered again, marked
     * `duplicate`, and change nothing. Items must already be validated and normalised.
     */
    async ingest(apiKeyId: string, items: readonly CheckInItem[]): Promise<CheckInAnswer[]> {
      const receivedAt = clock.now();
      const unknownKey = (item: CheckInItem) => unitId(item.model || '-', item.serial);
      // By serial: it covers the unit whether the caller named the model or not.
      const release = await lockAll(items.map((item) => normaliseCode(item.serial)));
      try {
        const units = await resolveUnits(items);
        const entries = items.map((item, i) => ({
          ...item,
          id: item.eventId ? `${apiKeyId}:${item.eventId}` : `ci_${crypto.randomBytes(12).toString('hex')}`,
          unit: units[i] ?? null,
        }));
        const inserted = await insertLog(
          entries.map((e) => ({
            _id: e.id,
            unitId: e.unit?._id ?? null,
            modelSku: e.unit?.modelId ?? e.model ?? '',
            serial: e.serial,
            firmware: e.firmware,
            observedAt: e.observedAt,
            receivedAt,
            country: e.country,
            apiKeyId,
            answer: e.unit?.controls?.updates ?? 'allowed',
            flags: [],
          })),
        );

        // Group the new check-ins by unit (or unknown serial), once per unit however often it appears.
        const perUnit = new Map<string, { unit: UnitFacts; entries: typeof entries }>();
        const perUnknown = new Map<string, typeof entries>();
        for (const [i, e] of entries.entries()) {
          if (!inserted[i]) continue;
          if (e.unit) {
            const group = perUnit.get(e.unit._id) ?? { unit: e.unit, entries: [] };
            group.entries.push(e);
            perUnit.set(e.unit._id, group);
          } else {
            perUnknown.set(unknownKey(e), [...(perUnknown.get(unknownKey(e)) ?? []), e]);
          }
        }

        const restricted = await flags.restrictedCountries();
        const writes: AnyBulkWriteOperation[] = [];
        const toRaise: Array<Promise<void>> = [];
        for (const { unit, entries: mine } of perUnit.values()) {
          const fold = foldRuns(unit.checkIns?.runs ?? [], mine, SETTLED_AFTER_CHECK_INS);
          writes.push(summaryUpdate(unit, mine, fold));
          toRaise.push(unitHits(unit, fold, restricted).then((hits) => raise(hits, { unitId: unit._id, modelId: unit.modelId, serial: unit.serial })));
        }
        // If the summary write fails (database gone) the flag work already started must not become
        // an unhandled rejection, which ends the process: found by the soak test (test/soak).
        for (const pending of toRaise) pending.catch(() => {});
        // FerretDB v1.24 holds a pooled connection per statement until an `update` command ends
        // (its pool has 100): one command of more than ~100 statements never returns. Measured
        // by bench/ (issue 7), hence chunks.
        for (let i = 0; i < writes.length; i += SUMMARY_WRITES_PER_COMMAND) {
          await Unit.bulkWrite(writes.slice(i, i + SUMMARY_WRITES_PER_COMMAND) as never, { ordered: false });
        }
        for (const [key, mine] of perUnknown) {
          toRaise.push(recordUnknown(key, mine, restricted).then((hits) => raise(hits, { unitId: null, modelId: mine[0]!.model || null, serial: mine[0]!.serial })));
        }
        await Promise.all(toRaise);

        return entries.map((e, i) => ({
          serial: e.serial,
          model: e.unit?.modelId ?? e.model ?? null,
          answer: e.unit?.controls?.updates ?? 'allowed',
          ...(inserted[i] ? {} : { duplicate: true as const }),
        }));
      } finally {
        release();
      }
    },

    async withholdUpdates(unitIds: string[], caseId: string): Promise<number> {
      let changed = 0;
      for (const _id of unitIds) {
        const res = await Unit.updateOne({ _id }, { $addToSet: { 'controls.withheldByCaseIds': caseId }, $set: { 'controls.updates': 'withheld' } });
        changed += res.matchedCount;
      }
      return changed;
    },

    async liftWithholding(unitIds: string[], caseId: string): Promise<number> {
      let changed = 0;
      for (const _id of unitIds) {
        const res = await Unit.updateOne({ _id }, { $pull: { 'controls.withheldByCaseIds': caseId } });
        changed += res.matchedCount;
        // Allowed again only once no other case withholds it (second update keeps it atomic per step).
        await Unit.updateOne({ _id, 'controls.withheldByCaseIds': { $size: 0 } }, { $set: { 'controls.updates': 'allowed' } });
      }
      return changed;
    },
  };
}

export type CheckInsService = ReturnType<typeof createCheckInsService>;
