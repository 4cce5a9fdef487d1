import request from 'supertest';
import type { RiskLevel } from '../../models/catalogue';
import type { PartnerInput } from '../../server/services/partners';
import type { TestContext } from './context';
import { makeModel } from './catalogue';
import { makeUser, pageAgent, TEST_PASSWORD, unique } from './factories';

/**
 * Channel partner factories, built through the partners service as the admin pages build
 * them. A partner user signs in like anyone else; a partner key reports sell-through.
 */

export async function staffActor(ctx: TestContext) {
  const { user } = await makeUser(ctx, 'admin');
  return { kind: 'staff' as const, userId: String(user._id) };
}

export async function makePartner(ctx: TestContext, fields: Partial<PartnerInput> = {}) {
  return ctx.services.partners.createPartner(
    {
      name: fields.name ?? unique('Partner'),
      type: fields.type ?? 'distributor',
      parentId: fields.parentId ?? null,
      territories: fields.territories ?? [],
      authorisedModels: fields.authorisedModels ?? [],
      authorisedRiskLevels: fields.authorisedRiskLevels ?? [],
      clauses: fields.clauses ?? [],
      maturity: fields.maturity ?? 'established',
      lastReviewAt: fields.lastReviewAt ?? null,
      nextReviewAt: fields.nextReviewAt ?? null,
    },
    await staffActor(ctx),
  );
}

/** `n` new units of `model` (or of a new model of `riskLevel`), allocated to the partner by the vendor. */
export async function allocatedUnits(ctx: TestContext, partnerId: string, n: number, opts: { model?: { _id: string }; riskLevel?: RiskLevel } = {}) {
  const model = opts.model ?? (await makeModel(ctx, { riskLevel: opts.riskLevel ?? 'low' }));
  const units = [];
  for (let i = 0; i < n; i++) units.push(await ctx.services.catalogue.createUnit({ sku: model._id, serial: unique('SN').toUpperCase() }, { userId: null }));
  await ctx.services.partners.allocate(partnerId, units.map((u) => u._id), await staffActor(ctx));
  return { model, units };
}

/** A user of the partner, signed in for pages and with a Bearer token for the API. */
export async function partnerUser(ctx: TestContext, partnerId: string) {
  const email = `${unique('partner')}@example.test`;
  const user = await ctx.services.partners.addPartnerUser(partnerId, { email, password: TEST_PASSWORD, name: 'Partner user' }, await staffActor(ctx));
  const agent = pageAgent(ctx);
  const res = await agent.form('/login', { email, password: TEST_PASSWORD });
  if (res.status !== 303) throw new Error(`partner login failed: ${res.status}`);
  const { token } = await ctx.services.auth.issueSession(user);
  return { user, email, agent, auth: { Authorization: `Bearer ${token}` } };
}

/** A `sell-through` key bound to the partner, as a header. */
export async function partnerKey(ctx: TestContext, partnerId: string) {
  const { key } = await ctx.services.partners.createPartnerKey(partnerId, 'ERP', await staffActor(ctx));
  return { Authorization: `Bearer ${key}` };
}

/** A sale of `unit` in the API's shape. */
export const saleOf = (unit: { modelId: string; serial: string }, fields: Partial<{ customerName: string; customerType: string; country: string; endUse: string; soldAt: string }> = {}) => ({
  sku: unit.modelId,
  serial: unit.serial,
  customerName: fields.customerName ?? 'Mombasa Logistics Ltd',
  customerType: fields.customerType ?? 'commercial-company',
  country: fields.country ?? 'KE',
  endUse: fields.endUse ?? 'warehouse networking',
  soldAt: fields.soldAt ?? '2026-03-01',
});

/** A high-risk sale submitted for review before delivery: a sale without its date. */
export const reviewOf = (unit: { modelId: string; serial: string }, fields: Parameters<typeof saleOf>[1] = {}) => {
  const { soldAt: _soldAt, ...review } = saleOf(unit, fields);
  return review;
};

/**
 * Sends a sell-through report with `key` (a header from `partnerKey`) and waits for its fold
 * (screening, diversion flags, channel records, scorecards), as `sendBatch` does for check-ins.
 */
export async function reportSales(ctx: TestContext, key: Record<string, string>, sales: unknown[]) {
  const res = await request(ctx.app).post('/api/v1/sell-through').set(key).send({ sales });
  await ctx.services.partners.settleSales();
  return res;
}
