import sharp from 'sharp';
import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { User } from '../models/auth';
import { Case } from '../models/cases';
import { ProductModel, Unit, UnitCheckInHistory } from '../models/catalogue';
import { Flag } from '../models/flags';
import { CustomerRegistrations, Registration, Transfer } from '../models/registrations';
import { makeFlagCase, makeStaff } from './helpers/cases';
import { createTestContext, type TestContext } from './helpers/context';
import { makeModel, makeRegistration, makeUnit, registrationInput } from './helpers/catalogue';
import { apiUser, csrfFrom, makeUser, pageAgent, signedInAgent, TEST_PASSWORD, unique } from './helpers/factories';
import { confirmationTokenFor, mailTo } from './helpers/mail';

type Agent = ReturnType<typeof pageAgent>;

/** The registration form's fields as a browser sends them. */
function formFields(unit: { modelId: string; serial: string }, overrides: Record<string, string | undefined> = {}) {
  const fields: Record<string, string | undefined> = {
    modelSku: unit.modelId,
    serial: unit.serial.toLowerCase(),
    ownerOrganisation: 'Lagos Logistics Ltd',
    contactName: 'Chiamaka Obi',
    contactEmail: 'ops@lagos-logistics.example',
    country: 'NG',
    region: 'Lagos State',
    city: 'Lagos',
    endUserType: 'commercial-company',
    intendedUse: 'office networking',
    declaredEndUse: 'Warehouse network',
    purchaseDate: '2026-01-05',
    seller: 'West Africa Distribution',
    termsVersion: '1',
    acceptTerms: 'yes',
    ...overrides,
  };
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as Record<string, string>;
}

/** Posts the multipart registration form (as the page does), with an optional proof of purchase. */
async function submitRegistration(agent: Agent, fields: Record<string, string>, proof?: Buffer) {
  const token = csrfFrom((await agent.get(`/register?model=${encodeURIComponent(fields.modelSku ?? '')}`)).text);
  let req = agent.post('/register').field('_csrf', token);
  for (const [k, v] of Object.entries(fields)) req = req.field(k, v);
  if (proof) req = req.attach('proofOfPurchase', proof, 'invoice.png');
  return req;
}

const transferTo = (unitId: string, fields: Record<string, unknown>) => ({ unitId, kind: 'relocation', country: 'UG', city: 'Kampala', reason: 'Office moved', effectiveDate: '2026-01-10', ...fields });

const png = () => sharp({ create: { width: 8, height: 8, channels: 3, background: '#c00' } }).png().toBuffer();

const apiInput = (unit: { modelId: string; serial: string }, fields: Record<string, unknown> = {}) => {
  const base = registrationInput(unit);
  return { ...base, purchaseDate: '2026-01-02', ...fields };
};

describe('registrations, transfers and the unit timeline', () => {
  let ctx: TestContext;
  let investigator: Awaited<ReturnType<typeof apiUser>>;
  let admin: Awaited<ReturnType<typeof apiUser>>;
  beforeAll(async () => {
    ctx = await createTestContext({ RATE_LIMIT_PUBLIC_POST_PER_MIN: '10000', RESTRICTED_COUNTRIES: 'IR,KP,RU,SY' });
    [investigator, admin] = await Promise.all([apiUser(ctx, 'investigator'), apiUser(ctx, 'admin')]);
  });
  afterAll(() => ctx.close());

  describe('warranty registration', () => {
    it('registers a unit for a signed-in customer from the page, recording the terms version and the proof of purchase', async () => {
      const { agent, user } = await signedInAgent(ctx, 'customer');
      const { unit, model } = await makeUnit(ctx);
      const form = await agent.get(`/register?model=${model._id.toLowerCase()}`);
      expect(form.status).toBe(200);
      expect(form.text).toContain('The product must not be used to surveil journalists');
      expect(form.text).toContain('<option value="office networking"');
      expect(form.text).not.toContain('name="password"'); // signed in: no account fields

      const res = await submitRegistration(agent, formFields(unit), await png());
      expect(res.status).toBe(303);
      expect(res.headers.location).toBe('/account/products');

      const registration = await Registration.findOne({ unitId: unit._id }).lean();
      expect(registration).toMatchObject({
        customerUserId: user._id, ownerOrganisation: 'Lagos Logistics Ltd', country: 'NG', endUserType: 'commercial-company',
        termsAccepted: { version: 1, acceptedAt: ctx.clock.now() }, status: 'active', purchaseDate: new Date('2026-01-05T00:00:00Z'),
      });
      expect(registration!.proofOfPurchase).toMatchObject({ mediaType: 'image/png', originalName: 'invoice.png' });
      expect(ctx.services.files.exists(registration!.proofOfPurchase!.fileId!)).toBe(true);

      const stored = await Unit.findById(unit._id).lean();
      expect(stored).toMatchObject({ status: 'registered', registrationId: registration!._id, ownerUserId: user._id, current: { country: 'NG', owner: 'Lagos Logistics Ltd', endUserType: 'commercial-company' } });
      expect(stored!.countries.map((c) => [c.country, c.source])).toEqual([['NG', 'registration']]);
      expect((await CustomerRegistrations.findById(String(user._id)).lean())!.registrationIds).toEqual([registration!._id]);
      expect(await AuditEntry.countDocuments({ action: 'registration.created', subjectId: registration!._id })).toBe(1);

      const products = await agent.get('/account/products');
      expect(products.status).toBe(200);
      expect(products.text).toContain(unit.serial);
      expect(products.text).toContain('Registered by Lagos Logistics Ltd');
    });

    it('creates the account in the same form for a visitor, who sees the product once the e-mail is confirmed', async () => {
      const agent = pageAgent(ctx);
      const { unit, model } = await makeUnit(ctx);
      expect((await agent.get(`/register?model=${model._id}`)).text).toContain('name="password"');
      const email = `${unique('reg')}@example.test`;
      const res = await submitRegistration(agent, formFields(unit, { name: 'Chiamaka Obi', email, password: TEST_PASSWORD }));
      expect(res.status).toBe(200);
      expect(res.text).toContain('Check your e-mail to finish signing up.');
      const user = await User.findOne({ email }).lean();
      expect(user).toMatchObject({ role: 'customer', name: 'Chiamaka Obi', confirmedAt: null });
      expect((await Registration.findOne({ unitId: unit._id }).lean())!.customerUserId).toEqual(user!._id);
      expect((await agent.get('/account/products')).status).not.toBe(200); // no session before confirmation

      expect((await request(ctx.app).post('/api/v1/auth/confirm').send({ token: confirmationTokenFor(ctx, email) })).status).toBe(200);
      expect((await agent.form('/login', { email, password: TEST_PASSWORD })).status).toBe(303);
      const products = await agent.get('/account/products');
      expect(products.status).toBe(200);
      expect(products.text).toContain(unit.serial);
    });

    it('answers a visitor registering with an e-mail that has an account exactly as a new one, registering nothing and telling the holder', async () => {
      const holder = await makeUser(ctx, 'customer');
      const { unit: first } = await makeUnit(ctx);
      const { unit: second } = await makeUnit(ctx);
      const fresh = await submitRegistration(pageAgent(ctx), formFields(first, { name: 'New Visitor', email: `${unique('reg')}@example.test`, password: TEST_PASSWORD }));
      const known = await submitRegistration(pageAgent(ctx), formFields(second, { name: 'Someone Else', email: holder.email, password: TEST_PASSWORD }));
      expect(known.status).toBe(fresh.status);
      const strip = (html: string) => html.replace(/name="_csrf" value="[^"]+"/g, '');
      expect(strip(known.text)).toBe(strip(fresh.text));
      expect(await Registration.countDocuments({ unitId: second._id })).toBe(0);
      expect(mailTo(ctx, holder.email).map((m) => m.subject)).toEqual(['Someone tried to sign up with your address']);
    });

    it('creates no account when the registration itself is wrong, and keeps what was typed', async () => {
      const agent = pageAgent(ctx);
      const { unit } = await makeUnit(ctx);
      const email = `${unique('reg')}@example.test`;
      const res = await submitRegistration(agent, formFields(unit, { serial: 'NO-SUCH-SERIAL', name: 'Kept Visitor', email, password: TEST_PASSWORD }));
      expect(res.status).toBe(400);
      expect(res.text).toContain('<a href="#f-serial">Serial number: No unit of this model has this serial number.');
      expect(res.text).not.toContain('serial: No unit');
      expect(res.text).toContain('value="Kept Visitor"');
      expect(res.text).toContain('value="Lagos Logistics Ltd"');
      expect(res.text).not.toContain(TEST_PASSWORD);
      expect(await User.countDocuments({ email })).toBe(0);
      expect(await Registration.countDocuments({ unitId: unit._id })).toBe(0);

      const weak = await submitRegistration(agent, formFields(unit, { name: 'Kept Visitor', email, password: 'short' }));
      expect(weak.status).toBe(400);
      expect(weak.text).toContain('Use at least 12 characters.');
      expect(await User.countDocuments({ email })).toBe(0);
    });

    it('names the model step error for an unknown model number', async () => {
      const res = await request(ctx.app).get('/register?model=NOPE-404');
      expect(res.status).toBe(400);
      expect(res.text).toContain('We do not know this model number.');
    });

    it('refuses an unknown model or serial with a clear field error', async () => {
      const customer = await apiUser(ctx, 'customer');
      const { unit } = await makeUnit(ctx);
      const serial = await request(ctx.app).post('/api/v1/registrations').set(customer.auth).send(apiInput(unit, { serial: 'NOT-A-SERIAL' }));
      expect(serial.status).toBe(400);
      expect(serial.body.error.fields).toEqual({ serial: 'No unit of this model has this serial number. Check the label on the product, or contact us if it is right.' });
      const model = await request(ctx.app).post('/api/v1/registrations').set(customer.auth).send(apiInput(unit, { modelSku: 'NOT-A-MODEL' }));
      expect(model.body.error.fields).toEqual({ modelSku: 'We do not know this model number. Check the label on the product.' });
      expect(await Registration.countDocuments({ unitId: unit._id })).toBe(0);
    });

    it('names every bad field: country, intended use, terms not accepted, stale terms, dates', async () => {
      const customer = await apiUser(ctx, 'customer');
      const { unit } = await makeUnit(ctx);
      const send = (fields: Record<string, unknown>) => request(ctx.app).post('/api/v1/registrations').set(customer.auth).send(apiInput(unit, fields));

      const country = await send({ country: 'XX' });
      expect(country.status).toBe(400);
      expect(country.body.error.fields.country).toMatch(/Choose a country from the list/);
      expect((await send({ country: 'Kenya' })).body.error.fields.country).toBeDefined();
      expect((await send({ acceptTerms: false })).body.error.fields).toEqual({ acceptTerms: 'You must accept the end-use terms to register the product.' });
      const { acceptTerms: _omitted, ...withoutAcceptance } = apiInput(unit);
      expect((await request(ctx.app).post('/api/v1/registrations').set(customer.auth).send(withoutAcceptance)).body.error.fields.acceptTerms).toBeDefined();
      expect((await send({ intendedUse: 'crowd monitoring' })).body.error.fields).toEqual({ intendedUse: 'Choose one of the listed uses, or "other" and describe it.' });
      expect((await send({ purchaseDate: '2026-02-30' })).body.error.fields.purchaseDate).toBe('Purchase date: enter a date as YYYY-MM-DD.');
      expect((await send({ purchaseDate: '2027-01-01' })).body.error.fields.purchaseDate).toBe('The purchase date cannot be in the future.');
      expect((await send({ endUserType: 'spy-agency' })).body.error.fields.endUserType).toBe('Choose the type of end user.');
      expect((await send({ customerUserId: '64b000000000000000000000' })).body.error.fields.customerUserId).toBeDefined();

      await ctx.services.catalogue.publishTerms(unit.modelId, 'Version 2 of the terms.', { userId: null });
      const stale = await send({ termsVersion: 1 });
      expect(stale.body.error.fields.acceptTerms).toMatch(/changed \(now version 2\)/);
      expect(await Registration.countDocuments({ unitId: unit._id })).toBe(0);
      expect((await Unit.findById(unit._id).lean())!.status).toBe('unregistered');

      const ok = await send({ termsVersion: 2, country: 'ke' });
      expect(ok.status).toBe(201);
      expect(ok.body.registration).toMatchObject({ country: 'KE', termsAccepted: { version: 2 } });
    });

    it('cannot register a model whose end-use terms are not published', async () => {
      const customer = await apiUser(ctx, 'customer');
      const model = await makeModel(ctx, { endUseTerms: undefined });
      const { unit } = await makeUnit(ctx, { model });
      const res = await request(ctx.app).post('/api/v1/registrations').set(customer.auth).send(apiInput(unit));
      expect(res.status).toBe(409);
      expect(res.body.error.message).toMatch(/end-use terms are not published/);
      expect(await Registration.countDocuments({ unitId: unit._id })).toBe(0);
    });

    it('answers a unit registered to someone else exactly like an unknown serial, and tells its owner', async () => {
      const owner = await makeUser(ctx, 'customer');
      const { unit } = await makeRegistration(ctx, { user: owner.user, ownerOrganisation: 'Secret Owner Org', contactName: 'Hidden Person', contactEmail: 'hidden@owner.example' });
      const other = await apiUser(ctx, 'customer');
      const taken = await request(ctx.app).post('/api/v1/registrations').set(other.auth).send(apiInput(unit));
      const unknown = await request(ctx.app).post('/api/v1/registrations').set(other.auth).send(apiInput(unit, { serial: 'NEVER-MADE-1' }));
      expect(taken.status).toBe(400);
      expect(taken.body).toEqual(unknown.body);
      expect(taken.body.error.fields).toEqual({ serial: 'No unit of this model has this serial number. Check the label on the product, or contact us if it is right.' });
      // Even with other fields wrong, the serial is all that is named, as for an unknown one.
      const takenBad = await request(ctx.app).post('/api/v1/registrations').set(other.auth).send(apiInput(unit, { acceptTerms: false }));
      const unknownBad = await request(ctx.app).post('/api/v1/registrations').set(other.auth).send(apiInput(unit, { serial: 'NEVER-MADE-1', acceptTerms: false }));
      expect(takenBad.body).toEqual(unknownBad.body);
      expect(await Registration.countDocuments({ unitId: unit._id })).toBe(1);
      expect((await Unit.findById(unit._id).lean())!.registrationId).toBe(unit.registrationId);

      const notices = mailTo(ctx, owner.email);
      expect(notices).toHaveLength(2);
      expect(notices[0]!.subject).toBe(`Someone tried to register your unit ${unit.serial}`);
      expect(notices[0]!.text).not.toMatch(new RegExp(`${other.email}|Lagos Logistics|Chiamaka`));
    });

    it('returns the existing registration when the same customer submits again, never a duplicate', async () => {
      const customer = await apiUser(ctx, 'customer');
      const { unit } = await makeUnit(ctx);
      const first = await request(ctx.app).post('/api/v1/registrations').set(customer.auth).send(apiInput(unit));
      expect(first.status).toBe(201);
      const again = await request(ctx.app).post('/api/v1/registrations').set(customer.auth).send(apiInput(unit, { ownerOrganisation: 'Changed' }));
      expect(again.status).toBe(200);
      expect(again.body).toMatchObject({ created: false, registration: { id: first.body.registration.id, ownerOrganisation: 'Nairobi Clinic Ltd' } });
      expect(await Registration.countDocuments({ unitId: unit._id })).toBe(1);
      expect((await CustomerRegistrations.findById(String(customer.user._id)).lean())!.registrationIds).toHaveLength(1);
    });

    it('stays one registration when the same unit is registered concurrently', async () => {
      const [a, b] = [(await makeUser(ctx)).user, (await makeUser(ctx)).user];
      const { unit } = await makeUnit(ctx);
      const input = registrationInput(unit);
      const same = await Promise.all([0, 1, 2].map(() => ctx.services.registrations.register(input, { userId: String(a._id) })));
      expect(new Set(same.map((r) => r.registration._id)).size).toBe(1);
      expect(same.filter((r) => r.created)).toHaveLength(1);
      expect(await Registration.countDocuments({ unitId: unit._id })).toBe(1);

      const { unit: contested } = await makeUnit(ctx);
      const raced = await Promise.allSettled([a, b].map((u) => ctx.services.registrations.register(registrationInput(contested), { userId: String(u._id) })));
      expect(raced.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect(await Registration.countDocuments({ unitId: contested._id })).toBe(1);
      const winner = await Registration.findOne({ unitId: contested._id }).lean();
      expect((await Unit.findById(contested._id).lean())!.registrationId).toBe(winner!._id);
    });

    it('keeps every registration in the customer\'s list when several are made at once', async () => {
      const { user } = await makeUser(ctx);
      const units = [];
      for (let i = 0; i < 6; i++) units.push((await makeUnit(ctx)).unit);
      const made = await Promise.all(units.map((u) => ctx.services.registrations.register(registrationInput(u), { userId: String(user._id) })));
      const index = await CustomerRegistrations.findById(String(user._id)).lean();
      expect([...index!.registrationIds].sort()).toEqual(made.map((m) => m.registration._id).sort());
    });

    it('raises red flags (stored with evidence, each opening a case) without telling the registrant', async () => {
      const customer = await apiUser(ctx, 'customer');
      const model = await makeModel(ctx, { riskLevel: 'high', intendedUses: ['border inspection'] });
      const { unit } = await makeUnit(ctx, { model });
      const res = await request(ctx.app).post('/api/v1/registrations').set(customer.auth).send(
        apiInput(unit, { country: 'RU', endUserType: 'military', intendedUse: 'other', declaredEndUse: 'Monitoring protesters' }),
      );
      expect(res.status).toBe(201);
      expect(JSON.stringify(res.body)).not.toMatch(/flag|restricted|high-risk/);
      const flags = await Flag.find({ unitId: unit._id }).lean();
      expect(flags.map((f) => f.rule).sort()).toEqual(['end-use-outside-intended', 'high-risk-end-user', 'restricted-country']);
      for (const f of flags) {
        expect(f.source).toEqual({ kind: 'registration', id: res.body.registration.id });
        expect(f.caseId).toMatch(/^C-2026-\d{6}$/);
        expect(await Case.findById(f.caseId).lean()).toMatchObject({ unitIds: [unit._id], rules: [f.rule], status: 'new' });
      }
      expect(flags.find((f) => f.rule === 'restricted-country')!.evidence).toEqual({ country: 'RU', where: 'registration' });
      expect(flags.find((f) => f.rule === 'high-risk-end-user')!.evidence).toEqual({ riskLevel: 'high', endUserType: 'military' });
    });

    it('raises no flag for an ordinary registration', async () => {
      const { unit, flags } = await makeRegistration(ctx);
      expect(flags).toEqual([]);
      expect(await Flag.countDocuments({ unitId: unit._id })).toBe(0);
    });
  });

  describe('access', () => {
    it('lets customers see only their own registrations and unit timelines', async () => {
      const a = await apiUser(ctx, 'customer');
      const b = await apiUser(ctx, 'customer');
      const { registration, unit } = await makeRegistration(ctx, { user: a.user });
      const own = await request(ctx.app).get(`/api/v1/registrations/${registration._id}`).set(a.auth);
      expect(own.status).toBe(200);
      expect(own.body.registration.id).toBe(registration._id);

      const other = await request(ctx.app).get(`/api/v1/registrations/${registration._id}`).set(b.auth);
      expect(other.status).toBe(404);
      expect(JSON.stringify(other.body)).not.toContain('Nairobi');
      expect((await request(ctx.app).get(`/api/v1/units/${unit._id}/timeline`).set(b.auth)).status).toBe(404);
      expect((await request(ctx.app).get(`/api/v1/units/${unit._id}/timeline`).set(a.auth)).status).toBe(200);
      expect((await request(ctx.app).get(`/api/v1/registrations/${registration._id}`).set(investigator.auth)).status).toBe(200);
      expect((await request(ctx.app).get(`/api/v1/registrations/${registration._id}`)).status).toBe(401);

      const { agent } = await signedInAgent(ctx, 'customer');
      expect((await agent.get(`/units/${unit._id}`)).status).toBe(403);
      expect((await agent.get(`/account/products/${unit._id}/transfer`)).status).toBe(404);
    });

    it('lists a customer\'s own registrations, newest first, paginated', async () => {
      const a = await apiUser(ctx, 'customer');
      const made = [];
      for (let i = 0; i < 3; i++) {
        made.push((await makeRegistration(ctx, { user: a.user })).registration._id);
        ctx.clock.advance(1000);
      }
      await makeRegistration(ctx); // someone else's
      const page1 = await request(ctx.app).get('/api/v1/registrations?perPage=2').set(a.auth);
      expect(page1.status).toBe(200);
      expect(page1.body).toMatchObject({ total: 3, page: 1, perPage: 2 });
      expect(page1.body.items.map((r: { id: string }) => r.id)).toEqual([made[2], made[1]]);
      const page2 = await request(ctx.app).get('/api/v1/registrations?perPage=2&page=2').set(a.auth);
      expect(page2.body.items.map((r: { id: string }) => r.id)).toEqual([made[0]]);
    });
  });

  describe('transfers', () => {

    it('makes a relocation of an ordinary model effective at once, keeping the registration', async () => {
      const owner = await apiUser(ctx, 'customer');
      const { unit, registration } = await makeRegistration(ctx, { user: owner.user });
      const res = await request(ctx.app).post('/api/v1/transfers').set(owner.auth).send(transferTo(unit._id, {}));
      expect(res.status).toBe(201);
      expect(res.body.transfer).toMatchObject({ status: 'effective', kind: 'relocation', newLocation: { country: 'UG', city: 'Kampala' } });
      const stored = await Unit.findById(unit._id).lean();
      expect(stored).toMatchObject({ status: 'registered', registrationId: registration._id, current: { country: 'UG', region: 'Kampala', owner: 'Nairobi Clinic Ltd' }, transferIds: [res.body.transfer.id] });
      expect(stored!.countries.map((c) => [c.country, c.source])).toEqual([['KE', 'registration'], ['UG', 'transfer']]);
      expect((await Registration.findById(registration._id).lean())!.status).toBe('active');
      expect(await AuditEntry.countDocuments({ action: 'transfer.effective', subjectId: res.body.transfer.id })).toBe(1);
    });

    it('ends the seller\'s registration on a resale and lets the new owner register the unit', async () => {
      const seller = await apiUser(ctx, 'customer');
      const { unit, registration } = await makeRegistration(ctx, { user: seller.user });
      // What a misuse report naming the model and a country is linked to, among registrations.
      const linked = async (country: string) => (await ctx.services.linker.linkReport({ serials: [], modelText: unit.modelId, country })).links.filter((l) => l.kind === 'registration').map((l) => l.targetId);
      expect(await linked(registration.country)).toContain(registration._id);
      const res = await request(ctx.app).post('/api/v1/transfers').set(seller.auth).send(
        transferTo(unit._id, { kind: 'resale', newOwnerOrganisation: 'Kampala Data Co', newOwnerEndUserType: 'commercial-company', newOwnerContactEmail: 'it@kdc.example' }),
      );
      expect(res.status).toBe(201);
      expect(res.body.transfer.status).toBe('effective');
      expect((await Registration.findById(registration._id).lean())!.status).toBe('superseded');
      expect(await Unit.findById(unit._id).lean()).toMatchObject({ status: 'unregistered', registrationId: null, ownerUserId: null, current: { country: 'UG', owner: 'Kampala Data Co', endUserType: 'commercial-company' } });
      // The seller no longer sees the unit's timeline; the registration stays in their history.
      expect((await request(ctx.app).get(`/api/v1/units/${unit._id}/timeline`).set(seller.auth)).status).toBe(404);

      const buyer = await apiUser(ctx, 'customer');
      const registered = await request(ctx.app).post('/api/v1/registrations').set(buyer.auth).send(apiInput(unit, { ownerOrganisation: 'Kampala Data Co', country: 'UG' }));
      expect(registered.status).toBe(201);
      const now = await Unit.findById(unit._id).lean();
      expect(now).toMatchObject({ status: 'registered', registrationId: registered.body.registration.id, ownerUserId: buyer.user._id });
      expect(now!.registrationIds).toEqual([registration._id, registered.body.registration.id]);
      expect(await linked(registration.country)).not.toContain(registration._id);
      expect(await linked('UG')).toContain(registered.body.registration.id);
    });

    it('holds a high-risk resale as pending until staff approve it from the page, then applies it', async () => {
      const owner = await apiUser(ctx, 'customer');
      const { unit, registration } = await makeRegistration(ctx, { user: owner.user, riskLevel: 'high' });
      const res = await request(ctx.app).post('/api/v1/transfers').set(owner.auth).send(
        transferTo(unit._id, { kind: 'resale', newOwnerOrganisation: 'Entebbe Research', newOwnerEndUserType: 'ngo-academic' }),
      );
      expect(res.status).toBe(201);
      const id = res.body.transfer.id;
      expect(res.body.transfer.status).toBe('pending');
      expect(await Unit.findById(unit._id).lean()).toMatchObject({ status: 'transfer-pending', registrationId: registration._id, current: { country: 'KE' } });
      const again = await request(ctx.app).post('/api/v1/transfers').set(owner.auth).send(transferTo(unit._id, {}));
      expect(again.status).toBe(409);

      const queue = await request(ctx.app).get('/api/v1/transfers').set(investigator.auth);
      expect(queue.body.items.map((t: { id: string }) => t.id)).toContain(id);
      expect((await request(ctx.app).get('/api/v1/transfers').set(owner.auth)).status).toBe(403);

      const { agent } = await signedInAgent(ctx, 'investigator');
      expect((await agent.get('/admin/transfers')).text).toContain(`/admin/transfers/${id}`);
      const decisionPage = await agent.get(`/admin/transfers/${id}`);
      expect(decisionPage.status).toBe(200);
      expect(decisionPage.text).toContain('Entebbe Research');
      expect(decisionPage.text).toContain('value="approve"');
      const noReason = await agent.form(`/admin/transfers/${id}`, { decision: 'approve', reason: '' });
      expect(noReason.status).toBe(400);
      expect(noReason.text).toContain('Reason is required.');
      expect((await Transfer.findById(id).lean())!.status).toBe('pending');

      const approved = await agent.form(`/admin/transfers/${id}`, { decision: 'approve', reason: 'University lab, end use checked' });
      expect(approved.status).toBe(303);
      const transfer = await Transfer.findById(id).lean();
      expect(transfer).toMatchObject({ status: 'effective', decision: { reason: 'University lab, end use checked' } });
      expect(await Unit.findById(unit._id).lean()).toMatchObject({ status: 'unregistered', current: { country: 'UG', owner: 'Entebbe Research' } });
      expect((await Registration.findById(registration._id).lean())!.status).toBe('superseded');
      expect(await AuditEntry.countDocuments({ action: 'transfer.approved', subjectId: id })).toBe(1);

      const twice = await request(ctx.app).post(`/api/v1/transfers/${id}/decision`).set(admin.auth).send({ decision: 'refuse', reason: 'late' });
      expect(twice.status).toBe(409);
    });

    it('leaves owner and location unchanged when staff refuse a pending transfer', async () => {
      const owner = await apiUser(ctx, 'customer');
      const { unit, registration } = await makeRegistration(ctx, { user: owner.user, riskLevel: 'high' });
      const { body } = await request(ctx.app).post('/api/v1/transfers').set(owner.auth).send(transferTo(unit._id, { country: 'SD' }));
      const denied = await request(ctx.app).post(`/api/v1/transfers/${body.transfer.id}/decision`).set(owner.auth).send({ decision: 'approve', reason: 'me' });
      expect(denied.status).toBe(403);
      const res = await request(ctx.app).post(`/api/v1/transfers/${body.transfer.id}/decision`).set(admin.auth).send({ decision: 'refuse', reason: 'Conflict zone: not cleared' });
      expect(res.status).toBe(200);
      expect(res.body.transfer).toMatchObject({ status: 'refused', decision: { reason: 'Conflict zone: not cleared' } });
      expect(await Unit.findById(unit._id).lean()).toMatchObject({ status: 'registered', registrationId: registration._id, current: { country: 'KE' } });
      expect(await AuditEntry.countDocuments({ action: 'transfer.refused', subjectId: body.transfer.id })).toBe(1);
      const seen = await request(ctx.app).get(`/api/v1/transfers/${body.transfer.id}`).set(owner.auth);
      expect(seen.body.transfer.status).toBe('refused');
    });

    it('takes one decision and one transfer when they arrive at the same time', async () => {
      const owner = await makeUser(ctx, 'customer');
      const ownerId = String(owner.user._id);
      const { unit } = await makeRegistration(ctx, { user: owner.user, riskLevel: 'high' });
      const move = { kind: 'relocation' as const, country: 'UG', reason: 'Move', effectiveDate: new Date('2026-01-10') };
      const requests = await Promise.allSettled([0, 1, 2].map(() => ctx.services.registrations.requestTransfer(unit._id, move, ownerId)));
      expect(requests.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(await Transfer.countDocuments({ unitId: unit._id })).toBe(1);
      const transfer = await Transfer.findOne({ unitId: unit._id }).lean();

      const deciders = [String(investigator.user._id), String(admin.user._id)];
      const decisions = await Promise.allSettled([
        ctx.services.registrations.decideTransfer(transfer!._id, 'approve', 'ok', deciders[0]!),
        ctx.services.registrations.decideTransfer(transfer!._id, 'refuse', 'no', deciders[1]!),
      ]);
      expect(decisions.map((d) => d.status).sort()).toEqual(['fulfilled', 'rejected']);
      const decided = await Transfer.findById(transfer!._id).lean();
      const won = decisions.findIndex((d) => d.status === 'fulfilled');
      expect(decided!.status).toBe(won === 0 ? 'effective' : 'refused');
      expect((await Unit.findById(unit._id).lean())!.current!.country).toBe(won === 0 ? 'UG' : 'KE');
      expect(await AuditEntry.countDocuments({ subjectId: transfer!._id, action: { $in: ['transfer.approved', 'transfer.refused'] } })).toBe(1);
    });

    it('refuses bad transfer input and transfers of units that are not yours', async () => {
      const owner = await apiUser(ctx, 'customer');
      const { unit } = await makeRegistration(ctx, { user: owner.user });
      const resaleWithoutOwner = await request(ctx.app).post('/api/v1/transfers').set(owner.auth).send(transferTo(unit._id, { kind: 'resale' }));
      expect(resaleWithoutOwner.status).toBe(400);
      expect(Object.keys(resaleWithoutOwner.body.error.fields).sort()).toEqual(['newOwnerEndUserType', 'newOwnerOrganisation']);
      const bad = await request(ctx.app).post('/api/v1/transfers').set(owner.auth).send(transferTo(unit._id, { country: 'XX', effectiveDate: 'soon', reason: '' }));
      expect(Object.keys(bad.body.error.fields).sort()).toEqual(['country', 'effectiveDate', 'reason']);
      const stranger = await apiUser(ctx, 'customer');
      expect((await request(ctx.app).post('/api/v1/transfers').set(stranger.auth).send(transferTo(unit._id, {}))).status).toBe(404);
      expect(await Transfer.countDocuments({ unitId: unit._id })).toBe(0);
    });

    it('is reported from "my products", keeping the form on errors', async () => {
      const { agent, user } = await signedInAgent(ctx, 'customer');
      const { unit } = await makeRegistration(ctx, { user });
      const path = `/account/products/${encodeURIComponent(unit._id)}/transfer`;
      expect((await agent.get('/account/products')).text).toContain(path);
      const bad = await agent.form(path, { kind: 'relocation', country: '', reason: 'Kept reason', effectiveDate: '2026-01-09' });
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('Kept reason');
      const ok = await agent.form(path, { kind: 'relocation', country: 'TZ', reason: 'New branch', effectiveDate: '2026-01-09' });
      expect(ok.status).toBe(303);
      expect((await Unit.findById(unit._id).lean())!.current!.country).toBe('TZ');
    });

    it('raises flags for a move to a restricted country and a resale to a high-risk end user', async () => {
      const owner = await apiUser(ctx, 'customer');
      const { unit: moved } = await makeRegistration(ctx, { user: owner.user });
      const relocation = await request(ctx.app).post('/api/v1/transfers').set(owner.auth).send(transferTo(moved._id, { country: 'IR' }));
      const movedFlags = await Flag.find({ unitId: moved._id }).lean();
      expect(movedFlags.map((f) => [f.rule, f.source?.kind, f.source?.id])).toEqual([['restricted-country', 'transfer', relocation.body.transfer.id]]);
      expect(await Case.findById(movedFlags[0]!.caseId).lean()).toMatchObject({ unitIds: [moved._id], countries: ['IR'] });

      const { unit: sold } = await makeRegistration(ctx, { user: owner.user, riskLevel: 'high' });
      const resale = await request(ctx.app).post('/api/v1/transfers').set(owner.auth).send(transferTo(sold._id, { kind: 'resale', newOwnerOrganisation: 'Unit 42', newOwnerEndUserType: 'police-security' }));
      expect(resale.body.transfer.status).toBe('pending');
      const soldFlags = await Flag.find({ unitId: sold._id }).lean();
      expect(soldFlags.map((f) => f.rule)).toEqual(['high-risk-end-user']);
      expect(soldFlags[0]!.evidence).toEqual({ riskLevel: 'high', endUserType: 'police-security' });
      expect(await Case.countDocuments({ _id: soldFlags[0]!.caseId })).toBe(1);
    });
  });

  describe('destination timeline', () => {
    it('shows the unit’s closed cases too, not only the open ones', async () => {
      const { unit } = await makeUnit(ctx);
      const admin = await makeStaff(ctx, 'admin');
      const { caseId } = await makeFlagCase(ctx, { unitId: unit._id, modelId: unit.modelId });
      await ctx.services.cases.transition(caseId, { to: 'closed', reason: 'Checked: the unit was at a trade fair', closureReason: 'unsubstantiated' }, admin.actor);
      expect((await Case.findById(caseId).lean())!.status).toBe('closed');

      const res = await request(ctx.app).get(`/api/v1/units/${unit._id}/timeline`).set(admin.auth);
      expect(res.status).toBe(200);
      const cases = res.body.entries.filter((e: { kind: string }) => e.kind === 'case');
      expect(cases).toEqual([expect.objectContaining({ title: `Case ${caseId} opened`, detail: expect.stringMatching(/· closed$/) })]);
      expect(res.body.entries.filter((e: { kind: string }) => e.kind === 'flag')).toHaveLength(1);
    });

    it('merges first sale, registration, transfers, check-in runs, flags and cases in time order', async () => {
      const owner = await makeUser(ctx, 'customer');
      const model = await makeModel(ctx, { riskLevel: 'high' });
      const { unit } = await makeUnit(ctx, { model, firstSale: { channelPartner: 'Gulf Partner', shipToCountry: 'AE', soldAt: new Date('2025-12-01T00:00:00Z') } });
      try {
        ctx.clock.set('2026-01-20T10:00:00Z');
        await makeRegistration(ctx, { user: owner.user, unit, endUserType: 'military' });
        // What the check-ins module writes: the unit summary and the history bucket of the month the run started.
        const run = { country: 'KE', count: 42, firstAt: new Date('2026-01-03T08:00:00Z'), lastAt: new Date('2026-03-09T08:00:00Z'), firstFirmware: '2.1', lastFirmware: '2.3' };
        await Unit.updateOne({ _id: unit._id }, { $set: { 'checkIns.count': 42, 'checkIns.lastRun': run, 'checkIns.periods': ['2026-01'] } });
        await UnitCheckInHistory.create({ _id: `${unit._id}:2026-01`, unitId: unit._id, period: '2026-01', count: 42, runs: [run] });
        ctx.clock.set('2026-03-20T10:00:00Z');
        await ctx.services.registrations.requestTransfer(unit._id, { kind: 'relocation', country: 'SY', reason: 'Project', effectiveDate: new Date('2026-03-25') }, String(owner.user._id));

        const staff = await apiUser(ctx, 'investigator');
        const res = await request(ctx.app).get(`/api/v1/units/${unit._id}/timeline`).set(staff.auth);
        expect(res.status).toBe(200);
        const entries = res.body.entries as Array<{ at: string; kind: string; title: string; detail: string; country: string | null }>;
        expect(entries.map((e) => e.at)).toEqual([...entries.map((e) => e.at)].sort());
        expect(entries.map((e) => e.kind)).toEqual(['first-sale', 'check-ins', 'registration', 'flag', 'case', 'transfer', 'flag', 'case']);
        expect(entries[0]).toMatchObject({ title: 'First sale through Gulf Partner', country: 'AE' });
        expect(entries[1]).toMatchObject({ title: '42 check-ins from KE', detail: 'v2.1→v2.3, 3 Jan–9 Mar', country: 'KE' });
        expect(entries[3]!.title).toBe('Red flag: high-risk-end-user');
        expect(entries[5]).toMatchObject({ title: 'Relocation (pending)', country: 'SY' });
        expect(entries[6]!.title).toBe('Red flag: restricted-country');
        expect(res.body.current).toMatchObject({ country: 'KE', source: 'registration' }); // pending: not moved yet
        expect(res.body.countries.map((c: { country: string; source: string }) => `${c.country}:${c.source}`)).toEqual(['AE:first-sale', 'KE:registration']);

        const { token } = await ctx.services.auth.issueSession(owner.user);
        const ownerView = await request(ctx.app).get(`/api/v1/units/${unit._id}/timeline`).set('Authorization', `Bearer ${token}`);
        expect(ownerView.body.entries.map((e: { kind: string }) => e.kind)).toEqual(['first-sale', 'check-ins', 'registration', 'transfer']);

        const { agent } = await signedInAgent(ctx, 'investigator');
        const page = await agent.get(`/units/${unit._id}`);
        expect(page.status).toBe(200);
        expect(page.text).toContain('42 check-ins from KE');
        expect(page.text).toContain('v2.1→v2.3, 3 Jan–9 Mar');
        expect(page.text).toContain('Red flag: high-risk-end-user');
      } finally {
        ctx.clock.set('2026-01-15T10:00:00Z');
      }
    });

    it('shows a catalogued unit nobody registered by its first sale only', async () => {
      const { unit } = await makeUnit(ctx, { firstSale: { shipToCountry: 'GH' } });
      const t = await ctx.services.registrations.timeline(unit._id, { id: String((await makeUser(ctx, 'investigator')).user._id), role: 'investigator' });
      expect(t.current).toMatchObject({ country: 'GH', source: 'first-sale' });
      expect(t.entries.map((e) => e.kind)).toEqual(['first-sale']);
      await expect(ctx.services.registrations.timeline('NO:SUCH', { id: 'nobody', role: 'investigator' })).rejects.toMatchObject({ status: 404 });
    });
  });

  describe('warranty control', () => {
    it('marks the registration and the unit control, with an audit entry', async () => {
      const { registration, unit } = await makeRegistration(ctx);
      await ctx.services.registrations.setWarranty(registration._id, 'void', { userId: String(investigator.user._id), caseId: 'C-2026-000123' });
      expect((await Registration.findById(registration._id).lean())!.warranty).toBe('void');
      expect((await Unit.findById(unit._id).lean())!.controls!.warranty).toBe('void');
      const entry = await AuditEntry.findOne({ action: 'registration.warranty-set', subjectId: registration._id }).lean();
      expect(entry!.detail).toMatchObject({ warranty: 'void', caseId: 'C-2026-000123', unitId: unit._id });
      await expect(ctx.services.registrations.setWarranty('reg_nope', 'limited', { userId: null })).rejects.toMatchObject({ status: 404 });
      expect((await ProductModel.findById(unit.modelId).lean())!.unitCount).toBe(1);
    });
  });
});
