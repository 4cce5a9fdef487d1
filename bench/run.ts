/**
 * The benchmark: `npm run bench [-- --profile] [--quick]` after `npm run bench:data`.
 * Starts the real server (tsx, PORT=0) on the generated data, loads it with autocannon over
 * loopback for bounded times, samples its memory, and writes bench/results/*.{md,json}.
 * Rate limits and the report challenge are relaxed through the documented configuration
 * variables only (README "Configuration").
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import mongoose from 'mongoose';
import sharp from 'sharp';
import { systemClock } from '../server/clock';
import { loadConfig, type Env } from '../server/config';
import { detectEngine } from '../server/store/engine';
import { createStores } from '../server/store';
import { createLogger } from '../server/logger';
import { sessionCookieName } from '../server/middleware/auth';
import { createAuditService } from '../server/services/audit';
import { createCatalogueService, gs1CheckDigit } from '../server/services/catalogue';
import { createRandom } from './lib/random';
import { partnersPhase } from './partners';
import { mapLimit, runLoad, type LoadResult } from './lib/load';
import { buildReport, machine, toMarkdown, type BenchReport, type Figure } from './lib/results';
import { screeningBench } from './screening';
import { childPids, memorySampler, readMemory, startServer, untilQuiet, type RunningServer } from './lib/server';
import { benchEnv, BENCH_DB_NAME, inheritedEnv, readManifest, resultsDir, type Manifest } from './lib/target';

const { values: args } = parseArgs({ options: { profile: { type: 'boolean', default: false }, quick: { type: 'boolean', default: false }, only: { type: 'string', default: '' }, sales: { type: 'string', default: '' } } });
/** --only timeline,queue,ingest,reports,uploads,import,export,epcis,dashboard,screening,partners: a subset of the phases (results are then partial). */
const only = new Set(args.only.split(',').map((p) => p.trim()).filter(Boolean));
/** --quick: shorter phases, for checking the bench itself (figures are then rougher). */
const T = args.quick ? { latency: 4, ingest: 8, raw: 5, reports: 8 } : { latency: 10, ingest: 30, raw: 15, reports: 30 };
const BATCH = 1_000;
const REPORTERS = 20;
const PHOTO_BYTES = 2 * 1024 * 1024;
const IMPORT_ROWS = 100_000;
const EXPORT_LIMIT_S = 120;
const DASHBOARD_WAIT_S = 150;
/** How long the bench waits for check-in summaries to catch up after the ingest load. */
const SUMMARY_WAIT_S = 600;

const log = (line: string) => process.stdout.write(`${line}\n`);

/** Relaxed through documented configuration: the anti-spam limits would stop a load test by design. */
function serverEnv(manifest: Manifest): Env {
  return benchEnv(inheritedEnv(), manifest.jwtSecret, {
    RATE_LIMIT_PUBLIC_POST_PER_MIN: '1000000',
    RATE_LIMIT_LOGIN_PER_15MIN: '1000',
    REPORT_MIN_FILL_SECONDS: '0',
    REPORT_POW_BITS: '0',
    REPORT_SUBMISSIONS_PER_10MIN: '1000000',
    // All reporters share the loopback address: each may upload at once, as distinct people would.
    UPLOADS_AT_ONCE_PER_CLIENT: '1000',
    UPLOADS_AT_ONCE: '1000',
    // The bench signs its staff in through the token API, which has no enrolment step.
    STAFF_TWO_FACTOR: 'optional',
  });
}

async function api<T>(server: RunningServer, method: string, url: string, opts: { token?: string; json?: unknown; body?: FormData; timeoutMs?: number } = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(`${server.url}${url}`, {
    method,
    headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(opts.json !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: opts.json !== undefined ? JSON.stringify(opts.json) : opts.body,
    signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
  }).catch((err: Error) => {
    throw new Error(`${method} ${url}: ${err.message} (${(err.cause as Error | undefined)?.message ?? 'no cause'})`);
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: kept as text for the error message
  }
  return { status: res.status, body: body as T };
}

async function logIn(server: RunningServer, who: { email: string; password: string }) {
  const res = await api<{ token: string }>(server, 'POST', '/api/v1/auth/token', { json: who });
  if (res.status !== 200) throw new Error(`log-in as ${who.email} failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.token;
}

/** No response within the phase is a failure at least as long as the phase, not a missing figure. */
const latencyFigures = (id: string, label: string, r: LoadResult, p95Target: number, note = ''): Figure[] => {
  const none = r.responses === 0;
  const p95 = none ? r.seconds * 1000 : r.failures ? null : r.p95;
  const why = none ? `no response completed within ${r.seconds} s (value is that lower bound)` : r.failures ? `${r.failures} failed: ${r.firstFailure}` : note;
  return [
    { id: `${id}.median`, label: `${label}: median`, value: none ? r.seconds * 1000 : r.median, unit: 'ms', target: null, note: `${r.responses.toLocaleString('en')} requests in ${r.seconds} s` },
    { id: `${id}.p95`, label: `${label}: p95`, value: p95, unit: 'ms', target: { kind: 'max', value: p95Target }, note: why },
  ];
};

/**
 * Waits until the server answers a unit timeline quickly again: requests cut off at the end of
 * a load phase are still being worked through, and would otherwise be charged to the next one.
 */
async function settle(server: RunningServer, manifest: Manifest, token: string, notes: string[], phase: string) {
  const url = `/api/v1/units/${encodeURIComponent(manifest.dataset.typicalUnit.id)}/timeline`;
  const started = Date.now();
  let fast = 0;
  while (fast < 3 && Date.now() - started < 120_000) {
    const t = Date.now();
    const res = await api(server, 'GET', url, { token }).catch(() => ({ status: 0 }));
    fast = res.status === 200 && Date.now() - t < 200 ? fast + 1 : 0;
    if (fast < 3) await new Promise((r) => setTimeout(r, 250));
  }
  const waited = (Date.now() - started) / 1000;
  if (waited > 5) notes.push(`Before ${phase}: waited ${waited.toFixed(0)} s for the server to finish the previous phase's work${fast < 3 ? ' (gave up at 120 s)' : ''}.`);
}

/**
 * The dashboard reads unit tallies kept on write and a snapshot of flags, reports and cases
 * computed in the background; the page is measured once both exist (seconds at scale 1).
 */
async function dashboardSnapshot(server: RunningServer, token: string): Promise<Figure & { ready: boolean }> {
  const started = Date.now();
  let ready = false;
  while (!ready && Date.now() - started < DASHBOARD_WAIT_S * 1000) {
    const res = await api<unknown>(server, 'GET', '/api/v1/dashboard', { token, timeoutMs: 15_000 }).catch(() => ({ status: 0, body: null }));
    ready = res.status === 200 && res.body !== null && typeof res.body === 'object';
    if (!ready) await new Promise((r) => setTimeout(r, 1_000));
  }
  const seconds = (Date.now() - started) / 1000;
  return { ready, id: 'dashboard.snapshot', label: 'Dashboard: first snapshot computed', value: ready ? seconds : null, unit: 's', target: null, note: ready ? 'background aggregation; page views read the snapshot' : `not ready after ${DASHBOARD_WAIT_S} s` };
}

// ---------------------------------------------------------------- phases

async function timelines(server: RunningServer, manifest: Manifest, token: string): Promise<Figure[]> {
  const figures: Figure[] = [];
  for (const [id, label, unit] of [
    ['timeline.heavy', `Unit timeline, ${manifest.dataset.heavyUnit.checkIns.toLocaleString('en')} check-ins`, manifest.dataset.heavyUnit],
    ['timeline.typical', `Unit timeline, typical unit (${manifest.dataset.typicalUnit.checkIns} check-ins)`, manifest.dataset.typicalUnit],
  ] as const) {
    const url = `${server.url}/api/v1/units/${encodeURIComponent(unit.id)}/timeline`;
    log(`  ${label}`);
    const r = await runLoad({ url, connections: 2, duration: T.latency, headers: { authorization: `Bearer ${token}` } });
    figures.push(...latencyFigures(id, label, r, 50, '2 concurrent clients'));
  }
  return figures;
}

const pagesToMeasure = (country: string) =>
  country
    ? ([['cases.queue', 'Case queue (/cases, harm + country filters)', `/cases?harm=privacy-surveillance&country=${country}`]] as const)
    : ([['dashboard', 'Dashboard (/dashboard)', '/dashboard']] as const);

/** The case queue with two filters, or with `dashboard` the dashboard page. */
async function pages(server: RunningServer, manifest: Manifest, cookie: string, dashboard = false): Promise<Figure[]> {
  const figures: Figure[] = [];
  const country = dashboard ? '' : manifest.dataset.countries[0]!;
  for (const [id, label, pathname] of pagesToMeasure(country)) {
    const probe = await fetch(`${server.url}${pathname}`, { headers: { cookie }, redirect: 'manual' });
    await probe.text();
    if (probe.status !== 200) {
      figures.push({ id: `${id}.p95`, label: `${label}: p95`, value: null, unit: 'ms', target: { kind: 'max', value: 150 }, note: `page answered ${probe.status}: not available in this build` });
      continue;
    }
    log(`  ${label}`);
    const r = await runLoad({ url: `${server.url}${pathname}`, connections: 2, duration: T.latency, headers: { cookie } });
    figures.push(...latencyFigures(id, label, r, 150, '2 concurrent clients'));
  }
  return figures;
}

/** Check-in items as an update server sends them: mostly from the unit's own country, some new serials. */
function batchMaker(manifest: Manifest, seed: number) {
  const random = createRandom(seed);
  const sample = manifest.dataset.sample;
  const runId = crypto.randomBytes(4).toString('hex');
  let n = 0;
  const item = (now: number) => {
    n++;
    const unit = random.pick(sample);
    const unknown = random.chance(0.01);
    return {
      serial: unknown ? `NEW${runId}${n}` : unit.serial,
      model: unit.modelId,
      firmware: '9.1.0',
      observedAt: new Date(now - random.int(0, 3_600_000)).toISOString(),
      country: random.chance(0.97) ? unit.country : random.pick(manifest.dataset.countries),
      eventId: `bench-${runId}-${n}`,
    };
  };
  return () => {
    const now = Date.now();
    return Array.from({ length: BATCH }, () => item(now));
  };
}

async function ingest(server: RunningServer, manifest: Manifest): Promise<{ figures: Figure[]; notes: string[] }> {
  const uri = server.databaseUri ?? server.mongodbUri;
  if (!uri) throw new Error('no database URI for the raw insertMany ceiling');
  const connection = await mongoose.createConnection(uri, { dbName: BENCH_DB_NAME }).asPromise();
  const notes: string[] = [];
  let raw = 0;
  try {
    // The ceiling: the same documents the service writes, unordered insertMany, same concurrency.
    const scratch = connection.db!.collection('bench_raw_checkins');
    await scratch.drop().catch(() => undefined);
    await scratch.createIndex({ unitId: 1, observedAt: 1 });
    const next = batchMaker(manifest, 11);
    const receivedAt = new Date();
    let inserted = 0;
    const started = Date.now();
    const deadline = started + T.raw * 1000;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() < deadline) {
          const docs = next().map((i) => ({ _id: `k:${i.eventId}`, unitId: `${i.model}:${i.serial}`, modelSku: i.model, serial: i.serial, firmware: i.firmware, observedAt: new Date(i.observedAt), receivedAt, country: i.country, apiKeyId: 'k', answer: 'allowed', flags: [] }));
          await scratch.insertMany(docs as never[], { ordered: false });
          inserted += docs.length;
        }
      }),
    );
    raw = inserted / ((Date.now() - started) / 1000);
    await scratch.drop().catch(() => undefined);
  } finally {
    await connection.close();
  }
  log(`  raw insertMany ceiling: ${Math.round(raw).toLocaleString('en')} docs/s`);

  const next = batchMaker(manifest, 12);
  const r = await runLoad({
    url: `${server.url}/api/v1/check-ins/batch`,
    connections: 4,
    timeout: 120,
    duration: T.ingest,
    method: 'POST',
    headers: { authorization: `Bearer ${manifest.apiKey}`, 'content-type': 'application/json' },
    requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ items: next() }) }) }],
  });
  const perSecond = (r.ok * BATCH) / r.seconds;
  log(`  API: ${Math.round(perSecond).toLocaleString('en')} check-ins/s (${r.ok} batches, median ${r.median} ms)`);
  if (r.failures) notes.push(`Check-in ingest: ${r.failures} batches failed (${r.firstFailure}).`);
  const catchUp = await summariesCaughtUp(server);
  const foldRate = catchUp.find((f) => f.id === 'ingest.fold')?.value ?? null;
  return {
    figures: [
      ...catchUp,
      {
        id: 'ingest.foldRatio',
        label: 'Fold rate (summaries and red flags) / check-in batch API rate, same run',
        value: foldRate === null || !perSecond ? null : (foldRate / perSecond) * 100,
        unit: '%',
        target: null,
        note: `${Math.round(foldRate ?? 0).toLocaleString('en')} / ${Math.round(perSecond).toLocaleString('en')} check-ins/s; bounded by the engine's cost per folded check-in (README, Performance; each fold's phases in BENCH_SERVER_LOG)`,
      },
      { id: 'ingest.raw', label: 'Raw insertMany ceiling (driver, batches of 1,000, 4 in parallel)', value: raw, unit: 'docs/s', target: null },
      { id: 'ingest.api', label: 'Check-in batch API (1,000 per batch, flags + idempotency, 4 clients)', value: perSecond, unit: 'check-ins/s', target: null, note: `median batch ${Math.round(r.median ?? 0)} ms, p95 ${Math.round(r.p95 ?? 0)} ms${r.failures ? `; ${r.failures} failed: ${r.firstFailure}` : ''}` },
      { id: 'ingest.ratio', label: 'API throughput / raw ceiling', value: !raw ? null : (perSecond / raw) * 100, unit: '%', target: { kind: 'min', value: 50 } },
    ],
    notes,
  };
}

/** EPCIS events one bench capture holds (the API's limit), and how many in all. */
const EPCIS_PER_CAPTURE = 10_000;
const EPCIS_EVENTS = args.quick ? 20_000 : 100_000;
/** Seconds the check-in batch API is measured for, beside the capture. */
const EPCIS_CHECKIN_S = args.quick ? 5 : 15;
/** How long the bench waits for the capture jobs to finish (the rate is then over what was processed). */
const EPCIS_WAIT_S = args.quick ? 60 : 300;

/** A GTIN-14 per model (indicator 0, a bench company prefix, the model's index), with its SGTIN form. */
function benchGtin(index: number) {
  const prefix = '0614141';
  const item = `0${String(index).padStart(5, '0')}`;
  const first13 = `${item[0]}${prefix}${item.slice(1)}`;
  const gtin = `${first13}${gs1CheckDigit(first13)}`;
  return { gtin, sgtin: (serial: string) => `urn:epc:id:sgtin:${prefix}.${item}.${serial}` };
}

/**
 * EPCIS capture (issue 19): 100,000 ObjectEvents naming sampled units by SGTIN, sent as
 * captures of 10,000 (4 at a time, as the check-in clients), timed from the first POST until
 * every capture job reports done (events stored, mapped to units and on their timelines). The
 * check-in batch API is measured first in the same run for a fixed time, for the ratio; the
 * phase never waits for the check-in summariser, so it is bounded.
 */
async function epcisCapture(server: RunningServer, manifest: Manifest, adminToken: string): Promise<{ figures: Figure[]; notes: string[] }> {
  const notes: string[] = [];
  const gtins = new Map(manifest.dataset.modelIds.map((m, i) => [m, benchGtin(i + 1)]));
  for (const [modelId, { gtin }] of gtins) {
    const res = await api(server, 'PATCH', `/api/v1/models/${encodeURIComponent(modelId)}`, { token: adminToken, json: { gtin } });
    if (res.status !== 200) throw new Error(`GTIN for ${modelId}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  const made = await api<{ key: string }>(server, 'POST', '/api/v1/api-keys', { token: adminToken, json: { name: `bench epcis ${Date.now()}`, scopes: ['epcis:capture'] } });
  if (made.status !== 201) throw new Error(`EPCIS key: ${made.status} ${JSON.stringify(made.body)}`);
  const key = made.body.key;

  // The check-in batch API for a short fixed time, 4 clients: answered batches only. Its
  // background fold is not waited for (it goes on during the capture, as it would in service).
  const next = batchMaker(manifest, 19);
  const load = await runLoad({
    url: `${server.url}/api/v1/check-ins/batch`,
    connections: 4,
    timeout: 120,
    duration: EPCIS_CHECKIN_S,
    method: 'POST',
    headers: { authorization: `Bearer ${manifest.apiKey}`, 'content-type': 'application/json' },
    requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ items: next() }) }) }],
  });
  const checkInsPerSecond = (load.ok * BATCH) / load.seconds;
  log(`  check-in batch API: ${Math.round(checkInsPerSecond).toLocaleString('en')} check-ins/s (${load.ok} batches in ${load.seconds.toFixed(1)} s)`);
  if (load.failures) notes.push(`EPCIS phase, check-in batch API: ${load.failures} batches failed (${load.firstFailure}).`);

  const random = createRandom(23);
  const runId = crypto.randomBytes(4).toString('hex');
  const document = (c: number) => ({
    '@context': ['https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld'],
    type: 'EPCISDocument',
    schemaVersion: '2.0',
    creationDate: new Date().toISOString(),
    epcisBody: {
      eventList: Array.from({ length: EPCIS_PER_CAPTURE }, (_, i) => {
        const unit = random.pick(manifest.dataset.sample);
        return {
          type: 'ObjectEvent',
          eventID: `urn:uuid:bench-${runId}-${c}-${i}`,
          eventTime: new Date(Date.now() - random.int(0, 86_400_000)).toISOString(),
          eventTimeZoneOffset: '+00:00',
          epcList: [gtins.get(unit.modelId)!.sgtin(unit.serial)],
          action: 'OBSERVE',
          bizStep: 'inspecting',
          disposition: 'active',
          readPoint: { id: `urn:downstream:location:country:${unit.country}` },
        };
      }),
    },
  });
  const started = Date.now();
  const jobs = await mapLimit(Array.from({ length: EPCIS_EVENTS / EPCIS_PER_CAPTURE }, (_, c) => c), 4, async (c) => {
    const res = await fetch(`${server.url}/api/v1/epcis/capture`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/ld+json' }, body: JSON.stringify(document(c)), signal: AbortSignal.timeout(300_000) });
    if (res.status !== 202) throw new Error(`capture ${c}: ${res.status} ${(await res.text()).slice(0, 300)}`);
    return res.headers.get('location')!;
  });
  const accepted = (Date.now() - started) / 1000;
  // Every job polled until all are done or the window closes: the rate is what was processed by then.
  type Job = { running: boolean; success: boolean; status: string; counts: { stored: number; processed: number } };
  const deadline = started + EPCIS_WAIT_S * 1000;
  let views: Job[] = [];
  for (;;) {
    // A poll the busy server answers late keeps the job's last view (it stopped the phase before).
    const last = views;
    const unread: Job = { running: true, success: false, status: 'running', counts: { stored: 0, processed: 0 } };
    views = await Promise.all(jobs.map(async (job, i) => (await api<Job>(server, 'GET', job, { token: key, timeoutMs: 30_000 }).catch(() => null))?.body ?? last[i] ?? unread));
    if (!views.some((v) => v.running) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 1_000));
  }
  const seconds = (Date.now() - started) / 1000;
  const processed = views.reduce((n, v) => n + v.counts.processed, 0);
  const stored = views.reduce((n, v) => n + v.counts.stored, 0);
  const finished = !views.some((v) => v.running);
  views.filter((v) => !v.running && !v.success).forEach((v, i) => notes.push(`EPCIS capture ${i} ended ${v.status}.`));
  if (!finished) notes.push(`EPCIS capture: the ${EPCIS_WAIT_S} s window closed with ${processed.toLocaleString('en')} of ${EPCIS_EVENTS.toLocaleString('en')} events processed; the rate is over that window.`);
  const perSecond = processed / seconds;
  log(`  EPCIS capture: ${Math.round(perSecond).toLocaleString('en')} events/s processed (${processed.toLocaleString('en')} in ${seconds.toFixed(0)} s; accepted in ${accepted.toFixed(1)} s)`);
  return {
    figures: [
      { id: 'epcis.checkins', label: `Check-in batch API in this phase (1,000 per batch, 4 clients, ${EPCIS_CHECKIN_S} s, answered)`, value: checkInsPerSecond, unit: 'check-ins/s', target: null },
      { id: 'epcis.capture', label: `EPCIS capture, ${EPCIS_EVENTS.toLocaleString('en')} ObjectEvents by SGTIN (captures of 10,000, until every job is done or ${EPCIS_WAIT_S} s)`, value: perSecond, unit: 'events/s', target: null, note: `${processed.toLocaleString('en')} processed (${stored.toLocaleString('en')} stored) in ${seconds.toFixed(0)} s${finished ? '' : ', window closed first'}; all ${EPCIS_EVENTS / EPCIS_PER_CAPTURE} captures accepted (202) after ${accepted.toFixed(1)} s` },
      { id: 'epcis.ratio', label: 'EPCIS capture (processed) / check-in batch API (answered)', value: (perSecond / checkInsPerSecond) * 100, unit: '%', target: null, note: 'check-ins are answered before their background fold; captures are counted once mapped onto units' },
    ],
    notes,
  };
}

/**
 * Unit summaries and red flags follow ingest in the background (server/services/check-ins.ts):
 * how long after the load they caught up, and how fast they were folded, from /readyz.
 */
async function summariesCaughtUp(server: RunningServer): Promise<Figure[]> {
  type Backlog = { batches: number; checkIns: number; folded: number };
  const backlog = async () => (await api<{ checkInSummaries: Backlog }>(server, 'GET', '/readyz')).body.checkInSummaries;
  const started = Date.now();
  const first = await backlog();
  let last = first;
  while (last.batches > 0 && Date.now() - started < SUMMARY_WAIT_S * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    last = await backlog();
    log(`  summaries: ${last.checkIns.toLocaleString('en')} check-ins in ${last.batches} batches still to fold`);
  }
  const seconds = (Date.now() - started) / 1000;
  const rate = (last.folded - first.folded) / seconds;
  const label = 'Unit summaries and red flags caught up after the load';
  return [
    last.batches > 0
      ? { id: 'ingest.summaries', label, value: null, unit: 's', target: null, note: `${last.checkIns.toLocaleString('en')} check-ins still unfolded after ${SUMMARY_WAIT_S} s (${first.checkIns.toLocaleString('en')} at the end of the load)` }
      : { id: 'ingest.summaries', label, value: seconds, unit: 's', target: null, note: `${first.checkIns.toLocaleString('en')} check-ins were waiting at the end of the load` },
    { id: 'ingest.fold', label: 'Summariser rate after the load (check-ins folded into unit summaries)', value: rate, unit: 'check-ins/s', target: null },
  ];
}

/** A JPEG of noise (which barely compresses) of about `bytes`. */
async function photo(bytes: number, shade: number): Promise<Buffer> {
  let side = 900;
  for (;;) {
    const jpeg = await sharp({ create: { width: side, height: side, channels: 3, background: { r: shade, g: 90, b: 60 }, noise: { type: 'gaussian', mean: 128, sigma: 50 } } }).jpeg({ quality: 90 }).toBuffer();
    if (jpeg.length >= bytes * 0.95) return jpeg;
    side = Math.ceil(side * Math.sqrt((bytes * 1.02) / jpeg.length));
  }
}

function multipart(fields: Record<string, string | string[]>, files: Array<{ field: string; name: string; type: string; data: Buffer }>) {
  const boundary = `----bench${crypto.randomBytes(8).toString('hex')}`;
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(fields)) {
    for (const v of Array.isArray(value) ? value : [value]) parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${v}\r\n`));
  }
  for (const f of files) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${f.field}"; filename="${f.name}"\r\nContent-Type: ${f.type}\r\n\r\n`), f.data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

async function reports(server: RunningServer, manifest: Manifest): Promise<Figure[]> {
  const photos = await Promise.all([photo(PHOTO_BYTES, 200), photo(PHOTO_BYTES, 40)]);
  // Challenges are single-use: fetch more than 20 reporters can use in the time.
  const tokens = await mapLimit(Array.from({ length: REPORTERS * T.reports * 4 }), 8, async () => (await api<{ token: string }>(server, 'GET', '/api/v1/reports/challenge')).body.token);
  // Each reporter names another unit: reports on one unit all attach to one case, a hot spot real traffic does not have.
  const sample = manifest.dataset.sample;
  let used = 0;
  const receipts: string[] = [];
  log(`  ${REPORTERS} reporters, photos ${photos.map((p) => `${(p.length / 1024 / 1024).toFixed(1)} MB`).join(' + ')}, ${T.reports} s`);
  const r = await runLoad({
    url: `${server.url}/api/v1/reports`,
    connections: REPORTERS,
    timeout: 120,
    duration: T.reports,
    method: 'POST',
    requests: [
      {
        setupRequest(req) {
          const unit = sample[(used * 7919) % sample.length]!;
          const challenge = tokens[used++ % tokens.length]!;
          const { body, contentType } = multipart(
            { reporterKind: 'ngo', country: unit.country, place: 'Nairobi', harmCategories: 'privacy-surveillance', description: 'Cameras of this model watch the entrance of a clinic and record every visitor.', affected: 'Patients', ongoing: 'yes', serials: unit.serial, modelText: unit.modelId, challenge, pow: '0' },
            photos.map((data, i) => ({ field: 'evidence', name: `photo-${i + 1}.jpg`, type: 'image/jpeg', data })),
          );
          // The form token also travels in a header: the server checks it before reading the files.
          return { ...req, body, headers: { ...req.headers, 'content-type': contentType, 'x-report-challenge': challenge } };
        },
        onResponse(status, body) {
          if (status === 201) receipts.push((JSON.parse(body) as { receipt: string }).receipt);
        },
      },
    ],
  });
  log(`  ${r.ok} reports filed (median ${r.median} ms, p95 ${r.p95} ms); following up on each receipt`);
  const followUps = await mapLimit(receipts, 4, async (receipt) => (await api<{ report?: unknown; status?: string }>(server, 'POST', '/api/v1/follow-up', { json: { receipt } })).status);
  const valid = followUps.filter((s) => s === 200).length;
  return [
    { id: 'reports.p95', label: `Report submission, 2 × 2 MB photos, ${REPORTERS} concurrent: p95`, value: r.p95, unit: 'ms', target: { kind: 'max', value: 1000 }, note: `median ${r.median} ms, ${r.ok} reports in ${r.seconds} s` },
    { id: 'reports.errors', label: 'Report submission: failed requests', value: r.failures, unit: '', target: { kind: 'max', value: 0 }, note: r.firstFailure ?? '' },
    { id: 'reports.receipts', label: 'Receipts that do not open their report afterwards', value: receipts.length ? receipts.length - valid : null, unit: '', target: { kind: 'max', value: 0 }, note: `${valid} of ${receipts.length} receipts followed up` },
  ];
}

/**
 * Anonymous uploads without a form token: each is refused before its body is read, so ten
 * 50 MB bodies at once must leave the server's memory where it was (issue 20, finding 3: they
 * once took RSS from 250 to 859 MB). The bodies are streamed in 1 MB chunks until the server
 * answers and closes the connection.
 */
async function tokenlessUploads(server: RunningServer, memory: ReturnType<typeof memorySampler>): Promise<Figure[]> {
  const UPLOADS = 10;
  const BODY_MB = 50;
  const chunk = Buffer.alloc(1024 * 1024, 0x41);
  const boundary = 'bench-tokenless';
  const baseline = readMemory(server.pid)?.rssMb ?? 0;
  const window = memory.window();
  const statuses = await Promise.all(
    Array.from({ length: UPLOADS }, () =>
      new Promise<number>((resolve) => {
        const req = http.request(`${server.url}/api/v1/reports`, { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': BODY_MB * chunk.length } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', () => resolve(0));
        let sent = 0;
        const more = () => {
          while (sent < BODY_MB && !req.destroyed) {
            sent++;
            if (!req.write(chunk)) return void req.once('drain', more);
          }
          if (!req.destroyed) req.end();
        };
        req.write(`--${boundary}\r\nContent-Disposition: form-data; name="evidence"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`);
        more();
      }),
    ),
  );
  await new Promise((r) => setTimeout(r, 1_000));
  const { peakMb } = window();
  log(`  ${UPLOADS} token-less ${BODY_MB} MB uploads: ${statuses.join(', ')}; RSS ${baseline.toFixed(0)} → peak ${peakMb.toFixed(0)} MB`);
  return [{ id: 'uploads.rss', label: `${UPLOADS} concurrent token-less ${BODY_MB} MB uploads: server RSS growth`, value: Math.round(peakMb - baseline), unit: 'MB', target: { kind: 'max', value: 50 }, note: `RSS ${baseline.toFixed(0)} → peak ${peakMb.toFixed(0)} MB; answers ${[...new Set(statuses)].map((st) => (st ? String(st) : 'connection closed before an answer')).join(', ')}` }];
}

/**
 * Takes the imported units out again so that every run measures the same data set, through
 * the catalogue service's own removal (units by `_id`, in chunks, with the serial lookup and
 * model counts kept in step), on a connection of the bench's own while the server idles.
 */
async function removeImportedUnits(server: RunningServer, ids: string[]) {
  const uri = server.databaseUri ?? server.mongodbUri;
  if (!uri) throw new Error('no database URI to remove the imported units');
  await mongoose.connect(uri, { dbName: BENCH_DB_NAME });
  try {
    const deps = { clock: systemClock, logger: createLogger('warn'), stores: createStores(await detectEngine(mongoose.connection)) };
    const catalogue = createCatalogueService({ ...deps, audit: createAuditService(deps) });
    return await catalogue.removeUnits(ids, { userId: null });
  } finally {
    await mongoose.disconnect();
  }
}

async function csvImport(server: RunningServer, manifest: Manifest, adminToken: string, memory: ReturnType<typeof memorySampler>, notes: string[]): Promise<Figure[]> {
  const tag = `IMP${crypto.randomBytes(3).toString('hex').toUpperCase()}`;
  const models = manifest.dataset.modelIds;
  const rows = ['sku,serial,manufacturedAt,channelPartner,shipToCountry,soldAt'];
  for (let i = 0; i < IMPORT_ROWS; i++) rows.push(`${models[i % models.length]},${tag}${String(i).padStart(7, '0')},2025-03-01,Bench Partner,${manifest.dataset.countries[i % 40]},2025-04-01`);
  const form = new FormData();
  form.append('file', new Blob([`${rows.join('\n')}\n`], { type: 'text/csv' }), 'units.csv');
  const closeWindow = memory.window();
  const started = Date.now();
  const res = await api<{ import: { id: string; status: string } }>(server, 'POST', '/api/v1/imports', { token: adminToken, body: form });
  if (res.status !== 202) {
    closeWindow();
    return [{ id: 'import.peak', label: `CSV import of ${IMPORT_ROWS.toLocaleString('en')} units: peak RSS`, value: null, unit: 'MB', target: { kind: 'max', value: 512 }, note: `import answered ${res.status}` }];
  }
  let job = res.body.import as { id: string; status: string; counts?: { imported: number } };
  while (job.status === 'running' && Date.now() - started < 600_000) {
    await new Promise((r) => setTimeout(r, 500));
    job = (await api<{ import: typeof job }>(server, 'GET', `/api/v1/imports/${job.id}`, { token: adminToken })).body.import;
  }
  const seconds = (Date.now() - started) / 1000;
  const w = closeWindow();
  log(`  import ${job.status}: ${job.counts?.imported ?? 0} units in ${seconds.toFixed(1)} s, RSS ${w.startMb.toFixed(0)} → peak ${w.peakMb.toFixed(0)} MB`);
  // Not measured: a `deleteMany` of them would fail on FerretDB v1 ("too many SQL variables").
  const removing = Date.now();
  const removed = await removeImportedUnits(server, rows.slice(1).map((row) => row.split(',', 2).join(':')));
  const removal = `removed the ${removed.removed.toLocaleString('en')} imported units again in ${((Date.now() - removing) / 1000).toFixed(0)} s (${removed.kept} kept, ${removed.missing} missing)`;
  log(`  ${removal}`);
  notes.push(`CSV import: ${removal}.`);
  return [
    { id: 'import.peak', label: `CSV import of ${IMPORT_ROWS.toLocaleString('en')} units: peak RSS`, value: w.peakMb, unit: 'MB', target: { kind: 'max', value: 512 }, note: `${job.status}, ${job.counts?.imported ?? 0} imported in ${seconds.toFixed(1)} s; RSS before ${w.startMb.toFixed(0)} MB (growth ${(w.peakMb - w.startMb).toFixed(0)} MB)` },
  ];
}

async function exportUnits(server: RunningServer, adminToken: string, memory: ReturnType<typeof memorySampler>): Promise<Figure[]> {
  const closeWindow = memory.window();
  const started = Date.now();
  // Bounded like every phase: a slower export is reported with the rows it reached.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), EXPORT_LIMIT_S * 1000);
  const res = await fetch(`${server.url}/api/v1/exports/units?format=csv`, { headers: { authorization: `Bearer ${adminToken}` }, signal: abort.signal });
  if (res.status !== 200 || !res.body) {
    closeWindow();
    return [{ id: 'export.peak', label: 'Units export (CSV): peak RSS', value: null, unit: 'MB', target: { kind: 'max', value: 512 }, note: `export answered ${res.status}: not available in this build` }];
  }
  let lines = 0;
  try {
    for await (const chunk of res.body) for (const byte of chunk as Uint8Array) if (byte === 10) lines++;
  } catch (err) {
    if (!abort.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
  }
  const cut = abort.signal.aborted ? `; stopped after ${EXPORT_LIMIT_S} s` : '';
  const seconds = (Date.now() - started) / 1000;
  const w = closeWindow();
  log(`  export: ${lines - 1} rows in ${seconds.toFixed(1)} s, RSS ${w.startMb.toFixed(0)} → peak ${w.peakMb.toFixed(0)} MB`);
  return [
    { id: 'export.peak', label: `Units export (CSV, ${(lines - 1).toLocaleString('en')} rows): peak RSS`, value: w.peakMb, unit: 'MB', target: { kind: 'max', value: 512 }, note: `${seconds.toFixed(1)} s${cut}; RSS before ${w.startMb.toFixed(0)} MB (growth ${(w.peakMb - w.startMb).toFixed(0)} MB)` },
  ];
}

/**
 * Scale 4 against scale 0.25 on the same database kind: this run's figure for its own scale,
 * and for the other the newest result file (full or `--only`) that measured the timeline.
 */
function scalingFigure(report: BenchReport): Figure {
  const kind = report.database.startsWith('MongoDB') ? 'mongodb' : 'ferretdb';
  const heavyP95 = (r: BenchReport) => r.figures.find((f) => f.id === 'timeline.heavy.p95')?.value ?? null;
  const p95At = (scale: number) => {
    if (scale === report.scale && heavyP95(report) !== null) return heavyP95(report);
    const pattern = new RegExp(`^scale-${scale.toString().replace('.', '\\.')}-${kind}(-only-[a-z-]+)?\\.json$`);
    const measured = (fs.existsSync(resultsDir) ? fs.readdirSync(resultsDir) : [])
      .filter((name) => pattern.test(name))
      .map((name) => JSON.parse(fs.readFileSync(path.join(resultsDir, name), 'utf8')) as BenchReport)
      .filter((r) => heavyP95(r) !== null)
      .sort((a, b) => b.startedAt.localeCompare(a.startedAt));
    return measured[0] ? heavyP95(measured[0]) : null;
  };
  const small = p95At(0.25);
  const large = p95At(4);
  return {
    id: 'timeline.scaling',
    label: 'Timeline p95 at scale 4 / p95 at scale 0.25 (heavy unit)',
    value: small && large ? large / small : null,
    unit: '×',
    target: { kind: 'max', value: 1.5 },
    note: small && large ? `${large} ms / ${small} ms` : `needs results at both scales (have 0.25: ${small ?? 'no'}, 4: ${large ?? 'no'})`,
  };
}

/**
 * `--only screening` needs neither the data set nor the server: re-screening is measured in
 * this process on its own synthetic list and registrations (bench/screening.ts).
 */
function screeningOnly() {
  const startedAt = new Date();
  log('re-screening: 150,000 registrations against 50,000 listed entities, in this process');
  const figures = screeningBench();
  const report = buildReport({ startedAt: startedAt.toISOString(), durationSeconds: (Date.now() - startedAt.getTime()) / 1000, scale: 1, seed: 7, database: 'none (in-process matching)', machine: machine(), notes: [`Load average (1 min) at the end: ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores.`] }, figures);
  fs.mkdirSync(resultsDir, { recursive: true });
  const markdown = toMarkdown(report);
  fs.writeFileSync(path.join(resultsDir, 'scale-1-screening.json'), `${JSON.stringify(report, null, 2)}\n`);
  fs.writeFileSync(path.join(resultsDir, 'scale-1-screening.md'), markdown);
  log(`\n${markdown}`);
}

async function main() {
  if (only.size === 1 && only.has('screening')) return screeningOnly();
  const manifest = readManifest();
  const startedAt = new Date();
  const env = serverEnv(manifest);
  const config = loadConfig(env);
  const profileDir = path.join(resultsDir, 'profiles');
  log(`scale ${manifest.dataset.scale}, ${manifest.dataset.counts.checkIns.toLocaleString('en')} check-ins; starting the server${args.profile ? ' with --cpu-prof' : ''}`);
  const server = await startServer(env, args.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []);
  const memory = memorySampler(server.pid);
  const figures: Figure[] = [];
  const notes: string[] = [];
  let databasePeakMb = 0;
  const databaseMemory = setInterval(() => {
    for (const pid of childPids(server.pid)) databasePeakMb = Math.max(databasePeakMb, readMemory(pid)?.rssMb ?? 0);
  }, 500);
  try {
    log(`server ${server.url} (pid ${server.pid}), database ${server.databaseUri ?? 'MONGODB_URI'}`);
    const [adminToken, investigatorToken] = [await logIn(server, manifest.admin), await logIn(server, manifest.investigator)];
    const cookie = `${sessionCookieName(config)}=${investigatorToken}`;
    // Warm-up: first requests compile views and open SQLite pages; they are not what is measured.
    await runLoad({ url: `${server.url}/api/v1/units/${encodeURIComponent(manifest.dataset.typicalUnit.id)}/timeline`, connections: 1, amount: 20, headers: { authorization: `Bearer ${investigatorToken}` } });

    // Which phase holds the whole-bench peak: each phase's own peak (its settling included).
    const phasePeaks: string[] = [`after start-up ${(readMemory(server.pid)?.rssMb ?? 0).toFixed(0)} MB`];
    const phase = async (name: string, run: () => Promise<Figure[]>) => {
      if (only.size && !only.has(name.split(' ').at(-1)!)) return;
      const peak = memory.window();
      const calm = await untilQuiet(server.pid);
      if (calm.waitedS > 5) notes.push(`Before ${name}: waited ${calm.waitedS.toFixed(0)} s for the server and database to go quiet${calm.quiet ? '' : ' (gave up at 300 s)'}.`);
      await settle(server, manifest, investigatorToken, notes, name);
      log(name);
      figures.push(...(await run()));
      phasePeaks.push(`${name.replace(/^\d+\. /, '')} ${peak().peakMb.toFixed(0)} MB`);
    };
    await phase('1. unit: timeline', () => timelines(server, manifest, investigatorToken));
    await phase('2. case: queue', () => pages(server, manifest, cookie));
    await phase('3. check-in: ingest', async () => {
      const ingested = await ingest(server, manifest);
      notes.push(...ingested.notes);
      return ingested.figures;
    });
    await phase('4. report submission: reports', () => reports(server, manifest));
    await phase('4b. refused uploads: uploads', () => tokenlessUploads(server, memory));
    await phase('5. memory: import', () => csvImport(server, manifest, adminToken, memory, notes));
    await phase('6. memory: export', () => exportUnits(server, adminToken, memory));
    await phase('8. EPCIS capture: epcis', async () => {
      const captured = await epcisCapture(server, manifest, adminToken);
      notes.push(...captured.notes);
      return captured.figures;
    });
    await phase('7. dashboard', async () => {
      const snapshot = await dashboardSnapshot(server, investigatorToken);
      const { ready, ...figure } = snapshot;
      if (ready) return [figure, ...(await pages(server, manifest, cookie, true))];
      return [figure, { id: 'dashboard.p95', label: 'Dashboard (/dashboard): p95', value: null, unit: 'ms', target: { kind: 'max', value: 150 }, note: `its snapshot was not computed within ${DASHBOARD_WAIT_S} s, so the page shows "figures on their way"` }];
    });
    await phase('8. re-screening: screening', async () => screeningBench(manifest.dataset.seed));
    await phase('9. sell-through and scorecards: partners', () =>
      partnersPhase({ api, log, latencyFigures, removeImportedUnits, rawSeconds: T.raw, latencySeconds: T.latency, sales: args.sales ? Number(args.sales) : null, cookie }, server, manifest, { admin: adminToken, investigator: investigatorToken }, notes),
    );
    notes.push(`Server peak RSS by phase: ${phasePeaks.join('; ')}.`);
    figures.push({ id: 'memory.peak', label: 'Server peak RSS over the whole bench', value: memory.peakMb, unit: 'MB', target: { kind: 'max', value: 512 }, note: `embedded database process peak ${databasePeakMb ? `${databasePeakMb.toFixed(0)} MB` : 'n/a'} (not counted)` });
  } catch (err) {
    // A phase that cannot go on (the server died) still leaves a table saying how far it got.
    notes.push(`Stopped early: ${(err as Error).message}`);
  } finally {
    if (server.died()) notes.push(`The server died during the bench (${server.died()}): ${server.stderrTail().slice(-8).join(' ').slice(0, 1500)}`);
    clearInterval(databaseMemory);
    memory.stop();
    await server.stop();
  }

  notes.push(`Load average (1 min) at the end: ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores; other processes on the machine compete with the server and the database.`);
  const database = manifest.database.startsWith('MongoDB') ? manifest.database : `FerretDB ${'v1.24'} (SQLite, embedded)`;
  const base = { startedAt: startedAt.toISOString(), durationSeconds: (Date.now() - startedAt.getTime()) / 1000, scale: manifest.dataset.scale, seed: manifest.dataset.seed, database, machine: machine(), notes };
  let report = buildReport(base, figures);
  report = buildReport(base, [...figures, scalingFigure(report)]);
  if (only.size) report.notes.push(`Run with --only ${[...only].join(',')}: the other phases were not measured.`);
  if (args.quick) report.notes.push('Run with --quick: phases shortened, figures are indicative only.');
  if (args.profile) report.notes.push(`CPU profile of the server in ${path.relative(process.cwd(), profileDir)} (open in Chrome DevTools).`);

  fs.mkdirSync(resultsDir, { recursive: true });
  // A partial run (--only) never replaces the full result of its scale.
  const kind = `${database.startsWith('MongoDB') ? 'mongodb' : 'ferretdb'}${only.size ? `-only-${[...only].join('-')}` : ''}`;
  const markdown = toMarkdown(report);
  fs.writeFileSync(path.join(resultsDir, `scale-${report.scale}-${kind}.json`), `${JSON.stringify(report, null, 2)}\n`);
  fs.writeFileSync(path.join(resultsDir, `scale-${report.scale}-${kind}.md`), markdown);
  if (!only.size) fs.writeFileSync(path.join(resultsDir, 'latest.md'), markdown);
  log(`\n${markdown}`);
  log(`written to ${path.relative(process.cwd(), resultsDir)}/scale-${report.scale}-${kind}.{md,json}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
});
