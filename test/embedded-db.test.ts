import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mongoose from 'mongoose';
import { startEmbedded } from '../server/db/embedded';
import { buildDeclaredIndexes } from '../server/db/indexes';
import { exitOf, isAlive, killSpawned, runTs, waitFor } from './helpers/processes';

const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-embedded-'));

describe('embedded FerretDB', () => {
  afterEach(killSpawned);
  it('serves on loopback, keeps data across a stop and a restart, and leaves no process behind', async () => {
    const dir = tmpDir();
    const first = await startEmbedded({ dir });
    expect(first.uri).toMatch(/^mongodb:\/\/127\.0\.0\.1:\d+\/$/);
    expect(isAlive(first.pid)).toBe(true);

    const conn = await mongoose.createConnection(first.uri, { dbName: 'persist' }).asPromise();
    const hello = await conn.db!.admin().command({ hello: 1 });
    expect(hello.isWritablePrimary).toBe(true);
    await conn.collection('things').insertOne({ _id: 'kept' as never, n: 42 });
    await conn.close();

    await first.stop();
    expect(first.running).toBe(false);
    expect(isAlive(first.pid)).toBe(false);
    expect(fs.readdirSync(dir)).toContain('persist.sqlite');

    const second = await startEmbedded({ dir });
    try {
      const again = await mongoose.createConnection(second.uri, { dbName: 'persist' }).asPromise();
      expect(await again.collection('things').findOne({ _id: 'kept' as never })).toEqual({ _id: 'kept', n: 42 });
      await again.close();
    } finally {
      await second.stop();
    }
    expect(isAlive(second.pid)).toBe(false);
  });

  it('looks a document up by `_id` when the filter has other conditions too, and still applies them (patched FerretDB)', async () => {
    const server = await startEmbedded({ dir: tmpDir() });
    const conn = await mongoose.createConnection(server.uri, { dbName: 'pushdown' }).asPromise();
    try {
      const things = conn.collection<{ _id: string; status: string; n: number }>('things');
      await things.insertMany([
        { _id: 'a', status: 'open', n: 1 },
        { _id: 'b', status: 'closed', n: 2 },
      ]);
      const plan = async (filter: object) => (await conn.db!.command({ explain: { find: 'things', filter } })).filterPushdown as boolean;
      expect(await plan({ _id: 'a', status: 'open' })).toBe(true);
      expect(await plan({ _id: 'a' })).toBe(true);
      expect(await plan({ status: 'open' })).toBe(false);

      expect(await things.findOne({ _id: 'a', status: 'open' })).toEqual({ _id: 'a', status: 'open', n: 1 });
      expect(await things.findOne({ _id: 'a', status: 'closed' })).toBeNull();
      expect(await things.countDocuments({ _id: 'a', n: { $gt: 5 } })).toBe(0);
      expect((await things.updateOne({ _id: 'b', status: { $ne: 'closed' } }, { $set: { n: 9 } })).matchedCount).toBe(0);
      expect((await things.updateOne({ _id: 'b', status: 'closed' }, { $set: { n: 3 } })).modifiedCount).toBe(1);
      expect((await things.deleteOne({ _id: 'a', status: 'closed' })).deletedCount).toBe(0);
      expect(await things.aggregate([{ $match: { _id: 'b', status: 'open' } }]).toArray()).toEqual([]);
      expect(await things.find({}).sort({ _id: 1 }).toArray()).toEqual([
        { _id: 'a', status: 'open', n: 1 },
        { _id: 'b', status: 'closed', n: 3 },
      ]);
    } finally {
      await conn.close();
      await server.stop();
    }
  });

  it('builds only the unique declared indexes (no query reaches the others) and drops the others an older version built', async () => {
    const server = await startEmbedded({ dir: tmpDir() });
    const conn = await mongoose.createConnection(server.uri, { dbName: 'indexes', autoIndex: false }).asPromise();
    try {
      const schema = new mongoose.Schema({ _id: String, email: String, status: String, at: Date }, { versionKey: false });
      schema.index({ email: 1 }, { unique: true });
      schema.index({ status: 1, at: -1 });
      const Account = conn.model('Account', schema);
      await Account.init();
      await Account.collection.createIndex({ status: 1, at: -1 }, { name: 'status_1_at_-1' }); // as an older version built it
      const names = async () => (await Account.collection.indexes()).map((i) => i.name).sort();
      expect(await names()).toEqual(['_id_', 'status_1_at_-1']);

      const said: unknown[] = [];
      await buildDeclaredIndexes([Account as never], { kind: 'ferretdb', version: 'test', secondaryIndexes: false, statementsPerCommand: 50 }, { info: (o: unknown) => said.push(o) });
      expect(await names()).toEqual(['_id_', 'email_1']);
      expect(said).toEqual([{ dropped: 1 }]);
      await Account.create({ _id: 'a', email: 'one@example.test', status: 'open', at: new Date() });
      await expect(Account.create({ _id: 'b', email: 'one@example.test', status: 'open', at: new Date() })).rejects.toMatchObject({ code: 11000 });
      // What the dropped index was for: a filter on `status`, which this engine never pushes down.
      expect((await conn.db!.command({ explain: { find: 'accounts', filter: { status: 'open' } } })).filterPushdown).toBe(false);
      expect(await Account.countDocuments({ status: 'open' })).toBe(1);

      // Run again (a second instance starting): nothing left to drop, nothing fails.
      await buildDeclaredIndexes([Account as never], { kind: 'ferretdb', version: 'test', secondaryIndexes: false, statementsPerCommand: 50 }, { info: (o: unknown) => said.push(o) });
      expect(await names()).toEqual(['_id_', 'email_1']);
      expect(said).toHaveLength(1);

      // An engine whose indexes answer queries (MongoDB) gets every declared index.
      await buildDeclaredIndexes([Account as never], { kind: 'mongodb', version: 'test', secondaryIndexes: true, statementsPerCommand: 50 }, { info: () => {} });
      expect(await names()).toEqual(['_id_', 'email_1', 'status_1_at_-1']);
    } finally {
      await conn.close();
      await server.stop();
    }
  });

  it('keeps a pushed-to list to its `$slice`, as MongoDB does, trimming one grown before (patched FerretDB)', async () => {
    const server = await startEmbedded({ dir: tmpDir() });
    const conn = await mongoose.createConnection(server.uri, { dbName: 'slice' }).asPromise();
    try {
      const lists = conn.collection<{ _id: string; items: number[] }>('lists');
      const push = (_id: string, values: number[], slice: unknown) => lists.updateOne({ _id }, { $push: { items: { $each: values, $slice: slice as number } } }, { upsert: true });
      const items = async (_id: string) => (await lists.findOne({ _id }))?.items;

      for (let i = 1; i <= 5; i++) await push('newest', [i], -3);
      expect(await items('newest')).toEqual([3, 4, 5]);
      await push('oldest', [1, 2, 3, 4], 2);
      expect(await items('oldest')).toEqual([1, 2]);
      await push('oldest', [], 0);
      expect(await items('oldest')).toEqual([]);

      // A list that grew while `$slice` was ignored is trimmed by its next push.
      await lists.insertOne({ _id: 'grown', items: Array.from({ length: 50 }, (_, i) => i) });
      await push('grown', [50], -10);
      expect(await items('grown')).toEqual([41, 42, 43, 44, 45, 46, 47, 48, 49, 50]);

      await expect(push('newest', [6], 1.5)).rejects.toThrow(/\$slice must be an integer/);
      expect(await items('newest')).toEqual([3, 4, 5]);
    } finally {
      await conn.close();
      await server.stop();
    }
  });

  it('exits by itself when its parent is killed without warning (no orphan)', async () => {
    const parent = runTs('test/fixtures/embedded-parent.ts', [tmpDir()], {});
    await waitFor(() => /^\d+\n/.test(parent.output()), 20_000);
    const ferretPid = Number(parent.output().trim().split('\n')[0]);
    expect(isAlive(ferretPid)).toBe(true);

    parent.kill('SIGKILL');
    await exitOf(parent);
    expect(await waitFor(() => !isAlive(ferretPid), 5_000)).toBe(true);
  });

  it('reports an unexpected exit instead of restarting silently', async () => {
    const server = await startEmbedded({ dir: tmpDir() });
    const exited = new Promise<number | null>((resolve) => server.on('exit', (code: number | null) => resolve(code)));
    process.kill(server.pid, 'SIGKILL');
    await exited;
    expect(server.running).toBe(false);
    expect(isAlive(server.pid)).toBe(false);
  });
});
