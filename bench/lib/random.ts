/**
 * A small seeded PRNG (mulberry32): the data set must be the same on every machine for a seed,
 * which Math.random cannot give.
 */
export interface Random {
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [min, max], both included. */
  int(min: number, max: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** Index drawn with the given cumulative weights (last = total). */
  weighted(cumulative: readonly number[]): number;
  hex(length: number): string;
}

export function createRandom(seed: number): Random {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)]!,
    weighted(cumulative) {
      const x = next() * cumulative[cumulative.length - 1]!;
      let lo = 0;
      let hi = cumulative.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cumulative[mid]! > x) hi = mid;
        else lo = mid + 1;
      }
      return lo;
    },
    hex(length) {
      let out = '';
      while (out.length < length) out += Math.floor(next() * 4294967296).toString(16).padStart(8, '0');
      return out.slice(0, length);
    },
  };
}

/** Zipf-like weights (1/rank^s) as a cumulative table: a few values are common, most are rare. */
export function zipfCumulative(n: number, s = 1): number[] {
  const out: number[] = [];
  let sum = 0;
  for (let rank = 1; rank <= n; rank++) out.push((sum += 1 / rank ** s));
  return out;
}
