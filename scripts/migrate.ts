/**
 * Converts data written in older stored shapes (server/store/migrations), with progress:
 *   npm run migrate
 * Safe to interrupt and to run again: each migration continues where it stopped.
 */
import { loadConfig } from '../server/config';
import { connectDatabase } from '../server/db';
import { createLogger } from '../server/logger';
import { runMigrations } from '../server/store/migrations';

async function main() {
  const config = loadConfig();
  const db = await connectDatabase(config, createLogger('warn'));
  try {
    process.stdout.write(`database: ${db.describe()}\n`);
    const applied = await runMigrations(db.engine, { progress: (line) => process.stdout.write(`${line}\n`) });
    process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'nothing to migrate\n');
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`migrate: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
