import { Report, ReportLinkWait } from '../../../models/reports';
import type { Migration } from './index';

const PENDING = { linking: 'pending' };

/**
 * Reports filed before the link pass had its own queue waited for it as `linking: 'pending'`
 * alone; each gets its wait (the pass then finds it and removes the wait when done). Few: the
 * pass ran every minute. Resumable: a wait already there is left as it is.
 */
export function reportLinkWaitsMigration(): Migration {
  return {
    id: '006-report-link-waits',
    description: 'reports waiting for the link pass → its queue',
    unit: 'reports',
    remaining: () => Report.countDocuments(PENDING),
    async run(progress) {
      let done = 0;
      for await (const r of Report.find(PENDING, { receivedAt: 1 }).lean().cursor({ batchSize: 500 })) {
        await ReportLinkWait.updateOne({ _id: r._id }, { $setOnInsert: { queuedAt: r.receivedAt } }, { upsert: true });
        progress(++done);
      }
      return done;
    },
  };
}
