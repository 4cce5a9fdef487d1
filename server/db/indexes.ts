import type mongoose from 'mongoose';
import type { Logger } from '../logger';
import type { Engine } from '../store/engine';

/** MongoDB's answer to dropping an index that is already gone (another instance dropped it first). */
const INDEX_NOT_FOUND = 27;

type IndexSpec = [Record<string, unknown>, Record<string, unknown>];

/**
 * The models' declared indexes, built before the first request (Mongoose's own automatic
 * build is switched off at connect, so that this decides).
 *
 * On MongoDB every declared index is built: they answer the filters, sorts and counts.
 *
 * On the embedded FerretDB v1.24 (SQLite) a query reaches an index only by `_id` equality:
 * its SQLite backend pushes no other filter down (internal/backends/sqlite/collection.go). A
 * secondary index there is a SQLite expression index over the stored JSON that no query
 * uses, yet every insert evaluates it and every update of the row evaluates it again: sales
 * stored through the API cost the engine nearly twice the CPU of the same documents in a
 * collection without its index. So only unique indexes (they carry correctness: one account
 * per email address) are built there, and the others, built by earlier versions, are dropped.
 */
export async function buildDeclaredIndexes(models: readonly mongoose.Model<unknown>[], engine: Engine, logger: Pick<Logger, 'info'>) {
  if (engine.secondaryIndexes) {
    await Promise.all(models.map((model) => model.ensureIndexes()));
    return;
  }
  let dropped = 0;
  await Promise.all(
    models.map(async (model) => {
      const unique = (model.schema.indexes() as IndexSpec[]).filter(([, options]) => options.unique === true);
      for (const [fields, options] of unique) await model.collection.createIndex(fields as Record<string, 1 | -1>, options);
      for (const index of await model.collection.indexes()) {
        if (index.name === '_id_' || index.unique || !index.name) continue;
        try {
          await model.collection.dropIndex(index.name);
          dropped++;
        } catch (err) {
          if ((err as { code?: number }).code !== INDEX_NOT_FOUND) throw err;
        }
      }
    }),
  );
  if (dropped) logger.info({ dropped }, 'embedded database: dropped secondary indexes no query can use (only `_id` lookups reach an index)');
}
