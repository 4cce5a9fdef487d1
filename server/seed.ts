import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import { PDFDocument } from 'pdf-lib';
import type { Clock } from './clock';
import { NotFoundError } from './errors';
import { ApiKey, User, type Role } from '../models/auth';
import { Case, type HarmCategory, type LeverageActionKind } from '../models/cases';
import { Flag } from '../models/flags';
import { CheckIn } from '../models/check-ins';
import { ProductModel, Unit, type RiskLevel } from '../models/catalogue';
import { Registration, Transfer, type EndUserType } from '../models/registrations';
import { Partner } from '../models/partners';
import { Report } from '../models/reports';
import type { Services } from './services';
import type { CheckInItem } from './services/check-ins';

/**
 * The demo data set (`npm run seed`): a catalogue of four models of different risk, a few
 * thousand units, one account per role, registrations across many countries, transfers
 * (one pending on a high-risk model), weeks of firmware check-ins and misuse reports, a channel
 * partner, a made-up screening list, an end-use certificate and a verification visit, all made
 * through the services so that summaries, flags and cases are the real ones. Some data is
 * planted to raise every red-flag rule the code raises (`certificate-missing` only when the
 * portal requires certificates: CERTIFICATE_REQUIRED_*).
 *
 * Idempotent: everything is keyed (fixed e-mails and SKUs, serial numbers by index, check-in
 * event ids, report texts) and skipped when already there, so a second run creates nothing.
 * The seed moves its own settable clock through the last six months, ending at the time it
 * started, so that dates, deadlines and response times look like a portal in use.
 */

export interface SeedClock extends Clock {
  set(at: Date | string): void;
  advance(ms: number): void;
}

export interface SeedOptions {
  /** Units in the catalogue (default 2,000). */
  units?: number;
  clock: SeedClock;
  log?: (line: string) => void;
}

export const DEMO_ACCOUNTS: ReadonlyArray<{ role: Role; email: string; name: string }> = [
  { role: 'admin', email: 'admin@demo.downstream.test', name: 'Ada Admin' },
  { role: 'investigator', email: 'investigator@demo.downstream.test', name: 'Ines Investigator' },
  { role: 'customer', email: 'customer@demo.downstream.test', name: 'Kofi Customer' },
];

const TERMS = (what: string) =>
  `You may use this ${what} only for the intended uses listed for it, in line with applicable law and human rights. ` +
  'You must not use it to surveil, identify or track journalists, human rights defenders, protesters or any person without lawful authority, ' +
  'and you must tell us before reselling or moving it to another country.';

const MODELS: ReadonlyArray<{ sku: string; name: string; category: string; riskLevel: RiskLevel; capabilities: string[]; intendedUses: string[]; share: number }> = [
  { sku: 'DS-CAM-200', name: 'Sentinel 200 IP camera', category: 'video surveillance', riskLevel: 'high', capabilities: ['surveillance-capable', 'dual-use'], intendedUses: ['site security', 'retail loss prevention', 'traffic monitoring'], share: 0.3 },
  { sku: 'DS-LI-900', name: 'Carrier lawful-intercept gateway', category: 'telecom', riskLevel: 'high', capabilities: ['lawful-intercept', 'export-controlled', 'dual-use'], intendedUses: ['lawful interception under judicial warrant', 'network troubleshooting'], share: 0.1 },
  { sku: 'DS-UAV-40', name: 'Surveyor 40 drone', category: 'drones', riskLevel: 'elevated', capabilities: ['uav', 'dual-use'], intendedUses: ['agricultural survey', 'infrastructure inspection', 'mapping'], share: 0.2 },
  { sku: 'DS-RTR-10', name: 'Office router 10', category: 'networking', riskLevel: 'low', capabilities: ['encryption'], intendedUses: ['office networking', 'home networking'], share: 0.4 },
];

/** Registration countries, weighted by repetition; neighbours are where diverted units turn up. */
const COUNTRIES = 'KE KE KE NG NG ZA ZA GH EG MA TZ UG ET SN BR BR MX CO AR CL PE IN IN ID PH VN TH MY PK BD DE FR GB ES IT PL TR SA AE US CA AU JP KR'.split(' ');
const NEIGHBOUR: Record<string, string> = { KE: 'SO', NG: 'NE', ZA: 'ZW', GH: 'TG', EG: 'SD', MA: 'DZ', TZ: 'BI', UG: 'SS', ET: 'ER', SN: 'ML', BR: 'VE', MX: 'GT', CO: 'VE', AR: 'PY', CL: 'BO', PE: 'BO', IN: 'MM', ID: 'TL', PH: 'MM', VN: 'LA', TH: 'MM', MY: 'MM', PK: 'AF', BD: 'MM', DE: 'RS', FR: 'LY', GB: 'IE', ES: 'DZ', IT: 'LY', PL: 'UA', TR: 'IQ', SA: 'YE', AE: 'YE', US: 'NI', CA: 'CN', AU: 'PG', JP: 'CN', KR: 'CN' };
const PARTNERS = ['Savannah Distribution', 'Atlas Trade GmbH', 'Pacific Rim Supply', 'Andes Tecnología', 'Gulf Systems FZE', 'Nordic Channel AB'];
const ORGS = ['Acme Retail', 'City Transport Authority', 'Green Farms Co-op', 'Metro Hospital', 'Harbour Logistics', 'National Grid Services', 'University Campus IT', 'Sunrise Hotels'];
const RESTRICTED = 'RU';
const CHECK_IN_ROUNDS = 16;
const INGEST_BATCH = 50;
const DAY = 86_400_000;

interface PlannedUnit {
  index: number;
  sku: string;
  serial: string;
  unitId: string;
  riskLevel: RiskLevel;
  intendedUses: string[];
  country: string;
  registered: boolean;
}

/** Which units of the catalogue get which story: a pure function of the unit's index. */
function planUnits(total: number): PlannedUnit[] {
  const plan: PlannedUnit[] = [];
  let index = 0;
  for (const m of MODELS) {
    const n = Math.max(4, Math.round(total * m.share));
    for (let k = 0; k < n; k++, index++) {
      const serial = `SN${String(k + 1).padStart(6, '0')}`;
      plan.push({ index, sku: m.sku, serial, unitId: `${m.sku}:${serial}`, riskLevel: m.riskLevel, intendedUses: m.intendedUses, country: COUNTRIES[(index * 7 + k) % COUNTRIES.length]!, registered: k % 10 < 7 });
    }
  }
  return plan;
}

/** A registration's end user and declared use: mostly ordinary, some planted red flags. */
function registrationStory(u: PlannedUnit, k: number): { endUserType: EndUserType; intendedUse: string; declaredEndUse: string; country: string } {
  const ORDINARY_USERS: EndUserType[] = ['commercial-company', 'commercial-company', 'government-civil', 'ngo-academic', 'individual'];
  const ordinary = { endUserType: ORDINARY_USERS[k % ORDINARY_USERS.length]!, intendedUse: u.intendedUses[k % u.intendedUses.length]!, declaredEndUse: 'As described in our purchase order.', country: u.country };
  if (u.riskLevel === 'high' && k % 23 === 0) return { ...ordinary, endUserType: k % 2 ? 'police-security' : 'military' };
  if (k % 29 === 3) return { ...ordinary, intendedUse: 'other', declaredEndUse: 'Monitoring attendance at public gatherings.' };
  if (k % 61 === 5) return { ...ordinary, country: RESTRICTED };
  return ordinary;
}

const REPORTS: ReadonlyArray<{ key: string; unitIndex?: number; modelText?: string; country: string; harm: HarmCategory[]; kind: 'ngo' | 'journalist' | 'employee' | 'affected-person' | 'other'; description: string }> = [
  { key: 'r1', unitIndex: 0, country: 'KE', harm: ['privacy-surveillance', 'expression-assembly-association'], kind: 'ngo', description: 'Cameras of this model were installed facing the entrance of a journalists union office and record everyone who enters.' },
  { key: 'r2', modelText: 'DS-LI-900', country: 'EG', harm: ['privacy-surveillance'], kind: 'employee', description: 'An intercept gateway is used to read the messages of activists without any warrant, according to a network engineer.' },
  { key: 'r3', modelText: 'Surveyor 40 drone', country: 'SD', harm: ['life-liberty-security'], kind: 'journalist', description: 'Drones matching this model were seen guiding armed men towards a village market.' },
  { key: 'r4', unitIndex: 5, country: 'NG', harm: ['discrimination'], kind: 'affected-person', description: 'The camera system at a shop is used to refuse entry to people from one ethnic group.' },
  { key: 'r5', modelText: 'Sentinel 200', country: 'IR', harm: ['expression-assembly-association'], kind: 'other', description: 'Sentinel cameras appear in photos of a police control room watching a protest square.' },
  { key: 'r6', modelText: 'Office router 10', country: 'BR', harm: ['consumer-safety'], kind: 'affected-person', description: 'A router of this model overheated and started a small fire in a classroom.' },
  { key: 'r7', unitIndex: 9, country: 'ZA', harm: ['labour-rights', 'privacy-surveillance'], kind: 'employee', description: 'Warehouse workers are filmed in the toilets by cameras of this model to punish breaks.' },
  { key: 'r8', modelText: 'DS-UAV-40', country: 'ET', harm: ['environment-health'], kind: 'ngo', description: 'Drones spray an unidentified chemical over fields next to a school.' },
];

export interface SeedSummary {
  accounts: Array<{ role: Role; email: string; password: string | null }>;
  counts: Record<'models' | 'units' | 'registrations' | 'transfers' | 'checkIns' | 'flags' | 'reports' | 'cases' | 'users', number>;
  flagsByRule: Record<string, number>;
}

export async function seedDemo(services: Services, options: SeedOptions): Promise<SeedSummary> {
  const { clock } = options;
  const log = options.log ?? (() => {});
  const end = clock.now();
  const start = new Date(end.getTime() - 180 * DAY);
  const at = (day: number) => clock.set(new Date(Math.min(end.getTime(), start.getTime() + day * DAY)));
  const plan = planUnits(options.units ?? 2000);

  // ----- accounts -----
  at(0);
  const accounts: SeedSummary['accounts'] = [];
  const ids: Partial<Record<Role, string>> = {};
  for (const a of DEMO_ACCOUNTS) {
    const existing = await User.findOne({ email: a.email }, { _id: 1 }).lean();
    if (existing) {
      ids[a.role] = String(existing._id);
      accounts.push({ role: a.role, email: a.email, password: null });
      continue;
    }
    const password = crypto.randomBytes(12).toString('base64url');
    const user = await services.auth.createUser({ email: a.email, password, name: a.name, organisation: a.role === 'customer' ? 'Acme Retail' : 'Downstream demo' }, a.role);
    ids[a.role] = String(user._id);
    accounts.push({ role: a.role, email: a.email, password });
  }
  const adminActor = { id: ids.admin!, role: 'admin' as const };
  log(`accounts: ${accounts.map((a) => `${a.role} ${a.password ? 'created' : 'exists'}`).join(', ')}`);

  // ----- catalogue -----
  for (const m of MODELS) {
    const exists = await services.catalogue.getModel(m.sku).then(() => true, (err: unknown) => (err instanceof NotFoundError ? false : Promise.reject(err)));
    if (!exists) await services.catalogue.createModel({ sku: m.sku, name: m.name, category: m.category, riskLevel: m.riskLevel, capabilities: m.capabilities, intendedUses: m.intendedUses, endUseTerms: TERMS(m.name) }, { userId: ids.admin! });
  }
  const missing: PlannedUnit[] = [];
  for (const m of MODELS) {
    const planned = plan.filter((u) => u.sku === m.sku);
    const model = await services.catalogue.getModel(m.sku);
    if (model.unitCount < planned.length) missing.push(...planned);
  }
  if (missing.length) {
    log(`units: importing ${missing.length} (existing serials are skipped)…`);
    const csv = Readable.from(
      (function* () {
        yield 'sku,serial,manufactured_at,channel_partner,ship_to_country,sold_at\n';
        for (const u of missing) {
          const made = new Date(start.getTime() - (60 + (u.index % 90)) * DAY).toISOString().slice(0, 10);
          const sold = new Date(start.getTime() - (u.index % 30) * DAY).toISOString().slice(0, 10);
          yield `${u.sku},${u.serial},${made},${PARTNERS[u.index % PARTNERS.length]},${u.country},${sold}\n`;
        }
      })(),
    );
    const { job, done } = await services.catalogue.startImport(csv, 'demo-seed.csv', { userId: ids.admin! });
    await done;
    const finished = await services.catalogue.getImport(job._id);
    const c = finished.counts;
    log(`units: ${c?.imported ?? 0} imported, ${c?.skipped ?? 0} already there, ${c?.rejected ?? 0} refused`);
  } else log(`units: all ${plan.length} already there`);

  // ----- registrations (days 10–70) -----
  const toRegister = plan.filter((u) => u.registered);
  let registered = 0;
  for (const [k, u] of toRegister.entries()) {
    const unit = await Unit.findById(u.unitId, { registrationId: 1, transferIds: 1 }).lean();
    if (!unit || unit.registrationId || unit.transferIds?.length) continue;
    at(10 + (60 * k) / toRegister.length);
    const story = registrationStory(u, k);
    const model = await services.catalogue.getModel(u.sku);
    await services.registrations.register(
      {
        modelSku: u.sku,
        serial: u.serial,
        ownerOrganisation: ORGS[k % ORGS.length]!,
        contactName: 'Kofi Customer',
        contactEmail: DEMO_ACCOUNTS[2]!.email,
        country: story.country,
        city: '',
        region: '',
        endUserType: story.endUserType,
        intendedUse: story.intendedUse,
        declaredEndUse: story.declaredEndUse,
        purchaseDate: new Date(clock.now().getTime() - 7 * DAY),
        seller: PARTNERS[u.index % PARTNERS.length],
        termsVersion: model.endUseTerms.at(-1)!.version,
        acceptTerms: true,
      },
      { userId: ids.customer! },
    );
    if (++registered % 250 === 0) log(`registrations: ${registered}…`);
  }
  log(`registrations: ${registered} new`);

  // ----- transfers (day 75): relocations take effect, a high-risk resale waits for approval -----
  at(75);
  const regUnits = toRegister.filter((u, k) => registrationStory(u, k).country !== RESTRICTED);
  const relocations = regUnits.filter((u) => u.riskLevel !== 'high').filter((_, k) => k % 40 === 3);
  const pending = regUnits.find((u) => u.riskLevel === 'high' && u.sku === 'DS-CAM-200' && u.index % 7 === 2);
  let transfers = 0;
  for (const u of [...relocations, ...(pending ? [pending] : [])]) {
    const unit = await Unit.findById(u.unitId, { transferIds: 1, status: 1 }).lean();
    if (!unit || unit.transferIds?.length || unit.status !== 'registered') continue;
    const resale = u === pending;
    await services.registrations.requestTransfer(
      u.unitId,
      resale
        ? { kind: 'resale', newOwner: { organisation: 'Northern Security Services', endUserType: 'police-security' }, country: NEIGHBOUR[u.country] ?? 'AE', reason: 'Sold on to a security contractor.', effectiveDate: clock.now() }
        : { kind: 'relocation', country: COUNTRIES[(u.index + 3) % COUNTRIES.length]!, reason: 'Moved to our new branch office.', effectiveDate: clock.now() },
      ids.customer!,
    );
    transfers++;
  }
  log(`transfers: ${transfers} new${pending ? ` (pending approval: ${pending.unitId})` : ''}`);

  // ----- check-ins (weekly rounds, days 90–180) -----
  const keyName = 'Demo update server';
  const apiKey = (await ApiKey.findOne({ name: keyName }, { _id: 1 }).lean()) ?? (await services.auth.createApiKey({ name: keyName, scopes: ['check-ins'] }, ids.admin!)).apiKey;
  const apiKeyId = String(apiKey._id);
  const reporting = await Promise.all(plan.map((u) => Unit.findById(u.unitId, { current: 1, status: 1 }).lean()));
  const firmware = (round: number) => `2.${Math.floor(round / 4)}`;
  let stored = 0;
  for (let round = 0; round < CHECK_IN_ROUNDS; round++) {
    const observedAt = new Date(start.getTime() + (90 + round * 5.6) * DAY);
    const items: CheckInItem[] = [];
    plan.forEach((u, i) => {
      const unit = reporting[i];
      if (!unit) return;
      const home = unit.current?.country ?? null;
      let country: string | null = home;
      if (!home) country = i % 9 === 7 && round >= 10 ? u.country : null; // unregistered units checking in
      else if (i % 53 === 1 && round >= 12) country = NEIGHBOUR[home] ?? 'AE'; // diverted: settles abroad
      else if (i % 211 === 2 && round === 14) country = 'IR'; // a visit to a restricted country
      if (country) items.push({ serial: u.serial, model: u.sku, firmware: firmware(round), observedAt, country, eventId: `seed:${u.unitId}:${round}` });
    });
    if (round >= 13) for (const s of ['DS9X0001', 'DS9X0002']) items.push({ serial: s, model: 'DS-CAM-200', firmware: '1.9', observedAt, country: 'MM', eventId: `seed:unknown:${s}:${round}` });
    at(90 + round * 5.6 + 0.5);
    for (let b = 0; b < items.length; b += INGEST_BATCH) {
      const answers = await services.checkIns.ingest(apiKeyId, items.slice(b, b + INGEST_BATCH));
      stored += answers.filter((a) => !a.duplicate).length;
    }
    // Summaries and red flags follow ingest in the background: fold them while the demo clock is on this round.
    await services.checkIns.settled();
    log(`check-ins: round ${round + 1}/${CHECK_IN_ROUNDS}, ${items.length} sent`);
  }
  log(`check-ins: ${stored} new`);

  // ----- misuse reports (days 100–170) -----
  let filed = 0;
  // Descriptions are encrypted at rest (each report under its own key): the ones already filed
  // are read through the service. A demo database holds a handful of reports.
  const reportIds = (await Report.find({}, { _id: 1 }).lean()).map((d) => String(d._id));
  const filedBefore = new Set(await Promise.all(reportIds.map(async (id) => (await services.reports.getReportForStaff(id)).what?.description ?? '')));
  for (const [k, r] of REPORTS.entries()) {
    if (filedBefore.has(r.description)) continue;
    at(100 + k * 9);
    const { token } = services.reports.newChallenge();
    clock.advance(60_000); // a person takes a while to fill the form
    const unit = r.unitIndex !== undefined ? plan[r.unitIndex] : undefined;
    await services.reports.submit(
      { reporterKind: r.kind, serials: unit ? [unit.serial] : [], modelText: unit ? unit.sku : (r.modelText ?? ''), country: r.country, harmCategories: r.harm, description: r.description, ongoing: 'yes' },
      { files: [], problems: [] },
      { challenge: token, client: `seed-${r.key}` },
    );
    filed++;
  }
  log(`reports: ${filed} new`);

  // Before the cases are worked, so their flag cases are worked on the first run like the others.
  await seedPartners(services, { at, start, adminId: ids.admin!, apiKeyId, log });
  const [resold, ...gateways] = [regUnits.find((u) => u.sku === 'DS-CAM-200' && u !== pending), ...regUnits.filter((u) => u.sku === 'DS-LI-900').slice(0, 2)];
  if (!resold || gateways.length < 2) throw new Error('seed: too few registered cameras and gateways for the due-diligence checks');
  await seedDueDiligence(services, { at, start, ids: { investigator: ids.investigator!, customer: ids.customer! }, units: { resold, gateways: gateways as [PlannedUnit, PlannedUnit] }, log });
  await workCases(services, clock, end, adminActor, log);

  clock.set(end);
  const [models, units, registrations, transferCount, checkIns, flags, reports, cases, users, byRule] = await Promise.all([
    ProductModel.countDocuments({ _id: { $in: MODELS.map((m) => m.sku) } }),
    Unit.countDocuments({}),
    Registration.countDocuments({}),
    Transfer.countDocuments({}),
    CheckIn.countDocuments({}),
    Flag.countDocuments({}),
    Report.countDocuments({}),
    Case.countDocuments({}),
    User.countDocuments({}),
    Flag.aggregate<{ _id: string; n: number }>([{ $group: { _id: '$rule', n: { $sum: 1 } } }]),
  ]);
  return {
    accounts,
    counts: { models, units, registrations, transfers: transferCount, checkIns, flags, reports, cases, users },
    flagsByRule: Object.fromEntries(byRule.map((r) => [r._id, r.n])),
  };
}

/**
 * Moves some cases along as investigators would, so response times and outcomes mean
 * something. Which cases, and how far, depends only on the case number: a second run finds
 * them past `new` and leaves them.
 */
async function workCases(services: Services, clock: SeedClock, end: Date, actor: { id: string; role: 'admin' }, log: (line: string) => void) {
  const fresh = await Case.find({ status: 'new' }, { _id: 1, openedAt: 1, sourceKinds: 1, unitIds: 1 }).sort({ _id: 1 }).lean();
  let worked = 0;
  for (const c of fresh) {
    const n = Number(c._id.slice(-6));
    if (n % 3 === 0) continue; // left for the demo investigator
    const when = (days: number) => clock.set(new Date(Math.min(end.getTime() - 60_000, c.openedAt.getTime() + days * DAY)));
    const fromReport = c.sourceKinds.includes('report');
    if (fromReport) {
      when(1 + (n % 5));
      await services.cases.acknowledge(c._id, actor);
    }
    when(3 + (n % 6));
    await services.cases.triage(c._id, { harmCategories: fromReport ? ['privacy-surveillance'] : ['other'], scale: 2 + (n % 3), scope: 1 + (n % 3), irremediable: 1 + (n % 4), likelihood: 1 + (n % 4), involvement: 'directly-linked', involvementRationale: 'Harm by a third party using our product.' }, actor);
    when(5 + (n % 7));
    await services.cases.transition(c._id, { to: 'investigating', reason: 'Collecting the unit history and asking the customer.' }, actor);
    if (n % 2 === 0) {
      const kind: LeverageActionKind = c.unitIds.length && n % 4 === 0 ? 'withhold-updates' : 'request-information';
      when(8 + (n % 10));
      await services.cases.addAction(c._id, { kind, customer: 'Registered owner', unitIds: kind === 'withhold-updates' ? c.unitIds.slice(0, 1) : [], description: 'Asked for the end user and location.' }, actor);
    }
    if (n % 5 === 1) {
      when(20 + (n % 25));
      // Open actions stay in force on purpose: the demo shows closed cases still withholding.
      const kept = Object.fromEntries((await services.cases.getCase(c._id)).actions.filter((a) => a.status === 'open').map((a) => [a._id, 'keep' as const]));
      await services.cases.transition(c._id, { to: 'closed', reason: 'Checked with the customer and the channel partner.', closureReason: n % 2 ? 'unsubstantiated' : 'substantiated', openActions: kept }, actor);
    }
    worked++;
  }
  log(`cases: ${worked} moved along by the demo investigator`);
}

/** A distributor whose sales and units show each of the channel's diversion rules once. */
async function seedPartners(services: Services, o: { at: (day: number) => void; start: Date; adminId: string; apiKeyId: string; log: (line: string) => void }) {
  if (await Partner.exists({ name: 'Rift Valley Distribution' })) return o.log('partners: already there');
  const day = (d: number) => new Date(o.start.getTime() + d * DAY);
  o.at(10);
  const staff = { kind: 'staff' as const, userId: o.adminId };
  const partner = await services.partners.createPartner(
    { name: 'Rift Valley Distribution', type: 'distributor', parentId: null, territories: ['KE', 'TZ'], authorisedModels: [], authorisedRiskLevels: ['low', 'elevated'], clauses: [{ kind: 'no-re-export', since: day(0), until: null }], maturity: 'basic', lastReviewAt: null, nextReviewAt: null },
    staff,
  );
  const model = async (sku: string, riskLevel: 'elevated' | 'high') =>
    services.catalogue.createModel({ sku, name: `Channel demo ${riskLevel}`, category: 'video analytics', riskLevel, capabilities: [], intendedUses: ['site security'], endUseTerms: 'No use against people exercising their rights.' }, { userId: o.adminId });
  const [elevated, high] = [await model('DS-PTN-10', 'elevated'), await model('DS-PTN-20', 'high')];
  const units = [];
  for (const [i, m] of [elevated, elevated, elevated, elevated, high, elevated].entries()) units.push(await services.catalogue.createUnit({ sku: m._id, serial: `PTN-000${i + 1}` }, { userId: o.adminId }));
  await services.partners.allocate(partner._id, units.slice(0, 5).map((u) => u._id), staff);
  const actor = { kind: 'partner' as const, partnerId: partner._id, userId: null, apiKeyId: null };
  const sale = (u: { modelId: string; serial: string }, customerName: string, country: string) => ({ sku: u.modelId, serial: u.serial, customerName, customerType: 'commercial-company' as const, country, endUse: 'site security', soldAt: day(10) });
  const [abroad, twice, movedAway, unreported, highRisk, unallocated] = units as [(typeof units)[0], (typeof units)[0], (typeof units)[0], (typeof units)[0], (typeof units)[0], (typeof units)[0]];
  await services.partners.reportSales(actor, [sale(abroad, 'Kampala Traders', 'UG'), sale(twice, 'Arusha Lodge', 'TZ'), sale(movedAway, 'Nakuru Clinic', 'KE'), sale(highRisk, 'Eldoret Mills', 'KE'), sale(unallocated, 'Kisumu Port', 'KE')]);
  await services.partners.reportSales(actor, [sale(twice, 'Moshi Hotel', 'TZ')]);
  // The diversion flags and the units' sales follow in the sell-through fold: the seed runs no job runner.
  await services.partners.settleSales();
  o.at(20.5);
  await services.checkIns.ingest(o.apiKeyId, [movedAway, unreported].map((u, i) => ({ serial: u.serial, model: u.modelId, firmware: '1.0', observedAt: day(20), country: i ? 'ET' : 'UG', eventId: `seed:partners:${u._id}` })));
  await services.checkIns.settled();
  o.at(120);
  const swept = await services.partners.sweepDiversion();
  o.log(`partners: 1 distributor, ${units.length} units, ${swept.raised} flags after the grace periods`);
}

/**
 * The demo screening list: parties we made up (no real person or company), in the
 * FollowTheMoney JSON-lines format the screening import reads.
 */
const DEMO_SCREENING_LIST = {
  listId: 'demo-restricted-parties',
  name: 'Demo restricted parties',
  source: 'Made up for the demo: no real person or company',
  entities: [
    { id: 'demo-c-001', schema: 'Company', properties: { name: ['Obsidian Signals Trading LLC'], alias: ['Obsidian Signals'], country: ['ae'], program: ['Demo export-control list'] } },
    { id: 'demo-p-001', schema: 'Person', properties: { name: ['Marek Voronin'], nationality: ['by'], birthDate: ['1971-04-12'], program: ['Demo sanctions list'] } },
    { id: 'demo-c-002', schema: 'Company', properties: { name: ['Blue Lantern Surveillance Solutions'], country: ['mm'], program: ['Demo export-control list'] } },
  ],
};

/** A one-page PDF standing in for a scanned certificate. */
async function certificatePdf(number: string): Promise<Buffer> {
  const doc = await PDFDocument.create();
  doc.setTitle(`End-use certificate ${number}`);
  doc.addPage([420, 300]).drawText(`End-use certificate ${number} (demo)`, { x: 40, y: 240, size: 14 });
  return Buffer.from(await doc.save());
}

/**
 * The export-control checks, each red flag once: a registration by a listed party (held, the
 * hit confirmed by the investigator), a certificate attached to more units than it covers and
 * that expires before the demo ends, and a verification visit that does not find a unit.
 * `certificate-missing` comes from the portal's own requirement (CERTIFICATE_REQUIRED_*):
 * the planted military and police end users raise it when the demo is configured to require
 * certificates for them, and nothing is faked when it is not.
 */
async function seedDueDiligence(services: Services, o: { at: (day: number) => void; start: Date; ids: Record<'investigator' | 'customer', string>; units: { resold: PlannedUnit; gateways: [PlannedUnit, PlannedUnit] }; log: (line: string) => void }) {
  const investigatorId = o.ids.investigator;
  const day = (d: number) => new Date(o.start.getTime() + d * DAY);
  const { requiredRiskLevels, requiredEndUserTypes } = services.certificates.requirement;
  if (!requiredRiskLevels.length && !requiredEndUserTypes.length) o.log('certificates: none required by this configuration (CERTIFICATE_REQUIRED_RISK_LEVELS, CERTIFICATE_REQUIRED_END_USER_TYPES), so no certificate-missing flags');
  if ((await services.screening.lists()).some((l) => l._id === DEMO_SCREENING_LIST.listId)) return o.log('due diligence: already there');
  o.at(78);
  const { listId, name, source } = DEMO_SCREENING_LIST;
  await services.screening.importList({ listId, name, source, versionDate: day(70), text: DEMO_SCREENING_LIST.entities.map((e) => JSON.stringify(e)).join('\n') }, investigatorId);

  const registrationOf = async (u: PlannedUnit) => {
    const unit = await Unit.findById(u.unitId, { registrationId: 1 }).lean();
    const registration = unit?.registrationId ? await Registration.findById(unit.registrationId, { ownerOrganisation: 1, country: 1 }).lean() : null;
    if (!registration) throw new Error(`seed: ${u.unitId} should be registered by now`);
    return { unitId: u.unitId, registrationId: registration._id, owner: registration.ownerOrganisation, country: registration.country };
  };

  // A camera's owner reports its resale to a listed company: held; the investigator confirms the new owner's hit.
  o.at(80);
  const { transfer } = await services.registrations.requestTransfer(o.units.resold.unitId, { kind: 'resale', newOwner: { organisation: 'Obsidian Signals Trading', contactName: 'Marek Voronin', endUserType: 'commercial-company' }, country: 'AE', reason: 'Sold with the rest of our branch equipment.', effectiveDate: day(80) }, o.ids.customer);
  o.at(82);
  const ownerHit = (await services.screening.hitsOf('transfer', transfer._id)).find((h) => h.subject.role === 'new-owner');
  if (!ownerHit) throw new Error('seed: the demo screening list did not hold the resale to the listed company');
  await services.screeningReview.decide(ownerHit._id, 'true-match', 'Same trade licence number as the listed company on the bill of sale.', investigatorId);

  // Two registered gateways, one certificate covering one unit, valid until day 150.
  o.at(86);
  const [first, second] = [await registrationOf(o.units.gateways[0]), await registrationOf(o.units.gateways[1])];
  const number = `${first.country}-EUC-0042`;
  const { certificate } = await services.certificates.upload(
    { issuingAuthority: `Export licensing authority (${first.country})`, number, endUser: first.owner, statedEndUse: 'Lawful interception under judicial warrant', validFrom: day(75), validUntil: day(150), items: [{ modelId: 'DS-LI-900', quantity: 1 }] },
    { buffer: await certificatePdf(number), originalname: `${number}.pdf` },
    { kind: 'registration', id: first.registrationId },
    investigatorId,
  );
  await services.certificates.attach(certificate._id, { kind: 'registration', id: second.registrationId }, investigatorId);

  // A visit to the first gateway's site finds it, and not the second one said to be there too.
  o.at(140);
  const visit = await services.verification.plan({ plannedFor: day(145), inspector: 'Ines Investigator', site: `${first.owner}, main site (${first.country})`, unitIds: [first.unitId, second.unitId], checklist: ['serial numbers', 'location', 'end use'] }, investigatorId);
  o.at(145);
  await services.verification.recordOutcome(
    visit._id,
    {
      units: [
        { unitId: first.unitId, finding: 'seen', serialConfirmed: true, note: 'Racked in the equipment room, serial on the label.' },
        { unitId: second.unitId, finding: 'not-found', serialConfirmed: false, note: 'Not on site; staff said it was lent to another operator.' },
      ],
      locationConfirmed: false,
      endUseConsistent: true,
      findings: 'One of the two gateways is missing from the site.',
    },
    [],
    investigatorId,
  );

  o.at(160);
  const { raised } = await services.certificates.sweepExpired();
  // Renewed for the gateway still on site only, ending soon after the demo's today: the dashboard's "expiring in 30 days".
  o.at(165);
  const renewed = `${first.country}-EUC-0077`;
  await services.certificates.upload(
    { issuingAuthority: `Export licensing authority (${first.country})`, number: renewed, endUser: first.owner, statedEndUse: 'Lawful interception under judicial warrant', validFrom: day(151), validUntil: day(200), items: [{ modelId: 'DS-LI-900', quantity: 1 }] },
    { buffer: await certificatePdf(renewed), originalname: `${renewed}.pdf` },
    { kind: 'registration', id: first.registrationId },
    investigatorId,
  );
  o.log(`due diligence: a resale to a listed party held and confirmed, a certificate over quantity and expired (${raised} flags), a visit that did not find a unit`);
}
