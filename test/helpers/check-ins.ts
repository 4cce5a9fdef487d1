import request from 'supertest';
import type { ApiKeyScope } from '../../models/auth';
import { ProductModel, SerialIndex, Unit } from '../../models/catalogue';
import { unitId } from '../../server/services/catalogue';
import { createStores } from '../../server/store';
import type { TestContext } from './context';
import { unique } from './factories';

/** An API key made through the service; `auth` is the header a device sends. */
export async function makeApiKey(ctx: TestContext, fields: { name?: string; scopes?: ApiKeyScope[] } = {}) {
  const { apiKey, key } = await ctx.services.auth.createApiKey({ name: fields.name ?? unique('update-server'), scopes: fields.scopes ?? ['check-ins'] }, null);
  return { apiKey, key, id: apiKey._id, auth: { Authorization: `Bearer ${key}` } };
}

/**
 * A catalogued unit written straight to the models (the catalogue's own factories build
 * through its services): registered in `country` unless `status` says otherwise.
 */
export async function makeCheckInUnit(
  ctx: TestContext,
  fields: { sku?: string; serial?: string; status?: 'unregistered' | 'registered' | 'transfer-pending'; country?: string | null; countries?: Array<{ country: string; source: string }> } = {},
) {
  const sku = fields.sku ?? unique('CK').toUpperCase();
  const serial = fields.serial ?? unique('SN').toUpperCase();
  const now = ctx.clock.now();
  await ProductModel.updateOne(
    { _id: sku },
    { $setOnInsert: { sku, name: 'Test gateway', category: 'networking', riskLevel: 'low', createdAt: now, updatedAt: now } },
    { upsert: true },
  );
  const status = fields.status ?? 'registered';
  const country = fields.country === undefined ? (status === 'unregistered' ? null : 'KE') : fields.country;
  const countries = fields.countries ?? (country ? [{ country, source: 'registration' }] : []);
  const unit = await Unit.create({
    _id: unitId(sku, serial),
    modelId: sku,
    serial,
    createdAt: now,
    status,
    current: { country, since: country ? now : null },
    countries: countries.map((c) => ({ ...c, firstSeen: now, lastSeen: now })),
  });
  await SerialIndex.updateOne({ _id: serial }, { $addToSet: { unitIds: unit._id } }, { upsert: true });
  return unit.toObject();
}

let event = 0;

/** A valid check-in item for `unit`; override any field. */
export function checkInItem(unit: { modelId: string; serial: string } | null, fields: Record<string, unknown> = {}) {
  return {
    serial: unit?.serial ?? unique('GHOST').toUpperCase(),
    model: unit?.modelId ?? 'NOPE-1',
    firmware: '2.1.0',
    observedAt: '2026-01-15T09:00:00+03:00',
    country: 'KE',
    eventId: `evt-${++event}`,
    ...fields,
  };
}

/** Hours after the test clock's start, as an ISO time with an offset (observed times are in the past). */
export const hoursAgo = (ctx: TestContext, h: number) => new Date(ctx.clock.now().getTime() - h * 3_600_000).toISOString().replace('Z', '+00:00');

/**
 * Posts a batch and waits for the summariser to fold it, so a test can then read unit
 * summaries and red flags (they follow ingest in the background).
 */
export async function sendBatch(ctx: TestContext, auth: Record<string, string>, items: unknown[]) {
  const res = await request(ctx.app).post('/api/v1/check-ins/batch').set(auth).send({ items });
  await ctx.services.checkIns.settled();
  return res;
}

/** One check-in, as a device sends it; waits for its summary like `sendBatch`. */
export async function sendCheckIn(ctx: TestContext, auth: Record<string, string>, item: unknown) {
  const res = await request(ctx.app).post('/api/v1/check-ins').set(auth).send(item as object);
  await ctx.services.checkIns.settled();
  return res;
}

/** A unit's check-in runs, oldest first, as the timeline and exports read them (history buckets joined). */
export async function unitRunsOf(ctx: TestContext, unitIdValue: string) {
  const unit = await Unit.findById(unitIdValue, { checkIns: 1 }).lean();
  return unit ? createStores(ctx.db.engine).checkInHistory.runsOf(unit) : [];
}
