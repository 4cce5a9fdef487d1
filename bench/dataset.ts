import { Types } from 'mongoose';
import { ProductModel, SerialIndex, Unit, UnitCheckInHistory } from '../models/catalogue';
import { Case, Counter, OpenCaseKey, type CaseStatus } from '../models/cases';
import { CheckIn } from '../models/check-ins';
import { Flag } from '../models/flags';
import { CustomerRegistrations, Registration } from '../models/registrations';
import { Report } from '../models/reports';
import { COUNTRY_CODES } from '../server/countries';
import { addMonths, priorityOf, reporterStatusOf, ACKNOWLEDGE_WITHIN_DAYS, FEEDBACK_WITHIN_MONTHS, REVIEW_WITHIN_DAYS } from '../server/services/cases';
import { unitId as unitIdOf } from '../server/services/catalogue';
import { foldRuns } from '../server/services/check-ins';
import { bucketId, periodOf } from '../server/store/check-in-history';
import type { LogEntry } from '../server/store/check-ins';
import { createRandom, zipfCumulative, type Random } from './lib/random';

/**
 * The benchmark's data set, written straight into the models' collections (bulk `insertMany`,
 * unordered) with the per-unit summaries the services would have built on write, so that
 * pages read the same shapes as in production. Deterministic for a seed and scale.
 */

/** Scale 1, from the issue. */
export const BASE_COUNTS = { units: 200_000, registrations: 150_000, checkIns: 2_000_000, reports: 2_000, cases: 1_500 } as const;
export const MODEL_COUNT = 20;
export const COUNTRY_COUNT = 120;
/** The timeline target's heavy unit. */
export const HEAVY_CHECK_INS = 5_000;
/** Synthetic update server that sent the historic check-ins. */
export const HISTORIC_API_KEY_ID = '0000000000000000';

const DAY = 86_400_000;
const START = Date.UTC(2023, 0, 1);
export const DATASET_END = new Date(Date.UTC(2026, 9, 1));
const RESTRICTED = new Set(['BY', 'CU', 'IR', 'KP', 'RU', 'SY']);
const CATEGORIES = ['IP camera', 'Network video recorder', 'Drone', 'Phone forensics kit', 'Network probe'] as const;
const CAPABILITY_SETS = [['surveillance-capable'], ['surveillance-capable', 'encryption'], ['uav', 'dual-use'], ['lawful-intercept', 'export-controlled'], ['dual-use']] as const;
const USES = ['retail security', 'traffic monitoring', 'site safety', 'agriculture', 'infrastructure inspection', 'research'];
const END_USERS = ['commercial-company', 'commercial-company', 'commercial-company', 'individual', 'reseller-distributor', 'ngo-academic', 'government-civil', 'police-security', 'military', 'unknown'] as const;
const FLAG_RULES_SEEN = ['country-mismatch', 'unnotified-transfer', 'restricted-country', 'unregistered-check-in', 'high-risk-end-user'] as const;
const HARMS = ['privacy-surveillance', 'expression-assembly-association', 'life-liberty-security', 'discrimination', 'labour-rights', 'other'] as const;
const STATUS_WEIGHTS: Array<[CaseStatus, number]> = [['new', 20], ['triaged', 15], ['investigating', 20], ['action', 10], ['remediation', 5], ['closed', 30]];

export interface DatasetOptions {
  scale: number;
  seed: number;
  /** Investigators cases may be assigned to (ObjectId strings); may be empty. */
  investigatorIds?: string[];
  batchSize?: number;
  progress?: (line: string) => void;
}

export interface DatasetSummary {
  scale: number;
  seed: number;
  counts: { models: number; units: number; registrations: number; checkIns: number; reports: number; cases: number; flags: number };
  /** The unit with the most check-ins (exactly HEAVY_CHECK_INS from scale 0.01 up). */
  heavyUnit: { id: string; checkIns: number };
  /** A registered unit with about the median number of check-ins. */
  typicalUnit: { id: string; checkIns: number };
  modelIds: string[];
  /** The countries in use, most common first. */
  countries: string[];
  /** Units spread over the catalogue with the country they check in from: what ingest sends. */
  sample: Array<{ modelId: string; serial: string; country: string }>;
  seconds: number;
}

const SAMPLE_SIZE = 2_000;

export function targetCounts(scale: number) {
  const n = (base: number) => Math.max(1, Math.round(base * scale));
  const units = n(BASE_COUNTS.units);
  return {
    units,
    registrations: Math.min(units, n(BASE_COUNTS.registrations)),
    checkIns: n(BASE_COUNTS.checkIns),
    reports: n(BASE_COUNTS.reports),
    cases: Math.min(n(BASE_COUNTS.cases), n(BASE_COUNTS.reports)),
  };
}

/** Unordered bulk inserts, at most two in flight so generating overlaps writing. */
class BatchWriter<T> {
  private buffer: T[] = [];
  private inFlight: Array<Promise<unknown>> = [];
  written = 0;
  constructor(
    private readonly insert: (docs: T[]) => Promise<unknown>,
    private readonly size: number,
  ) {}
  async add(doc: T) {
    this.buffer.push(doc);
    if (this.buffer.length >= this.size) await this.flush();
  }
  async flush() {
    if (this.buffer.length) {
      const docs = this.buffer;
      this.buffer = [];
      this.written += docs.length;
      this.inFlight.push(this.insert(docs));
    }
    while (this.inFlight.length > 1) await this.inFlight.shift();
  }
  async close() {
    await this.flush();
    await Promise.all(this.inFlight);
    this.inFlight = [];
  }
}

const writerFor = <T>(model: { collection: { insertMany(docs: never[], opts: object): Promise<unknown> } }, size: number) =>
  new BatchWriter<T>((docs) => model.collection.insertMany(docs as never[], { ordered: false }), size);

/**
 * Check-ins per unit: skewed (most units rarely, a few thousands of times), scaled to the exact
 * total, with unit 0 the heavy unit.
 */
export function checkInCounts(random: Random, units: number, total: number): Int32Array {
  const heavy = Math.min(HEAVY_CHECK_INS, Math.floor(total / 4));
  const raw = new Float64Array(units);
  let rawSum = 0;
  for (let i = 1; i < units; i++) {
    const r = random.next();
    const v = r < 0.35 ? random.int(0, 2) : r < 0.85 ? random.int(3, 15) : r < 0.995 ? random.int(16, 80) : random.int(300, 3_000);
    raw[i] = v;
    rawSum += v;
  }
  const counts = new Int32Array(units);
  counts[0] = heavy;
  const rest = total - heavy;
  const factor = rawSum > 0 ? rest / rawSum : 0;
  let assigned = heavy;
  for (let i = 1; i < units; i++) {
    counts[i] = Math.floor(raw[i]! * factor);
    assigned += counts[i]!;
  }
  // The rounding remainder (fewer than `units`): one more each for units that check in at all.
  let remainder = total - assigned;
  if (rawSum === 0) counts[0]! += remainder;
  for (let i = 1; remainder > 0 && rawSum > 0; i = i + 1 < units ? i + 1 : 1) {
    if (raw[i]! > 0) {
      counts[i]! += 1;
      remainder--;
    }
  }
  return counts;
}

interface ModelInfo {
  id: string;
  firmwareMajor: number;
  intendedUses: string[];
  riskLevel: 'low' | 'elevated' | 'high';
}

function buildModels(random: Random) {
  const models: ModelInfo[] = [];
  const docs = [];
  for (let m = 0; m < MODEL_COUNT; m++) {
    const category = CATEGORIES[m % CATEGORIES.length]!;
    const sku = `DS-${category.split(' ')[0]!.slice(0, 3).toUpperCase()}-${String(100 + m)}`;
    const riskLevel = (['low', 'elevated', 'high'] as const)[m % 3]!;
    const intendedUses = [random.pick(USES), random.pick(USES)].filter((u, i, a) => a.indexOf(u) === i);
    const createdAt = new Date(START - 400 * DAY + m * DAY);
    models.push({ id: sku, firmwareMajor: 1 + (m % 4), intendedUses, riskLevel });
    docs.push({
      _id: sku,
      sku,
      name: `${category} ${String(100 + m)}`,
      category,
      riskLevel,
      capabilities: [...CAPABILITY_SETS[m % CAPABILITY_SETS.length]!],
      intendedUses,
      endUseTerms: [{ version: 1, text: `End-use terms for ${sku}: not for unlawful surveillance.`, publishedAt: createdAt }],
      publicName: `${category} ${String(100 + m)}`,
      unitCount: 0,
      createdAt,
      updatedAt: createdAt,
    });
  }
  return { models, docs };
}

/** A log entry as ingest stores it, for a known unit, before any batch (the generator writes the log directly). */
type CheckInDoc = Omit<LogEntry, 'unitId' | 'answer' | 'batchId'> & { unitId: string; answer: 'allowed' };

/** A unit's check-ins in time order: mostly from home, short trips abroad, a diverted unit moves for good. */
function unitCheckIns(random: Random, n: number, ids: { unitId: string; modelId: string; serial: string }, model: ModelInfo, from: number, home: string, diverted: string | null, pickCountry: () => string): CheckInDoc[] {
  const out: CheckInDoc[] = [];
  const span = DATASET_END.getTime() - from;
  const moveAt = diverted ? Math.floor(n * (0.3 + random.next() * 0.5)) : -1;
  let base = home;
  let tripLeft = 0;
  let trip = home;
  for (let k = 0; k < n; k++) {
    if (k === moveAt && diverted) base = diverted;
    if (tripLeft === 0 && random.chance(0.003)) {
      tripLeft = random.int(1, 20);
      trip = pickCountry();
    }
    const country = tripLeft > 0 ? trip : base;
    if (tripLeft > 0) tripLeft--;
    const observedAt = new Date(from + Math.floor(((k + random.next()) * span) / n));
    const minor = Math.min(9, Math.floor(((observedAt.getTime() - START) / (DATASET_END.getTime() - START)) * 10));
    out.push({
      _id: `ci_${random.hex(24)}`,
      unitId: ids.unitId,
      modelSku: ids.modelId,
      serial: ids.serial,
      firmware: `${model.firmwareMajor}.${Math.max(0, minor)}.0`,
      observedAt,
      receivedAt: new Date(observedAt.getTime() + random.int(200, 5_000)),
      country,
      apiKeyId: HISTORIC_API_KEY_ID,
      answer: 'allowed',
      flags: [],
    });
  }
  return out;
}

interface CaseSubject {
  unitId: string;
  modelId: string;
  serial: string;
  country: string;
}

export async function generateDataset(opts: DatasetOptions): Promise<DatasetSummary> {
  const started = Date.now();
  const random = createRandom(opts.seed);
  const progress = opts.progress ?? (() => {});
  const batch = opts.batchSize ?? 2_000;
  const target = targetCounts(opts.scale);
  const countries = [...COUNTRY_CODES].filter((c) => !RESTRICTED.has(c)).slice(0, COUNTRY_COUNT);
  const countryWeights = zipfCumulative(countries.length, 0.9);
  const pickCountry = () => countries[random.weighted(countryWeights)]!;
  const modelWeights = zipfCumulative(MODEL_COUNT, 0.6);

  const { models, docs: modelDocs } = buildModels(random);
  const counts = checkInCounts(random, target.units, target.checkIns);
  const unitsPerModel = new Map<string, number>();

  const units = writerFor<Record<string, unknown>>(Unit, batch);
  const serials = writerFor<Record<string, unknown>>(SerialIndex, batch);
  const registrations = writerFor<Record<string, unknown>>(Registration, batch);
  const customers = writerFor<Record<string, unknown>>(CustomerRegistrations, batch);
  const checkIns = writerFor<CheckInDoc>(CheckIn, batch * 2);
  const history = writerFor<Record<string, unknown>>(UnitCheckInHistory, batch);

  const subjects: CaseSubject[] = [];
  const sample: DatasetSummary['sample'] = [];
  const sampleEvery = Math.max(1, Math.floor(target.units / SAMPLE_SIZE));
  let heavyUnit = { id: '', checkIns: 0 };
  let typicalUnit = { id: '', checkIns: 0 };
  let registered = 0;
  let customer = null as { id: string; registrationIds: string[] } | null;
  const tick = Math.max(1, Math.floor(target.units / 10));

  progress(`generating scale ${opts.scale} (seed ${opts.seed}): ${target.units.toLocaleString('en')} units, ${target.checkIns.toLocaleString('en')} check-ins`);
  for (let i = 0; i < target.units; i++) {
    const model = models[random.weighted(modelWeights)]!;
    unitsPerModel.set(model.id, (unitsPerModel.get(model.id) ?? 0) + 1);
    const serial = `S${String(i).padStart(8, '0')}`;
    const id = unitIdOf(model.id, serial);
    const manufacturedAt = new Date(START + random.int(0, 600) * DAY);
    const soldAt = new Date(manufacturedAt.getTime() + random.int(10, 90) * DAY);
    const shipTo = pickCountry();
    const unit: Record<string, unknown> = {
      _id: id,
      modelId: model.id,
      serial,
      manufacturedAt,
      firstSale: { channelPartner: `Partner ${1 + (i % 40)}`, shipToCountry: shipTo, soldAt },
      createdAt: manufacturedAt,
      updatedAt: soldAt,
      status: 'unregistered',
      registrationId: null,
      ownerUserId: null,
      current: { country: null, region: '', owner: '', endUserType: null, since: null },
      countries: [{ country: shipTo, source: 'first-sale', firstSeen: soldAt, lastSeen: soldAt }],
      registrationIds: [],
      transferIds: [],
      checkIns: { count: 0, lastAt: null, lastCountry: null, lastFirmware: null, lastRun: null, periods: [], batchIds: [] },
      controls: { updates: 'allowed', withheldByCaseIds: [], warranty: 'valid' },
    };

    // Exactly `target.registrations` units registered, spread evenly over the catalogue.
    const isRegistered = i === 0 || Math.floor(((i + 1) * target.registrations) / target.units) > Math.floor((i * target.registrations) / target.units);
    let home = shipTo;
    let from = soldAt.getTime() + random.int(1, 30) * DAY;
    if (isRegistered && registered < target.registrations) {
      const regId = `reg_${random.hex(20)}`;
      const c = Math.floor(registered / 3);
      const customerId = `b${c.toString(16).padStart(23, '0')}`;
      if (customer?.id !== customerId) {
        if (customer) await customers.add({ _id: customer.id, registrationIds: customer.registrationIds });
        customer = { id: customerId, registrationIds: [] };
      }
      customer.registrationIds.push(regId);
      registered++;
      home = random.chance(0.85) ? shipTo : pickCountry();
      const createdAt = new Date(soldAt.getTime() + random.int(1, 60) * DAY);
      const endUserType = random.pick(END_USERS);
      const owner = `Owner ${c} Ltd`;
      await registrations.add({
        _id: regId,
        unitId: id,
        modelId: model.id,
        serial,
        customerUserId: new Types.ObjectId(customerId),
        ownerOrganisation: owner,
        contact: { name: `Contact ${c}`, email: `owner${c}@example.org`, phone: '' },
        country: home,
        region: '',
        city: `City ${random.int(1, 50)}`,
        endUserType,
        intendedUse: random.pick(model.intendedUses),
        declaredEndUse: 'Security of our own premises.',
        purchaseDate: soldAt,
        seller: `Partner ${1 + (i % 40)}`,
        termsAccepted: { version: 1, acceptedAt: createdAt },
        proofOfPurchase: null,
        status: 'active',
        warranty: 'valid',
        createdAt,
      });
      Object.assign(unit, {
        status: 'registered',
        registrationId: regId,
        ownerUserId: new Types.ObjectId(customerId),
        current: { country: home, region: '', owner, endUserType, since: createdAt },
        registrationIds: [regId],
      });
      (unit.countries as unknown[]).push({ country: home, source: 'registration', firstSeen: createdAt, lastSeen: createdAt });
      from = Math.max(from, createdAt.getTime());
    }

    const diverted = i > 0 && random.chance(0.02) ? pickCountry() : null;
    const n = counts[i]!;
    if (n > 0) {
      const log = unitCheckIns(random, n, { unitId: id, modelId: model.id, serial }, model, from, home, diverted !== home ? diverted : null, pickCountry);
      for (const doc of log) await checkIns.add(doc);
      const last = log[log.length - 1]!;
      // The history as the summariser keeps it: one bucket per month of the unit's runs.
      const perPeriod = new Map<string, CheckInDoc[]>();
      for (const doc of log) {
        const period = periodOf(doc.observedAt);
        perPeriod.set(period, [...(perPeriod.get(period) ?? []), doc]);
      }
      for (const [period, docs] of perPeriod) await history.add({ _id: bucketId(id, period), unitId: id, period, count: docs.length, runs: foldRuns([], docs, Infinity).runs, batchIds: [] });
      unit.checkIns = { count: n, lastAt: last.observedAt, lastCountry: last.country, lastFirmware: last.firmware, lastRun: foldRuns([], log, Infinity).runs.at(-1), periods: [...perPeriod.keys()].sort(), batchIds: [] };
    }
    if (n > heavyUnit.checkIns) heavyUnit = { id, checkIns: n };
    if (!typicalUnit.id && i > 0 && unit.status === 'registered' && n >= 8 && n <= 12) typicalUnit = { id, checkIns: n };
    if (diverted || random.chance(0.01)) subjects.push({ unitId: id, modelId: model.id, serial, country: diverted ?? home });

    if (i % sampleEvery === 0 && !diverted) sample.push({ modelId: model.id, serial, country: home });
    await units.add(unit);
    await serials.add({ _id: serial, unitIds: [id] });
    if ((i + 1) % tick === 0) progress(`  units ${(i + 1).toLocaleString('en')}/${target.units.toLocaleString('en')} · check-ins ${checkIns.written.toLocaleString('en')} · ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  if (customer) await customers.add({ _id: customer.id, registrationIds: customer.registrationIds });
  await Promise.all([units, serials, registrations, customers, checkIns, history].map((w) => w.close()));
  if (!typicalUnit.id) typicalUnit = { id: heavyUnit.id, checkIns: heavyUnit.checkIns };

  await ProductModel.collection.insertMany(modelDocs.map((d) => ({ ...d, unitCount: unitsPerModel.get(d._id) ?? 0 })) as never[], { ordered: false });
  const cases = await writeCasesAndReports(random, target, subjects.length ? subjects : [{ unitId: heavyUnit.id, modelId: models[0]!.id, serial: 'S00000000', country: countries[0]! }], opts.investigatorIds ?? []);
  progress(`  cases ${cases.cases.toLocaleString('en')} · reports ${cases.reports.toLocaleString('en')} · flags ${cases.flags.toLocaleString('en')}`);

  return {
    scale: opts.scale,
    seed: opts.seed,
    counts: { models: MODEL_COUNT, units: units.written, registrations: registrations.written, checkIns: checkIns.written, ...cases },
    heavyUnit,
    typicalUnit,
    modelIds: models.map((m) => m.id),
    countries,
    sample,
    seconds: (Date.now() - started) / 1000,
  };
}

/** Cases opened by flags and by reports, in opening order per year (ids C-YYYY-NNNNNN). */
async function writeCasesAndReports(random: Random, target: ReturnType<typeof targetCounts>, pool: CaseSubject[], investigatorIds: string[]) {
  const statusCumulative = STATUS_WEIGHTS.reduce<number[]>((acc, [, w]) => [...acc, (acc.at(-1) ?? 0) + w], []);
  const reportCaseCount = Math.max(1, Math.round(target.cases * 0.4));
  const used = new Set<string>();
  const drafts = [];
  for (let c = 0; c < target.cases; c++) {
    const fromReport = c < reportCaseCount;
    const rule = fromReport ? null : random.pick(FLAG_RULES_SEEN);
    let subject = random.pick(pool);
    // One open case per unit and rule (the app's OpenCaseKey): draw another subject when taken.
    for (let tries = 0; used.has(`${subject.unitId}|${rule ?? 'report'}`) && tries < 20; tries++) subject = random.pick(pool);
    const key = `${subject.unitId}|${rule ?? 'report'}`;
    const status = STATUS_WEIGHTS[random.weighted(statusCumulative)]![0];
    const openStatus = used.has(key) ? 'closed' : status;
    if (openStatus !== 'closed') used.add(key);
    drafts.push({ fromReport, rule, subject, status: openStatus, openedAt: new Date(DATASET_END.getTime() - random.int(1, 600) * DAY - random.int(0, DAY)) });
  }
  drafts.sort((a, b) => a.openedAt.getTime() - b.openedAt.getTime());

  const seq = new Map<number, number>();
  const caseDocs: Array<Record<string, unknown> & { _id: string; sources: Array<Record<string, unknown>>; openedAt: Date; status: CaseStatus }> = [];
  const flagDocs = [];
  const keyDocs = [];
  for (const d of drafts) {
    const year = d.openedAt.getUTCFullYear();
    const n = (seq.get(year) ?? 0) + 1;
    seq.set(year, n);
    const id = `C-${year}-${String(n).padStart(6, '0')}`;
    const triaged = d.status !== 'new';
    const severity = { scale: random.int(1, 4), scope: random.int(1, 4), irremediable: random.int(1, 4) };
    const likelihood = random.int(1, 4);
    const prio = priorityOf(severity, likelihood);
    const harmCategories = d.fromReport || triaged ? [random.pick(HARMS)] : [];
    const assignee = triaged && investigatorIds.length ? [new Types.ObjectId(random.pick(investigatorIds))] : [];
    const closedAt = d.status === 'closed' ? new Date(Math.min(DATASET_END.getTime(), d.openedAt.getTime() + random.int(5, 120) * DAY)) : null;
    const sources: Array<Record<string, unknown>> = [];
    if (!d.fromReport) {
      const flagId = `flg_${random.hex(20)}`;
      sources.push({ kind: 'flag', id: flagId, rule: d.rule, at: d.openedAt });
      flagDocs.push({ _id: flagId, rule: d.rule, unitId: d.subject.unitId, modelId: d.subject.modelId, serial: d.subject.serial, country: d.subject.country, evidence: { country: d.subject.country }, source: { kind: 'check-in', id: `ci_${random.hex(24)}` }, caseId: id, raisedAt: d.openedAt });
    }
    if (d.status !== 'closed') keyDocs.push({ _id: `unit:${d.subject.unitId}|${d.rule ?? 'report'}`, caseId: id });
    caseDocs.push({
      _id: id,
      title: d.fromReport ? `Report on ${d.subject.unitId}` : `Red flag ${d.rule} on ${d.subject.unitId}`,
      status: d.status,
      closureReason: closedAt ? random.pick(['substantiated', 'unsubstantiated', 'referred'] as const) : null,
      sources,
      sourceKinds: [d.fromReport ? 'report' : 'flag'],
      rules: d.rule ? [d.rule] : [],
      unitIds: [d.subject.unitId],
      modelIds: [d.subject.modelId],
      countries: [d.subject.country],
      harmCategories,
      triage: triaged && assignee.length ? { severity, likelihood, involvement: 'directly-linked', involvementRationale: 'Our product is used by the end user.', at: d.openedAt, byUserId: assignee[0] } : null,
      priority: triaged && assignee.length ? prio.priority : null,
      priorityLevel: triaged && assignee.length ? prio.level : null,
      assigneeIds: assignee,
      conflictedUserIds: [],
      conflicts: [],
      deadlines: d.fromReport
        ? { acknowledgeBy: new Date(d.openedAt.getTime() + ACKNOWLEDGE_WITHIN_DAYS * DAY), acknowledgedAt: triaged ? new Date(d.openedAt.getTime() + DAY) : null, feedbackBy: addMonths(d.openedAt, FEEDBACK_WITHIN_MONTHS), feedbackGivenAt: null, reviewBy: null }
        : { acknowledgeBy: null, acknowledgedAt: null, feedbackBy: null, feedbackGivenAt: null, reviewBy: new Date(d.openedAt.getTime() + REVIEW_WITHIN_DAYS * DAY) },
      notes: [],
      actions: [],
      remediation: [],
      mergedIntoCaseId: null,
      legalHold: { on: false, reason: '', at: null, byUserId: null },
      retention: { reporterDataDeletedAt: null, deletedReportIds: [] },
      rev: 0,
      openedAt: d.openedAt,
      updatedAt: closedAt ?? d.openedAt,
      closedAt,
      history: [{ at: d.openedAt, byUserId: null, action: 'opened', detail: '' }],
    });
  }

  const reportCases = caseDocs.filter((c) => (c.sourceKinds as string[])[0] === 'report');
  const reportDocs = [];
  for (let r = 0; r < target.reports; r++) {
    const c = reportCases[r % reportCases.length];
    if (!c) break;
    const unitId = (c.unitIds as string[])[0]!;
    const modelId = (c.modelIds as string[])[0]!;
    const country = (c.countries as string[])[0]!;
    const id = `rpt_${random.hex(32)}`;
    const receivedAt = new Date(c.openedAt.getTime() + Math.floor(r / reportCases.length) * random.int(1, 5) * DAY);
    c.sources.push({ kind: 'report', id, rule: null, at: receivedAt });
    reportDocs.push({
      _id: id,
      reporterKind: random.pick(['ngo', 'journalist', 'employee', 'affected-person', 'other'] as const),
      anonymous: random.chance(0.6),
      contact: null,
      product: { serials: [unitId.split(':')[1]], modelText: modelId, deviceDescription: '' },
      where: { country, place: '' },
      when: { from: null, until: null },
      what: { harmCategories: c.harmCategories, description: 'Cameras of this model watch the entrance of a clinic and record every visitor.', affected: '', ongoing: 'unknown' },
      evidence: [],
      links: [
        { kind: 'unit', targetId: unitId, confidence: 'high', reason: 'The serial and model match a catalogued unit.', confirmed: null, confirmedBy: null, confirmedAt: null },
        { kind: 'model', targetId: modelId, confidence: 'medium', reason: 'The model named in the report.', confirmed: null, confirmedBy: null, confirmedAt: null },
        { kind: 'country', targetId: country, confidence: 'low', reason: 'The country of the report.', confirmed: null, confirmedBy: null, confirmedAt: null },
      ],
      caseId: c._id,
      status: reporterStatusOf(c.status) ?? 'received',
      feedback: { text: '', at: null, byUserId: null },
      messages: [],
      messageCount: 0,
      erased: null,
      receivedAt,
      updatedAt: receivedAt,
    });
  }

  const insert = async (model: { collection: { insertMany(d: never[], o: object): Promise<unknown> } }, docs: unknown[]) => {
    for (let i = 0; i < docs.length; i += 1_000) await model.collection.insertMany(docs.slice(i, i + 1_000) as never[], { ordered: false });
  };
  await insert(Case, caseDocs);
  await insert(Report, reportDocs);
  await insert(Flag, flagDocs);
  await insert(OpenCaseKey, keyDocs);
  // New cases opened during the bench must not collide with the generated ids.
  for (const [year, n] of seq) await Counter.updateOne({ _id: `case-${year}` }, { $max: { seq: n } }, { upsert: true });
  return { cases: caseDocs.length, reports: reportDocs.length, flags: flagDocs.length };
}
