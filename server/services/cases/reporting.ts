import { ValidationError } from '../../errors';
import type { IncomingFile } from '../files';
import { caseAccess, reportIdsOf, requireReportOf, unlessMissing, type Actor } from './access';
import { recorder, type CaseDeps } from './context';
import type { ReportsPort } from './ports';

/** Contact fields a staff report may carry; shown only through `reporterContact`. */
const IDENTITY_KEYS = ['contact', 'reporterContact', 'identity', 'reporter'] as const;

function identityOf(report: unknown): Record<string, unknown> | null {
  const r = report as Record<string, unknown>;
  for (const k of IDENTITY_KEYS) if (r?.[k] && typeof r[k] === 'object') return r[k] as Record<string, unknown>;
  return null;
}

/** A report for the case page: never the identity; messages only for assigned investigators. */
export function staffView(report: unknown, assigned: boolean): Record<string, unknown> {
  const copy = { ...(report as Record<string, unknown>) };
  for (const k of IDENTITY_KEYS) delete copy[k];
  if (!assigned) copy.messages = [];
  return copy;
}

/**
 * The reporters of a case, as its assigned investigators reach them: identity, messages,
 * evidence and link review, each through the reporting channel and each logged.
 */
export function caseReporting(deps: CaseDeps, reports: ReportsPort) {
  const { assignedCase, writableCase } = caseAccess(deps);
  const record = recorder(deps.audit);

  return {
    /** The reporters' contact details, for assigned investigators only; every view is logged. */
    async reporterContact(caseId: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      const contacts = [];
      for (const reportId of reportIdsOf(c)) {
        if (c.retention?.deletedReportIds?.includes(reportId)) continue;
        const report = await reports.getReportForStaff(reportId).catch(unlessMissing);
        contacts.push({ reportId, contact: report ? identityOf(report) : null });
      }
      await record(actor, 'identity.viewed', c._id, { reportIds: contacts.map((x) => x.reportId) });
      return { case: c, contacts };
    },

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
