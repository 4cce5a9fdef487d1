import type { MessageKind, ReportStatus } from '../../domain/reports';
import { NotFoundError, ValidationError } from '../../errors';
import type { ReportRecord } from '../../store/reports';
import type { IncomingFile } from '../files';
import { reportOf, type ReportsDeps } from './context';
import { evidenceNameOf, type EvidenceRef, type ReportEvidence } from './evidence';
import type { Message, ReportMessages } from './messages';
import type { ReportSealing } from './sealing';

/**
 * What investigators read and do on a report, through the cases module (its `ReportsPort`,
 * server/services/cases/ports.ts): the caller checks access and audits reads.
 */
export function reportsForStaff(deps: ReportsDeps, parts: { evidence: ReportEvidence; messages: ReportMessages; sealing: ReportSealing }) {
  const { clock, audit } = deps;
  const { evidence, messages, sealing } = parts;
  const { files } = sealing;
  const store = deps.stores.reports;

  /** A reporter who gave an address and opted in is told there is news; the address is read in the clear only here. */
  async function tellReporter(reportId: string) {
    const { contact } = await sealing.open(await reportOf(store, reportId));
    if (contact?.newsByEmail && contact.email) await deps.notifications.tellReporterOfNews(contact.email);
  }

  return {
    /**
     * The full report in the clear (contact, links, messages); evidence carries its generic
     * `name` (derived for reports older than it). `shredded`: retention destroyed its data key,
     * so its texts read as empty.
     */
    async getReportForStaff(reportId: string): Promise<ReportRecord & { shredded: boolean }> {
      const report = await sealing.open(await reportOf(store, reportId));
      return { ...report, evidence: (report.evidence ?? []).map((e, i) => ({ ...e, name: evidenceNameOf(e, i) })) };
    },

    /** Oldest first. */
    async listMessages(reportId: string): Promise<Message[]> {
      return (await sealing.open(await reportOf(store, reportId))).messages ?? [];
    },

    /**
     * A message to the reporter; `feedback` is the answer they are owed (what was found, what was
     * done), shown to them as such and kept as the report's latest feedback.
     */
    async postInvestigatorMessage(reportId: string, userId: string, text: string, kind: MessageKind = 'message') {
      const posted = await messages.post(reportId, 'investigator', userId, text, kind);
      if (kind === 'feedback') await store.setFeedback(reportId, { text: await sealing.sealText(reportId, 'feedback', text), at: posted.at, byUserId: userId });
      await tellReporter(reportId);
      return posted;
    },

    /** What the reporter is shown. */
    async setFeedback(reportId: string, text: string, userId: string) {
      if (!(await store.setFeedback(reportId, { text: await sealing.sealText(reportId, 'feedback', text), at: clock.now(), byUserId: userId }))) throw new NotFoundError('No such report.');
      await audit.record({ actorKind: 'user', actorId: userId, action: 'report.feedback-shared', subjectKind: 'report', subjectId: reportId });
      await tellReporter(reportId);
    },

    /**
     * Recorded once: of two racing changes from the same status, the one that applied. Closing
     * takes the outcome the reporter is shown (the cases module asks for it on closing).
     */
    async setStatus(reportId: string, status: ReportStatus, userId: string | null = null, outcome: string | null = null) {
      const before = await reportOf(store, reportId);
      if (before.status === status) return;
      const sealedOutcome = outcome ? await sealing.sealText(reportId, 'outcome', outcome) : null;
      if (!(await store.changeStatus(reportId, before.status, status, clock.now(), sealedOutcome))) return;
      await audit.record({ actorKind: userId ? 'user' : 'system', actorId: userId, action: 'report.status-changed', subjectKind: 'report', subjectId: reportId, detail: { from: before.status, to: status } });
      await tellReporter(reportId);
    },

    async addInvestigatorEvidence(reportId: string, file: IncomingFile, userId: string): Promise<EvidenceRef> {
      const report = await reportOf(store, reportId);
      const { stored } = await evidence.storeAll([file], 'evidence', true);
      const [ref] = await evidence.refsOf(report, stored, 'investigator', userId);
      await evidence.append(reportId, [ref!], { kind: 'user', id: userId });
      return ref!;
    },

    /** `name` is the generic download name (`evidence-2.pdf`): the name a device gave a file is never sent. */
    async openEvidence(reportId: string, fileId: string) {
      const report = await reportOf(store, reportId);
      const index = (report.evidence ?? []).findIndex((e) => e.fileId === fileId);
      const ref = report.evidence?.[index];
      if (!ref) throw new NotFoundError('No such file in this report.');
      return { stream: await sealing.openFile(report, ref), mediaType: ref.mediaType, size: ref.size, name: evidenceNameOf(ref, index), sha256: ref.sha256 };
    },

    async confirmLink(reportId: string, linkIndex: number, confirmed: boolean, userId: string) {
      const report = await reportOf(store, reportId);
      const link = (report.links ?? [])[linkIndex];
      if (!Number.isInteger(linkIndex) || !link) throw new ValidationError({ linkIndex: 'No such link on this report.' });
      await store.reviewLink(reportId, linkIndex, { confirmed, by: userId, at: clock.now() });
      await audit.record({ actorKind: 'user', actorId: userId, action: confirmed ? 'report.link-confirmed' : 'report.link-rejected', subjectKind: 'report', subjectId: reportId, detail: { kind: link.kind, targetId: link.targetId } });
    },

    /** Retention: the reporter's contact, messages and evidence files really removed; the report keeps a trace (`erased`). */
    async deleteReporterData(reportId: string) {
      const report = await reportOf(store, reportId);
      const held = report.evidence ?? [];
      await Promise.all(held.map((e) => files.remove(e.fileId)));
      const erased = { at: clock.now(), evidenceFiles: held.length, messages: (report.messages ?? []).length, evidenceSha256: held.map((e) => e.sha256) };
      await store.eraseReporterData(reportId, erased);
      // Crypto-shredding: copies of its texts and files left anywhere (backups, a disk's free blocks) no longer open.
      await sealing.destroyDataKey(reportId);
      await audit.record({ actorKind: 'system', action: 'report.reporter-data-deleted', subjectKind: 'report', subjectId: reportId, detail: { evidenceFiles: erased.evidenceFiles, messages: erased.messages } });
      return { evidenceFiles: erased.evidenceFiles, messages: erased.messages };
    },
  };
}
