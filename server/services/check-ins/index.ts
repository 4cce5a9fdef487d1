import crypto from 'node:crypto';
import type { Clock } from '../../clock';
import type { Logger } from '../../logger';
import type { CatalogueStore } from '../../store/catalogue';
import type { CheckInHistoryStore } from '../../store/check-in-history';
import type { CheckInsStore, UnitFacts } from '../../store/check-ins';
import type { RegistrationsStore } from '../../store/registrations';
import { ConflictError, type FieldErrors } from '../../errors';
import { modelOf, normaliseCode, serialOf, unitId } from '../catalogue/codes';
import type { FlagsService } from '../flags';
import { createControls } from './controls';
import { createSummariser } from './summariser';

export { checkInFlagId } from './entries';
export { foldRuns, MAX_RUNS } from './runs';
export { ABANDONED_WRITE_MS, FOLD_MAX_CHECK_INS, SUMMARY_MAX_LAG_MS, type SummaryBacklog } from './summariser';

/**
 * Check-ins: ingest from update servers and devices, the per-unit summaries and history they
 * feed (summariser.ts), and the unit controls that decide what a check-in is answered
 * (`allowed` / `withheld`, controls.ts).
 *
 * Ingest is the hot path (tens of millions of check-ins) and only appends: one outbox
 * document for the batch, the log with one unordered insert whose `_id`s carry idempotency,
 * and the answers from the one withheld-units document. No unit is read or written per
 * check-in: profiled at scale 1 on the embedded engine, a unit summary update costs 5-10 ms,
 * so a batch of 1,000 took 17 s while its insert took ~90 ms. Summaries, history and flags
 * trail the log by the summariser's backlog (`backlog()`, shown on /readyz): one instance at a
 * time folds it, the one holding the summariser's job lease (`sweep`, server/jobs).
 */

export const MAX_BATCH = 1_000;

export type UpdateAnswer = 'allowed' | 'withheld';

export interface CheckInItem {
  serial: string;
  /** SKU; when missing or not in the catalogue the serial alone is looked up. */
  model?: string | null;
  firmware: string;
  observedAt: Date;
  country: string;
  /** The caller's own id for this event: a retry with the same id is not stored twice. */
  eventId?: string | null;
}

export interface CheckInAnswer {
  serial: string;
  model: string | null;
  answer: UpdateAnswer;
  duplicate?: true;
}

const newBatchId = () => `cib_${crypto.randomBytes(12).toString('hex')}`;

export function createCheckInsService(deps: {
  clock: Clock;
  flags: FlagsService;
  logger?: Pick<Logger, 'error' | 'info'>;
  stores: { checkIns: CheckInsStore; checkInHistory: CheckInHistoryStore; catalogue: Pick<CatalogueStore, 'unitIdsWithSerial'>; registrations: Pick<RegistrationsStore, 'pendingTransferCountries'> };
}) {
  const { clock, flags, logger } = deps;
  const store = deps.stores.checkIns;

  /**
   * Units named by SKU and serial, by `_id`; then bare serials (and SKUs not found) by the
   * serial lookup. A serial only one unit carries resolves to it; one several models share
   * stays unresolved, with the models that carry it as `candidates`.
   */
  async function resolve(items: ReadonlyArray<{ model?: string | null; serial: string }>) {
    const named = [...new Set(items.flatMap((item) => (item.model ? [unitId(item.model, item.serial)] : [])))];
    const units = new Map<string, UnitFacts | null>();
    (await store.unitFacts(named)).forEach((u, i) => units.set(named[i]!, u));
    const unresolved = (item: { model?: string | null; serial: string }) => !item.model || !units.get(unitId(item.model, item.serial));
    const serials = [...new Set(items.filter(unresolved).map((item) => normaliseCode(item.serial)))];
    const carriers = new Map(await Promise.all(serials.map(async (s) => [s, await deps.stores.catalogue.unitIdsWithSerial(s)] as const)));
    const toRead = [...new Set([...carriers.values()].flatMap((ids) => (ids.length === 1 && !units.has(ids[0]!) ? ids : [])))];
    (await store.unitFacts(toRead)).forEach((u, i) => units.set(toRead[i]!, u));
    return items.map((item) => {
      const byModel = item.model ? units.get(unitId(item.model, item.serial)) : null;
      if (byModel) return { unit: byModel, candidates: [] };
      const ids = carriers.get(normaliseCode(item.serial)) ?? [];
      if (ids.length === 1) return { unit: units.get(ids[0]!) ?? null, candidates: [] };
      return { unit: null, candidates: ids.map(modelOf).sort() };
    });
  }

  const resolveUnits = async (items: ReadonlyArray<{ model?: string | null; serial: string }>) => (await resolve(items)).map((r) => r.unit);

  const summariser = createSummariser({ clock, flags, logger, store, history: deps.stores.checkInHistory, registrations: deps.stores.registrations, resolveUnits });

  /**
   * What each item is answered, and the unit it is logged under, without reading units: an item
   * naming its model is logged under that unit id (the summariser corrects the rare entry whose
   * unit turns out to be another or none); bare serials, and serials some withheld unit has, are
   * resolved exactly, so `withheld` is answered exactly when the unit the item resolves to is.
   * A serial that several models carry, without a model that settles it, is never answered by
   * a guess: the batch is refused (409) naming the candidate models, and nothing is stored.
   */
  async function answersFor(items: readonly CheckInItem[], fieldOf: (index: number) => string): Promise<Array<{ answer: UpdateAnswer; model: string | null; unitId: string | null }>> {
    const withheld = new Set(await store.withheldUnitIds());
    const withheldSerials = new Set([...withheld].map(serialOf));
    const exact = items.map((item) => !item.model || withheldSerials.has(normaliseCode(item.serial)));
    const resolved = await resolve(items.filter((_, i) => exact[i]));
    const ambiguous: FieldErrors = {};
    let next = 0;
    const answers = items.map((item, i) => {
      if (!exact[i]) return { answer: 'allowed' as const, model: item.model!, unitId: unitId(item.model!, item.serial) };
      const { unit, candidates } = resolved[next++]!;
      if (candidates.length) ambiguous[fieldOf(i)] = `Serial ${normaliseCode(item.serial)} is used by ${candidates.length} models (${candidates.join(', ')}): send the model (SKU) with it.`;
      if (!unit) return { answer: 'allowed' as const, model: item.model ?? null, unitId: null };
      return { answer: withheld.has(unit._id) ? ('withheld' as const) : ('allowed' as const), model: unit.modelId, unitId: unit._id };
    });
    if (Object.keys(ambiguous).length) {
      throw new ConflictError(`${Object.values(ambiguous)[0]}${Object.keys(ambiguous).length > 1 ? ` (and ${Object.keys(ambiguous).length - 1} more)` : ''}`, ambiguous, 'ambiguous_serial');
    }
    return answers;
  }

  async function ingestBatch(apiKeyId: string, items: readonly CheckInItem[], fieldOf: (index: number) => string): Promise<CheckInAnswer[]> {
    const receivedAt = clock.now();
    const answers = await answersFor(items, fieldOf);
    const batchId = newBatchId();
    const entries = items.map((item, i) => ({
      id: item.eventId ? `${apiKeyId}:${item.eventId}` : `ci_${crypto.randomBytes(12).toString('hex')}`,
      serial: item.serial,
      model: item.model ?? null,
      unitId: answers[i]!.unitId,
      firmware: item.firmware,
      observedAt: item.observedAt,
      country: item.country,
    }));
    // Outbox first: whatever part of the log gets written, the summariser will find it.
    await store.insertBatch({ _id: batchId, apiKeyId, receivedAt, size: entries.length, logIds: entries.map((e) => e.id) });
    const inserted = await store.insertLog(
      entries.map((e, i) => ({
        _id: e.id,
        unitId: e.unitId,
        modelSku: answers[i]!.model ?? '',
        serial: e.serial,
        firmware: e.firmware,
        observedAt: e.observedAt,
        receivedAt,
        country: e.country,
        apiKeyId,
        answer: answers[i]!.answer,
        flags: [],
        batchId,
      })),
    );
    summariser.stored(batchId, receivedAt, inserted.filter(Boolean).length);
    return items.map((item, i) => ({
      serial: item.serial,
      model: answers[i]!.model,
      answer: answers[i]!.answer,
      ...(inserted[i] ? {} : { duplicate: true as const }),
    }));
  }

  return {
    /**
     * Stores a batch of check-ins and answers each, in input order, whether an update may be
     * served. Retried items (same API key and event id) are answered again, marked
     * `duplicate`, and change nothing. Items must already be validated and normalised.
     * Unit summaries and red flags follow in the background (`settled()` waits for them).
     */
    ingest: (apiKeyId: string, items: readonly CheckInItem[]) => summariser.duringIngest(() => ingestBatch(apiKeyId, items, (i) => `items.${i}.model`)),

    /** One check-in, as `ingest` answers a batch of one; a refusal names its fields without an index. */
    ingestOne: async (apiKeyId: string, item: CheckInItem) => (await summariser.duringIngest(() => ingestBatch(apiKeyId, [item], () => 'model')))[0]!,

    /**
     * Folds the outbox, whoever ingested it: run by the instance holding the summariser's job
     * lease (server/jobs). Resolves true when batches were waiting, so the job comes back soon.
     */
    sweep: () => summariser.sweep(MAX_BATCH),

    /** Folds everything waiting now; for tests and scripts that run no job runner. */
    settled: () => summariser.settled(MAX_BATCH),

    backlog: () => summariser.backlog(MAX_BATCH),

    ...createControls(store),
  };
}

export type CheckInsService = ReturnType<typeof createCheckInsService>;
