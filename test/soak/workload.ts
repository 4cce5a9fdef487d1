import crypto from 'node:crypto';
import fs from 'node:fs';
import mongoose from 'mongoose';
import { createApp } from '../../server/app';
import { detectEngine } from '../../server/store/engine';
import { systemClock } from '../../server/clock';
import { loadConfig } from '../../server/config';
import { sessionCookieName } from '../../server/middleware/auth';
import { createLogger } from '../../server/logger';
import { makeModel, makeUnit, registrationInput } from '../helpers/catalogue';
import type { TestContext } from '../helpers/context';
import { makeApiKey } from '../helpers/check-ins';
import { makeUser } from '../helpers/factories';
import { reportFields } from '../helpers/reports';
import { call, serverEnv, sleep, type Outcome, type RunningServer } from '../helpers/security';

/**
 * The soak workload: real writes with caller-chosen unique ids against a running portal,
 * retried as a careful client would (same id, so a retry can never make a duplicate), and
 * the evidence to check afterwards that every acknowledged write is in the database.
 */

/** How long the soak runs, in seconds: short in `npm test`, a minute or more in `npm run test:soak`. */
export const soakSeconds = (fallback: number) => Number(process.env.SOAK_SECONDS ?? fallback);

export interface Fixtures {
  services: TestContext['services'];
  units: Array<{ _id: string; modelId: string; serial: string }>;
  apiKey: Record<string, string>;
  customer: Record<string, string>;
  investigatorCookie: string;
}

/** Builds fixtures through the services, on the running server's own database. */
export async function prepare(srv: RunningServer, unitCount: number, extraEnv: Record<string, string> = {}): Promise<Fixtures> {
  await mongoose.connect(srv.databaseUri, { dbName: 'downstream' });
  const env = serverEnv(srv.dataDir, { MONGODB_URI: srv.databaseUri, MONGODB_DB: 'downstream', LOG_LEVEL: 'silent', ...extraEnv });
  const config = loadConfig(env);
  const app = createApp({ config, db: { ping: async () => true, engine: await detectEngine(mongoose.connection) }, clock: systemClock, logger: createLogger('silent') });
  const ctx = { services: app.locals.services, clock: systemClock } as unknown as TestContext;
  const model = await makeModel(ctx);
  const units = [];
  for (let i = 0; i < unitCount; i++) units.push((await makeUnit(ctx, { model })).unit);
  const key = await makeApiKey(ctx);
  const customer = await makeUser(ctx, 'customer');
  const investigator = await makeUser(ctx, 'investigator');
  const session = (u: typeof customer) => ctx.services.auth.issueSession(u.user);
  return {
    services: ctx.services,
    units,
    apiKey: key.auth,
    customer: { Authorization: `Bearer ${(await session(customer)).token}` },
    investigatorCookie: `${sessionCookieName(config)}=${(await session(investigator)).token}`,
  };
}

export interface WriteRecord {
  kind: 'check-in' | 'registration' | 'report';
  /** The id the client chose: eventId, unit id, or the marker in the report's description. */
  key: string;
  outcomes: Outcome[];
}
export const acknowledged = (r: WriteRecord) => r.outcomes.some((o) => o.status >= 200 && o.status < 300);

/** A retryable failure: the database was away (503) or the connection broke. */
const retryable = (o: Outcome) => o.status === 503 || o.status === 0;

async function withRetries(send: () => Promise<Outcome>, attempts = 8): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (let i = 0; i < attempts; i++) {
    const outcome = await send();
    outcomes.push(outcome);
    if (!retryable(outcome)) break;
    await sleep(250 * (i + 1));
  }
  return outcomes;
}

let seq = 0;
let nextUnit = 0;
const runId = crypto.randomBytes(3).toString('hex');

/** One check-in batch of `size` events, each with its own eventId; retried whole (the ids make that safe). */
export async function checkInBatch(srv: RunningServer, fx: Fixtures, size = 5): Promise<WriteRecord[]> {
  // Round robin over the units, as update servers report different devices.
  const items = Array.from({ length: size }, () => {
    const unit = fx.units[nextUnit++ % fx.units.length]!;
    return { serial: unit.serial, model: unit.modelId, firmware: '2.1.0', observedAt: new Date(Date.now() - 60_000).toISOString(), country: 'KE', eventId: `soak-${runId}-${++seq}` };
  });
  const outcomes = await withRetries(() => call(`${srv.url}/api/v1/check-ins/batch`, { body: { items }, headers: fx.apiKey }));
  return items.map((i) => ({ kind: 'check-in', key: i.eventId, outcomes }));
}

/** Registers the next free unit to the customer; a retry answers 200 "already yours", never a second registration. */
export async function registration(srv: RunningServer, fx: Fixtures, next: () => number): Promise<WriteRecord[]> {
  const unit = fx.units[next()];
  if (!unit) return [];
  const body = { ...registrationInput(unit), purchaseDate: '2026-01-02' };
  const outcomes = await withRetries(() => call(`${srv.url}/api/v1/registrations`, { body, headers: fx.customer }));
  return [{ kind: 'registration', key: unit._id, outcomes }];
}

/** A report with a unique marker in its text. Not retried: a report has no client id to make a retry safe. */
export async function report(srv: RunningServer): Promise<WriteRecord[]> {
  const marker = `soak-report-${runId}-${++seq}`;
  const challenge = await call(`${srv.url}/api/v1/reports/challenge`);
  if (challenge.status !== 200) return [{ kind: 'report', key: marker, outcomes: [challenge] }];
  const token = (challenge.body as { token: string }).token;
  const body = { ...reportFields({ description: `Cameras of this model watch a clinic entrance. ${marker}` }), challenge: token, pow: '0' };
  return [{ kind: 'report', key: marker, outcomes: [await call(`${srv.url}/api/v1/reports`, { body })] }];
}

/**
 * What the database holds for each acknowledged write: check-ins and registrations by their
 * ids, reports by marker (descriptions are encrypted at rest: read through the reports service).
 */
export async function verifyAcknowledged(records: WriteRecord[], reportsService: Pick<Fixtures['services']['reports'], 'getReportForStaff'>) {
  const db = mongoose.connection.db!;
  const lost: string[] = [];
  const duplicated: string[] = [];
  const checkIns = records.filter((r) => r.kind === 'check-in');
  const stored = new Map<string, number>();
  for (const doc of await db.collection('checkins').find({ _id: { $regex: `soak-${runId}-` } as never }, { projection: { _id: 1 } }).toArray()) {
    const event = String(doc._id).split(':').pop()!;
    stored.set(event, (stored.get(event) ?? 0) + 1);
  }
  for (const r of checkIns) {
    const n = stored.get(r.key) ?? 0;
    if (acknowledged(r) && n === 0) lost.push(`check-in ${r.key}`);
    if (n > 1) duplicated.push(`check-in ${r.key}`);
  }
  for (const r of records.filter((x) => x.kind === 'registration')) {
    const n = await db.collection('registrations').countDocuments({ unitId: r.key });
    if (acknowledged(r) && n === 0) lost.push(`registration ${r.key}`);
    if (n > 1) duplicated.push(`registration ${r.key}`);
  }
  const reportIds = (await db.collection('reports').find({}, { projection: { _id: 1 } }).toArray()).map((d) => String(d._id));
  const texts = await Promise.all(reportIds.map(async (id) => (await reportsService.getReportForStaff(id)).what?.description ?? ''));
  for (const r of records.filter((x) => x.kind === 'report')) {
    const n = texts.filter((t) => t.endsWith(r.key)).length;
    if (acknowledged(r) && n === 0) lost.push(`report ${r.key}`);
    if (n > 1) duplicated.push(`report ${r.key}`);
  }
  return { lost, duplicated };
}

/** Resident memory of a process, in MiB (Linux). */
export function rssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
