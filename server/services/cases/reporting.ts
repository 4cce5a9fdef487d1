import { ValidationError } from '../../errors';
import type { IncomingFile } from '../files';
import { caseAccess, requireReportOf, type Actor } from './access';
import { recorder, type CaseDeps } from './context';
import type { ReportsPort } from './ports';

/**
 * The reporters of a case, as its assigned investigators reach them: messages, evidence and
 * link review, each through the reporting channel and each logged (identity: identity.ts).
 */
export function caseReporting(deps: CaseDeps, reports: ReportsPort) {
  const { assignedCase, writableCase } = caseAccess(deps);
  const record = recorder(deps.audit);

  return {
    async postMessage(caseId: string, reportId: string, text: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      requireReportOf(c, reportId);
      const posted = await reports.postInvestigatorMessage(reportId, actor.id, text);
      await record(actor, 'case.message-posted', c._id, { reportId });
      return posted;
    },

    async messages(caseId: string, reportId: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      requireReportOf(c, reportId);
      return reports.listMessages(reportId);
    },

    /** Investigators add their own evidence to a report of the case (cleaned like the reporter's). */
    async addEvidence(caseId: string, reportId: string, files: IncomingFile[], actor: Actor) {
      const c = await assignedCase(caseId, actor);
      requireReportOf(c, reportId);
      if (!files.length) throw new ValidationError({ evidence: 'Choose a file to add.' });
      const added = [];
      for (const file of files) added.push(await reports.addInvestigatorEvidence(reportId, file, actor.id));
      await record(actor, 'case.evidence-added', c._id, { reportId, fileIds: added.map((f) => f.fileId) });
      return added;
    },

    /** Confirms or rejects the linker's proposed link of a report to a unit, model or registration. */
    async reviewLink(caseId: string, reportId: string, linkIndex: number, confirmed: boolean, actor: Actor) {
      const c = await writableCase(caseId, actor);
      requireReportOf(c, reportId);
      await reports.confirmLink(reportId, linkIndex, confirmed, actor.id);
      await record(actor, confirmed ? 'case.link-confirmed' : 'case.link-rejected', c._id, { reportId, linkIndex });
    },

    /** An evidence file of one of the case's reports, for its investigators; logged. */
    async openEvidence(caseId: string, reportId: string, fileId: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      requireReportOf(c, reportId);
      const file = await reports.openEvidence(reportId, fileId);
      await record(actor, 'evidence.downloaded', c._id, { reportId, fileId });
      return file;
    },
  };
}
