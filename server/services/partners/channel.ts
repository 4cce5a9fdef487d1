import { parse as parseCsv } from 'csv-parse/sync';
import { isCountryCode } from '../../countries';
import { APPROVING_DECISIONS, type ReviewCriterion } from '../../domain/partners';
import type { FlagRule } from '../../domain/flags';
import { END_USER_TYPES, HIGH_RISK_END_USER_TYPES, type EndUserType } from '../../domain/registrations';
import { ForbiddenError, ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import type { LeanPartner, StoredSale } from '../../store/partners';
import { normaliseCode, parseDay, unitId } from '../catalogue/codes';
import type { FlagHit } from '../flags';
import { auditActor, type PartnerActor, type PartnerDeps, partnerScope } from './context';

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

export type SaleOutcome = { unitId: string; outcome: 'recorded' | 'repeated'; flags: FlagRule[] };

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

  /**
   * Raises a diversion flag once per unit and rule (the flag's id says both) and counts it on
   * the partner's scorecard with the case it opened or joined.
   */
  async function raiseOnce(hit: FlagHit, partnerId: string, unit: { _id: string; modelId: string; serial: string }, country: string, saleKeyValue: string) {
    const id = `flg_${hit.rule}_${unit._id}`;
    if (await deps.stores.flags.caseIdOfFlag(id)) return;
    const { caseId } = await deps.flags.raise({ ...hit, evidence: { ...hit.evidence, partnerId } }, { unitId: unit._id, modelId: unit.modelId, serial: unit.serial, country }, { kind: 'sale', id: saleKeyValue }, { id });
    await store.countPartnerFlag(partnerId, caseId);
  }

  /** The seller's partner record for a unit, or why `actor` may not report it. */
  async function sellerOf(actor: PartnerActor & { kind: 'partner' }, visible: readonly string[], held: { holderId: string } | null) {
    if (!held) return actor.partnerId; // never allocated: recorded for the reporting partner, and flagged
    if (!visible.includes(held.holderId)) return null;
    return held.holderId;
  }

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
     */
    async reportSales(actor: PartnerActor & { kind: 'partner' }, sales: readonly SaleInput[]): Promise<SaleOutcome[]> {
      const visible = (await scope.visibleIds(actor))!;
      const restricted = await deps.flags.restrictedCountries();
      const ids = sales.map((s) => unitId(normaliseCode(s.sku), normaliseCode(s.serial)));
      const units = new Map((await deps.stores.catalogue.unitsByIds(ids, { modelId: 1, serial: 1 })).map((u) => [u._id, u]));
      const unknown = ids.map((id, i) => (units.has(id) ? null : i)).filter((i) => i !== null);
      if (unknown.length) throw new ValidationError(Object.fromEntries(unknown.map((i) => [`sales.${i}`, `No unit ${ids[i]} in the catalogue.`])));
      const held = new Map((await store.channelUnitsByIds(ids)).map((u) => [u._id, u]));
      const foreign = [];
      for (let i = 0; i < ids.length; i++) {
        if ((await sellerOf(actor, visible, held.get(ids[i]!) ?? null)) !== null) continue;
        foreign.push(ids[i]!);
        await raiseOnce({ rule: 'unallocated-unit-sale', evidence: { reportedBy: actor.partnerId } }, actor.partnerId, units.get(ids[i]!)!, sales[i]!.country, saleKey(ids[i]!, sales[i]!));
      }
      if (foreign.length) throw new ForbiddenError(`These units were not allocated to you: ${foreign.slice(0, 20).join(', ')}.`, 'not_your_units');

      const partners = new Map<string, LeanPartner>();
      const models = new Map<string, { _id: string; riskLevel: string }>();
      const outcomes: SaleOutcome[] = [];
      for (let i = 0; i < sales.length; i++) {
        const sale = sales[i]!;
        const unit = units.get(ids[i]!)!;
        const record = held.get(unit._id) ?? null;
        const sellerId = (await sellerOf(actor, visible, record))!;
        if (!partners.has(sellerId)) partners.set(sellerId, (await store.partnerById(sellerId))!);
        if (!models.has(unit.modelId)) models.set(unit.modelId, (await deps.stores.catalogue.modelById(unit.modelId))!);
        const seller = partners.get(sellerId)!;
        const model = models.get(unit.modelId)!;
        const key = saleKey(unit._id, sale);
        const criteria = reviewCriteria(model.riskLevel, sale.customerType, sale.country, restricted);
        const approved = criteria.length ? await store.approvedReviewOf(unit._id, sellerId, APPROVING_DECISIONS) : null;
        const stored: StoredSale = { key, partnerId: sellerId, customerName: sale.customerName, customerType: sale.customerType, country: sale.country, endUse: sale.endUse, soldAt: sale.soldAt, reportedAt: clock.now(), reviewId: approved?._id ?? null };
        const outcome = record ? await store.appendSale(unit._id, stored) : (await store.insertUnallocatedSale(unit._id, unit.modelId, stored)) ? 'recorded' : await store.appendSale(unit._id, stored);
        if (outcome === 'repeated' || outcome === 'no-unit') {
          outcomes.push({ unitId: unit._id, outcome: 'repeated', flags: [] });
          continue;
        }
        const earlierSales = record?.sales.filter((s) => s.key !== key).length ?? 0;
        if (!earlierSales) await store.countSale(sellerId);
        const hits = [
          record ? null : { rule: 'unallocated-unit-sale' as const, evidence: { reportedBy: actor.partnerId } },
          earlierSales ? { rule: 'unit-sold-twice' as const, evidence: { sales: earlierSales + 1 } } : null,
          saleRules.outsideTerritory(seller, sale.country),
          saleRules.unauthorisedModel(seller, model),
          criteria.length && !approved ? { rule: 'unapproved-high-risk-sale' as const, evidence: { criteria } } : null,
        ].filter((h) => h !== null);
        for (const hit of hits) await raiseOnce(hit, sellerId, unit, sale.country, key);
        outcomes.push({ unitId: unit._id, outcome: 'recorded', flags: hits.map((h) => h.rule) });
      }
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
      return { lines: rows.length, recorded: outcomes.filter((o) => o.outcome === 'recorded').length, repeated: outcomes.filter((o) => o.outcome === 'repeated').length, flagged: outcomes.filter((o) => o.flags.length).length, errors };
    },
  };
  return channel;
}
