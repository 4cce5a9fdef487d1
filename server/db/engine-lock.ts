import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../logger';
import { EmbeddedDatabaseError, ensureFerretDB, type EmbeddedServer, type StartOptions } from './embedded';
import { superviseEmbedded } from './supervisor';

/**
 * One embedded FerretDB per data directory, shared by every process that uses it.
 *
 * The per-collection write lock that makes single-document updates atomic lives inside the
 * FerretDB process (server/db/ferretdb-patch.ts), and SQLite files must not be served by two
 * engines at once. So the first process to start on a DATA_DIR creates `db/engine.lock`
 * atomically (O_EXCL), starts FerretDB and writes its URI there; every later process (a second
 * `npm start`, `npm run seed`, `audit:verify`, …) finds the lock and joins that URI.
 *
 * FerretDB dies with the process that started it (its stdin lifeline), so no orphan outlives
 * the last app process. When that owner dies while others still run, one of them takes the
 * lock over and starts FerretDB on the same port from the same files: every driver, pointed at
 * that port, reconnects by itself. A lock whose owner is dead is stale and taken over the same
 * way; so is one whose pid now belongs to another process (the start time the lock records
 * differs). A live owner is never taken over because its database is slow to answer: its
 * supervisor may be restarting it, and a second engine on the same files would share them with
 * the restarted one (seen under a load average of 24: two engines on one DATA_DIR).
 */

interface LockRecord {
  pid: number;
  /** The owner's start time (Linux clock ticks since boot): a pid reused by another process has another. */
  pidStartedAt?: string | null;
  /** Null while the owner is still starting FerretDB. */
  uri: string | null;
  startedAt: string;
}

export interface SharedEmbedded {
  readonly uri: string;
  /** 'owner': this process runs FerretDB; 'joined': it uses the one another process runs. */
  readonly role: 'owner' | 'joined';
  /** The process that runs FerretDB now. */
  readonly ownerPid: number;
  close(): Promise<void>;
}

/** How often a joined process checks that the owner is still there. */
const WATCH_INTERVAL_MS = 500;
/** A lock of an earlier version (no owner start time) whose URI does not answer this long is stale. */
const SILENT_OWNER_MS = 5_000;
/** How long to wait for an owner that has the lock but has not written its URI yet. */
const OWNER_START_WAIT_MS = 30_000;

function lockFileOf(dbDir: string): string {
  return path.join(dbDir, 'engine.lock');
}

export async function openSharedEmbedded(opts: StartOptions, logger: Logger): Promise<SharedEmbedded> {
  // Build first (a minute on a fresh machine) so that an owner holds the lock only while starting.
  await ensureFerretDB(opts.onBuildProgress);
  const lockFile = lockFileOf(opts.dir);
  fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });

  let server: EmbeddedServer | null = null;
  let lock: LockRecord & { uri: string };
  let closed = false;
  let watcher: NodeJS.Timeout | null = null;
  let takingOver = false;

  /** Becomes the owner, or joins the live one; `port`: the one clients already use (0: any). */
  const claimOrJoin = async (port: number, portRequired: boolean) => {
    const until = Date.now() + OWNER_START_WAIT_MS;
    let silentSince: number | null = null;
    for (;;) {
      if (Date.now() > until) throw new EmbeddedDatabaseError(`${lockFile} names a process whose embedded database never answered. Remove the file if no Downstream process runs on this DATA_DIR.`);
      if (createLock(lockFile)) {
        try {
          server = await startOwned(port, portRequired);
        } catch (err) {
          removeLockIf(lockFile, ownLock);
          throw err;
        }
        lock = { pid: process.pid, pidStartedAt: startTicksOf(process.pid), uri: server.uri, startedAt: new Date().toISOString() };
        writeLock(lockFile, lock);
        return;
      }
      const found = readLock(lockFile);
      if (found === 'missing') continue;
      if (found === 'unreadable') {
        // Created but not written yet, or left half-written by a crash.
        if (ageMs(lockFile) > 10_000) removeLockIf(lockFile, (l) => l === 'unreadable');
        else await sleep(100);
        continue;
      }
      if (!ownerAlive(found)) {
        logger.warn({ lockFile, deadPid: found.pid }, 'the embedded database lock names a process that is gone: taking it over');
        if (!portRequired && found.uri) port = portOf(found.uri);
        removeLockIf(lockFile, (l) => sameLock(l, found));
        continue;
      }
      if (!found.uri) {
        await sleep(100);
        continue;
      }
      if (await answers(found.uri)) {
        lock = { ...found, uri: found.uri };
        return;
      }
      silentSince ??= Date.now();
      // A live owner (same pid, same start time) is waited for, up to OWNER_START_WAIT_MS.
      if (found.pidStartedAt === undefined && Date.now() - silentSince > SILENT_OWNER_MS) {
        logger.warn({ lockFile, ownerPid: found.pid, uri: found.uri }, 'the embedded database named by the lock does not answer: taking it over');
        if (!portRequired) port = portOf(found.uri);
        removeLockIf(lockFile, (l) => sameLock(l, found));
        continue;
      }
      await sleep(200);
    }
  };

  const startOwned = async (port: number, portRequired: boolean): Promise<EmbeddedServer> => {
    const supervise = (p: number) =>
      superviseEmbedded({ ...opts, port: p }, logger, {
        // Another process took the lock over while ours was down: it serves the port now.
        stillOwner: () => ownLock(readLock(lockFile)),
      });
    try {
      return await supervise(port);
    } catch (err) {
      // At start nobody depends on the old port yet; after an owner's death everyone does.
      if (portRequired || port === 0) throw err;
      logger.warn({ port, err: (err as Error).message }, 'the embedded database could not reuse its port: starting on a free one');
      return supervise(0);
    }
  };

  const becomeOwner = (s: EmbeddedServer) => {
    s.on('handover', () => {
      logger.warn({ lockFile }, 'another process now runs the embedded database: joining it');
      server = null;
      watch();
    });
  };

  /** A joined process: when the owner is gone, one joined process takes over on the same port. */
  const watch = () => {
    watcher = setInterval(() => {
      if (closed || takingOver) return;
      const current = readLock(lockFile);
      if (typeof current === 'object' && (ownerAlive(current) || current.pid === process.pid)) {
        if (current.uri && current.uri !== lock.uri) {
          logger.error({ uri: current.uri, connectedTo: lock.uri }, 'the embedded database moved to another port: restart this process');
        }
        if (current.uri) lock = { ...current, uri: current.uri };
        return;
      }
      if (current === 'unreadable' && ageMs(lockFile) < 10_000) return;
      takingOver = true;
      const previousOwner = lock.pid;
      claimOrJoin(portOf(lock.uri), true)
        .then(() => {
          if (closed) return;
          if (server) {
            if (watcher) clearInterval(watcher);
            watcher = null;
            becomeOwner(server);
            logger.warn({ previousOwner, uri: lock.uri }, 'the process that ran the embedded database is gone: this process runs it now');
          }
        })
        .catch((err: unknown) => logger.error({ err: (err as Error).message }, 'taking over the embedded database failed; trying again'))
        .finally(() => (takingOver = false));
    }, WATCH_INTERVAL_MS);
    watcher.unref();
  };

  await claimOrJoin(0, false);
  if (server) becomeOwner(server);
  else watch();

  return {
    get uri() {
      return lock.uri;
    },
    get role() {
      return server ? ('owner' as const) : ('joined' as const);
    },
    get ownerPid() {
      return lock.pid;
    },
    async close() {
      closed = true;
      if (watcher) clearInterval(watcher);
      const owned = server;
      if (!owned) return;
      // Engine first, then the lock: a joined process that sees the lock go can take the port.
      await owned.stop();
      removeLockIf(lockFile, ownLock);
    },
  };
}

/** O_EXCL: exactly one process creates the lock; the pid goes in at once. */
function createLock(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new EmbeddedDatabaseError(`Cannot create ${file} (${(err as Error).message}). Check DATA_DIR.`);
  }
  try {
    fs.writeSync(fd, JSON.stringify({ pid: process.pid, pidStartedAt: startTicksOf(process.pid), uri: null, startedAt: new Date().toISOString() } satisfies LockRecord));
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

/** Readers never see a half-written record: written aside, then renamed over. */
function writeLock(file: string, record: LockRecord) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(record), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function readLock(file: string): LockRecord | 'missing' | 'unreadable' {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw err;
  }
  try {
    const record = JSON.parse(text) as LockRecord;
    return Number.isInteger(record.pid) && record.pid > 0 ? record : 'unreadable';
  } catch {
    return 'unreadable';
  }
}

/** Removes the lock only if it still is the one judged (another process may have replaced it). */
function removeLockIf(file: string, judged: (current: ReturnType<typeof readLock>) => boolean) {
  const current = readLock(file);
  if (current !== 'missing' && judged(current)) fs.rmSync(file, { force: true });
}

const ownLock = (l: ReturnType<typeof readLock>) => typeof l === 'object' && l.pid === process.pid;
const sameLock = (a: ReturnType<typeof readLock>, b: LockRecord) => typeof a === 'object' && a.pid === b.pid && a.startedAt === b.startedAt;

function ageMs(file: string): number {
  try {
    return Date.now() - fs.statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** A zombie (dead, not yet reaped by its parent) counts as gone: it holds no engine any more. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return !/^\d+ \(.*\) Z/s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc (not Linux): the signal check is all there is
  }
}

/** When a process started, from /proc (field 22, after the command in parentheses); null where there is no /proc. */
function startTicksOf(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** The lock's owner still runs: its pid is alive and, where the lock says when it started, is the same process. */
function ownerAlive(record: LockRecord): boolean {
  if (!isAlive(record.pid)) return false;
  if (!record.pidStartedAt) return true;
  const now = startTicksOf(record.pid);
  return now === null || now === record.pidStartedAt;
}

const portOf = (uri: string) => Number(new URL(uri).port);

/** Whether something accepts connections at the URI's address within a second. */
function answers(uri: string): Promise<boolean> {
  const { hostname, port } = new URL(uri);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
