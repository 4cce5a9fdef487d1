import type { CatalogueStore } from '../../store/catalogue';
import { unitId } from '../catalogue/codes';
import { parseEpc, serialOfEpc, type EpcTarget } from './identifiers';

/** EPCs → Downstream units: our unit URNs directly, SGTINs and Digital Links through the model's GTIN. */
export function createEpcResolver(catalogue: Pick<CatalogueStore, 'unitsByIds' | 'modelIdsByGtins'>) {
  /** `fields`: the unit fields the caller reads (all when left out). */
  return async function resolveEpcs(epcs: readonly string[], fields?: Record<string, 1>) {
    const targets = new Map<string, EpcTarget>();
    for (const epc of epcs) {
      const target = parseEpc(epc);
      if (target) targets.set(epc, target);
    }
    const gtins = [...new Set([...targets.values()].flatMap((t) => (t.kind === 'gtin' ? [t.gtin] : [])))];
    const models = new Map<string, string | null>();
    (await catalogue.modelIdsByGtins(gtins)).forEach((m, i) => models.set(gtins[i]!, m));
    /** Per EPC, the unit it names (which may not exist: a catalogued model, an unknown serial). */
    const named = new Map<string, { unitId: string; modelId: string | null; serial: string }>();
    for (const [epc, t] of targets) {
      if (t.kind === 'unit') named.set(epc, { unitId: t.unitId, modelId: null, serial: '' });
      else {
        const modelId = models.get(t.gtin);
        if (modelId) named.set(epc, { unitId: unitId(modelId, serialOfEpc(t)), modelId, serial: serialOfEpc(t) });
      }
    }
    const units = new Map((await catalogue.unitsByIds([...new Set([...named.values()].map((n) => n.unitId))], fields)).map((u) => [u._id, u]));
    return { named, units };
  };
}

export type EpcResolver = ReturnType<typeof createEpcResolver>;
