/**
 * Bench phase "partners" (issue 17): sell-through ingestion of 100,000 sales (at scale 1;
 * proportionally fewer below, or `--sales N`) through the API against the raw insert rate of
 * the same ledger documents on the same database, the rate at which the background fold
 * copies them onto units, rules and scorecards, then the partner scorecards' latency (the
 * JSON API and the staff page's ranked table). The units are imported for the phase (allocated to a bench
 * distributor by the import's `partner` column) and removed again afterwards, with everything
 * the phase wrote, so each run sees the same data set.
 */
import crypto from 'node:crypto';
import mongoose from 'mongoose';
import type { Figure } from './lib/results';
import { runLoad, type LoadResult } from './lib/load';
import type { RunningServer } from './lib/server';
import { BENCH_DB_NAME, type Manifest } from './lib/target';

/** Sales at scale 1; the phase scales them with the data set (at least one report). */
export const SALES_AT_SCALE_1 = 100_000;
const BATCH = 1_000;
const CLIENTS = 4;

export interface PartnersBenchDeps {
  api<T>(server: RunningServer, method: string, url: string, opts?: { token?: string; json?: unknown; body?: FormData; timeoutMs?: number }): Promise<{ status: number; body: T }>;
  log(line: string): void;
  latencyFigures(id: string, label: string, r: LoadResult, p95Target: number, note?: string): Figure[];
  removeImportedUnits(server: RunningServer, ids: string[]): Promise<{ removed: number; kept: number; missing: number }>;
  rawSeconds: number;
  latencySeconds: number;
  /** `--sales N`: overrides the scale-proportional count. */
  sales: number | null;
  /** The investigator's session cookie, for the scorecards page. */
  cookie: string;
}

/** How long the fold may take to empty the outbox after the last report before the phase gives up. */
const FOLD_WAIT_MS = 300_000;

type Sale = { sku: string; serial: string; customerName: string; customerType: string; country: string; endUse: string; soldAt: string };

export async function partnersPhase(deps: PartnersBenchDeps, server: RunningServer, manifest: Manifest, tokens: { admin: string; investigator: string }, notes: string[]): Promise<Figure[]> {
  const { api, log } = deps;
  const count = deps.sales ?? Math.max(BATCH, Math.round((SALES_AT_SCALE_1 * manifest.dataset.scale) / BATCH) * BATCH);
  log(`  ${count.toLocaleString('en')} sales`);
  const tag = `PTN${crypto.randomBytes(3).toString('hex').toUpperCase()}`;
  // Models below "high" risk, so that the sales need no review and raise no flag: the phase
  // measures ingestion, not the flag → case path.
  const models = (await api<{ items: Array<{ sku: string; riskLevel: string }> }>(server, 'GET', '/api/v1/models?perPage=200', { token: tokens.investigator })).body.items.filter((m) => m.riskLevel !== 'high').map((m) => m.sku);
  if (!models.length) return [{ id: 'partners.ratio', label: 'Sell-through API / raw insert', value: null, unit: '%', target: { kind: 'min', value: 50 }, note: 'no model below high risk in the data set' }];
  const partner = (await api<{ partner: { id: string; name: string } }>(server, 'POST', '/api/v1/partners', { token: tokens.admin, json: { name: `Bench distributor ${tag}`, type: 'distributor' } })).body.partner;
  const { key } = (await api<{ key: string }>(server, 'POST', `/api/v1/partners/${partner.id}/api-keys`, { token: tokens.admin, json: { keyName: 'bench' } })).body;

  // The units, allocated to the partner by the catalogue import (not measured).
  const units = Array.from({ length: count }, (_, i) => ({ sku: models[i % models.length]!, serial: `${tag}${String(i).padStart(7, '0')}` }));
  const csv = ['sku,serial,partner', ...units.map((u) => `${u.sku},${u.serial},${partner.id}`)].join('\n');
  const form = new FormData();
  form.append('file', new Blob([`${csv}\n`], { type: 'text/csv' }), 'units.csv');
  let job = (await api<{ import: { id: string; status: string; counts?: { imported: number } } }>(server, 'POST', '/api/v1/imports', { token: tokens.admin, body: form })).body.import;
  const importStarted = Date.now();
  while (job.status === 'running' && Date.now() - importStarted < 900_000) {
    await new Promise((r) => setTimeout(r, 1_000));
    job = (await api<{ import: typeof job }>(server, 'GET', `/api/v1/imports/${job.id}`, { token: tokens.admin })).body.import;
  }
  log(`  ${job.counts?.imported ?? 0} units imported and allocated in ${((Date.now() - importStarted) / 1000).toFixed(0)} s`);

  const countries = manifest.dataset.countries;
  const saleOf = (i: number): Sale => ({ ...units[i]!, customerName: `Customer ${i % 5000}`, customerType: 'commercial-company', country: countries[i % countries.length]!, endUse: 'office networking', soldAt: '2026-03-01' });

  // The ceiling: the ledger documents the API writes, unordered insertMany, same concurrency.
  const uri = server.databaseUri ?? server.mongodbUri;
  if (!uri) throw new Error('no database URI for the raw insert ceiling');
  const connection = await mongoose.createConnection(uri, { dbName: BENCH_DB_NAME }).asPromise();
  let raw = 0;
  try {
    const scratch = connection.db!.collection('bench_raw_sales');
    await scratch.drop().catch(() => undefined);
    let n = 0;
    const started = Date.now();
    const deadline = started + deps.rawSeconds * 1000;
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (Date.now() < deadline) {
          const docs = Array.from({ length: BATCH }, () => {
            const s = saleOf(n++ % count);
            return { _id: `${s.sku}:${s.serial}|${n}`, unitId: `${s.sku}:${s.serial}`, modelId: s.sku, batchId: 'bench', partnerId: partner.id, customerName: s.customerName, customerType: s.customerType, country: s.country, endUse: s.endUse, soldAt: new Date(s.soldAt), reportedAt: new Date(), reviewId: null, held: false };
          });
          await scratch.insertMany(docs as never[], { ordered: false });
        }
      }),
    );
    raw = n / ((Date.now() - started) / 1000);
    await scratch.drop().catch(() => undefined);
  } finally {
    await connection.close();
  }
  log(`  raw insertMany ceiling: ${Math.round(raw).toLocaleString('en')} sales/s`);

  let next = 0;
  const started = Date.now();
  const r = await runLoad({
    url: `${server.url}/api/v1/sell-through`,
    connections: CLIENTS,
    amount: Math.ceil(count / BATCH),
    timeout: 120,
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ sales: Array.from({ length: BATCH }, () => saleOf(next++)) }) }) }],
  });
  const seconds = (Date.now() - started) / 1000;
  const perSecond = (r.ok * BATCH) / seconds;
  log(`  API: ${Math.round(perSecond).toLocaleString('en')} sales/s (${r.ok} batches in ${seconds.toFixed(0)} s, median ${r.median} ms${r.failures ? `; ${r.failures} failed: ${r.firstFailure}` : ''}), ${raw ? ((perSecond / raw) * 100).toFixed(1) : '?'} % of raw`);

  // The fold: from the first report until the outbox is empty (it gives way to the reports while they come in).
  const watch = await mongoose.createConnection(uri, { dbName: BENCH_DB_NAME }).asPromise();
  const outbox = watch.db!.collection('saleBatches');
  const foldStarted = Date.now();
  let waiting = await outbox.countDocuments({});
  while (waiting > 0 && Date.now() - foldStarted < FOLD_WAIT_MS) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    waiting = await outbox.countDocuments({});
  }
  await watch.close();
  const foldSeconds = (Date.now() - started) / 1000;
  const afterIngest = (Date.now() - foldStarted) / 1000;
  // Over what was folded by then, so a fold slower than the wait still gives a figure.
  const foldRate = (Math.max(0, r.ok - waiting) * BATCH) / foldSeconds;
  log(`  fold: ${Math.round(foldRate).toLocaleString('en')} sales/s from the first report; ${waiting ? `${waiting} reports still waiting after ${FOLD_WAIT_MS / 1000} s` : `all folded ${afterIngest.toFixed(0)} s after the last report`}`);

  log('  scorecards');
  const scorecards = await runLoad({ url: `${server.url}/api/v1/partners/scorecards`, connections: 2, duration: deps.latencySeconds, headers: { authorization: `Bearer ${tokens.investigator}` } });
  log(`  scorecards: p95 ${scorecards.p95} ms, median ${scorecards.median} ms (${scorecards.responses} requests${scorecards.failures ? `, ${scorecards.failures} failed: ${scorecards.firstFailure}` : ''})`);
  const page = await runLoad({ url: `${server.url}/admin/partners/scorecards`, connections: 2, duration: deps.latencySeconds, headers: { cookie: deps.cookie } });
  log(`  scorecards page: p95 ${page.p95} ms, median ${page.median} ms (${page.responses} requests${page.failures ? `, ${page.failures} failed: ${page.firstFailure}` : ''})`);

  const removing = Date.now();
  // The figures are measured by now: a failed clean-up is reported, not allowed to lose them.
  try {
    await removePhaseData(uri, partner.id, units.map((u) => `${u.sku}:${u.serial}`));
    const removed = await deps.removeImportedUnits(server, units.map((u) => `${u.sku}:${u.serial}`));
    notes.push(`Partners: removed the phase's ${removed.removed.toLocaleString('en')} units, their channel records and sales again in ${((Date.now() - removing) / 1000).toFixed(0)} s.`);
  } catch (err) {
    notes.push(`Partners: removing the phase's units and sales failed after ${((Date.now() - removing) / 1000).toFixed(0)} s (${(err as Error).message}); the data set still holds them: generate or copy it afresh before the next run.`);
  }
  return [
    { id: 'partners.raw', label: 'Raw insertMany ceiling for sales (driver, batches of 1,000, 4 in parallel)', value: raw, unit: 'docs/s', target: null },
    { id: 'partners.api', label: `Sell-through API (${count.toLocaleString('en')} sales, 1,000 per request, 4 clients)`, value: perSecond, unit: 'sales/s', target: null, note: `median request ${Math.round(r.median ?? 0)} ms, p95 ${Math.round(r.p95 ?? 0)} ms${r.failures ? `; ${r.failures} failed: ${r.firstFailure}` : ''}` },
    { id: 'partners.ratio', label: 'Sell-through API / raw ceiling', value: raw ? (perSecond / raw) * 100 : null, unit: '%', target: { kind: 'min', value: 50 } },
    { id: 'partners.fold', label: 'Sell-through fold (channel records, rules, scorecards), first report to empty outbox', value: foldRate, unit: 'sales/s', target: null, note: waiting ? `rate over the reports folded; ${waiting} still waiting after ${FOLD_WAIT_MS / 1000} s` : `outbox empty ${afterIngest.toFixed(0)} s after the last report` },
    ...deps.latencyFigures('partners.scorecards', 'Partner scorecards (/api/v1/partners/scorecards)', scorecards, 150, '2 concurrent clients'),
    ...deps.latencyFigures('partners.scorecards-page', 'Partner scorecards page (/admin/partners/scorecards, ranked table)', page, 150, '2 concurrent clients'),
  ];
}

/** The phase's channel records, sales ledger, allocations and partner, by `_id` (never a scan of a large collection). */
async function removePhaseData(uri: string, partnerId: string, unitIds: string[]) {
  const connection = await mongoose.createConnection(uri, { dbName: BENCH_DB_NAME }).asPromise();
  try {
    const db = connection.db!;
    const partner = await db.collection('partners').findOne({ _id: partnerId as never });
    for (let at = 0; at < unitIds.length; at += 50) {
      const chunk = unitIds.slice(at, at + 50);
      const records = await Promise.all(chunk.map((id) => db.collection('channelUnits').findOne({ _id: id as never })));
      const saleIds = records.flatMap((rec) => (rec?.sales ?? []).map((s: { key: string }) => s.key));
      await Promise.all([...chunk.map((id) => db.collection('channelUnits').deleteOne({ _id: id as never })), ...saleIds.map((id: string) => db.collection('sales').deleteOne({ _id: id as never }))]);
    }
    for (const id of (partner?.allocationIds ?? []) as string[]) await db.collection('partnerAllocations').deleteOne({ _id: id as never });
    // Reports the fold had not reached (none when it finished): their sales are in the ledger only.
    for (const batch of await db.collection('saleBatches').find({ reportedBy: partnerId }).toArray()) {
      for (const id of (batch.saleIds ?? []) as string[]) await db.collection('sales').deleteOne({ _id: id as never });
      await db.collection('saleBatches').deleteOne({ _id: batch._id });
    }
    await db.collection('partnerMembers').deleteMany({ partnerId });
    await db.collection('partners').deleteOne({ _id: partnerId as never });
  } finally {
    await connection.close();
  }
}
