/**
 * Imports a restricted-party screening list, replacing the list of the same id atomically,
 * then screens every stored party against the lists again, with progress:
 *   npm run screening:import -- FILE [--id LIST_ID] [--name NAME] [--source SOURCE] [--version YYYY-MM-DD] [--format ftm|csl] [--no-rescreen]
 * FILE is OpenSanctions FollowTheMoney entities as JSON lines, or a CSV with the US
 * Consolidated Screening List's columns (README "Restricted-party screening"). Lists are never
 * fetched by the portal: download them yourself. With the embedded database, run it while the
 * portal is stopped, or upload the file on /admin/screening instead.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { systemClock } from '../server/clock';
import { ConfigError, loadConfig } from '../server/config';
import { connectDatabase } from '../server/db';
import { HttpError } from '../server/errors';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createStores } from '../server/store';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { id: { type: 'string' }, name: { type: 'string' }, source: { type: 'string' }, version: { type: 'string' }, format: { type: 'string' }, 'no-rescreen': { type: 'boolean', default: false } },
});

async function main() {
  const file = positionals[0];
  if (!file) throw new Error('Give the list file: npm run screening:import -- FILE [--id LIST_ID] [--name NAME] [--source SOURCE] [--version YYYY-MM-DD] [--format ftm|csl]');
  if (args.format && args.format !== 'ftm' && args.format !== 'csl') throw new Error('--format is ftm or csl.');
  const base = path.basename(file).replace(/\.[^.]+$/, '').replace(/\.ftm$/, '');
  const listId = (args.id ?? base).toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63);
  const text = fs.readFileSync(file, 'utf8');

  const config = loadConfig();
  const logger = createLogger('warn');
  const db = await connectDatabase(config, logger);
  try {
    const services = createServices({ config, clock: systemClock, logger, stores: createStores(db.engine) });
    process.stdout.write(`Importing ${file} as list "${listId}" (${db.describe()})\n`);
    let shown = 0;
    const done = await services.screening.importList(
      { listId, name: args.name ?? base, source: args.source ?? path.resolve(file), versionDate: new Date(args.version ? `${args.version}T00:00:00Z` : fs.statSync(file).mtime), text, format: args.format as 'ftm' | 'csl' | undefined },
      null,
      (written, total) => {
        if (written - shown >= 5_000 || written === total) {
          shown = written;
          process.stdout.write(`  ${written.toLocaleString('en')} of ${total.toLocaleString('en')} entities and keys written\n`);
        }
      },
    );
    process.stdout.write(`List "${listId}": ${done.entities.toLocaleString('en')} parties (${done.skipped} other entities skipped), now active.\n`);
    if (args['no-rescreen']) {
      process.stdout.write('Re-screening left to the running portal (it is requested).\n');
      return;
    }
    const started = Date.now();
    const result = await services.screening.rescreen((screened, raised) => process.stdout.write(`  ${screened.toLocaleString('en')} parties screened, ${raised} new hits\n`));
    if (result) process.stdout.write(`Re-screened ${result.screened.toLocaleString('en')} parties in ${((Date.now() - started) / 1000).toFixed(1)} s: ${result.raised} new hits in the review queue.\n`);
    else process.stdout.write('A re-screening is already running elsewhere; it will include this list.\n');
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  const fields = err instanceof HttpError && err.fields ? ` ${Object.values(err.fields).join(' ')}` : '';
  process.stderr.write(`screening:import could not run: ${err instanceof ConfigError || err instanceof HttpError ? `${err.message}${fields}` : ((err as Error)?.stack ?? String(err))}\n`);
  process.exit(1);
});
