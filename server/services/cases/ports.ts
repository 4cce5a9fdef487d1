import type { Role } from '../../domain/auth';
import type { IncomingFile } from '../files';
import type { ReporterStatus } from './rules';

/**
 * What cases need of the modules they act on. Those modules are built before the case
 * workflow (server/services/index.ts) and passed in as these narrow ports, so a case's
 * effect on units, warranties and reporters is one typed call each, and no service cycle.
 */

/** Unit controls (server/services/check-ins.ts): several cases may withhold one unit. */
export interface UnitControlsPort {
  withholdUpdates(unitIds: string[], caseId: string): Promise<unknown>;
  liftWithholding(unitIds: string[], caseId: string): Promise<unknown>;
}

/** Registrations (server/services/registrations.ts). */
export interface RegistrationsPort {
  /** The unit's timeline as `viewer` may see it (never the cases hidden from them). */
  timeline(unitId: string, viewer: { id: string; role: Role }): Promise<unknown>;
  setWarranty(registrationId: string, status: 'void', actor: { userId: string | null; caseId?: string }): Promise<unknown>;
}

export interface EvidenceFile {
  stream: NodeJS.ReadableStream;
  mediaType: string;
  size?: number | null;
  /** The generic download name (`evidence-2.pdf`), never the name the reporter's device gave it. */
  name: string;
}

/** The reporting channel (server/services/reports/staff.ts). */
export interface ReportsPort {
  getReportForStaff(reportId: string): Promise<unknown>;
  listMessages(reportId: string): Promise<unknown>;
  postInvestigatorMessage(reportId: string, userId: string, text: string): Promise<unknown>;
  openEvidence(reportId: string, fileId: string): Promise<EvidenceFile>;
  deleteReporterData(reportId: string): Promise<unknown>;
  setStatus(reportId: string, status: ReporterStatus, userId?: string | null): Promise<unknown>;
  setFeedback(reportId: string, text: string, userId: string): Promise<unknown>;
  addInvestigatorEvidence(reportId: string, file: IncomingFile, userId: string): Promise<{ fileId: string }>;
  confirmLink(reportId: string, linkIndex: number, confirmed: boolean, userId: string): Promise<unknown>;
}

/** Channel partners (server/services/partners): a "notify channel partner" action reaches the partner's portal. */
export interface PartnerRequestsPort {
  /** The partner's id; a ValidationError (on `channelPartner`) when no partner has that name. */
  checkPartnerNamed(named: string): Promise<string>;
  requestFromCase(input: { caseId: string; actionId: string; channelPartner: string; questions: string; unitIds: string[]; dueBy: Date | null; byUserId: string }): Promise<string>;
}

export interface CasePorts {
  unitControls: UnitControlsPort;
  registrations: RegistrationsPort;
  reports: ReportsPort;
  partners: PartnerRequestsPort;
}
