/**
 * Where a unit is, from its summary alone (no events replayed): the unit page and EPCIS
 * `currentState` both answer from here, so they agree.
 */

export interface LocatedUnit {
  status: string;
  current?: { country?: string | null; since?: Date | null } | null;
  firstSale?: { shipToCountry?: string | null; soldAt?: Date | null } | null;
  createdAt: Date;
}

/** A captured event as a unit's summary keeps it (UnitEpcisEvents). */
export interface CapturedEntry {
  eventId: string;
  at: Date;
  bizStep?: string | null;
  disposition?: string | null;
  country?: string | null;
}

export type LocationSource = 'registration' | 'first-sale' | 'external-event' | 'unknown';

/** The latest captured event that placed the unit in a country. */
export const lastPlacing = (entries: readonly CapturedEntry[]) =>
  entries.reduce<CapturedEntry | null>((last, e) => (e.country && (!last || e.at >= last.at) ? e : last), null);

/**
 * The unit's last known country: a registration (or effective transfer) says where it is
 * since `current.since`; a captured event after that (a shipment, a sighting) moves it; before
 * any registration the first sale's destination, unless a later captured event says otherwise.
 */
export function lastKnownLocation(unit: LocatedUnit, entries: readonly CapturedEntry[]): { country: string | null; since: Date | null; source: LocationSource } {
  const captured = lastPlacing(entries);
  const registered = unit.current?.country ? { country: unit.current.country, since: unit.current.since ?? null, source: 'registration' as const } : null;
  const sale = unit.firstSale?.shipToCountry ? { country: unit.firstSale.shipToCountry, since: unit.firstSale.soldAt ?? null, source: 'first-sale' as const } : null;
  const told = registered ?? sale;
  if (captured && (!told || !told.since || captured.at > told.since)) return { country: captured.country!, since: captured.at, source: 'external-event' };
  return told ?? { country: null, since: null, source: 'unknown' };
}
