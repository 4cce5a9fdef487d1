import crypto from 'node:crypto';
import type { Clock } from '../../clock';
import type { Config } from '../../config';
import { ConflictError, NotFoundError, ValidationError } from '../../errors';
import type { Logger } from '../../logger';
import type { Page } from '../../middleware/validate';
import { EPCIS_QUERY_EVENT, WEBHOOK_EVENT_TYPES, type SavedEpcisQuery, type WebhookEventType } from '../../domain/webhooks';
import type { CasesStore } from '../../store/cases';
import type { OutboxEvent, StoredDelivery, StoredSubscription, WebhooksStore } from '../../store/webhooks';
import type { AuditService } from '../audit';
import { send } from './sender';
import { newSecret, signatureHeaders } from './signing';
import { resolveTarget, TargetRefused } from './target';

/**
 * Outgoing webhooks. A case's change carries its event in the same update (`webhookEvent`,
 * moved to the outbox by the delivery job); other changes emit an event into the outbox (`emit`,
 * one call at the service that made the change, just after it); the delivery job fans each event out to the subscriptions that want
 * it and delivers what is due, at least once, signed in the Standard Webhooks scheme
 * (signing.ts), to addresses the SSRF guard allows (target.ts), retrying with exponential
 * backoff for the retry window, then dead-lettered until an admin retries it.
 */

/** The first retry comes this long after a failure; each next one twice as long… */
const FIRST_RETRY_MS = 30_000;
/** …but never more than this apart. */
const MAX_RETRY_GAP_MS = 4 * 3_600_000;
/** Deliveries attempted at once by one run, and due deliveries one run takes. */
const PARALLEL = 5;
const DUE_PER_RUN = 100;
const EVENTS_PER_RUN = 200;
/** A rotated secret goes on signing for this long unless the admin says otherwise. */
export const DEFAULT_OVERLAP_HOURS = 24;

export interface WebhookEmitter {
  /**
   * Puts an event in the outbox. `key` names the change (e.g. the case and its new status), so
   * a change emitted twice (a retried request) is delivered once.
   */
  emit(type: WebhookEventType, key: string, data: Record<string, unknown>): Promise<void>;
}

/** What EPCIS capture needs of webhooks: the saved queries, and an outbox event for one of them. */
export interface EpcisQueryPush {
  activeEpcisQueries(): Promise<Array<{ _id: string; epcisQuery: SavedEpcisQuery }>>;
  /** Puts one subscription's query results in the outbox; `key` names them (a chunk processed again pushes nothing twice). */
  emitQueryResults(subscriptionId: string, key: string, document: Record<string, unknown>): Promise<void>;
}

const outboxId = (type: string, key: string) => `evt_${crypto.createHash('sha256').update(`${type}|${key}`).digest('hex').slice(0, 24)}`;

/**
 * A webhook event for the changed document to carry, written in the same update as the change
 * (a case's `pendingEvents`): the delivery job moves it to the outbox, so a process that dies
 * right after the change still has its event delivered. `key` names the change, as for `emit`.
 */
export const webhookEvent = (type: WebhookEventType, key: string, data: Record<string, unknown>, at: Date): OutboxEvent => ({ _id: outboxId(type, key), type, data, occurredAt: at });

/** How long after `attempts` failures the next attempt comes. */
const retryDelay = (attempts: number) => Math.min(FIRST_RETRY_MS * 2 ** Math.max(0, attempts - 1), MAX_RETRY_GAP_MS);

const publicSubscription = (s: StoredSubscription) => ({
  id: s._id,
  url: s.url,
  description: s.description,
  eventTypes: s.eventTypes,
  epcisQuery: s.epcisQuery ?? null,
  active: s.active,
  secrets: s.secrets.map((x) => ({ createdAt: x.createdAt, expiresAt: x.expiresAt })),
  createdAt: s.createdAt,
  updatedAt: s.updatedAt,
});

const publicDelivery = (d: StoredDelivery) => ({
  id: d._id,
  eventId: d.eventId,
  type: d.type,
  status: d.status,
  attemptCount: d.attemptCount,
  lastResponseCode: d.lastResponseCode,
  lastError: d.lastError,
  nextAttemptAt: d.nextAttemptAt,
  attempts: d.attempts,
  createdAt: d.createdAt,
  deliveredAt: d.deliveredAt,
});

export function createWebhooksService(deps: {
  clock: Clock;
  config: Config;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  audit: AuditService;
  stores: { webhooks: WebhooksStore; cases: Pick<CasesStore, 'pendingWebhookEvents' | 'clearPendingWebhookEvents'> };
}) {
  const { clock, audit } = deps;
  const { timeoutMs, retryWindowMs, allowedPrivateTargets } = deps.config.webhooks;
  const store = deps.stores.webhooks;

  async function getSubscription(id: string) {
    const s = await store.subscriptionById(id);
    if (!s) throw new NotFoundError('No such webhook subscription.');
    return s;
  }

  /** The URL as a subscription may have it: syntax, then where it resolves to now. */
  async function checkTarget(url: string) {
    try {
      await resolveTarget(url, allowedPrivateTargets);
    } catch (err) {
      if (err instanceof TargetRefused) throw new ValidationError({ url: err.message });
      throw err;
    }
  }

  const liveSecrets = (s: StoredSubscription, now: Date) => s.secrets.filter((x) => !x.expiresAt || x.expiresAt > now).map((x) => x.secret);

  /** One attempt of one delivery, recorded once; the guard re-checks the address at every attempt. */
  async function attempt(delivery: StoredDelivery, subscriptions: Map<string, StoredSubscription>) {
    const now = clock.now();
    const subscription = subscriptions.get(delivery.subscriptionId) ?? (await store.subscriptionById(delivery.subscriptionId));
    let result: { responseCode: number | null; error: string | null; ms: number };
    if (!subscription?.active) result = { responseCode: null, error: 'the subscription was removed', ms: 0 };
    else {
      const body = JSON.stringify(delivery.payload);
      try {
        const target = await resolveTarget(subscription.url, allowedPrivateTargets);
        result = await send(target, signatureHeaders(liveSecrets(subscription, now), delivery.eventId, now, body), body, timeoutMs);
      } catch (err) {
        if (!(err instanceof TargetRefused)) throw err;
        result = { responseCode: null, error: `refused: ${err.message}`, ms: 0 };
      }
    }
    const delivered = result.responseCode !== null && result.responseCode >= 200 && result.responseCode < 300;
    const next = new Date(now.getTime() + retryDelay(delivery.attemptCount + 1));
    const gone = !subscription?.active || next.getTime() > delivery.windowStartedAt.getTime() + retryWindowMs;
    await store.recordAttempt(delivery._id, delivery.attemptCount, { at: now, ...result }, delivered ? { status: 'delivered', nextAttemptAt: null } : gone ? { status: 'dead', nextAttemptAt: null } : { status: 'pending', nextAttemptAt: next });
  }

  /**
   * Events the changes wrote into the changed cases move to the outbox, then leave the case:
   * written to the outbox first (idempotent by id), so a run that dies between the two, or a
   * case that changed meanwhile, moves the same events again and nothing is lost or doubled.
   */
  async function collectFromCases() {
    const cases = await deps.stores.cases.pendingWebhookEvents(EVENTS_PER_RUN);
    for (const c of cases) {
      for (const event of c.pendingEvents) await store.insertEvent(event);
      await deps.stores.cases.clearPendingWebhookEvents(c._id, c.rev);
    }
    return cases.length;
  }

  /** The outbox's events, one delivery per subscription that wants each; then the events leave the outbox. */
  async function fanOut(subscriptions: readonly StoredSubscription[]) {
    const events = await store.waitingEvents(EVENTS_PER_RUN);
    if (!events.length) return 0;
    const now = clock.now();
    const deliveries: StoredDelivery[] = events.flatMap((e) =>
      subscriptions
        .filter((s) => (e.subscriptionId ? e.subscriptionId === s._id : e.type !== EPCIS_QUERY_EVENT && s.eventTypes.includes(e.type)))
        .map((s) => ({
          _id: `${e._id}:${s._id}`,
          subscriptionId: s._id,
          eventId: e._id,
          type: e.type,
          payload: { type: e.type, timestamp: e.occurredAt.toISOString(), data: e.data },
          status: 'pending' as const,
          attemptCount: 0,
          attempts: [],
          nextAttemptAt: now,
          lastResponseCode: null,
          lastError: null,
          windowStartedAt: now,
          createdAt: now,
          deliveredAt: null,
        })),
    );
    // Deliveries first: an event leaves the outbox only once its deliveries are stored.
    await store.insertDeliveries(deliveries);
    await store.removeEvents(events.map((e) => e._id));
    return events.length;
  }

  return {
    async emit(type: WebhookEventType, key: string, data: Record<string, unknown>) {
      await store.insertEvent({ _id: outboxId(type, key), type, data, occurredAt: clock.now() });
    },

    activeEpcisQueries: () => store.activeEpcisQueries(),

    async emitQueryResults(subscriptionId: string, key: string, document: Record<string, unknown>) {
      await store.insertEvent({ _id: outboxId(EPCIS_QUERY_EVENT, `${subscriptionId}|${key}`), type: EPCIS_QUERY_EVENT, subscriptionId, data: document, occurredAt: clock.now() });
    },

    /**
     * The delivery job's run (under its lease): fan out the outbox, then attempt every
     * delivery that is due, a few at a time. Resolves true when there was work.
     */
    async deliverDue(): Promise<boolean> {
      const collected = await collectFromCases();
      const subscriptions = await store.activeSubscriptions();
      const fanned = await fanOut(subscriptions);
      const due = await store.dueDeliveries(clock.now(), DUE_PER_RUN);
      const byId = new Map(subscriptions.map((s) => [s._id, s]));
      for (let at = 0; at < due.length; at += PARALLEL) await Promise.all(due.slice(at, at + PARALLEL).map((d) => attempt(d, byId)));
      return collected > 0 || fanned > 0 || due.length > 0;
    },

    /**
     * A subscription to event types, or (with `epcisQuery`) an EPCIS query subscription: the
     * new captured events its saved query matches are pushed to it, with or without event types.
     */
    async subscribe(input: { url: string; eventTypes: WebhookEventType[]; description: string; epcisQuery?: SavedEpcisQuery | null }, actor: { userId: string }) {
      const eventTypes = [...new Set(input.eventTypes)];
      const epcisQuery = input.epcisQuery ?? null;
      if ((!eventTypes.length && !epcisQuery) || eventTypes.some((t) => !WEBHOOK_EVENT_TYPES.includes(t))) throw new ValidationError({ eventTypes: `Choose at least one of: ${WEBHOOK_EVENT_TYPES.join(', ')} (or save an EPCIS query).` });
      await checkTarget(input.url);
      const now = clock.now();
      const secret = newSecret();
      const doc: StoredSubscription = { _id: `whs_${crypto.randomBytes(10).toString('hex')}`, url: input.url, description: input.description, eventTypes, epcisQuery, secrets: [{ secret, createdAt: now, expiresAt: null }], active: true, createdByUserId: actor.userId, createdAt: now, updatedAt: now };
      await store.insertSubscription(doc);
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'webhook.subscribed', subjectKind: 'webhook', subjectId: doc._id, detail: { url: input.url, eventTypes, epcisQuery } });
      // The secret is shown this once; afterwards only its dates are.
      return { subscription: publicSubscription(doc), secret };
    },

    async subscription(id: string) {
      return publicSubscription(await getSubscription(id));
    },

    async listSubscriptions(page: Page) {
      const { items, total } = await store.listSubscriptions(page);
      return { items: items.map(publicSubscription), total };
    },

    async unsubscribe(id: string, actor: { userId: string }) {
      const s = await store.deactivate(id, clock.now());
      if (!s) throw new NotFoundError('No such webhook subscription.');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'webhook.removed', subjectKind: 'webhook', subjectId: id });
      return publicSubscription(s);
    },

    /**
     * A new signing secret; the current ones go on signing for `overlapHours` (each delivery
     * then carries both signatures) so the receiver can switch without losing an event.
     */
    async rotateSecret(id: string, overlapHours: number, actor: { userId: string }) {
      const s = await getSubscription(id);
      const now = clock.now();
      const until = new Date(now.getTime() + overlapHours * 3_600_000);
      const secret = newSecret();
      const kept = s.secrets.filter((x) => !x.expiresAt || x.expiresAt > now).map((x) => ({ ...x, expiresAt: x.expiresAt && x.expiresAt < until ? x.expiresAt : until }));
      if (!(await store.replaceSecrets(id, s.secrets.length, [{ secret, createdAt: now, expiresAt: null }, ...kept], now))) throw new ConflictError('The secrets changed meanwhile; rotate again.');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'webhook.secret-rotated', subjectKind: 'webhook', subjectId: id, detail: { overlapHours } });
      return { subscription: publicSubscription((await store.subscriptionById(id))!), secret };
    },

    async deliveries(subscriptionId: string, page: Page) {
      await getSubscription(subscriptionId);
      const { items, total } = await store.deliveriesOf(subscriptionId, page);
      return { items: items.map(publicDelivery), total };
    },

    /** A dead-lettered delivery tried again now, with a fresh retry window. */
    async redeliver(subscriptionId: string, deliveryId: string, actor: { userId: string }) {
      const delivery = await store.deliveryById(deliveryId);
      if (!delivery || delivery.subscriptionId !== subscriptionId) throw new NotFoundError('No such delivery.');
      if (!(await store.requeue(deliveryId, subscriptionId, clock.now()))) throw new ConflictError('Only a dead-lettered delivery can be retried; this one is still being delivered or was delivered.');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'webhook.redelivered', subjectKind: 'webhook', subjectId: subscriptionId, detail: { deliveryId } });
      return publicDelivery((await store.deliveryById(deliveryId))!);
    },
  };
}

export type WebhooksService = ReturnType<typeof createWebhooksService>;
