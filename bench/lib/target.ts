import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Env } from '../../server/config';
import { projectRoot } from '../../server/paths';
import type { DatasetSummary } from '../dataset';

/**
 * Where the benchmark keeps its database and manifest (git-ignored): bench/data, or
 * BENCH_DATA_DIR to keep several data sets (e.g. scale 4 beside scale 1) or profile on a copy.
 */
// eslint-disable-next-line no-restricted-properties -- a harness setting, read once like test/'s
export const benchDataDir = path.resolve(process.env.BENCH_DATA_DIR || path.join(projectRoot, 'bench', 'data'));
/** BENCH_SERVER_LOG=<file>: the server logs at info level into it (the summariser's per-fold phases, say). */
// eslint-disable-next-line no-restricted-properties -- a harness setting, read once like test/'s
export const serverLogFile = process.env.BENCH_SERVER_LOG || null;
export const resultsDir = path.join(projectRoot, 'bench', 'results');
export const manifestFile = path.join(benchDataDir, 'manifest.json');
export const BENCH_DB_NAME = 'downstream_bench';

/** What the generator leaves for the runner: the data set's facts and how to sign in. */
export interface Manifest {
  dataset: DatasetSummary;
  database: string;
  generatedAt: string;
  jwtSecret: string;
  admin: { email: string; password: string };
  investigator: { email: string; password: string };
  apiKey: string;
}

/**
 * The data set's master key for reports encrypted at rest (production refuses to start without
 * one): kept beside the data set, mode 0600, made on first use, so the generator, the runner and
 * data sets made before encryption existed all agree on it.
 */
function benchEncryptionKey(): string {
  const file = path.join(benchDataDir, 'encryption-key');
  if (!fs.existsSync(file)) {
    fs.mkdirSync(benchDataDir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, crypto.randomBytes(32).toString('base64'), { mode: 0o600, flag: 'wx' });
  }
  return fs.readFileSync(file, 'utf8').trim();
}

/**
 * The bench's own data directory and database name; MONGODB_URI, when set, is kept (the
 * benchmark then runs against that MongoDB). The JWT secret is the manifest's, so the
 * generator and the server agree on it.
 */
export function benchEnv(base: Env, jwtSecret: string, overrides: Env = {}): Env {
  return {
    ...base,
    NODE_ENV: 'production',
    DATA_DIR: benchDataDir,
    MONGODB_DB: BENCH_DB_NAME,
    JWT_SECRET: jwtSecret,
    ENCRYPTION_KEY: benchEncryptionKey(),
    LOG_LEVEL: serverLogFile ? 'info' : 'warn',
    ...overrides,
  };
}

/**
 * The environment the bench was started with: passed on to the server it starts as a child
 * (MONGODB_URI, PATH…), as the test harness does. The server itself still reads it only
 * through server/config.ts.
 */
// eslint-disable-next-line no-restricted-properties -- a harness that starts the server, like test/
export const inheritedEnv = (): Env => ({ ...process.env });

export const newSecret = () => crypto.randomBytes(36).toString('base64url');

export function readManifest(): Manifest {
  if (!fs.existsSync(manifestFile)) {
    throw new Error(`No benchmark data in ${path.relative(projectRoot, benchDataDir)}: run \`npm run bench:data -- --scale 1\` first.`);
  }
  return JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Manifest;
}

export function writeManifest(manifest: Manifest) {
  fs.mkdirSync(benchDataDir, { recursive: true });
  fs.writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
}
