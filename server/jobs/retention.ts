interface RetentionServices {
  cases: { runRetention(): Promise<{ checked: number; deleted: number; held: number; reports: number }> };
  reports: { removeUnclaimedEvidence(): Promise<{ removed: number; kept: number }> };
}

/**
 * Starts the hourly retention job; the timer never keeps the process alive. Each part logs
 * its own failure, so one failing does not hide the other's result.
 */
export function startRetentionSchedule(services: RetentionServices, logger: { info(o: object, m: string): void; error(o: object, m: string): void }, everyMs = 3_600_000) {
  const run = () =>
    Promise.all([
      services.cases.runRetention().then(
        (counts) => logger.info({ retention: counts }, 'retention run'),
        (err: unknown) => logger.error({ err }, 'retention run failed'),
      ),
      services.reports.removeUnclaimedEvidence().then(
        (counts) => logger.info({ unclaimedEvidence: counts }, 'unclaimed evidence removed'),
        (err: unknown) => logger.error({ err }, 'removing unclaimed evidence failed'),
      ),
    ]);
  const timer = setInterval(() => void run(), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
