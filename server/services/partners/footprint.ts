import { countryName } from '../../countries';
import { checkInCountriesOf } from '../../domain/catalogue';
import type { LeanPartner, StoredFootprint } from '../../store/partners';
import type { Page } from '../../middleware/validate';
import type { PartnerDeps } from './context';
import type { partnerRecords } from './records';
import { walkChannelUnits, type WalkedUnit } from './unit-walk';

/**
 * Partners' footprints: the countries the units each partner holds have been seen in (where
 * they check in from, where they were registered), against its authorised
 * territories. Kept as a read model, one document per partner, recomputed whole by the
 * `partner-diversion` sweep (it walks these units anyway) and by `npm run partners:rebuild`.
 */

/** Partners shown on the dashboard; the scorecards page lists the rest. */
export const DASHBOARD_PARTNERS = 10;

/** Where a unit was registered: its registrations and transfers in its country history. */
const REGISTERED = new Set(['registration', 'transfer']);

/**
 * Counts walked units per holder and country, for every partner (a partner with none gets
 * zeros). A unit counts in every country it checked in from (its check-in summary's list) and
 * every country it was registered or transferred to.
 */
export function footprintTally(partners: readonly LeanPartner[], now: Date) {
  const holders = new Map(partners.map((p) => [p._id, { units: 0, observedUnits: 0, countries: new Map<string, { units: number; checkIns: number; registrations: number }>() }]));
  return {
    add({ record, unit }: WalkedUnit) {
      const holder = holders.get(record.holderId);
      if (!holder) return;
      holder.units++;
      const seen = new Map<string, { checkIn: boolean; registered: boolean }>();
      const mark = (country: string, how: 'checkIn' | 'registered') => seen.set(country, { checkIn: false, registered: false, ...seen.get(country), [how]: true });
      for (const country of checkInCountriesOf(unit.checkIns)) mark(country, 'checkIn');
      for (const visit of unit.countries ?? []) if (REGISTERED.has(visit.source)) mark(visit.country, 'registered');
      if (seen.size) holder.observedUnits++;
      for (const [country, sources] of seen) {
        const row = holder.countries.get(country) ?? { units: 0, checkIns: 0, registrations: 0 };
        row.units++;
        row.checkIns += +sources.checkIn;
        row.registrations += +sources.registered;
        holder.countries.set(country, row);
      }
    },
    documents(): StoredFootprint[] {
      return [...holders].map(([_id, h]) => ({
        _id,
        units: h.units,
        observedUnits: h.observedUnits,
        countries: [...h.countries].map(([country, row]) => ({ country, ...row })).sort((a, b) => b.units - a.units || a.country.localeCompare(b.country)),
        computedAt: now,
      }));
    },
  };
}

type Scorecards = ReturnType<typeof partnerRecords>['scorecards'];

export function partnerFootprints(deps: PartnerDeps, scorecards: Scorecards) {
  const store = deps.stores.partners;

  return {
    /**
     * Recomputes every partner's footprint from its units (no flags raised): after units or
     * check-ins were written outside the services, or when in doubt. `progress` is told the
     * units read so far.
     */
    async rebuildFootprints(progress?: (units: number) => void) {
      const partners = await store.allPartners();
      const tally = footprintTally(partners, deps.clock.now());
      const units = await walkChannelUnits(deps, partners, async (walked) => tally.add(walked), progress);
      await store.saveFootprints(tally.documents());
      return { partners: partners.length, units };
    },

    /**
     * The dashboard's "Channel partners": the highest-risk partners (the scorecards' first
     * page) with where their units were seen, each country outside the partner's authorised
     * territories marked. A partner with no territories recorded has none to be outside of.
     */
    async dashboardPartners() {
      const first: Page = { page: 1, perPage: DASHBOARD_PARTNERS, skip: 0, limit: DASHBOARD_PARTNERS };
      const { items, total } = await scorecards(first);
      const footprints = new Map((await store.footprintsByIds(items.map((r) => r.partner._id))).map((f) => [f._id, f]));
      const rows = items.map(({ partner, risk, scorecard }) => {
        const footprint = footprints.get(partner._id);
        const outside = (code: string) => partner.territories.length > 0 && !partner.territories.includes(code);
        return {
          partner: { id: partner._id, name: partner.name, type: partner.type },
          risk: { tier: risk.tier, score: risk.score },
          scorecard: { allocated: scorecard.allocated, sold: scorecard.sold, flags: scorecard.flags, flagsPerThousand: scorecard.flagsPerThousand, openCases: scorecard.openCases },
          territories: partner.territories.map((code) => ({ country: code, name: countryName(code) })),
          footprint: footprint
            ? {
                units: footprint.units,
                observedUnits: footprint.observedUnits,
                computedAt: footprint.computedAt,
                countries: footprint.countries.map((c) => ({ ...c, name: countryName(c.country), outsideTerritory: outside(c.country) })),
                outsideCountries: footprint.countries.filter((c) => outside(c.country)).length,
              }
            : null,
        };
      });
      return { total, rows };
    },
  };
}
