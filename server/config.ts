import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { RISK_LEVELS } from './domain/catalogue';
import { END_USER_TYPES } from './domain/registrations';
import { projectRoot } from './paths';

/**
 * The one place that reads the environment. Every variable is documented in the README's
 * "Configuration" table; keep the two in step.
 */

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const MASTER_KEY_BYTES = 32;
const masterKey = z
  .string()
  .trim()
  .transform((v, ctx) => {
    const key = Buffer.from(v, 'base64');
    if (key.length === MASTER_KEY_BYTES && /^[A-Za-z0-9+/]+={0,2}$/.test(v)) return key;
    ctx.addIssue({ code: 'custom', message: `base64 of ${MASTER_KEY_BYTES} random bytes (e.g. \`openssl rand -base64 32\`)` });
    return z.NEVER;
  });

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  MONGODB_URI: z
    .string()
    .regex(/^mongodb(\+srv)?:\/\//, 'must start with mongodb:// or mongodb+srv://')
    .optional(),
  MONGODB_DB: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,63}$/, 'letters, digits, _ and - only (at most 63)')
    .default('downstream'),
  DATA_DIR: z.string().min(1).default('./data'),
  JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  JWT_TTL_MINUTES: positiveInt(480),
  TRUST_PROXY: z
    .string()
    .default('false')
    .transform((v, ctx): boolean | number | string => {
      if (v === 'false') return false;
      if (v === 'true') return true;
      if (/^\d+$/.test(v)) return Number(v);
      if (/^[\w.:/, -]+$/.test(v)) return v; // 'loopback', CIDR lists, …
      ctx.addIssue({ code: 'custom', message: 'false, true, a hop count, or a list of subnets' });
      return z.NEVER;
    }),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  BODY_LIMIT_KB: positiveInt(100),
  UPLOAD_MAX_FILE_MB: positiveInt(25),
  UPLOAD_MAX_FILES: positiveInt(5),
  /** Anonymous uploads one process receives at once, per client address and in all (a guard of its disk and CPU). */
  UPLOADS_AT_ONCE_PER_CLIENT: positiveInt(2),
  UPLOADS_AT_ONCE: positiveInt(16),
  RATE_LIMIT_LOGIN_PER_15MIN: positiveInt(10),
  RATE_LIMIT_PUBLIC_POST_PER_MIN: positiveInt(20),
  /** Anti-spam on the public report form: seconds a form must be open before it is accepted without proof of work. */
  REPORT_MIN_FILL_SECONDS: z.coerce.number().int().min(0).max(600).default(5),
  /** Leading zero bits the report form's proof of work must reach (0 turns the fast path into "always"). */
  REPORT_POW_BITS: z.coerce.number().int().min(0).max(28).default(16),
  REPORT_SUBMISSIONS_PER_10MIN: positiveInt(5),
  /** The portal's Tor onion service (`<56 chars>.onion`): announced to Tor Browser with `Onion-Location` on the public reporting pages. */
  ONION_ADDRESS: z
    .string()
    .regex(/^[a-z2-7]{56}\.onion$/, 'a v3 onion address: 56 letters and digits, then .onion')
    .optional(),
  /** Days a closed report still takes the reporter's messages and files (0: none after closing). */
  REPORT_MESSAGES_AFTER_CLOSURE_DAYS: z.coerce.number().int().min(0).max(3650).default(30),
  COOKIE_SECURE: bool.optional(),
  RESTRICTED_COUNTRIES: z
    .string()
    .default('BY,CU,IR,KP,RU,SY')
    .transform((v) => v.split(',').map((c) => c.trim().toUpperCase()).filter(Boolean))
    .refine((list) => list.every((c) => /^[A-Z]{2}$/.test(c)), 'a comma-separated list of ISO 3166-1 alpha-2 codes'),
  EMBEDDED_DB_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('warn'),
  /** Months after a case closes before reporter data (contact, messages, evidence) is deleted. */
  RETENTION_MONTHS: z.coerce.number().int().min(1, 'must be at least 1 month').max(1200).default(24),
  /** Public transparency report: any count below this is shown as "fewer than N". */
  TRANSPARENCY_MIN_COUNT: z.coerce.number().int().min(1, 'must be at least 1').max(1000).default(5),
  /** Background jobs: how long an instance's claim on a job lasts without renewal (a dead instance's job moves on after this). */
  JOB_LEASE_SECONDS: z.coerce.number().int().min(1).max(3600).default(15),
  CHECK_IN_SWEEP_MS: z.coerce.number().int().min(50).max(60_000).default(500),
  CHECK_IN_IDLE_SWEEP_SECONDS: z.coerce.number().int().min(1).max(3600).default(5),
  RETENTION_EVERY_MINUTES: z.coerce.number().int().min(1).max(10_080).default(60),
  REPORT_LINKS_EVERY_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
  /** Channel partners' diversion rules: days after a sale before a unit seen elsewhere is flagged, and before an unreported unit checking in is. */
  PARTNER_SALE_GRACE_DAYS: z.coerce.number().int().min(0).max(3650).default(30),
  PARTNER_UNREPORTED_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  PARTNER_DIVERSION_EVERY_MINUTES: z.coerce.number().int().min(1).max(10_080).default(60),
  /** Outgoing mail; unset: each message is written as an .eml file to DATA_DIR/outbox. */
  SMTP_URL: z
    .string()
    .regex(/^smtps?:\/\/[^\s]+$/, 'must start with smtp:// or smtps://')
    .optional(),
  MAIL_FROM: z.string().trim().min(3).max(254).default('Downstream <no-reply@downstream.invalid>'),
  /** Where links in e-mails point (the portal as users reach it). */
  PUBLIC_URL: z
    .string()
    .regex(/^https?:\/\/[^\s/]+(:\d+)?\/?$/, 'an http(s) origin, e.g. https://portal.example.org')
    .optional(),
  /** Besides admins, who may approve investigators' requests to see a reporter's identity. */
  IDENTITY_CUSTODIAN_EMAILS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((e) => e.trim().toLowerCase()).filter(Boolean))
    .refine((list) => list.every((e) => /^[^@\s]+@[^@\s]+$/.test(e)), 'a comma-separated list of e-mail addresses'),
  IDENTITY_GRANT_HOURS: z.coerce.number().int().min(1, 'must be at least 1 hour').max(720).default(24),
  /** Restricted-party screening: a match scoring at least this holds the record for review. */
  SCREENING_MATCH_THRESHOLD: z.coerce.number().min(0).max(1).default(0.8),
  /** Matches scoring below this are not kept at all. */
  SCREENING_CUTOFF: z.coerce.number().min(0).max(1).default(0.6),
  /** End-use certificates are required for registrations of models of these risk levels… (none by default) */
  CERTIFICATE_REQUIRED_RISK_LEVELS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((c) => c.trim()).filter(Boolean))
    .refine((list) => list.every((l) => (RISK_LEVELS as readonly string[]).includes(l)), `a comma-separated list of ${RISK_LEVELS.join(', ')}`),
  /** …or for these end-user types, whatever the model. */
  CERTIFICATE_REQUIRED_END_USER_TYPES: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((c) => c.trim()).filter(Boolean))
    .refine((list) => list.every((t) => (END_USER_TYPES as readonly string[]).includes(t)), `a comma-separated list of ${END_USER_TYPES.join(', ')}`),
  /** Post-shipment verification: highest-risk units with no visit in this many months are due one. */
  VERIFICATION_DUE_MONTHS: z.coerce.number().int().min(1).max(120).default(12),
  /** How often the holder of the EPCIS capture job looks for new captures when none is waiting. */
  EPCIS_CAPTURE_IDLE_SECONDS: z.coerce.number().int().min(1).max(3600).default(2),
  /** How often the holder of the webhook job delivers what is due. */
  WEBHOOK_DELIVERY_EVERY_SECONDS: z.coerce.number().int().min(1).max(3600).default(5),
  /** A webhook receiver must answer within this long; else the attempt failed and is retried. */
  WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(30_000).default(5_000),
  /** How long failed deliveries are retried (exponential backoff) before they are dead-lettered. */
  WEBHOOK_RETRY_HOURS: z.coerce.number().int().min(1).max(168).default(24),
  /**
   * Private, loopback or link-local networks webhooks may still target (comma-separated CIDRs),
   * e.g. an intranet ticketing system; empty: public addresses only. Cloud metadata addresses never.
   */
  WEBHOOK_ALLOWED_PRIVATE_TARGETS: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((c) => c.trim()).filter(Boolean))
    .refine((list) => list.every((c) => /^[0-9a-fA-F:.]+\/\d{1,3}$/.test(c)), 'a comma-separated list of CIDR ranges, e.g. 10.20.0.0/16'),
  /** The master key of encryption at rest (base64 of 32 random bytes): wraps every report's data key. */
  ENCRYPTION_KEY: masterKey.optional(),
  /** During a key rotation: the master key being replaced, still accepted until `npm run keys:rotate` has re-wrapped every data key. */
  ENCRYPTION_KEY_PREVIOUS: masterKey.optional(),
  /** Whether investigators and admins must sign in with a second factor (TOTP). */
  STAFF_TWO_FACTOR: z.enum(['required', 'optional'], 'must be required or optional').default('required'),
});

export type Env = Record<string, string | undefined>;

export interface Config {
  env: 'development' | 'test' | 'production';
  host: string;
  port: number;
  /** null: start the embedded database under `dataDir/db`. */
  mongodbUri: string | null;
  databaseName: string;
  dataDir: string;
  jwt: { secret: string; ttlMinutes: number; issuer: string; audience: string };
  trustProxy: boolean | number | string;
  logLevel: string;
  bodyLimitKb: number;
  uploads: { maxFileBytes: number; maxFiles: number; atOncePerClient: number; atOnce: number };
  rateLimits: { loginPer15Min: number; publicPostPerMin: number };
  /** Anti-spam for the anonymous report channel (counted in the database, on the injected clock). */
  reports: { minFillSeconds: number; powBits: number; submissionsPer10Min: number; messagesAfterClosureDays: number };
  cookieSecure: boolean;
  /** The portal's onion address, when it runs as a Tor onion service (null: none). */
  onionAddress: string | null;
  /** Initial restricted-country list; admins can change it at run time (flags settings). */
  restrictedCountries: string[];
  embeddedDbLogLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Months after closure before a case's reporter data is deleted (legal hold suspends it). */
  retentionMonths: number;
  /** Counts below this are hidden on the public transparency report (small numbers can identify people). */
  transparencyMinCount: number;
  /** Background jobs (server/jobs): each runs on the one instance holding its lease. */
  jobs: { leaseMs: number; checkInSweepMs: number; checkInIdleSweepMs: number; retentionEveryMs: number; reportLinksEveryMs: number; epcisCaptureIdleMs: number; webhookDeliveryEveryMs: number; partnerDiversionEveryMs: number };
  /** Outgoing webhooks: the receiver's time to answer, the retry window, the private networks an admin allowed. */
  webhooks: { timeoutMs: number; retryWindowMs: number; allowedPrivateTargets: string[] };
  /** Grace periods of the channel partners' diversion rules, in days. */
  partners: { saleGraceDays: number; unreportedDays: number };
  /** Outgoing mail: SMTP, or (smtpUrl null) .eml files in `dataDir/outbox`. */
  mail: { smtpUrl: string | null; from: string; publicUrl: string };
  /** `required`: investigators and admins enrol a TOTP authenticator at their first sign-in. */
  staffTwoFactor: 'required' | 'optional';
  /** Reading a reporter's identity: who approves besides admins, and how long a grant lasts. */
  identity: { custodianEmails: string[]; grantHours: number };
  /** Restricted-party screening scores in [0, 1]: hold for review at `threshold`, keep nothing below `cutoff`. */
  screening: { threshold: number; cutoff: number };
  /** When an end-use certificate is required: a model's risk level or the end-user type. */
  certificates: { requiredRiskLevels: string[]; requiredEndUserTypes: string[] };
  /** Months without a verification visit after which a highest-risk unit is due one. */
  verification: { dueMonths: number };
  /** Encryption at rest of reporters' data: the master key, and the one a rotation is replacing. */
  encryption: { key: Buffer; previousKey: Buffer | null };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Development keeps a generated secret in the data directory so that sessions survive a
 * restart; production must be given one, since a secret on local disk is not one to trust.
 */
function resolveJwtSecret(given: string | undefined, nodeEnv: string, dataDir: string): string {
  if (given) return given;
  if (nodeEnv === 'production') {
    throw new ConfigError(['JWT_SECRET: required when NODE_ENV=production (at least 32 characters)']);
  }
  const file = path.join(dataDir, 'jwt-secret');
  // An unreadable or unwritable data directory is a configuration problem: one message, no stack.
  const unusable = (err: unknown) =>
    new ConfigError([`DATA_DIR: ${dataDir} cannot be used (${(err as Error).message}); give a writable directory, or set JWT_SECRET`]);
  try {
    const stored = fs.readFileSync(file, 'utf8').trim();
    if (stored.length >= 32) return stored;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw unusable(err);
  }
  const secret = crypto.randomBytes(48).toString('base64url');
  try {
    // Only the account running Downstream may read DATA_DIR (issue 20, finding 10).
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  } catch (err) {
    throw unusable(err);
  }
  return secret;
}

/**
 * Like the JWT secret: development keeps a generated master key in the data directory (mode
 * 0600, never logged), production must be given one. Losing this file loses every report it
 * encrypted, so the README asks for a backup of it kept apart from the database backups.
 */
function resolveEncryptionKey(given: Buffer | undefined, nodeEnv: string, dataDir: string): Buffer {
  if (given) return given;
  if (nodeEnv === 'production') {
    throw new ConfigError(['ENCRYPTION_KEY: required when NODE_ENV=production (base64 of 32 random bytes, e.g. `openssl rand -base64 32`)']);
  }
  const file = path.join(dataDir, 'encryption-key');
  const unusable = (err: unknown) =>
    new ConfigError([`DATA_DIR: ${dataDir} cannot be used (${(err as Error).message}); give a writable directory, or set ENCRYPTION_KEY`]);
  try {
    const stored = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64');
    if (stored.length === MASTER_KEY_BYTES) return stored;
    throw new ConfigError([`ENCRYPTION_KEY: ${file} does not hold base64 of ${MASTER_KEY_BYTES} bytes; restore it from its backup`]);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw unusable(err);
  }
  const key = crypto.randomBytes(MASTER_KEY_BYTES);
  try {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process starting beside this one wrote it first: theirs is the key.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return resolveEncryptionKey(undefined, nodeEnv, dataDir);
    throw unusable(err);
  }
  return key;
}

/** For set-up scripts that only need to know whether the embedded database will be used. */
export function usesEmbeddedDatabase(env: Env = process.env): boolean {
  return !env.MONGODB_URI;
}

export function loadConfig(env: Env = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => `${i.path.join('.') || '(environment)'}: ${i.message}`),
    );
  }
  const e = parsed.data;
  const dataDir = path.resolve(projectRoot, e.DATA_DIR);
  return {
    env: e.NODE_ENV,
    host: e.HOST,
    port: e.PORT,
    mongodbUri: e.MONGODB_URI ?? null,
    databaseName: e.MONGODB_DB,
    dataDir,
    jwt: {
      secret: resolveJwtSecret(e.JWT_SECRET, e.NODE_ENV, dataDir),
      ttlMinutes: e.JWT_TTL_MINUTES,
      issuer: 'downstream',
      audience: 'downstream-portal',
    },
    trustProxy: e.TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    bodyLimitKb: e.BODY_LIMIT_KB,
    uploads: { maxFileBytes: e.UPLOAD_MAX_FILE_MB * 1024 * 1024, maxFiles: e.UPLOAD_MAX_FILES, atOncePerClient: e.UPLOADS_AT_ONCE_PER_CLIENT, atOnce: e.UPLOADS_AT_ONCE },
    rateLimits: {
      loginPer15Min: e.RATE_LIMIT_LOGIN_PER_15MIN,
      publicPostPerMin: e.RATE_LIMIT_PUBLIC_POST_PER_MIN,
    },
    cookieSecure: e.COOKIE_SECURE ?? e.NODE_ENV === 'production',
    onionAddress: e.ONION_ADDRESS ?? null,
    restrictedCountries: e.RESTRICTED_COUNTRIES,
    reports: {
      minFillSeconds: e.REPORT_MIN_FILL_SECONDS,
      powBits: e.REPORT_POW_BITS,
      submissionsPer10Min: e.REPORT_SUBMISSIONS_PER_10MIN,
      messagesAfterClosureDays: e.REPORT_MESSAGES_AFTER_CLOSURE_DAYS,
    },
    embeddedDbLogLevel: e.EMBEDDED_DB_LOG_LEVEL,
    retentionMonths: e.RETENTION_MONTHS,
    transparencyMinCount: e.TRANSPARENCY_MIN_COUNT,
    jobs: {
      leaseMs: e.JOB_LEASE_SECONDS * 1000,
      checkInSweepMs: e.CHECK_IN_SWEEP_MS,
      checkInIdleSweepMs: e.CHECK_IN_IDLE_SWEEP_SECONDS * 1000,
      retentionEveryMs: e.RETENTION_EVERY_MINUTES * 60_000,
      reportLinksEveryMs: e.REPORT_LINKS_EVERY_SECONDS * 1000,
      epcisCaptureIdleMs: e.EPCIS_CAPTURE_IDLE_SECONDS * 1000,
      webhookDeliveryEveryMs: e.WEBHOOK_DELIVERY_EVERY_SECONDS * 1000,
      partnerDiversionEveryMs: e.PARTNER_DIVERSION_EVERY_MINUTES * 60_000,
    },
    webhooks: { timeoutMs: e.WEBHOOK_TIMEOUT_MS, retryWindowMs: e.WEBHOOK_RETRY_HOURS * 3_600_000, allowedPrivateTargets: e.WEBHOOK_ALLOWED_PRIVATE_TARGETS },
    partners: { saleGraceDays: e.PARTNER_SALE_GRACE_DAYS, unreportedDays: e.PARTNER_UNREPORTED_DAYS },
    mail: {
      smtpUrl: e.SMTP_URL ?? null,
      from: e.MAIL_FROM,
      publicUrl: (e.PUBLIC_URL ?? `http://${e.HOST}:${e.PORT}`).replace(/\/$/, ''),
    },
    identity: { custodianEmails: e.IDENTITY_CUSTODIAN_EMAILS, grantHours: e.IDENTITY_GRANT_HOURS },
    screening: { threshold: e.SCREENING_MATCH_THRESHOLD, cutoff: Math.min(e.SCREENING_CUTOFF, e.SCREENING_MATCH_THRESHOLD) },
    certificates: { requiredRiskLevels: e.CERTIFICATE_REQUIRED_RISK_LEVELS, requiredEndUserTypes: e.CERTIFICATE_REQUIRED_END_USER_TYPES },
    verification: { dueMonths: e.VERIFICATION_DUE_MONTHS },
    encryption: { key: resolveEncryptionKey(e.ENCRYPTION_KEY, e.NODE_ENV, dataDir), previousKey: e.ENCRYPTION_KEY_PREVIOUS ?? null },
    staffTwoFactor: e.STAFF_TWO_FACTOR,
  };
}
