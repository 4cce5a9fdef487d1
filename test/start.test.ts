import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { childPids, exitOf, isAlive, killSpawned, runTs, waitFor } from './helpers/processes';

/**
 * The README's start command, end to end: server/index.ts with no MONGODB_URI starts the
 * embedded database, serves, shuts down cleanly on SIGTERM, and finds its data again.
 */
describe('npm start', () => {
  afterEach(killSpawned);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-start-'));
  const env = { MONGODB_URI: undefined, DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'warn', NODE_ENV: 'development', JWT_SECRET: undefined };

  async function start() {
    const server = runTs('server/index.ts', [], env);
    const up = await waitFor(() => /running at http:\/\/localhost:\d+/.test(server.output()) || server.exitCode !== null, 30_000);
    expect(up).toBe(true);
    const url = /running at (http:\/\/localhost:\d+)/.exec(server.output())?.[1];
    if (!url) throw new Error(`server did not start:\n${server.output()}`);
    return { server, url: url.replace('localhost', '127.0.0.1') };
  }

  it('serves the portal on the embedded database and stops cleanly on SIGTERM', async () => {
    const { server, url } = await start();
    expect(server.output()).toContain(`data directory: ${dataDir}`);
    expect(server.output()).toMatch(/database: embedded FerretDB mongodb:\/\/127\.0\.0\.1:\d+\//);

    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${url}/readyz`)).json()).toMatchObject({ ready: true, database: true, checkInSummaries: { batches: 0 } });
    const signup = await fetch(`${url}/api/v1/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'persist@example.test', password: 'a long enough password', name: 'Persisted' }),
    });
    expect(signup.status).toBe(201);

    const [ferretPid] = childPids(server.pid!, 'ferretdb-embedded');
    expect(ferretPid).toBeDefined();
    server.kill('SIGTERM');
    expect(await exitOf(server)).toBe(0);
    expect(await waitFor(() => !isAlive(ferretPid!), 5_000)).toBe(true);

    // Starting again finds the same data (and the same generated JWT secret).
    const again = await start();
    try {
      const login = await fetch(`${again.url}/api/v1/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'persist@example.test', password: 'a long enough password' }),
      });
      expect(login.status).toBe(200);
    } finally {
      again.server.kill('SIGTERM');
      expect(await exitOf(again.server)).toBe(0);
    }
  });

  it('explains a bad configuration in one message, without a stack trace', async () => {
    const server = runTs('server/index.ts', [], { ...env, PORT: 'eighty', UPLOAD_MAX_FILES: 'many' });
    expect(await exitOf(server)).toBe(1);
    expect(server.output()).toContain('Downstream could not start.');
    expect(server.output()).toContain('PORT:');
    expect(server.output()).toContain('UPLOAD_MAX_FILES:');
    expect(server.output()).not.toMatch(/\n\s+at /);
  });
});
