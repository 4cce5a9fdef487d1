import { CheckInBatch } from '../../../models/check-ins';
import type { Migration } from './index';

/**
 * Outbox batches written before a batch named its log entries by `_id` (`logIds`): they held
 * the entries themselves, as one JSON string (`payload`: rows whose first value is the log
 * entry's `_id`) or, briefly, as an array of subdocuments (`entries`, each with its `id`). The
 * outbox is drained continuously, so there are few. A batch whose entries cannot be read is
 * left as it is; the summariser logs it and leaves it in the outbox, as it does any unreadable batch.
 */
const OLD_SHAPE = { logIds: { $exists: false } };

function logIdsOf(batch: { payload?: unknown; entries?: unknown }): string[] | null {
  try {
    const rows: unknown = typeof batch.payload === 'string' ? JSON.parse(batch.payload) : batch.entries;
    if (!Array.isArray(rows)) return null;
    const ids = rows.map((row) => (Array.isArray(row) ? row[0] : (row as { id?: unknown } | null)?.id));
    return ids.every((id): id is string => typeof id === 'string') ? ids : null;
  } catch {
    return null;
  }
}

export function checkInOutboxMigration(): Migration {
  return {
    id: '003-check-in-outbox',
    description: 'check-in outbox: entries → the ids of their log entries',
    unit: 'batches',
    remaining: () => CheckInBatch.collection.countDocuments(OLD_SHAPE),
    async run(progress) {
      let done = 0;
      for await (const batch of CheckInBatch.collection.find(OLD_SHAPE, { projection: { payload: 1, entries: 1 } })) {
        const logIds = logIdsOf(batch as { payload?: unknown; entries?: unknown });
        if (!logIds) continue;
        await CheckInBatch.collection.updateOne({ _id: batch._id, ...OLD_SHAPE }, { $set: { logIds }, $unset: { payload: '', entries: '' } });
        progress(++done);
      }
      return done;
    },
  };
}
