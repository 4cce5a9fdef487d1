import fs from 'node:fs';
import path from 'node:path';
import Ajv, { type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Response } from 'supertest';
import { Unit } from '../../models/catalogue';
import { tallyUnits, type UnitTallyChange } from '../../server/store/insight';
import type { TestContext } from './context';
import { makeModel } from './catalogue';

/**
 * Insight factories and checks. Big data sets are written straight to the collection (the
 * catalogue's bulk path is tested by the catalogue module); everything an assertion reads
 * about flags, cases and registrations is made through the services.
 */

/**
 * `n` units of `modelId` with a first sale and, for some, a registered and a check-in country.
 * Written straight to the collection, so the dashboard's tallies are told, as a writer must.
 */
export async function bulkUnits(ctx: TestContext, modelId: string, n: number, shape: (i: number) => { country?: string | null; checkInCountry?: string | null } = () => ({})) {
  const now = ctx.clock.now();
  const BATCH = 5000;
  for (let start = 0; start < n; start += BATCH) {
    const docs = [];
    const changes: UnitTallyChange[] = [];
    for (let i = start; i < Math.min(n, start + BATCH); i++) {
      const serial = `B${String(i).padStart(7, '0')}`;
      const { country = null, checkInCountry = null } = shape(i);
      docs.push(
        new Unit({
          _id: `${modelId}:${serial}`,
          modelId,
          serial,
          firstSale: { channelPartner: 'Bulk Partner', shipToCountry: 'KE', soldAt: now },
          createdAt: now,
          status: country ? 'registered' : 'unregistered',
          current: { country },
          checkIns: checkInCountry ? { count: 3, lastAt: now, lastCountry: checkInCountry, lastFirmware: '2.1' } : undefined,
        }).toObject(),
      );
      changes.push({ modelId, units: 1, registered: country ? 1 : 0, withCheckIns: checkInCountry ? 1 : 0, registeredCountry: { from: null, to: country }, checkInCountry: { from: null, to: checkInCountry } });
    }
    await Unit.collection.insertMany(docs as never[], { ordered: false });
    await tallyUnits(changes);
  }
}

/**
 * A model and its units spread over registered countries (`{ KE: 3, UG: 1 }`); each unit last
 * checked in from its own country, except the first, which checked in from `strayTo`.
 */
export async function unitsIn(ctx: TestContext, spread: Record<string, number>, fields: Parameters<typeof makeModel>[1] = {}, strayTo = 'SY') {
  const model = await makeModel(ctx, fields);
  const countries = Object.entries(spread).flatMap(([country, n]) => Array<string>(n).fill(country));
  await bulkUnits(ctx, model._id, countries.length, (k) => ({ country: countries[k]!, checkInCountry: k === 0 ? strayTo : countries[k]! }));
  return model;
}

/** Reads a streamed download, counting lines as they arrive (never holding the body). */
export function lineCounter(res: Response & NodeJS.ReadableStream, callback: (err: Error | null, body: { lines: number; bytes: number; head: string }) => void) {
  let lines = 0;
  let bytes = 0;
  let head = '';
  res.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (head.length < 2000) head += chunk.toString('utf8');
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
  });
  res.on('end', () => callback(null, { lines, bytes, head }));
  res.on('error', (err: Error) => callback(err, { lines, bytes, head }));
}

let epcisValidator: ValidateFunction | null = null;

/** GS1's EPCIS 2.0 JSON schema (test/fixtures/epcis-2.0-schema.json), compiled once. */
export function epcisSchema(): ValidateFunction {
  if (!epcisValidator) {
    const schema = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'epcis-2.0-schema.json'), 'utf8')) as Record<string, unknown>;
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    epcisValidator = ajv.compile(schema);
  }
  return epcisValidator;
}
