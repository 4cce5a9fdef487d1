import { CheckInBatch } from '../../../models/check-ins';
import type { BatchEntry } from '../check-ins';
import type { Migration } from './index';

type OldRow = [id: string, serial: string, model: string | null, unitId: string | null, firmware: string, observedAt: string, country: string];

/**
 * Outbox batches written before the entries were an array of subdocuments: they held one JSON
 * string (`payload`). The outbox is drained continuously, so there are few, and only while an
 * upgraded database had check-ins still to fold. A payload that does not parse is left as it
 * is; the summariser logs it and leaves it in the outbox, as it does any unreadable batch.
 */
export function checkInOutboxMigration(): Migration {
  const waiting = () => CheckInBatch.collection.find({ payload: { $type: 'string' } }, { projection: { payload: 1 } });
  return {
    id: '003-check-in-outbox',
    description: 'check-in outbox: JSON string → array of entries',
    unit: 'batches',
    remaining: () => CheckInBatch.collection.countDocuments({ payload: { $type: 'string' } }),
    async run(progress) {
      let done = 0;
      for await (const batch of waiting()) {
        let entries: BatchEntry[];
        try {
          entries = (JSON.parse(batch.payload as string) as OldRow[]).map(([id, serial, model, unitId, firmware, observedAt, country]) => ({ id, serial, model, unitId, firmware, observedAt: new Date(observedAt), country }));
        } catch {
          continue;
        }
        await CheckInBatch.collection.updateOne({ _id: batch._id, payload: { $type: 'string' } }, { $set: { entries }, $unset: { payload: '' } });
        progress(++done);
      }
      return done;
    },
  };
}
