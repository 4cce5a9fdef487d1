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
] as const;
export type FlagRule = (typeof FLAG_RULES)[number];

/** What raised a flag: the kind of record it was found in. */
export const FLAG_SOURCE_KINDS = ['registration', 'transfer', 'check-in', 'report', 'certificate', 'visit', 'epcis-event'] as const;
export type FlagSourceKind = (typeof FLAG_SOURCE_KINDS)[number];
