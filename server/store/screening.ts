import { Registration, Transfer } from '../../models/registrations';
import { ScreeningClearance, ScreeningEntity, ScreeningHit, ScreeningKey, ScreeningList, ScreeningRun } from '../../models/screening';
import type { HitStatus, ScreenedSubjectKind } from '../domain/screening';
import type { ListEntity } from '../services/screening/matching';
import { byIds, existingByIds } from './by-ids';
import { chunksOf, type Engine, isDuplicateKey } from './engine';

/**
 * Screening lists, their entities and blocking keys, hits, remembered false positives and
 * the re-screening run. Entities and keys are large and read by `_id` only (the embedded
 * engine scans anything else); lists, hits and clearances are small. A list is replaced by
 * writing the new import beside the old one and then moving the list's `activeImportId` in
 * one single-document update: a reader sees the old import or the new one, never a mix.
 */

export interface ListMeta {
  _id: string;
  name: string;
  source: string;
  format: 'ftm' | 'csl';
  versionDate: Date;
  activeImportId: string;
  entityCount: number;
  importedAt: Date;
  importedByUserId: string | null;
}

export interface NewHit {
  _id: string;
  status: HitStatus;
  subject: { kind: ScreenedSubjectKind; id: string; unitId: string | null; role: string };
  party: { name: string; country: string | null };
  partyFingerprint: string;
  entity: Omit<ListEntity, 'listId'> & { listId: string; listName: string };
  entityFingerprint: string;
  score: number;
  explanation: Record<string, unknown>;
  held: boolean;
  raisedAt: Date;
}
export type StoredHit = NewHit & { decision: { byUserId: string; at: Date; reason: string } | null; caseId: string | null };

export interface RescreenRun {
  _id: string;
  status: 'requested' | 'running' | 'done';
  requestedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  screened: number;
  raised: number;
}

/** A stored party to screen again: who, in which record, of which unit (none for a partner record). */
export interface StoredParty {
  subject: { kind: ScreenedSubjectKind; id: string; unitId: string | null; role: string };
  name: string;
  country: string | null;
}

const RUN_ID = 'rescreen';
const toEntity = (d: { listId: string; entityId: string; entityType: string; names: string[]; countries: string[]; birthDates: string[]; identifiers: string[]; programs: string[] }): ListEntity => ({
  listId: d.listId,
  entityId: d.entityId,
  entityType: d.entityType,
  names: d.names,
  countries: d.countries,
  birthDates: d.birthDates,
  identifiers: d.identifiers,
  programs: d.programs,
});

export function createScreeningStore(engine: Engine) {
  return {
    // ----- lists -----

    lists: async (): Promise<ListMeta[]> => (await ScreeningList.find({}).sort({ _id: 1 }).lean()) as ListMeta[],

    listById: async (id: string): Promise<ListMeta | null> => (await ScreeningList.findById(id).lean()) as ListMeta | null,

    /** Writes an import's entities and their blocking keys (not yet active), in chunks the embedded engine takes. */
    async writeImport(importId: string, entities: readonly ListEntity[], keys: ReadonlyMap<string, Array<{ e: string; n: number }>>, progress: (written: number, total: number) => void) {
      const total = entities.length + keys.size;
      let written = 0;
      for (const chunk of chunksOf(entities)) {
        await ScreeningEntity.insertMany(chunk.map((e) => ({ _id: `${importId}:${e.entityId}`, importId, ...e })), { ordered: false, throwOnValidationError: true });
        progress((written += chunk.length), total);
      }
      for (const chunk of chunksOf([...keys])) {
        await ScreeningKey.insertMany(chunk.map(([key, entries]) => ({ _id: `${importId}|${key}`, importId, entries })), { ordered: false, throwOnValidationError: true });
        progress((written += chunk.length), total);
      }
    },

    /** Makes an import the list's active one: the single write that replaces a list. Returns the import it replaced. */
    async activateImport(list: Omit<ListMeta, 'activeImportId'>, importId: string): Promise<string | null> {
      const before = await ScreeningList.findOneAndUpdate({ _id: list._id }, { $set: { ...list, activeImportId: importId } }, { upsert: true, new: false }).lean();
      return before?.activeImportId ?? null;
    },

    /** Removes a replaced (or abandoned) import: an `importId` scan, off the request path. */
    async removeImport(importId: string) {
      await ScreeningKey.deleteMany({ importId });
      await ScreeningEntity.deleteMany({ importId });
    },

    /** The blocking-key documents of names, per active import: `_id` reads (one `$in` on MongoDB). */
    async keyEntries(importIds: readonly string[], keys: readonly string[]): Promise<Array<{ importId: string; entries: Array<{ e: string; n: number }>; key: string }>> {
      const ids = importIds.flatMap((importId) => keys.map((key) => `${importId}|${key}`));
      const docs = await existingByIds<{ _id: string; importId: string; entries: Array<{ e: string; n: number }> }>(engine, ScreeningKey as never, ids);
      return docs.map((d) => ({ importId: d.importId, entries: d.entries, key: d._id.slice(d.importId.length + 1) }));
    },

    entitiesOf: async (importId: string, entityIds: readonly string[]): Promise<ListEntity[]> =>
      (await existingByIds<Parameters<typeof toEntity>[0] & { _id: string }>(engine, ScreeningEntity as never, entityIds.map((id) => `${importId}:${id}`))).map(toEntity),

    /** Every entity of an import, one at a time (re-screening holds them in memory). */
    async *allEntitiesOf(importId: string): AsyncGenerator<ListEntity> {
      for await (const d of ScreeningEntity.find({ importId }).lean().cursor({ batchSize: 1_000 })) yield toEntity(d);
    },

    // ----- hits and clearances -----

    /** Stores a hit once: false when a hit with this `_id` (same subject, party and entity as they were) exists. */
    async insertHit(hit: NewHit): Promise<boolean> {
      try {
        await ScreeningHit.create(hit);
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    hitById: async (id: string): Promise<StoredHit | null> => (await ScreeningHit.findById(id).lean()) as StoredHit | null,

    /** The review queue (hits are a small collection: only scores above the threshold are kept). */
    async hitsByStatus(status: HitStatus, page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([ScreeningHit.find({ status }).sort({ raisedAt: 1, _id: 1 }).skip(page.skip).limit(page.limit).lean(), ScreeningHit.countDocuments({ status })]);
      return { items: items as StoredHit[], total };
    },

    hitsOfSubject: async (kind: ScreenedSubjectKind, id: string): Promise<StoredHit[]> => (await ScreeningHit.find({ 'subject.kind': kind, 'subject.id': id }).lean()) as StoredHit[],

    /** Decides an open hit: one write guarded by its status, so of two reviewers exactly one decides. */
    decideHit: async (id: string, status: 'true-match' | 'false-positive', decision: { byUserId: string; at: Date; reason: string }): Promise<StoredHit | null> =>
      (await ScreeningHit.findOneAndUpdate({ _id: id, status: 'open' }, { $set: { status, decision } }, { new: true }).lean()) as StoredHit | null,

    setHitCase: (id: string, caseId: string) => ScreeningHit.updateOne({ _id: id }, { $set: { caseId } }),

    /** Which of these clearance keys are recorded false positives. */
    async clearedKeys(keys: readonly string[]): Promise<Set<string>> {
      const found = await byIds<{ _id: string }>(engine, ScreeningClearance as never, keys, { _id: 1 });
      return new Set(found.flatMap((d) => (d ? [d._id] : [])));
    },

    async recordClearance(key: string, clearance: { hitId: string; reason: string; byUserId: string; at: Date }) {
      await ScreeningClearance.updateOne({ _id: key }, { $setOnInsert: clearance }, { upsert: true }).catch((err: unknown) => {
        if (!isDuplicateKey(err)) throw err;
      });
    },

    // ----- re-screening run -----

    run: async (): Promise<RescreenRun | null> => (await ScreeningRun.findById(RUN_ID).lean()) as RescreenRun | null,

    /** Asks for a re-screening (a request during a run starts another once it ends: see `finishRun`). */
    requestRun: (at: Date) => ScreeningRun.updateOne({ _id: RUN_ID }, { $set: { status: 'requested', requestedAt: at } }, { upsert: true }),

    /** Claims a requested run: a guarded update, so one instance runs it. */
    claimRun: async (at: Date): Promise<RescreenRun | null> =>
      (await ScreeningRun.findOneAndUpdate({ _id: RUN_ID, status: 'requested' }, { $set: { status: 'running', startedAt: at, finishedAt: null, screened: 0, raised: 0 } }, { new: true }).lean()) as RescreenRun | null,

    runProgress: (screened: number, raised: number) => ScreeningRun.updateOne({ _id: RUN_ID, status: 'running' }, { $set: { screened, raised } }),

    /** Ends the run unless a new request came in meanwhile (that one then runs next). */
    finishRun: (at: Date, screened: number, raised: number) => ScreeningRun.updateOne({ _id: RUN_ID, status: 'running' }, { $set: { status: 'done', finishedAt: at, screened, raised } }),

    // Reads of registrations and transfers: move to server/store/registrations.ts at merge
    /**
     * Every party in effect or waiting: active registrations' owners and contacts, pending and
     * effective resales' new owners. One streamed pass over each collection (a scan on the
     * embedded engine, off the request path).
     */
    async *storedParties(): AsyncGenerator<StoredParty> {
      for await (const r of Registration.find({ status: 'active' }, { unitId: 1, ownerOrganisation: 1, 'contact.name': 1, country: 1 }).lean().cursor({ batchSize: 1_000 })) {
        yield { subject: { kind: 'registration', id: r._id, unitId: r.unitId, role: 'owner' }, name: r.ownerOrganisation, country: r.country };
        if (r.contact?.name) yield { subject: { kind: 'registration', id: r._id, unitId: r.unitId, role: 'contact' }, name: r.contact.name, country: r.country };
      }
      for await (const t of Transfer.find({ kind: 'resale', status: { $in: ['pending', 'effective'] } }, { unitId: 1, newOwner: 1, 'newLocation.country': 1 }).lean().cursor({ batchSize: 1_000 })) {
        const country = t.newLocation?.country ?? null;
        if (t.newOwner?.organisation) yield { subject: { kind: 'transfer', id: t._id, unitId: t.unitId, role: 'new-owner' }, name: t.newOwner.organisation, country };
        if (t.newOwner?.contactName) yield { subject: { kind: 'transfer', id: t._id, unitId: t.unitId, role: 'new-owner-contact' }, name: t.newOwner.contactName, country };
      }
    },
  };
}

export type ScreeningStore = ReturnType<typeof createScreeningStore>;
