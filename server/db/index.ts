import path from 'node:path';
import mongoose from 'mongoose';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { detectEngine, type Engine } from '../store/engine';
import { firstLooseEntry, restrictDataDir } from './data-dir';
import { buildDeclaredIndexes } from './indexes';
import { openSharedEmbedded, type SharedEmbedded } from './engine-lock';

// Operator injection is stopped at the edge (reject-operators middleware + zod schemas that
// only produce strings, numbers and dates). Mongoose's global sanitizeFilter is not used: it
// would also neuter the services' own `$lte`/`$in` filters unless each were wrapped.
mongoose.set('strictQuery', true);
// Mongoose keeps `new Error().stack` of every query only to name where a query ran first if
// it is run twice (a bug that throws anyway). With source maps on (tsx), formatting that stack
// was ~0.14 ms a query, 4% of the server's CPU under the bench's timeline load (issue 7).
mongoose.set('skipOriginalStackTraces', true);

export interface Database {
  connection: mongoose.Connection;
  /**
   * The embedded database of DATA_DIR, run by this process ('owner') or by another one that
   * this process joined ('joined'); null when MONGODB_URI points elsewhere.
   */
  embedded: SharedEmbedded | null;
  /** What the connected engine can do; read only by server/store. */
  engine: Engine;
  /** Where the data lives, for the start-up banner. */
  describe(): string;
  /** True when a round trip to the server succeeds within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Every process that works on DATA_DIR comes through here (the portal and every maintenance
 * command), so this is where the data directory is locked down and where a process either
 * starts the embedded database or joins the one already running on the same DATA_DIR.
 */
/**
 * `maintenance`: for one-off commands (migrations, rebuilds) whose whole-collection scans may
 * legitimately run for minutes on the embedded engine; the portal keeps its short timeouts.
 */
export interface ConnectOptions {
  maintenance?: boolean;
}

export async function connectDatabase(config: Config, logger: Logger, options: ConnectOptions = {}): Promise<Database> {
  restrictDataDir(config.dataDir);
  const loose = firstLooseEntry(config.dataDir);
  if (loose) {
    logger.warn(
      { path: loose.path, mode: loose.mode },
      `${loose.path} has mode ${loose.mode}: other local users can read the data directory; run chmod -R go-rwx ${config.dataDir}`,
    );
  }

  let embedded: SharedEmbedded | null = null;
  let uri = config.mongodbUri;
  const dbDir = path.join(config.dataDir, 'db');
  if (!uri) {
    // The owner supervises FerretDB (restarted on the same port if it dies, and logged).
    embedded = await openSharedEmbedded(
      {
        dir: dbDir,
        logLevel: config.embeddedDbLogLevel,
        onLog: (line) => logger.debug({ ferretdb: line }, 'ferretdb'),
        onBuildProgress: (line) => process.stdout.write(`${line}\n`),
      },
      logger,
    );
    uri = embedded.uri;
  }

  const connection = await connectWithRetry(uri, config.databaseName, options.maintenance ? 0 : REQUEST_SOCKET_TIMEOUT_MS).catch(async (err: Error) => {
    await embedded?.close();
    throw err;
  });

  const engine = await detectEngine(connection);

  // Collections and declared indexes exist before the first request; uniqueness carries correctness here.
  await Promise.all(Object.values(connection.models).map((model) => model.init()));
  await buildDeclaredIndexes(Object.values(connection.models), engine, logger);

  return {
    connection,
    embedded,
    engine,
    describe: () =>
      embedded
        ? `embedded FerretDB ${embedded.uri} (SQLite files in ${dbDir}; ${embedded.role === 'owner' ? 'run by this process' : `joined, run by process ${embedded.ownerPid}`})`
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
      await embedded?.close();
    },
  };
}

/**
 * While the database is down every query fails after `serverSelectionTimeoutMS`, which the
 * error middleware turns into a 503: it must stay well under the 2 s a client waits for an
 * answer. A remote MongoDB may need longer for its first handshake, hence the retries at start.
 */
const SERVER_SELECTION_TIMEOUT_MS = 1_000;
const CONNECT_ATTEMPTS = 10;

/** A hung (not dead) server must not hold a request forever either. */
const REQUEST_SOCKET_TIMEOUT_MS = 60_000;

async function connectWithRetry(uri: string, dbName: string, socketTimeoutMS: number): Promise<mongoose.Connection> {
  for (let attempt = 1; ; attempt++) {
    try {
      const m = await mongoose.connect(uri, {
        dbName,
        serverSelectionTimeoutMS: SERVER_SELECTION_TIMEOUT_MS,
        // Notice a restarted server quickly instead of after the default 10 s.
        heartbeatFrequencyMS: 1_000,
        socketTimeoutMS,
        // Fail fast while the database is down instead of queueing requests for minutes.
        bufferCommands: false,
        // Built by buildDeclaredIndexes once the engine is known: which ones depends on it.
        autoIndex: false,
      });
      return m.connection;
    } catch (err) {
      if (attempt >= CONNECT_ATTEMPTS || (err as Error).name !== 'MongooseServerSelectionError') throw err;
      await mongoose.disconnect().catch(() => {});
    }
  }
}

export function redactUri(uri: string): string {
  return uri.replace(/\/\/[^@/]*@/, '//***@');
}
