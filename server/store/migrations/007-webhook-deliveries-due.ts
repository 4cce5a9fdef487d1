import { WebhookDelivery, WebhookDeliveryDue } from '../../../models/webhooks';
import type { Migration } from './index';

const PENDING = { status: 'pending' };

/**
 * Deliveries still to attempt, written before the delivery job read a due list of its own:
 * each gets its due entry. Few (the job runs every few seconds). Resumable: an entry already
 * there is left as it is.
 */
export function webhookDeliveriesDueMigration(): Migration {
  return {
    id: '007-webhook-deliveries-due',
    description: 'webhook deliveries still to attempt → the due list',
    unit: 'deliveries',
    remaining: () => WebhookDelivery.countDocuments(PENDING),
    async run(progress) {
      let done = 0;
      for await (const d of WebhookDelivery.find(PENDING, { nextAttemptAt: 1, createdAt: 1 }).lean().cursor({ batchSize: 500 })) {
        await WebhookDeliveryDue.updateOne({ _id: d._id }, { $setOnInsert: { nextAttemptAt: d.nextAttemptAt ?? d.createdAt } }, { upsert: true });
        progress(++done);
      }
      return done;
    },
  };
}
