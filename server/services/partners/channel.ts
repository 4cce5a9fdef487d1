import { parse as parseCsv } from 'csv-parse/sync';
import { isCountryCode } from '../../countries';
import { APPROVING_DECISIONS, type ReviewCriterion } from '../../domain/partners';
import type { FlagRule } from '../../domain/flags';
import { END_USER_TYPES, HIGH_RISK_END_USER_TYPES, type EndUserType } from '../../domain/registrations';
import { ForbiddenError, NotFoundError, ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import type { LeanPartner, StoredSale } from '../../store/partners';
import { normaliseCode, parseDay, unitId } from '../catalogue/codes';
import type { FlagHit } from '../flags';
import { auditActor, diversionFlagRaiser, type PartnerActor, type PartnerDeps, partnerScope } from './context';

/**
 * Units in the channel: what a partner was given, passing units on to child partners, and
 * sell-through reports (one by one, in a CSV, or through the API), each checked against the
 * diversion rules on the existing flag → case path.
 */

export interface SaleInput {
  sku: string;
  serial: string;
  customerName: string;
  customerType: EndUserType;
  country: string;
  endUse: string;
  soldAt: Date;
}

/** `held`: the end customer matched a screening list; the sale is recorded but waits for the screening review. */
export type SaleOutcome = { unitId: string; outcome: 'recorded' | 'repeated'; held: boolean; flags: FlagRule[] };

/** Lines of a sell-through CSV the portal reads at once (larger files go through the API). */
export const SALES_CSV_MAX_LINES = 5_000;
export const SALES_CSV_HEADER = 'sku,serial,customer_name,customer_type,country,end_use,sold_at';

/** Why a sale must be reviewed before delivery: empty when it need not be. */
export function reviewCriteria(modelRiskLevel: string, customerType: string, country: string, restricted: ReadonlySet<string>): ReviewCriterion[] {
  const criteria: ReviewCriterion[] = [];
  if (modelRiskLevel === 'high') criteria.push('high-risk-model');
  if ((HIGH_RISK_END_USER_TYPES as readonly string[]).includes(customerType)) criteria.push('high-risk-end-user');
  if (restricted.has(country)) criteria.push('restricted-country');
  return criteria;
}

/** The diversion rules that look at one sale by its seller (pure). */
export const saleRules = {
  outsideTerritory(partner: Pick<LeanPartner, 'territories'>, country: string): FlagHit | null {
    if (!partner.territories.length || partner.territories.includes(country)) return null;
    return { rule: 'sale-outside-territory', evidence: { country, territories: [...partner.territories] } };
  },

  unauthorisedModel(partner: Pick<LeanPartner, 'authorisedModels' | 'authorisedRiskLevels'>, model: { _id: string; riskLevel: string }): FlagHit | null {
    const byModel = partner.authorisedModels.length > 0 && !partner.authorisedModels.includes(model._id);
    const byLevel = partner.authorisedRiskLevels.length > 0 && !partner.authorisedRiskLevels.includes(model.riskLevel as never);
    if (!byModel && !byLevel) return null;
    return { rule: 'unauthorised-model-sale', evidence: { modelId: model._id, riskLevel: model.riskLevel, authorisedModels: [...partner.authorisedModels], authorisedRiskLevels: [...partner.authorisedRiskLevels] } };
  },
};

/** A sale's idempotency key: the same unit, day and end customer is the same sale. */
export const saleKey = (id: string, sale: Pick<SaleInput, 'customerName' | 'soldAt'>) => `${id}|${sale.soldAt.toISOString().slice(0, 10)}|${sale.customerName.trim().toLowerCase().replace(/\s+/g, ' ')}`;

/** One CSV line → a sale, or the column and message that refuse it. */
export function checkSaleRow(row: Record<string, string>): { sale: SaleInput } | { error: { field: string; message: string } } {
  const customerName = (row.customer_name ?? '').trim();
  const customerType = (row.customer_type ?? '').trim();
  const country = (row.country ?? '').trim().toUpperCase();
  const soldAt = parseDay(row.sold_at ?? '');
  if (!(row.sku ?? '').trim()) return { error: { field: 'sku', message: 'SKU is missing.' } };
  if (!(row.serial ?? '').trim()) return { error: { field: 'serial', message: 'serial is missing.' } };
  if (!customerName) return { error: { field: 'customer_name', message: 'end customer name is missing.' } };
  if (customerName.length > 200) return { error: { field: 'customer_name', message: 'end customer name is longer than 200 characters.' } };
  if (!(END_USER_TYPES as readonly string[]).includes(customerType)) return { error: { field: 'customer_type', message: `unknown end-user type "${customerType}": use one of ${END_USER_TYPES.join(', ')}.` } };
  if (!isCountryCode(country)) return { error: { field: 'country', message: `bad country "${row.country ?? ''}": use an ISO 3166-1 alpha-2 code such as KE.` } };
  if (!soldAt) return { error: { field: 'sold_at', message: `bad date "${row.sold_at ?? ''}": use YYYY-MM-DD.` } };
  return { sale: { sku: row.sku!, serial: row.serial!, customerName, customerType: customerType as EndUserType, country, endUse: (row.end_use ?? '').trim().slice(0, 1000), soldAt } };
}

export function partnerChannel(deps: PartnerDeps) {
  const { clock, audit } = deps;
  const store = deps.stores.partners;
  const scope = partnerScope(deps);

  const raiseOnce = diversionFlagRaiser(deps);

  const channel = {
    /** Gives units (already in the catalogue) to a partner straight from the vendor. */
    async allocate(partnerId: string, ids: readonly string[], actor: PartnerActor & { kind: 'staff' }) {
      const units = await deps.stores.catalogue.unitsByIds(ids, { modelId: 1 });
      const allocated = await store.allocateFromVendor(partnerId, units, 'import', clock.now());
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'partner.units-allocated', subjectKind: 'partner', subjectId: partnerId, detail: { units: allocated.length } });
      return allocated;
    },

    /** A distributor passes units it holds to one of its resellers. */
    async passOn(actor: PartnerActor & { kind: 'partner' }, toId: string, serials: ReadonlyArray<{ sku: string; serial: string }>) {
      const child = await store.partnerById(toId);
      if (!child || child.parentId !== actor.partnerId) throw new ValidationError({ toId: 'Choose one of your own partners.' });
      const ids = serials.map((s) => unitId(normaliseCode(s.sku), normaliseCode(s.serial)));
      const moved = await store.passOn(actor.partnerId, toId, ids, clock.now());
      const notHeld = ids.filter((id) => !moved.includes(id));
      if (notHeld.length && !moved.length) throw new ValidationError({ units: `You do not hold these units: ${notHeld.slice(0, 20).join(', ')}${notHeld.length > 20 ? '…' : ''}.` });
      await audit.record({ ...auditActor(actor), action: 'partner.units-passed-on', subjectKind: 'partner', subjectId: toId, detail: { fromId: actor.partnerId, units: moved.length } });
      return { moved, notHeld };
    },

    /** A partner's units (as given to it, newest allocation first) with where each is now. */
    async unitsOf(partnerId: string, actor: PartnerActor, page: Page) {
      const partner = await scope.visiblePartner(actor, partnerId);
      const allocations = (await store.allocationsByIds([...partner.allocationIds].reverse()));
      const ids = allocations.flatMap((a) => a.unitIds);
      const pageIds = ids.slice(page.skip, page.skip + page.limit);
      const records = new Map((await store.channelUnitsByIds(pageIds)).map((u) => [u._id, u]));
      return { items: pageIds.map((id) => ({ unitId: id, holderId: records.get(id)?.holderId ?? null, sales: records.get(id)?.sales ?? [] })), total: ids.length };
    },

    /**
     * Records sales, idempotently per unit and sale. A unit held by a partner `actor` may not
     * act for refuses the whole report (403, and the attempt raises its flag); one never
     * allocated is recorded and flagged. Every recorded sale goes through the diversion rules.
     * A batch costs a read of its units' channel records, one insert into the sales ledger
     * (whose `_id`, the sale's key, decides what is new) and bulk appends of the new sales.
     */
    async reportSales(actor: PartnerActor & { kind: 'partner' }, sales: readonly SaleInput[]): Promise<SaleOutcome[]> {
      const visible = (await scope.visibleIds(actor))!;
      const ids = sales.map((s) => unitId(normaliseCode(s.sku), normaliseCode(s.serial)));
      const held = new Map((await store.channelUnitsByIds(ids)).map((u) => [u._id, u]));
      // Units outside the channel are looked up in the catalogue: known (flagged) or unknown (refused).
      const outside = [...new Set(ids.filter((id) => !held.has(id)))];
      const catalogued = new Map((await deps.stores.catalogue.unitsByIds(outside, { modelId: 1 })).map((u) => [u._id, u.modelId]));
      const unknown = ids.map((id, i) => (held.has(id) || catalogued.has(id) ? null : i)).filter((i) => i !== null);
      if (unknown.length) throw new ValidationError(Object.fromEntries(unknown.map((i) => [`sales.${i}`, `No unit ${ids[i]} in the catalogue.`])));
      const subjectOf = (id: string) => ({ _id: id, modelId: held.get(id)?.modelId ?? catalogued.get(id)!, serial: id.slice(id.indexOf(':') + 1) });

      const foreign = [...new Set(ids.filter((id) => held.has(id) && !visible.includes(held.get(id)!.holderId)))];
      for (const id of foreign) {
        const sale = sales[ids.indexOf(id)]!;
        await raiseOnce({ rule: 'unallocated-unit-sale', evidence: { reportedBy: actor.partnerId } }, actor.partnerId, subjectOf(id), sale.country, saleKey(id, sale));
      }
      if (foreign.length) throw new ForbiddenError(`These units were not allocated to you: ${foreign.slice(0, 20).join(', ')}.`, 'not_your_units');

      const restricted = await deps.flags.restrictedCountries();
      const partners = new Map((await store.partnersByIds(visible)).map((p) => [p._id, p]));
      const models = new Map<string, { _id: string; riskLevel: string }>();
      for (const modelId of new Set(ids.map((id) => subjectOf(id).modelId))) models.set(modelId, (await deps.stores.catalogue.modelById(modelId))!);
      const reportedAt = clock.now();
      const stored = sales.map((sale, i): StoredSale & { criteria: ReturnType<typeof reviewCriteria> } => ({
        key: saleKey(ids[i]!, sale),
        partnerId: held.get(ids[i]!)?.holderId ?? actor.partnerId, // never allocated: the reporting partner sold it
        customerName: sale.customerName,
        customerType: sale.customerType,
        country: sale.country,
        endUse: sale.endUse,
        soldAt: sale.soldAt,
        reportedAt,
        reviewId: null,
        held: false,
        criteria: reviewCriteria(models.get(subjectOf(ids[i]!).modelId)!.riskLevel, sale.customerType, sale.country, restricted),
      }));
      const needingReview = stored.map((s, i) => (s.criteria.length ? ids[i]! : null)).filter((id) => id !== null);
      const approvals = await store.approvedReviewsOf(needingReview, APPROVING_DECISIONS);
      for (const [i, s] of stored.entries()) s.reviewId = approvals.find((r) => r.unitId === ids[i] && r.partnerId === s.partnerId)?._id ?? null;
      // Screened before recording, so a held sale is stored held (its key is the hits' subject).
      const screened = await deps.screening.screenRecords(stored.map((s, i) => ({ kind: 'sale', id: s.key, unitId: ids[i]!, parties: [{ role: 'end-customer', name: s.customerName, country: s.country }] })));
      for (const [i, s] of stored.entries()) s.held = screened[i]!.held;

      const isNew = await store.recordSales(
        stored.map(({ criteria: _criteria, ...sale }, i) => ({ unitId: ids[i]!, modelId: subjectOf(ids[i]!).modelId, inChannel: held.has(ids[i]!), onUnit: Boolean(held.get(ids[i]!)?.sales.some((s) => s.key === sale.key)), sale })),
      );
      const salesBefore = new Map(ids.map((id) => [id, held.get(id)?.sales.length ?? 0]));
      const completedBefore = new Map(ids.map((id) => [id, held.get(id)?.sales.filter((s) => !s.held).length ?? 0]));
      const outcomes: SaleOutcome[] = [];
      const soldPerPartner = new Map<string, number>();
      for (const [i, sale] of stored.entries()) {
        const id = ids[i]!;
        if (!isNew[i]) {
          outcomes.push({ unitId: id, outcome: 'repeated', held: false, flags: [] });
          continue;
        }
        const earlier = salesBefore.get(id)!;
        salesBefore.set(id, earlier + 1);
        // The unit's first completed sale counts; a held one once the screening review releases it (releaseHeldSale).
        if (!sale.held && !completedBefore.get(id)) soldPerPartner.set(sale.partnerId, (soldPerPartner.get(sale.partnerId) ?? 0) + 1);
        if (!sale.held) completedBefore.set(id, completedBefore.get(id)! + 1);
        const seller = partners.get(sale.partnerId)!;
        const hits = [
          held.has(id) ? null : { rule: 'unallocated-unit-sale' as const, evidence: { reportedBy: actor.partnerId } },
          earlier ? { rule: 'unit-sold-twice' as const, evidence: { sales: earlier + 1 } } : null,
          saleRules.outsideTerritory(seller, sale.country),
          saleRules.unauthorisedModel(seller, models.get(subjectOf(id).modelId)!),
          sale.criteria.length && !sale.reviewId ? { rule: 'unapproved-high-risk-sale' as const, evidence: { criteria: sale.criteria } } : null,
        ].filter((h) => h !== null);
        for (const hit of hits) await raiseOnce(hit, sale.partnerId, subjectOf(id), sale.country, sale.key);
        outcomes.push({ unitId: id, outcome: 'recorded', held: sale.held, flags: hits.map((h) => h.rule) });
      }
      for (const [partnerId, n] of soldPerPartner) await store.countSales(partnerId, n);
      const recorded = outcomes.filter((o) => o.outcome === 'recorded').length;
      if (recorded) await audit.record({ ...auditActor(actor), action: 'partner.sales-reported', subjectKind: 'partner', subjectId: actor.partnerId, detail: { recorded, repeated: outcomes.length - recorded } });
      return outcomes;
    },

    /**
     * A sell-through CSV, read at once: every line is checked, lines in error are named with
     * their line number and column, the others are reported as sales.
     */
    async reportSalesCsv(actor: PartnerActor & { kind: 'partner' }, text: string) {
      let records: string[][];
      try {
        records = parseCsv(text, { bom: true, trim: true, skip_empty_lines: true, relax_column_count: true }) as string[][];
      } catch (err) {
        throw new ValidationError({ file: `The file could not be read as CSV: ${(err as Error).message}` });
      }
      const [header, ...rows] = records;
      const columns = (header ?? []).map((h) => h.toLowerCase().replace(/[^a-z]+/g, '_').replace(/^_|_$/g, ''));
      const missing = SALES_CSV_HEADER.split(',').filter((c) => c !== 'end_use' && !columns.includes(c));
      if (!header || missing.length) throw new ValidationError({ file: `The first line must name the columns ${SALES_CSV_HEADER} (missing: ${missing.join(', ') || 'all'}).` });
      if (rows.length > SALES_CSV_MAX_LINES) throw new ValidationError({ file: `At most ${SALES_CSV_MAX_LINES} sales per file; send larger reports through the API.` });
      const errors: Array<{ line: number; field: string; message: string }> = [];
      const good: Array<{ line: number; sale: SaleInput }> = [];
      rows.forEach((record, i) => {
        const line = i + 2;
        const checked = checkSaleRow(Object.fromEntries(columns.map((c, j) => [c, record[j] ?? ''])));
        if ('error' in checked) errors.push({ line, ...checked.error });
        else good.push({ line, sale: checked.sale });
      });
      const outcomes: SaleOutcome[] = [];
      // One line at a time, so a unit that is not the partner's refuses its line, not the file.
      for (const { line, sale } of good) {
        try {
          outcomes.push(...(await channel.reportSales(actor, [sale])));
        } catch (err) {
          if (!(err instanceof ValidationError) && !(err instanceof ForbiddenError)) throw err;
          errors.push({ line, field: 'serial', message: err instanceof ValidationError ? `no unit ${sale.sku}:${sale.serial} in the catalogue.` : `unit ${sale.sku}:${sale.serial} was not allocated to you.` });
        }
      }
      errors.sort((a, b) => a.line - b.line);
      return { lines: rows.length, recorded: outcomes.filter((o) => o.outcome === 'recorded').length, repeated: outcomes.filter((o) => o.outcome === 'repeated').length, held: outcomes.filter((o) => o.held).length, flagged: outcomes.filter((o) => o.flags.length).length, errors };
    },

    /**
     * A sale held by screening takes effect once its hits are cleared (the screening review
     * calls this): it becomes a completed sale, counted on the seller's scorecard if it is its
     * unit's first. Of two reviewers releasing it, one does.
     */
    async releaseHeldSale(key: string, byUserId: string) {
      const sale = await store.saleByKey(key);
      if (!sale) throw new NotFoundError('No such sale.');
      if (!(await store.releaseSale(key, sale.unitId))) return;
      const unit = await store.channelUnitById(sale.unitId);
      if (!unit?.sales.some((s) => s.key !== key && !s.held)) await store.countSales(sale.partnerId, 1);
      await audit.record({ actorKind: 'user', actorId: byUserId, action: 'partner.sale-released', subjectKind: 'partner', subjectId: sale.partnerId, detail: { unitId: sale.unitId, saleKey: key, reason: 'screening cleared' } });
    },
  };
  return channel;
}
