import mongoose, { Schema } from 'mongoose';
import type { Engine } from '../engine';
import { checkInHistoryMigration } from './001-check-in-history';
import { registrationPlacesMigration } from './002-registration-places';
import { checkInOutboxMigration } from './003-check-in-outbox';
import { reportEncryptionMigration, type ClearReports } from './004-report-encryption';
import { channelPartnersMigration } from './005-channel-partners';
import { reportLinkWaitsMigration } from './006-report-link-waits';
import { webhookDeliveriesDueMigration } from './007-webhook-deliveries-due';

/**
 * Changes of the stored shape, applied in order and recorded in the `migrations` collection
 * (one document per applied migration, `_id` = its id). Each migration is idempotent and
 * resumable: it finds what is still to convert from the data itself, so an interrupted run
 * simply continues. `npm run migrate` runs them with progress output; at start-up the app
 * runs small ones itself and refuses to start on large ones (MigrationRequiredError).
 */

export interface Migration {
  id: string;
  description: string;
  /** What `remaining` counts, for progress lines ("units"). */
  unit: string;
  /** How many documents are still to convert. */
  remaining(): Promise<number>;
  /** Converts everything still to convert; `progress` gets the running total. Returns the total. */
  run(progress: (done: number) => void): Promise<number>;
}

/** More than this many documents to convert and the app will not migrate at start-up. */
export const MAX_AT_START = 10_000;

const appliedMigrationSchema = new Schema({ _id: { type: String, required: true }, appliedAt: { type: Date, required: true }, converted: { type: Number, default: 0 } }, { versionKey: false });
const AppliedMigration = mongoose.model('AppliedMigration', appliedMigrationSchema, 'migrations');

export class MigrationRequiredError extends Error {
  constructor(pending: ReadonlyArray<{ description: string; remaining: number; unit: string }>) {
    super(`The database holds data in an older shape (${pending.map((p) => `${p.description}: ${p.remaining.toLocaleString('en')} ${p.unit}`).join('; ')}).\nRun \`npm run migrate\` first.`);
    this.name = 'MigrationRequiredError';
  }
}

/**
 * `clearReports`: the reports service's sealing of reports written in the clear, which needs
 * the master key (`npm run migrate` passes it); without it that migration is not run.
 */
export interface MigrationContext {
  clearReports?: ClearReports;
}

const migrationsFor = (engine: Engine, context: MigrationContext): Migration[] => [
  checkInHistoryMigration(engine),
  registrationPlacesMigration(engine),
  checkInOutboxMigration(),
  ...(context.clearReports ? [reportEncryptionMigration(context.clearReports)] : []),
  channelPartnersMigration(),
  reportLinkWaitsMigration(),
  webhookDeliveriesDueMigration(),
];

/** Migrations not yet recorded as applied, with how much each still has to convert. */
export async function pendingMigrations(engine: Engine, context: MigrationContext = {}): Promise<Array<{ migration: Migration; id: string; description: string; unit: string; remaining: number }>> {
  const pending = [];
  for (const migration of migrationsFor(engine, context)) {
    if (await AppliedMigration.exists({ _id: migration.id })) continue;
    pending.push({ migration, id: migration.id, description: migration.description, unit: migration.unit, remaining: await migration.remaining() });
  }
  return pending;
}

/**
 * Runs the pending migrations and records each. `maxRemaining`: refuse (MigrationRequiredError)
 * before converting anything when one has more than this to convert (the start-up path).
 */
export async function runMigrations(engine: Engine, opts: MigrationContext & { maxRemaining?: number; progress?: (line: string) => void } = {}): Promise<string[]> {
  const pending = await pendingMigrations(engine, opts);
  const large = pending.filter((p) => opts.maxRemaining !== undefined && p.remaining > opts.maxRemaining);
  if (large.length) throw new MigrationRequiredError(large);
  for (const { migration, remaining } of pending) {
    opts.progress?.(`${migration.id}: ${migration.description} (${remaining.toLocaleString('en')} ${migration.unit} to convert)`);
    // A line per whole per cent (and the last): thousands of reports would be thousands of lines.
    const step = Math.max(1, Math.ceil(remaining / 100));
    let shown = -1;
    const converted = await migration.run((done) => {
      if (done < remaining && Math.floor(done / step) === shown) return;
      shown = Math.floor(done / step);
      opts.progress?.(`  migrated ${done.toLocaleString('en')} / ${remaining.toLocaleString('en')} ${migration.unit}`);
    });
    await AppliedMigration.updateOne({ _id: migration.id }, { $setOnInsert: { appliedAt: new Date(), converted } }, { upsert: true });
  }
  return pending.map((p) => p.id);
}

/**
 * Records every migration as applied without looking at the data: for a database whose data
 * was written in the current shape from the start (the bench generator), so that the next
 * start does not scan its units for older shapes.
 */
export async function recordMigrationsApplied(engine: Engine): Promise<void> {
  for (const migration of migrationsFor(engine, {})) await AppliedMigration.updateOne({ _id: migration.id }, { $setOnInsert: { appliedAt: new Date(), converted: 0 } }, { upsert: true });
}

/** At start-up: small conversions happen now; large ones stop the start with "Run `npm run migrate` first". */
export const migrateAtStart = (engine: Engine, context: MigrationContext, progress?: (line: string) => void) => runMigrations(engine, { ...context, maxRemaining: MAX_AT_START, progress });
