import mongoose from 'mongoose';
import request from 'supertest';
import { createTestContext, type TestContext } from './helpers/context';

describe('health and readiness', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('reports the process alive on /healthz', async () => {
    const res = await request(ctx.app).get('/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  it('reports the database reachable on /readyz, with the check-in summariser’s backlog', async () => {
    const res = await request(ctx.app).get('/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ ready: true, database: true, checkInSummaries: { batches: 0, checkIns: 0, oldestReceivedAt: null, folded: 0 } });
  });

  it('turns /readyz false and answers 503 when the database connection is gone', async () => {
    await mongoose.disconnect();
    try {
      const ready = await request(ctx.app).get('/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ ready: false, database: false });

      const api = await request(ctx.app).post('/api/v1/auth/token').send({ email: 'a@example.test', password: 'whatever-password' });
      expect(api.status).toBe(503);
      expect(api.body.error.code).toBe('database_unavailable');
      expect(JSON.stringify(api.body)).not.toMatch(/at .*\.ts/);
    } finally {
      await mongoose.connect(ctx.config.mongodbUri!, { dbName: ctx.config.databaseName });
    }
  });
});
