import { parse } from 'csv-parse/sync';
import { ValidationError } from '../../errors';
import type { ListEntity } from './matching';

/**
 * Screening list files read into list entities (pure): OpenSanctions' FollowTheMoney entities
 * as JSON lines, and the US Consolidated Screening List's CSV. A bad line is named, never
 * skipped in silence: a list that imports half is worse than one refused.
 */

export const LIST_FORMATS = ['ftm', 'csl'] as const;
export type ListFormat = (typeof LIST_FORMATS)[number];

/** The FtM schemata that name parties (vessels, addresses and the like are not screened). */
const PARTY_SCHEMATA = new Set(['Person', 'Organization', 'Company', 'LegalEntity', 'PublicBody']);
const NAME_PROPS = ['name', 'alias', 'weakAlias', 'previousName'];
const COUNTRY_PROPS = ['country', 'nationality', 'citizenship', 'jurisdiction'];
const ID_PROPS = ['idNumber', 'passportNumber', 'registrationNumber', 'taxNumber', 'innCode', 'ogrnCode', 'leiCode', 'vatCode', 'imoNumber'];

const upperCountries = (codes: string[]) => [...new Set(codes.map((c) => c.trim().toUpperCase()).filter((c) => /^[A-Z]{2}$/.test(c)))];
const clean = (values: unknown[]) => [...new Set(values.filter((v): v is string => typeof v === 'string').map((v) => v.trim()).filter(Boolean))];

/** The file's format by its first character: JSON lines start with `{`. */
export const detectFormat = (text: string): ListFormat => (text.trimStart().startsWith('{') ? 'ftm' : 'csl');

export function parseFtmLines(text: string, listId: string): { entities: ListEntity[]; skipped: number } {
  const entities: ListEntity[] = [];
  let skipped = 0;
  const lines = text.split(/\r?\n/);
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    let doc: { id?: unknown; schema?: unknown; properties?: Record<string, unknown[]> };
    try {
      doc = JSON.parse(line);
    } catch {
      throw new ValidationError({ file: `Line ${i + 1} is not JSON: each line must be one FollowTheMoney entity.` });
    }
    if (typeof doc.id !== 'string' || typeof doc.schema !== 'string' || typeof doc.properties !== 'object' || !doc.properties) {
      throw new ValidationError({ file: `Line ${i + 1} is not a FollowTheMoney entity (it needs "id", "schema" and "properties").` });
    }
    if (!PARTY_SCHEMATA.has(doc.schema)) {
      skipped++;
      continue;
    }
    const p = doc.properties;
    const get = (props: string[]) => clean(props.flatMap((k) => (Array.isArray(p[k]) ? p[k] : [])));
    const names = get(NAME_PROPS);
    if (!names.length) throw new ValidationError({ file: `Line ${i + 1} (${doc.id}) has no name.` });
    entities.push({
      entityId: doc.id,
      listId,
      entityType: doc.schema,
      names,
      countries: upperCountries(get(COUNTRY_PROPS)),
      birthDates: get(['birthDate']),
      identifiers: get(ID_PROPS),
      programs: get(['program', 'programId', 'topics']),
    });
  }
  return { entities, skipped };
}

/** CSL columns: `name`, `alt_names`, `addresses`, `countries`, `source`, `programs` (more are read when present). */
export function parseCslCsv(text: string, listId: string): { entities: ListEntity[]; skipped: number } {
  let rows: Array<Record<string, string>>;
  try {
    rows = parse(text, { columns: (header: string[]) => header.map((h) => h.trim().toLowerCase()), skip_empty_lines: true, bom: true, relax_column_count: true });
  } catch (err) {
    throw new ValidationError({ file: `The CSV could not be read: ${(err as Error).message}` });
  }
  if (rows.length && !('name' in rows[0]!)) throw new ValidationError({ file: 'The CSV needs a "name" column (the Consolidated Screening List columns: name, alt_names, addresses, countries, source, programs).' });
  const split = (v: string | undefined) => clean((v ?? '').split(/;/));
  const entities = rows.map((row, i) => {
    if (!row.name?.trim()) throw new ValidationError({ file: `Row ${i + 2} has no name.` });
    // The CSL has no country column of its own; an address ends with its country code.
    const fromAddresses = split(row.addresses).map((a) => a.split(',').pop()!.trim());
    return {
      entityId: row._id?.trim() || row.entity_number?.trim() || `row-${i + 2}`,
      listId,
      entityType: /individual/i.test(row.type ?? '') ? 'Person' : 'Organization',
      names: clean([row.name, ...split(row.alt_names)]),
      countries: upperCountries([...split(row.countries), ...split(row.nationalities), ...split(row.citizenships), ...fromAddresses]),
      birthDates: split(row.dates_of_birth),
      identifiers: split(row.ids).map((id) => id.replace(/^[A-Za-z ]+\s(?=\S*\d)/, '')),
      programs: clean([...split(row.programs), row.source ?? '']),
    };
  });
  return { entities, skipped: 0 };
}

export function parseList(text: string, format: ListFormat, listId: string) {
  return format === 'ftm' ? parseFtmLines(text, listId) : parseCslCsv(text, listId);
}
