import mongoose, { Schema } from 'mongoose';
import { detectEngine } from '../server/store/engine';
import { createTestContext, type TestContext } from './helpers/context';

const Tally = mongoose.model('Tally', new Schema({ _id: String, n: Number, owner: { type: String, default: null } }, { versionKey: false }));

describe('single-document updates under concurrency', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('keeps every one of 30 concurrent $inc updates to one document', async () => {
    await Tally.create({ _id: 'inc', n: 0 });
    await Promise.all(Array.from({ length: 30 }, () => Tally.updateOne({ _id: 'inc' }, { $inc: { n: 1 } })));
    expect((await Tally.findById('inc').lean())!.n).toBe(30);
  });

  it('lets exactly one of 10 concurrent conditional updates win', async () => {
    await Tally.create({ _id: 'claim', n: 0 });
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => Tally.updateOne({ _id: 'claim', owner: null }, { $set: { owner: `caller-${i}` } })),
    );
    expect(results.filter((r) => r.modifiedCount === 1)).toHaveLength(1);
    expect((await Tally.findById('claim').lean())!.owner).toMatch(/^caller-\d$/);
  });

  it('knows which server it talks to', async () => {
    // The suite runs on the embedded FerretDB unless MONGODB_URI points at a real MongoDB.
    const ferret = (await detectEngine(mongoose.connection)).kind === 'ferretdb';
    const info = await mongoose.connection.db!.admin().command({ buildInfo: 1 });
    expect(ferret).toBe(typeof info.ferretdbVersion === 'string');
  });
});
