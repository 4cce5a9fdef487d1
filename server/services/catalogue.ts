import crypto from 'node:crypto';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { parse as parseCsv } from 'csv-parse';
import type { Clock } from '../clock';
import type { Logger } from '../logger';
import { chunksOf } from '../store/engine';
import { isCountryCode } from '../countries';
import { ConflictError, NotFoundError, ValidationError } from '../errors';
import type { Page } from '../middleware/validate';
import {
  IMPORT_ERRORS_KEPT,
  ImportJob,
  ProductModel,
  SerialIndex,
  Unit,
  normaliseCode,
  unitId,
  type RiskLevel,
} from '../../models/catalogue';
import { tallyUnits, unitStateChange } from '../store/insight';
import type { AuditService } from './audit';

/**
 * Catalogue: product models (with versioned end-use terms) and their units, created one by
 * one or imported in bulk from CSV. A unit's `_id` is `SKU:SERIAL`; `SerialIndex`, the
 * model's `unitCount` and the dashboard's unit tally (models/insight.ts) are kept in step on
 * every insert.
 */

/**
 * Serialises writes to one document within this process. Measured on the embedded FerretDB
 * v1: it applies an update as read, change, write back, so concurrent updates of one document
 * lose each other (10 concurrent `$inc`s left 1; `$set`s of two different fields both lost).
 * Every write to a unit summary, a model's counter, a serial entry or a customer's index goes
 * through `writeLocked` with keys like `unit:<id>`; locks are taken together (registered
 * synchronously, so two callers cannot deadlock) and must not be nested. One process only:
 * with several app processes, use MongoDB.
 */
function createKeyedLocks() {
  const tails = new Map<string, Promise<void>>();
  return async function writeLocked<T>(keys: Iterable<string>, write: () => Promise<T>): Promise<T> {
    const mine = [...new Set(keys)];
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const before = mine.map((k) => tails.get(k)).filter((t) => t !== undefined);
    for (const k of mine) tails.set(k, held);
    try {
      await Promise.all(before);
      return await write();
    } finally {
      for (const k of mine) if (tails.get(k) === held) tails.delete(k);
      release();
    }
  };
}
export const writeLocked = createKeyedLocks();

/** What a normalised SKU or serial may contain: URL-safe, and never the `:` of a unit id. */
export const CODE_PATTERN = /^[A-Z0-9][A-Z0-9._-]{0,63}$/;
export const CODE_RULE = 'Use letters, digits, ".", "_" or "-" (at most 64).';

export interface Actor {
  userId: string | null;
}

export interface ModelInput {
  sku: string;
  name: string;
  category: string;
  riskLevel: RiskLevel;
  capabilities: string[];
  intendedUses: string[];
  publicName?: string;
  /** The first version of the end-use terms, if given at creation. */
  endUseTerms?: string;
}
export type ModelChanges = Partial<Omit<ModelInput, 'sku' | 'endUseTerms'>>;

export interface FirstSale {
  channelPartner?: string;
  shipToCountry?: string | null;
  soldAt?: Date | null;
}

export interface UnitInput {
  sku: string;
  serial: string;
  manufacturedAt?: Date | null;
  firstSale?: FirstSale;
}
export type UnitChanges = Pick<UnitInput, 'manufacturedAt' | 'firstSale'>;

/** Rows inserted per round trip: large enough to be fast, small enough to bound memory. */
export const IMPORT_BATCH_SIZE = 1000;

const IMPORT_COLUMNS: Record<string, keyof ImportRow> = {
  sku: 'sku',
  model: 'sku',
  serial: 'serial',
  serialnumber: 'serial',
  manufacturedat: 'manufacturedAt',
  manufacturedate: 'manufacturedAt',
  channelpartner: 'channelPartner',
  shiptocountry: 'shipToCountry',
  soldat: 'soldAt',
};
interface ImportRow {
  sku: string;
  serial: string;
  manufacturedAt: string;
  channelPartner: string;
  shipToCountry: string;
  soldAt: string;
}
/** The header row → which field each column fills (null: a column we ignore). */
function headerColumns(header: string[]): Array<keyof ImportRow | null> {
  const columns = header.map((h) => IMPORT_COLUMNS[h.toLowerCase().replace(/[^a-z]/g, '')] ?? null);
  const missing = (['sku', 'serial'] as const).filter((c) => !columns.includes(c));
  if (missing.length) throw new ValidationError({ file: `The first line must name the columns ${IMPORT_HEADER} (missing: ${missing.join(', ')}).` });
  return columns;
}

function toRow(columns: Array<keyof ImportRow | null>, record: string[]): ImportRow {
  const row: ImportRow = { sku: '', serial: '', manufacturedAt: '', channelPartner: '', shipToCountry: '', soldAt: '' };
  columns.forEach((c, i) => {
    if (c) row[c] = record[i] ?? '';
  });
  return row;
}

export const IMPORT_HEADER = 'sku,serial,manufactured_at,channel_partner,ship_to_country,sold_at';

/** `YYYY-MM-DD` that is a real calendar day → Date; '' → null; anything else → undefined. */
export function parseDay(value: string): Date | null | undefined {
  const v = value.trim();
  if (!v) return null;
  if (!/^\d{4}-\d{2}-\d{2}$/.test(v)) return undefined;
  const d = new Date(`${v}T00:00:00Z`);
  return Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== v ? undefined : d;
}

/** Opens an uploaded temporary file and removes its name at once: the open handle keeps reading. */
async function openAndUnlink(file: string): Promise<Readable> {
  const handle = await fs.promises.open(file, 'r');
  await fs.promises.rm(file, { force: true });
  return handle.createReadStream();
}

const randomId = (prefix: string) => `${prefix}_${crypto.randomBytes(10).toString('hex')}`;
const isDuplicateKey = (err: unknown) => (err as { code?: number }).code === 11000;

function newUnitDoc(modelId: string, serial: string, input: Pick<UnitInput, 'manufacturedAt' | 'firstSale'>, now: Date) {
  const sale = input.firstSale ?? {};
  const shipTo = sale.shipToCountry || null;
  return {
    _id: `${modelId}:${serial}`,
    modelId,
    serial,
    manufacturedAt: input.manufacturedAt ?? null,
    firstSale: { channelPartner: sale.channelPartner ?? '', shipToCountry: shipTo, soldAt: sale.soldAt ?? null },
    // The ship-to country is the first place we know the unit went; it is history, not a
    // registered location, so `current.country` stays empty until someone registers it.
    countries: shipTo ? [{ country: shipTo, source: 'first-sale', firstSeen: sale.soldAt ?? now, lastSeen: sale.soldAt ?? now }] : [],
    createdAt: now,
    updatedAt: now,
  };
}

export function createCatalogueService(deps: { clock: Clock; logger: Logger; audit: AuditService }) {
  const { clock, logger, audit } = deps;

  async function getModel(id: string) {
    const model = await ProductModel.findById(normaliseCode(id)).lean();
    if (!model) throw new NotFoundError('No product model with this SKU.');
    return model;
  }

  async function getImport(id: string) {
    const job = await ImportJob.findById(id).lean();
    if (!job) throw new NotFoundError('No such import.');
    return job;
  }

  async function getUnit(id: string) {
    const unit = await Unit.findById(id).lean();
    if (!unit) throw new NotFoundError('No unit with this id.');
    return unit;
  }

  /**
   * Keeps the serial lookup and the model's count in step with newly inserted units. A serial
   * new to the index is one bulk insert; only serials already there (shared by another model)
   * take an `$addToSet` each, so a batch costs two round trips in the usual case.
   */
  async function indexUnits(units: Array<{ modelId: string; serial: string }>) {
    if (!units.length) return;
    const entries = units.map((u) => ({ _id: u.serial, unitIds: [`${u.modelId}:${u.serial}`] }));
    const taken = new Set<number>();
    try {
      await SerialIndex.collection.insertMany(entries as never[], { ordered: false });
    } catch (err) {
      const writeErrors = (err as { writeErrors?: Array<{ index: number; code: number }> }).writeErrors;
      if (!writeErrors) throw err;
      for (const e of writeErrors) {
        if (e.code !== 11000) throw err;
        taken.add(e.index);
      }
    }
    for (const i of taken) {
      const { _id, unitIds } = entries[i]!;
      await writeLocked([`serial:${_id}`], () => SerialIndex.updateOne({ _id }, { $addToSet: { unitIds: unitIds[0] } }));
    }
    const perModel = new Map<string, number>();
    for (const u of units) perModel.set(u.modelId, (perModel.get(u.modelId) ?? 0) + 1);
    for (const [modelId, n] of perModel) await writeLocked([`model:${modelId}`], () => ProductModel.updateOne({ _id: modelId }, { $inc: { unitCount: n } }));
    // The dashboard's tallies (models/insight.ts): new units are unregistered, never checked in.
    await tallyUnits([...perModel].map(([modelId, n]) => ({ modelId, units: n })));
  }

  function checkCodes(sku: string, serial: string) {
    const errors: Record<string, string> = {};
    if (!CODE_PATTERN.test(sku)) errors.sku = `Not a valid SKU. ${CODE_RULE}`;
    if (!CODE_PATTERN.test(serial)) errors.serial = `Not a valid serial number. ${CODE_RULE}`;
    if (Object.keys(errors).length) throw new ValidationError(errors);
  }

  // ----- bulk import -----

  /** One CSV row → a unit document, or the field and message that refuse it. */
  function checkRow(row: ImportRow, knownModels: Map<string, boolean>): { error: { field: string; message: string } } | { doc: ReturnType<typeof newUnitDoc> } {
    const sku = normaliseCode(row.sku ?? '');
    const serial = normaliseCode(row.serial ?? '');
    if (!CODE_PATTERN.test(sku)) return { error: { field: 'sku', message: sku ? `bad SKU "${row.sku}". ${CODE_RULE}` : 'SKU is missing.' } };
    if (!knownModels.get(sku)) return { error: { field: 'sku', message: `unknown model "${sku}": create it in the catalogue first.` } };
    if (!CODE_PATTERN.test(serial)) return { error: { field: 'serial', message: serial ? `bad serial "${row.serial}". ${CODE_RULE}` : 'serial is missing.' } };
    const manufacturedAt = parseDay(row.manufacturedAt ?? '');
    if (manufacturedAt === undefined) return { error: { field: 'manufactured_at', message: `bad date "${row.manufacturedAt}": use YYYY-MM-DD.` } };
    const soldAt = parseDay(row.soldAt ?? '');
    if (soldAt === undefined) return { error: { field: 'sold_at', message: `bad date "${row.soldAt}": use YYYY-MM-DD.` } };
    const country = (row.shipToCountry ?? '').trim().toUpperCase();
    if (country && !isCountryCode(country)) return { error: { field: 'ship_to_country', message: `bad country "${row.shipToCountry}": use an ISO 3166-1 alpha-2 code such as KE.` } };
    const channelPartner = (row.channelPartner ?? '').trim();
    if (channelPartner.length > 200) return { error: { field: 'channel_partner', message: 'channel partner is longer than 200 characters.' } };
    return { doc: newUnitDoc(sku, serial, { manufacturedAt, firstSale: { channelPartner, shipToCountry: country || null, soldAt } }, clock.now()) };
  }

  /** Inserts one batch; rows whose unit already exists are counted as skipped, not errors. */
  async function insertBatch(docs: Array<ReturnType<typeof newUnitDoc>>): Promise<{ imported: number; skipped: number; failed: Array<{ index: number; message: string }> }> {
    if (!docs.length) return { imported: 0, skipped: 0, failed: [] };
    const refused = new Map<number, string | null>(); // index → message (null: duplicate)
    try {
      // The driver's insertMany: one round trip, schema defaults filled in by `new Unit()`.
      await Unit.collection.insertMany(docs.map((d) => new Unit(d).toObject() as unknown as Record<string, unknown>) as never[], { ordered: false });
    } catch (err) {
      const writeErrors = (err as { writeErrors?: Array<{ index: number; code: number; errmsg?: string }> }).writeErrors;
      if (!writeErrors) throw err;
      for (const e of writeErrors) refused.set(e.index, e.code === 11000 ? null : (e.errmsg ?? 'could not be stored.'));
    }
    // Units first, then their index entries: an import stopped in between leaves a unit the
    // index misses (found again by `_id`), never an index entry for a unit that is not there.
    await indexUnits(docs.filter((_, i) => !refused.has(i)));
    const failed = [...refused].filter(([, m]) => m !== null).map(([index, message]) => ({ index, message: message! }));
    return { imported: docs.length - refused.size, skipped: [...refused.values()].filter((m) => m === null).length, failed };
  }

  /**
   * Streams the CSV: rows are checked one by one and inserted in batches of IMPORT_BATCH_SIZE,
   * so memory holds one batch plus the ids seen (to name duplicates within the file), never
   * the file. The job document is updated after each batch.
   */
  async function runImport(jobId: string, input: Readable): Promise<void> {
    const knownModels = new Map<string, boolean>();
    for (const m of await ProductModel.find({}, { _id: 1 }).lean()) knownModels.set(m._id, true);
    const seen = new Set<string>();
    let batch: Array<{ line: number; doc: ReturnType<typeof newUnitDoc> }> = [];
    let pendingErrors: Array<{ line: number; field: string; message: string }> = [];
    let keptErrors = 0;
    const counts = { rows: 0, imported: 0, skipped: 0, rejected: 0 };

    const flush = async () => {
      const result = await insertBatch(batch.map((b) => b.doc));
      counts.imported += result.imported;
      counts.skipped += result.skipped;
      for (const f of result.failed) {
        counts.rejected++;
        pendingErrors.push({ line: batch[f.index]!.line, field: '', message: f.message });
      }
      const toKeep = pendingErrors.slice(0, Math.max(0, IMPORT_ERRORS_KEPT - keptErrors));
      keptErrors += toKeep.length;
      await ImportJob.updateOne({ _id: jobId }, { $set: { counts }, ...(toKeep.length ? { $push: { rowErrors: { $each: toKeep } } } : {}) });
      batch = [];
      pendingErrors = [];
    };

    const parser = input.pipe(parseCsv({ bom: true, trim: true, skip_empty_lines: true, relax_column_count: true, info: true }));
    let columns: Array<keyof ImportRow | null> | null = null;
    try {
      for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
        if (!columns) {
          columns = headerColumns(record);
          continue;
        }
        counts.rows++;
        const line = info.lines;
        const checked = record.length !== columns.length ? { error: { field: '', message: `wrong number of columns: ${record.length} instead of ${columns.length}.` } } : checkRow(toRow(columns, record), knownModels);
        if ('error' in checked) {
          counts.rejected++;
          pendingErrors.push({ line, ...checked.error });
        } else if (seen.has(checked.doc._id)) {
          counts.rejected++;
          pendingErrors.push({ line, field: 'serial', message: `duplicate within the file: ${checked.doc._id} appears on an earlier line.` });
        } else {
          seen.add(checked.doc._id);
          batch.push({ line, doc: checked.doc });
        }
        if (batch.length >= IMPORT_BATCH_SIZE || pendingErrors.length >= IMPORT_BATCH_SIZE) await flush();
      }
      if (!columns) throw new ValidationError({ file: `The file is empty: its first line must name the columns ${IMPORT_HEADER}.` });
      await flush();
      await ImportJob.updateOne({ _id: jobId }, { $set: { status: 'done', counts, finishedAt: clock.now() } });
    } catch (err) {
      // Rows before the failure were whole and stay imported; the job says where it stopped.
      await flush().catch(() => undefined);
      const message = err instanceof ValidationError ? Object.values(err.fields ?? {}).join(' ') : `The file could not be read as CSV: ${(err as Error).message}`;
      if (!(err instanceof ValidationError) && !(err as { code?: string }).code?.startsWith('CSV_')) logger.error({ err, jobId }, 'unit import failed');
      await ImportJob.updateOne({ _id: jobId }, { $set: { status: 'failed', failure: message, counts, finishedAt: clock.now() } });
    } finally {
      input.destroy();
    }
  }

  return {
    CODE_PATTERN,

    // ----- product models -----

    async createModel(input: ModelInput, actor: Actor) {
      const id = normaliseCode(input.sku);
      if (!CODE_PATTERN.test(id)) throw new ValidationError({ sku: `Not a valid SKU. ${CODE_RULE}` });
      const now = clock.now();
      try {
        const created = await ProductModel.create({
          _id: id,
          sku: input.sku.trim(),
          name: input.name,
          category: input.category,
          riskLevel: input.riskLevel,
          capabilities: input.capabilities,
          intendedUses: input.intendedUses,
          publicName: input.publicName || input.name,
          endUseTerms: input.endUseTerms ? [{ version: 1, text: input.endUseTerms, publishedAt: now }] : [],
          createdAt: now,
          updatedAt: now,
        });
        await audit.record({ actorKind: actor.userId ? 'user' : 'system', actorId: actor.userId, action: 'model.created', subjectKind: 'product-model', subjectId: created._id, detail: { riskLevel: input.riskLevel } });
      } catch (err) {
        if (isDuplicateKey(err)) throw new ConflictError('A product model with this SKU already exists.', { sku: 'A product model with this SKU already exists.' });
        throw err;
      }
      return getModel(id);
    },

    async updateModel(id: string, changes: ModelChanges, actor: Actor) {
      const _id = normaliseCode(id);
      const model = await writeLocked([`model:${_id}`], () => ProductModel.findOneAndUpdate({ _id }, { $set: { ...changes, updatedAt: clock.now() } }, { new: true, runValidators: true }).lean());
      if (!model) throw new NotFoundError('No product model with this SKU.');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'model.updated', subjectKind: 'product-model', subjectId: model._id, detail: { fields: Object.keys(changes) } });
      return model;
    },

    /**
     * Appends the next version. Registrations keep the version they accepted, so earlier
     * versions are never edited; the `$size` guard (with the write lock on FerretDB) makes two
     * concurrent publishers take distinct version numbers (the loser retries).
     */
    async publishTerms(id: string, text: string, actor: Actor) {
      for (let attempt = 0; attempt < 5; attempt++) {
        const model = await getModel(id);
        const version = model.endUseTerms.length + 1;
        const now = clock.now();
        const res = await writeLocked([`model:${model._id}`], () =>
          ProductModel.updateOne(
            { _id: model._id, endUseTerms: { $size: model.endUseTerms.length } },
            { $push: { endUseTerms: { version, text, publishedAt: now } }, $set: { updatedAt: now } },
          ),
        );
        if (res.modifiedCount === 1) {
          await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'model.terms-published', subjectKind: 'product-model', subjectId: model._id, detail: { version } });
          return { modelId: model._id, version, text, publishedAt: now };
        }
      }
      throw new ConflictError('The terms changed while publishing; try again.');
    },

    getModel,

    async listModels(page: Page) {
      const [items, total] = await Promise.all([
        ProductModel.find({}).sort({ _id: 1 }).skip(page.skip).limit(page.limit).lean(),
        ProductModel.countDocuments({}),
      ]);
      return { items, total };
    },

    /**
     * For the public report form's model picker: only what is public (SKU and public name),
     * matched case-insensitively on either. Models are a small collection: a scan is fine.
     */
    async searchPublicModels(q: string, limit = 20): Promise<Array<{ sku: string; publicName: string }>> {
      const needle = q.trim().toLowerCase();
      const models = await ProductModel.find({}, { sku: 1, publicName: 1, name: 1 }).sort({ _id: 1 }).lean();
      return models
        .map((m) => ({ sku: m._id, publicName: m.publicName || m.name }))
        .filter((m) => !needle || m.sku.toLowerCase().includes(needle) || m.publicName.toLowerCase().includes(needle))
        .slice(0, limit);
    },

    // ----- units -----

    async createUnit(input: UnitInput, actor: Actor) {
      const sku = normaliseCode(input.sku);
      const serial = normaliseCode(input.serial);
      checkCodes(sku, serial);
      if (!(await ProductModel.exists({ _id: sku }))) throw new ValidationError({ sku: 'No product model with this SKU: create the model first.' });
      const doc = newUnitDoc(sku, serial, input, clock.now());
      try {
        await Unit.create(doc);
      } catch (err) {
        if (isDuplicateKey(err)) throw new ConflictError('This model already has a unit with this serial number.', { serial: 'This model already has a unit with this serial number.' });
        throw err;
      }
      await indexUnits([doc]);
      await audit.record({ actorKind: actor.userId ? 'user' : 'system', actorId: actor.userId, action: 'unit.created', subjectKind: 'unit', subjectId: doc._id });
      return getUnit(doc._id);
    },

    async updateUnit(id: string, changes: UnitChanges, actor: Actor) {
      const set: Record<string, unknown> = { updatedAt: clock.now() };
      if (changes.manufacturedAt !== undefined) set.manufacturedAt = changes.manufacturedAt;
      for (const [k, v] of Object.entries(changes.firstSale ?? {})) if (v !== undefined) set[`firstSale.${k}`] = v;
      const unit = await writeLocked([`unit:${id}`], () => Unit.findOneAndUpdate({ _id: id }, { $set: set }, { new: true }).lean());
      if (!unit) throw new NotFoundError('No unit with this id.');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'unit.updated', subjectKind: 'unit', subjectId: id, detail: { fields: Object.keys(set) } });
      return unit;
    },

    getUnit,

    /**
     * A model's units: an `_id` range (unit ids start with the SKU), in the store's natural order
     * (`_id` order on MongoDB, insertion order on FerretDB). No sort on purpose: FerretDB v1 can
     * stop a filtered scan at `limit`, but a sort makes it read the whole collection (measured:
     * 4 ms vs 4.9 s for 20,000 units); the total is the model's counter, not a count.
     */
    async listUnits(modelId: string, page: Page) {
      const model = await getModel(modelId);
      const range = { _id: { $gt: `${model._id}:`, $lt: `${model._id};` } };
      const items = await Unit.find(range).skip(page.skip).limit(page.limit).lean();
      return { items, total: model.unitCount };
    },

    /** Units carrying a bare serial (several models may share one), through `SerialIndex`. */
    async findBySerial(serial: string) {
      const entry = await SerialIndex.findById(normaliseCode(serial)).lean();
      if (!entry) return [];
      const units = await Promise.all(entry.unitIds.map((id) => Unit.findById(id).lean()));
      return units.filter((u) => u !== null);
    },

    unitIdFor: unitId,

    // ----- bulk import -----

    /**
     * Creates the job and starts reading `source` (a stream, or an uploaded temporary file that
     * the import then owns) in the background; returns the job at once
     * so the page can show its progress. `done` settles when the import ends (tests, scripts).
     */
    async startImport(source: Readable | string, fileName: string, actor: Actor) {
      const input = typeof source === 'string' ? await openAndUnlink(source) : source;
      const job = await ImportJob.create({ _id: randomId('imp'), fileName: fileName.slice(0, 200), status: 'running', createdByUserId: actor.userId, startedAt: clock.now() });
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'units.import-started', subjectKind: 'import', subjectId: job._id, detail: { fileName } });
      const done = runImport(job._id, input).catch((err: unknown) => logger.error({ err, jobId: job._id }, 'unit import crashed'));
      return { job: await getImport(job._id), done };
    },

    getImport,

    /**
     * Removes units that were never registered, owned or seen checking in (e.g. an import
     * that named the wrong units), keeping `SerialIndex` and each model's `unitCount` in step.
     * Any number of ids: each unit goes by its own `_id` statement, in commands FerretDB v1 can
     * finish (`chunksOf`): a `deleteMany` by any other filter or `$in` scans the units and then
     * deletes every match in one SQL statement with a variable per document, which fails past
     * 32,766 ("too many SQL variables"). Units with a history are kept and counted, never removed.
     */
    async removeUnits(ids: readonly string[], actor: Actor) {
      const counts = { removed: 0, kept: 0, missing: 0 };
      const all = [...new Set(ids)];
      // Batches as the import inserts them: the model counts move once per batch, not per command.
      for (let at = 0; at < all.length; at += IMPORT_BATCH_SIZE) {
        const gone: Array<{ _id: string; modelId: string; serial: string; status?: string | null; current?: { country?: string | null } | null }> = [];
        for (const chunk of chunksOf(all.slice(at, at + IMPORT_BATCH_SIZE))) {
          const units = await Promise.all(chunk.map((id) => Unit.findById(id, { modelId: 1, serial: 1, status: 1, current: 1, registrationId: 1, ownerUserId: 1, registrationIds: 1, 'checkIns.count': 1 }).lean()));
          for (const u of units) {
            if (!u) counts.missing++;
            else if (u.registrationId || u.ownerUserId || u.registrationIds?.length || u.checkIns?.count) counts.kept++;
            else gone.push(u);
          }
        }
        if (!gone.length) continue;
        for (const chunk of chunksOf(gone)) counts.removed += (await Unit.bulkWrite(chunk.map((u) => ({ deleteOne: { filter: { _id: u._id } } })), { ordered: false })).deletedCount;
        // The serial lookup: the entry goes with its last unit, else loses this one.
        const bySerial = new Map<string, string[]>();
        for (const u of gone) bySerial.set(u.serial, [...(bySerial.get(u.serial) ?? []), u._id]);
        for (const serials of chunksOf([...bySerial.keys()])) {
          await writeLocked(serials.map((serial) => `serial:${serial}`), async () => {
            const entries = await Promise.all(serials.map((serial) => SerialIndex.findById(serial).lean()));
            const ops = entries.flatMap((entry) => {
              if (!entry) return [];
              const left = entry.unitIds.filter((id) => !bySerial.get(entry._id)!.includes(id));
              return [left.length ? { updateOne: { filter: { _id: entry._id }, update: { $set: { unitIds: left } } } } : { deleteOne: { filter: { _id: entry._id } } }];
            });
            if (ops.length) await SerialIndex.bulkWrite(ops, { ordered: false });
          });
        }
        const perModel = new Map<string, number>();
        for (const u of gone) perModel.set(u.modelId, (perModel.get(u.modelId) ?? 0) + 1);
        for (const [modelId, n] of perModel) await writeLocked([`model:${modelId}`], () => ProductModel.updateOne({ _id: modelId }, { $inc: { unitCount: -n } }));
        // The dashboard's tallies lose whatever each removed unit counted in.
        await tallyUnits(gone.map((u) => ({ ...unitStateChange(u.modelId, { status: u.status, country: u.current?.country }, { status: 'unregistered', country: null }), units: -1 })));
      }
      await audit.record({ actorKind: actor.userId ? 'user' : 'system', actorId: actor.userId, action: 'units.removed', subjectKind: 'unit', subjectId: '*', detail: counts });
      return counts;
    },

    async listImports(page: Page) {
      const [items, total] = await Promise.all([
        ImportJob.find({}, { rowErrors: 0 }).sort({ startedAt: -1 }).skip(page.skip).limit(page.limit).lean(),
        ImportJob.countDocuments({}),
      ]);
      return { items, total };
    },
  };
}

export type CatalogueService = ReturnType<typeof createCatalogueService>;
