import mongoose from 'mongoose';
import { killSpawned } from '../helpers/processes';
import { startServer, sleep, type RunningServer } from '../helpers/security';
import { acknowledged, checkInBatch, prepare, registration, report, soakSeconds, verifyAcknowledged, type Fixtures, type WriteRecord } from './workload';

/**
 * No acknowledged write is lost: check-ins, registrations and reports with unique ids under
 * load while the embedded database is killed twice (the supervisor restarts it). Afterwards
 * every write that got a 2xx is in the database once, and retries made no duplicates.
 * `npm test` runs it for a few seconds; `npm run test:soak` for SOAK_SECONDS (60 by default).
 */
describe('no acknowledged write lost while the database is killed and restarted twice', () => {
  const seconds = soakSeconds(12);
  let srv: RunningServer;
  let fx: Fixtures;

  beforeAll(async () => {
    srv = await startServer({ REPORT_POW_BITS: '0', REPORT_MIN_FILL_SECONDS: '0' });
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
    const worker = async (i: number) => {
      while (Date.now() < until) {
        const pick = (i + records.length) % 4;
        records.push(...(pick === 0 ? await registration(srv, fx, () => nextUnit++) : pick === 1 ? await report(srv) : await checkInBatch(srv, fx)));
      }
    };
    const kills = [0.3, 0.65].map(async (at) => {
      await sleep(seconds * 1000 * at);
      // Between its restarts the supervisor starts a new pid: look it up each time.
      let pid = srv.ferretdbPid();
      for (let i = 0; i < 50 && !pid; i++) pid = (await sleep(100), srv.ferretdbPid());
      if (!pid) throw new Error(`no FerretDB child of ${srv.process.pid}:\n${srv.process.output().slice(-3000)}`);
      process.kill(pid, 'SIGKILL');
    });
    await Promise.all([...Array.from({ length: 8 }, (_, i) => worker(i)), ...kills]);

    // The database must be back (it was restarted by the supervisor), then the truth is read from it.
    for (let i = 0; i < 100 && mongoose.connection.readyState !== 1; i++) await sleep(100);
    await sleep(1_500);
    const { lost, duplicated } = await verifyAcknowledged(records);
    const outcomes = records.flatMap((r) => r.outcomes);
    const serverErrors = outcomes.filter((o) => o.status >= 500 && o.status !== 503);
    const summary = {
      seconds,
      writes: records.length,
      acknowledged: records.filter(acknowledged).length,
      retried: records.filter((r) => r.outcomes.length > 1).length,
      unavailable503: outcomes.filter((o) => o.status === 503).length,
      refused: outcomes.filter((o) => o.status === 0).length,
    };
    console.log(`no-write-lost: ${JSON.stringify(summary)}`);

    expect(srv.process.output().match(/embedded FerretDB restarted/g)?.length).toBe(2);
    expect(summary.acknowledged).toBeGreaterThan(50);
    expect(summary.retried).toBeGreaterThan(0);
    expect(serverErrors.map((o) => JSON.stringify(o.body))).toEqual([]);
    expect(lost).toEqual([]);
    expect(duplicated).toEqual([]);
    // Retried writes got through once the database was back: none gave up after all its attempts.
    expect(records.filter((r) => r.kind !== 'report' && !acknowledged(r)).map((r) => r.key)).toEqual([]);
  }, 300_000);
});
