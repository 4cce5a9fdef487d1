import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { ApiKey, Session, User } from '../models/auth';
import { createApp } from '../server/app';
import { createLogger } from '../server/logger';
import { createTestContext, type TestContext } from './helpers/context';
import { apiUser, makeUser, pageAgent, signedInAgent, TEST_PASSWORD, unique } from './helpers/factories';
import { confirmationTokenFor, mailTo } from './helpers/mail';

/** RFC 6238 (SHA-1, 6 digits, 30 s), written out here so the test does not trust the app's own TOTP code. */
function totpCode(secret: string, at: Date) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const char of secret.replace(/\s/g, '').toUpperCase()) bits += alphabet.indexOf(char).toString(2).padStart(5, '0');
  const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at.getTime() / 30_000)));
  const mac = crypto.createHmac('sha1', key).update(counter).digest();
  const offset = mac[19]! & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const sessionCookie = (res: request.Response) => ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith('ds_session=') && !c.startsWith('ds_session=;'));

describe('accounts and sessions', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ RATE_LIMIT_LOGIN_PER_15MIN: '4', RATE_LIMIT_PUBLIC_POST_PER_MIN: '1000' });
  });
  afterAll(() => ctx.close());

  describe('sign-up', () => {
    const SIGN_UP_ANSWER = 'Check your e-mail to finish signing up.';
    /** A page without what differs per request (the CSRF token of the sign-out form, if any). */
    const sameness = (html: string) => html.replace(/name="_csrf" value="[^"]+"/g, '');

    it('answers the same for a new and an already registered e-mail, on the page and the API, and tells each address by e-mail', async () => {
      const known = await makeUser(ctx, 'customer', { name: 'Known Holder' });
      const fresh = `${unique('signup')}@example.test`;
      const body = (email: string) => ({ email, password: 'another long password', name: 'Amina Diallo', organisation: 'Sahel Telecom' });

      const apiNew = await request(ctx.app).post('/api/v1/auth/signup').send(body(fresh));
      const apiKnown = await request(ctx.app).post('/api/v1/auth/signup').send(body(known.email.toUpperCase()));
      expect(apiNew.status).toBe(202);
      expect(apiKnown.status).toBe(202);
      expect(apiNew.body).toEqual({ message: SIGN_UP_ANSWER });
      expect(apiKnown.body).toEqual(apiNew.body);

      const fresh2 = `${unique('signup')}@example.test`;
      const pageNew = await pageAgent(ctx).form('/signup', body(fresh2));
      const pageKnown = await pageAgent(ctx).form('/signup', body(known.email));
      expect(pageNew.status).toBe(200);
      expect(pageKnown.status).toBe(200);
      expect(pageNew.text).toContain(SIGN_UP_ANSWER);
      expect(sameness(pageKnown.text)).toBe(sameness(pageNew.text));
      expect(String(pageNew.headers['set-cookie'] ?? '')).not.toContain('ds_session');

      // The new address has an unconfirmed customer account; the known one is untouched.
      const stored = await User.findOne({ email: fresh }).lean();
      expect(stored).toMatchObject({ role: 'customer', name: 'Amina Diallo', organisation: 'Sahel Telecom', confirmedAt: null });
      expect(stored!.confirmation!.expiresAt.toISOString()).toBe(new Date(ctx.clock.now().getTime() + 24 * 3_600_000).toISOString());
      expect(stored!.passwordHash).toMatch(/^\$argon2id\$/);
      expect(await User.countDocuments({ email: known.email })).toBe(1);
      expect((await User.findOne({ email: known.email }).lean())).toMatchObject({ name: 'Known Holder', confirmation: null });
      expect((await request(ctx.app).post('/api/v1/auth/token').send({ email: known.email, password: known.password })).status).toBe(200);

      // Each address learns which case it was by e-mail; the link's token is stored only hashed.
      const [confirmMail] = mailTo(ctx, fresh);
      expect(confirmMail!.subject).toBe('Confirm your Downstream account');
      const token = confirmationTokenFor(ctx, fresh);
      expect(JSON.stringify(stored)).not.toContain(token.split('.')[1]);
      const notices = mailTo(ctx, known.email);
      expect(notices).toHaveLength(2);
      expect(notices[0]!.subject).toBe('Someone tried to sign up with your address');
      expect(notices[0]!.text).toMatch(/if it was you, sign in .* or reset your password/i);
      expect(mailTo(ctx, fresh2)).toHaveLength(1);
    });

    it('lets a new account sign in only after its one-time link confirmed the e-mail', async () => {
      const email = `${unique('confirm')}@example.test`;
      expect((await request(ctx.app).post('/api/v1/auth/signup').send({ email, password: TEST_PASSWORD, name: 'Chiamaka Obi' })).status).toBe(202);
      const early = await request(ctx.app).post('/api/v1/auth/token').send({ email, password: TEST_PASSWORD });
      expect(early.status).toBe(401);
      expect(early.body.error).toMatchObject({ code: 'unconfirmed', message: expect.stringMatching(/^Confirm your e-mail address first/) });
      // A wrong password still gets the ordinary answer: only the password holder learns it waits.
      expect((await request(ctx.app).post('/api/v1/auth/token').send({ email, password: 'wrong password here' })).body.error.code).toBe('invalid_credentials');

      const token = confirmationTokenFor(ctx, email);
      expect((await request(ctx.app).post('/api/v1/auth/confirm').send({ token: `${token.slice(0, -2)}xx` })).status).toBe(400);
      const agent = pageAgent(ctx);
      const form = await agent.get(`/signup/confirm?token=${token}`);
      expect(form.status).toBe(200);
      expect(form.text).toContain(`value="${token}"`);
      const confirmed = await agent.form('/signup/confirm', { token }, `/signup/confirm?token=${token}`);
      expect(confirmed.status).toBe(303);
      expect(confirmed.headers.location).toBe('/login');
      expect(await User.findOne({ email }).lean()).toMatchObject({ confirmation: null, confirmedAt: ctx.clock.now() });

      expect((await request(ctx.app).post('/api/v1/auth/token').send({ email, password: TEST_PASSWORD })).status).toBe(200);
      const reused = await request(ctx.app).post('/api/v1/auth/confirm').send({ token });
      expect(reused.status).toBe(400);
      expect(reused.body.error.code).toBe('invalid_confirmation');
    });

    it('refuses a confirmation link after 24 hours; signing up again sends a new one', async () => {
      const email = `${unique('late')}@example.test`;
      await request(ctx.app).post('/api/v1/auth/signup').send({ email, password: TEST_PASSWORD, name: 'Late Reader' });
      const first = confirmationTokenFor(ctx, email);
      ctx.clock.advance(24 * 3_600_000 + 60_000);
      expect((await request(ctx.app).post('/api/v1/auth/confirm').send({ token: first })).status).toBe(400);
      expect((await request(ctx.app).post('/api/v1/auth/signup').send({ email, password: 'a renewed long password', name: 'Late Reader' })).status).toBe(202);
      const second = confirmationTokenFor(ctx, email);
      expect(second).not.toBe(first);
      expect(mailTo(ctx, email).every((m) => m.subject === 'Confirm your Downstream account')).toBe(true);
      const res = await request(ctx.app).post('/api/v1/auth/confirm').send({ token: second });
      expect(res.status).toBe(200);
      expect(res.body.user).toMatchObject({ email, role: 'customer' });
      expect((await request(ctx.app).post('/api/v1/auth/token').send({ email, password: 'a renewed long password' })).status).toBe(200);
    });

    it('ignores role, _id and createdAt smuggled into the sign-up body', async () => {
      const email = `${unique('mass')}@example.test`;
      const res = await request(ctx.app).post('/api/v1/auth/signup').send({
        email, password: TEST_PASSWORD, name: 'Mallory', role: 'admin', _id: '64b000000000000000000000', createdAt: '2000-01-01',
      });
      expect(res.status).toBe(202);
      const stored = await User.findOne({ email }).lean();
      expect(stored!.role).toBe('customer');
      expect(String(stored!._id)).not.toBe('64b000000000000000000000');
      expect(stored!.createdAt.toISOString()).toBe(ctx.clock.now().toISOString());
    });

    it('shows the form again with each bad field named and the typed values kept', async () => {
      const agent = pageAgent(ctx);
      const res = await agent.form('/signup', { name: 'Kept Name', organisation: 'Kept Org', email: 'not-an-email', password: 'short' });
      expect(res.status).toBe(400);
      expect(res.text).toContain('Enter a valid e-mail address.');
      expect(res.text).toContain('Use at least 12 characters.');
      expect(res.text).toContain('value="Kept Name"');
      expect(res.text).toContain('value="Kept Org"');
      expect(res.text).not.toContain('value="short"');
      // The summary names each field as its label does, not by its code.
      expect(res.text).toContain('<a href="#f-email">E-mail: Enter a valid e-mail address.</a>');
      expect(res.text).toContain('<a href="#f-password">Password: Use at least 12 characters.</a>');
      expect(res.text).not.toMatch(/>(email|password):/);
      expect(await User.countDocuments({ name: 'Kept Name' })).toBe(0);
    });

  });

  describe('log-in and log-out', () => {
    it('gives the same answer for an unknown e-mail and a wrong password', async () => {
      const { email } = await makeUser(ctx);
      const wrong = await request(ctx.app).post('/api/v1/auth/token').send({ email, password: 'wrong password here' });
      const unknown = await request(ctx.app).post('/api/v1/auth/token').send({ email: 'nobody@example.test', password: 'wrong password here' });
      expect(wrong.status).toBe(401);
      expect(unknown.status).toBe(401);
      expect(wrong.body).toEqual(unknown.body);
      expect(wrong.body.error.message).toBe('E-mail or password is incorrect.');
    });

    it('throttles repeated failed logins for the same e-mail', async () => {
      const { email } = await makeUser(ctx);
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        const res = await request(ctx.app).post('/api/v1/auth/token').send({ email, password: `wrong-password-${i}` });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([401, 401, 401, 401, 429, 429]);
      const blocked = await request(ctx.app).post('/api/v1/auth/token').send({ email, password: TEST_PASSWORD });
      expect(blocked.status).toBe(429);
      expect(blocked.body.error.code).toBe('rate_limited');
    });

    it('issues a token that opens the API, and logging out ends it server-side', async () => {
      const { email } = await makeUser(ctx, 'investigator');
      const login = await request(ctx.app).post('/api/v1/auth/token').send({ email, password: TEST_PASSWORD });
      expect(login.status).toBe(200);
      expect(login.body.user).toMatchObject({ email, role: 'investigator' });
      expect(login.body.user.passwordHash).toBeUndefined();
      const auth = { Authorization: `Bearer ${login.body.token}` };
      const me = await request(ctx.app).get('/api/v1/auth/me').set(auth);
      expect(me.status).toBe(200);
      expect(me.body.user.email).toBe(email);

      const jti = (jwt.decode(login.body.token) as jwt.JwtPayload).jti;
      expect(await Session.countDocuments({ _id: jti })).toBe(1);
      expect((await request(ctx.app).delete('/api/v1/auth/session').set(auth)).status).toBe(204);
      expect(await Session.countDocuments({ _id: jti })).toBe(0);
      const after = await request(ctx.app).get('/api/v1/auth/me').set(auth);
      expect(after.status).toBe(401);
      expect(after.body.error.code).toBe('session_ended');
    });

    it('starts a new session id at every page login, so a planted cookie is never promoted', async () => {
      const { agent, email } = await signedInAgent(ctx);
      const firstCookie = agent.jar.getCookie('ds_session', { path: '/', domain: '127.0.0.1', secure: false, script: false });
      const res = await agent.form('/login', { email, password: TEST_PASSWORD }, '/account');
      expect(res.status).toBe(303);
      const secondCookie = agent.jar.getCookie('ds_session', { path: '/', domain: '127.0.0.1', secure: false, script: false });
      expect(secondCookie?.value).toBeTruthy();
      expect(secondCookie?.value).not.toBe(firstCookie?.value);
      const oldJti = (jwt.decode(firstCookie!.value) as jwt.JwtPayload).jti;
      expect(await Session.countDocuments({ _id: oldJti })).toBe(0);
    });

    it('sets the session cookie httpOnly and SameSite=Lax', async () => {
      const { email } = await makeUser(ctx);
      const agent = pageAgent(ctx);
      const res = await agent.form('/login', { email, password: TEST_PASSWORD });
      const cookie = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith('ds_session='));
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/SameSite=Lax/);
    });

    it('follows only same-site paths after login', async () => {
      for (const [next, expected] of [
        ['/admin/users', '/admin/users'],
        ['//evil.example/x', '/account/products'],
        ['https://evil.example', '/account/products'],
        ['/\\evil.example', '/account/products'],
      ]) {
        const { email } = await makeUser(ctx);
        const agent = pageAgent(ctx);
        const res = await agent.form('/login', { email, password: TEST_PASSWORD, next });
        expect(res.status).toBe(303);
        expect(res.headers.location).toBe(expected);
      }
    });

    it('logs out from the page and ends the session', async () => {
      const { agent } = await signedInAgent(ctx);
      const res = await agent.form('/logout', {}, '/account');
      expect(res.status).toBe(303);
      const account = await agent.get('/account');
      expect(account.status).toBe(303);
      expect(account.headers.location).toBe('/login?next=%2Faccount');
    });
  });

  describe('tampered tokens', () => {
    const claims = () => ({ issuer: ctx.config.jwt.issuer, audience: ctx.config.jwt.audience });

    async function validToken() {
      const { token, user } = await apiUser(ctx);
      return { token, decoded: jwt.decode(token) as jwt.JwtPayload, user };
    }

    it('rejects a token signed with another secret', async () => {
      const { decoded } = await validToken();
      const forged = jwt.sign({ iat: decoded.iat }, 'another-secret-another-secret-another', { ...claims(), algorithm: 'HS256', subject: decoded.sub, jwtid: decoded.jti, expiresIn: 600 });
      const res = await request(ctx.app).get('/api/v1/auth/me').set('Authorization', `Bearer ${forged}`);
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('invalid_token');
    });

    it('rejects an unsigned token (alg: none)', async () => {
      const { decoded } = await validToken();
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      const body = Buffer.from(JSON.stringify(decoded)).toString('base64url');
      const res = await request(ctx.app).get('/api/v1/auth/me').set('Authorization', `Bearer ${header}.${body}.`);
      expect(res.status).toBe(401);
    });

    it('rejects an HS384 token even with the right secret (algorithm pinned)', async () => {
      const { decoded } = await validToken();
      const other = jwt.sign({ iat: decoded.iat }, ctx.config.jwt.secret, { ...claims(), algorithm: 'HS384', subject: decoded.sub, jwtid: decoded.jti, expiresIn: 600 });
      const res = await request(ctx.app).get('/api/v1/auth/me').set('Authorization', `Bearer ${other}`);
      expect(res.status).toBe(401);
    });

    it('rejects a token for another audience', async () => {
      const { decoded } = await validToken();
      const other = jwt.sign({ iat: decoded.iat }, ctx.config.jwt.secret, { issuer: ctx.config.jwt.issuer, audience: 'someone-else', algorithm: 'HS256', subject: decoded.sub, jwtid: decoded.jti, expiresIn: 600 });
      const res = await request(ctx.app).get('/api/v1/auth/me').set('Authorization', `Bearer ${other}`);
      expect(res.status).toBe(401);
    });

    it('rejects an expired token (time moved by the injected clock)', async () => {
      const { token } = await validToken();
      ctx.clock.advance((ctx.config.jwt.ttlMinutes + 1) * 60_000);
      try {
        const res = await request(ctx.app).get('/api/v1/auth/me').set('Authorization', `Bearer ${token}`);
        expect(res.status).toBe(401);
        expect(res.body.error.code).toBe('token_expired');
      } finally {
        ctx.clock.advance(-(ctx.config.jwt.ttlMinutes + 1) * 60_000);
      }
    });

    it('treats a tampered page cookie as signed out and clears it', async () => {
      const { token } = await validToken();
      const tampered = `${token.slice(0, -3)}abc`;
      const res = await request(ctx.app).get('/account').set('Cookie', `ds_session=${tampered}`);
      expect(res.status).toBe(303);
      expect(res.headers.location).toMatch(/^\/login/);
      expect(String(res.headers['set-cookie'])).toMatch(/ds_session=;/);
    });
  });

  describe('roles', () => {
    it('keeps customers and anonymous visitors out of admin pages and APIs', async () => {
      const customer = await apiUser(ctx, 'customer');
      const investigator = await apiUser(ctx, 'investigator');
      const admin = await apiUser(ctx, 'admin');
      expect((await request(ctx.app).get('/api/v1/users')).status).toBe(401);
      expect((await request(ctx.app).get('/api/v1/users').set(customer.auth)).status).toBe(403);
      expect((await request(ctx.app).get('/api/v1/users').set(investigator.auth)).status).toBe(403);
      const ok = await request(ctx.app).get('/api/v1/users?perPage=2').set(admin.auth);
      expect(ok.status).toBe(200);
      expect(ok.body.items).toHaveLength(2);
      expect(ok.body.total).toBeGreaterThanOrEqual(3);
      expect(ok.body.items[0].passwordHash).toBeUndefined();

      const { agent } = await signedInAgent(ctx, 'customer');
      const page = await agent.get('/admin/users');
      expect(page.status).toBe(403);
      expect(page.text).toContain('You do not have access to this.');
    });

    it('lets an admin create an investigator from the admin page', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const email = `${unique('inv')}@example.test`;
      const res = await agent.form('/admin/users', { name: 'Ines Investigator', email, role: 'investigator', password: TEST_PASSWORD });
      expect(res.status).toBe(303);
      expect(await User.findOne({ email }).lean()).toMatchObject({ role: 'investigator', name: 'Ines Investigator' });
      const list = await agent.get('/admin/users');
      expect(list.text).toContain(`Account created for ${email}.`);
    });
  });

  describe('CSRF', () => {
    it('refuses a cookie-authenticated form post without a token', async () => {
      const { agent, user } = await signedInAgent(ctx);
      const res = await agent.post('/account').type('form').send({ name: 'Changed By Attacker' });
      expect(res.status).toBe(403);
      expect(res.text).toContain('This form has expired or was not sent from this site.');
      expect((await User.findById(user._id).lean())!.name).not.toBe('Changed By Attacker');
    });

    it('refuses a token minted for another session', async () => {
      const victim = await signedInAgent(ctx);
      const attacker = await signedInAgent(ctx);
      const foreign = await attacker.agent.csrf('/account');
      const res = await victim.agent.post('/account').type('form').send({ name: 'Changed', _csrf: foreign });
      expect(res.status).toBe(403);
    });

    it('refuses the login form without a token (login CSRF)', async () => {
      const { email } = await makeUser(ctx);
      const res = await request(ctx.app).post('/login').type('form').send({ email, password: TEST_PASSWORD });
      expect(res.status).toBe(403);
    });

    it('accepts the same form with its token', async () => {
      const { agent, user } = await signedInAgent(ctx);
      const res = await agent.form('/account', { name: 'New Name' });
      expect(res.status).toBe(303);
      expect((await User.findById(user._id).lean())!.name).toBe('New Name');
    });
  });

  it('refuses role changes through the profile API', async () => {
    const customer = await apiUser(ctx, 'customer');
    const res = await request(ctx.app).patch('/api/v1/auth/me').set(customer.auth).send({ role: 'admin' });
    expect(res.status).toBe(400);
    expect(res.body.error.fields).toEqual({ role: 'This field is not accepted here.' });
    expect((await User.findById(customer.user._id).lean())!.role).toBe('customer');
  });

  describe('staff accounts', () => {
    /** A second instance on the same database with two-factor sign-in required for staff (the default). */
    let strict: TestContext['app'];
    beforeAll(() => {
      strict = createApp({ config: { ...ctx.config, staffTwoFactor: 'required', rateLimits: { ...ctx.config.rateLimits, loginPer15Min: 100 } }, db: ctx.db, clock: ctx.clock, logger: createLogger('silent') });
    });
    // The sign-in limit is counted in the database for both instances: each test starts a new window.
    beforeEach(() => ctx.clock.advance(16 * 60_000));

    /** A page agent on the strict instance. */
    function strictAgent() {
      return pageAgent({ ...ctx, app: strict });
    }

    /** Signs in with the password and enrols from the page; the agent is signed in after. */
    async function enrolled(role: 'investigator' | 'admin' = 'investigator') {
      const made = await makeUser(ctx, role);
      const agent = strictAgent();
      const login = await agent.form('/login', { email: made.email, password: made.password });
      expect(login.status).toBe(303);
      expect(login.headers.location).toBe('/login/enrol');
      const page = await agent.get('/login/enrol');
      const secret = /Key: <code class="secret">([A-Z2-7 ]+)<\/code>/.exec(page.text)![1]!.replace(/ /g, '');
      const done = await agent.form('/login/enrol', { code: totpCode(secret, ctx.clock.now()) }, '/login/enrol');
      expect(done.status).toBe(200);
      const recoveryCodes = [...done.text.matchAll(/<li><code>([a-z2-9]{5}-[a-z2-9]{5})<\/code><\/li>/g)].map((m) => m[1]!);
      ctx.clock.advance(30_000); // the next code is a new time step
      return { ...made, agent, secret, recoveryCodes };
    }

    describe('sign-in form', () => {
      it('shows the form again with the e-mail kept and one message, whether the e-mail is unknown or the password wrong', async () => {
        const { email } = await makeUser(ctx, 'investigator');
        const wrong = await pageAgent(ctx).form('/login', { email, password: 'not the password at all' });
        const unknown = await pageAgent(ctx).form('/login', { email: 'nobody-here@example.test', password: 'not the password at all' });
        expect(wrong.status).toBe(401);
        expect(unknown.status).toBe(401);
        expect(wrong.text).toContain('E-mail or password is incorrect.');
        expect(unknown.text).toContain('E-mail or password is incorrect.');
        expect(wrong.text).toContain(`value="${email}"`);
        expect(wrong.text).not.toContain('not the password at all');
        expect(wrong.text).not.toContain('Something went wrong');
        expect(sessionCookie(wrong)).toBeUndefined();
      });

      it('lands each role where it works', async () => {
        for (const [role, landing] of [['investigator', '/cases'], ['admin', '/admin'], ['customer', '/account/products']] as const) {
          const { email, password } = await makeUser(ctx, role);
          const agent = pageAgent(ctx);
          const res = await agent.form('/login', { email, password });
          expect(res.headers.location).toBe(landing);
          expect((await agent.get('/login')).headers.location).toBe(landing);
        }
      });
    });

    describe('two-factor sign-in', () => {
      it('makes staff enrol at first sign-in: QR code and key, a wrong code refused, then recovery codes shown once and stored hashed', async () => {
        const { email, password } = await makeUser(ctx, 'admin');
        const agent = strictAgent();
        const login = await agent.form('/login', { email, password });
        expect(login.status).toBe(303);
        expect(login.headers.location).toBe('/login/enrol');
        expect(sessionCookie(login)).toBeUndefined();
        // Not signed in yet: the admin pages still ask for a sign-in.
        expect((await agent.get('/admin')).headers.location).toBe('/login?next=%2Fadmin');

        const page = await agent.get('/login/enrol');
        expect(page.status).toBe(200);
        expect(page.text).toMatch(/<img src="data:image\/png;base64,[A-Za-z0-9+/=]+" alt="QR code/);
        const secret = /Key: <code class="secret">([A-Z2-7 ]+)<\/code>/.exec(page.text)![1]!.replace(/ /g, '');
        expect((await User.findOne({ email }).lean())!.twoFactor).toMatchObject({ secret: null, pendingSecret: secret });
        // Reloading shows the same key, so what was scanned stays valid.
        expect((await agent.get('/login/enrol')).text).toContain(secret.slice(0, 4));

        const wrongCode = totpCode(secret, new Date(ctx.clock.now().getTime() - 10 * 60_000));
        const refused = await agent.form('/login/enrol', { code: wrongCode }, '/login/enrol');
        expect(refused.status).toBe(400);
        expect(refused.text).toContain('That code is not valid.');
        expect((await User.findOne({ email }).lean())!.twoFactor!.secret).toBeNull();

        const done = await agent.form('/login/enrol', { code: totpCode(secret, ctx.clock.now()) }, '/login/enrol');
        expect(done.status).toBe(200);
        expect(sessionCookie(done)).toBeDefined();
        const codes = [...done.text.matchAll(/<li><code>([a-z2-9]{5}-[a-z2-9]{5})<\/code><\/li>/g)].map((m) => m[1]!);
        expect(codes).toHaveLength(10);
        expect(done.text).toContain('href="/admin"');
        const stored = (await User.findOne({ email }).lean())!;
        expect(stored.twoFactor).toMatchObject({ secret, pendingSecret: null, enabledAt: ctx.clock.now() });
        expect(stored.twoFactor!.recoveryCodeHashes).toHaveLength(10);
        expect(JSON.stringify(stored)).not.toContain(codes[0]!.replace('-', ''));
        expect((await agent.get('/admin')).status).toBe(200);
        ctx.clock.advance(30_000);
      });

      it('signs in with a code generated from the secret, refuses a wrong or replayed code, and accepts each recovery code once', async () => {
        const { email, password, secret, recoveryCodes } = await enrolled();

        const agent = strictAgent();
        const login = await agent.form('/login', { email, password, next: '/cases?status=new' });
        expect(login.headers.location).toBe('/login/code?next=%2Fcases%3Fstatus%3Dnew');
        expect(sessionCookie(login)).toBeUndefined();
        const wrong = await agent.form('/login/code', { code: '000000', next: '/cases?status=new' }, '/login/code');
        expect(wrong.status).toBe(400);
        expect(wrong.text).toContain('That code is not valid.');
        expect(sessionCookie(wrong)).toBeUndefined();
        const code = totpCode(secret, ctx.clock.now());
        const ok = await agent.form('/login/code', { code, next: '/cases?status=new' }, '/login/code');
        expect(ok.status).toBe(303);
        expect(ok.headers.location).toBe('/cases?status=new');
        expect(sessionCookie(ok)).toBeDefined();

        // The same code a second time (someone looking over a shoulder) is refused.
        const other = strictAgent();
        await other.form('/login', { email, password });
        expect((await other.form('/login/code', { code }, '/login/code')).status).toBe(400);

        const recovery = recoveryCodes[3]!;
        const withRecovery = await other.form('/login/code', { code: recovery.toUpperCase() }, '/login/code');
        expect(withRecovery.status).toBe(303);
        expect(withRecovery.headers.location).toBe('/cases');
        expect((await User.findOne({ email }).lean())!.twoFactor!.recoveryCodeHashes).toHaveLength(9);
        const third = strictAgent();
        await third.form('/login', { email, password });
        expect((await third.form('/login/code', { code: recovery }, '/login/code')).status).toBe(400);
      });

      it('asks the API for the code in the same request', async () => {
        const { email, password, secret } = await enrolled();
        const without = await request(strict).post('/api/v1/auth/token').send({ email, password });
        expect(without.status).toBe(401);
        expect(without.body.error.code).toBe('second_factor_required');
        const wrong = await request(strict).post('/api/v1/auth/token').send({ email, password, code: '123456' });
        expect(wrong.body.error.code).toBe('invalid_second_factor');
        const ok = await request(strict).post('/api/v1/auth/token').send({ email, password, code: totpCode(secret, ctx.clock.now()) });
        expect(ok.status).toBe(200);
        expect(ok.body.user).toMatchObject({ email, role: 'investigator' });

        const fresh = await makeUser(ctx, 'investigator');
        const notEnrolled = await request(strict).post('/api/v1/auth/token').send({ email: fresh.email, password: fresh.password });
        expect(notEnrolled.status).toBe(403);
        expect(notEnrolled.body.error.code).toBe('two_factor_enrolment_required');
      });

      it('lets an admin reset a lost second factor after a confirmation page: sessions end and the account enrols again', async () => {
        const { email, password, agent, user } = await enrolled();
        const admin = await signedInAgent(ctx, 'admin');
        const confirm = await admin.agent.get(`/admin/users/${String(user._id)}/reset-two-factor`);
        expect(confirm.status).toBe(200);
        expect(confirm.text).toContain('Reset two-factor sign-in');
        expect((await User.findOne({ email }).lean())!.twoFactor!.secret).not.toBeNull();

        const reset = await admin.agent.form(`/admin/users/${String(user._id)}/reset-two-factor`, {}, `/admin/users/${String(user._id)}/reset-two-factor`);
        expect(reset.status).toBe(303);
        expect((await User.findOne({ email }).lean())!.twoFactor).toMatchObject({ secret: null, recoveryCodeHashes: [] });
        expect((await agent.get('/cases')).headers.location).toBe('/login?next=%2Fcases');
        const again = await strictAgent().form('/login', { email, password });
        expect(again.headers.location).toBe('/login/enrol');
        const logged = await AuditEntry.findOne({ action: 'account.two-factor-reset', subjectId: String(user._id) }).lean();
        expect(logged).toMatchObject({ actorId: String(admin.user._id) });
      });
    });

    describe('accounts an admin manages', () => {
      it('disabling ends the sessions at once, on pages and the API; enabling lets the person back in', async () => {
        const target = await signedInAgent(ctx, 'investigator');
        const { token } = await ctx.services.auth.issueSession(target.user);
        const admin = await signedInAgent(ctx, 'admin');
        const id = String(target.user._id);
        expect((await admin.agent.get(`/admin/users/${id}/disable`)).text).toContain('signed out at once');
        expect((await target.agent.get('/cases')).status).toBe(200);

        const res = await admin.agent.form(`/admin/users/${id}/disable`, {}, `/admin/users/${id}/disable`);
        expect(res.status).toBe(303);
        expect((await User.findById(id).lean())!.disabled).toBe(true);
        expect((await target.agent.get('/cases')).headers.location).toBe('/login?next=%2Fcases');
        const api = await request(ctx.app).get('/api/v1/auth/me').set('Authorization', `Bearer ${token}`);
        expect(api.status).toBe(401);
        const login = await pageAgent(ctx).form('/login', { email: target.email, password: target.password });
        expect(login.status).toBe(401);
        expect(login.text).toContain('E-mail or password is incorrect.');

        expect((await admin.agent.form(`/admin/users/${id}/enable`, {}, `/admin/users/${id}/enable`)).status).toBe(303);
        expect((await pageAgent(ctx).form('/login', { email: target.email, password: target.password })).status).toBe(303);
        // The sessions ended by disabling stay ended.
        expect((await target.agent.get('/cases')).status).toBe(303);
        expect((await admin.agent.form(`/admin/users/${String(admin.user._id)}/disable`, {}, '/admin/users')).status).toBe(409);
      });

      it("gives an admin a one-time reset link for a staff account, valid for 24 hours, also e-mailed", async () => {
        const target = await signedInAgent(ctx, 'investigator');
        const admin = await signedInAgent(ctx, 'admin');
        const id = String(target.user._id);
        const res = await admin.agent.form(`/admin/users/${id}/reset-password`, {}, `/admin/users/${id}/reset-password`);
        expect(res.status).toBe(200);
        expect(res.headers['cache-control']).toBe('no-store');
        const link = /<code>(http[^<]+\/password\/reset\?token=([^<]+))<\/code>/.exec(res.text)!;
        expect(mailTo(ctx, target.email).at(-1)!.text).toContain(link[1]!);
        expect(JSON.stringify(await User.findById(id).lean())).not.toContain(link[2]!.split('.')[1]!);
        // The old password works until the link is used.
        expect((await target.agent.get('/cases')).status).toBe(200);

        const agent = pageAgent(ctx);
        const form = await agent.get(`/password/reset?token=${link[2]}`);
        expect(form.text).toContain(`value="${link[2]}"`);
        const short = await agent.form('/password/reset', { token: link[2], newPassword: 'short' }, `/password/reset?token=${link[2]}`);
        expect(short.status).toBe(400);
        expect(short.text).toContain('Use at least 12 characters.');
        const done = await agent.form('/password/reset', { token: link[2], newPassword: 'a brand new passphrase' }, `/password/reset?token=${link[2]}`);
        expect(done.status).toBe(303);
        expect(done.headers.location).toBe('/login');
        expect((await target.agent.get('/cases')).status).toBe(303);
        expect((await pageAgent(ctx).form('/login', { email: target.email, password: target.password })).status).toBe(401);
        expect((await pageAgent(ctx).form('/login', { email: target.email, password: 'a brand new passphrase' })).status).toBe(303);
        const reused = await agent.form('/password/reset', { token: link[2], newPassword: 'yet another passphrase' }, `/password/reset?token=${link[2]}`);
        expect(reused.status).toBe(400);
        expect(reused.text).toContain('This reset link is not valid');
      });

      it('asks before revoking an API key; the POST from the confirmation page revokes it', async () => {
        const admin = await apiUser(ctx, 'admin');
        const { apiKey } = await ctx.services.auth.createApiKey({ name: 'EU update server', scopes: ['check-ins'] }, String(admin.user._id));
        const { agent } = await signedInAgent(ctx, 'admin');
        const list = await agent.get('/admin/api-keys');
        expect(list.text).toContain(`href="/admin/api-keys/${apiKey._id}/revoke"`);
        const confirm = await agent.get(`/admin/api-keys/${apiKey._id}/revoke`);
        expect(confirm.status).toBe(200);
        expect(confirm.text).toContain('Revoke the key <strong>EU update server</strong>');
        expect((await ApiKey.findById(apiKey._id).lean())!.revokedAt).toBeNull();
        const res = await agent.form(`/admin/api-keys/${apiKey._id}/revoke`, {}, `/admin/api-keys/${apiKey._id}/revoke`);
        expect(res.status).toBe(303);
        expect((await ApiKey.findById(apiKey._id).lean())!.revokedAt).toEqual(ctx.clock.now());
      });
    });

    describe('own password', () => {
      it('changes the password after checking the current one, and signs out every other session', async () => {
        const here = await signedInAgent(ctx, 'customer');
        const elsewhere = pageAgent(ctx);
        await elsewhere.form('/login', { email: here.email, password: here.password });
        const wrong = await here.agent.form('/account/password', { currentPassword: 'not my password', newPassword: 'a good new passphrase' }, '/account/password');
        expect(wrong.status).toBe(400);
        expect(wrong.text).toContain('Your current password is not correct.');
        const ok = await here.agent.form('/account/password', { currentPassword: here.password, newPassword: 'a good new passphrase' }, '/account/password');
        expect(ok.status).toBe(303);
        expect((await here.agent.get('/account')).status).toBe(200);
        expect((await elsewhere.get('/account')).status).toBe(303);
        expect((await pageAgent(ctx).form('/login', { email: here.email, password: 'a good new passphrase' })).status).toBe(303);
      });

      it('e-mails a customer a reset link, answering the same for an unknown address; the link expires after 24 hours', async () => {
        const { email } = await makeUser(ctx, 'customer');
        const known = await pageAgent(ctx).form('/password/forgot', { email }, '/password/forgot');
        const unknown = await pageAgent(ctx).form('/password/forgot', { email: 'no-account@example.test' }, '/password/forgot');
        expect(known.status).toBe(200);
        expect(unknown.status).toBe(200);
        expect(known.text).toContain('If an account uses this address');
        expect(unknown.text.replace(/name="_csrf" value="[^"]+"/g, '')).toBe(known.text.replace(/name="_csrf" value="[^"]+"/g, ''));
        expect(mailTo(ctx, 'no-account@example.test')).toHaveLength(0);
        const mail = mailTo(ctx, email).at(-1)!;
        expect(mail.subject).toBe('Reset your Downstream password');
        const token = /\/password\/reset\?token=(\S+)/.exec(mail.text)![1]!;
        ctx.clock.advance(24 * 3_600_000 + 1000);
        const late = await pageAgent(ctx).form('/password/reset', { token, newPassword: 'too late passphrase' }, '/password/reset');
        expect(late.status).toBe(400);
        expect(late.text).toContain('This reset link is not valid');
      });
    });
  });
});
