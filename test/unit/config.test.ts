import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../server/config';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-config-'));

describe('config', () => {
  it('applies documented defaults when the environment is empty', () => {
    const dir = tmp();
    const config = loadConfig({ DATA_DIR: dir });
    expect(config).toMatchObject({
      env: 'development',
      port: 3000,
      host: '127.0.0.1',
      mongodbUri: null,
      databaseName: 'downstream',
      dataDir: dir,
      trustProxy: false,
      cookieSecure: false,
      uploads: { maxFileBytes: 25 * 1024 * 1024, maxFiles: 5, atOncePerClient: 2, atOnce: 16 },
    });
  });

  it('names every invalid variable in one error', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'eighty', MONGODB_URI: 'http://db', NODE_ENV: 'staging', UPLOAD_MAX_FILES: '-1' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join('\n');
    expect(problems).toMatch(/^PORT: /m);
    expect(problems).toMatch(/^MONGODB_URI: must start with mongodb:\/\//m);
    expect(problems).toMatch(/^NODE_ENV: /m);
    expect(problems).toMatch(/^UPLOAD_MAX_FILES: /m);
  });

  it('refuses to start in production without a JWT secret', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', DATA_DIR: tmp() })).toThrow(/JWT_SECRET: required when NODE_ENV=production/);
  });

  it('refuses a JWT secret shorter than 32 characters', () => {
    expect(() => loadConfig({ JWT_SECRET: 'short', DATA_DIR: tmp() })).toThrow(/JWT_SECRET: must be at least 32 characters/);
  });

  it('generates a development secret once and keeps it in the data directory', () => {
    const dir = tmp();
    const first = loadConfig({ DATA_DIR: dir }).jwt.secret;
    const second = loadConfig({ DATA_DIR: dir }).jwt.secret;
    expect(first).toHaveLength(64);
    expect(second).toBe(first);
    expect(fs.readFileSync(path.join(dir, 'jwt-secret'), 'utf8').trim()).toBe(first);
    expect(fs.statSync(path.join(dir, 'jwt-secret')).mode & 0o777).toBe(0o600);
  });

  it('uses secure cookies in production and parses trust-proxy hop counts', () => {
    const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(40), ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64'), TRUST_PROXY: '2', DATA_DIR: tmp() });
    expect(config.cookieSecure).toBe(true);
    expect(config.trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: 'loopback', DATA_DIR: tmp() }).trustProxy).toBe('loopback');
  });
});
