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
