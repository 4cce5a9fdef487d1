import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runTs, waitFor } from './processes';

/**
 * Helpers for the fault, security and soak suites: a real `server/index.ts` process on its
 * own embedded database, and small HTTP helpers that never throw on a refused connection.
 */

export interface RunningServer {
  process: ReturnType<typeof runTs>;
  url: string;
  /** The embedded FerretDB's URI as the banner shows it (the database is `downstream`). */
  databaseUri: string;
  dataDir: string;
  ferretdbPid(): number | undefined;
}

export const serverEnv = (dataDir: string, extra: Record<string, string | undefined> = {}) => ({
  MONGODB_URI: undefined,
  DATA_DIR: dataDir,
  PORT: '0',
  LOG_LEVEL: 'warn',
  NODE_ENV: 'development',
  JWT_SECRET: 'security-suite-secret-security-suite-0123',
  // One master key for every spawned instance (production requires one; instances sharing a database must share it).
  ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
  RATE_LIMIT_PUBLIC_POST_PER_MIN: '100000',
  RATE_LIMIT_LOGIN_PER_15MIN: '100000',
  REPORT_SUBMISSIONS_PER_10MIN: '100000',
  ...extra,
});

/** Starts the portal as `npm start` does; resolves once the banner shows its address. */
export async function startServer(extra: Record<string, string | undefined> = {}, dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-faults-'))): Promise<RunningServer> {
  const child = runTs('server/index.ts', [], serverEnv(dataDir, extra));
  await waitFor(() => /running at http:\/\/localhost:\d+/.test(child.output()) || child.exitCode !== null, 60_000);
  const url = /running at (http:\/\/localhost:\d+)/.exec(child.output())?.[1];
  const databaseUri = /database: embedded FerretDB (mongodb:\/\/\S+)/.exec(child.output())?.[1];
  if (!url || !databaseUri) throw new Error(`server did not start:\n${child.output()}`);
  return {
    process: child,
    url: url.replace('localhost', '127.0.0.1'),
    databaseUri,
    dataDir,
    ferretdbPid: () => childOf(child.pid!, 'ferretdb-embedded'),
  };
}

/**
 * The child of `parent` running `name`, by scanning /proc for its parent pid: /proc's
 * per-thread `children` lists miss a child spawned after a restart by another thread.
 */
export function childOf(parent: number, name: string): number | undefined {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = fs.readFileSync(`/proc/${entry}/status`, 'utf8');
      if (Number(/PPid:\s+(\d+)/.exec(status)?.[1]) !== parent) continue;
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(name)) return Number(entry);
    } catch {
      // the process ended while we looked
    }
  }
  return undefined;
}

export interface Outcome {
  status: number;
  body: unknown;
  ms: number;
  /** When the answer came (epoch ms). */
  at?: number;
  /** Set when no HTTP answer came (connection refused or reset). */
  networkError?: string;
}

/** One JSON request; a refused connection is an outcome, not an exception. */
export async function call(url: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Outcome> {
  const started = Date.now();
  try {
    const res = await fetch(url, {
      method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
      headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: AbortSignal.timeout(init.timeoutMs ?? 15_000),
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    return { status: res.status, body, ms: Date.now() - started, at: Date.now() };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    return { status: 0, body: null, ms: Date.now() - started, networkError: cause?.code ?? (err as Error).name };
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
