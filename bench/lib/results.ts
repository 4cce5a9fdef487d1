import os from 'node:os';

/**
 * The benchmark's figures, each with its target and verdict, and the table they make.
 * Pure functions: the runner measures, this module judges and formats.
 */

export interface Target {
  /** `max`: the value must not exceed `value`; `min`: it must reach it. */
  kind: 'max' | 'min';
  value: number;
}

export interface Figure {
  id: string;
  label: string;
  /** null: not measured (see `note`). */
  value: number | null;
  unit: string;
  target: Target | null;
  note?: string;
}

export type Verdict = 'pass' | 'fail' | 'not measured' | 'info';

export interface Machine {
  cores: number;
  cpu: string;
  memoryGb: number;
  platform: string;
  node: string;
}

export interface BenchReport {
  startedAt: string;
  durationSeconds: number;
  scale: number;
  seed: number;
  database: string;
  machine: Machine;
  figures: Array<Figure & { verdict: Verdict }>;
  notes: string[];
}

export function verdictOf(figure: Figure): Verdict {
  if (figure.value === null || !Number.isFinite(figure.value)) return 'not measured';
  if (!figure.target) return 'info';
  const { kind, value } = figure.target;
  return (kind === 'max' ? figure.value <= value : figure.value >= value) ? 'pass' : 'fail';
}

export function machine(): Machine {
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGb: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    platform: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

/** Exact percentile (nearest rank) of unsorted samples; null when there are none. */
export function percentile(samples: readonly number[], p: number): number | null {
  if (!samples.length) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

const number = (v: number) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en') : String(Math.round(v * 100) / 100));

export function formatValue(value: number | null, unit: string): string {
  if (value === null || !Number.isFinite(value)) return '—';
  return unit === '%' ? `${number(value)} %` : unit ? `${number(value)} ${unit}` : number(value);
}

export function formatTarget(target: Target | null, unit: string): string {
  if (!target) return '';
  return `${target.kind === 'max' ? '≤' : '≥'} ${formatValue(target.value, unit)}`;
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function buildReport(base: Omit<BenchReport, 'figures'>, figures: Figure[]): BenchReport {
  return { ...base, figures: figures.map((f) => ({ ...f, verdict: verdictOf(f) })) };
}

export function toMarkdown(report: BenchReport): string {
  const m = report.machine;
  const lines = [
    `### Benchmark: scale ${report.scale} (seed ${report.seed}), ${report.startedAt}`,
    '',
    `Machine: ${m.cores} cores (${m.cpu}), ${m.memoryGb} GB RAM, ${m.platform}, Node ${m.node}. Database: ${report.database}. Run took ${Math.round(report.durationSeconds)} s.`,
    '',
    '| figure | value | target | result | note |',
    '|---|---|---|---|---|',
    ...report.figures.map((f) => `| ${cell(f.label)} | ${formatValue(f.value, f.unit)} | ${formatTarget(f.target, f.unit)} | ${f.verdict === 'pass' ? 'pass' : f.verdict === 'fail' ? '**FAIL**' : f.verdict} | ${cell(f.note ?? '')} |`),
  ];
  if (report.notes.length) lines.push('', ...report.notes.map((n) => `- ${n}`));
  const failed = report.figures.filter((f) => f.verdict === 'fail').length;
  const missing = report.figures.filter((f) => f.verdict === 'not measured').length;
  lines.push('', `${report.figures.length - failed - missing} of ${report.figures.length} figures pass or are informational; ${failed} fail; ${missing} not measured.`);
  return `${lines.join('\n')}\n`;
}
