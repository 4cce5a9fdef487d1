/**
 * Re-wraps every report's data key under the current master key, with progress:
 *   ENCRYPTION_KEY=<new> ENCRYPTION_KEY_PREVIOUS=<old> npm run keys:rotate
 * The portal keeps running meanwhile (its instances, started with both variables, open keys
 * under either). Safe to interrupt and run again: it continues with the keys still under the
 * old master key. When it reports none left, ENCRYPTION_KEY_PREVIOUS can be removed.
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
  const db = await connectDatabase(config, logger);
  try {
    const { reports } = createServices({ config, clock: systemClock, logger, stores: createStores(db.engine) });
    const result = await reports.rotateDataKeys((done, total) => process.stdout.write(`  re-wrapped ${done.toLocaleString('en')} / ${total.toLocaleString('en')} data keys\n`));
    if (result.unknownMasterKeys.length) {
      process.stderr.write(
        `keys:rotate: ${result.total - result.rewrapped} data key(s) are under master key(s) ${result.unknownMasterKeys.join(', ')}, ` +
          'which is neither ENCRYPTION_KEY nor ENCRYPTION_KEY_PREVIOUS: set ENCRYPTION_KEY_PREVIOUS to that key and run again.\n',
      );
      process.exitCode = 1;
      return;
    }
    process.stdout.write(`Done: every data key is under the current master key. ENCRYPTION_KEY_PREVIOUS can now be removed.\n`);
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`keys:rotate could not run: ${err instanceof ConfigError ? err.message : ((err as Error)?.stack ?? String(err))}\n`);
  process.exit(1);
});
