import type { LeanPartner } from '../../store/partners';
import type { FlagHit } from '../flags';
import { diversionFlagRaiser, type PartnerDeps } from './context';
import { footprintTally } from './footprint';
import { walkChannelUnits } from './unit-walk';

/**
 * The diversion rules that need time to pass, run by a background job (server/jobs,
 * `partner-diversion`): where a unit was sold against where it is registered or checks in,
 * after PARTNER_SALE_GRACE_DAYS; and a unit never reported sold after PARTNER_UNREPORTED_DAYS
 * that checks in outside its partner's territories. Each flag is raised once per unit and rule.
 * The same walk keeps the partners' footprints (footprint.ts).
 */

const DAY_MS = 86_400_000;

interface SeenUnit {
  current?: { country?: string | null } | null;
  checkIns?: { lastCountry?: string | null; lastAt?: Date | null } | null;
}

export const graceRules = {
  /** Registered, or checking in since the sale, in another country than the end customer's, once the grace period is over. */
  saleCountryMismatch(sale: { country: string; soldAt: Date }, unit: SeenUnit, now: Date, graceDays: number): FlagHit | null {
    if (now.getTime() - sale.soldAt.getTime() < graceDays * DAY_MS) return null;
    const registered = unit.current?.country ?? null;
    const checkedIn = unit.checkIns?.lastAt && unit.checkIns.lastAt >= sale.soldAt ? (unit.checkIns.lastCountry ?? null) : null;
    const seen = registered && registered !== sale.country ? { where: 'registration', country: registered } : checkedIn && checkedIn !== sale.country ? { where: 'check-in', country: checkedIn } : null;
    if (!seen) return null;
    return { rule: 'sale-country-mismatch', evidence: { soldTo: sale.country, seenIn: seen.country, where: seen.where, soldAt: sale.soldAt.toISOString().slice(0, 10), graceDays } };
  },

  /** Allocated, no sale reported after `days`, yet checking in (since allocation) outside the partner's territories. */
  unreportedSale(channel: { allocatedAt: Date; sales: readonly unknown[] }, unit: SeenUnit, territories: readonly string[], now: Date, days: number): FlagHit | null {
    if (channel.sales.length || now.getTime() - channel.allocatedAt.getTime() < days * DAY_MS) return null;
    const country = unit.checkIns?.lastCountry;
    if (!country || !unit.checkIns?.lastAt || unit.checkIns.lastAt < channel.allocatedAt) return null;
    if (territories.length && territories.includes(country)) return null;
    return { rule: 'unreported-sale', evidence: { allocatedAt: channel.allocatedAt.toISOString().slice(0, 10), checkInCountry: country, territories: [...territories], days } };
  },
};

export function partnerDiversion(deps: PartnerDeps) {
  const store = deps.stores.partners;
  const raiseOnce = diversionFlagRaiser(deps);

  return {
    /**
     * Walks every partner's units and applies the rules above to each unit once, for its
     * current holder; on the way, counts where the units were seen and writes every partner's
     * footprint (footprint.ts). Safe to run again: flags are raised once, footprints rewritten whole.
     */
    async sweepDiversion() {
      const { saleGraceDays, unreportedDays } = deps.config.partners;
      const now = deps.clock.now();
      const all = await store.allPartners();
      const partners = new Map<string, LeanPartner>(all.map((p) => [p._id, p]));
      const footprints = footprintTally(all, now);
      let raised = 0;
      const units = await walkChannelUnits(deps, all, async (walked) => {
        const { record, unit } = walked;
        footprints.add(walked);
        const lastSale = record.sales.at(-1);
        const hits = [
          lastSale ? graceRules.saleCountryMismatch(lastSale, unit, now, saleGraceDays) : null,
          graceRules.unreportedSale(record, unit, partners.get(record.holderId)?.territories ?? [], now, unreportedDays),
        ].filter((h) => h !== null);
        for (const hit of hits) if (await raiseOnce(hit, record.holderId, unit, (hit.evidence.seenIn ?? hit.evidence.checkInCountry) as string, unit._id)) raised++;
      });
      await store.saveFootprints(footprints.documents());
      return { units, raised, footprints: all.length };
    },
  };
}
