import type { mongo } from 'mongoose';
import { chunksOf, duplicateKeyIndexes } from './engine';

/** One guarded write: an update whose filter holds the guard, or an insert that a unique `_id` guards. */
export type GuardedWrite = { id: string; update: { filter: mongo.Document; update: mongo.Document } } | { id: string; insert: mongo.Document };

/**
 * Guarded single-document writes sent as unordered bulk commands (one command per chunk, not
 * one per document: on the embedded engine a command costs about a third more than a
 * statement of a bulk). Returns the ids whose write may not have applied, for the caller to
 * read again and redo what is still missing:
 * - an insert refused by a duplicate key (someone created the document first);
 * - every update of a chunk whose matched count fell short. A bulk result does not say which
 *   filter missed, and a conflict is rare (two folds of one document at once), so the whole
 *   chunk is re-read; the callers' writes are idempotent (documents remember what they hold).
 */
export async function guardedBulkWrite(collection: mongo.Collection, writes: readonly GuardedWrite[]): Promise<string[]> {
  const suspects: string[] = [];
  for (const chunk of chunksOf(writes)) {
    const ops = chunk.map((w): mongo.AnyBulkWriteOperation => ('insert' in w ? { insertOne: { document: w.insert } } : { updateOne: w.update }));
    const updates = chunk.filter((w) => 'update' in w);
    let matched: number;
    try {
      matched = (await collection.bulkWrite(ops, { ordered: false })).matchedCount;
    } catch (err) {
      for (const i of duplicateKeyIndexes(err)) suspects.push(chunk[i]!.id);
      matched = (err as { result?: { matchedCount?: number } }).result?.matchedCount ?? 0;
    }
    if (matched < updates.length) suspects.push(...updates.map((w) => w.id));
  }
  return suspects;
}
