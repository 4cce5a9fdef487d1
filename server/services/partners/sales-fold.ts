import { eachLimited, ingestFirst } from '../../concurrency';
import { APPROVING_DECISIONS } from '../../domain/partners';
import type { LeanPartner, LedgerSale, NewSaleBatch, StoredSale } from '../../store/partners';
import { serialOf } from '../catalogue/codes';
import type { FlagHit } from '../flags';
import type { diversionFlagRaiser, PartnerDeps } from './context';
import { reviewCriteria, saleRules } from './sale-rules';

/**
 * The sell-through fold: what a report's sales change beyond the ledger, done in the
 * background for many reports at once. The request only appends (the outbox entry and the
 * ledger, see channel.ts); a fold then
 *  1. screens the sales' end customers (a match holds the sale for the screening review),
 *  2. applies the diversion rules that look at one sale (territory, authorised models, a
 *     required approval, a unit never allocated or sold twice) and raises their flags,
 *  3. copies the sales onto their units' channel records (one write per unit),
 *  4. counts each unit's first completed sale on its seller's scorecard (once per report),
 *  5. records each report in the audit log (who sent it, how many sales were new),
 *  6. deletes the reports from the outbox.
 * Run again after a crash at any step it adds nothing (but a second audit entry, see step 5):
 * flags are raised once per unit and rule, a channel record takes a unit's sales only if it
 * holds none of them, a partner remembers the reports it counted. Sales trail their report by
 * the outbox's backlog, and so do the reports' audit entries.
 */

/** At most this many sales are folded together (bounds memory and one fold's length). */
const FOLD_MAX_SALES = 10_000;
/** Units whose flags are raised at once (each raise is a few round trips to its case). */
const RAISING_AT_ONCE = 8;
/** A report whose ledger insert is not finished is folded once this old (its writer died in between). */
const ABANDONED_WRITE_MS = 60_000;
/** Folding gives way to sell-through requests unless the oldest waiting report has waited this long. */
const SALES_MAX_LAG_MS = 60_000;

type Raise = { hits: FlagHit[]; partnerId: string; unit: { _id: string; modelId: string; serial: string }; country: string; saleKey: string };

export function salesFold(deps: PartnerDeps, raiseOnce: ReturnType<typeof diversionFlagRaiser>) {
  const { clock } = deps;
  const store = deps.stores.partners;
  let draining: Promise<boolean> | null = null;
  const gate = ingestFirst(clock, SALES_MAX_LAG_MS);

  /**
   * The sales each report stored itself (a replay's lines belong to the report that stored
   * them first), read back from the ledger; null while its insert may still be under way (a
   * report whose writer died between the outbox and the ledger is folded once
   * ABANDONED_WRITE_MS old, with what got written).
   */
  async function ownSales(batches: NewSaleBatch[]): Promise<Map<string, LedgerSale[] | null>> {
    const found = await store.salesByKeys(batches.flatMap((b) => b.saleIds));
    const now = clock.now().getTime();
    const result = new Map<string, LedgerSale[] | null>();
    let next = 0;
    for (const batch of batches) {
      const sales = found.slice(next, (next += batch.saleIds.length));
      const complete = sales.every((s) => s !== null);
      if (!complete && now - batch.receivedAt.getTime() <= ABANDONED_WRITE_MS) result.set(batch._id, null);
      else result.set(batch._id, [...new Map(sales.flatMap((s) => (s?.batchId === batch._id ? [[s._id, s] as const] : []))).values()]);
    }
    return result;
  }

  async function fold(batches: NewSaleBatch[]) {
    const stored = await ownSales(batches);
    const ready = batches.filter((b) => stored.get(b._id));
    const sales = ready.flatMap((b) => stored.get(b._id)!);
    const unitIds = [...new Set(sales.map((s) => s.unitId))];
    const records = new Map((await store.channelUnitsByIds(unitIds)).map((u) => [u._id, u]));
    const partners = new Map<string, LeanPartner>((await store.partnersByIds([...new Set(sales.map((s) => s.partnerId))])).map((p) => [p._id, p]));
    const models = new Map<string, { _id: string; riskLevel: string }>();
    for (const model of await Promise.all([...new Set(sales.map((s) => s.modelId))].map((id) => deps.stores.catalogue.modelById(id)))) {
      if (model) models.set(String(model._id), model);
    }
    const restricted = await deps.flags.restrictedCountries();
    const criteria = sales.map((s) => reviewCriteria(models.get(s.modelId)?.riskLevel ?? '', s.customerType, s.country, restricted));
    const approvals = await store.approvedReviewsOf(sales.filter((_, i) => criteria[i]!.length).map((s) => s.unitId), APPROVING_DECISIONS);
    const screened = await deps.screening.screenRecords(sales.map((s) => ({ kind: 'sale', id: s._id, unitId: s.unitId, parties: [{ role: 'end-customer', name: s.customerName, country: s.country }] })));

    const folding = new Set(sales.map((s) => s._id));
    const perUnit = new Map<string, { unitId: string; modelId: string; exists: boolean; sales: StoredSale[]; earlier: number; completed: number }>();
    const raises: Raise[] = [];
    const marks: Array<{ key: string; held: boolean; reviewId: string | null }> = [];
    const counted = new Map<string, number>(); // `${partnerId} ${batchId}` → completed first sales
    for (const [i, s] of sales.entries()) {
      const record = records.get(s.unitId);
      let unit = perUnit.get(s.unitId);
      if (!unit) {
        // What the record held before this fold (a fold run again finds its own sales there).
        const before = record?.sales.filter((sale) => !folding.has(sale.key)) ?? [];
        unit = { unitId: s.unitId, modelId: record?.modelId ?? s.modelId, exists: !!record, sales: [], earlier: before.length, completed: before.filter((sale) => !sale.held).length };
        perUnit.set(s.unitId, unit);
      }
      const reviewId = criteria[i]!.length ? (approvals.find((r) => r.unitId === s.unitId && r.partnerId === s.partnerId)?._id ?? null) : null;
      const held = screened[i]!.held;
      if (held || reviewId) marks.push({ key: s._id, held, reviewId });
      const { _id: key, unitId: _unitId, modelId: _modelId, batchId: _batchId, ...sale } = s;
      unit.sales.push({ ...sale, key, held, reviewId });
      const seller = partners.get(s.partnerId);
      const model = models.get(s.modelId);
      const hits = [
        record?.chain.length ? null : { rule: 'unallocated-unit-sale' as const, evidence: { reportedBy: s.partnerId } },
        unit.earlier ? { rule: 'unit-sold-twice' as const, evidence: { sales: unit.earlier + 1 } } : null,
        seller ? saleRules.outsideTerritory(seller, s.country) : null,
        seller && model ? saleRules.unauthorisedModel(seller, model) : null,
        criteria[i]!.length && !reviewId ? { rule: 'unapproved-high-risk-sale' as const, evidence: { criteria: criteria[i] } } : null,
      ].filter((h) => h !== null);
      if (hits.length) raises.push({ hits, partnerId: s.partnerId, unit: { _id: s.unitId, modelId: unit.modelId, serial: serialOf(s.unitId) }, country: s.country, saleKey: key });
      unit.earlier++;
      // The unit's first completed sale counts; a held one once the screening review releases it (releaseHeldSale).
      if (!held && !unit.completed) counted.set(`${s.partnerId} ${s.batchId}`, (counted.get(`${s.partnerId} ${s.batchId}`) ?? 0) + 1);
      if (!held) unit.completed++;
    }

    // A unit's hits in order, several units at once (they open or join different cases).
    await eachLimited(raises, RAISING_AT_ONCE, async (r) => {
      for (const hit of r.hits) await raiseOnce(hit, r.partnerId, r.unit, r.country, r.saleKey);
    });
    await store.markSales(marks);
    await store.appendToChannelUnits([...perUnit.values()]);
    for (const [at, n] of counted) {
      const [partnerId, batchId] = at.split(' ') as [string, string];
      await store.countBatchSales(partnerId, batchId, n);
    }
    // Last before the reports leave the outbox: a crash in between records a report twice (its
    // batchId tells), never not at all. Not in the request: with four clients contending for
    // the chain's tip, each report's entry cost the engine 7–21 ms of CPU, 6–17 % of the ledger
    // insert it came with (measured at scale 1).
    for (const batch of ready) {
      const recorded = stored.get(batch._id)!.length;
      if (!batch.actor || !recorded) continue;
      await deps.audit.record({ ...batch.actor, action: 'partner.sales-reported', subjectKind: 'partner', subjectId: batch.reportedBy, detail: { recorded, repeated: batch.size - recorded, batchId: batch._id, receivedAt: batch.receivedAt } });
    }
    await store.deleteSaleBatches(ready.map((b) => b._id));
    deps.logger?.info({ reports: ready.length, sales: sales.length, units: perUnit.size, flags: raises.reduce((n, r) => n + r.hits.length, 0) }, 'sell-through: folded');
  }


  /** One pass over the outbox, oldest first, up to FOLD_MAX_SALES sales per fold. Resolves whether reports were waiting. */
  async function drain(): Promise<boolean> {
    const waiting = await store.waitingSaleBatches();
    let at = 0;
    while (at < waiting.length) {
      await gate.giveWay(waiting[at]!.receivedAt);
      const take: string[] = [];
      let size = 0;
      for (; at < waiting.length && (!take.length || size + waiting[at]!.size <= FOLD_MAX_SALES); at++) {
        take.push(waiting[at]!._id);
        size += waiting[at]!.size;
      }
      try {
        await fold(await store.saleBatchesByIds(take));
      } catch (err) {
        // They stay in the outbox for the next pass; one bad fold must not hold up the reports behind it.
        deps.logger?.error({ err, batchIds: take }, 'sell-through: fold failed; the reports stay in the outbox for the next sweep');
      }
    }
    return waiting.length > 0;
  }

  function sweep(): Promise<boolean> {
    draining ??= drain().finally(() => {
      draining = null;
    });
    return draining;
  }

  return {
    /** Wraps a sell-through request: folding in this process gives way while any is in flight. */
    duringIngest: gate.during,

    /** Folds what the outbox holds, whoever stored it: the `partner-sales` job's run. */
    sweep,

    /** Folds everything waiting now, without giving way to requests; resolves when done. */
    async settled(): Promise<void> {
      await gate.urgently(async () => {
        await draining?.catch(() => {});
        await sweep();
      });
    },
  };
}
