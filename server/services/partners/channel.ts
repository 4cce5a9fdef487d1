import crypto from 'node:crypto';
import { parse as parseCsv } from 'csv-parse/sync';
import { isCountryCode } from '../../countries';
import { END_USER_TYPES, type EndUserType } from '../../domain/registrations';
import { ForbiddenError, NotFoundError, ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import type { LedgerSale } from '../../store/partners';
import { modelOf, normaliseCode, parseDay, serialOf, unitId } from '../catalogue/codes';
import { auditActor, diversionFlagRaiser, type PartnerActor, type PartnerDeps, partnerScope } from './context';
import { saleKey } from './sale-rules';
import { salesFold } from './sales-fold';

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

/**
 * What a report's line is answered at once: `recorded` (new) or `repeated` (already in the
 * ledger: nothing changes). Screening and the diversion rules follow in the fold.
 */
export type SaleAnswer = { unitId: string; outcome: 'recorded' | 'repeated' };

type CheckedSale = { unitId: string; modelId: string; sellerId: string; refused: 'unknown-unit' | 'not-your-unit' | null };

const newSaleBatchId = () => `sab_${crypto.randomBytes(12).toString('hex')}`;

/** Lines of a sell-through CSV the portal reads at once (larger files go through the API). */
export const SALES_CSV_MAX_LINES = 5_000;
export const SALES_CSV_HEADER = 'sku,serial,customer_name,customer_type,country,end_use,sold_at';

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
  const fold = salesFold(deps, raiseOnce);

  /**
   * Each sale's unit and who may report it: `unknown-unit` when the catalogue has no such unit,
   * `not-your-unit` when a partner `actor` may not act for holds it. Units only move down the
   * partner tree (vendor → partner → its child), so a unit in an allocation of `actor` or its
   * children, and not passed on below them, is held by the latest of those partners to be given
   * it: read from the allocations (a few `_id` reads, immutable documents). Only the rest (a
   * unit never allocated, or another partner's) is looked up unit by unit.
   */
  async function checkScope(actor: PartnerActor & { kind: 'partner' }, sales: readonly SaleInput[]): Promise<CheckedSale[]> {
    const partners = await store.channelTree();
    const visible = new Set([actor.partnerId, ...partners.filter((p) => p.parentId === actor.partnerId).map((p) => p._id)]);
    const below = partners.filter((p) => p.parentId && visible.has(p.parentId) && !visible.has(p._id));
    const ids = sales.map((s) => unitId(normaliseCode(s.sku), normaliseCode(s.serial)));
    // Only the report's units are looked for: a distributor's allocations may hold 100,000.
    const named = new Set(ids);
    const holderOf = new Map<string, { partnerId: string; at: number }>();
    // `actor` first, then its children: of two allocations at the same time, the child's is the pass-on.
    for (const partnerId of visible) {
      for (const allocation of await store.allocationUnits(partners.find((p) => p._id === partnerId)?.allocationIds ?? [])) {
        for (const id of named) {
          if (!allocation.unitIds.has(id)) continue;
          const known = holderOf.get(id);
          if (!known || known.at <= allocation.at.getTime()) holderOf.set(id, { partnerId, at: allocation.at.getTime() });
        }
      }
    }
    for (const allocation of await store.allocationUnits(below.flatMap((p) => p.allocationIds))) for (const id of holderOf.keys()) if (allocation.unitIds.has(id)) holderOf.delete(id);

    const rest = [...new Set(ids.filter((id) => !holderOf.has(id)))];
    const holders = new Map((await store.holdersOf(rest)).map((u) => [u._id, u]));
    const outside = rest.filter((id) => !holders.has(id));
    const catalogued = new Map((await deps.stores.catalogue.unitsByIds(outside, { modelId: 1 })).map((u) => [u._id, u.modelId]));
    return ids.map((id) => {
      const inTree = holderOf.get(id);
      if (inTree) return { unitId: id, modelId: modelOf(id), sellerId: inTree.partnerId, refused: null };
      const holder = holders.get(id);
      if (holder) return { unitId: id, modelId: holder.modelId, sellerId: holder.holderId, refused: visible.has(holder.holderId) ? null : 'not-your-unit' };
      const modelId = catalogued.get(id);
      // Never allocated: the reporting partner sold it (the fold flags it).
      return modelId ? { unitId: id, modelId, sellerId: actor.partnerId, refused: null } : { unitId: id, modelId: '', sellerId: actor.partnerId, refused: 'unknown-unit' };
    });
  }

  /** A report naming a unit another partner holds raises its flag (once per unit), though nothing is recorded. */
  async function raiseForeign(actor: PartnerActor & { kind: 'partner' }, sales: readonly SaleInput[], checked: readonly CheckedSale[]) {
    const seen = new Set<string>();
    for (const [i, c] of checked.entries()) {
      if (c.refused !== 'not-your-unit' || seen.has(c.unitId)) continue;
      seen.add(c.unitId);
      await raiseOnce({ rule: 'unallocated-unit-sale', evidence: { reportedBy: actor.partnerId } }, actor.partnerId, { _id: c.unitId, modelId: c.modelId, serial: serialOf(c.unitId) }, sales[i]!.country, saleKey(c.unitId, sales[i]!));
    }
  }

  /** Appends the (already checked) sales to the ledger with their outbox entry, and says which were new. */
  async function record(actor: PartnerActor & { kind: 'partner' }, sales: readonly SaleInput[], checked: readonly CheckedSale[]): Promise<SaleAnswer[]> {
    const receivedAt = clock.now();
    const batchId = newSaleBatchId();
    const ledger = sales.map((sale, i): LedgerSale => {
      const { unitId: id, modelId, sellerId } = checked[i]!;
      return { _id: saleKey(id, sale), unitId: id, modelId, batchId, partnerId: sellerId, customerName: sale.customerName, customerType: sale.customerType, country: sale.country, endUse: sale.endUse, soldAt: sale.soldAt, reportedAt: receivedAt, reviewId: null, held: false };
    });
    const isNew = await store.appendSales({ _id: batchId, reportedBy: actor.partnerId, receivedAt, size: ledger.length, saleIds: ledger.map((s) => s._id), actor: auditActor(actor) }, ledger);
    return ledger.map((s, i) => ({ unitId: s.unitId, outcome: isNew[i] ? 'recorded' : 'repeated' }));
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
     * Records sales, idempotently per unit and sale, and answers each line `recorded` or
     * `repeated`. A unit held by a partner `actor` may not act for refuses the whole report
     * (403, and the attempt raises its flag); a unit not in the catalogue refuses it too (400,
     * naming the line). Nothing else is checked here: the fold (sales-fold.ts) copies the sales
     * onto their units, screens their end customers, applies the diversion rules, counts them
     * on the scorecards and records the report in the audit log, in the background
     * (`settleSales()` waits for it).
     */
    async reportSales(actor: PartnerActor & { kind: 'partner' }, sales: readonly SaleInput[]): Promise<SaleAnswer[]> {
      const checked = await checkScope(actor, sales);
      const unknown = checked.map((c, i) => (c.refused === 'unknown-unit' ? i : null)).filter((i) => i !== null);
      if (unknown.length) throw new ValidationError(Object.fromEntries(unknown.map((i) => [`sales.${i}`, `No unit ${checked[i]!.unitId} in the catalogue.`])));
      await raiseForeign(actor, sales, checked);
      const foreign = [...new Set(checked.filter((c) => c.refused === 'not-your-unit').map((c) => c.unitId))];
      if (foreign.length) throw new ForbiddenError(`These units were not allocated to you: ${foreign.slice(0, 20).join(', ')}.`, 'not_your_units');
      return fold.duringIngest(() => record(actor, sales, checked));
    },

    /**
     * A sell-through CSV, read at once: every line is checked, lines in error (bad fields, a
     * unit not in the catalogue or not the partner's) are named with their line number and
     * column, the others are recorded as one report.
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
        const row = checkSaleRow(Object.fromEntries(columns.map((c, j) => [c, record[j] ?? ''])));
        if ('error' in row) errors.push({ line, ...row.error });
        else good.push({ line, sale: row.sale });
      });
      const checked = await checkScope(actor, good.map((g) => g.sale));
      await raiseForeign(actor, good.map((g) => g.sale), checked);
      const accepted = good.filter((g, i) => {
        const refused = checked[i]!.refused;
        if (refused) errors.push({ line: g.line, field: 'serial', message: refused === 'unknown-unit' ? `no unit ${g.sale.sku}:${g.sale.serial} in the catalogue.` : `unit ${g.sale.sku}:${g.sale.serial} was not allocated to you.` });
        return !refused;
      });
      const answers = accepted.length ? await fold.duringIngest(() => record(actor, accepted.map((g) => g.sale), checked.filter((c) => !c.refused))) : [];
      errors.sort((a, b) => a.line - b.line);
      return { lines: rows.length, recorded: answers.filter((a) => a.outcome === 'recorded').length, repeated: answers.filter((a) => a.outcome === 'repeated').length, errors };
    },

    /** Folds the sell-through outbox: the `partner-sales` job's run. Resolves true when reports were waiting. */
    foldSales: () => fold.sweep(),

    /** Folds every report waiting now; for tests and scripts that run no job runner. */
    settleSales: () => fold.settled(),

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
