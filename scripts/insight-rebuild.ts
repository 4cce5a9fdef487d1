/**
 * Recomputes the dashboard's unit tallies (server/store/insight.ts) from the units, with a streamed
 * cursor and progress output:
 *   npm run insight:rebuild
 * The tallies are kept on write by the services; run this after writing units outside them
 * (a restore, a bulk load straight into the collection), or when in doubt. It opens the same
 * database as the portal: with the embedded database, run it while the portal is stopped (and
 * with MongoDB preferably too: a unit changed while it runs may be missed until the next run).
 */
import { systemClock } from '../server/clock';
import { ConfigError, loadConfig } from '../server/config';
import { connectDatabase } from '../server/db';
import { createLogger } from '../server/logger';
import { rebuildUnitTallies } from '../server/store/insight';

async function main() {
  const config = loadConfig();
  const logger = createLogger('warn');
  const db = await connectDatabase(config, logger, { maintenance: true });
  try {
    process.stdout.write(`Rebuilding the unit tallies from the units (${db.describe()})\n`);
    const done = await rebuildUnitTallies({ now: systemClock.now(), progress: (n) => process.stdout.write(`  ${n.toLocaleString('en')} units read\n`) });
    process.stdout.write(`Done in ${(done.ms / 1000).toFixed(1)} s: ${done.units.toLocaleString('en')} units over ${done.models} models.\n`);
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`insight:rebuild could not run: ${err instanceof ConfigError ? err.message : ((err as Error)?.stack ?? String(err))}\n`);
  process.exit(1);
});
