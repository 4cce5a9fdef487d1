/** The registrations' vocabulary: plain values shared by the schemas, services and routes. */

export const END_USER_TYPES = [
  'individual',
  'commercial-company',
  'reseller-distributor',
  'ngo-academic',
  'government-civil',
  'police-security',
  'military',
  'unknown',
] as const;
export type EndUserType = (typeof END_USER_TYPES)[number];

/** For high-risk models these end users are a red flag (domain primer). */
export const HIGH_RISK_END_USER_TYPES: readonly EndUserType[] = ['police-security', 'military', 'unknown'];

export const TRANSFER_KINDS = ['resale', 'relocation'] as const;
export const TRANSFER_STATUSES = ['pending', 'approved', 'refused', 'effective'] as const;
