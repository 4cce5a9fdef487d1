/**
 * Set-up that `npm test` (and `npm start`, through the database module) needs on a fresh
 * machine: the embedded FerretDB binary, built once from the Go module proxy, and Debian's
 * Chromium for the browser tests. Idempotent: a second run checks and returns.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { usesEmbeddedDatabase } from '../server/config';
import { EmbeddedDatabaseError, ensureFerretDB } from '../server/db/embedded';

const CHROMIUM = '/usr/bin/chromium';
const say = (line: string) => process.stdout.write(`[set-up] ${line}\n`);

function ensureChromium() {
  if (fs.existsSync(CHROMIUM)) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status === 0;
  if (!isRoot || !hasApt) {
    throw new Error(`The browser tests need Debian's Chromium at ${CHROMIUM}. Install it with: sudo apt-get install -y chromium`);
  }
  say("Installing Debian's chromium package for the browser tests (first run only)…");
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', 'chromium']]) {
    const run = spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (run.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (exit ${run.status}).`);
  }
  if (!fs.existsSync(CHROMIUM)) throw new Error(`chromium installed but ${CHROMIUM} is missing.`);
  say('chromium installed.');
}

async function main() {
  const ferretdbOnly = process.argv.includes('--ferretdb-only');
  if (usesEmbeddedDatabase()) await ensureFerretDB(say);
  else say('MONGODB_URI is set: the embedded database is not needed.');
  if (!ferretdbOnly) ensureChromium();
}

main().catch((err: unknown) => {
  const message = err instanceof EmbeddedDatabaseError || err instanceof Error ? err.message : String(err);
  process.stderr.write(`\n[set-up] ${message}\n`);
  process.exit(1);
});
