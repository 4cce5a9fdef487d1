import type { CheckInRun } from '../../server/domain/catalogue';
import { foldRuns } from '../../server/services/check-ins';

const at = (iso: string) => new Date(iso);

describe('folding check-ins into runs (pure)', () => {
  const ci = (country: string, iso: string, firmware = '1.0') => ({ country, observedAt: at(iso), firmware });

  it('collapses consecutive check-ins from one country and starts a run on each change', () => {
    const { runs, started } = foldRuns([], [ci('KE', '2026-01-01T00:00:00Z', '2.1'), ci('KE', '2026-01-02T00:00:00Z', '2.3'), ci('UG', '2026-01-03T00:00:00Z'), ci('KE', '2026-01-04T00:00:00Z')], 3);
    expect(runs).toEqual([
      { country: 'KE', count: 2, firstAt: at('2026-01-01T00:00:00Z'), lastAt: at('2026-01-02T00:00:00Z'), firstFirmware: '2.1', lastFirmware: '2.3' },
      { country: 'UG', count: 1, firstAt: at('2026-01-03T00:00:00Z'), lastAt: at('2026-01-03T00:00:00Z'), firstFirmware: '1.0', lastFirmware: '1.0' },
      { country: 'KE', count: 1, firstAt: at('2026-01-04T00:00:00Z'), lastAt: at('2026-01-04T00:00:00Z'), firstFirmware: '1.0', lastFirmware: '1.0' },
    ]);
    expect(started.map((s) => s.run.country)).toEqual(['KE', 'UG', 'KE']);
  });

  it('orders a batch by observed time, and continues the last stored run', () => {
    const previous: CheckInRun[] = [{ country: 'KE', count: 2, firstAt: at('2026-01-01T00:00:00Z'), lastAt: at('2026-01-02T00:00:00Z'), firstFirmware: '1', lastFirmware: '1' }];
    const { runs, started, settled } = foldRuns(previous, [ci('KE', '2026-01-05T00:00:00Z', '2'), ci('KE', '2026-01-04T00:00:00Z', '1.5')], 3);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ count: 4, lastAt: at('2026-01-05T00:00:00Z'), lastFirmware: '2' });
    expect(started).toEqual([]);
    expect(settled.map((s) => s.checkIn.observedAt)).toEqual([at('2026-01-04T00:00:00Z')]);
    expect(previous[0]!.count).toBe(2);
  });

  it('reports a run as settled only when it reaches the threshold, not after', () => {
    const previous: CheckInRun[] = [{ country: 'TZ', count: 3, firstAt: at('2026-01-01T00:00:00Z'), lastAt: at('2026-01-01T00:00:00Z'), firstFirmware: '1', lastFirmware: '1' }];
    expect(foldRuns(previous, [ci('TZ', '2026-01-02T00:00:00Z')], 3).settled).toEqual([]);
  });

});
