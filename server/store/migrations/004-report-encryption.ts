import type { Migration } from './index';

/**
 * Reports and evidence files written in the clear, before encryption at rest: each gets a data
 * key, its texts and messages are sealed, and each file is re-written sealed (then the clear
 * file removed). The sealing itself is the reports service's (server/services/reports/
 * sealing.ts), which holds the keys; this migration only gives it its place in the order.
 * Resumable: a report is sealed in one guarded update and the next run finds only what is left.
 */
export interface ClearReports {
  remaining(): Promise<number>;
  run(progress: (done: number) => void): Promise<number>;
}

export function reportEncryptionMigration(clearReports: ClearReports): Migration {
  return {
    id: '004-report-encryption',
    description: 'reports and evidence files in the clear → sealed under a data key per report',
    unit: 'reports',
    remaining: () => clearReports.remaining(),
    run: (progress) => clearReports.run(progress),
  };
}
