import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { projectRoot, toolsDir } from '../paths';
import { FERRETDB_PATCHES, prepareFerretDBBuild } from './ferretdb-patch';

/**
 * The embedded database: FerretDB v1 (SQLite backend) built from the Go module proxy by the
 * small launcher in tools/ferretdb, and run as a child process that this module owns.
 */

export const FERRETDB_VERSION = 'v1.24.0';
const sourceDir = path.join(projectRoot, 'tools', 'ferretdb');
export const ferretdbBinary = path.join(toolsDir, 'ferretdb-embedded');
const stampFile = `${ferretdbBinary}.stamp`;

/** A failure the user can fix; printed as one message, never with a stack trace. */
export class EmbeddedDatabaseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddedDatabaseError';
  }
}

/** Rebuild when the launcher's sources, pinned modules or patches change. */
function sourceStamp(): string {
  const hash = crypto.createHash('sha256');
  hash.update(FERRETDB_VERSION);
  hash.update(JSON.stringify(FERRETDB_PATCHES));
  for (const file of ['main.go', 'go.mod', 'go.sum']) {
    hash.update(fs.readFileSync(path.join(sourceDir, file)));
  }
  return hash.digest('hex');
}

export function ferretdbIsBuilt(): boolean {
  try {
    return fs.existsSync(ferretdbBinary) && fs.readFileSync(stampFile, 'utf8') === sourceStamp();
  } catch {
    return false;
  }
}

/** Builds the launcher once (about a minute the first time; a no-op afterwards). */
export async function ensureFerretDB(progress: (line: string) => void = () => {}): Promise<string> {
  if (ferretdbIsBuilt()) return ferretdbBinary;

  const goVersion = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (goVersion.error || goVersion.status !== 0) {
    throw new EmbeddedDatabaseError(
      'The embedded database needs Go (1.22 or newer) to build FerretDB once, and `go` was not found.\n' +
        'Install Go (for example `apt-get install golang`), or set MONGODB_URI to use an existing MongoDB.',
    );
  }

  fs.mkdirSync(toolsDir, { recursive: true });
  const tmp = `${ferretdbBinary}.${process.pid}.tmp`;
  progress(`Building embedded FerretDB ${FERRETDB_VERSION} with ${goVersion.stdout.trim()} (first run only)…`);
  const started = Date.now();
  const output: string[] = [];
  const env = { ...process.env, CGO_ENABLED: '0' };
  let buildIn: string;
  try {
    buildIn = prepareFerretDBBuild(sourceDir, path.join(toolsDir, 'ferretdb-build'), env);
  } catch (err) {
    throw new EmbeddedDatabaseError(`Preparing the embedded FerretDB build failed: ${(err as Error).message}\nCheck that the Go module proxy is reachable, or set MONGODB_URI to use an existing MongoDB.`);
  }
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn('go', ['build', '-trimpath', '-o', tmp, '.'], {
      cwd: buildIn,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const collect = (chunk: Buffer) => output.push(chunk.toString());
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const ticker = setInterval(
      () => progress(`  still building… ${Math.round((Date.now() - started) / 1000)} s`),
      15_000,
    );
    child.on('error', () => output.push('could not run go build'));
    child.on('close', (status) => {
      clearInterval(ticker);
      resolve(status);
    });
  });
  if (code !== 0) {
    fs.rmSync(tmp, { force: true });
    const tail = output.join('').trim().split('\n').slice(-15).join('\n');
    throw new EmbeddedDatabaseError(
      `Building the embedded FerretDB failed (go build exit ${code}):\n${tail}\n` +
        'Check that the Go module proxy is reachable, or set MONGODB_URI to use an existing MongoDB.',
    );
  }
  // Rename is atomic: a concurrent starter never sees a half-written binary.
  fs.renameSync(tmp, ferretdbBinary);
  fs.writeFileSync(stampFile, sourceStamp());
  progress(`  built in ${Math.round((Date.now() - started) / 1000)} s: ${path.relative(projectRoot, ferretdbBinary)}`);
  return ferretdbBinary;
}

export interface EmbeddedServer extends EventEmitter {
  readonly uri: string;
  readonly pid: number;
  /** False once the process has exited, for whatever reason. */
  readonly running: boolean;
  stop(): Promise<void>;
}

export interface StartOptions {
  dir: string;
  /** Loopback port to listen on; 0 (the default) picks a free one. A restart reuses the port so the driver reconnects by itself. */
  port?: number;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Lines FerretDB writes to stderr (its own log). */
  onLog?: (line: string) => void;
  startTimeoutMs?: number;
  /** Progress of the one-time build, for the console. */
  onBuildProgress?: (line: string) => void;
}

/**
 * Starts FerretDB on a free loopback port and resolves once it accepts connections.
 * Emits 'exit' (code, signal) if the process ends without `stop()`: the caller decides
 * what to do, nothing is restarted behind its back.
 */
export async function startEmbedded(opts: StartOptions): Promise<EmbeddedServer> {
  const binary = await ensureFerretDB(opts.onBuildProgress);
  try {
    fs.mkdirSync(opts.dir, { recursive: true });
    fs.accessSync(opts.dir, fs.constants.W_OK);
  } catch (err) {
    throw new EmbeddedDatabaseError(
      `The database directory ${opts.dir} is not writable (${(err as Error).message}). Check DATA_DIR.`,
    );
  }

  const child: ChildProcessWithoutNullStreams = spawn(
    binary,
    ['-dir', opts.dir, '-listen', `127.0.0.1:${opts.port ?? 0}`, '-log-level', opts.logLevel ?? 'warn'],
    // stdin stays open as a lifeline: the launcher exits when it closes, so a parent killed
    // with SIGKILL leaves no orphan.
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );

  const stderrTail: string[] = [];
  readline.createInterface({ input: child.stderr }).on('line', (line) => {
    stderrTail.push(line);
    if (stderrTail.length > 20) stderrTail.shift();
    opts.onLog?.(line);
  });

  const uri = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new EmbeddedDatabaseError(`FerretDB did not start within ${opts.startTimeoutMs ?? 20_000} ms.\n${stderrTail.join('\n')}`));
    }, opts.startTimeoutMs ?? 20_000);
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const m = /^READY (mongodb:\/\/\S+)$/.exec(line);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new EmbeddedDatabaseError(`Could not run ${binary}: ${err.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new EmbeddedDatabaseError(`FerretDB exited during start (code ${code}).\n${stderrTail.join('\n')}`));
    });
  });

  let stopping = false;
  const server = new (class extends EventEmitter implements EmbeddedServer {
    readonly uri = uri;
    readonly pid = child.pid ?? -1;
    get running() {
      return child.exitCode === null && child.signalCode === null;
    }
    async stop() {
      if (!this.running) return;
      stopping = true;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
  })();

  child.on('exit', (code, signal) => {
    child.stdin.destroy();
    if (!stopping) server.emit('exit', code, signal, stderrTail.slice());
  });
  // EPIPE on the lifeline after the child died is expected, not fatal.
  child.stdin.on('error', () => {});

  return server;
}
