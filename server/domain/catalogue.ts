/**
 * The catalogue's vocabulary: plain values and types, shared by the schemas, the services and
 * the routes without anyone loading the database library for them.
 */

export const RISK_LEVELS = ['low', 'elevated', 'high'] as const;
export type RiskLevel = (typeof RISK_LEVELS)[number];

export const CAPABILITIES = ['surveillance-capable', 'dual-use', 'export-controlled', 'lawful-intercept', 'encryption', 'uav'] as const;

export const IMPORT_STATUSES = ['running', 'done', 'failed'] as const;
/** Row errors kept on an import job for display; further ones are only counted. */
export const IMPORT_ERRORS_KEPT = 500;

/** Consecutive check-ins from one country, collapsed: "42 check-ins from KE, v2.1→v2.3, 3 Jan–9 Mar". */
export interface CheckInRun {
  country: string;
  count: number;
  firstAt: Date;
  lastAt: Date;
  firstFirmware: string;
  lastFirmware: string;
}

/**
 * The countries a unit checked in from, as its summary lists them. A unit summarised before
 * the summary kept that list names only its last country (its earlier ones live in its
 * history buckets, a read per unit and year).
 */
export function checkInCountriesOf(summary: { countries?: readonly string[] | null; lastCountry?: string | null } | null | undefined): readonly string[] {
  if (summary?.countries) return summary.countries;
  return summary?.lastCountry ? [summary.lastCountry] : [];
}
