import mongoose, { Schema } from 'mongoose';
import { DELIVERY_STATUSES, EPCIS_QUERY_EVENT, WEBHOOK_EVENT_TYPES } from '../server/domain/webhooks';

/**
 * Outgoing webhooks: subscriptions (a small collection, scanned), the outbox of events not yet
 * fanned out to subscriptions, and one delivery per event and subscription (`_id` =
 * `<eventId>:<subscriptionId>`, so a fan-out run twice creates nothing twice).
 */

const secretSchema = new Schema(
  {
    secret: { type: String, required: true }, // whsec_… (needed in clear to sign)
    createdAt: { type: Date, required: true },
    /** Set when rotated: the old secret still signs until then, so receivers can switch over. */
    expiresAt: { type: Date, default: null },
  },
  { _id: false },
);

/** An EPCIS query subscription's saved query: each list "any of", an empty list no filter. */
const savedEpcisQuerySchema = new Schema(
  {
    eventType: { type: [String], default: [] },
    EQ_bizStep: { type: [String], default: [] },
    MATCH_epc: { type: [String], default: [] },
    MATCH_anyEPC: { type: [String], default: [] },
    EQ_bizLocation: { type: [String], default: [] },
  },
  { _id: false },
);

const subscriptionSchema = new Schema(
  {
    _id: { type: String, required: true }, // whs_…
    url: { type: String, required: true, maxlength: 2000 },
    description: { type: String, default: '', maxlength: 200 },
    eventTypes: { type: [String], enum: WEBHOOK_EVENT_TYPES, default: [] },
    /** Set on an EPCIS query subscription: new captured events it matches are pushed as `epcis.events`. */
    epcisQuery: { type: savedEpcisQuerySchema, default: null },
    secrets: { type: [secretSchema], default: [] },
    active: { type: Boolean, default: true },
    createdByUserId: { type: String, default: null },
    createdAt: { type: Date, required: true },
    updatedAt: { type: Date, required: true },
  },
  { versionKey: false },
);

export const WebhookSubscription = mongoose.model('WebhookSubscription', subscriptionSchema, 'webhookSubscriptions');

/** The outbox: an event written by the change that caused it, until it is fanned out. */
const webhookEventSchema = new Schema(
  {
    _id: { type: String, required: true }, // evt_… derived from the change (idempotent)
    type: { type: String, enum: [...WEBHOOK_EVENT_TYPES, EPCIS_QUERY_EVENT], required: true },
    /** For one subscription only (an EPCIS query's results); null: for every subscription wanting the type. */
    subscriptionId: { type: String, default: null },
    data: { type: Schema.Types.Mixed, required: true },
    occurredAt: { type: Date, required: true },
  },
  { versionKey: false, minimize: false },
);
webhookEventSchema.index({ occurredAt: 1 });

export const WebhookEvent = mongoose.model('WebhookEvent', webhookEventSchema, 'webhookEvents');

const attemptSchema = new Schema(
  {
    at: { type: Date, required: true },
    responseCode: { type: Number, default: null },
    error: { type: String, default: null },
    ms: { type: Number, default: 0 },
  },
  { _id: false },
);

const deliverySchema = new Schema(
  {
    _id: { type: String, required: true }, // <eventId>:<subscriptionId>
    subscriptionId: { type: String, required: true },
    eventId: { type: String, required: true },
    type: { type: String, required: true },
    /** The body sent: `{ type, timestamp, data }`. */
    payload: { type: Schema.Types.Mixed, required: true },
    status: { type: String, enum: DELIVERY_STATUSES, required: true },
    attemptCount: { type: Number, default: 0 },
    /** The latest attempts, oldest first (bounded). */
    attempts: { type: [attemptSchema], default: [] },
    nextAttemptAt: { type: Date, default: null },
    lastResponseCode: { type: Number, default: null },
    lastError: { type: String, default: null },
    /** Retries run for the retry window from here (reset by a manual retry of a dead delivery). */
    windowStartedAt: { type: Date, required: true },
    createdAt: { type: Date, required: true },
    deliveredAt: { type: Date, default: null },
  },
  { versionKey: false, minimize: false },
);
deliverySchema.index({ subscriptionId: 1, createdAt: -1 });

export const WebhookDelivery = mongoose.model('WebhookDelivery', deliverySchema, 'webhookDeliveries');

/**
 * A delivery still to attempt and when (`_id` = the delivery's): the delivery job, every few
 * seconds, reads this small collection rather than filtering the deliveries, which are kept
 * for the subscriptions' logs and grow without end (a scan each time on the embedded engine).
 */
const deliveryDueSchema = new Schema({ _id: { type: String, required: true }, nextAttemptAt: { type: Date, required: true } }, { versionKey: false });
deliveryDueSchema.index({ nextAttemptAt: 1 });
export const WebhookDeliveryDue = mongoose.model('WebhookDeliveryDue', deliveryDueSchema, 'webhookDeliveriesDue');
