import mongoose from 'mongoose';

/**
 * FerretDB v1 (SQLite backend) applies an update by reading the document, changing it in Go
 * and writing it back, without isolation between concurrent updates of the same document.
 * Measured here: 20 concurrent `updateOne({ $inc: { n: 1 } })` on one document left n = 3, and
 * conditional updates ("only if still empty") let several callers win. MongoDB applies each
 * single-document update atomically.
 *
 * Rather than ask every service to lock around every write, the driver's update methods are
 * serialised per collection once the connected server is known to be FerretDB. SQLite admits
 * one writer per database file anyway, so little concurrency is lost; reads and inserts stay
 * concurrent. The embedded database serves one app process, which is what makes an
 * in-process queue sufficient; several processes must share a real MongoDB.
 */
const UPDATE_METHODS = ['updateOne', 'updateMany', 'replaceOne', 'findOneAndUpdate', 'findOneAndReplace', 'bulkWrite'] as const;

let installed = false;
const tails = new Map<string, Promise<unknown>>();

export function serialiseUpdatesPerCollection(): void {
  if (installed) return;
  installed = true;
  const proto = mongoose.mongo.Collection.prototype as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const method of UPDATE_METHODS) {
    const original = proto[method]!;
    proto[method] = function (this: { namespace: string }, ...args: unknown[]) {
      const key = this.namespace;
      const run = (tails.get(key) ?? Promise.resolve()).then(() => original.apply(this, args));
      const tail = run.catch(() => undefined);
      tails.set(key, tail);
      // Drop the queue entry once idle so the map does not grow with collections seen.
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return run;
    };
  }
}
