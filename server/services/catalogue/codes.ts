/** How SKUs, serials and unit ids are written and compared: pure, used wherever a code arrives. */

/** Trimmed, upper-cased, inner whitespace removed: how SKUs and serials are compared. */
export const normaliseCode = (s: string) => s.trim().toUpperCase().replace(/\s+/g, '');

/** A unit's natural `_id`: `SKU:SERIAL` (codes never hold a colon, see CODE_PATTERN). */
export const unitId = (sku: string, serial: string) => `${normaliseCode(sku)}:${normaliseCode(serial)}`;

/** The serial part of a unit id. */
export const serialOf = (id: string) => id.slice(id.indexOf(':') + 1);
/** The SKU part of a unit id (`SKU:SERIAL`). */
export const modelOf = (id: string) => id.slice(0, id.indexOf(':'));

/** What a normalised SKU or serial may contain: URL-safe, and never the `:` of a unit id. */
export const CODE_PATTERN = /^[A-Z0-9][A-Z0-9._-]{0,63}$/;
export const CODE_RULE = 'Use letters, digits, ".", "_" or "-" (at most 64).';

/** `YYYY-MM-DD` that is a real calendar day → Date; '' → null; anything else → undefined. */
export function parseDay(value: string): Date | null | undefined {
  const v = value.trim();
  if (!v) return null;
  if (!/^\d{4}-\d{2}-\d{2}$/.test(v)) return undefined;
  const d = new Date(`${v}T00:00:00Z`);
  return Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== v ? undefined : d;
}

/** GS1 check digit of the digits before it (mod 10, weights 3 and 1 from the right). */
export function gs1CheckDigit(digits: string): number {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) sum += Number(digits[digits.length - 1 - i]) * (i % 2 === 0 ? 3 : 1);
  return (10 - (sum % 10)) % 10;
}

/** A GTIN-8/12/13/14 as its GTIN-14 (left-padded with zeros), or null when it is not one (length or check digit). */
export function normaliseGtin(value: string): string | null {
  const digits = value.trim().replace(/[\s-]/g, '');
  if (!/^(\d{8}|\d{12}|\d{13}|\d{14})$/.test(digits)) return null;
  const gtin = digits.padStart(14, '0');
  return gs1CheckDigit(gtin.slice(0, 13)) === Number(gtin[13]) ? gtin : null;
}
