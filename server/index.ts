import http from 'node:http';
import { createApp, HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from './app';
import { systemClock } from './clock';
import { ConfigError, loadConfig } from './config';
import { connectDatabase } from './db';
import { EmbeddedDatabaseError } from './db/embedded';
import { backgroundJobs } from './jobs';
import { startJobs } from './jobs/runner';
import { createLogger } from './logger';
import { createJobsStore } from './store/jobs';
import { migrateAtStart, MigrationRequiredError } from './store/migrations';

/** Starts the portal: config → database (embedded unless MONGODB_URI) → HTTP. */
async function main() {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const db = await connectDatabase(config, logger);
  const app = createApp({ config, db, clock: systemClock, logger });
  // Data in an older stored shape: converted now if small, else the start stops with what to run.
  // After the app is built (it serves nothing yet): sealing clear reports needs the reports service's key.
  await migrateAtStart(db.engine, { clearReports: app.locals.services.reports.clearReports }, (line) => logger.info(line)).catch(async (err: unknown) => {
    await db.close();
    throw err;
  });

  // Check-in folding, retention, report links, the tally rebuild: each on the one instance
  // (of however many share this database) that holds its lease.
  const jobs = startJobs(backgroundJobs(app.locals.services, config.jobs, logger), {
    store: createJobsStore(db.engine),
    clock: systemClock,
    logger,
    leaseMs: config.jobs.leaseMs,
  });

  const server = http.createServer(app);
  // A slow body is not held for Node's default 300 s (issue 20): an upload has a minute.
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const shownHost = config.host === '0.0.0.0' || config.host === '127.0.0.1' ? 'localhost' : config.host;
  process.stdout.write(
    `\nDownstream is running at http://${shownHost}:${port}\n` +
      `  database: ${db.describe()}\n  data directory: ${config.dataDir}\n  instance: ${jobs.instanceId}\n  stop with Ctrl-C\n\n`,
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Stop accepting connections, let in-flight requests finish, then close the database.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const force = setTimeout(() => server.closeAllConnections(), 10_000).unref();
    // Runs in flight finish and the leases are freed, so another instance takes the jobs at once.
    await Promise.all([closed, jobs.stop().catch((err: unknown) => logger.error({ err }, 'stopping the background jobs failed'))]);
    clearTimeout(force);
    await db.close();
    logger.info('stopped');
    process.exit(0);
  };
  // A stray rejected promise is a bug to log and fix, not a reason to drop every request in
  // flight: the soak test found one when the database died mid check-in batch.
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled promise rejection'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

main().catch((err: unknown) => {
  // Problems the user can fix get one clear message, not a stack trace.
  if (err instanceof ConfigError || err instanceof EmbeddedDatabaseError || err instanceof MigrationRequiredError) {
    process.stderr.write(`\nDownstream could not start.\n${err.message}\n`);
  } else if ((err as { code?: string }).code === 'EADDRINUSE') {
    process.stderr.write(`\nDownstream could not start: the port is already in use. Set PORT to a free port.\n`);
  } else if ((err as Error)?.name === 'MongooseServerSelectionError') {
    process.stderr.write(`\nDownstream could not reach the database: ${(err as Error).message}\nCheck MONGODB_URI.\n`);
  } else {
    process.stderr.write(`\nDownstream could not start: ${(err as Error)?.stack ?? String(err)}\n`);
  }
  process.exit(1);
});
