/**
 * Recomputes every channel partner's footprint (where the units it holds were seen: the
 * dashboard's "Channel partners" map) from the units, with progress output:
 *   npm run partners:rebuild
 * The `partner-diversion` job rewrites the footprints on each run; run this after writing units,
 * check-ins or allocations outside the services (a restore, a bulk load), or when in doubt. It
 * raises no flag. It opens the same database as the portal: with the embedded database, run it
 * while the portal is stopped.
 */
import { systemClock } from '../server/clock';
import { ConfigError, loadConfig } from '../server/config';
import { connectDatabase } from '../server/db';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createStores } from '../server/store';

async function main() {
  const config = loadConfig();
  const logger = createLogger('warn');
  const db = await connectDatabase(config, logger, { maintenance: true });
  try {
    const { partners } = createServices({ config, clock: systemClock, logger, stores: createStores(db.engine) });
    process.stdout.write(`Rebuilding the partners' footprints from their units (${db.describe()})\n`);
    const started = performance.now();
    const done = await partners.rebuildFootprints((n) => process.stdout.write(`  ${n.toLocaleString('en')} units read\n`));
    process.stdout.write(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s: ${done.units.toLocaleString('en')} units over ${done.partners} partners.\n`);
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`partners:rebuild could not run: ${err instanceof ConfigError ? err.message : ((err as Error)?.stack ?? String(err))}\n`);
  process.exit(1);
});
