import crypto from 'node:crypto';
import request from 'supertest';
import { ApiKey } from '../models/auth';
import { AuditEntry } from '../models/audit';
import { CheckIn } from '../models/check-ins';
import { createTestContext, type TestContext } from './helpers/context';
import { checkInItem, makeApiKey, makeCheckInUnit } from './helpers/check-ins';
import { apiUser, signedInAgent } from './helpers/factories';

describe('API keys for update servers', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ RATE_LIMIT_PUBLIC_POST_PER_MIN: '1000' });
  });
  afterAll(() => ctx.close());

  const checkIn = async (headers: Record<string, string>) => {
    const unit = await makeCheckInUnit(ctx);
    return request(ctx.app).post('/api/v1/check-ins').set(headers).send(checkInItem(unit));
  };

  it('shows a new key once, stores only the hash of its secret, and the key opens check-ins', async () => {
    const admin = await apiUser(ctx, 'admin');
    const res = await request(ctx.app).post('/api/v1/api-keys').set(admin.auth).send({ name: 'EU update server' });
    expect(res.status).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body.key).toMatch(/^dsk_[a-f0-9]{16}_[A-Za-z0-9_-]{43}$/);
    expect(res.body.apiKey).toMatchObject({ name: 'EU update server', scopes: ['check-ins'], revokedAt: null, lastUsedAt: null });

    const [, id, secret] = /^dsk_([a-f0-9]{16})_(.+)$/.exec(res.body.key)!;
    expect(res.body.apiKey.id).toBe(id);
    const stored = await ApiKey.findById(id).lean();
    expect(stored!.secretHash).toBe(crypto.createHash('sha256').update(secret!).digest('hex'));
    expect(JSON.stringify(stored)).not.toContain(secret);

    const list = await request(ctx.app).get('/api/v1/api-keys').set(admin.auth);
    expect(list.status).toBe(200);
    const listed = list.body.items.find((k: { id: string }) => k.id === id);
    expect(listed).toMatchObject({ name: 'EU update server' });
    expect(JSON.stringify(list.body)).not.toContain(secret);
    expect(JSON.stringify(list.body)).not.toContain('secretHash');

    const used = await checkIn({ Authorization: `Bearer ${res.body.key}` });
    expect(used.status).toBe(200);
    expect(await CheckIn.countDocuments({ apiKeyId: id })).toBe(1);
    expect((await ApiKey.findById(id).lean())!.lastUsedAt).toEqual(ctx.clock.now());
    expect(await AuditEntry.countDocuments({ action: 'api-key.created', subjectId: id })).toBe(1);
  });

  it('accepts the key in X-Api-Key as well', async () => {
    const { key, id } = await makeApiKey(ctx);
    const res = await checkIn({ 'X-Api-Key': key });
    expect(res.status).toBe(200);
    expect(await CheckIn.countDocuments({ apiKeyId: id })).toBe(1);
  });

  it('refuses a revoked key with 401, from the moment it is revoked', async () => {
    const admin = await apiUser(ctx, 'admin');
    const { key, id, auth } = await makeApiKey(ctx);
    expect((await checkIn(auth)).status).toBe(200);
    const revoked = await request(ctx.app).delete(`/api/v1/api-keys/${id}`).set(admin.auth);
    expect(revoked.status).toBe(200);
    expect(revoked.body.apiKey.revokedAt).toBe(ctx.clock.now().toISOString());
    expect((await ApiKey.findById(id).lean())!.revokedAt).toEqual(ctx.clock.now());

    const after = await checkIn({ 'X-Api-Key': key });
    expect(after.status).toBe(401);
    expect(after.body.error.code).toBe('invalid_api_key');
    expect(await CheckIn.countDocuments({ apiKeyId: id })).toBe(1);
    expect(await AuditEntry.countDocuments({ action: 'api-key.revoked', subjectId: id })).toBe(1);
  });

  it('refuses a key without the check-ins scope with 403', async () => {
    const { auth, id } = await makeApiKey(ctx, { scopes: [] });
    const res = await checkIn(auth);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('scope_missing');
    expect(await CheckIn.countDocuments({ apiKeyId: id })).toBe(0);
  });

  it('refuses a user session token, a missing key and a forged secret with 401', async () => {
    const admin = await apiUser(ctx, 'admin');
    const jwtRes = await checkIn(admin.auth);
    expect(jwtRes.status).toBe(401);
    expect(jwtRes.body.error.code).toBe('api_key_required');

    expect((await checkIn({})).status).toBe(401);

    const { key, id } = await makeApiKey(ctx);
    const forged = `${key.slice(0, -4)}AAAA`;
    const res = await checkIn({ Authorization: `Bearer ${forged}` });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('invalid_api_key');
    expect((await checkIn({ 'X-Api-Key': 'dsk_not_a_key' })).status).toBe(401);
    expect(await CheckIn.countDocuments({ apiKeyId: id })).toBe(0);
  });

  it('does not let an API key act as a user', async () => {
    const { auth } = await makeApiKey(ctx);
    const res = await request(ctx.app).get('/api/v1/auth/me').set(auth);
    expect(res.status).toBe(401);
  });

  it('writes last use at most once a minute', async () => {
    const { auth, id } = await makeApiKey(ctx);
    const first = ctx.clock.now();
    expect((await checkIn(auth)).status).toBe(200);
    ctx.clock.advance(30_000);
    expect((await checkIn(auth)).status).toBe(200);
    expect((await ApiKey.findById(id).lean())!.lastUsedAt).toEqual(first);
    ctx.clock.advance(31_000);
    expect((await checkIn(auth)).status).toBe(200);
    expect((await ApiKey.findById(id).lean())!.lastUsedAt).toEqual(ctx.clock.now());
  });

  it('keeps key administration to admins and names bad fields', async () => {
    const investigator = await apiUser(ctx, 'investigator');
    expect((await request(ctx.app).get('/api/v1/api-keys').set(investigator.auth)).status).toBe(403);
    expect((await request(ctx.app).post('/api/v1/api-keys').set(investigator.auth).send({ name: 'x' })).status).toBe(403);
    const admin = await apiUser(ctx, 'admin');
    const before = await ApiKey.countDocuments({});
    const bad = await request(ctx.app).post('/api/v1/api-keys').set(admin.auth).send({ name: '', scopes: ['everything'] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.fields).toMatchObject({ name: 'Name is required.', 'scopes.0': expect.stringContaining('check-ins') });
    expect(await ApiKey.countDocuments({})).toBe(before);
    expect((await request(ctx.app).delete('/api/v1/api-keys/0000000000000000').set(admin.auth)).status).toBe(404);
    expect((await request(ctx.app).delete('/api/v1/api-keys/nope').set(admin.auth)).status).toBe(400);
  });

  describe('admin page', () => {
    it('creates a key and shows it once, then lists it without the secret', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const res = await agent.form('/admin/api-keys', { name: 'Asia update server', scopes: 'check-ins' });
      expect(res.status).toBe(201);
      const key = /dsk_[a-f0-9]{16}_[A-Za-z0-9_-]{43}/.exec(res.text)?.[0];
      expect(key).toBeDefined();
      expect(res.text).toContain('shown only this once');
      const stored = await ApiKey.findOne({ name: 'Asia update server' }).lean();
      expect(stored).toMatchObject({ scopes: ['check-ins'], revokedAt: null });

      const again = await agent.get('/admin/api-keys');
      expect(again.status).toBe(200);
      expect(again.text).toContain('Asia update server');
      expect(again.text).not.toContain(key!);
    });

    it('shows the form again with the error when the name is missing', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const before = await ApiKey.countDocuments({});
      const res = await agent.form('/admin/api-keys', { name: '  ', scopes: 'check-ins' });
      expect(res.status).toBe(400);
      expect(res.text).toContain('Name is required.');
      expect(await ApiKey.countDocuments({})).toBe(before);
    });

    it('revokes a key from the list', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const { id, auth } = await makeApiKey(ctx, { name: 'Old server' });
      const res = await agent.form(`/admin/api-keys/${id}/revoke`, {}, '/admin/api-keys');
      expect(res.status).toBe(303);
      expect((await ApiKey.findById(id).lean())!.revokedAt).toEqual(ctx.clock.now());
      expect((await agent.get('/admin/api-keys')).text).toContain('API key &#34;Old server&#34; revoked');
      expect((await checkIn(auth)).status).toBe(401);
    });

    it('is closed to investigators', async () => {
      const { agent } = await signedInAgent(ctx, 'investigator');
      expect((await agent.get('/admin/api-keys')).status).toBe(403);
    });
  });
});
