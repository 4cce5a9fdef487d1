import { ConflictError } from '../../errors';
import { reportIdsOf } from './access';
import { caseChanger, type CaseDeps } from './context';
import type { ReportsPort } from './ports';
import { addMonths, retentionDecision } from './rules';

/**
 * Reporter data of cases closed longer than the retention period goes (unless on legal hold);
 * the case stays with a dated trace. Run by the retention job (server/jobs) and `npm run retention`.
 */
export function caseRetention(deps: CaseDeps, reports: Pick<ReportsPort, 'deleteReporterData'>) {
  const { clock } = deps;
  const store = deps.stores.cases;
  const retentionMonths = deps.config.retentionMonths;
  const change = caseChanger(deps);

  return {
    async runRetention() {
      const now = clock.now();
      const due = await store.casesDueForRetention(addMonths(now, -retentionMonths));
      const counts = { checked: due.length, deleted: 0, held: 0, reports: 0 };
      for (const caseId of due) {
        const c = await store.caseById(caseId);
        const decision = c ? retentionDecision(c, now, retentionMonths) : 'done';
        if (decision === 'hold') counts.held++;
        if (!c || decision !== 'delete') continue;
        const reportIds = reportIdsOf(c);
        // Deleting a report's reporter data twice is harmless, so two runners racing here
        // both delete, and the guard lets one of them write the trace.
        for (const reportId of reportIds) await reports.deleteReporterData(reportId);
        const traced = await change(
          c,
          null,
          { status: 'closed', legalHold: false, reporterDataKept: true },
          { set: { 'retention.reporterDataDeletedAt': now, 'retention.deletedReportIds': reportIds } },
          { action: 'retention-deleted', detail: `reporter data of ${reportIds.length} report(s) deleted after ${retentionMonths} months`, audit: { reportIds, retentionMonths } },
        ).then(
          () => true,
          (err: unknown) => {
            if (err instanceof ConflictError) return false; // another runner, or a hold placed meanwhile
            throw err;
          },
        );
        if (!traced) continue;
        counts.deleted++;
        counts.reports += reportIds.length;
      }
      return counts;
    },
  };
}
