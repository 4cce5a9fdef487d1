import jwt from 'jsonwebtoken';
import request from 'supertest';
import { Session, User } from '../models/auth';
import { createTestContext, type TestContext } from './helpers/context';
import { apiUser, makeUser, pageAgent, signedInAgent, TEST_PASSWORD, unique } from './helpers/factories';
import { confirmationTokenFor, mailTo } from './helpers/mail';

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
});
