import type { LeanPartner } from '../../store/partners';
import type { PartnerDeps } from './context';

/** Units read per round of a walk. */
const WALK_CHUNK = 200;

/** A unit in the channel as the sweeps see it: its channel record and its catalogue summary. */
export interface WalkedUnit {
  record: { _id: string; holderId: string; allocatedAt: Date; sales: Array<{ country: string; soldAt: Date }> };
  unit: {
    _id: string;
    modelId: string;
    serial: string;
    current?: { country?: string | null } | null;
    checkIns?: { lastCountry?: string | null; lastAt?: Date | null; countries?: string[] | null } | null;
    countries?: Array<{ country: string; source: string }> | null;
  };
}

/**
 * Walks every partner's units (through its allocations, by `_id`: the channel records grow
 * with the units), each unit once whichever allocations list it, with its channel record and
 * its catalogue summary. Shared by the diversion sweep and the footprints' rebuild so both
 * see the same units; `progress` is told the units read so far after each round.
 */
export async function walkChannelUnits(deps: Pick<PartnerDeps, 'stores'>, partners: readonly LeanPartner[], visit: (walked: WalkedUnit) => Promise<void>, progress?: (units: number) => void) {
  const store = deps.stores.partners;
  const seen = new Set<string>();
  let units = 0;
  for (const partner of partners) {
    for (const allocation of await store.allocationsByIds(partner.allocationIds)) {
      const ids = allocation.unitIds.filter((id) => !seen.has(id));
      for (const id of ids) seen.add(id);
      for (let at = 0; at < ids.length; at += WALK_CHUNK) {
        const chunk = ids.slice(at, at + WALK_CHUNK);
        const [records, catalogued] = await Promise.all([
          store.channelUnitsByIds(chunk),
          deps.stores.catalogue.unitsByIds(chunk, { modelId: 1, serial: 1, current: 1, checkIns: 1, countries: 1 }),
        ]);
        const unitsById = new Map(catalogued.map((u) => [u._id, u]));
        for (const record of records) {
          const unit = unitsById.get(record._id);
          if (!unit) continue;
          units++;
          await visit({ record, unit });
        }
        progress?.(units);
      }
    }
  }
  return units;
}
