/**
 * Deletes reporter data (contact details, messages, evidence files) of cases closed longer
 * than RETENTION_MONTHS, unless on legal hold; the cases keep a dated trace. Also removes
 * evidence files of report forms that were never sent, once the form has expired.
 *   npm run retention
 * The running portal does the same hourly (the retention jobs in server/jobs, on the instance holding their lease).
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
    const services = createServices({ config, clock: systemClock, logger, stores: createStores(db.engine) });
    const counts = await services.cases.runRetention();
    const unclaimed = await services.reports.removeUnclaimedEvidence();
    process.stdout.write(
      `Retention (${config.retentionMonths} months after closure): ${counts.checked} closed case(s) due, ` +
        `${counts.deleted} cleared (${counts.reports} report(s)), ${counts.held} on legal hold.\n` +
        `Evidence of report forms never sent: ${unclaimed.removed} file(s) removed.\n`,
    );
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`retention could not run: ${err instanceof ConfigError ? err.message : ((err as Error)?.stack ?? String(err))}\n`);
  process.exit(1);
});
