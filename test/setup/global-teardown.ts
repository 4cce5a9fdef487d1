import fs from 'node:fs';

export default async function globalTeardown() {
  const db = globalThis.__downstreamTestDb;
  if (!db) return;
  await db.server.stop();
  fs.rmSync(db.dir, { recursive: true, force: true });
}
