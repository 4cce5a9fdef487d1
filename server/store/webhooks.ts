import type { DeliveryStatus, OutboxEventType, SavedEpcisQuery, WebhookEventType } from '../domain/webhooks';
import { WebhookDelivery, WebhookEvent, WebhookSubscription } from '../../models/webhooks';
import { chunksOf, type Engine, isDuplicateKey } from './engine';

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

// One path on both engines: subscriptions and the outbox are small; the deliveries due and a
// subscription's log are index reads on MongoDB and scans of the deliveries on the embedded engine.
export function createWebhooksStore(_engine: Engine) {
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
        try {
          await WebhookDelivery.collection.insertMany(group as never[], { ordered: false });
        } catch (err) {
          const writeErrors = (err as { writeErrors?: Array<{ code?: number }> | { code?: number } }).writeErrors;
          const list = Array.isArray(writeErrors) ? writeErrors : writeErrors ? [writeErrors] : null;
          if (!list?.length || !list.every(isDuplicateKey)) throw err;
        }
      }
    },

    /** Pending deliveries due by `now`, oldest first (on the embedded engine a scan of the deliveries). */
    dueDeliveries: (now: Date, limit: number) => WebhookDelivery.find({ status: 'pending', nextAttemptAt: { $lte: now } }).sort({ nextAttemptAt: 1 }).limit(limit).lean<StoredDelivery[]>(),

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
      return res.modifiedCount === 1;
    },

    /** A dead delivery back in the queue, with a fresh retry window (false: it was not dead). */
    async requeue(id: string, subscriptionId: string, now: Date): Promise<boolean> {
      const res = await WebhookDelivery.updateOne({ _id: id, subscriptionId, status: 'dead' }, { $set: { status: 'pending', nextAttemptAt: now, windowStartedAt: now } });
      return res.modifiedCount === 1;
    },
  };
}

export type WebhooksStore = ReturnType<typeof createWebhooksStore>;
