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

/**
 * What an EPCIS query subscription receives: the new events its saved query matches, as an
 * EPCISQueryDocument. Not chosen from the list above: a subscription with a saved query gets it.
 */
export const EPCIS_QUERY_EVENT = 'epcis.events';
export type OutboxEventType = WebhookEventType | typeof EPCIS_QUERY_EVENT;

/** The simple query's parameters a subscription may save (as `GET /api/v1/epcis/events` takes them, less paging). */
export interface SavedEpcisQuery {
  eventType: string[];
  EQ_bizStep: string[];
  MATCH_epc: string[];
  MATCH_anyEPC: string[];
  EQ_bizLocation: string[];
}

export const DELIVERY_STATUSES = ['pending', 'delivered', 'dead'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];
