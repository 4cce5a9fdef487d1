import crypto from 'node:crypto';
import mongoose from 'mongoose';
import { detectEngine } from '../server/store/engine';
import { guardedBulkWrite } from '../server/store/guarded-writes';
import { exitOf, killSpawned, runTs, waitFor } from './helpers/processes';

/**
 * Single-document updates stay atomic when several app processes write at once: the embedded
 * FerretDB holds a per-collection write lock around update, findAndModify and delete
 * (server/db/ferretdb-patch.ts); MongoDB does this by itself. Each client process has its own
 * driver connections and fires its calls concurrently, so both kinds of concurrency meet.
 */
const PROCESSES = 2;

describe('single-document updates from several processes at once', () => {
  let client: mongoose.mongo.MongoClient;
  let dbName: string;
  const things = () => client.db(dbName).collection<{ _id: string; n?: number; status?: string; by?: string; items?: string[] }>('things');

  beforeAll(async () => {
    client = await new mongoose.mongo.MongoClient(process.env.MONGODB_URI!).connect();
  });
  beforeEach(() => {
    dbName = `concurrent_${crypto.randomBytes(4).toString('hex')}`;
  });
  afterEach(async () => {
    await killSpawned();
    await client.db(dbName).dropDatabase();
  });
  afterAll(() => client.close());

  /** Runs `perProcess` calls of `kind` in each of the client processes, all at once; returns every call's result. */
  async function concurrently(kind: string, perProcess: number): Promise<unknown[]> {
    const writers = Array.from({ length: PROCESSES }, (_, p) => runTs('test/fixtures/concurrent-writer.ts', [process.env.MONGODB_URI!, dbName, kind, String(perProcess), `p${p}`], {}));
    expect(await waitFor(() => writers.every((w) => w.output().includes('READY') || w.exitCode !== null), 20_000)).toBe(true);
    for (const w of writers) w.stdin!.write('GO\n');
    const codes = await Promise.all(writers.map(exitOf));
    expect({ codes, output: writers.map((w) => w.output()) }).toMatchObject({ codes: writers.map(() => 0) });
    return writers.flatMap((w) => JSON.parse(w.output().trim().split('\n').pop()!) as unknown[]);
  }

  it('keeps every one of 20 concurrent $inc updates to one document', async () => {
    await things().insertOne({ _id: 'counter', n: 0 });
    const modified = await concurrently('inc', 10);
    expect(modified).toEqual(Array(20).fill(1));
    expect((await things().findOne({ _id: 'counter' }))!.n).toBe(20);
  });

  it('lets exactly one of 10 concurrent guarded updates win', async () => {
    await things().insertOne({ _id: 'claim', status: 'open' });
    const modified = await concurrently('claim', 5);
    expect(modified.filter((m) => m === 1)).toHaveLength(1);
    expect(modified.filter((m) => m === 0)).toHaveLength(9);
    expect(await things().findOne({ _id: 'claim' })).toMatchObject({ status: 'taken', by: expect.stringMatching(/^p\d-\d$/) });
  });

  it('lands every one of 20 concurrent $push updates', async () => {
    await things().insertOne({ _id: 'list', items: [] });
    await concurrently('push', 10);
    const { items } = (await things().findOne({ _id: 'list' }))!;
    expect([...items!].sort()).toEqual([...Array.from({ length: 10 }, (_, i) => `p0-${i}`), ...Array.from({ length: 10 }, (_, i) => `p1-${i}`)].sort());
  });

  it('gives each concurrent findOneAndUpdate $inc its own value', async () => {
    await things().insertOne({ _id: 'sequence', n: 0 });
    const values = await concurrently('next', 10);
    expect([...values].sort((a, b) => (a as number) - (b as number))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect((await things().findOne({ _id: 'sequence' }))!.n).toBe(20);
  });

  it('names the guarded bulk writes that may not have applied, and only those chunks', async () => {
    await things().insertMany([{ _id: 'a', n: 1 }, { _id: 'b', n: 1 }, { _id: 'taken', n: 0 }]);
    const col = things() as never;
    // All guards hold: nothing to read again.
    expect(await guardedBulkWrite(col, [{ id: 'a', update: { filter: { _id: 'a', n: 1 }, update: { $set: { n: 2 } } } }, { id: 'new', insert: { _id: 'new', n: 1 } }])).toEqual([]);
    // b's guard no longer holds, and `taken` exists: the insert's id and every update of the chunk come back.
    const suspects = await guardedBulkWrite(col, [
      { id: 'a', update: { filter: { _id: 'a', n: 2 }, update: { $set: { n: 3 } } } },
      { id: 'b', update: { filter: { _id: 'b', n: 9 }, update: { $set: { n: 3 } } } },
      { id: 'taken', insert: { _id: 'taken', n: 5 } },
    ]);
    expect([...suspects].sort()).toEqual(['a', 'b', 'taken']);
    expect(await things().find({}).sort({ _id: 1 }).toArray()).toEqual([{ _id: 'a', n: 3 }, { _id: 'b', n: 1 }, { _id: 'new', n: 1 }, { _id: 'taken', n: 0 }]);
  });

  it('lets each statement of one bulk update see the statements before it', async () => {
    // The embedded engine writes a command's changes in one transaction at its end (patch 3):
    // a later statement on a document an earlier one changed must still see that change.
    await things().insertMany([{ _id: 'x', n: 0 }, { _id: 'y', n: 0, status: 'open' }]);
    const res = await things().bulkWrite(
      [
        { updateOne: { filter: { _id: 'x', n: 0 }, update: { $inc: { n: 1 } } } },
        { updateOne: { filter: { _id: 'y' }, update: { $set: { status: 'taken' } } } },
        { updateOne: { filter: { _id: 'x', n: 1 }, update: { $inc: { n: 1 } } } },
        { updateOne: { filter: { status: 'taken' }, update: { $set: { by: 'scan' } } } },
        { updateOne: { filter: { _id: 'x', n: 0 }, update: { $set: { n: 99 } } } },
        { updateOne: { filter: { _id: 'z' }, update: { $inc: { n: 1 } }, upsert: true } },
      ],
      { ordered: false },
    );
    expect({ matched: res.matchedCount, upserted: res.upsertedCount }).toEqual({ matched: 4, upserted: 1 });
    expect(await things().find({}).sort({ _id: 1 }).toArray()).toEqual([
      { _id: 'x', n: 2 },
      { _id: 'y', n: 0, status: 'taken', by: 'scan' },
      { _id: 'z', n: 1 },
    ]);
  });

  it('knows which server it talks to', async () => {
    // The suite runs on the embedded FerretDB unless MONGODB_URI points at a real MongoDB.
    const connection = await mongoose.createConnection(process.env.MONGODB_URI!).asPromise();
    try {
      const ferret = (await detectEngine(connection)).kind === 'ferretdb';
      const info = await connection.db!.admin().command({ buildInfo: 1 });
      expect(ferret).toBe(typeof info.ferretdbVersion === 'string');
    } finally {
      await connection.close();
    }
  });
});
