import { csvCell, durationStats, percentile } from '../../server/services/insight';
import { logBreaks, shadeOf } from '../../server/insight-charts';

describe('figures as pure functions', () => {
  it('takes nearest-rank percentiles and ignores negative durations', () => {
    expect(percentile([], 0.5)).toBeNull();
    expect(percentile([10], 0.9)).toBe(10);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5)).toBe(5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9)).toBe(9);
    expect(durationStats([30, -5, 10, 20])).toEqual({ n: 3, medianMs: 20, p90Ms: 30 });
  });

  it('shades the map on a log scale so a handful of units still shows', () => {
    const breaks = logBreaks(1000);
    expect(breaks).toEqual([3, 10, 32, 100, 316, 1000]);
    expect(shadeOf(0, breaks)).toBe(0);
    expect(shadeOf(2, breaks)).toBe(1);
    expect(shadeOf(1000, breaks)).toBe(6);
    expect(logBreaks(0)).toEqual([]);
  });

  it('quotes CSV cells and defuses spreadsheet formulas', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('=HYPERLINK("http://x")')).toBe('"\'=HYPERLINK(""http://x"")"');
    expect(csvCell('-1')).toBe("'-1");
    expect(csvCell(null)).toBe('');
    expect(csvCell(['KE', 'UG'])).toBe('KE;UG');
  });
});
