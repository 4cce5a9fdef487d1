import { EventEmitter } from 'node:events';
import type { Logger } from '../logger';
import { startEmbedded, type EmbeddedServer, type StartOptions } from './embedded';

export interface SupervisorOptions {
  /** First wait before a restart; doubles per failed attempt up to `maxDelayMs`. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** A process that stayed up this long is healthy again: the next crash starts from `initialDelayMs`. */
  stableAfterMs?: number;
  /** Asked before each restart: false when another process has taken the database over (see engine-lock.ts). */
  stillOwner?: () => boolean;
}

/**
 * Keeps the embedded FerretDB running: when it dies unexpectedly it is started again on the
 * same port (so the MongoDB driver's own reconnect finds it) with exponential backoff. Every
 * exit and every restart is logged: nothing is restarted silently.
 *
 * Emits 'exit' (code, signal, tail) for each unexpected exit, 'restart' (pid, attempt)
 * once a new process is serving, and 'handover' when it stops restarting because
 * `stillOwner()` said another process serves the port now.
 */
export async function superviseEmbedded(
  opts: StartOptions,
  logger: Logger,
  { initialDelayMs = 200, maxDelayMs = 10_000, stableAfterMs = 30_000, stillOwner = () => true }: SupervisorOptions = {},
): Promise<EmbeddedServer> {
  let current = await startEmbedded(opts);
  const port = Number(new URL(current.uri).port);
  let stopped = false;
  let attempt = 0;
  let startedAt = Date.now();
  let timer: NodeJS.Timeout | null = null;
  let restarting: Promise<void> | null = null;

  const supervisor = new (class extends EventEmitter implements EmbeddedServer {
    readonly uri = current.uri;
    get pid() {
      return current.pid;
    }
    get running() {
      return current.running;
    }
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await restarting;
      await current.stop();
    }
  })();

  const scheduleRestart = () => {
    attempt += 1;
    const delay = Math.min(initialDelayMs * 2 ** (attempt - 1), maxDelayMs);
    logger.warn({ attempt, delayMs: delay, port }, 'restarting embedded FerretDB');
    timer = setTimeout(() => {
      timer = null;
      restarting = restart().finally(() => (restarting = null));
    }, delay);
    timer.unref();
  };

  const watch = (server: EmbeddedServer) => {
    server.on('exit', (code: number | null, signal: string | null, tail: string[]) => {
      logger.error({ code, signal, tail, ferretdbPid: server.pid }, 'embedded FerretDB exited unexpectedly');
      supervisor.emit('exit', code, signal, tail);
      // Backoff counts failures in a row: a process that ran for a while earns a quick restart.
      if (Date.now() - startedAt > stableAfterMs) attempt = 0;
      if (!stopped) scheduleRestart();
    });
  };

  const restart = async () => {
    if (stopped) return;
    if (!stillOwner()) {
      stopped = true;
      supervisor.emit('handover');
      return;
    }
    try {
      const next = await startEmbedded({ ...opts, port });
      if (stopped) {
        await next.stop();
        return;
      }
      current = next;
      startedAt = Date.now();
      watch(next);
      logger.warn({ ferretdbPid: next.pid, port, attempt }, 'embedded FerretDB restarted');
      supervisor.emit('restart', next.pid, attempt);
    } catch (err) {
      // The port may still be held for a moment, or the disk may be full: try again later.
      logger.error({ err: (err as Error).message, attempt, port }, 'embedded FerretDB did not restart');
      if (!stopped) scheduleRestart();
    }
  };

  watch(current);
  return supervisor;
}
