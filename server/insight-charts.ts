import fs from 'node:fs';
import path from 'node:path';
import { publicDir } from './paths';

/**
 * Geometry for the dashboard's server-rendered SVG charts: pure functions from numbers to
 * shapes, so the pages need no client script (strict CSP) and the numbers sit in a table
 * beside each chart. Colours are CSS classes (public/css/insight.css), never inline styles.
 */

export interface WorldMap {
  width: number;
  height: number;
  countries: Array<{ code: string | null; name: string; d: string }>;
}

let worldMap: WorldMap | null = null;

/** Built once: a formatter per call costs ~0.15 ms. */
const monthFormat = new Intl.DateTimeFormat('en', { month: 'short', timeZone: 'UTC' });

/** The projected world (built by scripts/build-world-map.ts), read once. */
export function loadWorldMap(): WorldMap {
  worldMap ??= JSON.parse(fs.readFileSync(path.join(publicDir, 'maps', 'world-110m.json'), 'utf8')) as WorldMap;
  return worldMap;
}

export const SHADES = 6;

/**
 * Class breaks on a log scale: counts per country span orders of magnitude (thousands in a
 * home market, a handful where diversion starts), and a linear scale would hide the handful.
 */
export function logBreaks(max: number, shades = SHADES): number[] {
  if (max <= 0) return [];
  const breaks: number[] = [];
  for (let i = 1; i <= shades; i++) {
    const b = Math.max(1, Math.round(Math.pow(max, i / shades)));
    if (!breaks.length || b > breaks.at(-1)!) breaks.push(b);
  }
  return breaks;
}

/** 0 for none, else 1..breaks.length: the first break the value does not exceed. */
export function shadeOf(n: number, breaks: readonly number[]): number {
  if (n <= 0) return 0;
  const i = breaks.findIndex((b) => n <= b);
  return i === -1 ? breaks.length : i + 1;
}

export function choropleth(counts: ReadonlyArray<{ country: string; n: number }>) {
  const map = loadWorldMap();
  const byCode = new Map(counts.map((c) => [c.country, c.n]));
  const breaks = logBreaks(Math.max(0, ...counts.map((c) => c.n)));
  const shapes = map.countries.map((c) => {
    const n = (c.code && byCode.get(c.code)) || 0;
    return { d: c.d, shade: shadeOf(n, breaks), title: `${c.name}: ${n.toLocaleString('en')}` };
  });
  const legend = breaks.map((b, i) => ({ shade: i + 1, label: i === 0 ? (b === 1 ? '1' : `1–${b}`) : breaks[i - 1]! + 1 === b ? `${b}` : `${breaks[i - 1]! + 1}–${b}` }));
  // Shown countries the map cannot draw (small islands at this scale) are still in the table.
  return { width: map.width, height: map.height, shapes, legend };
}

/** A round upper bound for an axis: 1, 2, 5 × 10^k. */
export function niceMax(max: number): number {
  if (max <= 0) return 1;
  const pow = Math.pow(10, Math.floor(Math.log10(max)));
  return ([1, 2, 5, 10].map((m) => m * pow).find((m) => m >= max) ?? 10 * pow);
}

const ROW = 24;
const LABEL_W = 250;

/** Horizontal bars, one row per item, each split into segments (one segment: a plain bar). */
export function barRows(items: ReadonlyArray<{ label: string; segments: ReadonlyArray<{ n: number; cls: string; title?: string }> }>, width = 600) {
  const plot = width - LABEL_W - 50;
  const max = niceMax(Math.max(0, ...items.map((i) => i.segments.reduce((a, s) => a + s.n, 0))));
  const rows = items.map((item, r) => {
    let x = LABEL_W;
    const total = item.segments.reduce((a, s) => a + s.n, 0);
    const segments = item.segments
      .filter((s) => s.n > 0)
      .map((s) => {
        const w = (s.n / max) * plot;
        const seg = { x, w: Math.max(w, 1.5), cls: s.cls, title: s.title ?? `${item.label}: ${s.n}` };
        x += w;
        return seg;
      });
    return { y: r * ROW + 6, label: item.label, total, valueX: x + 6, segments };
  });
  return { width, height: items.length * ROW + 12, labelX: LABEL_W - 8, rowHeight: ROW - 8, rows };
}

/** Stacked columns over time (e.g. red flags per month, one colour per rule). */
export function stackedColumns(labels: readonly string[], series: ReadonlyArray<{ key: string; cls: string; counts: readonly number[] }>, width = 640, height = 240) {
  const left = 40;
  const bottom = 28;
  const plotH = height - bottom - 10;
  const totals = labels.map((_, i) => series.reduce((a, s) => a + (s.counts[i] ?? 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const slot = (width - left - 10) / Math.max(1, labels.length);
  const colW = Math.max(4, slot * 0.7);
  const columns = labels.map((label, i) => {
    let y = 10 + plotH;
    const segments = series
      .filter((s) => (s.counts[i] ?? 0) > 0)
      .map((s) => {
        const h = ((s.counts[i] ?? 0) / max) * plotH;
        y -= h;
        return { x: left + i * slot + (slot - colW) / 2, y, w: colW, h: Math.max(h, 1), cls: s.cls, title: `${label} · ${s.key}: ${s.counts[i]}` };
      });
    const month = new Date(`${label}-01T00:00:00Z`);
    const short = monthFormat.format(month);
    return { label: i === 0 || month.getUTCMonth() === 0 ? `${short} ${String(month.getUTCFullYear()).slice(2)}` : short, labelX: left + i * slot + slot / 2, total: totals[i]!, segments };
  });
  const ticks = [0, 0.5, 1].map((f) => ({ y: 10 + plotH - f * plotH, label: String(Math.round(f * max)) }));
  return { width, height, left, baseY: 10 + plotH, columns, ticks };
}

/** "3.5 days", "7 h", "12 min": a duration as people say it. */
export function humanDuration(ms: number | null): string {
  if (ms === null) return '–';
  const minutes = ms / 60_000;
  if (minutes < 90) return `${Math.round(minutes)} min`;
  const hours = minutes / 60;
  if (hours < 48) return `${Math.round(hours)} h`;
  const days = hours / 24;
  return `${days < 10 ? days.toFixed(1) : Math.round(days)} days`;
}
