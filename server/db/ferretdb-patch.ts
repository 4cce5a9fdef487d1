import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * One change to FerretDB v1.24's SQLite backend, made to a copy of the downloaded module when
 * the launcher is built (Go refuses overlays of module-cache files; no FerretDB source is kept
 * in this repository).
 *
 * The backend pushes an `_id` equality down to SQLite only when it is the filter's ONLY
 * condition (`params.Filter.Len() == 1`; FerretDB issue #3235), so a guarded update such as
 * `{ _id, registrationId: { $ne: id } }` or `{ _id, status: 'transfer-pending' }` read every
 * document of the collection: seconds per registration at 200,000 units. Every handler (find,
 * count, distinct, update, delete, findAndModify, aggregate) filters what the backend returns
 * again with the whole filter, so pushing the `_id` equality down whatever else the filter
 * holds only narrows what is read; test/embedded-db.test.ts checks both the plan and the result.
 */
export const FERRETDB_PATCHES = [
  {
    file: 'internal/backends/sqlite/collection.go',
    from: 'if params.Filter.Len() == 1 {',
    to: 'if params.Filter.Len() >= 1 { // Downstream: push `_id` down beside other conditions too (FerretDB #3235)',
    /** Query and Explain. */
    count: 2,
  },
] as const;

const FERRETDB_MODULE = 'github.com/FerretDB/FerretDB';

/**
 * Copies the launcher (`sourceDir`) and the FerretDB module it pins into `buildDir`, patches
 * the copy and points the launcher's copy at it; returns the directory to run `go build` in.
 * Throws, naming the file, when the upstream text is not as expected (a new FerretDB version
 * needs the patch reviewed).
 */
export function prepareFerretDBBuild(sourceDir: string, buildDir: string, env: NodeJS.ProcessEnv): string {
  const go = (cwd: string, args: string[]) => {
    const res = spawnSync('go', args, { cwd, env, encoding: 'utf8' });
    if (res.status !== 0) throw new Error(`go ${args.join(' ')} failed: ${(res.stderr || res.stdout || String(res.error)).trim().split('\n').slice(-5).join('\n')}`);
    return res.stdout.trim();
  };
  go(sourceDir, ['mod', 'download', FERRETDB_MODULE]);
  const moduleDir = go(sourceDir, ['list', '-m', '-f', '{{.Dir}}', FERRETDB_MODULE]);

  fs.rmSync(buildDir, { recursive: true, force: true });
  const ferretdb = path.join(buildDir, 'ferretdb');
  const launcher = path.join(buildDir, 'launcher');
  fs.cpSync(moduleDir, ferretdb, { recursive: true });
  fs.mkdirSync(launcher, { recursive: true });
  for (const file of ['main.go', 'go.mod', 'go.sum']) fs.copyFileSync(path.join(sourceDir, file), path.join(launcher, file));

  for (const patch of FERRETDB_PATCHES) {
    const file = path.join(ferretdb, patch.file);
    const text = fs.readFileSync(file, 'utf8');
    const found = text.split(patch.from).length - 1;
    if (found !== patch.count) throw new Error(`FerretDB patch: expected ${patch.count} × "${patch.from}" in ${patch.file}, found ${found}; review server/db/ferretdb-patch.ts for this FerretDB version.`);
    fs.chmodSync(file, 0o644); // module cache files are read-only, and so are their copies
    fs.writeFileSync(file, text.replaceAll(patch.from, patch.to));
  }
  go(launcher, ['mod', 'edit', `-replace=${FERRETDB_MODULE}=../ferretdb`]);
  return launcher;
}
