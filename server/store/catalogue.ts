import type { Model } from 'mongoose';
import { ImportJob, ModelGtin, ProductModel, SerialIndex, Unit } from '../../models/catalogue';
import { tallyUnits, unitStateChange } from './insight';
import { byIds, existingByIds } from './by-ids';
import { chunksOf, type Engine, isDuplicateKey, DUPLICATE_KEY, writeErrorsOf } from './engine';

/**
 * Product models, units, the serial lookup and import jobs. Every write here is one
 * single-document atomic update (or an insert whose unique `_id` decides a race): nothing
 * is serialised in the process, so any number of app instances may write at once.
 *
 * Kept in step on every insert and removal of units: `SerialIndex` (serial → unit ids, see
 * CONTRIBUTING.md "Stored shape"), the model's `unitCount`, and the dashboard's unit tallies
 * (`tallyUnits`, owned by insight).
 */

const modelById = (id: string) => ProductModel.findById(id).lean();
const unitById = (id: string) => Unit.findById(id).lean();
const importJobById = (id: string) => ImportJob.findById(id).lean();
export type LeanModel = NonNullable<Awaited<ReturnType<typeof modelById>>>;
export type LeanUnit = NonNullable<Awaited<ReturnType<typeof unitById>>>;

export interface NewModel {
  _id: string;
  sku: string;
  name: string;
  category: string;
  riskLevel: string;
  capabilities: string[];
  intendedUses: string[];
  publicName: string;
  endUseTerms: Array<{ version: number; text: string; publishedAt: Date }>;
  createdAt: Date;
  updatedAt: Date;
}

/** A unit as the catalogue creates it; the schema fills in the summary's defaults. */
export interface NewUnit {
  _id: string;
  modelId: string;
  serial: string;
  manufacturedAt: Date | null;
  firstSale: { channelPartner: string; shipToCountry: string | null; soldAt: Date | null };
  countries: Array<{ country: string; source: 'first-sale'; firstSeen: Date; lastSeen: Date }>;
  createdAt: Date;
  updatedAt: Date;
}

/** What deciding whether a unit may be removed needs. */
type RemovableUnit = { _id: string; modelId: string; serial: string; status?: string | null; current?: { country?: string | null } | null };

/** Indexes of the documents an unordered insertMany refused as duplicates, and other refusals with their message. */
async function insertUnordered(model: Model<never>, docs: object[]): Promise<Map<number, string | null>> {
  const refused = new Map<number, string | null>(); // index → message (null: duplicate key)
  if (!docs.length) return refused;
  try {
    await model.collection.insertMany(docs as never[], { ordered: false });
  } catch (err) {
    const writeErrors = writeErrorsOf(err);
    if (!writeErrors.length) throw err;
    for (const e of writeErrors) refused.set(e.index, e.code === DUPLICATE_KEY ? null : (e.errmsg ?? 'could not be stored.'));
  }
  return refused;
}

/**
 * An upsert of a lookup document can lose the insert race to a concurrent one on MongoDB
 * (both find nothing, one insert fails on the unique `_id`): the retry is then an update.
 */
async function upsertRetried(write: () => Promise<unknown>) {
  await write().catch((err: unknown) => {
    if (!isDuplicateKey(err)) throw err;
    return write();
  });
}

export function createCatalogueStore(engine: Engine) {
  /** Keeps the serial lookup, the models' counts and the dashboard's tallies in step with new units. */
  async function indexNewUnits(units: ReadonlyArray<{ _id: string; modelId: string; serial: string }>) {
    if (!units.length) return;
    // A serial new to the lookup is one bulk insert; only serials shared with another model
    // (already there) take an `$addToSet` each: two round trips for a batch in the usual case.
    const entries = units.map((u) => ({ _id: u.serial, unitIds: [u._id] }));
    const taken = await insertUnordered(SerialIndex as never, entries);
    for (const [i, message] of taken) {
      if (message !== null) throw new Error(`serial lookup: ${message}`);
      await addToSerial(entries[i]!._id, entries[i]!.unitIds[0]!);
    }
    const perModel = countPerModel(units);
    for (const [modelId, n] of perModel) await ProductModel.updateOne({ _id: modelId }, { $inc: { unitCount: n } });
    // New units are unregistered and never checked in.
    await tallyUnits([...perModel].map(([modelId, n]) => ({ modelId, units: n })));
  }

  const addToSerial = (serial: string, unitIdValue: string) => upsertRetried(() => SerialIndex.updateOne({ _id: serial }, { $addToSet: { unitIds: unitIdValue } }, { upsert: true }));

  return {
    // ----- product models -----

    modelById,

    async modelExists(id: string) {
      return (await ProductModel.exists({ _id: id })) !== null;
    },

    /** False when a model with this `_id` (SKU) exists already. */
    async insertModel(doc: NewModel): Promise<boolean> {
      try {
        await ProductModel.create(doc);
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    updateModel: (id: string, set: Record<string, unknown>): Promise<LeanModel | null> => ProductModel.findOneAndUpdate({ _id: id }, { $set: set }, { new: true, runValidators: true }).lean(),

    /**
     * Appends a version of the end-use terms, guarded by how many versions the caller saw: of
     * two concurrent publishers one matches, the other is told to read again (false).
     */
    async appendTerms(id: string, versionsSeen: number, terms: { version: number; text: string; publishedAt: Date }): Promise<boolean> {
      const res = await ProductModel.updateOne({ _id: id, endUseTerms: { $size: versionsSeen } }, { $push: { endUseTerms: terms }, $set: { updatedAt: terms.publishedAt } });
      return res.modifiedCount === 1;
    },

    /**
     * Gives the model `gtin` (or none): the lookup is claimed first, so of two models asking for
     * one GTIN only one gets it (false: another model has it). The model's previous GTIN is freed.
     */
    async setModelGtin(modelId: string, gtin: string | null, previous: string | null): Promise<boolean> {
      if (gtin && gtin !== previous) {
        try {
          await ModelGtin.create({ _id: gtin, modelId });
        } catch (err) {
          if (!isDuplicateKey(err)) throw err;
          if ((await ModelGtin.findById(gtin).lean())?.modelId !== modelId) return false;
        }
      }
      await ProductModel.updateOne({ _id: modelId }, { $set: { gtin } });
      if (previous && previous !== gtin) await ModelGtin.deleteOne({ _id: previous, modelId });
      return true;
    },

    /** The model ids of GTIN-14s, in order (null where none). */
    async modelIdsByGtins(gtins: readonly string[]): Promise<Array<string | null>> {
      return (await byIds<{ _id: string; modelId: string }>(engine, ModelGtin as never, gtins)).map((d) => d?.modelId ?? null);
    },

    async listModels(page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([ProductModel.find({}).sort({ _id: 1 }).skip(page.skip).limit(page.limit).lean(), ProductModel.countDocuments({})]);
      return { items, total };
    },

    /** Every model's SKU and names: the models are a small collection, a scan is fine. */
    modelNames: (limit?: number) => ProductModel.find({}, { sku: 1, name: 1, publicName: 1 }).sort({ _id: 1 }).limit(limit ?? 0).lean(),

    // ----- units -----

    unitById,

    /** Units by id, in the order asked (missing ones left out). */
    unitsByIds: (ids: readonly string[], projection?: Record<string, 0 | 1>) => existingByIds<LeanUnit>(engine, Unit as never, ids, projection),

    /** Inserts one unit and indexes it; false when the model already has a unit with this serial. */
    async insertUnit(doc: NewUnit): Promise<boolean> {
      try {
        await Unit.create(doc);
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
      await indexNewUnits([doc]);
      return true;
    },

    /**
     * Inserts a batch of units in one round trip (unordered) and indexes those stored. Units
     * first, then their lookup entries: a batch stopped in between leaves a unit the lookup
     * misses (still found by `_id`), never an entry for a unit that is not there.
     * Returns, per refused index, null for a duplicate or the engine's message.
     */
    async insertUnits(docs: readonly NewUnit[]): Promise<Map<number, string | null>> {
      const refused = await insertUnordered(
        Unit as never,
        docs.map((d) => new Unit(d).toObject()),
      );
      await indexNewUnits(docs.filter((_, i) => !refused.has(i)));
      return refused;
    },

    updateUnit: (id: string, set: Record<string, unknown>): Promise<LeanUnit | null> => Unit.findOneAndUpdate({ _id: id }, { $set: set }, { new: true }).lean(),

    /**
     * A model's units: an `_id` range (unit ids start with the SKU), in the store's natural
     * order. No sort on purpose: FerretDB v1 can stop a filtered scan at `limit`, but a sort
     * makes it read the whole collection (measured: 4 ms vs 4.9 s for 20,000 units).
     */
    unitsOfModel: (modelId: string, page: { skip: number; limit: number }) =>
      Unit.find({ _id: { $gt: `${modelId}:`, $lt: `${modelId};` } })
        .skip(page.skip)
        .limit(page.limit)
        .lean(),

    /** The unit ids carrying a bare serial (several models may share one): one `_id` read. */
    async unitIdsWithSerial(serial: string): Promise<string[]> {
      return (await SerialIndex.findById(serial).lean())?.unitIds ?? [];
    },

    /**
     * Removes those of `ids` that were never registered, owned or seen checking in. Each unit
     * goes by its own `_id` delete guarded by exactly that, so a unit registered meanwhile is
     * kept: FerretDB v1 runs a `deleteMany` by any other filter or `$in` as a scan, then
     * deletes every match in one SQL statement with a variable per document, which fails past
     * 32,766 ("too many SQL variables"). Returns the removed units and how many were missing.
     */
    async removeUnusedUnits(ids: readonly string[]): Promise<{ removed: RemovableUnit[]; kept: number; missing: number }> {
      const removed: RemovableUnit[] = [];
      let kept = 0;
      for (const chunk of chunksOf(ids)) {
        const gone = await Promise.all(
          chunk.map((_id) =>
            Unit.findOneAndDelete(
              // (No projection: FerretDB v1's findAndModify refuses one.)
              { _id, registrationId: null, ownerUserId: null, registrationIds: { $size: 0 }, 'checkIns.count': { $in: [0, null] } },
            ).lean<RemovableUnit>(),
          ),
        );
        const leftIds = chunk.filter((_, i) => !gone[i]);
        const left = await byIds(engine, Unit as never, leftIds, { _id: 1 });
        kept += left.filter((u) => u !== null).length;
        removed.push(...gone.filter((u): u is RemovableUnit => u !== null));
      }
      if (removed.length) {
        // The serial lookup loses the removed ids; an entry left empty goes (guarded: a unit
        // added meanwhile keeps it).
        const bySerial = new Map<string, string[]>();
        for (const u of removed) bySerial.set(u.serial, [...(bySerial.get(u.serial) ?? []), u._id]);
        for (const serials of chunksOf([...bySerial.keys()])) {
          await SerialIndex.bulkWrite(serials.map((serial) => ({ updateOne: { filter: { _id: serial }, update: { $pullAll: { unitIds: bySerial.get(serial)! } } } })), { ordered: false });
          await SerialIndex.bulkWrite(serials.map((serial) => ({ deleteOne: { filter: { _id: serial, unitIds: { $size: 0 } } } })), { ordered: false });
        }
        for (const [modelId, n] of countPerModel(removed)) await ProductModel.updateOne({ _id: modelId }, { $inc: { unitCount: -n } });
        // The dashboard's tallies lose whatever each removed unit counted in.
        await tallyUnits(removed.map((u) => ({ ...unitStateChange(u.modelId, { status: u.status, country: u.current?.country }, { status: 'unregistered', country: null }), units: -1 })));
      }
      return { removed, kept, missing: ids.length - removed.length - kept };
    },

    /** Rebuilds the serial lookup from the units (a repair; the migration runs it too). */
    async rebuildSerialIndex(progress?: (units: number) => void): Promise<number> {
      let seen = 0;
      let pending: Array<{ _id: string; serial: string }> = [];
      const flush = async () => {
        for (const chunk of chunksOf(pending)) await Promise.all(chunk.map((u) => addToSerial(u.serial, u._id)));
        pending = [];
      };
      for await (const u of Unit.find({}, { serial: 1 }).lean<{ _id: string; serial: string }>().cursor({ batchSize: 1_000 })) {
        pending.push(u);
        if (pending.length >= 1_000) await flush();
        if (++seen % 10_000 === 0) progress?.(seen);
      }
      await flush();
      return seen;
    },

    // ----- import jobs -----

    async insertImportJob(doc: { _id: string; fileName: string; status: 'running'; createdByUserId: string | null; startedAt: Date }) {
      await ImportJob.create(doc);
    },

    importJobById,

    async updateImportJob(id: string, set: Record<string, unknown>, rowErrors: ReadonlyArray<{ line: number; field: string; message: string }> = []) {
      await ImportJob.updateOne({ _id: id }, { $set: set, ...(rowErrors.length ? { $push: { rowErrors: { $each: rowErrors } } } : {}) });
    },

    async listImports(page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([ImportJob.find({}, { rowErrors: 0 }).sort({ startedAt: -1 }).skip(page.skip).limit(page.limit).lean(), ImportJob.countDocuments({})]);
      return { items, total };
    },

    // ----- units moved by captured EPCIS events (shipping, receiving) -----

    /** The unit's first sale, from a shipment, when it has none yet (false: it had one). */
    async recordFirstSale(unitId: string, country: string, at: Date): Promise<boolean> {
      const res = await Unit.updateOne(
        { _id: unitId, 'firstSale.soldAt': null, 'firstSale.shipToCountry': null },
        { $set: { 'firstSale.shipToCountry': country, 'firstSale.soldAt': at, updatedAt: at } },
      );
      return res.modifiedCount === 1;
    },

    /** A country the unit was told to be in (by a shipment), added once to its country history. */
    async addUnitCountry(unitId: string, country: string, source: 'first-sale' | 'transfer', at: Date) {
      await Unit.updateOne({ _id: unitId, 'countries.country': { $ne: country } }, { $push: { countries: { country, source, firstSeen: at, lastSeen: at } } });
    },
  };
}

function countPerModel(units: ReadonlyArray<{ modelId: string }>) {
  const perModel = new Map<string, number>();
  for (const u of units) perModel.set(u.modelId, (perModel.get(u.modelId) ?? 0) + 1);
  return perModel;
}

export type CatalogueStore = ReturnType<typeof createCatalogueStore>;
