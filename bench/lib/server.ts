import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { Env } from '../../server/config';
import { projectRoot } from '../../server/paths';
import { serverLogFile } from './target';

/**
 * `npm start`'s own command line (its node flags, such as the heap budget, included), so the
 * bench measures the server as it is started and cannot drift from it.
 */
export function startCommand(): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { scripts: { start: string } };
  // `exec` only makes the shell npm starts give way to node (so signals reach node).
  const [program, ...args] = pkg.scripts.start.replace(/^exec\s+/, '').split(/\s+/);
  if (program !== 'node') throw new Error(`the bench expects \`npm start\` to run node, not "${program}"`);
  return args;
}

/** The real server as a child process (PORT=0), as `npm start` runs it. */
export interface RunningServer {
  url: string;
  /** The database URI from the start-up banner (the embedded FerretDB the server started). */
  databaseUri: string | null;
  /** MONGODB_URI as the server was given it, when it uses an external MongoDB. */
  mongodbUri: string | null;
  pid: number;
  child: ChildProcess;
  /** The exit code or signal when the server died on its own; null while it runs. */
  died(): string | null;
  /** Its last lines on stderr (errors), for the report when something failed. */
  stderrTail(): string[];
  stop(): Promise<void>;
}

export async function startServer(env: Env, nodeArgs: string[] = []): Promise<RunningServer> {
  const child = spawn(process.execPath, [...nodeArgs, ...startCommand()], {
    cwd: projectRoot,
    env: { ...env, PORT: '0', HOST: '127.0.0.1' } as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const errors: string[] = [];
  if (serverLogFile) child.stdout!.pipe(fs.createWriteStream(serverLogFile, { flags: 'a' }));
  readline.createInterface({ input: child.stderr! }).on('line', (line) => {
    errors.push(line);
    if (errors.length > 30) errors.shift();
  });
  let stopping = false;
  let death: string | null = null;
  child.once('exit', (code, signal) => {
    if (!stopping) death = `exit code ${code ?? signal}`;
  });
  const banner = await new Promise<{ url: string; databaseUri: string | null }>((resolve, reject) => {
    let url = '';
    const timer = setTimeout(() => {
      // Not left running on its own: it would hold the data set's engine for the next run.
      child.kill('SIGTERM');
      reject(new Error(`the server did not start within 60 s (data written in an older shape? run \`npm run migrate\` on the data set first):\n${errors.join('\n')}`));
    }, 60_000);
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const running = /running at http:\/\/[^:]+:(\d+)/.exec(line);
      if (running) url = `http://127.0.0.1:${running[1]}`;
      const database = /database: (?:embedded FerretDB )?(mongodb:\/\/\S+)/.exec(line);
      if (url && /database:/.test(line)) {
        clearTimeout(timer);
        resolve({ url, databaseUri: database?.[1] ?? null });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited during start (code ${code}):\n${errors.join('\n')}`));
    });
  });
  return {
    ...banner,
    mongodbUri: env.MONGODB_URI ?? null,
    pid: child.pid!,
    child,
    died: () => death,
    stderrTail: () => errors.slice(),
    async stop() {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(force);
    },
  };
}

/** Resident memory of a process in MB from /proc (Linux), current and the kernel's high-water mark. */
export function readMemory(pid: number): { rssMb: number; hwmMb: number } | null {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

export function childPids(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Samples a process's RSS every `everyMs` for the whole run; `window()` gives the peak over a
 * phase (CSV import, export) to show whether memory stays flat.
 */
export function memorySampler(pid: number, everyMs = 200) {
  let peakMb = 0;
  const open = new Set<{ startMb: number; peakMb: number }>();
  const sample = () => {
    const m = readMemory(pid);
    if (!m || !Number.isFinite(m.rssMb)) return;
    peakMb = Math.max(peakMb, m.rssMb, Number.isFinite(m.hwmMb) ? m.hwmMb : 0);
    for (const w of open) w.peakMb = Math.max(w.peakMb, m.rssMb);
  };
  const timer = setInterval(sample, everyMs);
  timer.unref();
  sample();
  return {
    get peakMb() {
      sample();
      return peakMb;
    },
    window() {
      const w = { startMb: readMemory(pid)?.rssMb ?? 0, peakMb: 0 };
      open.add(w);
      return () => {
        sample();
        open.delete(w);
        return { startMb: w.startMb, peakMb: Math.max(w.peakMb, w.startMb) };
      };
    },
    stop: () => clearInterval(timer),
  };
}

/** CPU seconds a process has used so far (user + system), from /proc; 0 once it is gone. */
function cpuSeconds(pid: number): number {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // Fields 14 and 15 of stat (utime, stime), counted from the state field (3rd) here.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/**
 * Waits until the server and its database use less than `cores` of CPU for `quietS` seconds in
 * a row (at most `maxS`): background work left running (the jobs every instance runs when it
 * takes their leases, a fold still catching up) would otherwise be charged to the next phase.
 * Returns the seconds waited, and whether it went quiet.
 */
export async function untilQuiet(pid: number, opts: { cores?: number; quietS?: number; maxS?: number } = {}): Promise<{ waitedS: number; quiet: boolean }> {
  const { cores = 0.25, quietS = 3, maxS = 300 } = opts;
  const total = () => [pid, ...childPids(pid)].reduce((sum, p) => sum + cpuSeconds(p), 0);
  const started = Date.now();
  let calm = 0;
  let last = total();
  while (calm < quietS && Date.now() - started < maxS * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const now = total();
    calm = now - last < cores ? calm + 1 : 0;
    last = now;
  }
  return { waitedS: (Date.now() - started) / 1000, quiet: calm >= quietS };
}
