import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitFor(check: () => boolean, timeoutMs: number, stepMs = 100): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return check();
}

type Spawned = ChildProcess & { output: () => string };

/** Runs a TypeScript entry point the way npm scripts do (tsx), with a controlled environment. */
export function runTs(script: string, args: string[], env: Record<string, string | undefined>): Spawned {
  return tracked(spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, script), ...args], { cwd: ROOT, env: cleanEnv(env), stdio: ['pipe', 'pipe', 'pipe'] }));
}

/** Runs an npm script the way a person or a process manager does, with a controlled environment. */
export function runNpm(args: string[], env: Record<string, string | undefined>): Spawned {
  return tracked(spawn('npm', args, { cwd: ROOT, env: cleanEnv(env), stdio: ['pipe', 'pipe', 'pipe'] }));
}

const cleanEnv = (env: Record<string, string | undefined>) =>
  Object.fromEntries(Object.entries({ ...process.env, ...env }).filter(([, v]) => v !== undefined)) as Record<string, string>;

const spawned = new Set<ChildProcess>();

function tracked(child: ChildProcess): Spawned {
  spawned.add(child);
  child.once('exit', () => spawned.delete(child));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return Object.assign(child, { output: () => out });
}

/** For afterEach: a failed test must not leave its servers running, nor what they started (npm's node). */
export async function killSpawned() {
  const all = [...spawned];
  const below = all.flatMap((child) => (child.pid ? descendantPids(child.pid) : []));
  for (const child of all) child.kill('SIGKILL');
  for (const { pid } of below) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await Promise.all(all.map(exitOf));
}

export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

const read = (file: string) => {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
};

/** Direct children of `pid` whose command line contains `name` (Linux /proc). */
export function childPids(pid: number, name: string): number[] {
  const tasks = fs.existsSync(`/proc/${pid}/task`) ? fs.readdirSync(`/proc/${pid}/task`) : [];
  return tasks
    .flatMap((t) => read(`/proc/${pid}/task/${t}/children`).split(/\s+/).filter(Boolean).map(Number))
    .filter((child) => read(`/proc/${child}/cmdline`).includes(name));
}

/** Every process below `pid` (children, grandchildren, …), with its command line (Linux /proc). */
export function descendantPids(pid: number): { pid: number; cmdline: string }[] {
  const children = (parent: number) =>
    (fs.existsSync(`/proc/${parent}/task`) ? fs.readdirSync(`/proc/${parent}/task`) : []).flatMap((t) =>
      read(`/proc/${parent}/task/${t}/children`).split(/\s+/).filter(Boolean).map(Number),
    );
  const found: { pid: number; cmdline: string }[] = [];
  for (let queue = children(pid); queue.length; ) {
    const next = queue.shift()!;
    found.push({ pid: next, cmdline: read(`/proc/${next}/cmdline`).replaceAll('\0', ' ').trim() });
    queue.push(...children(next));
  }
  return found;
}

/** The instance name a started portal shows in its banner (its name in job lease histories). */
export function instanceIdOf(output: string): string | undefined {
  return /^\s+instance: (\S+)$/m.exec(output)?.[1];
}
