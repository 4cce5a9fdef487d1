import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { parse as parseCsv } from 'csv-parse';
import type { Clock } from '../../clock';
import { isCountryCode } from '../../countries';
import { ValidationError } from '../../errors';
import type { Logger } from '../../logger';
import type { CatalogueStore, NewUnit } from '../../store/catalogue';
import type { PartnersStore } from '../../store/partners';
import { CODE_PATTERN, CODE_RULE, normaliseCode, parseDay } from './codes';
import { IMPORT_ERRORS_KEPT } from '../../domain/catalogue';
import { newUnit } from './units';
import { nameKey } from '../../domain/partners';

/** Bulk import of units from CSV: streamed, checked row by row, inserted in batches. */

/** Rows inserted per round trip: large enough to be fast, small enough to bound memory. */
export const IMPORT_BATCH_SIZE = 1000;

export const IMPORT_HEADER = 'sku,serial,manufactured_at,channel_partner,ship_to_country,sold_at,partner';

const IMPORT_COLUMNS: Record<string, keyof ImportRow> = {
  sku: 'sku',
  model: 'sku',
  serial: 'serial',
  serialnumber: 'serial',
  manufacturedat: 'manufacturedAt',
  manufacturedate: 'manufacturedAt',
  channelpartner: 'channelPartner',
  shiptocountry: 'shipToCountry',
  soldat: 'soldAt',
  partner: 'partner',
  partnerid: 'partner',
};
interface ImportRow {
  sku: string;
  serial: string;
  manufacturedAt: string;
  channelPartner: string;
  shipToCountry: string;
  soldAt: string;
  /** The channel partner the units are shipped to (its id or name): they are allocated to it. */
  partner: string;
}
/** The header row → which field each column fills (null: a column we ignore). */
function headerColumns(header: string[]): Array<keyof ImportRow | null> {
  const columns = header.map((h) => IMPORT_COLUMNS[h.toLowerCase().replace(/[^a-z]/g, '')] ?? null);
  const missing = (['sku', 'serial'] as const).filter((c) => !columns.includes(c));
  if (missing.length) throw new ValidationError({ file: `The first line must name the columns ${IMPORT_HEADER} (missing: ${missing.join(', ')}).` });
  return columns;
}

function toRow(columns: Array<keyof ImportRow | null>, record: string[]): ImportRow {
  const row: ImportRow = { sku: '', serial: '', manufacturedAt: '', channelPartner: '', shipToCountry: '', soldAt: '', partner: '' };
  columns.forEach((c, i) => {
    if (c) row[c] = record[i] ?? '';
  });
  return row;
}

/** Opens an uploaded temporary file and removes its name at once: the open handle keeps reading. */
export async function openAndUnlink(file: string): Promise<Readable> {
  const handle = await fs.promises.open(file, 'r');
  await fs.promises.rm(file, { force: true });
  return handle.createReadStream();
}

export function createUnitImport(deps: { clock: Clock; logger: Logger; store: CatalogueStore; partners: Pick<PartnersStore, 'partnerNames' | 'allocateFromVendor'> }) {
  const { clock, logger, store, partners: partnersStore } = deps;

  /** One CSV row → a unit document, or the field and message that refuse it. */
  function checkRow(row: ImportRow, knownModels: ReadonlySet<string>, partners: ReadonlyMap<string, { _id: string; name: string }>): { error: { field: string; message: string } } | { doc: NewUnit; partnerId: string | null } {
    const sku = normaliseCode(row.sku ?? '');
    const serial = normaliseCode(row.serial ?? '');
    if (!CODE_PATTERN.test(sku)) return { error: { field: 'sku', message: sku ? `bad SKU "${row.sku}". ${CODE_RULE}` : 'SKU is missing.' } };
    if (!knownModels.has(sku)) return { error: { field: 'sku', message: `unknown model "${sku}": create it in the catalogue first.` } };
    if (!CODE_PATTERN.test(serial)) return { error: { field: 'serial', message: serial ? `bad serial "${row.serial}". ${CODE_RULE}` : 'serial is missing.' } };
    const manufacturedAt = parseDay(row.manufacturedAt ?? '');
    if (manufacturedAt === undefined) return { error: { field: 'manufactured_at', message: `bad date "${row.manufacturedAt}": use YYYY-MM-DD.` } };
    const soldAt = parseDay(row.soldAt ?? '');
    if (soldAt === undefined) return { error: { field: 'sold_at', message: `bad date "${row.soldAt}": use YYYY-MM-DD.` } };
    const country = (row.shipToCountry ?? '').trim().toUpperCase();
    if (country && !isCountryCode(country)) return { error: { field: 'ship_to_country', message: `bad country "${row.shipToCountry}": use an ISO 3166-1 alpha-2 code such as KE.` } };
    const channelPartner = (row.channelPartner ?? '').trim();
    if (channelPartner.length > 200) return { error: { field: 'channel_partner', message: 'channel partner is longer than 200 characters.' } };
    const partnerName = (row.partner ?? '').trim();
    const partner = partnerName ? (partners.get(partnerName) ?? partners.get(nameKey(partnerName))) : null;
    if (partnerName && !partner) return { error: { field: 'partner', message: `unknown channel partner "${partnerName}": create it under Partners first.` } };
    const firstSale = { channelPartner: partner?.name ?? channelPartner, shipToCountry: country || null, soldAt };
    return { doc: newUnit(sku, serial, { manufacturedAt, firstSale }, clock.now()), partnerId: partner?._id ?? null };
  }

  /** Inserts one batch; rows whose unit already exists are counted as skipped, not errors. */
  async function insertBatch(docs: NewUnit[], partnerIds: Array<string | null>) {
    const refused = await store.insertUnits(docs);
    const byPartner = new Map<string, NewUnit[]>();
    docs.forEach((d, i) => {
      const partnerId = partnerIds[i];
      if (partnerId && !refused.has(i)) byPartner.set(partnerId, [...(byPartner.get(partnerId) ?? []), d]);
    });
    for (const [partnerId, units] of byPartner) await partnersStore.allocateFromVendor(partnerId, units, 'import', clock.now());
    const failed = [...refused].filter(([, m]) => m !== null).map(([index, message]) => ({ index, message: message! }));
    return { imported: docs.length - refused.size, skipped: [...refused.values()].filter((m) => m === null).length, failed };
  }

  /**
   * Streams the CSV: rows are checked one by one and inserted in batches of IMPORT_BATCH_SIZE,
   * so memory holds one batch plus the ids seen (to name duplicates within the file), never
   * the file. The job document is updated after each batch.
   */
  return async function runImport(jobId: string, input: Readable): Promise<void> {
    const knownModels = new Set((await store.modelNames()).map((m) => m._id));
    // A partner is named by its id, its name or a spelling merged into it.
    const partners = new Map((await partnersStore.partnerNames()).flatMap((p) => [p._id, p.nameKey, ...p.aliases.map(nameKey)].map((k) => [k, p] as const)));
    const seen = new Set<string>();
    let batch: Array<{ line: number; doc: NewUnit; partnerId: string | null }> = [];
    let pendingErrors: Array<{ line: number; field: string; message: string }> = [];
    let keptErrors = 0;
    const counts = { rows: 0, imported: 0, skipped: 0, rejected: 0 };

    const flush = async () => {
      const result = await insertBatch(batch.map((b) => b.doc), batch.map((b) => b.partnerId));
      counts.imported += result.imported;
      counts.skipped += result.skipped;
      for (const f of result.failed) {
        counts.rejected++;
        pendingErrors.push({ line: batch[f.index]!.line, field: '', message: f.message });
      }
      const toKeep = pendingErrors.slice(0, Math.max(0, IMPORT_ERRORS_KEPT - keptErrors));
      keptErrors += toKeep.length;
      await store.updateImportJob(jobId, { counts }, toKeep);
      batch = [];
      pendingErrors = [];
    };

    const parser = input.pipe(parseCsv({ bom: true, trim: true, skip_empty_lines: true, relax_column_count: true, info: true }));
    let columns: Array<keyof ImportRow | null> | null = null;
    try {
      for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
        if (!columns) {
          columns = headerColumns(record);
          continue;
        }
        counts.rows++;
        const line = info.lines;
        const checked = record.length !== columns.length ? { error: { field: '', message: `wrong number of columns: ${record.length} instead of ${columns.length}.` } } : checkRow(toRow(columns, record), knownModels, partners);
        if ('error' in checked) {
          counts.rejected++;
          pendingErrors.push({ line, ...checked.error });
        } else if (seen.has(checked.doc._id)) {
          counts.rejected++;
          pendingErrors.push({ line, field: 'serial', message: `duplicate within the file: ${checked.doc._id} appears on an earlier line.` });
        } else {
          seen.add(checked.doc._id);
          batch.push({ line, doc: checked.doc, partnerId: checked.partnerId });
        }
        if (batch.length >= IMPORT_BATCH_SIZE || pendingErrors.length >= IMPORT_BATCH_SIZE) await flush();
      }
      if (!columns) throw new ValidationError({ file: `The file is empty: its first line must name the columns ${IMPORT_HEADER}.` });
      await flush();
      await store.updateImportJob(jobId, { status: 'done', counts, finishedAt: clock.now() });
    } catch (err) {
      // Rows before the failure were whole and stay imported; the job says where it stopped.
      await flush().catch(() => undefined);
      const message = err instanceof ValidationError ? Object.values(err.fields ?? {}).join(' ') : `The file could not be read as CSV: ${(err as Error).message}`;
      if (!(err instanceof ValidationError) && !(err as { code?: string }).code?.startsWith('CSV_')) logger.error({ err, jobId }, 'unit import failed');
      await store.updateImportJob(jobId, { status: 'failed', failure: message, counts, finishedAt: clock.now() });
    } finally {
      input.destroy();
    }
  };
}
