import mongoose from 'mongoose';
import { killSpawned } from '../helpers/processes';
import { startServer, sleep, type RunningServer } from '../helpers/security';
import { acknowledged, checkInBatch, prepare, registration, report, soakSeconds, verifyAcknowledged, type Fixtures, type WriteRecord } from './workload';

/**
 * No acknowledged write is lost: check-ins, registrations and reports with unique ids under
 * load through two app instances on one DATA_DIR (the second joins the engine the first runs)
 * while the embedded database is killed twice (the owner's supervisor restarts it). Afterwards
 * every write that got a 2xx is in the database once, retries made no duplicates, and the
 * instance holding the summariser's lease folded every stored check-in, whichever instance
 * took it. `npm test` runs it for a few seconds; `npm run test:soak` for SOAK_SECONDS (60 by default).
 */
describe('no acknowledged write lost through two instances while the database is killed and restarted twice', () => {
  const seconds = soakSeconds(12);
  let srv: RunningServer;
  let instances: RunningServer[];
  let fx: Fixtures;

  beforeAll(async () => {
    const env = { REPORT_POW_BITS: '0', REPORT_MIN_FILL_SECONDS: '0', JOB_LEASE_SECONDS: '3' };
    srv = await startServer(env);
    instances = [srv, await startServer(env, srv.dataDir)];
    fx = await prepare(srv, Math.max(60, seconds * 15));
  }, 120_000);
  afterAll(async () => {
    await mongoose.disconnect();
    await killSpawned();
  });

  it(`keeps every 2xx write of a ${seconds} s run, with no duplicates and no 5xx other than 503`, async () => {
    const records: WriteRecord[] = [];
    const until = Date.now() + seconds * 1000;
    let nextUnit = 0;
    // The writes in flight when each kill was sent: the kill must land on some, or it tests nothing.
    const inFlight = new Set<number>();
    const caughtByKill: number[][] = [];
    let nextWrite = 0;
    const worker = async (i: number) => {
      while (Date.now() < until) {
        const pick = (i + records.length) % 4;
        // Workers alternate between the instances, as a proxy spreads clients.
        const via = instances[i % instances.length]!;
        const write = nextWrite++;
        inFlight.add(write);
        records.push(...(pick === 0 ? await registration(via, fx, () => nextUnit++) : pick === 1 ? await report(via) : await checkInBatch(via, fx)));
        inFlight.delete(write);
      }
    };
    const kills = [0.3, 0.65].map(async (at) => {
      await sleep(seconds * 1000 * at);
      // Between its restarts the supervisor starts a new pid: look it up each time.
      let pid = srv.ferretdbPid();
      for (let i = 0; i < 50 && !pid; i++) pid = (await sleep(100), srv.ferretdbPid());
      if (!pid) throw new Error(`no FerretDB child of ${srv.process.pid}:\n${srv.process.output().slice(-3000)}`);
      while (inFlight.size === 0 && Date.now() < until) await sleep(5);
      // No await between the check and the kill: the snapshot is what the kill caught.
      process.kill(pid, 'SIGKILL');
      caughtByKill.push([...inFlight]);
    });
    await Promise.all([...Array.from({ length: 8 }, (_, i) => worker(i)), ...kills]);

    // The database must be back (it was restarted by the supervisor), then the truth is read from it.
    for (let i = 0; i < 100 && mongoose.connection.readyState !== 1; i++) await sleep(100);
    await sleep(1_500);
    const { lost, duplicated } = await verifyAcknowledged(records, fx.services.reports);
    // Every stored check-in folded into its unit's summary, by whichever instance held the lease.
    const db = mongoose.connection.db!;
    let outbox = -1;
    for (let i = 0; i < 300 && outbox !== 0; i++) {
      outbox = await db.collection('checkinbatches').countDocuments({});
      if (outbox) await sleep(100);
    }
    const folded = (await db.collection<{ checkIns?: { count?: number } }>('units').find({}, { projection: { 'checkIns.count': 1 } }).toArray()).reduce((n, u) => n + (u.checkIns?.count ?? 0), 0);
    const outcomes = records.flatMap((r) => r.outcomes);
    const serverErrors = outcomes.filter((o) => o.status >= 500 && o.status !== 503);
    const summary = {
      seconds,
      writes: records.length,
      acknowledged: records.filter(acknowledged).length,
      retried: records.filter((r) => r.outcomes.length > 1).length,
      unavailable503: outcomes.filter((o) => o.status === 503).length,
      refused: outcomes.filter((o) => o.status === 0).length,
      folded,
    };
    console.log(`no-write-lost: ${JSON.stringify(summary)}`);

    expect(srv.process.output().match(/embedded FerretDB restarted/g)?.length).toBe(2);
    expect(summary.acknowledged).toBeGreaterThan(50);
    // Each kill landed while writes were under way (whether they then failed and were retried,
    // or waited for the restarted database, depends on timing: both must keep the write).
    expect(caughtByKill.map((writes) => writes.length > 0)).toEqual([true, true]);
    expect(serverErrors.map((o) => JSON.stringify(o.body))).toEqual([]);
    expect(lost).toEqual([]);
    expect(duplicated).toEqual([]);
    expect(outbox).toBe(0);
    expect(folded).toBe(await db.collection('checkins').countDocuments({}));
    // Retried writes got through once the database was back: none gave up after all its attempts.
    expect(records.filter((r) => r.kind !== 'report' && !acknowledged(r)).map((r) => r.key)).toEqual([]);
  }, 300_000);
});
