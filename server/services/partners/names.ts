/**
 * A partner name folded for matching free text: case, accents, punctuation and common legal
 * forms do not tell two partners apart.
 */
export function nameKey(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .replace(/\b(ltd|limited|inc|llc|gmbh|sa|sarl|bv|plc|co|corp|company)\b/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}
