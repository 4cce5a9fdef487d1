import crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Clock } from '../../clock';
import type { Logger } from '../../logger';
import { ConflictError, NotFoundError, ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import type { CatalogueStore } from '../../store/catalogue';
import type { AuditService } from '../audit';
import type { PartnersStore } from '../../store/partners';
import { CODE_PATTERN, CODE_RULE, normaliseCode, normaliseGtin, unitId } from './codes';
import { createUnitImport, IMPORT_BATCH_SIZE, openAndUnlink } from './import';
import type { RiskLevel } from '../../domain/catalogue';
import { newUnit, type UnitChanges, type UnitInput } from './units';

export { CODE_PATTERN, CODE_RULE, gs1CheckDigit, normaliseCode, normaliseGtin, parseDay, unitId } from './codes';
export { IMPORT_BATCH_SIZE, IMPORT_HEADER } from './import';
export type { FirstSale, UnitChanges, UnitInput } from './units';

/**
 * Catalogue: product models (with versioned end-use terms) and their units, created one by
 * one or imported in bulk from CSV (import.ts). A unit's `_id` is `SKU:SERIAL`; the store
 * keeps the serial lookup, the model's `unitCount` and the dashboard's tallies in step.
 */

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
  /** The trade item's GTIN (8, 12, 13 or 14 digits): EPCIS events name units by GTIN and serial. '' or null: none. */
  gtin?: string | null;
  /** The first version of the end-use terms, if given at creation. */
  endUseTerms?: string;
}
export type ModelChanges = Partial<Omit<ModelInput, 'sku' | 'endUseTerms'>>;

/** Publishing retries this often when another publisher took the version it computed. */
const PUBLISH_ATTEMPTS = 5;

const randomId = (prefix: string) => `${prefix}_${crypto.randomBytes(10).toString('hex')}`;

export function createCatalogueService(deps: { clock: Clock; logger: Logger; audit: AuditService; stores: { catalogue: CatalogueStore; partners: Pick<PartnersStore, 'partnerNames' | 'allocateFromVendor'> } }) {
  const { clock, logger, audit } = deps;
  const store = deps.stores.catalogue;
  const runImport = createUnitImport({ clock, logger, store, partners: deps.stores.partners });

  async function getModel(id: string) {
    const model = await store.modelById(normaliseCode(id));
    if (!model) throw new NotFoundError('No product model with this SKU.');
    return model;
  }

  async function getImport(id: string) {
    const job = await store.importJobById(id);
    if (!job) throw new NotFoundError('No such import.');
    return job;
  }

  async function getUnit(id: string) {
    const unit = await store.unitById(id);
    if (!unit) throw new NotFoundError('No unit with this id.');
    return unit;
  }

  /** The GTIN-14 of `given`, null for none, undefined when not given; a GTIN that is not one is a field error. */
  function gtinOf(given: string | null | undefined): string | null | undefined {
    if (given === undefined) return undefined;
    if (given === null || !given.trim()) return null;
    const gtin = normaliseGtin(given);
    if (!gtin) throw new ValidationError({ gtin: 'Not a valid GTIN: 8, 12, 13 or 14 digits ending in the GS1 check digit.' });
    return gtin;
  }

  async function giveGtin(modelId: string, gtin: string | null, previous: string | null) {
    if (!(await store.setModelGtin(modelId, gtin, previous))) throw new ConflictError('Another product model has this GTIN.', { gtin: 'Another product model has this GTIN.' });
  }

  function checkCodes(sku: string, serial: string) {
    const errors: Record<string, string> = {};
    if (!CODE_PATTERN.test(sku)) errors.sku = `Not a valid SKU. ${CODE_RULE}`;
    if (!CODE_PATTERN.test(serial)) errors.serial = `Not a valid serial number. ${CODE_RULE}`;
    if (Object.keys(errors).length) throw new ValidationError(errors);
  }

  return {
    CODE_PATTERN,

    // ----- product models -----

    async createModel(input: ModelInput, actor: Actor) {
      const id = normaliseCode(input.sku);
      if (!CODE_PATTERN.test(id)) throw new ValidationError({ sku: `Not a valid SKU. ${CODE_RULE}` });
      const gtin = gtinOf(input.gtin);
      const now = clock.now();
      const created = await store.insertModel({
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
      if (!created) throw new ConflictError('A product model with this SKU already exists.', { sku: 'A product model with this SKU already exists.' });
      if (gtin) await giveGtin(id, gtin, null);
      await audit.record({ actorKind: actor.userId ? 'user' : 'system', actorId: actor.userId, action: 'model.created', subjectKind: 'product-model', subjectId: id, detail: { riskLevel: input.riskLevel } });
      return getModel(id);
    },

    async updateModel(id: string, changes: ModelChanges, actor: Actor) {
      const { gtin: givenGtin, ...rest } = changes;
      const gtin = gtinOf(givenGtin);
      if (gtin !== undefined) {
        const before = await getModel(id);
        await giveGtin(before._id, gtin, before.gtin ?? null);
      }
      const model = await store.updateModel(normaliseCode(id), { ...rest, updatedAt: clock.now() });
      if (!model) throw new NotFoundError('No product model with this SKU.');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'model.updated', subjectKind: 'product-model', subjectId: model._id, detail: { fields: Object.keys(changes) } });
      return model;
    },

    /**
     * Appends the next version. Registrations keep the version they accepted, so earlier
     * versions are never edited; the store's guard on the number of versions makes two
     * concurrent publishers take distinct version numbers (the loser reads again).
     */
    async publishTerms(id: string, text: string, actor: Actor) {
      for (let attempt = 0; attempt < PUBLISH_ATTEMPTS; attempt++) {
        const model = await getModel(id);
        const version = model.endUseTerms.length + 1;
        const now = clock.now();
        if (await store.appendTerms(model._id, model.endUseTerms.length, { version, text, publishedAt: now })) {
          await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'model.terms-published', subjectKind: 'product-model', subjectId: model._id, detail: { version } });
          return { modelId: model._id, version, text, publishedAt: now };
        }
      }
      throw new ConflictError('The terms changed while publishing; try again.');
    },

    getModel,

    /** The model ids of GTINs (any length; normalised to GTIN-14), in order: null where no model has it. */
    modelIdsByGtins: (gtins: readonly string[]) => store.modelIdsByGtins(gtins.map((g) => normaliseGtin(g) ?? g)),

    listModels: (page: Page) => store.listModels(page),

    /**
     * For the public report form's model picker: only what is public (SKU and public name),
     * matched case-insensitively on either.
     */
    async searchPublicModels(q: string, limit = 20): Promise<Array<{ sku: string; publicName: string }>> {
      const needle = q.trim().toLowerCase();
      return (await store.modelNames())
        .map((m) => ({ sku: m._id, publicName: m.publicName || m.name }))
        .filter((m) => !needle || m.sku.toLowerCase().includes(needle) || m.publicName.toLowerCase().includes(needle))
        .slice(0, limit);
    },

    // ----- units -----

    async createUnit(input: UnitInput, actor: Actor) {
      const sku = normaliseCode(input.sku);
      const serial = normaliseCode(input.serial);
      checkCodes(sku, serial);
      if (!(await store.modelExists(sku))) throw new ValidationError({ sku: 'No product model with this SKU: create the model first.' });
      const doc = newUnit(sku, serial, input, clock.now());
      if (!(await store.insertUnit(doc))) throw new ConflictError('This model already has a unit with this serial number.', { serial: 'This model already has a unit with this serial number.' });
      await audit.record({ actorKind: actor.userId ? 'user' : 'system', actorId: actor.userId, action: 'unit.created', subjectKind: 'unit', subjectId: doc._id });
      return getUnit(doc._id);
    },

    async updateUnit(id: string, changes: UnitChanges, actor: Actor) {
      const set: Record<string, unknown> = { updatedAt: clock.now() };
      if (changes.manufacturedAt !== undefined) set.manufacturedAt = changes.manufacturedAt;
      for (const [k, v] of Object.entries(changes.firstSale ?? {})) if (v !== undefined) set[`firstSale.${k}`] = v;
      const unit = await store.updateUnit(id, set);
      if (!unit) throw new NotFoundError('No unit with this id.');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'unit.updated', subjectKind: 'unit', subjectId: id, detail: { fields: Object.keys(set) } });
      return unit;
    },

    getUnit,

    /** A model's units, in the store's natural order; the total is the model's counter, not a count. */
    async listUnits(modelId: string, page: Page) {
      const model = await getModel(modelId);
      return { items: await store.unitsOfModel(model._id, page), total: model.unitCount };
    },

    /** Units carrying a bare serial (several models may share one). */
    async findBySerial(serial: string) {
      return store.unitsByIds(await store.unitIdsWithSerial(normaliseCode(serial)));
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
      const id = randomId('imp');
      await store.insertImportJob({ _id: id, fileName: fileName.slice(0, 200), status: 'running', createdByUserId: actor.userId, startedAt: clock.now() });
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'units.import-started', subjectKind: 'import', subjectId: id, detail: { fileName } });
      const done = runImport(id, input).catch((err: unknown) => logger.error({ err, jobId: id }, 'unit import crashed'));
      return { job: await getImport(id), done };
    },

    getImport,

    /**
     * Removes units that were never registered, owned or seen checking in (e.g. an import
     * that named the wrong units). Units with a history are kept and counted, never removed.
     */
    async removeUnits(ids: readonly string[], actor: Actor) {
      const counts = { removed: 0, kept: 0, missing: 0 };
      const all = [...new Set(ids)];
      // Batches as the import inserts them: the model counts move once per batch.
      for (let at = 0; at < all.length; at += IMPORT_BATCH_SIZE) {
        const { removed, kept, missing } = await store.removeUnusedUnits(all.slice(at, at + IMPORT_BATCH_SIZE));
        counts.removed += removed.length;
        counts.kept += kept;
        counts.missing += missing;
      }
      await audit.record({ actorKind: actor.userId ? 'user' : 'system', actorId: actor.userId, action: 'units.removed', subjectKind: 'unit', subjectId: '*', detail: counts });
      return counts;
    },

    listImports: (page: Page) => store.listImports(page),
  };
}

export type CatalogueService = ReturnType<typeof createCatalogueService>;
