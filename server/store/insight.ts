import { randomUUID } from 'node:crypto';
import { isValidObjectId, Types } from 'mongoose';
import { Case } from '../../models/cases';
import { ProductModel, Unit, type CheckInRun, type RiskLevel } from '../../models/catalogue';
import { Flag, type FlagRule } from '../../models/flags';
import { InsightSnapshot, InsightState, UNIT_TALLIES, UnitTally } from '../../models/insight';
import { Registration, Transfer } from '../../models/registrations';
import { Report } from '../../models/reports';
import { createCheckInHistoryStore } from './check-in-history';
import { type Engine, isDuplicateKey } from './engine';

/**
 * The insight module's read side: the per-model unit tallies (kept on write by the catalogue,
 * registrations and check-ins services), the shared snapshot documents, and the reads of other
 * modules' collections that the dashboard, the transparency report, the exports and EPCIS
 * need. Large collections (units, registrations, check-ins) are read by `_id` or streamed for
 * an export; the figures scan only the small ones (flags, reports, cases, models).
 */


const CURSOR_BATCH = 500;

// ---------------------------------------------------------------------------------------
// Unit tallies: what the writers of units call (same names and signatures as before)
// ---------------------------------------------------------------------------------------

export type UnitStatus = 'unregistered' | 'registered' | 'transfer-pending';

/** One unit's change of the tallied facts, as deltas (all optional, negative to remove). */
export interface UnitTallyChange {
  modelId: string;
  units?: number;
  registered?: number;
  transferPending?: number;
  withCheckIns?: number;
  /** The unit's `current.country` went from → to (null: none); the same value is no change. */
  registeredCountry?: { from: string | null; to: string | null };
  /** The unit's `checkIns.lastCountry` went from → to (null: it had never checked in). */
  checkInCountry?: { from: string | null; to: string | null };
}

/**
 * The tally change for one unit whose status and/or registered country changed, from what the
 * unit was before the write to what it is after (read the old values from the write itself,
 * e.g. `findOneAndUpdate` with `new: false`, so a concurrent write cannot skew them).
 */
export function unitStateChange(modelId: string, before: { status: string | null | undefined; country: string | null | undefined }, after: { status: string; country: string | null }): UnitTallyChange {
  const registered = (s: string | null | undefined) => (s && s !== 'unregistered' ? 1 : 0);
  const pending = (s: string | null | undefined) => (s === 'transfer-pending' ? 1 : 0);
  return {
    modelId,
    registered: registered(after.status) - registered(before.status),
    transferPending: pending(after.status) - pending(before.status),
    registeredCountry: { from: before.country ?? null, to: after.country },
  };
}

/**
 * The tally change for one unit whose last check-in country went from `before` (null: its
 * first check-in) to `after`: what the check-ins service passes on per unit and batch.
 */
export function unitCheckInChange(modelId: string, before: string | null | undefined, after: string): UnitTallyChange {
  return { modelId, withCheckIns: before ? 0 : 1, checkInCountry: { from: before ?? null, to: after } };
}

/**
 * Bumped by every tally write in this process, so this process's readers re-read the tallies
 * at once after its own writes. It is not shared state: another instance's writes reach a
 * reader within its cache bound (see server/services/insight/tallies.ts).
 */
let tallyVersion = 0;
export const unitTallyVersion = () => tallyVersion;

/**
 * Applies unit changes to the per-model tallies: the changes are summed per model and each
 * model's tally gets ONE `$inc` update by `_id` (upserted), so a batch of any size costs one
 * round trip per model it touches.
 *
 * Contract for writers (call it AFTER the unit write succeeded, only for changes that took
 * effect, with the values the write actually replaced):
 *  - unit created: `{ modelId, units: 1 }` (plus its country/status if created with them);
 *    unit deleted: the negatives of everything it counted in;
 *  - status changed: `registered` ±1 when it crosses `unregistered` ↔ anything else,
 *    `transferPending` ±1 when it enters/leaves `transfer-pending` (`unitStateChange` does both);
 *  - `current.country` changed: `registeredCountry: { from: old, to: new }`;
 *  - check-ins (`checkIns.lastCountry` old → new): `checkInCountry: { from: old, to: new }`,
 *    and on a unit's FIRST check-in (old null) also `withCheckIns: 1`.
 * Never throws on an empty list. Not transactional with the unit write: a crash in between
 * leaves the tallies off until `npm run insight:rebuild` recomputes them.
 */
export async function tallyUnits(changes: readonly UnitTallyChange[]): Promise<void> {
  const perModel = new Map<string, Record<string, number>>();
  const add = (inc: Record<string, number>, path: string, n: number | undefined) => {
    if (n) inc[path] = (inc[path] ?? 0) + n;
  };
  for (const c of changes) {
    const inc = perModel.get(c.modelId) ?? {};
    perModel.set(c.modelId, inc);
    add(inc, 'units', c.units);
    add(inc, 'registered', c.registered);
    add(inc, 'transferPending', c.transferPending);
    add(inc, 'withCheckIns', c.withCheckIns);
    for (const [field, move] of [['byRegisteredCountry', c.registeredCountry], ['byCheckInCountry', c.checkInCountry]] as const) {
      if (!move || move.from === move.to) continue;
      if (move.from) add(inc, `${field}.${move.from}`, -1);
      if (move.to) add(inc, `${field}.${move.to}`, 1);
    }
  }
  for (const [modelId, inc] of perModel) {
    for (const [k, v] of Object.entries(inc)) if (v === 0) delete inc[k];
    if (!Object.keys(inc).length) continue;
    tallyVersion++;
    // The driver, not Mongoose: a `$inc` of a Map entry (`byCheckInCountry.KE`) needs no
    // casting; an upserted document holds only the fields incremented so far. `writes` lets a
    // rebuild running in any instance count the writes it overlapped.
    await UnitTally.collection.updateOne({ _id: modelId as never }, { $inc: { ...inc, writes: 1 } }, { upsert: true });
    tallyVersion++; // again once written: a read that overlapped the write is not kept
  }
}

export interface TallyFigures {
  units: number;
  registered: number;
  transferPending: number;
  withCheckIns: number;
  byRegisteredCountry: Record<string, number>;
  byCheckInCountry: Record<string, number>;
}

/** Every model's tally (a few dozen `_id`-keyed documents), as plain numbers. */
export async function readUnitTallies(): Promise<Array<TallyFigures & { modelId: string }>> {
  const docs = await UnitTally.collection.find({}).toArray();
  return docs.map((d) => ({
    modelId: String(d._id),
    units: Number(d.units ?? 0),
    registered: Number(d.registered ?? 0),
    transferPending: Number(d.transferPending ?? 0),
    withCheckIns: Number(d.withCheckIns ?? 0),
    byRegisteredCountry: { ...((d.byRegisteredCountry as Record<string, number> | undefined) ?? {}) },
    byCheckInCountry: { ...((d.byCheckInCountry as Record<string, number> | undefined) ?? {}) },
  }));
}

/** The tallies' rebuild state (see models/insight.ts), or null if never started on this database. */
export async function unitTallyState() {
  return InsightState.findById(UNIT_TALLIES).lean();
}

/**
 * Claims the tallies' first rebuild for the caller, across every instance on the database:
 * `claimed` (inserted the `building` state, or took over one whose heartbeat stopped before
 * `staleBefore`), `building` (another instance is at it) or `ready` (nothing to do).
 */
export async function claimUnitTallyRebuild(now: Date, staleBefore: Date): Promise<'claimed' | 'building' | 'ready'> {
  const state = await InsightState.collection.findOne({ _id: UNIT_TALLIES as never });
  if (!state) {
    try {
      await InsightState.collection.insertOne({ _id: UNIT_TALLIES as never, status: 'building', startedAt: now, heartbeatAt: now, concurrentChanges: 0 });
      return 'claimed';
    } catch (err) {
      if (isDuplicateKey(err)) return 'building'; // another instance inserted it first
      throw err;
    }
  }
  if (state.status === 'ready' || (!state.status && state.rebuiltAt)) return 'ready';
  const heartbeat = state.heartbeatAt as Date | undefined;
  if (heartbeat && heartbeat >= staleBefore) return 'building';
  const takeover = await InsightState.collection.updateOne({ _id: UNIT_TALLIES as never, status: 'building', heartbeatAt: heartbeat ?? null }, { $set: { startedAt: now, heartbeatAt: now } });
  return takeover.matchedCount ? 'claimed' : 'building';
}

/** The running rebuild is alive (its claim stays its own); a no-op once it is ready. */
export async function unitTallyRebuildAlive(now: Date): Promise<void> {
  await InsightState.collection.updateOne({ _id: UNIT_TALLIES as never, status: 'building' }, { $set: { heartbeatAt: now } });
}

const REBUILD_BATCH = 1000;

const tallyWrites = async () => new Map((await UnitTally.collection.find({}, { projection: { writes: 1 } }).toArray()).map((d) => [String(d._id), Number(d.writes ?? 0)]));

/**
 * Recomputes every model's tally from the units: one streamed cursor over the units with only
 * the tallied fields projected (memory holds one batch and the per-model counts, never the
 * units), then one replacing write per model, tallies of models without units removed, and
 * the state written last as `ready`.
 *
 * Writes during a rebuild: a unit changed after the cursor passed it has its `tallyUnits`
 * delta overwritten by the rebuild's final write, so it is missing until the next rebuild; a
 * unit changed before the cursor reaches it is counted right. Run it with no writers (the
 * portal stopped, as for the other maintenance commands) for exact figures; the app runs it
 * itself only when no rebuild was ever recorded. The tallies' `writes` counters, read before
 * and after the scan, count the tally writes it overlapped from any instance
 * (`concurrentChanges`), so one can tell whether a second run is needed.
 */
export async function rebuildUnitTallies(opts: { now: Date; progress?: (units: number) => void; progressEvery?: number }): Promise<{ units: number; models: number; concurrentChanges: number; ms: number }> {
  const started = performance.now();
  const writesBefore = await tallyWrites();
  const tallies = new Map<string, TallyFigures>();
  let units = 0;
  const every = opts.progressEvery ?? 10_000;
  const cursor = Unit.collection.find({}, { projection: { modelId: 1, status: 1, 'current.country': 1, 'checkIns.lastCountry': 1 }, batchSize: REBUILD_BATCH });
  for await (const u of cursor) {
    const modelId = String(u.modelId);
    let t = tallies.get(modelId);
    if (!t) tallies.set(modelId, (t = { units: 0, registered: 0, transferPending: 0, withCheckIns: 0, byRegisteredCountry: {}, byCheckInCountry: {} }));
    t.units++;
    const status = (u.status as string | undefined) ?? 'unregistered';
    if (status !== 'unregistered') t.registered++;
    if (status === 'transfer-pending') t.transferPending++;
    const country = (u.current as { country?: string | null } | undefined)?.country;
    if (country) t.byRegisteredCountry[country] = (t.byRegisteredCountry[country] ?? 0) + 1;
    const checkIn = (u.checkIns as { lastCountry?: string | null } | undefined)?.lastCountry;
    if (checkIn) {
      t.withCheckIns++;
      t.byCheckInCountry[checkIn] = (t.byCheckInCountry[checkIn] ?? 0) + 1;
    }
    if (++units % every === 0) opts.progress?.(units);
  }
  const writesAfter = await tallyWrites();
  const concurrentChanges = [...writesAfter].reduce((a, [modelId, n]) => a + n - (writesBefore.get(modelId) ?? 0), 0);
  tallyVersion++;
  for (const [modelId, t] of tallies) await UnitTally.collection.replaceOne({ _id: modelId as never }, { ...t, writes: writesAfter.get(modelId) ?? 0 }, { upsert: true });
  // Few documents: the `$nin` stays far below SQLite's variable limit (one per model).
  await UnitTally.collection.deleteMany({ _id: { $nin: [...tallies.keys()] as never[] } });
  tallyVersion++;
  await InsightState.collection.replaceOne({ _id: UNIT_TALLIES as never }, { status: 'ready', rebuiltAt: opts.now, units, concurrentChanges }, { upsert: true });
  opts.progress?.(units);
  return { units, models: tallies.size, concurrentChanges, ms: performance.now() - started };
}

// ---------------------------------------------------------------------------------------
// The store the insight service receives
// ---------------------------------------------------------------------------------------

export interface SnapshotHead {
  computedAt: Date | null;
  refreshingSince: Date | null;
  /** Which stored figures are current (null: none yet). */
  figuresId: string | null;
}

const figuresOf = (key: string) => `${key}#figures`;

export interface ExportQuery {
  /** null: every model. */
  modelIds: string[] | null;
  country?: string;
  status?: string;
}

export interface CaseExportQuery extends ExportQuery {
  /** Cases the viewer may not see (see `caseIdsHiddenFrom`). */
  hiddenCaseIds: readonly string[];
}

/** What the dashboard and the transparency report read of a case. */
export interface CaseForFigures {
  _id: string;
  status: CaseStatusValue;
  priorityLevel?: string | null;
  closureReason?: string | null;
  harmCategories?: string[] | null;
  modelIds?: string[] | null;
  openedAt: Date;
  closedAt?: Date | null;
  deadlines?: { acknowledgeBy?: Date | null; acknowledgedAt?: Date | null; feedbackBy?: Date | null; feedbackGivenAt?: Date | null; reviewBy?: Date | null } | null;
  actions?: Array<{ kind: string; createdAt: Date }> | null;
  conflictedUserIds: string[];
}
type CaseStatusValue = import('../../models/cases').CaseStatus;

export type UnitForEpcis = {
  _id: string;
  modelId: string;
  createdAt: Date;
  firstSale?: { channelPartner?: string | null; shipToCountry?: string | null; soldAt?: Date | null } | null;
  registrationIds?: string[] | null;
  transferIds?: string[] | null;
  checkIns?: { periods?: string[] | null } | null;
};
export type RegistrationForEpcis = { _id: string; country: string; createdAt: Date; status?: string | null };
export type TransferForEpcis = { _id: string; registrationId: string; kind: string; status: string; newLocation?: { country: string } | null; effectiveDate: Date; createdAt: Date; decision?: { at?: Date | null } | null };

/** Every read here but a unit's history takes the same path on both engines. */
export function createInsightStore(engine: Engine) {
  const inModels = (field: string, ids: string[] | null) => (ids ? { [field]: { $in: ids } } : {});
  const snapshots = InsightSnapshot.collection;

  const history = createCheckInHistoryStore(engine);
  /** A unit's check-in runs, oldest first, from its history buckets. */
  const checkInRunsOf = (unit: UnitForEpcis | { _id: string; checkIns?: { periods?: string[] | null } | null }): Promise<CheckInRun[]> => history.runsOf(unit);

  return {
    // ----- unit tallies -----
    readUnitTallies,
    unitTallyVersion,
    claimUnitTallyRebuild,
    unitTallyRebuildAlive,
    rebuildUnitTallies,

    // ----- shared snapshots: a small head document per key, the figures in a second one -----

    /** When the figures of `key` were computed and whether a refresh is claimed (a small document). */
    async snapshot(key: string): Promise<SnapshotHead | null> {
      const head = await snapshots.findOne({ _id: key as never });
      return head ? { computedAt: (head.computedAt as Date | null) ?? null, refreshingSince: (head.refreshingSince as Date | null) ?? null, figuresId: (head.figuresId as string | null) ?? null } : null;
    },

    /**
     * The figures of `key` as last stored, or null. Their own document: decoding a few hundred
     * kilobytes of figures costs the embedded engine ~300 ms, so readers fetch them only when
     * the head says they changed.
     */
    async snapshotFigures<T>(key: string): Promise<{ figuresId: string; figures: T } | null> {
      const doc = await snapshots.findOne({ _id: figuresOf(key) as never });
      return doc?.figures ? { figuresId: String(doc.figuresId), figures: doc.figures as T } : null;
    },

    /**
     * Claims the refresh of a snapshot the caller saw as `seen` (null: there was none): true
     * for exactly one caller across instances, unless a refresh claimed before `staleBefore`
     * never finished (its process died), which may be taken over.
     */
    async claimSnapshotRefresh(key: string, seen: SnapshotHead | null, now: Date, staleBefore: Date): Promise<boolean> {
      if (!seen) {
        try {
          await snapshots.insertOne({ _id: key as never, computedAt: null, refreshingSince: now });
          return true;
        } catch (err) {
          if (isDuplicateKey(err)) return false;
          throw err;
        }
      }
      if (seen.refreshingSince && seen.refreshingSince >= staleBefore) return false;
      const res = await snapshots.updateOne({ _id: key as never, computedAt: seen.computedAt, refreshingSince: seen.refreshingSince }, { $set: { refreshingSince: now } });
      return res.matchedCount === 1;
    },

    /** Stores fresh figures, then the head naming them, unless newer ones were stored meanwhile; the refresh claim ends. */
    async saveSnapshot(key: string, figures: unknown, computedAt: Date): Promise<void> {
      const notNewer = { $or: [{ computedAt: null }, { computedAt: { $lte: computedAt } }] };
      // Names these figures for readers holding a copy (two refreshes may share a `computedAt`).
      const figuresId = randomUUID();
      try {
        await snapshots.updateOne({ _id: figuresOf(key) as never, ...notNewer }, { $set: { figures, figuresId, computedAt } }, { upsert: true });
      } catch (err) {
        if (isDuplicateKey(err)) return; // newer figures are stored: the upsert found no older ones to replace
        throw err;
      }
      await snapshots.updateOne({ _id: key as never, ...notNewer }, { $set: { computedAt, figuresId, refreshingSince: null } }, { upsert: true }).catch((err: unknown) => {
        if (!isDuplicateKey(err)) throw err;
      });
    },

    /** A refresh that failed gives its claim back, so the next reader tries again. */
    async releaseSnapshotRefresh(key: string, claimedAt: Date): Promise<void> {
      await snapshots.updateOne({ _id: key as never, refreshingSince: claimedAt }, { $set: { refreshingSince: null } });
    },

    // ----- product models (a small collection) -----

    async modelRisk(modelId: string): Promise<{ _id: string; riskLevel: RiskLevel } | null> {
      return ProductModel.findById(modelId, { riskLevel: 1 }).lean();
    },

    async modelIdsOfRisk(risk: RiskLevel): Promise<string[]> {
      return (await ProductModel.find({ riskLevel: risk }, { _id: 1 }).lean()).map((m) => m._id);
    },

    async modelChoices(): Promise<Array<{ _id: string; name: string; riskLevel: RiskLevel }>> {
      return ProductModel.find({}, { name: 1, riskLevel: 1 }).sort({ _id: 1 }).lean();
    },

    async modelExists(modelId: string): Promise<boolean> {
      return (await ProductModel.findById(modelId, { _id: 1 }).lean()) !== null;
    },

    // ----- scans of the small collections behind the figures -----

    async *flagsRaised(from: Date, to: Date): AsyncIterable<{ rule: FlagRule; modelId: string | null; raisedAt: Date }> {
      for await (const f of Flag.find({ raisedAt: { $gte: from, $lt: to } }, { rule: 1, modelId: 1, raisedAt: 1 }).lean().cursor({ batchSize: CURSOR_BATCH })) {
        yield { rule: f.rule as FlagRule, modelId: f.modelId ?? null, raisedAt: f.raisedAt };
      }
    },

    async *reportsReceived(from: Date, to: Date): AsyncIterable<{ receivedAt: Date; status: string; harmCategories: string[]; country: string | null }> {
      const projection = { receivedAt: 1, status: 1, 'what.harmCategories': 1, 'where.country': 1 };
      for await (const r of Report.find({ receivedAt: { $gte: from, $lt: to } }, projection).lean().cursor({ batchSize: CURSOR_BATCH })) {
        yield { receivedAt: r.receivedAt, status: r.status, harmCategories: r.what?.harmCategories ?? [], country: r.where?.country ?? null };
      }
    },

    // Read-side scans of cases for figures and exports (the cases store owns every write to them).
    async *casesForFigures(): AsyncIterable<CaseForFigures> {
      const projection = { status: 1, priorityLevel: 1, closureReason: 1, harmCategories: 1, modelIds: 1, openedAt: 1, closedAt: 1, deadlines: 1, 'actions.kind': 1, 'actions.createdAt': 1, conflictedUserIds: 1 };
      for await (const c of Case.find({}, projection).lean().cursor({ batchSize: CURSOR_BATCH })) {
        yield { ...(c as unknown as CaseForFigures), conflictedUserIds: (c.conflictedUserIds ?? []).map(String) };
      }
    },

    /** The cases a person may not see: those they are marked conflicted on (the cases module's rule). */
    async caseIdsHiddenFrom(userId: string): Promise<string[]> {
      if (!isValidObjectId(userId)) return [];
      return (await Case.find({ conflictedUserIds: new Types.ObjectId(userId) }, { _id: 1 }).lean()).map((c) => String(c._id));
    },

    // ----- exports (streamed: memory holds one cursor batch) -----

    units(q: ExportQuery) {
      const filter = { ...inModels('modelId', q.modelIds), ...(q.country ? { 'current.country': q.country } : {}), ...(q.status ? { status: q.status } : {}) };
      return Unit.find(filter, { countries: 0 }).lean().cursor({ batchSize: CURSOR_BATCH });
    },

    /** Contact details stay out of bulk exports: the registration page shows them to staff. */
    registrations(q: ExportQuery) {
      const filter = { ...inModels('modelId', q.modelIds), ...(q.country ? { country: q.country } : {}), ...(q.status ? { status: q.status } : {}) };
      return Registration.find(filter, { contact: 0, declaredEndUse: 0, proofOfPurchase: 0 }).lean().cursor({ batchSize: CURSOR_BATCH });
    },

    async *unitsWithCheckIns(q: ExportQuery) {
      const filter = { ...inModels('modelId', q.modelIds), ...(q.country ? { 'checkIns.lastCountry': q.country } : {}), 'checkIns.count': { $gt: 0 } };
      for await (const u of Unit.find(filter, { modelId: 1, serial: 1, current: 1, checkIns: 1, controls: 1 }).lean().cursor({ batchSize: CURSOR_BATCH })) {
        yield { unit: u, runs: await checkInRunsOf(u) };
      }
    },

    // Case exports, without the cases the viewer is conflicted on.
    cases(q: CaseExportQuery) {
      const filter = { ...inModels('modelIds', q.modelIds), ...(q.country ? { countries: q.country } : {}), ...(q.status ? { status: q.status } : {}), ...(q.hiddenCaseIds.length ? { _id: { $nin: [...q.hiddenCaseIds] } } : {}) };
      const projection = { status: 1, priorityLevel: 1, closureReason: 1, sourceKinds: 1, rules: 1, harmCategories: 1, countries: 1, modelIds: 1, unitIds: 1, 'actions.kind': 1, openedAt: 1, closedAt: 1, deadlines: 1 };
      return Case.find(filter, projection).lean().cursor({ batchSize: CURSOR_BATCH });
    },

    actions(q: CaseExportQuery) {
      const filter = { ...inModels('modelIds', q.modelIds), ...(q.country ? { countries: q.country } : {}), ...(q.hiddenCaseIds.length ? { _id: { $nin: [...q.hiddenCaseIds] } } : {}) };
      const byStatus = q.status ? [{ $match: { 'actions.status': q.status } }] : [];
      type Row = { _id: string; actions: { _id: string; kind: string; status: string; target?: { unitIds?: string[] }; dueBy?: Date | null; createdAt: Date; updatedAt: Date; outcome?: string } };
      return Case.aggregate<Row>([{ $match: { ...filter, ...(q.status ? { 'actions.status': q.status } : {}) } }, { $unwind: '$actions' }, ...byStatus, { $project: { actions: 1 } }]).cursor({ batchSize: CURSOR_BATCH });
    },

    // ----- EPCIS: one unit's history, read by `_id` -----

    async unit(unitId: string): Promise<UnitForEpcis | null> {
      return Unit.findById(unitId, { countries: 0 }).lean();
    },

    /** A model's units: an `_id` range (ids start with the SKU), as the catalogue lists them. */
    unitsOfModel(modelId: string): AsyncIterable<UnitForEpcis> {
      return Unit.find({ _id: { $gt: `${modelId}:`, $lt: `${modelId};` } }, { countries: 0 }).lean().cursor({ batchSize: 100 });
    },

    async historyOf(unit: UnitForEpcis): Promise<{ registrations: RegistrationForEpcis[]; transfers: TransferForEpcis[]; runs: CheckInRun[] }> {
      const [registrations, transfers, runs] = await Promise.all([
        Promise.all((unit.registrationIds ?? []).map((id) => Registration.findById(id, { country: 1, createdAt: 1, status: 1 }).lean())),
        Promise.all((unit.transferIds ?? []).map((id) => Transfer.findById(id).lean())),
        checkInRunsOf(unit),
      ]);
      return { registrations: registrations.filter((r) => r !== null), transfers: transfers.filter((t) => t !== null) as TransferForEpcis[], runs };
    },
  };
}

export type InsightStore = ReturnType<typeof createInsightStore>;
