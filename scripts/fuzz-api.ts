/* eslint-disable no-restricted-properties -- a test tool like test/**: it reads its own knobs and hands the environment to the server it starts */
/**
 * Property-based fuzz of the OpenAPI document (issue 8): starts the portal on a throw-away
 * data directory and embedded database, signs in an admin, and runs schemathesis against
 * /api/v1/openapi.json with the checks `not_a_server_error`, `status_code_conformance` (no undocumented status) and
 * `response_schema_conformance`.
 * Exits with schemathesis' status. Run by `scripts/fuzz-api.sh` (`npm run test:fuzz`).
 *
 *   FUZZ_MAX_EXAMPLES (default 25) examples per operation; FUZZ_SEED for a reproducible run.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import mongoose from 'mongoose';
import { createApp } from '../server/app';
import { detectEngine } from '../server/store/engine';
import { systemClock } from '../server/clock';
import { loadConfig } from '../server/config';
import { createLogger } from '../server/logger';
import { projectRoot } from '../server/paths';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-fuzz-'));
const env: Record<string, string> = {
  ...(Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== undefined)) as Record<string, string>),
  NODE_ENV: 'development',
  DATA_DIR: dataDir,
  PORT: '0',
  LOG_LEVEL: 'error',
  JWT_SECRET: 'fuzz-secret-fuzz-secret-fuzz-secret-0123',
  RATE_LIMIT_PUBLIC_POST_PER_MIN: '1000000',
  RATE_LIMIT_LOGIN_PER_15MIN: '1000000',
  REPORT_SUBMISSIONS_PER_10MIN: '1000000',
  REPORT_POW_BITS: '0',
  REPORT_MIN_FILL_SECONDS: '0',
};
delete env.MONGODB_URI;

function startServer(): Promise<{ child: ReturnType<typeof spawn>; url: string; databaseUri: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(projectRoot, 'server/index.ts')], { cwd: projectRoot, env, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let url = '';
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      url ||= /running at (http:\/\/localhost:\d+)/.exec(line)?.[1] ?? '';
      const db = /database: embedded FerretDB (mongodb:\/\/\S+)/.exec(line)?.[1];
      if (url && db) resolve({ child, url: url.replace('localhost', '127.0.0.1'), databaseUri: db });
    });
    child.once('exit', (code) => reject(new Error(`the portal exited during start (code ${code})`)));
  });
}

/** An admin's Bearer token and a check-ins API key, made through the services on the server's own database. */
async function credentials(databaseUri: string): Promise<{ token: string; apiKey: string }> {
  await mongoose.connect(databaseUri, { dbName: 'downstream' });
  const config = loadConfig({ ...env, MONGODB_URI: databaseUri, MONGODB_DB: 'downstream' });
  const app = createApp({ config, db: { ping: async () => true, engine: await detectEngine(mongoose.connection) }, clock: systemClock, logger: createLogger('silent') });
  const { auth } = app.locals.services;
  const user = await auth.createUser({ email: 'fuzz-admin@example.test', password: 'fuzz admin password 1234', name: 'Fuzz admin' }, 'admin');
  const { token } = await auth.issueSession(user);
  const { key } = await auth.createApiKey({ name: 'fuzz', scopes: ['check-ins'] }, null);
  await mongoose.disconnect();
  return { token, apiKey: key };
}

function schemathesis(url: string, bearer: string, selection: string[]): Promise<number> {
  const args = [
    'run',
    `${url}/api/v1/openapi.json`,
    '--url', `${url}/api/v1`,
    '--checks', 'not_a_server_error,status_code_conformance,response_schema_conformance',
    '--header', `Authorization: Bearer ${bearer}`,
    ...selection,
    '--max-examples', process.env.FUZZ_MAX_EXAMPLES ?? '25',
    '--request-timeout', '20',
    '--suppress-health-check', 'all',
    '--report', 'junit',
    '--report-dir', path.join(projectRoot, 'test-results', 'fuzz'),
    ...(process.env.FUZZ_SEED ? ['--seed', process.env.FUZZ_SEED] : []),
  ];
  return new Promise<number>((resolve) => {
    const st = spawn('schemathesis', args, { stdio: 'inherit', env: { ...process.env, NO_COLOR: '1' } });
    st.once('exit', (code) => resolve(code ?? 1));
    st.once('error', () => resolve(127));
  });
}

async function main() {
  const server = await startServer();
  let status = 1;
  try {
    const { token, apiKey } = await credentials(server.databaseUri);
    // Signing out would end the fuzzer's own session and turn the rest of the run into 401s;
    // check-ins take an API key, not a session, so they get a run of their own.
    const asAdmin = await schemathesis(server.url, token, ['--exclude-path', '/auth/session', '--exclude-path-regex', '^/check-ins']);
    const asDevice = await schemathesis(server.url, apiKey, ['--include-path-regex', '^/check-ins']);
    status = asAdmin || asDevice;
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((resolve) => server.child.once('exit', resolve));
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  process.exit(status);
}

main().catch((err: unknown) => {
  process.stderr.write(`fuzz-api: ${(err as Error).message}\n`);
  process.exit(1);
});
