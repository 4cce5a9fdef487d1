/** The webhooks module's vocabulary: what can be subscribed to, and a delivery's states. */

export const WEBHOOK_EVENT_TYPES = [
  'case.opened',
  'case.status_changed',
  'case.closed',
  'flag.raised',
  'leverage.action_added',
  'leverage.updates_withheld',
  'leverage.updates_restored',
  'transfer.decided',
  // The case id and time only: never the report's content.
  'report.received',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export const DELIVERY_STATUSES = ['pending', 'delivered', 'dead'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];
