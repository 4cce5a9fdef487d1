/**
 * Converts data written in older stored shapes (server/store/migrations), with progress:
 *   npm run migrate
 * Safe to interrupt and to run again: each migration continues where it stopped.
 */
import { systemClock } from '../server/clock';
import { loadConfig } from '../server/config';
import { connectDatabase } from '../server/db';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createStores } from '../server/store';
import { runMigrations } from '../server/store/migrations';

async function main() {
  const config = loadConfig();
  const logger = createLogger('warn');
  const db = await connectDatabase(config, logger, { maintenance: true });
  try {
    process.stdout.write(`database: ${db.describe()}\n`);
    // Sealing reports written in the clear needs the master key, which the reports service holds.
    const { reports } = createServices({ config, clock: systemClock, logger, stores: createStores(db.engine) });
    const applied = await runMigrations(db.engine, { clearReports: reports.clearReports, progress: (line) => process.stdout.write(`${line}\n`) });
    process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'nothing to migrate\n');
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`migrate: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
