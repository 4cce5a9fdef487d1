/** Red-flag rules from the domain primer; ids are stable (stored on flags and cases). */
export const FLAG_RULES = [
  'restricted-country', // registration, transfer or check-in in a restricted country
  'country-mismatch', // check-in country ≠ registered country (possible diversion)
  'unregistered-check-in', // a catalogued serial checks in without a registration
  'unknown-serial', // a serial checks in that is not in the catalogue at all
  'unnotified-transfer', // relocation seen first in check-ins, without notice or approval
  'high-risk-end-user', // high-risk model with a high-risk end-user type
  'end-use-outside-intended', // declared end use outside the model's intended uses
  'misuse-report', // a misuse report naming the unit, its model or a registration's country
  'restricted-party', // a registration's or transfer's party confirmed as a listed (sanctioned or restricted) party
  'certificate-missing', // an end-use certificate is required (model risk or end-user type) and none is attached
  'certificate-expired', // the end-use certificate covering a unit has passed its validity
  'certificate-over-quantity', // a certificate is attached to more units of a model than it covers
  'verification-failed', // a post-shipment verification visit did not find the unit, or found it elsewhere
  // Diversion signals from channel partners' sell-through reports (partners module):
  'sale-outside-territory', // end-customer country outside the partner's authorised territories
  'unauthorised-model-sale', // a model (or risk level) the partner is not authorised to sell
  'unallocated-unit-sale', // a partner reports the sale of a unit never allocated to it
  'unit-sold-twice', // the same unit reported sold a second time
  'unapproved-high-risk-sale', // a sale needing review reported as done without an approval
  'sale-country-mismatch', // registered in or checking in from another country than it was sold to, past the grace period
  'unreported-sale', // allocated, never reported sold after N days, yet checking in outside the partner's territories
] as const;
export type FlagRule = (typeof FLAG_RULES)[number];

/** What raised a flag: the kind of record it was found in. */
export const FLAG_SOURCE_KINDS = ['registration', 'transfer', 'check-in', 'report', 'certificate', 'visit', 'epcis-event', 'sale', 'partner'] as const;
export type FlagSourceKind = (typeof FLAG_SOURCE_KINDS)[number];
