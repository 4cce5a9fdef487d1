/**
 * Fills the database with the demo data set (server/seed.ts): npm run seed [-- --units 2000]
 * Idempotent: run it again and it says what is already there. Passwords of the demo accounts
 * are generated on the first run and printed once; keep them (or reset them as an admin).
 */
import { parseArgs } from 'node:util';
import { createTestClock } from '../server/clock';
import { loadConfig } from '../server/config';
import { connectDatabase } from '../server/db';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createStores } from '../server/store';
import { seedDemo } from '../server/seed';

async function main() {
  const { values } = parseArgs({ options: { units: { type: 'string', default: '2000' } } });
  const units = Number(values.units);
  if (!Number.isInteger(units) || units < 16 || units > 200_000) throw new Error('--units: a whole number from 16 to 200000');

  const config = loadConfig();
  const logger = createLogger('warn');
  const db = await connectDatabase(config, logger);
  const started = Date.now();
  try {
    // The seed walks its own clock through the last six months, ending now.
    const clock = createTestClock(new Date());
    const services = createServices({ config, clock, logger, stores: createStores(db.engine) });
    const summary = await seedDemo(services, { units, clock, log: (line) => process.stdout.write(`  ${line}\n`) });

    process.stdout.write(`\nDemo data ready in ${Math.round((Date.now() - started) / 1000)} s:\n`);
    for (const [what, n] of Object.entries(summary.counts)) process.stdout.write(`  ${what.padEnd(14)}${n}\n`);
    process.stdout.write(`  red flags by rule: ${Object.entries(summary.flagsByRule).map(([r, n]) => `${r} ${n}`).join(', ')}\n\nDemo accounts (sign in at /login):\n`);
    for (const a of summary.accounts) {
      process.stdout.write(`  ${a.role.padEnd(13)} ${a.email.padEnd(36)} ${a.password ?? '(exists: password as printed by the first seed)'}\n`);
    }
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`seed: ${(err as Error).message}\n`);
  process.exit(1);
});
