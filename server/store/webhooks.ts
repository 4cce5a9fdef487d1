import type { DeliveryStatus, OutboxEventType, SavedEpcisQuery, WebhookEventType } from '../domain/webhooks';
import { WebhookDelivery, WebhookDeliveryDue, WebhookEvent, WebhookSubscription } from '../../models/webhooks';
import { byIds } from './by-ids';
import { chunksOf, duplicatesIn, type Engine, isDuplicateKey } from './engine';

/**
 * Webhook subscriptions, the outbox of events and the deliveries. Every write is one
 * single-document update guarded by what the writer read (a delivery's attempt count), so any
 * instance may deliver and an attempt is recorded once.
 */

export interface StoredSubscription {
  _id: string;
  url: string;
  description: string;
  eventTypes: WebhookEventType[];
  epcisQuery?: SavedEpcisQuery | null;
  secrets: Array<{ secret: string; createdAt: Date; expiresAt: Date | null }>;
  active: boolean;
  createdByUserId: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface OutboxEvent {
  _id: string;
  type: OutboxEventType;
  subscriptionId?: string | null;
  data: Record<string, unknown>;
  occurredAt: Date;
}

export interface Attempt {
  at: Date;
  responseCode: number | null;
  error: string | null;
  ms: number;
}

export interface StoredDelivery {
  _id: string;
  subscriptionId: string;
  eventId: string;
  type: string;
  payload: Record<string, unknown>;
  status: DeliveryStatus;
  attemptCount: number;
  attempts: Attempt[];
  nextAttemptAt: Date | null;
  lastResponseCode: number | null;
  lastError: string | null;
  windowStartedAt: Date;
  createdAt: Date;
  deliveredAt: Date | null;
}

/** Attempts a delivery keeps in its log (the count says how many there were). */
const ATTEMPTS_KEPT = 20;

/**
 * A due entry whose delivery cannot be read is dropped only after this long: the entry is
 * written before its delivery, so a fan-out still writing must not lose it.
 */
const ORPHAN_DUE_MS = 10 * 60_000;

// One path on both engines: subscriptions, the outbox and the deliveries due are small; a
// subscription's log is an index read on MongoDB and a scan of the deliveries on the embedded engine.
export function createWebhooksStore(engine: Engine) {
  /** Keeps a delivery's due entry in step with what was recorded: its next attempt, or none. */
  const setDue = (id: string, nextAttemptAt: Date | null) =>
    nextAttemptAt ? WebhookDeliveryDue.updateOne({ _id: id }, { $set: { nextAttemptAt } }, { upsert: true }) : WebhookDeliveryDue.deleteOne({ _id: id });

  return {
    // ----- subscriptions (a small collection) -----

    insertSubscription: (doc: StoredSubscription) => WebhookSubscription.create(doc),
    subscriptionById: (id: string) => WebhookSubscription.findById(id).lean<StoredSubscription>(),
    activeSubscriptions: () => WebhookSubscription.find({ active: true }).lean<StoredSubscription[]>(),
    activeEpcisQueries: () => WebhookSubscription.find({ active: true, epcisQuery: { $ne: null } }, { epcisQuery: 1 }).lean<Array<{ _id: string; epcisQuery: SavedEpcisQuery }>>(),
    async listSubscriptions(page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([WebhookSubscription.find({}).sort({ createdAt: -1, _id: 1 }).skip(page.skip).limit(page.limit).lean<StoredSubscription[]>(), WebhookSubscription.countDocuments({})]);
      return { items, total };
    },
    /** Replaces the secrets, guarded by the list read (two rotations at once: one wins, the other is told). */
    async replaceSecrets(id: string, seen: number, secrets: StoredSubscription['secrets'], at: Date): Promise<boolean> {
      const res = await WebhookSubscription.updateOne({ _id: id, secrets: { $size: seen } }, { $set: { secrets, updatedAt: at } });
      return res.modifiedCount === 1;
    },
    deactivate: (id: string, at: Date) => WebhookSubscription.findOneAndUpdate({ _id: id }, { $set: { active: false, updatedAt: at } }, { new: true }).lean<StoredSubscription>(),

    // ----- the outbox -----

    /** Writes an event once (false: an event with this id is there or was fanned out already... as far as the outbox knows). */
    async insertEvent(doc: OutboxEvent): Promise<boolean> {
      try {
        await WebhookEvent.create(doc);
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },
    waitingEvents: (limit: number) => WebhookEvent.find({}).sort({ occurredAt: 1 }).limit(limit).lean<OutboxEvent[]>(),
    removeEvents: (ids: readonly string[]) => WebhookEvent.deleteMany({ _id: { $in: [...ids] } }),

    // ----- deliveries -----

    /** Inserts deliveries; those that exist already (a fan-out run again) are left as they are. */
    async insertDeliveries(docs: readonly StoredDelivery[]) {
      for (const group of chunksOf(docs)) {
        // Due first: a crash before the delivery leaves an entry the job drops, never a delivery it misses.
        await WebhookDeliveryDue.bulkWrite(
          group.map((d) => ({ updateOne: { filter: { _id: d._id }, update: { $setOnInsert: { nextAttemptAt: d.nextAttemptAt ?? d.createdAt } }, upsert: true } })),
          { ordered: false },
        );
        await duplicatesIn(() => WebhookDelivery.collection.insertMany(group as never[], { ordered: false }));
      }
    },

    /**
     * Pending deliveries due by `now`, oldest first. Due entries that no longer match their
     * delivery (recorded, but the entry's update lost to a crash) are put right on the way.
     */
    async dueDeliveries(now: Date, limit: number): Promise<StoredDelivery[]> {
      const due = await WebhookDeliveryDue.find({ nextAttemptAt: { $lte: now } }).sort({ nextAttemptAt: 1, _id: 1 }).limit(limit).lean();
      const found = await byIds<StoredDelivery>(engine, WebhookDelivery as never, due.map((d) => d._id));
      const ready: StoredDelivery[] = [];
      for (const [i, entry] of due.entries()) {
        const delivery = found[i];
        if (!delivery) {
          if (entry.nextAttemptAt.getTime() < now.getTime() - ORPHAN_DUE_MS) await setDue(entry._id, null);
        } else if (delivery.status !== 'pending') await setDue(entry._id, null);
        else if (delivery.nextAttemptAt && delivery.nextAttemptAt > now) await setDue(entry._id, delivery.nextAttemptAt);
        else ready.push(delivery);
      }
      return ready;
    },

    deliveryById: (id: string) => WebhookDelivery.findById(id).lean<StoredDelivery>(),

    async deliveriesOf(subscriptionId: string, page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([
        WebhookDelivery.find({ subscriptionId }, { payload: 0 }).sort({ createdAt: -1, _id: 1 }).skip(page.skip).limit(page.limit).lean<StoredDelivery[]>(),
        WebhookDelivery.countDocuments({ subscriptionId }),
      ]);
      return { items, total };
    },

    /**
     * Records one attempt and what follows (delivered, retry at `next`, or dead), guarded by the
     * attempt count read: false when another instance recorded this attempt first.
     */
    async recordAttempt(id: string, attemptCountSeen: number, attempt: Attempt, outcome: { status: DeliveryStatus; nextAttemptAt: Date | null }): Promise<boolean> {
      const res = await WebhookDelivery.updateOne(
        { _id: id, status: 'pending', attemptCount: attemptCountSeen },
        {
          $set: { status: outcome.status, nextAttemptAt: outcome.nextAttemptAt, lastResponseCode: attempt.responseCode, lastError: attempt.error, ...(outcome.status === 'delivered' ? { deliveredAt: attempt.at } : {}) },
          $inc: { attemptCount: 1 },
          $push: { attempts: { $each: [attempt], $slice: -ATTEMPTS_KEPT } },
        },
      );
      if (res.modifiedCount === 1) await setDue(id, outcome.status === 'pending' ? outcome.nextAttemptAt : null);
      return res.modifiedCount === 1;
    },

    /** A dead delivery back in the queue, with a fresh retry window (false: it was not dead). */
    async requeue(id: string, subscriptionId: string, now: Date): Promise<boolean> {
      // Due first, as on insert (an entry for a delivery that stayed dead is dropped by the job).
      await setDue(id, now);
      const res = await WebhookDelivery.updateOne({ _id: id, subscriptionId, status: 'dead' }, { $set: { status: 'pending', nextAttemptAt: now, windowStartedAt: now } });
      return res.modifiedCount === 1;
    },
  };
}

export type WebhooksStore = ReturnType<typeof createWebhooksStore>;
