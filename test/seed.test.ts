import { AuditEntry } from '../models/audit';
import { Case } from '../models/cases';
import { FLAG_RULES } from '../models/flags';
import { Transfer } from '../models/registrations';
import { seedDemo, DEMO_ACCOUNTS } from '../server/seed';
import { createTestContext, type TestContext } from './helpers/context';

/** The demo seed: through the services, every red flag the code raises, and idempotent. */
describe('demo seed', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    // Configured as a demo portal should be: end-use certificates required for military and police end users, so certificate-missing is raised by the rule, not planted.
    ctx = await createTestContext({ CERTIFICATE_REQUIRED_END_USER_TYPES: 'military,police-security' });
  });
  afterAll(() => ctx.close());

  it('creates a demo portal once, and nothing new on a second run', async () => {
    const lines: string[] = [];
    ctx.clock.set('2026-06-30T12:00:00Z');
    const first = await seedDemo(ctx.services, { units: 60, clock: ctx.clock, log: (l) => lines.push(l) });

    expect(first.accounts.map((a) => [a.role, a.email])).toEqual(DEMO_ACCOUNTS.map((a) => [a.role, a.email]));
    expect(first.accounts.every((a) => typeof a.password === 'string' && a.password.length >= 12)).toBe(true);
    expect(first.counts).toMatchObject({ models: 4, units: 60 + 6, users: 3 }); // + the channel partner's six (seedPartners)
    expect(first.counts.registrations).toBeGreaterThan(30);
    expect(first.counts.checkIns).toBeGreaterThan(500);
    expect(first.counts.reports).toBe(8);
    expect(first.counts.cases).toBeGreaterThan(8);
    // Every rule, the misuse-report one included (seed reports name units).
    expect(FLAG_RULES.filter((r) => !((first.flagsByRule[r] ?? 0) > 0))).toEqual([]);
    expect((await ctx.services.certificates.expiringSoon({ page: 1, perPage: 6, skip: 0, limit: 6 })).items).toHaveLength(1); // the dashboard has one to show
    expect(await Transfer.countDocuments({ status: 'pending' })).toBe(2); // a high-risk resale, and one to a listed party (held by screening)
    expect(lines.some((l) => l.startsWith('check-ins: round 16/16'))).toBe(true);
    expect(ctx.clock.now().toISOString()).toBe('2026-06-30T12:00:00.000Z'); // the seed's walk through time ends where it began

    const audited = await AuditEntry.countDocuments({});
    const statuses = await Case.aggregate([{ $group: { _id: '$status', n: { $sum: 1 } } }]);
    expect(statuses.find((g) => g._id === 'closed')?.n).toBeGreaterThan(0);

    const second = await seedDemo(ctx.services, { units: 60, clock: ctx.clock, log: () => {} });
    expect(second.counts).toEqual(first.counts);
    expect(second.flagsByRule).toEqual(first.flagsByRule);
    expect(second.accounts.every((a) => a.password === null)).toBe(true);
    expect(await AuditEntry.countDocuments({})).toBe(audited);
    expect(await Case.aggregate([{ $group: { _id: '$status', n: { $sum: 1 } } }])).toEqual(expect.arrayContaining(statuses));
  }, 300_000);
});
