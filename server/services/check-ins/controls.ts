import type { CheckInsStore } from '../../store/check-ins';

/**
 * Withholding and lifting firmware updates: the one way leverage actions reach units. Several
 * cases may withhold a unit; updates resume only when none does. Each step is one atomic
 * write, so concurrent withholds and lifts (from any number of app instances) converge:
 *  - withhold: registry, unit, registry again. The registry first: a crash before the unit is
 *    marked errs on the side of withholding; again after: a lift racing between the two
 *    writes may have just taken the unit out of it.
 *  - lift: the case's hold off the unit; updates allowed only in a write guarded by no hold
 *    left; the registry entry removed; put back if a withhold marked the unit meanwhile.
 */
export function createControls(store: CheckInsStore) {
  return {
    async withholdUpdates(unitIds: string[], caseId: string): Promise<number> {
      await store.addToWithheld(unitIds);
      const marked = await Promise.all(unitIds.map((id) => store.withholdUnit(id, caseId)));
      const missing = unitIds.filter((_, i) => !marked[i]);
      const found = unitIds.filter((_, i) => marked[i]);
      await store.removeFromWithheld(missing);
      if (found.length) await store.addToWithheld(found);
      return found.length;
    },

    async liftWithholding(unitIds: string[], caseId: string): Promise<number> {
      let changed = 0;
      const cleared: string[] = [];
      for (const id of unitIds) {
        if (await store.releaseUnit(id, caseId)) changed++;
        if (await store.allowIfNoHold(id)) cleared.push(id);
      }
      await store.removeFromWithheld(cleared);
      const withheldAgain = (await Promise.all(cleared.map(async (id) => ((await store.isWithheld(id)) ? id : null)))).filter((id) => id !== null);
      if (withheldAgain.length) await store.addToWithheld(withheldAgain);
      return changed;
    },
  };
}
