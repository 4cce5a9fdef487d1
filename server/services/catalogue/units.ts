import type { NewUnit } from '../../store/catalogue';

export interface FirstSale {
  channelPartner?: string;
  shipToCountry?: string | null;
  soldAt?: Date | null;
}

export interface UnitInput {
  sku: string;
  serial: string;
  manufacturedAt?: Date | null;
  firstSale?: FirstSale;
}
export type UnitChanges = Pick<UnitInput, 'manufacturedAt' | 'firstSale'>;

/** A new unit of model `modelId` (both codes normalised). */
export function newUnit(modelId: string, serial: string, input: Pick<UnitInput, 'manufacturedAt' | 'firstSale'>, now: Date): NewUnit {
  const sale = input.firstSale ?? {};
  const shipTo = sale.shipToCountry || null;
  return {
    _id: `${modelId}:${serial}`,
    modelId,
    serial,
    manufacturedAt: input.manufacturedAt ?? null,
    firstSale: { channelPartner: sale.channelPartner ?? '', shipToCountry: shipTo, soldAt: sale.soldAt ?? null },
    // The ship-to country is the first place we know the unit went; it is history, not a
    // registered location, so `current.country` stays empty until someone registers it.
    countries: shipTo ? [{ country: shipTo, source: 'first-sale', firstSeen: sale.soldAt ?? now, lastSeen: sale.soldAt ?? now }] : [],
    createdAt: now,
    updatedAt: now,
  };
}
