import request from 'supertest';
import { generateDataset, checkInCounts, targetCounts, type DatasetSummary } from '../bench/dataset';
import { createRandom } from '../bench/lib/random';
import { buildReport, percentile, toMarkdown, verdictOf, type Figure } from '../bench/lib/results';
import { ProductModel, SerialIndex, Unit } from '../models/catalogue';
import { Case, Counter, OpenCaseKey } from '../models/cases';
import { CheckIn } from '../models/check-ins';
import { Flag } from '../models/flags';
import { CustomerRegistrations, Registration } from '../models/registrations';
import { Report } from '../models/reports';
import { foldRuns, MAX_RUNS } from '../server/services/check-ins';
import { createTestContext, type TestContext } from './helpers/context';
import { unitRunsOf } from './helpers/check-ins';
import { apiUser, makeUser } from './helpers/factories';

const SCALE = 0.002; // 400 units, 4,000 check-ins, 3 cases, 4 reports

describe('benchmark data generator', () => {
  let ctx: TestContext;
  let summary: DatasetSummary;
  const target = targetCounts(SCALE);

  beforeAll(async () => {
    ctx = await createTestContext();
    const investigator = await makeUser(ctx, 'investigator');
    summary = await generateDataset({ scale: SCALE, seed: 42, investigatorIds: [String(investigator.user._id)], batchSize: 150 });
  }, 120_000);
  afterAll(() => ctx.close());

  it('writes the counts the scale asks for, and says so in its summary', async () => {
    const stored = {
      models: await ProductModel.countDocuments(),
      units: await Unit.countDocuments(),
      registrations: await Registration.countDocuments(),
      checkIns: await CheckIn.countDocuments(),
      reports: await Report.countDocuments(),
      cases: await Case.countDocuments(),
      flags: await Flag.countDocuments(),
    };
    expect(stored).toEqual(summary.counts);
    expect(stored).toMatchObject({ models: 20, units: target.units, registrations: target.registrations, checkIns: target.checkIns, reports: target.reports, cases: target.cases });
    expect(await SerialIndex.countDocuments()).toBe(target.units);
  });

  it('keeps every unit summary consistent with the check-in log', async () => {
    const units = await Unit.find({}, { checkIns: 1 }).lean();
    expect(units.reduce((n, u) => n + (u.checkIns?.count ?? 0), 0)).toBe(target.checkIns);

    const heavy = units.find((u) => u._id === summary.heavyUnit.id)!;
    expect(heavy.checkIns!.count).toBe(summary.heavyUnit.checkIns);
    for (const id of [summary.heavyUnit.id, summary.typicalUnit.id, ...units.filter((u) => (u.checkIns?.count ?? 0) > 0).slice(0, 5).map((u) => u._id)]) {
      const unit = units.find((u) => u._id === id)!;
      const log = await CheckIn.find({ unitId: id }).lean();
      const last = log.reduce((a, b) => (b.observedAt > a.observedAt ? b : a));
      expect(unit.checkIns!.count).toBe(log.length);
      expect(unit.checkIns!.lastAt).toEqual(last.observedAt);
      expect(unit.checkIns!.lastCountry).toBe(last.country);
      expect(await unitRunsOf(ctx, id)).toEqual(foldRuns([], log, Infinity).runs);
    }
  });

  it('links registrations, owners and serials the way the services do', async () => {
    const registered = await Unit.find({ status: 'registered' }).lean();
    expect(registered).toHaveLength(target.registrations);
    for (const unit of registered.slice(0, 20)) {
      const registration = await Registration.findById(unit.registrationId).lean();
      expect(registration).toMatchObject({ unitId: unit._id, country: unit.current!.country, status: 'active' });
      expect(unit.registrationIds).toEqual([registration!._id]);
      expect(unit.countries.map((c) => c.source)).toEqual(['first-sale', 'registration']);
      expect((await CustomerRegistrations.findById(String(registration!.customerUserId)).lean())!.registrationIds).toContain(registration!._id);
      expect((await SerialIndex.findById(unit.serial).lean())!.unitIds).toEqual([unit._id]);
    }
    expect(new Set((await Registration.find({}, { country: 1 }).lean()).map((r) => r.country)).size).toBeGreaterThan(20);
  });

  it('opens cases from flags and reports with their keys and a counter past the last case', async () => {
    const cases = await Case.find().lean();
    for (const c of cases) {
      for (const source of c.sources) {
        const found = source.kind === 'report' ? await Report.findById(source.id).lean() : await Flag.findById(source.id).lean();
        expect(found).toMatchObject({ caseId: c._id });
      }
      const key = await OpenCaseKey.findById(`unit:${c.unitIds[0]}|${c.rules[0] ?? 'report'}`).lean();
      if (c.status === 'closed') expect(key?.caseId).not.toBe(c._id);
      else expect(key?.caseId).toBe(c._id);
    }
    expect(await Report.countDocuments({ caseId: null })).toBe(0);
    for (const c of cases) {
      const [, year, n] = /^C-(\d{4})-(\d{6})$/.exec(c._id)!;
      expect((await Counter.findById(`case-${year}`).lean())!.seq).toBeGreaterThanOrEqual(Number(n));
    }
  });

  it('is read by the app: the heavy unit timeline shows its check-in runs', async () => {
    const staff = await apiUser(ctx, 'investigator');
    const res = await request(ctx.app).get(`/api/v1/units/${encodeURIComponent(summary.heavyUnit.id)}/timeline`).set(staff.auth);
    expect(res.status).toBe(200);
    const shown = (res.body.entries as Array<{ kind: string; title: string }>).filter((e) => e.kind === 'check-ins');
    const runs = (await unitRunsOf(ctx, summary.heavyUnit.id)).slice(-MAX_RUNS);
    expect(runs.length).toBeGreaterThan(1);
    expect(shown).toHaveLength(runs.length);
    expect(shown.reduce((n, e) => n + Number(/^(\d+) check-in/.exec(e.title)![1]), 0)).toBe(runs.reduce((n, r) => n + r.count, 0));
  });
});

describe('check-in skew', () => {
  it('splits the exact total, gives unit 0 the heavy count and is the same for a seed', () => {
    const a = checkInCounts(createRandom(5), 10_000, 100_000);
    const b = checkInCounts(createRandom(5), 10_000, 100_000);
    const c = checkInCounts(createRandom(6), 10_000, 100_000);
    expect(a.reduce((n, v) => n + v, 0)).toBe(100_000);
    expect(a[0]).toBe(5_000);
    expect([...a]).toEqual([...b]);
    expect([...a]).not.toEqual([...c]);
    const sorted = [...a.slice(1)].sort((x, y) => x - y);
    // Most units check in rarely, a few very often.
    expect(sorted[Math.floor(sorted.length / 2)]).toBeLessThanOrEqual(10);
    expect(sorted.at(-1)).toBeGreaterThan(500);
  });
});

describe('results table', () => {
  const fig = (value: number | null, target: Figure['target']): Figure => ({ id: 'x', label: 'x', value, unit: 'ms', target });

  it('judges each figure against its target', () => {
    expect(verdictOf(fig(50, { kind: 'max', value: 50 }))).toBe('pass');
    expect(verdictOf(fig(50.1, { kind: 'max', value: 50 }))).toBe('fail');
    expect(verdictOf(fig(49, { kind: 'min', value: 50 }))).toBe('fail');
    expect(verdictOf(fig(51, { kind: 'min', value: 50 }))).toBe('pass');
    expect(verdictOf(fig(null, { kind: 'max', value: 50 }))).toBe('not measured');
    expect(verdictOf(fig(12, null))).toBe('info');
  });

  it('marks failures in the markdown and counts them', () => {
    const report = buildReport(
      { startedAt: '2026-01-01T00:00:00.000Z', durationSeconds: 60, scale: 1, seed: 7, database: 'FerretDB', machine: { cores: 2, cpu: 'cpu', memoryGb: 4, platform: 'Linux', node: 'v20' }, notes: ['a note'] },
      [
        { id: 'a', label: 'Timeline p95', value: 12.345, unit: 'ms', target: { kind: 'max', value: 50 } },
        { id: 'b', label: 'Ingest ratio', value: 31, unit: '%', target: { kind: 'min', value: 50 } },
        { id: 'c', label: 'Dashboard p95', value: null, unit: 'ms', target: { kind: 'max', value: 150 }, note: 'page answered 404' },
      ],
    );
    const md = toMarkdown(report);
    expect(md).toContain('| Timeline p95 | 12.35 ms | ≤ 50 ms | pass |');
    expect(md).toContain('| Ingest ratio | 31 % | ≥ 50 % | **FAIL** |');
    expect(md).toContain('| Dashboard p95 | — | ≤ 150 ms | not measured | page answered 404 |');
    expect(md).toContain('2 cores');
    expect(md).toContain('1 of 3 figures pass or are informational; 1 fail; 1 not measured.');
    expect(report.figures.map((f) => f.verdict)).toEqual(['pass', 'fail', 'not measured']);
  });

  it('takes exact nearest-rank percentiles', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(samples, 50)).toBe(50);
    expect(percentile(samples, 95)).toBe(95);
    expect(percentile([], 95)).toBeNull();
  });
});
