/**
 * Checks the whole audit chain: every entry's hash over its content and the previous hash.
 *   npm run audit:verify
 * Uses the embedded database unless MONGODB_URI is set. Exits 0 when the chain is intact,
 * 1 naming the first broken entry, 2 when the check could not run.
 */
import { systemClock } from '../server/clock';
import { ConfigError, loadConfig } from '../server/config';
import { connectDatabase } from '../server/db';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createStores } from '../server/store';

async function main(): Promise<number> {
  const config = loadConfig();
  const logger = createLogger('warn');
  const db = await connectDatabase(config, logger);
  try {
    const services = createServices({ config, clock: systemClock, logger, stores: createStores(db.engine) });
    process.stdout.write(`Verifying the audit chain in ${db.describe()}…\n`);
    const result = await services.audit.verify((checked) => process.stdout.write(`  ${checked} entries checked\n`));
    if (result.ok) {
      process.stdout.write(`OK: the chain is intact (${result.checked} entries).\n`);
      return 0;
    }
    const broken = result.firstBroken!;
    process.stdout.write(`BROKEN at entry #${broken.seq}: ${broken.reason}. ${result.checked} entries before it are intact.\n`);
    return 1;
  } finally {
    await db.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`audit:verify could not run: ${err instanceof ConfigError ? err.message : ((err as Error)?.stack ?? String(err))}\n`);
    process.exit(2);
  },
);
