import path from 'node:path';
import mongoose from 'mongoose';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { startEmbedded, type EmbeddedServer } from './embedded';

// Operator injection is stopped at the edge (reject-operators middleware + zod schemas that
// only produce strings, numbers and dates). Mongoose's global sanitizeFilter is not used: it
// would also neuter the services' own `$lte`/`$in` filters unless each were wrapped.
mongoose.set('strictQuery', true);

export interface Database {
  connection: mongoose.Connection;
  /** The embedded server, or null when MONGODB_URI points elsewhere. */
  embedded: EmbeddedServer | null;
  /** Where the data lives, for the start-up banner. */
  describe(): string;
  /** True when a round trip to the server succeeds within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

export async function connectDatabase(config: Config, logger: Logger): Promise<Database> {
  let embedded: EmbeddedServer | null = null;
  let uri = config.mongodbUri;
  const dbDir = path.join(config.dataDir, 'db');
  if (!uri) {
    embedded = await startEmbedded({
      dir: dbDir,
      logLevel: config.ferretdbLogLevel,
      onLog: (line) => logger.debug({ ferretdb: line }, 'ferretdb'),
      onBuildProgress: (line) => process.stdout.write(`${line}\n`),
    });
    embedded.on('exit', (code: number | null, signal: string | null, tail: string[]) => {
      logger.error({ code, signal, tail }, 'embedded FerretDB exited unexpectedly');
    });
    uri = embedded.uri;
  }

  const connection = await mongoose
    .connect(uri, {
      dbName: config.databaseName,
      serverSelectionTimeoutMS: 5_000,
      // Fail fast while the database is down instead of queueing requests for minutes.
      bufferCommands: false,
    })
    .then((m) => m.connection)
    .catch(async (err: Error) => {
      await embedded?.stop();
      throw err;
    });

  // Declared indexes exist before the first request; uniqueness carries correctness here.
  await Promise.all(Object.values(connection.models).map((model) => model.init()));

  return {
    connection,
    embedded,
    describe: () =>
      embedded
        ? `embedded FerretDB ${embedded.uri} (SQLite files in ${dbDir})`
        : `MongoDB at ${redactUri(uri)} (database "${config.databaseName}")`,
    async ping(timeoutMs = 1_500) {
      if (connection.readyState !== 1 || !connection.db) return false;
      const timeout = new Promise<false>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref());
      const ping = connection.db
        .admin()
        .command({ ping: 1 })
        .then(() => true)
        .catch(() => false);
      return Promise.race([ping, timeout]);
    },
    async close() {
      await mongoose.disconnect();
      await embedded?.stop();
    },
  };
}

export function redactUri(uri: string): string {
  return uri.replace(/\/\/[^@/]*@/, '//***@');
}
