import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from './context';

/** The synthetic lists shipped for tests (test/fixtures/screening). */
export const SCREENING_FIXTURES = path.join(__dirname, '..', 'fixtures', 'screening');
export const syntheticFtm = () => fs.readFileSync(path.join(SCREENING_FIXTURES, 'synthetic-sanctions.ftm.jsonl'), 'utf8');
export const syntheticCsl = () => fs.readFileSync(path.join(SCREENING_FIXTURES, 'synthetic-csl.csv'), 'utf8');

/** Imports the synthetic FtM list (as a system import) and returns the import's outcome. */
export function importSyntheticList(ctx: TestContext, fields: { listId?: string; text?: string } = {}) {
  return ctx.services.screening.importList(
    { listId: fields.listId ?? 'synthetic-sanctions', name: 'Synthetic sanctions', source: 'test/fixtures/screening', versionDate: new Date('2026-01-01T00:00:00Z'), text: fields.text ?? syntheticFtm() },
    null,
  );
}
