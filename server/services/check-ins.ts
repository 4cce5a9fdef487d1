import { Unit } from '../../models/catalogue';

/**
 * Check-ins: ingest from update servers and devices, and the unit controls that decide what a
 * check-in is answered (`allowed` / `withheld`).
 *
 * The control functions are the one way leverage actions reach units: a case's "withhold
 * firmware updates" action calls `withholdUpdates`, lifting it calls `liftWithholding`.
 * Several cases may withhold the same unit; updates resume only when none does.
 */
export function createCheckInsService() {
  return {
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
