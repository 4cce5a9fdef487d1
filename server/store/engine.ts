import type mongoose from 'mongoose';

/**
 * What the connected database can do, detected once at connect time (server/db) and used only
 * inside server/store: services never learn which engine they run on.
 *
 * - `mongodb`: any MongoDB (Atlas, replica set, sharded cluster). Secondary indexes serve
 *   `$in`, ranges, sorts and counts.
 * - `ferretdb`: the embedded FerretDB v1.24 on SQLite. Only `_id` equality reaches an index;
 *   every other filter scans the collection, so large collections are read by `_id` only.
 */
export interface Engine {
  readonly kind: 'mongodb' | 'ferretdb';
  readonly version: string;
  /** Secondary indexes answer filters other than `_id` equality. */
  readonly secondaryIndexes: boolean;
  /** Most write statements one command may carry (see STATEMENTS_PER_COMMAND). */
  readonly statementsPerCommand: number;
}

/**
 * FerretDB v1.24 holds a pooled connection per statement until the command ends (its pool has
 * 100), so a command of more than ~100 statements never returns: measured by the benchmark
 * with unit summary updates. Bulk writes go in chunks on every engine (MongoDB splits large
 * batches itself, so chunking costs it nothing measurable).
 */
export const STATEMENTS_PER_COMMAND = 50;

/** FerretDB answers `buildInfo` with a `ferretdbVersion` field; MongoDB does not. */
export async function detectEngine(connection: mongoose.Connection): Promise<Engine> {
  const info = await connection.db!.admin().command({ buildInfo: 1 });
  if (typeof info.ferretdbVersion === 'string') {
    return { kind: 'ferretdb', version: info.ferretdbVersion, secondaryIndexes: false, statementsPerCommand: STATEMENTS_PER_COMMAND };
  }
  return { kind: 'mongodb', version: String(info.version ?? 'unknown'), secondaryIndexes: true, statementsPerCommand: STATEMENTS_PER_COMMAND };
}

/** `list` in consecutive chunks of at most `size` (default: STATEMENTS_PER_COMMAND). */
export function chunksOf<T>(list: readonly T[], size = STATEMENTS_PER_COMMAND): T[][] {
  return Array.from({ length: Math.ceil(list.length / size) }, (_, i) => list.slice(i * size, (i + 1) * size));
}

/** MongoDB's (and FerretDB's) duplicate key error: a unique `_id` or index refused an insert or upsert. */
export const DUPLICATE_KEY = 11000;
export const isDuplicateKey = (err: unknown): boolean => (err as { code?: number } | null)?.code === DUPLICATE_KEY;

type WriteError = { index: number; code?: number; errmsg?: string };

/** The statements a failed bulk write or `insertMany` refused (the driver gives a lone one as an object). */
export function writeErrorsOf(err: unknown): WriteError[] {
  const raw = (err as { writeErrors?: WriteError[] | WriteError } | null)?.writeErrors;
  return Array.isArray(raw) ? raw : raw ? [raw] : [];
}

/**
 * The indexes of the statements an unordered bulk write refused as duplicate keys; any other
 * failure is rethrown. So is a bulk error without write errors: a connection lost mid-batch
 * comes so, and is no proof that anything was stored (answered as stored once: acknowledged,
 * then missing; found by test/soak).
 */
export function duplicateKeyIndexes(err: unknown): number[] {
  const list = writeErrorsOf(err);
  if (!list.length || !list.every(isDuplicateKey)) throw err;
  return list.map((e) => e.index);
}

/**
 * Runs an unordered bulk write (an `insertMany` whose unique `_id`s are its idempotency check)
 * and answers the indexes its duplicate keys refused; any other failure is thrown.
 */
export async function duplicatesIn(write: () => Promise<unknown>): Promise<number[]> {
  try {
    await write();
    return [];
  } catch (err) {
    return duplicateKeyIndexes(err);
  }
}
