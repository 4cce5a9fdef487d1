import crypto from 'node:crypto';
import os from 'node:os';
import type { Clock } from '../clock';
import type { Logger } from '../logger';
import type { JobsStore } from '../store/jobs';

/**
 * Background jobs under a lease in the database: whichever instance holds a job's lease runs
 * it, the others only check now and then whether the lease has lapsed. An instance that dies
 * stops renewing; its lease expires after `leaseMs` and the next instance to look takes the
 * job over, so a job changes hands within `leaseMs + pollMs`.
 */
export interface JobDefinition {
  name: string;
  /** How often the holder runs the job (Infinity: only on acquire). */
  everyMs: number;
  /** When a run resolves `true` (work was waiting, more may be), the next one comes this soon instead. */
  busyEveryMs?: number;
  /** Run at once when this instance first takes the lease (catch-up after a restart). */
  runOnAcquire?: boolean;
  run(): Promise<unknown>;
}

export interface JobRunnerOptions {
  store: JobsStore;
  clock: Clock;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** This instance's name in lease histories; unique per process. */
  instanceId?: string;
  leaseMs?: number;
  pollMs?: number;
}

export interface JobRunner {
  readonly instanceId: string;
  /** Jobs whose lease this instance holds now. */
  holding(): string[];
  /** Runs a job now if this instance holds its lease (tests, `settle` paths). */
  runNow(name: string): Promise<boolean>;
  /** Stops every loop, waits for runs in flight and frees the leases held. */
  stop(): Promise<void>;
}

export const DEFAULT_LEASE_MS = 15_000;

export function newInstanceId(): string {
  return `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`;
}

export function startJobs(jobs: JobDefinition[], opts: JobRunnerOptions): JobRunner {
  const { store, clock, logger } = opts;
  const instanceId = opts.instanceId ?? newInstanceId();
  const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
  const pollMs = opts.pollMs ?? Math.max(250, Math.floor(leaseMs / 3));
  let stopped = false;

  const states = jobs.map((job) => ({ job, held: false, renewedAt: -Infinity, busy: false, lastRunAt: 0, running: null as Promise<void> | null, ticking: null as Promise<void> | null, timer: null as NodeJS.Timeout | null }));
  const intervalOf = (state: (typeof states)[number]) => (state.busy && state.job.busyEveryMs !== undefined ? state.job.busyEveryMs : state.job.everyMs);

  const runOnce = async (state: (typeof states)[number]) => {
    const started = clock.now();
    const t0 = performance.now();
    // Long runs keep their lease: renewed while running, so no other instance starts the job too.
    const heartbeat = setInterval(() => {
      void store.renew(state.job.name, instanceId, clock.now(), leaseMs).then(
        (kept) => {
          if (!kept && state.held) {
            state.held = false;
            logger.warn({ job: state.job.name, instanceId }, 'job lease lost while running');
          }
        },
        () => {},
      );
    }, pollMs);
    heartbeat.unref();
    let error: string | null = null;
    try {
      state.busy = (await state.job.run()) === true;
    } catch (err) {
      state.busy = false;
      error = (err as Error)?.message ?? String(err);
      logger.error({ err, job: state.job.name }, 'job run failed');
    } finally {
      clearInterval(heartbeat);
    }
    state.lastRunAt = Date.now();
    await store.recordRun(state.job.name, instanceId, started, Math.round(performance.now() - t0), error).catch(() => {});
  };

  const tick = async (state: (typeof states)[number]) => {
    if (stopped) return;
    try {
      // A lease renewed less than a poll ago still has most of its length: no write needed.
      if (!state.held || performance.now() - state.renewedAt >= pollMs) {
        const held = await store.acquire(state.job.name, instanceId, clock.now(), leaseMs);
        if (held && !state.held) logger.info({ job: state.job.name, instanceId }, 'job lease taken');
        if (held) state.renewedAt = performance.now();
        const gained = held && !state.held;
        state.held = held;
        if (gained && state.job.runOnAcquire) state.lastRunAt = 0;
      }
      const due = Date.now() - state.lastRunAt >= intervalOf(state);
      if (state.held && !stopped && due) {
        state.running = runOnce(state);
        await state.running;
        state.running = null;
      }
    } catch (err) {
      // The database may be down for a moment: try again at the next tick.
      state.held = false;
      logger.warn({ err: (err as Error)?.message, job: state.job.name }, 'job lease check failed');
    }
    if (!stopped) {
      // The holder comes back when the next run is due, if that is before the next lease check.
      const untilDue = state.lastRunAt + intervalOf(state) - Date.now();
      state.timer = setTimeout(() => void startTick(state), state.held ? Math.max(0, Math.min(pollMs, untilDue)) : pollMs);
      state.timer.unref();
    }
  };

  // Stop must wait for a lease check in flight too: one that lands after the release would take
  // the lease again for an instance that has stopped, and no one would run the job until it lapsed.
  const startTick = (state: (typeof states)[number]) => {
    state.ticking = tick(state).finally(() => {
      state.ticking = null;
    });
  };

  for (const state of states) {
    // Not a run: the first tick decides whether this instance holds the job (and runs it at once if runOnAcquire).
    state.lastRunAt = Date.now();
    startTick(state);
  }

  return {
    instanceId,
    holding: () => states.filter((s) => s.held).map((s) => s.job.name),
    async runNow(name) {
      const state = states.find((s) => s.job.name === name);
      if (!state || !state.held) return false;
      await (state.running ?? runOnce(state));
      return true;
    },
    async stop() {
      stopped = true;
      for (const state of states) if (state.timer) clearTimeout(state.timer);
      await Promise.all(states.map((s) => s.ticking ?? s.running));
      await Promise.all(states.filter((s) => s.held).map((s) => store.release(s.job.name, instanceId).catch(() => {})));
      for (const state of states) state.held = false;
    },
  };
}
