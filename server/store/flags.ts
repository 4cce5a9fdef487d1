import type { InferSchemaType } from 'mongoose';
import { Flag, FlagSetting } from '../../models/flags';
import type { FlagRule, FlagSourceKind } from '../domain/flags';
import { byIds, existingByIds } from './by-ids';
import { chunksOf, duplicatesIn, type Engine, isDuplicateKey } from './engine';

export interface NewFlag {
  _id: string;
  rule: FlagRule;
  unitId: string | null;
  modelId: string | null;
  serial: string | null;
  country: string | null;
  evidence: Record<string, unknown>;
  source: { kind: FlagSourceKind; id: string };
  caseId: string;
  raisedAt: Date;
}

type LeanFlag = InferSchemaType<typeof Flag.schema> & { _id: string };

/** Raised flags (by `_id`, which the raiser may derive to stay idempotent) and the flags settings. */
export function createFlagsStore(engine: Engine) {
  return {
    /** Stores a flag once: false when a flag with this `_id` is already there. */
    async insertFlag(flag: NewFlag): Promise<boolean> {
      try {
        await Flag.create(flag);
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },

    /** Stores flags in unordered bulk inserts; a flag whose `_id` is already there stays as it is. */
    async insertFlags(flags: readonly NewFlag[]) {
      for (const chunk of chunksOf(flags)) await duplicatesIn(() => Flag.collection.insertMany(chunk as never[], { ordered: false }));
    },

    caseIdOfFlag: async (id: string) => (await Flag.findById(id, { caseId: 1 }).lean())?.caseId ?? null,

    /** The case of each flag already raised, in the order asked (null: not raised). */
    caseIdsOfFlags: async (ids: readonly string[]) => (await byIds<{ _id: string; caseId: string | null }>(engine, Flag as never, ids, { caseId: 1 })).map((f) => f?.caseId ?? null),

    /** Flags by id, in the order asked (missing ones left out). */
    flagsByIds: (ids: readonly string[]) => existingByIds<LeanFlag>(engine, Flag as never, ids),

    /** A merged case's flags name the surviving case (a `caseId` scan: merges are rare and by hand). */
    moveFlagsToCase: (fromCaseId: string, toCaseId: string) => Flag.updateMany({ caseId: fromCaseId }, { $set: { caseId: toCaseId } }),

    restrictedCountriesSetting: async () => (await FlagSetting.findById('restricted-countries').lean())?.countries ?? null,

    saveRestrictedCountries: (countries: string[], at: Date, byUserId: string | null) =>
      FlagSetting.updateOne({ _id: 'restricted-countries' }, { $set: { countries, updatedAt: at, updatedByUserId: byUserId } }, { upsert: true }),
  };
}

export type FlagsStore = ReturnType<typeof createFlagsStore>;
