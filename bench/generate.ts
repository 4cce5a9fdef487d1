/**
 * Builds the benchmark's data set:
 *   npm run bench:data -- --scale 1 [--seed 7]
 * into the embedded FerretDB under bench/data (or MONGODB_URI when set), replacing what was
 * there, and writes bench/data/manifest.json for `npm run bench`.
 */
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { systemClock } from '../server/clock';
import { loadConfig } from '../server/config';
import { connectDatabase } from '../server/db';
import { createLogger } from '../server/logger';
import { rebuildUnitTallies } from '../server/store/insight';
import { createServices } from '../server/services';
import { createStores } from '../server/store';
import { recordMigrationsApplied, runMigrations } from '../server/store/migrations';
import { generateDataset } from './dataset';
import { benchEnv, inheritedEnv, newSecret, writeManifest } from './lib/target';

const INVESTIGATORS = 5;

async function main() {
  const { values } = parseArgs({ options: { scale: { type: 'string', default: '1' }, seed: { type: 'string', default: '7' } } });
  const scale = Number(values.scale);
  const seed = Number(values.seed);
  if (!(scale > 0 && scale <= 16)) throw new Error('--scale must be a number in (0, 16], e.g. 0.25, 1 or 4');
  if (!Number.isInteger(seed)) throw new Error('--seed must be an integer');

  const jwtSecret = newSecret();
  const config = loadConfig(benchEnv(inheritedEnv(), jwtSecret));
  const logger = createLogger('warn');
  // A maintenance connection: the generator's long scans must not meet the portal's socket timeout.
  const db = await connectDatabase(config, logger, { maintenance: true });
  try {
    const started = Date.now();
    process.stdout.write(`database: ${db.describe()}\n`);
    await db.connection.dropDatabase();
    await Promise.all(Object.values(db.connection.models).map((model) => model.createIndexes()));

    const stores = createStores(db.engine);
    const services = createServices({ config, clock: systemClock, logger, stores });
    const password = () => crypto.randomBytes(18).toString('base64url');
    const admin = { email: 'bench-admin@example.org', password: password() };
    const investigator = { email: 'bench-investigator-1@example.org', password: password() };
    const adminUser = await services.auth.createUser({ ...admin, name: 'Bench Admin' }, 'admin');
    const investigatorIds: string[] = [];
    for (let i = 1; i <= INVESTIGATORS; i++) {
      const user = await services.auth.createUser({ email: `bench-investigator-${i}@example.org`, password: i === 1 ? investigator.password : password(), name: `Bench Investigator ${i}` }, 'investigator');
      investigatorIds.push(String(user._id));
    }
    const { key } = await services.auth.createApiKey({ name: 'bench update server', scopes: ['check-ins'] }, String(adminUser._id));

    const dataset = await generateDataset({ scale, seed, investigatorIds, progress: (line) => process.stdout.write(`${line}\n`) });
    // Units went straight into their collection: the dashboard's tallies are built from them, as `npm run insight:rebuild` does.
    const tallied = await rebuildUnitTallies({ now: new Date(), progress: (n) => process.stdout.write(`unit tallies: ${n.toLocaleString('en')} units read\n`), progressEvery: 50_000 });
    process.stdout.write(`unit tallies rebuilt in ${(tallied.ms / 1000).toFixed(1)} s\n`);
    // Registrations went straight into their collection: their lists by model and country are built from them.
    process.stdout.write(`registration lists by model and country: ${(await stores.registrations.rebuildPlaceLists()).toLocaleString('en')} active registrations\n`);
    // The data set is written in the current shape: nothing for a migration to look for at start.
    await recordMigrationsApplied(db.engine);
    // …but its reports are written in the clear: sealed as `npm run migrate` does, so the
    // server does not spend its start (past the bench's wait) sealing them.
    await runMigrations(db.engine, { clearReports: services.reports.clearReports, progress: (line) => process.stdout.write(`${line}\n`) });
    // Cases went straight into their collection too: each unit's list of cases is built from them.
    process.stdout.write(`unit case lists: ${(await stores.cases.rebuildUnitCases()).toLocaleString('en')} units\n`);
    writeManifest({ dataset, database: db.describe(), generatedAt: new Date().toISOString(), jwtSecret, admin, investigator, apiKey: key });
    const seconds = (Date.now() - started) / 1000;
    process.stdout.write(
      `done in ${seconds.toFixed(1)} s: ${Object.entries(dataset.counts).map(([k, v]) => `${v.toLocaleString('en')} ${k}`).join(', ')}\n` +
        `heavy unit ${dataset.heavyUnit.id} (${dataset.heavyUnit.checkIns} check-ins), typical unit ${dataset.typicalUnit.id} (${dataset.typicalUnit.checkIns})\n` +
        `now run: npm run bench\n`,
    );
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:data: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
