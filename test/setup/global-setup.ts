import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureFerretDB, startEmbedded, type EmbeddedServer } from '../../server/db/embedded';

declare global {
  var __downstreamTestDb: { server: EmbeddedServer; dir: string } | undefined;
}

/**
 * Tests run against a real database: MONGODB_URI when given, otherwise one embedded FerretDB
 * for the whole run (workers inherit MONGODB_URI from here).
 */
export default async function globalSetup() {
  if (process.env.MONGODB_URI) return;
  await ensureFerretDB((line) => process.stdout.write(`${line}\n`));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-test-db-'));
  const server = await startEmbedded({ dir });
  process.env.MONGODB_URI = server.uri;
  globalThis.__downstreamTestDb = { server, dir };
}
