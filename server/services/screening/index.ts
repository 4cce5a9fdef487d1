import crypto from 'node:crypto';
import type { Clock } from '../../clock';
import type { Config } from '../../config';
import type { ScreenedSubjectKind } from '../../domain/screening';
import { ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import type { ListMeta, NewHit, ScreeningStore, StoredParty } from '../../store/screening';
import type { PartnersStore } from '../../store/partners';
import type { AuditService } from '../audit';
import { detectFormat, parseList, type ListFormat } from './lists';
import { blockingKeys, clearanceKey, createBlockingIndex, entityFingerprint, keysNeeded, partyFingerprint, screenAgainst, type ListEntity, type Match, type Party } from './matching';

export { createScreeningReview, type ScreeningReview } from './review';

/**
 * Restricted-party screening: list imports, screening a record's parties when it is submitted
 * (a hit at or above the threshold holds the record for review), and re-screening every stored
 * party after an import. The review of hits is review.ts.
 */

export interface ListUpload {
  listId: string;
  name: string;
  source: string;
  versionDate: Date;
  text: string;
  format?: ListFormat;
}

export interface ScreenedRecord {
  kind: ScreenedSubjectKind;
  id: string;
  /** None for a partner record. */
  unitId: string | null;
  parties: Array<Party & { role: string }>;
}

/** Parties screened between two progress reports of a re-screening. */
const PROGRESS_EVERY = 5_000;

export function createScreeningService(deps: { config: Config; clock: Clock; audit: AuditService; stores: { screening: ScreeningStore; partners: Pick<PartnersStore, 'screenedParties'> } }) {
  const { clock, audit } = deps;
  const { threshold, cutoff } = deps.config.screening;
  const store = deps.stores.screening;

  function hitFor(subject: StoredParty['subject'], party: Party, match: Match & { entity: ListEntity }, list: ListMeta, held: boolean): NewHit {
    const fingerprints = { partyFingerprint: partyFingerprint(party), entityFingerprint: entityFingerprint(match.entity) };
    const id = crypto.createHash('sha256').update([subject.kind, subject.id, subject.role, list._id, match.entity.entityId, fingerprints.partyFingerprint, fingerprints.entityFingerprint].join('|')).digest('hex').slice(0, 24);
    const { listId: _listId, ...entity } = match.entity;
    return {
      _id: `hit_${id}`,
      status: 'open',
      subject,
      party: { name: party.name, country: party.country ?? null },
      ...fingerprints,
      entity: { ...entity, listId: list._id, listName: list.name },
      score: match.score,
      explanation: match.explanation as unknown as Record<string, unknown>,
      held,
      raisedAt: clock.now(),
    };
  }

  /** Stores the hits that are not remembered false positives; how many were new. */
  async function raiseHits(hits: NewHit[]) {
    if (!hits.length) return 0;
    const cleared = await store.clearedKeys(hits.map(clearanceKey));
    let raised = 0;
    for (const hit of hits) if (!cleared.has(clearanceKey(hit)) && (await store.insertHit(hit))) raised++;
    return raised;
  }

  /** One party against the active lists, through the stored blocking keys (a few `_id` reads). */
  async function matchesOf(party: Party, lists: ListMeta[]) {
    const keys = blockingKeys([party.name]);
    const byImport = new Map(lists.map((l) => [l.activeImportId, l]));
    const shared = new Map<string, { importId: string; entityId: string; n: number; count: number }>();
    for (const { importId, entries } of await store.keyEntries([...byImport.keys()], keys)) {
      for (const { e, n } of entries) {
        const at = `${importId}:${e}`;
        const s = shared.get(at) ?? { importId, entityId: e, n, count: 0 };
        s.count++;
        shared.set(at, s);
      }
    }
    const found: Array<{ list: ListMeta; match: Match & { entity: ListEntity } }> = [];
    for (const [importId, list] of byImport) {
      const ids = [...shared.values()].filter((s) => s.importId === importId && s.count >= keysNeeded(keys.length, s.n)).map((s) => s.entityId);
      if (!ids.length) continue;
      for (const match of screenAgainst(party, await store.entitiesOf(importId, ids), cutoff)) found.push({ list, match });
    }
    return found;
  }

  return {
    threshold,
    cutoff,

    lists: () => store.lists(),

    /**
     * Imports a list, replacing the one of the same id atomically, then asks for every stored
     * party to be screened again. `progress` hears how far the writing is.
     */
    async importList(upload: ListUpload, byUserId: string | null, progress: (written: number, total: number) => void = () => {}) {
      const format = upload.format ?? detectFormat(upload.text);
      const { entities, skipped } = parseList(upload.text, format, upload.listId);
      if (!entities.length) throw new ValidationError({ file: 'The file holds no party to screen against (persons, organisations, companies or legal entities).' });
      const importId = `${upload.listId}@${clock.now().getTime().toString(36)}${crypto.randomBytes(3).toString('hex')}`;
      const keys = new Map<string, Array<{ e: string; n: number }>>();
      for (const entity of entities) {
        const own = blockingKeys(entity.names);
        for (const key of own) {
          const list = keys.get(key);
          const entry = { e: entity.entityId, n: own.length };
          if (list) list.push(entry);
          else keys.set(key, [entry]);
        }
      }
      await store.writeImport(importId, entities, keys, progress);
      const list = { _id: upload.listId, name: upload.name, source: upload.source, format, versionDate: upload.versionDate, entityCount: entities.length, importedAt: clock.now(), importedByUserId: byUserId };
      const replaced = await store.activateImport(list, importId);
      // Readers already use the new import; a crash here leaves the old one unused, not wrong.
      if (replaced) await store.removeImport(replaced);
      await audit.record({ actorKind: byUserId ? 'user' : 'system', actorId: byUserId, action: 'screening.list-imported', subjectKind: 'screening-list', subjectId: upload.listId, detail: { format, entities: entities.length, skipped, versionDate: upload.versionDate.toISOString().slice(0, 10), replacedImport: replaced } });
      await store.requestRun(clock.now());
      return { list: { ...list, activeImportId: importId }, entities: entities.length, skipped };
    },

    /**
     * Screens a submitted record's parties against the active lists. Hits at or above the
     * threshold that are not remembered false positives go to the review queue; the record is
     * held while any of its hits is open or confirmed. Idempotent: a retry finds its hits.
     */
    async screenRecord(record: ScreenedRecord): Promise<{ held: boolean; hits: number }> {
      return (await this.screenRecords([record]))[0]!;
    },

    /**
     * `screenRecord` for a batch (a sell-through report): the lists are read once and a party
     * named in several records is matched once. A record without a hit now is not held: it is
     * new (a hit from an earlier screening would match again, its party and the lists being
     * the same).
     */
    async screenRecords(records: readonly ScreenedRecord[]): Promise<Array<{ held: boolean; hits: number }>> {
      const lists = await store.lists();
      if (!lists.length) return records.map(() => ({ held: false, hits: 0 }));
      const matched = new Map<string, Awaited<ReturnType<typeof matchesOf>>>();
      const results = [];
      for (const record of records) {
        const hits: NewHit[] = [];
        for (const party of record.parties) {
          if (!party.name.trim()) continue;
          const at = `${party.name}|${party.country ?? ''}`;
          if (!matched.has(at)) matched.set(at, await matchesOf(party, lists));
          for (const { list, match } of matched.get(at)!) {
            if (match.score >= threshold) hits.push(hitFor({ kind: record.kind, id: record.id, unitId: record.unitId, role: party.role }, party, match, list, true));
          }
        }
        await raiseHits(hits);
        results.push({ held: hits.length > 0 && (await this.isHeld(record.kind, record.id)), hits: hits.length });
      }
      return results;
    },

    /** A record is held while any of its hits is open or confirmed. */
    async isHeld(kind: ScreenedSubjectKind, id: string) {
      return (await store.hitsOfSubject(kind, id)).some((h) => h.status !== 'false-positive');
    },

    hitsOf: (kind: ScreenedSubjectKind, id: string) => store.hitsOfSubject(kind, id),

    /**
     * Screens every stored party again, against every active list held in memory as one
     * blocking index, raising only new hits (a hit already raised for the same party and
     * entity, or a remembered false positive, is not raised again). Runs when claimed: one
     * instance at a time.
     */
    async rescreen(progress: (screened: number, raised: number) => void = () => {}) {
      const run = await store.claimRun(clock.now());
      if (!run) return null;
      const lists = await store.lists();
      const entities: ListEntity[] = [];
      for (const list of lists) for await (const e of store.allEntitiesOf(list.activeImportId)) entities.push(e);
      const index = createBlockingIndex(entities);
      const listOf = new Map(lists.map((l) => [l._id, l]));
      let screened = 0;
      let raised = 0;
      // Registrations and transfers, then partner records and sales' end customers.
      for (const parties of [store.storedParties(), deps.stores.partners.screenedParties()]) {
        for await (const party of parties) {
          const matches = screenAgainst(party, index.candidates(blockingKeys([party.name])), threshold);
          raised += await raiseHits(matches.map((m) => hitFor(party.subject, party, m, listOf.get(m.entity.listId)!, false)));
          if (++screened % PROGRESS_EVERY === 0) {
            await store.runProgress(screened, raised);
            progress(screened, raised);
          }
        }
      }
      await store.finishRun(clock.now(), screened, raised);
      progress(screened, raised);
      return { screened, raised };
    },

    rescreenRun: () => store.run(),

    queue: (status: 'open' | 'true-match' | 'false-positive', page: Page) => store.hitsByStatus(status, page),
  };
}

export type ScreeningService = ReturnType<typeof createScreeningService>;
