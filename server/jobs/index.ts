import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Services } from '../services';
import type { JobDefinition } from './runner';

/**
 * The portal's background jobs. Each runs on the one instance holding its lease in the
 * database (runner.ts), so N instances behind a proxy do each job once, and a job whose
 * instance dies moves to another within the lease length. Every job is safe to run again
 * after a crash part-way: its writes are guarded or idempotent.
 */
export function backgroundJobs(
  services: Pick<Services, 'checkIns' | 'cases' | 'reports' | 'insight' | 'screening' | 'certificates' | 'epcis' | 'webhooks' | 'partners' | 'notifications'>,
  jobs: Config['jobs'],
  logger: Pick<Logger, 'info'>,
): JobDefinition[] {
  return [
    {
      // Folds the check-in outbox into unit summaries, history buckets and red flags: often
      // while batches are waiting, else a look now and then (ingest only appends).
      name: 'check-in-summaries',
      everyMs: jobs.checkInIdleSweepMs,
      busyEveryMs: jobs.checkInSweepMs,
      runOnAcquire: true,
      run: () => services.checkIns.sweep(),
    },
    {
      // EPCIS captures: their events mapped onto units, chunk by chunk, with progress on the job.
      name: 'epcis-captures',
      everyMs: jobs.epcisCaptureIdleMs,
      busyEveryMs: jobs.checkInSweepMs,
      runOnAcquire: true,
      run: () => services.epcis.processCaptures(),
    },
    {
      // Webhooks: the outbox fanned out to subscriptions, then every delivery due (retries included).
      name: 'webhook-deliveries',
      everyMs: jobs.webhookDeliveryEveryMs,
      busyEveryMs: jobs.checkInSweepMs,
      runOnAcquire: true,
      run: () => services.webhooks.deliverDue(),
    },
    {
      // Notices' e-mail, queued by the request that raised them: sent here so no answer waits
      // on a mail server; outgoing deliveries (webhooks, mail) share one cadence.
      name: 'notification-mail',
      everyMs: jobs.webhookDeliveryEveryMs,
      busyEveryMs: jobs.checkInSweepMs,
      runOnAcquire: true,
      run: async () => (await services.notifications.deliverMail()).more,
    },
    {
      // Reporter data of cases closed longer than RETENTION_MONTHS. On acquire too: an
      // instance restarted more often than hourly must not put it off for ever.
      name: 'retention',
      everyMs: jobs.retentionEveryMs,
      runOnAcquire: true,
      run: async () => logger.info({ retention: await services.cases.runRetention() }, 'retention run'),
    },
    {
      // Investigators' daily digest of deadlines 2 days away or passed; hourly, so it goes out
      // early each day, and once a day per person whichever instance holds the lease.
      name: 'deadline-digest',
      everyMs: jobs.retentionEveryMs,
      runOnAcquire: true,
      run: async () => logger.info({ deadlineDigests: await services.cases.sendDeadlineDigests() }, 'deadline digests sent'),
    },
    {
      // Evidence files of report forms never sent, once their form has expired.
      name: 'unclaimed-evidence',
      everyMs: jobs.retentionEveryMs,
      runOnAcquire: true,
      run: async () => logger.info({ unclaimedEvidence: await services.reports.removeUnclaimedEvidence() }, 'unclaimed evidence removed'),
    },
    {
      // Reports whose linking step a stopped or busy instance left pending.
      name: 'report-links',
      everyMs: jobs.reportLinksEveryMs,
      runOnAcquire: true,
      run: () => services.reports.completePendingLinks(),
    },
    {
      // End-use certificates past their validity raise their flags (on acquire too, as retention).
      name: 'certificate-expiry',
      everyMs: jobs.retentionEveryMs,
      runOnAcquire: true,
      run: async () => logger.info({ certificateExpiry: await services.certificates.sweepExpired() }, 'certificate expiry sweep'),
    },
    {
      // Every stored party against the lists again, after an import asked for it (a no-op
      // otherwise); progress is kept on the run's document for the lists page.
      name: 'screening-rescreen',
      everyMs: jobs.reportLinksEveryMs,
      runOnAcquire: true,
      run: async () => {
        const done = await services.screening.rescreen();
        if (done) logger.info({ rescreen: done }, 'screening re-run');
      },
    },
    {
      // Sell-through reports folded onto units, diversion flags and scorecards: often while
      // reports are waiting, else a look now and then (the request only appends).
      name: 'partner-sales',
      everyMs: jobs.checkInIdleSweepMs,
      busyEveryMs: jobs.checkInSweepMs,
      runOnAcquire: true,
      run: () => services.partners.foldSales(),
    },
    {
      // Diversion rules that need time to pass (partners' grace periods): each unit's flag once.
      name: 'partner-diversion',
      everyMs: jobs.partnerDiversionEveryMs,
      runOnAcquire: false,
      run: async () => logger.info({ partnerDiversion: await services.partners.sweepDiversion() }, 'partner diversion sweep'),
    },
    {
      // The dashboard's unit tallies on a database that never had them (first start of this
      // version); a no-op once they exist. The rebuild itself is claimed in the database too.
      name: 'unit-tallies',
      everyMs: Number.POSITIVE_INFINITY,
      runOnAcquire: true,
      run: () => services.insight.ensureUnitTallies(),
    },
  ];
}
