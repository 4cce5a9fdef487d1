import type { Model } from 'mongoose';
import type { Engine } from './engine';

/**
 * Documents by `_id`, in the order of `ids` (null where none). MongoDB answers one `$in` from
 * the `_id` index; FerretDB v1 runs `$in` as a scan of the collection (9–10 s at 200,000), so
 * there each id is its own `_id` equality read, in parallel. Every fan-out over ids in the
 * stores goes through here.
 */
export async function byIds<T extends { _id: unknown }>(engine: Engine, model: Model<never>, ids: readonly string[], projection?: Record<string, 0 | 1>): Promise<Array<T | null>> {
  if (!ids.length) return [];
  if (engine.secondaryIndexes) {
    const found = await model.collection.find({ _id: { $in: [...new Set(ids)] } } as never, projection ? { projection } : {}).toArray();
    const byId = new Map(found.map((d) => [String(d._id), d as unknown as T]));
    return ids.map((id) => byId.get(id) ?? null);
  }
  return Promise.all(ids.map((id) => model.collection.findOne({ _id: id } as never, projection ? { projection } : {}) as Promise<T | null>));
}

/** The documents found by `byIds`, missing ones left out. */
export async function existingByIds<T extends { _id: unknown }>(engine: Engine, model: Model<never>, ids: readonly string[], projection?: Record<string, 0 | 1>): Promise<T[]> {
  return (await byIds<T>(engine, model, ids, projection)).filter((d): d is T => d !== null);
}
