import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Changes to FerretDB v1.24, made to a copy of the downloaded module when the launcher is
 * built (Go refuses overlays of module-cache files; no FerretDB source is kept in this
 * repository). Each names the exact upstream text it replaces and how often it occurs, so a
 * different FerretDB version fails the build loudly instead of building unpatched.
 *
 * 1. `_id` pushdown. The backend pushes an `_id` equality down to SQLite only when it is the filter's ONLY
 * condition (`params.Filter.Len() == 1`; FerretDB issue #3235), so a guarded update such as
 * `{ _id, registrationId: { $ne: id } }` or `{ _id, status: 'transfer-pending' }` read every
 * document of the collection: seconds per registration at 200,000 units. Every handler (find,
 * count, distinct, update, delete, findAndModify, aggregate) filters what the backend returns
 * again with the whole filter, so pushing the `_id` equality down whatever else the filter
 * holds only narrows what is read; test/embedded-db.test.ts checks both the plan and the result.
 *
 * 2. Atomic single-document writes. The update, findAndModify and delete handlers read the
 * matching documents, change them in Go and write them back with nothing held in between
 * (FerretDB #3040; the fix, PR #1217, was never merged), so concurrent updates of one document
 * were lost (20 concurrent `$inc` from two processes ended at 2). Each of these commands now
 * holds a per-database-and-collection mutex for its whole run. One FerretDB process serves a
 * data directory (server/db/engine-lock.ts), so this covers every client process. SQLite admits
 * one writer per database file anyway; inserts and reads stay unlocked.
 * test/concurrent-updates.test.ts fails without it.
 *
 * 3. One SQLite transaction per update command. The update handler wrote each changed document
 * in its own transaction, and each commit is a WAL fsync (about 2 ms on this machine's disk),
 * so a bulk of 50 guarded updates cost 50 fsyncs, whatever the app batched (4.65 ms per
 * document against 1.18 ms with one transaction per command, measured side by side). The handler now hands the changed documents to a
 * `commandWrites`, which writes them in one transaction before the command answers (still
 * under the collection's write lock, so nothing else sees the half-done command, and nothing
 * is acknowledged before it is committed). A statement that may read a document still held
 * (its filter has no plain `_id`, or names one held) writes the held ones first, so every
 * statement sees the ones before it, as before. Measured with the fold bench (README,
 * Performance); test/concurrent-updates.test.ts checks that statements see the ones before them.
 *
 * 4. `$push` with `$slice`. FerretDB v1 accepted `{ $push: { list: { $each: [...], $slice: -N } } }`
 * and ignored the `$slice`, without an error: every list meant to stay bounded (the case change
 * log, notification inboxes, lease histories, per-place registration lists) grew with every
 * write, and every write rewrote the whole of it. Measured on the scale-1 bench data: the case
 * change log, meant to keep 200 ids, held 20,327 (325 KB), rewritten by every case change and
 * read by every case queue request. The push handler now applies `$slice` as MongoDB does
 * (after the append, to the whole array: a positive N keeps the first N, a negative one the
 * last N, 0 empties it; an integer is required), so the next push trims a list grown before.
 * test/embedded-db.test.ts checks it.
 */
const LOCK_COLLECTION_WRITES = '\tdefer lockCollectionWrites(params.DB, params.Collection)() // Downstream: FerretDB #3040\n';

/** `params, err := common.Get<Command>Params(…)` and its error check, after which the lock is taken. */
const afterParams = (command: string, returned: string) =>
  `params, err := common.Get${command}Params(document, h.L)\n\tif err != nil {\n\t\treturn nil, ${returned}\n\t}\n`;

/** The update handler's documents, held until the command ends (patch 3). */
const COMMAND_WRITES =
  '// commandWrites holds the documents one update command changes and writes them in one\n' +
  '// transaction when it ends (Downstream: a commit per document cost an fsync per document).\n' +
  'type commandWrites struct {\n' +
  '\tbackends.Collection\n' +
  '\tdocs []*types.Document\n' +
  '\tids  map[any]struct{}\n' +
  '}\n\n' +
  '// heldKey is the key of a plain string or ObjectID `_id` (other types are never held apart).\n' +
  'func heldKey(id any) (any, bool) {\n' +
  '\tswitch id.(type) {\n' +
  '\tcase string, types.ObjectID:\n' +
  '\t\treturn id, true\n' +
  '\tdefault:\n' +
  '\t\treturn nil, false\n' +
  '\t}\n' +
  '}\n\n' +
  '// mayRead reports whether a statement with this filter could read a held document.\n' +
  'func (w *commandWrites) mayRead(filter *types.Document) bool {\n' +
  '\tif len(w.docs) == 0 {\n' +
  '\t\treturn false\n' +
  '\t}\n' +
  '\tid, err := filter.Get("_id")\n' +
  '\tif err != nil {\n' +
  '\t\treturn true\n' +
  '\t}\n' +
  '\tkey, ok := heldKey(id)\n' +
  '\tif !ok {\n' +
  '\t\treturn true\n' +
  '\t}\n' +
  '\t_, held := w.ids[key]\n\n' +
  '\treturn held\n' +
  '}\n\n' +
  '// UpdateAll holds the documents for the command\'s transaction.\n' +
  'func (w *commandWrites) UpdateAll(_ context.Context, params *backends.UpdateAllParams) (*backends.UpdateAllResult, error) {\n' +
  '\tfor _, doc := range params.Docs {\n' +
  '\t\tif key, ok := heldKey(must.NotFail(doc.Get("_id"))); ok {\n' +
  '\t\t\tw.ids[key] = struct{}{}\n' +
  '\t\t}\n' +
  '\t}\n' +
  '\tw.docs = append(w.docs, params.Docs...)\n\n' +
  '\treturn &backends.UpdateAllResult{Updated: int32(len(params.Docs))}, nil\n' +
  '}\n\n' +
  '// flush writes the held documents in one transaction.\n' +
  'func (w *commandWrites) flush(ctx context.Context) error {\n' +
  '\tif len(w.docs) == 0 {\n' +
  '\t\treturn nil\n' +
  '\t}\n' +
  '\t_, err := w.Collection.UpdateAll(ctx, &backends.UpdateAllParams{Docs: w.docs})\n' +
  '\tw.docs, w.ids = nil, map[any]struct{}{}\n\n' +
  '\treturn err\n' +
  '}\n\n';

/** Applied after `$push` appended its values (patch 4). */
const PUSH_SLICE =
  '\t// Downstream: $push\'s $slice, which FerretDB v1 ignored (bounded lists grew without end).\n' +
  '\tif pushDoc, ok := pushVal.(*types.Document); ok && each != nil && pushDoc.Has("$slice") {\n' +
  '\t\tvar n int64\n\n' +
  '\t\tswitch v := must.NotFail(pushDoc.Get("$slice")).(type) {\n' +
  '\t\tcase int32:\n' +
  '\t\t\tn = int64(v)\n' +
  '\t\tcase int64:\n' +
  '\t\t\tn = v\n' +
  '\t\tcase float64:\n' +
  '\t\t\tif v != float64(int64(v)) {\n' +
  '\t\t\t\treturn false, NewUpdateError(handlererrors.ErrBadValue, "The value for $slice must be an integer value", command)\n' +
  '\t\t\t}\n\n' +
  '\t\t\tn = int64(v)\n' +
  '\t\tdefault:\n' +
  '\t\t\treturn false, NewUpdateError(handlererrors.ErrBadValue, "The value for $slice must be an integer value", command)\n' +
  '\t\t}\n\n' +
  '\t\tfrom, to := int64(0), int64(array.Len())\n' +
  '\t\tif n >= 0 && n < to {\n' +
  '\t\t\tto = n\n' +
  '\t\t} else if n < 0 && -n < to {\n' +
  '\t\t\tfrom = to + n\n' +
  '\t\t}\n\n' +
  '\t\tif from > 0 || to < int64(array.Len()) {\n' +
  '\t\t\tkept := types.MakeArray(int(to - from))\n' +
  '\t\t\tfor i := from; i < to; i++ {\n' +
  '\t\t\t\tkept.Append(must.NotFail(array.Get(int(i))))\n' +
  '\t\t\t}\n\n' +
  '\t\t\tarray, changed = kept, true\n' +
  '\t\t}\n' +
  '\t}\n\n';

const PUSH_APPENDED = '\tfor i := range each.Len() {\n\t\tarray.Append(must.NotFail(each.Get(i)))\n\t\tchanged = true\n\t}\n\n';

export const FERRETDB_PATCHES = [
  {
    file: 'internal/backends/sqlite/collection.go',
    from: 'if params.Filter.Len() == 1 {',
    to: 'if params.Filter.Len() >= 1 { // Downstream: push `_id` down beside other conditions too (FerretDB #3235)',
    /** Query and Explain. */
    count: 2,
  },
  {
    file: 'internal/handler/msg_update.go',
    from: 'import (\n\t"context"\n\t"fmt"\n',
    to: 'import (\n\t"context"\n\t"fmt"\n\t"sync"\n',
    count: 1,
  },
  {
    file: 'internal/handler/msg_update.go',
    from: '// MsgUpdate implements `update` command.\n',
    to:
      '// collectionWriteLocks holds one *sync.Mutex per "db.collection" (Downstream: FerretDB #3040).\n' +
      'var collectionWriteLocks sync.Map\n\n' +
      '// lockCollectionWrites makes read-modify-write commands on one collection run one at a time.\n' +
      'func lockCollectionWrites(db, collection string) (unlock func()) {\n' +
      '\tm, _ := collectionWriteLocks.LoadOrStore(db+"."+collection, new(sync.Mutex))\n' +
      '\tmu := m.(*sync.Mutex)\n' +
      '\tmu.Lock()\n\n' +
      '\treturn mu.Unlock\n' +
      '}\n\n' +
      '// MsgUpdate implements `update` command.\n',
    count: 1,
  },
  { file: 'internal/handler/msg_update.go', from: afterParams('Update', 'lazyerrors.Error(err)'), to: afterParams('Update', 'lazyerrors.Error(err)') + LOCK_COLLECTION_WRITES, count: 1 },
  { file: 'internal/handler/msg_update.go', from: '// MsgUpdate implements `update` command.\n', to: COMMAND_WRITES + '// MsgUpdate implements `update` command.\n', count: 1 },
  {
    file: 'internal/handler/msg_update.go',
    from: '\tfor _, u := range params.Updates {\n\t\tc, err := db.Collection(params.Collection)\n',
    to:
      '\twrites := &commandWrites{ids: map[any]struct{}{}} // Downstream: one transaction per command\n\n' +
      '\tfor _, u := range params.Updates {\n' +
      '\t\tif writes.mayRead(u.Filter) {\n' +
      '\t\t\tif err = writes.flush(ctx); err != nil {\n' +
      '\t\t\t\treturn 0, 0, nil, lazyerrors.Error(err)\n' +
      '\t\t\t}\n' +
      '\t\t}\n\n' +
      '\t\tc, err := db.Collection(params.Collection)\n',
    count: 1,
  },
  {
    file: 'internal/handler/msg_update.go',
    from: '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n\t\tif err != nil {\n',
    to:
      '\t\twrites.Collection = c\n' +
      '\t\tresult, err := common.UpdateDocument(ctx, writes, "update", iter, &u)\n\t\tif err != nil {\n' +
      '\t\t\t// As before, the statements ahead of a failing one stay applied.\n' +
      '\t\t\tif ferr := writes.flush(ctx); ferr != nil {\n' +
      '\t\t\t\treturn 0, 0, nil, lazyerrors.Error(ferr)\n' +
      '\t\t\t}\n\n',
    count: 1,
  },
  {
    file: 'internal/handler/msg_update.go',
    from: '\treturn matched, modified, &upserted, nil\n',
    to: '\tif err = writes.flush(ctx); err != nil {\n\t\treturn 0, 0, nil, lazyerrors.Error(err)\n\t}\n\n\treturn matched, modified, &upserted, nil\n',
    count: 1,
  },
  { file: 'internal/handler/msg_findandmodify.go', from: afterParams('FindAndModify', 'err'), to: afterParams('FindAndModify', 'err') + LOCK_COLLECTION_WRITES, count: 1 },
  { file: 'internal/handler/msg_delete.go', from: afterParams('Delete', 'lazyerrors.Error(err)'), to: afterParams('Delete', 'lazyerrors.Error(err)') + LOCK_COLLECTION_WRITES, count: 1 },
  { file: 'internal/handler/common/update_array_operators.go', from: PUSH_APPENDED + '\tif err = doc.SetByPath(path, array); err != nil {\n', to: PUSH_APPENDED + PUSH_SLICE + '\tif err = doc.SetByPath(path, array); err != nil {\n', count: 1 },
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
    if (found !== patch.count) throw new Error(`FerretDB patch: expected ${patch.count} × ${JSON.stringify(patch.from)} in ${patch.file}, found ${found}; review server/db/ferretdb-patch.ts for this FerretDB version.`);
    fs.chmodSync(file, 0o644); // module cache files are read-only, and so are their copies
    fs.writeFileSync(file, text.replaceAll(patch.from, patch.to));
  }
  go(launcher, ['mod', 'edit', `-replace=${FERRETDB_MODULE}=../ferretdb`]);
  return launcher;
}
