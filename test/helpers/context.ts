import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mongoose from 'mongoose';
import { createApp } from '../../server/app';
import { createTestClock, type TestClock } from '../../server/clock';
import { loadConfig, type Config, type Env } from '../../server/config';
import { connectDatabase, type Database } from '../../server/db';
import { createLogger } from '../../server/logger';

export interface TestContext {
  app: ReturnType<typeof createApp>;
  config: Config;
  db: Database;
  clock: TestClock;
  services: ReturnType<typeof createApp>['locals']['services'];
  close(): Promise<void>;
}

/** Environment for a test app; MONGODB_URI comes from the global setup (or the caller). */
export function testEnv(overrides: Env = {}): Env {
  return {
    NODE_ENV: 'test',
    MONGODB_URI: process.env.MONGODB_URI,
    MONGODB_DB: `t${process.env.JEST_WORKER_ID ?? '0'}_${crypto.randomBytes(5).toString('hex')}`,
    JWT_SECRET: 'test-secret-test-secret-test-secret-0123',
    LOG_LEVEL: 'silent',
    // Most tests sign staff in with a password alone; test/auth.test.ts turns it on.
    STAFF_TWO_FACTOR: 'optional',
    ...overrides,
  };
}

/** A fresh app on its own database and data directory; `close()` drops both. */
export async function createTestContext(overrides: Env = {}): Promise<TestContext> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-test-data-'));
  const config = loadConfig(testEnv({ DATA_DIR: dataDir, ...overrides }));
  const logger = createLogger(config.logLevel);
  const db = await connectDatabase(config, logger);
  const clock = createTestClock();
  const app = createApp({ config, db, clock, logger });
  return {
    app,
    config,
    db,
    clock,
    services: app.locals.services,
    async close() {
      await mongoose.connection.dropDatabase().catch(() => {});
      await db.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
