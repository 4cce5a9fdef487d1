import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mongoose from 'mongoose';
import sharp from 'sharp';
import request from 'supertest';
import { Report } from '../models/reports';
import { createTestContext, type TestContext } from './helpers/context';
import { exitOf, isAlive, killSpawned, runTs, waitFor } from './helpers/processes';
import { pngImage, reportFields } from './helpers/reports';
import { confirmationTokenFor } from './helpers/mail';
import { call, serverEnv, sleep, startServer, type RunningServer } from './helpers/security';

/**
 * Faults a production portal meets: the database dying under it, a SIGTERM with requests in
 * flight, an unwritable or full data directory. Each runs the real `server/index.ts` (or the
 * real files service on a real full disk) and checks what users get and what the data holds.
 */

const PASSWORD = 'a long enough password';
/** Signs up and confirms with the link the server wrote to its outbox: 200 once the account can sign in. */
async function signup(srv: RunningServer, email: string) {
  const asked = await call(`${srv.url}/api/v1/auth/signup`, { body: { email, password: PASSWORD, name: 'Fault tester' } });
  if (asked.status !== 202) return asked;
  return call(`${srv.url}/api/v1/auth/confirm`, { body: { token: confirmationTokenFor({ config: { dataDir: srv.dataDir } }, email) } });
}
const token = (srv: RunningServer, email: string) => call(`${srv.url}/api/v1/auth/token`, { body: { email, password: PASSWORD } });

/** Holds a TCP port so the supervisor's restarts fail until `release()`: the database stays down as long as the test needs. */
async function holdPort(port: number, deadlineMs = 3_000) {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const blocker = net.createServer((socket) => socket.destroy());
    const ok = await new Promise<boolean>((resolve) => {
      blocker.once('error', () => resolve(false));
      blocker.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) return { release: () => new Promise<void>((resolve) => blocker.close(() => resolve())) };
    if (Date.now() > until) throw new Error(`port ${port} stayed busy`);
    await sleep(5);
  }
}

describe('database faults on a running portal', () => {
  afterEach(killSpawned);

  it('answers 503 within 2 s while FerretDB is dead, turns /readyz false, keeps running, and recovers by itself with the data intact', async () => {
    const srv = await startServer();
    expect((await signup(srv, 'before-crash@example.test')).status).toBe(200);
    const ferretPid = srv.ferretdbPid();
    expect(ferretPid).toBeDefined();
    const port = Number(new URL(srv.databaseUri).port);

    process.kill(ferretPid!, 'SIGKILL');
    // The supervisor waits before restarting: take the port in that gap so the database stays down.
    expect(await waitFor(() => srv.process.output().includes('restarting embedded FerretDB'), 5_000, 2)).toBe(true);
    const held = await holdPort(port);
    try {
      const ready = await call(`${srv.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ ready: false, database: false, checkInSummaries: { batches: 0 } });

      const outcomes = await Promise.all(['a', 'b', 'c'].map(() => token(srv, 'before-crash@example.test')));
      for (const outcome of outcomes) {
        expect(outcome.status).toBe(503);
        expect(outcome.ms).toBeLessThan(2_000);
        expect(outcome.body).toEqual({ error: { code: 'database_unavailable', message: expect.stringMatching(/database is temporarily unavailable/) } });
      }
      const page = await fetch(`${srv.url}/login`, { method: 'POST', headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' }, body: 'email=x%40example.test&password=y' });
      expect([403, 503]).toContain(page.status); // no CSRF cookie, or the database: never a crash
      expect((await call(`${srv.url}/healthz`)).status).toBe(200);
      expect(srv.process.exitCode).toBeNull();
    } finally {
      await held.release();
    }

    // Recovery: the supervisor's next attempt starts FerretDB on the same port; the driver reconnects.
    expect(await waitForAsync(async () => (await call(`${srv.url}/readyz`)).status === 200, 20_000)).toBe(true);
    expect(srv.process.output()).toMatch(/embedded FerretDB exited unexpectedly/);
    expect(srv.process.output()).toMatch(/embedded FerretDB did not restart/);
    expect(srv.process.output()).toMatch(/embedded FerretDB restarted/);
    expect(srv.ferretdbPid()).not.toBe(ferretPid);
    expect(isAlive(ferretPid!)).toBe(false);

    expect((await token(srv, 'before-crash@example.test')).status).toBe(200);
    expect((await signup(srv, 'after-crash@example.test')).status).toBe(200);
    const conn = await mongoose.createConnection(srv.databaseUri, { dbName: 'downstream' }).asPromise();
    try {
      const emails = (await conn.collection('users').find({}, { projection: { email: 1 } }).toArray()).map((u) => u.email as string);
      expect(emails.sort()).toEqual(['after-crash@example.test', 'before-crash@example.test']);
    } finally {
      await conn.close();
    }
    srv.process.kill('SIGTERM');
    expect(await exitOf(srv.process)).toBe(0);
  }, 90_000);

  it('lets requests in flight finish on SIGTERM, refuses new ones, closes the database and exits 0', async () => {
    const srv = await startServer();
    // In flight for sure: the server has the headers and half of each body when SIGTERM lands.
    const inFlight = Array.from({ length: 6 }, (_, i) => halfSentSignup(srv.url, `inflight-${i}@example.test`));
    await Promise.all(inFlight.map((r) => r.started));
    await sleep(300);
    const ferretPid = srv.ferretdbPid();
    srv.process.kill('SIGTERM');
    // Once the listener is closed a new connection is refused (or reset from the closing backlog).
    const port = Number(new URL(srv.url).port);
    let late = await connectOutcome(port);
    for (let i = 0; i < 200 && late === 'connected'; i++) late = await connectOutcome(port);
    expect(['ECONNREFUSED', 'ECONNRESET']).toContain(late);
    expect(srv.process.exitCode).toBeNull();

    for (const r of inFlight) r.finish();
    const outcomes = await Promise.all(inFlight.map((r) => r.done));
    expect(outcomes).toEqual(outcomes.map(() => 202));
    expect(await exitOf(srv.process)).toBe(0);
    expect(await waitFor(() => !isAlive(ferretPid!), 5_000)).toBe(true);

    // Every acknowledged sign-up is on disk: start again on the same data directory and look.
    const again = await startServer({}, srv.dataDir);
    try {
      const conn = await mongoose.createConnection(again.databaseUri, { dbName: 'downstream' }).asPromise();
      expect(await conn.collection('users').countDocuments()).toBe(6);
      await conn.close();
    } finally {
      again.process.kill('SIGTERM');
      await exitOf(again.process);
    }
  }, 90_000);
});

describe('an unwritable data directory at start', () => {
  afterEach(killSpawned);
  const blocked = () => {
    // A path below a regular file cannot be created, not even by root: the portable "unwritable".
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-blocked-')), 'not-a-dir');
    fs.writeFileSync(file, 'x');
    return path.join(file, 'data');
  };

  it.each([
    ['with JWT_SECRET given', {}],
    ['with the development secret to be generated there', { JWT_SECRET: undefined }],
  ])('stops with one clear message naming DATA_DIR and no stack trace (%s)', async (_label, extra) => {
    const dataDir = blocked();
    const child = runTs('server/index.ts', [], { ...serverEnv(dataDir), ...extra });
    expect(await exitOf(child)).toBe(1);
    expect(child.output()).toContain('Downstream could not start');
    expect(child.output()).toContain('DATA_DIR');
    expect(child.output()).toContain(dataDir);
    expect(child.output()).not.toMatch(/\n\s+at /);
  }, 30_000);
});

describe('a full or unwritable disk during an upload', () => {
  let ctx: TestContext;
  let disk: string;

  /** A 1 MiB tmpfs as DATA_DIR, so "disk full" is real (needs root, as CI has). */
  beforeAll(async () => {
    disk = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', disk]);
    ctx = await createTestContext({ DATA_DIR: disk, REPORT_POW_BITS: '0', REPORT_MIN_FILL_SECONDS: '0' });
  });
  afterAll(async () => {
    await ctx?.close();
    execFileSync('umount', [disk]);
  });

  const upload = async (files: Buffer[]) => {
    const challenge = (await request(ctx.app).get('/api/v1/reports/challenge')).body as { token: string };
    const req = request(ctx.app).post('/api/v1/reports').set('X-Report-Challenge', challenge.token).field('challenge', challenge.token).field('pow', '0');
    for (const [k, v] of Object.entries(reportFields())) for (const item of [v].flat()) req.field(k, String(item));
    for (const [i, data] of files.entries()) req.attach('evidence', data, `photo-${i}.png`);
    return req;
  };
  const filesUnder = (dir: string): string[] =>
    fs.existsSync(dir) && fs.statSync(dir).isDirectory()
      ? fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name))
      : [];

  it('refuses with 507 and a clear message when the disk is full, leaves no file behind, and saves nothing', async () => {
    const filler = path.join(disk, 'filler');
    // Leave a few KB: the first small picture fits, the second does not.
    const image = await noisyPng();
    fs.writeFileSync(filler, Buffer.alloc(1024 * 1024 - image.length - 8 * 1024));
    const before = await Report.countDocuments();

    const res = await upload([await pngImage(), image, image]);
    expect(res.status).toBe(507);
    expect(res.body.error).toMatchObject({ code: 'storage_unavailable', fields: { evidence: expect.stringMatching(/no room to store files/) } });
    expect(filesUnder(path.join(disk, 'files'))).toEqual([]);
    expect(await Report.countDocuments()).toBe(before);

    // Room again: the same upload goes through.
    fs.rmSync(filler);
    const retry = await upload([await pngImage(), image]);
    expect(retry.status).toBe(201);
    expect(filesUnder(path.join(disk, 'files'))).toHaveLength(2);
    expect(await Report.countDocuments()).toBe(before + 1);
  });

  it('refuses with 507 when the files directory cannot be written, and saves nothing', async () => {
    fs.rmSync(path.join(disk, 'files'), { recursive: true, force: true });
    fs.writeFileSync(path.join(disk, 'files'), 'not a directory');
    const before = await Report.countDocuments();

    const res = await upload([await pngImage()]);
    expect(res.status).toBe(507);
    expect(res.body.error.code).toBe('storage_unavailable');
    expect(await Report.countDocuments()).toBe(before);
    expect(fs.readFileSync(path.join(disk, 'files'), 'utf8')).toBe('not a directory');
  });
});

/** A PNG that does not compress away: about 200 KB. */
function noisyPng() {
  return sharp({ create: { width: 256, height: 256, channels: 3, background: '#777', noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).png().toBuffer();
}

/** A sign-up on its own connection that sends half its body now and the rest on `finish()`. */
function halfSentSignup(url: string, email: string) {
  const body = Buffer.from(JSON.stringify({ email, password: PASSWORD, name: 'In flight' }));
  const half = Math.floor(body.length / 2);
  let markStarted: () => void = () => {};
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  let req: http.ClientRequest | null = null;
  const done = new Promise<number>((resolve) => {
    req = http.request(`${url}/api/v1/auth/signup`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.write(body.subarray(0, half), () => markStarted());
  });
  return { started, done, finish: () => req!.end(body.subarray(half)) };
}

/** A fresh TCP connection (never a pooled keep-alive one): 'connected' or the error code. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      setTimeout(() => resolve('connected'), 5);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

async function waitForAsync(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return true;
    await sleep(200);
  }
  return false;
}
