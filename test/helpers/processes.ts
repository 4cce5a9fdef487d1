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

/** Runs a TypeScript entry point the way npm scripts do (tsx), with a controlled environment. */
export function runTs(script: string, args: string[], env: Record<string, string | undefined>): ChildProcess & { output: () => string } {
  const clean = Object.fromEntries(Object.entries({ ...process.env, ...env }).filter(([, v]) => v !== undefined)) as Record<string, string>;
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, script), ...args], { cwd: ROOT, env: clean, stdio: ['pipe', 'pipe', 'pipe'] });
  spawned.add(child);
  child.once('exit', () => spawned.delete(child));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return Object.assign(child, { output: () => out });
}

const spawned = new Set<ChildProcess>();

/** For afterEach: a failed test must not leave its servers running. */
export async function killSpawned() {
  const all = [...spawned];
  for (const child of all) child.kill('SIGKILL');
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
