import { ProductModel, Unit } from '../../models/catalogue';
import { UnitVisits, Visit } from '../../models/verification';
import type { UnitFinding, VisitStatus } from '../domain/verification';
import { byIds, existingByIds } from './by-ids';
import type { Engine } from './engine';
import { isDuplicateKey } from './engine';

/**
 * Verification visits (a small collection: a few per high-risk customer a year) and each
 * unit's list of visits with when one last saw it (`UnitVisits`, read by `_id`).
 */

export interface StoredFileRef { fileId: string; sha256: string; mediaType: string; size: number; originalName: string }
export interface VisitOutcome {
  recordedAt: Date;
  byUserId: string;
  units: Array<{ unitId: string; finding: UnitFinding; serialConfirmed: boolean; note: string }>;
  locationConfirmed: boolean;
  endUseConsistent: boolean;
  findings: string;
  photos: StoredFileRef[];
}
export interface VisitDoc {
  _id: string;
  status: VisitStatus;
  plannedFor: Date;
  inspector: string;
  site: string;
  partner: string;
  caseId: string | null;
  unitIds: string[];
  checklist: string[];
  plannedByUserId: string;
  createdAt: Date;
  outcome: VisitOutcome | null;
}

export function createVerificationStore(engine: Engine) {
  async function onUnit(unitId: string, update: Record<string, unknown>) {
    const write = () => UnitVisits.updateOne({ _id: unitId }, update, { upsert: true });
    // Two first visits of one unit may both create its list: the loser's retry is an update.
    await write().catch((err: unknown) => {
      if (!isDuplicateKey(err)) throw err;
      return write();
    });
  }

  return {
    async insertVisit(doc: Omit<VisitDoc, 'outcome'>) {
      await Visit.create({ ...doc, outcome: null });
      for (const unitId of doc.unitIds) await onUnit(unitId, { $addToSet: { visitIds: doc._id } });
    },

    visitById: async (id: string) => (await Visit.findById(id).lean()) as VisitDoc | null,

    /** Records the outcome of a planned visit: guarded by its status, so it is recorded once. */
    recordOutcome: async (id: string, outcome: VisitOutcome) => (await Visit.findOneAndUpdate({ _id: id, status: 'planned' }, { $set: { status: 'done', outcome } }, { new: true }).lean()) as VisitDoc | null,

    /** A unit seen on a visit: its last verification moves forward (never back). */
    markVerified: (unitId: string, at: Date) => onUnit(unitId, { $max: { lastVerifiedAt: at } }),

    async visitsOfUnit(unitId: string): Promise<VisitDoc[]> {
      const ids = (await UnitVisits.findById(unitId).lean())?.visitIds ?? [];
      return existingByIds<VisitDoc>(engine, Visit as never, ids);
    },

    async visits(status: VisitStatus, page: { skip: number; limit: number }) {
      const filter = { status };
      const [items, total] = await Promise.all([Visit.find(filter).sort({ plannedFor: status === 'planned' ? 1 : -1, _id: 1 }).skip(page.skip).limit(page.limit).lean(), Visit.countDocuments(filter)]);
      return { items: items as VisitDoc[], total };
    },

    /** When each unit was last seen on a visit (null: never), by `_id`. */
    async lastVerified(unitIds: readonly string[]): Promise<Array<Date | null>> {
      return (await byIds<{ _id: string; lastVerifiedAt: Date | null }>(engine, UnitVisits as never, unitIds)).map((d) => d?.lastVerifiedAt ?? null);
    },

    // Reads of product models and units: move to server/store/catalogue.ts at merge
    /** Models of a risk level (models are a small collection). */
    modelIdsOfRisk: async (riskLevel: string) => (await ProductModel.find({ riskLevel }, { _id: 1 }).lean()).map((m) => String(m._id)),

    /**
     * Registered units of these models, one at a time to `take` until it returns false, in a
     * stable order: the `{ modelId, serial }` index's on MongoDB; on the embedded engine the
     * order they were stored in, because a sort there reads and orders every unit before the
     * first one is returned (76 s at 200,000 units, which put the dashboard past its timeout),
     * while an unsorted scan stops as soon as `take` has its page.
     */
    async eachRegisteredUnitOf(modelIds: readonly string[], take: (u: { _id: string; modelId: string; current?: { country?: string | null; owner?: string | null } | null }) => Promise<boolean>) {
      const query = Unit.find({ modelId: { $in: modelIds }, status: { $ne: 'unregistered' } }, { modelId: 1, current: 1 });
      if (engine.secondaryIndexes) query.sort({ modelId: 1, serial: 1 });
      for await (const u of query.lean().cursor({ batchSize: 500 })) {
        if (!(await take(u as never))) return;
      }
    },
  };
}

export type VerificationStore = ReturnType<typeof createVerificationStore>;
