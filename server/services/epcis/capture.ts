import crypto from 'node:crypto';
import type { Clock } from '../../clock';
import type { Logger } from '../../logger';
import { NotFoundError, ValidationError } from '../../errors';
import type { CatalogueStore, LeanUnit } from '../../store/catalogue';
import type { EpcisStore, StoredEpcisEvent, UnitEpcisEntry } from '../../store/epcis';
import type { AuditService } from '../audit';
import type { FlagHit, FlagsService, FlagToRaise } from '../flags';
import type { EpcisQueryPush } from '../webhooks';
import { cbvShort, countryOfLocationId, eventIdOf } from './identifiers';
import { eventMatches, queryDocument, type AnyEvent } from './query';
import type { EpcResolver } from './resolver';
import { checkDocument, type EventError } from './validation';

/**
 * EPCIS 2.0 capture: the document is checked against the schema when it arrives, its valid
 * events are stored in chunks and a capture job is answered at once; the background job
 * (`processCaptures`, under a lease) maps them onto units, their first sale and location, the
 * unit timeline and the red-flag rules, and counts its progress on the job.
 */

/**
 * Events per stored chunk: one chunk is one step of the job's progress. A step's writes go in
 * bulk commands side by side, so a bigger step costs fewer round trips per event.
 */
export const CAPTURE_CHUNK_EVENTS = 2_000;
/** Per-event errors a job keeps (the counts say how many there were). */
const EVENT_ERRORS_KEPT = 1_000;
/** Captures one job run works through, side by side (more only queue behind the engine's one writer). */
const CAPTURES_PER_RUN = 2;
/** Units whose flags and moves one step applies at once (each unit's own events in order). */
const UNITS_AT_ONCE = 25;
/** What capture reads of a unit: enough for its rules and its first sale. */
const CAPTURE_UNIT_FIELDS = { modelId: 1, serial: 1, status: 1, current: 1 } as const;

/** Business steps that move a unit: its first sale, else a transfer to the destination. */
const MOVING_STEPS = new Set(['shipping', 'receiving']);

export type CaptureErrorBehaviour = 'rollback' | 'proceed';

type RawEvent = Record<string, unknown> & {
  eventID?: string;
  type: string;
  eventTime: string;
  action?: string;
  bizStep?: string;
  disposition?: string;
  epcList?: string[];
  bizLocation?: { id: string };
  readPoint?: { id: string };
  sourceList?: Array<{ type: string; source: string }>;
  destinationList?: Array<{ type: string; destination: string }>;
};

/** A flag's id from the event, the rule and the item: an event processed twice raises nothing twice. */
const eventFlagId = (eventId: string, rule: string, item: string) => `flg_${crypto.createHash('sha256').update(`epcis|${eventId}|${rule}|${item}`).digest('hex').slice(0, 20)}`;

export function createCapture(deps: {
  clock: Clock;
  logger: Pick<Logger, 'info' | 'error'>;
  audit: AuditService;
  flags: FlagsService;
  store: EpcisStore;
  catalogue: Pick<CatalogueStore, 'recordFirstSale' | 'addUnitCountry'>;
  resolveEpcs: EpcResolver;
  webhooks: EpcisQueryPush;
}) {
  const { clock, audit, flags, store, catalogue, resolveEpcs, webhooks } = deps;

  async function startCapture(apiKeyId: string, doc: unknown, errorBehaviour: CaptureErrorBehaviour) {
    const check = checkDocument(doc);
    if (Object.keys(check.documentErrors).length) throw new ValidationError(check.documentErrors, 'The document is not a valid EPCIS 2.0 document.');
    const refused = new Set(check.eventErrors.map((e) => e.index));
    const accepted = errorBehaviour === 'rollback' && refused.size ? [] : check.events.flatMap((event, index) => (refused.has(index) ? [] : [{ index, event }]));
    const id = `cap_${crypto.randomBytes(10).toString('hex')}`;
    const chunks = Array.from({ length: Math.ceil(accepted.length / CAPTURE_CHUNK_EVENTS) }, (_, n) => ({ _id: `${id}:${n}`, captureId: id, events: accepted.slice(n * CAPTURE_CHUNK_EVENTS, (n + 1) * CAPTURE_CHUNK_EVENTS) }));
    const now = clock.now();
    const finished = chunks.length === 0;
    await store.insertCapture(
      {
        _id: id,
        apiKeyId,
        status: finished ? (refused.size ? 'failed' : 'succeeded') : 'queued',
        errorBehaviour,
        chunks: chunks.length,
        counts: { events: check.events.length, processed: 0, stored: 0, duplicates: 0, rejected: refused.size, matchedUnits: 0 },
        eventErrors: check.eventErrors.slice(0, EVENT_ERRORS_KEPT),
        createdAt: now,
        finishedAt: finished ? now : null,
      },
      chunks,
    );
    await audit.record({ actorKind: 'api-key', actorId: apiKeyId, action: 'epcis.captured', subjectKind: 'epcis-capture', subjectId: id, detail: { events: check.events.length, rejected: refused.size, errorBehaviour } });
    return getCapture(id);
  }

  async function getCapture(id: string) {
    const capture = await store.captureById(id);
    if (!capture) throw new NotFoundError('No such capture job.');
    return capture;
  }

  /** Countries of the locations the events name: our own URNs, then the location master data. */
  async function resolveLocations(ids: readonly string[]) {
    const countries = new Map<string, string | null>(ids.map((id) => [id, countryOfLocationId(id)]));
    const unknown = ids.filter((id) => !countries.get(id));
    (await store.countriesOfLocations(unknown)).forEach((c, i) => countries.set(unknown[i]!, c));
    return countries;
  }

  const destinationOf = (e: RawEvent) => e.destinationList?.find((d) => d.type === 'location' || d.type === 'urn:epcglobal:cbv:sdt:location')?.destination ?? null;

  /** The country an event places its items in: a shipment's destination first, else where it happened. */
  function countryOf(e: RawEvent, bizStep: string | null, countries: Map<string, string | null>) {
    const where = [e.bizLocation?.id, e.readPoint?.id].map((id) => (id ? (countries.get(id) ?? null) : null));
    const destination = destinationOf(e);
    const to = destination ? (countries.get(destination) ?? null) : null;
    const ordered = bizStep === 'shipping' ? [to, ...where] : [...where, to];
    return ordered.find((c): c is string => !!c) ?? null;
  }

  /** What one new event does to one unit besides its timeline: its first sale or country history, and the rules it trips. */
  async function applyToUnit(doc: StoredEpcisEvent, unit: LeanUnit, restricted: ReadonlySet<string>) {
    const moving = !!doc.bizStep && MOVING_STEPS.has(doc.bizStep);
    const hits: Array<FlagHit | null> = [];
    if (doc.country) {
      if (moving) {
        const firstSale = unit.status === 'unregistered' && (await catalogue.recordFirstSale(unit._id, doc.country, doc.eventTime));
        await catalogue.addUnitCountry(unit._id, doc.country, firstSale ? 'first-sale' : 'transfer', doc.eventTime);
      }
      hits.push(flags.rules.restrictedCountry(doc.country, restricted, moving ? 'transfer' : 'check-in'));
      if (!moving && unit.status !== 'unregistered') hits.push(flags.rules.countryMismatch(doc.country, unit.current?.country));
    }
    for (const hit of hits) {
      if (hit) await flags.raise(hit, { unitId: unit._id, modelId: unit.modelId, serial: unit.serial, country: doc.country }, { kind: 'epcis-event', id: doc._id }, { id: eventFlagId(doc._id, hit.rule, unit._id) });
    }
  }

  /**
   * EPCIS query subscriptions: the chunk's new events each saved query matches go to its
   * subscriber as one EPCISQueryDocument, through the webhook outbox (keyed by the chunk, so a
   * chunk processed again pushes nothing twice). An EPC named in the query matches the events
   * naming the same unit in any form (SGTIN, Digital Link, our unit URN).
   */
  async function pushToQuerySubscriptions(chunkId: string, docs: readonly StoredEpcisEvent[]) {
    if (!docs.length) return;
    for (const { _id, epcisQuery: q } of await webhooks.activeEpcisQueries()) {
      const named = new Set([...q.MATCH_epc, ...q.MATCH_anyEPC]);
      const resolved = named.size ? await resolveEpcs([...named]) : null;
      const units = new Set([...named].flatMap((epc) => { const n = resolved?.named.get(epc); return n && resolved?.units.has(n.unitId) ? [n.unitId] : []; }));
      const hits = docs.filter((d) => eventMatches(d.event as AnyEvent, { ...q, MATCH_epc: [], MATCH_anyEPC: [] }, null) && (!named.size || d.epcs.some((epc) => named.has(epc)) || d.unitIds.some((u) => units.has(u))));
      if (hits.length) await webhooks.emitQueryResults(_id, chunkId, queryDocument(clock.now(), hits.map((d) => d.event), _id));
    }
  }

  /** Stores and applies one chunk of a capture; safe to run again (events are keyed, effects guarded). */
  async function processChunk(captureId: string, chunkId: string, events: ReadonlyArray<{ index: number; event: unknown }>) {
    const started = performance.now();
    const lap = () => Math.round(performance.now() - started);
    const raw = events.map((e) => e.event as RawEvent);
    const { named, units } = await resolveEpcs([...new Set(raw.flatMap((e) => e.epcList ?? []))], CAPTURE_UNIT_FIELDS);
    const locationIds = [...new Set(raw.flatMap((e) => [e.bizLocation?.id, e.readPoint?.id, destinationOf(e)].filter((id): id is string => !!id)))];
    const countries = await resolveLocations(locationIds);
    const recordTime = clock.now();
    const all: StoredEpcisEvent[] = raw.map((e) => {
      const id = eventIdOf(e);
      const bizStep = cbvShort(e.bizStep);
      const epcs = e.epcList ?? [];
      return {
        _id: id,
        captureId,
        type: e.type,
        eventTime: new Date(e.eventTime),
        recordTime,
        action: e.action ?? null,
        bizStep,
        disposition: cbvShort(e.disposition),
        epcs,
        unitIds: [...new Set(epcs.flatMap((epc) => { const n = named.get(epc); return n && units.has(n.unitId) ? [n.unitId] : []; }))],
        bizLocation: e.bizLocation?.id ?? null,
        readPoint: e.readPoint?.id ?? null,
        sources: (e.sourceList ?? []).map((s) => ({ type: cbvShort(s.type) ?? s.type, id: s.source })),
        destinations: (e.destinationList ?? []).map((d) => ({ type: cbvShort(d.type) ?? d.type, id: d.destination })),
        country: countryOf(e, bizStep, countries),
        event: { ...e, eventID: id, recordTime: recordTime.toISOString() },
      };
    });
    // The same event twice in one step is one event.
    const ids = new Set<string>();
    const docs = all.filter((d) => !ids.has(d._id) && ids.add(d._id));
    const resolvedMs = lap();
    const inserted = await store.insertEvents(docs);
    const insertedMs = lap();
    // An event already stored by this capture is a chunk run again after a crash: apply it again (idempotently).
    const repeats = docs.flatMap((d, i) => (inserted[i] ? [] : [d._id]));
    const owners = new Map(repeats.map((id) => [id, null as string | null]));
    (await store.capturesOfEvents(repeats)).forEach((c, i) => owners.set(repeats[i]!, c));
    const mine = docs.filter((d, i) => inserted[i] || owners.get(d._id) === captureId);
    const timelines = new Map<string, UnitEpcisEntry[]>();
    for (const doc of mine) {
      for (const id of doc.unitIds) timelines.set(id, [...(timelines.get(id) ?? []), { eventId: doc._id, at: doc.eventTime, type: doc.type, bizStep: doc.bizStep ?? '', disposition: doc.disposition ?? '', country: doc.country ?? '' }]);
    }
    await store.appendUnitEvents(timelines);
    const timelinesMs = lap();
    await pushToQuerySubscriptions(chunkId, mine);
    const restricted = await flags.restrictedCountries();
    const perUnit = new Map<string, StoredEpcisEvent[]>();
    for (const doc of mine) for (const id of doc.unitIds) perUnit.set(id, [...(perUnit.get(id) ?? []), doc]);
    // Units are independent; a unit's own events apply in order (its first sale before later moves).
    const unitsToApply = [...perUnit];
    for (let at = 0; at < unitsToApply.length; at += UNITS_AT_ONCE) {
      await Promise.all(unitsToApply.slice(at, at + UNITS_AT_ONCE).map(async ([id, unitDocs]) => { for (const doc of unitDocs) await applyToUnit(doc, units.get(id)!, restricted); }));
    }
    let matchedUnits = 0;
    const unknownSerials: FlagToRaise[] = [];
    for (const doc of mine) {
      matchedUnits += doc.unitIds.length;
      // A catalogued model's GTIN with a serial the catalogue lacks: the check-ins' unknown-serial rule.
      for (const epc of doc.epcs) {
        const n = named.get(epc);
        if (!n || units.has(n.unitId) || !n.modelId) continue;
        const hit = flags.rules.unregisteredCheckIn(null, n.serial, n.modelId);
        if (hit) unknownSerials.push({ hit, subject: { unitId: null, modelId: n.modelId, serial: n.serial, country: doc.country }, source: { kind: 'epcis-event', id: doc._id }, id: eventFlagId(doc._id, hit.rule, n.unitId) });
      }
    }
    await flags.raiseMany(unknownSerials);
    // Where a step's time goes (cumulative ms), for tuning at scale: BENCH_SERVER_LOG shows it.
    deps.logger.info({ captureId, chunkId, events: all.length, units: units.size, ms: { resolved: resolvedMs, inserted: insertedMs, timelines: timelinesMs, applied: lap() } }, 'epcis capture: step done');
    return { processed: all.length, stored: inserted.filter(Boolean).length, duplicates: all.length - mine.length, matchedUnits };
  }

  /** Works through unfinished captures side by side, each chunk by chunk; resolves true when there was work. */
  async function processCaptures(): Promise<boolean> {
    const waiting = await store.unfinishedCaptures(CAPTURES_PER_RUN);
    await Promise.all(waiting.map(async ({ _id }) => {
      try {
        for (;;) {
          const capture = await getCapture(_id);
          if (capture.chunksDone >= capture.chunks) {
            await store.finishCapture(_id, capture.counts.rejected ? 'partial' : 'succeeded', clock.now());
            break;
          }
          const chunkId = `${_id}:${capture.chunksDone}`;
          const chunk = await store.chunk(chunkId);
          const counts = chunk ? await processChunk(_id, chunkId, chunk.events) : { processed: 0, stored: 0, duplicates: 0, matchedUnits: 0 };
          await store.chunkDone(_id, capture.chunksDone, counts);
        }
      } catch (err) {
        // The capture stays unfinished and the next run resumes it at the chunk that failed.
        deps.logger.error({ err, captureId: _id }, 'epcis capture: chunk failed; resumed on the next run');
      }
    }));
    return waiting.length > 0;
  }

  return { startCapture, getCapture, processCaptures };
}

/** The capture job as the API shows it. */
export function captureView(capture: { _id: string; status: string; counts: Record<string, number>; chunks: number; chunksDone: number; eventErrors: ReadonlyArray<Partial<EventError>>; createdAt: Date; finishedAt: Date | null }) {
  return {
    captureID: capture._id,
    running: capture.status === 'queued' || capture.status === 'running',
    success: capture.status === 'succeeded',
    status: capture.status,
    progress: { events: capture.counts.events ?? 0, processed: capture.counts.processed ?? 0, chunks: capture.chunks, chunksDone: capture.chunksDone },
    counts: capture.counts,
    errors: capture.eventErrors.map((e) => ({ index: e.index, eventID: e.eventID ?? null, field: e.field, message: e.message })),
    createdAt: capture.createdAt,
    finishedAt: capture.finishedAt,
  };
}
