import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startEmbedded } from '../server/db/embedded';
import { confirmationTokenFor } from './helpers/mail';
import { childPids, descendantPids, exitOf, isAlive, killSpawned, runNpm, runTs, waitFor } from './helpers/processes';

/**
 * The README's start command, end to end: server/index.ts with no MONGODB_URI starts the
 * embedded database, serves, shuts down cleanly on SIGTERM, and finds its data again. Several
 * processes on one DATA_DIR share one embedded database (server/db/engine-lock.ts).
 */
describe('npm start', () => {
  afterEach(killSpawned);
  const freshDataDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-start-'));
  const dataDir = freshDataDir();
  const envFor = (dir: string) => ({ MONGODB_URI: undefined, DATA_DIR: dir, PORT: '0', LOG_LEVEL: 'warn', NODE_ENV: 'development', JWT_SECRET: undefined });
  const env = envFor(dataDir);
  const lockOf = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'db', 'engine.lock'), 'utf8')) as { pid: number; uri: string };

  async function start(startEnv: Record<string, string | undefined> = env) {
    const server = runTs('server/index.ts', [], startEnv);
    return { server, url: await urlOf(server) };
  }

  async function urlOf(server: ReturnType<typeof runTs>) {
    const up = await waitFor(() => /running at http:\/\/localhost:\d+/.test(server.output()) || server.exitCode !== null, 30_000);
    expect(up).toBe(true);
    const url = /running at (http:\/\/localhost:\d+)/.exec(server.output())?.[1];
    if (!url) throw new Error(`server did not start:\n${server.output()}`);
    return url.replace('localhost', '127.0.0.1');
  }

  /** Signs up and confirms with the link the portal wrote to its outbox: 200 once the account can sign in. */
  const signUp = async (url: string, email: string, dir = dataDir) => {
    const asked = await fetch(`${url}/api/v1/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password: 'a long enough password', name: 'Persisted' }),
    });
    if (asked.status !== 202) return asked;
    return fetch(`${url}/api/v1/auth/confirm`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: confirmationTokenFor({ config: { dataDir: dir } }, email) }),
    });
  };
  const logIn = (url: string, email: string) =>
    fetch(`${url}/api/v1/auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password: 'a long enough password' }),
    }).catch(() => ({ status: 0 }));

  it('serves the portal on the embedded database and stops cleanly on SIGTERM', async () => {
    const { server, url } = await start();
    expect(server.output()).toContain(`data directory: ${dataDir}`);
    expect(server.output()).toMatch(/database: embedded FerretDB mongodb:\/\/127\.0\.0\.1:\d+\/ .*run by this process/);

    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${url}/readyz`)).json()).toMatchObject({ ready: true, database: true, checkInSummaries: { batches: 0 } });
    expect((await signUp(url, 'persist@example.test')).status).toBe(200);

    const [ferretPid] = childPids(server.pid!, 'ferretdb-embedded');
    expect(ferretPid).toBeDefined();
    server.kill('SIGTERM');
    expect(await exitOf(server)).toBe(0);
    expect(await waitFor(() => !isAlive(ferretPid!), 5_000)).toBe(true);
    expect(fs.existsSync(path.join(dataDir, 'db', 'engine.lock'))).toBe(false);

    // Starting again finds the same data (and the same generated JWT secret).
    const again = await start();
    try {
      expect((await logIn(again.url, 'persist@example.test')).status).toBe(200);
    } finally {
      again.server.kill('SIGTERM');
      expect(await exitOf(again.server)).toBe(0);
    }
  });

  it('lets a second instance and a maintenance command on the same DATA_DIR join the running database', async () => {
    const dir = freshDataDir();
    const first = await start(envFor(dir));
    const second = await start(envFor(dir));
    const firstUri = /database: embedded FerretDB (\S+)/.exec(first.server.output())![1];

    expect(lockOf(dir)).toMatchObject({ pid: first.server.pid, uri: firstUri });
    expect(second.server.output()).toContain(`database: embedded FerretDB ${firstUri} `);
    expect(second.server.output()).toContain(`joined, run by process ${first.server.pid}`);
    expect(childPids(first.server.pid!, 'ferretdb-embedded')).toHaveLength(1);
    expect(childPids(second.server.pid!, 'ferretdb-embedded')).toHaveLength(0);

    // One database: an account made through one instance signs in through the other.
    expect((await signUp(first.url, 'shared@example.test', dir)).status).toBe(200);
    expect((await logIn(second.url, 'shared@example.test')).status).toBe(200);

    const verify = runNpm(['run', 'audit:verify'], envFor(dir));
    expect(await exitOf(verify)).toBe(0);
    expect(verify.output()).toContain(`embedded FerretDB ${firstUri} `);
    expect(verify.output()).toContain(`joined, run by process ${first.server.pid}`);
    expect(verify.output()).toContain('OK: the chain is intact');
    // The command's exit leaves the portal's database running.
    expect((await logIn(second.url, 'shared@example.test')).status).toBe(200);
  }, 60_000);

  it('keeps serving when the instance that runs the database is killed: another one takes it over', async () => {
    const dir = freshDataDir();
    // Sign-ins are the database-backed request polled below; their rate limit is not under test.
    const pollable = { ...envFor(dir), RATE_LIMIT_LOGIN_PER_15MIN: '1000' };
    const owner = await start(pollable);
    const other = await start(pollable);
    expect((await signUp(owner.url, 'survivor@example.test', dir)).status).toBe(200);
    const [oldFerret] = childPids(owner.server.pid!, 'ferretdb-embedded');

    const killedAt = Date.now();
    owner.server.kill('SIGKILL');
    await exitOf(owner.server);
    // Its FerretDB follows it (stdin lifeline): from then on only a takeover can serve.
    expect(await waitFor(() => !isAlive(oldFerret!), 5_000)).toBe(true);
    let status = 0;
    while (Date.now() - killedAt < 20_000 && status !== 200) {
      status = (await logIn(other.url, 'survivor@example.test')).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 200));
    }
    const downMs = Date.now() - killedAt;
    process.stdout.write(`database-backed request served again ${downMs} ms after the owner was killed\n`);
    expect(status).toBe(200);
    expect(downMs).toBeLessThan(10_000);

    expect(childPids(other.server.pid!, 'ferretdb-embedded')).toHaveLength(1);
    expect(lockOf(dir).pid).toBe(other.server.pid);
    expect(other.server.output()).toMatch(/this process runs it now/);
  }, 60_000);

  it('takes over a lock left by a process that is gone', async () => {
    const dir = freshDataDir();
    const gone = runTs('test/fixtures/exit-at-once.ts', [], {});
    await exitOf(gone);
    fs.mkdirSync(path.join(dir, 'db'), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(dir, 'db', 'engine.lock'), JSON.stringify({ pid: gone.pid, uri: 'mongodb://127.0.0.1:9/', startedAt: '2026-01-01T00:00:00.000Z' }));

    const { server, url } = await start(envFor(dir));
    expect(server.output()).toContain('run by this process');
    expect(lockOf(dir).pid).toBe(server.pid);
    expect((await signUp(url, 'after-crash@example.test', dir)).status).toBe(200);
  });

  /** When a process started, as the lock records it (Linux: /proc/<pid>/stat, field 22). */
  const startTicksOf = (pid: number) => {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  };
  const freePort = () =>
    new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });

  it('takes over a lock whose pid now belongs to another process', async () => {
    const dir = freshDataDir();
    fs.mkdirSync(path.join(dir, 'db'), { recursive: true, mode: 0o700 });
    // This test's own pid, live but started at another time than the lock says: a pid reused after a crash.
    fs.writeFileSync(path.join(dir, 'db', 'engine.lock'), JSON.stringify({ pid: process.pid, pidStartedAt: '1', uri: 'mongodb://127.0.0.1:9/', startedAt: '2026-01-01T00:00:00.000Z' }));

    const { server, url } = await start(envFor(dir));
    expect(server.output()).toContain('is gone: taking it over');
    expect(lockOf(dir).pid).toBe(server.pid);
    expect((await signUp(url, 'reused-pid@example.test', dir)).status).toBe(200);
  });

  it('waits for a live owner whose database is slow to answer (a restart) rather than starting a second one on the same files', async () => {
    const dir = freshDataDir();
    fs.mkdirSync(path.join(dir, 'db'), { recursive: true, mode: 0o700 });
    const port = await freePort();
    // The owner (this test process) holds the lock; its database answers only after 14 s (the
    // joiner's own start takes a few of them; the old rule took over after 5 s of silence).
    fs.writeFileSync(path.join(dir, 'db', 'engine.lock'), JSON.stringify({ pid: process.pid, pidStartedAt: startTicksOf(process.pid), uri: `mongodb://127.0.0.1:${port}/`, startedAt: new Date().toISOString() }));
    const server = runTs('server/index.ts', [], envFor(dir));
    await new Promise((r) => setTimeout(r, 14_000));
    const owners = await startEmbedded({ dir: path.join(dir, 'db'), port });
    try {
      const url = await urlOf(server);
      expect(server.output()).toContain(`joined, run by process ${process.pid}`);
      expect(server.output()).not.toContain('taking it over');
      expect(childPids(server.pid!, 'ferretdb-embedded')).toHaveLength(0);
      expect((await signUp(url, 'patient-joiner@example.test', dir)).status).toBe(200);
    } finally {
      server.kill('SIGTERM');
      await exitOf(server);
      await owners.stop();
    }
  }, 60_000);

  it('stops node and the database when a process manager sends SIGTERM to npm itself', async () => {
    const npm = runNpm(['start'], envFor(freshDataDir()));
    await urlOf(npm);
    const below = descendantPids(npm.pid!);
    expect(below.filter((p) => p.cmdline.includes('server/index.ts'))).toHaveLength(1);
    expect(below.filter((p) => p.cmdline.includes('ferretdb-embedded'))).toHaveLength(1);

    npm.kill('SIGTERM');
    await exitOf(npm);
    expect(await waitFor(() => below.every((p) => !isAlive(p.pid)), 10_000)).toBe(true);
  });

  it('keeps DATA_DIR to its owner and warns at start when it was loosened', async () => {
    const dir = freshDataDir();
    fs.rmSync(dir, { recursive: true });
    const { server, url } = await start(envFor(dir));
    expect((await signUp(url, 'private@example.test', dir)).status).toBe(200);
    const loose: string[] = [];
    const walk = (entry: string) => {
      const stat = fs.lstatSync(entry);
      if (stat.mode & 0o077) loose.push(`${entry} ${(stat.mode & 0o777).toString(8)}`);
      if (stat.isDirectory()) for (const name of fs.readdirSync(entry)) walk(path.join(entry, name));
    };
    walk(dir);
    expect(fs.readdirSync(path.join(dir, 'db'))).toContain('downstream.sqlite');
    expect(loose).toEqual([]);
    expect(server.output()).not.toContain('other local users can read');
    server.kill('SIGTERM');
    expect(await exitOf(server)).toBe(0);

    fs.chmodSync(path.join(dir, 'db'), 0o755);
    const again = await start(envFor(dir));
    expect(again.server.output()).toContain(`${path.join(dir, 'db')} has mode 0755: other local users can read the data directory`);
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
