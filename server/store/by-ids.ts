import type { Model } from 'mongoose';
import { eachLimited } from '../concurrency';
import type { Engine } from './engine';

/**
 * `_id` reads in flight at once on FerretDB: as many as the driver's pool has connections (100),
 * which would queue the rest anyway. Each read queued in the driver holds memory until it is
 * answered: a check-in fold that read its 25,000 log entries all at once held 150–200 MB more
 * live heap than between folds (`--trace-gc`), and took the server past its 512 MB budget.
 */
const READS_IN_FLIGHT = 100;

/**
 * Documents by `_id`, in the order of `ids` (null where none). MongoDB answers one `$in` from
 * the `_id` index; FerretDB v1 runs `$in` as a scan of the collection (9–10 s at 200,000), so
 * there each id is its own `_id` equality read, READS_IN_FLIGHT at a time. Every fan-out over ids in the
 * stores goes through here.
 */
export async function byIds<T extends { _id: unknown }>(engine: Engine, model: Model<never>, ids: readonly string[], projection?: Record<string, 0 | 1>): Promise<Array<T | null>> {
  if (!ids.length) return [];
  if (engine.secondaryIndexes) {
    const found = await model.collection.find({ _id: { $in: [...new Set(ids)] } } as never, projection ? { projection } : {}).toArray();
    const byId = new Map(found.map((d) => [String(d._id), d as unknown as T]));
    return ids.map((id) => byId.get(id) ?? null);
  }
  const found: Array<T | null> = ids.map(() => null);
  await eachLimited([...ids.keys()], READS_IN_FLIGHT, async (i) => {
    found[i] = (await model.collection.findOne({ _id: ids[i] } as never, projection ? { projection } : {})) as T | null;
  });
  return found;
}

/** The documents found by `byIds`, missing ones left out. */
export async function existingByIds<T extends { _id: unknown }>(engine: Engine, model: Model<never>, ids: readonly string[], projection?: Record<string, 0 | 1>): Promise<T[]> {
  return (await byIds<T>(engine, model, ids, projection)).filter((d): d is T => d !== null);
}
