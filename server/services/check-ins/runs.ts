import type { CheckInRun } from '../../domain/catalogue';

/** Runs the unit timeline shows, newest kept: older ones stay in the history and the log. */
export const MAX_RUNS = 50;
/** Runs one month's history bucket keeps at most, newest kept (bounds the document; the log keeps all). */
export const MAX_RUNS_PER_PERIOD = 1_000;

/**
 * Folds check-ins (any order) into the runs: consecutive check-ins from one country collapse
 * into one run. Returns the new runs (newest last), the check-ins that started a run, and
 * the runs that reached `settleAt` check-ins in this fold.
 */
export function foldRuns<T extends { observedAt: Date; country: string; firmware: string }>(
  previous: readonly CheckInRun[],
  checkIns: readonly T[],
  settleAt: number,
): { runs: CheckInRun[]; started: Array<{ checkIn: T; run: CheckInRun }>; settled: Array<{ checkIn: T; run: CheckInRun }> } {
  const runs = previous.map((r) => ({ ...r }));
  const started: Array<{ checkIn: T; run: CheckInRun }> = [];
  const settled: Array<{ checkIn: T; run: CheckInRun }> = [];
  const ordered = [...checkIns].sort((a, b) => a.observedAt.getTime() - b.observedAt.getTime());
  for (const checkIn of ordered) {
    const last = runs.at(-1);
    if (last && last.country === checkIn.country) {
      last.count += 1;
      if (checkIn.observedAt >= last.lastAt) {
        last.lastAt = checkIn.observedAt;
        last.lastFirmware = checkIn.firmware;
      }
      if (last.count === settleAt) settled.push({ checkIn, run: { ...last } });
      continue;
    }
    const run = { country: checkIn.country, count: 1, firstAt: checkIn.observedAt, lastAt: checkIn.observedAt, firstFirmware: checkIn.firmware, lastFirmware: checkIn.firmware };
    runs.push(run);
    started.push({ checkIn, run });
    if (settleAt === 1) settled.push({ checkIn, run: { ...run } });
  }
  return { runs, started, settled };
}
