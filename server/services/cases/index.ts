import type { NotificationsService } from '../notifications';
import { caseAccess, type Actor } from './access';
import type { CaseDeps } from './context';
import { caseDossier } from './dossier';
import { caseIdentity } from './identity';
import { caseLeverage } from './leverage';
import { caseMerging } from './merging';
import { caseNotices } from './notices';
import { caseOpening } from './opening';
import type { CasePorts } from './ports';
import { caseQueue } from './queue';
import { caseReporting } from './reporting';
import { caseRetention } from './retention';
import { caseWorkflow } from './workflow';

export { isAssignee, isConflicted, type Actor } from './access';
export type { CaseDeps } from './context';
export type { IdentityAccess } from './identity';
export type { ActionInput, ActionUpdate, RemediationInput } from './leverage';
export type { CaseSubject } from './opening';
export type { CasePorts, EvidenceFile, RegistrationsPort, ReportsPort, UnitControlsPort } from './ports';
export type { QueueFilters } from './queue';
export * from './rules';
export type { TransitionInput, TriageInput } from './workflow';
/** The queue's overdue rule as a database filter (insight counts overdue cases with it). */
export { overdueFilter } from '../../store/cases';

/**
 * What other modules call on cases: flags and reports open cases, a unit's timeline lists its
 * cases. Needs nothing but the database and the audit log, so it is built first and the
 * modules that open cases are built on it (server/services/index.ts).
 */
export function createCaseIntake(deps: CaseDeps & { notifications: NotificationsService }) {
  const { getCase } = caseAccess(deps);
  const notices = caseNotices(deps);
  const { openOrUpdateForFlags, openOrAttachForReport } = caseOpening(deps, notices);
  const { casesOfUnit } = caseQueue(deps);
  return {
    openOrUpdateForFlags,
    openOrAttachForReport,
    casesOfUnit,
    getCase,
    /** The reporter wrote on their report: the people whose queue holds its case are told. */
    reporterWrote: notices.reporterWrote,
  };
}

/** The part of cases that flags, registrations and reports use. */
export type CasesService = ReturnType<typeof createCaseIntake>;

/**
 * The whole cases module: the intake, and the investigators' work, which acts on units,
 * registrations and reporters through `ports` (built before it, so no cycle).
 */
export function createCasesService(deps: CaseDeps & { intake: CasesService; ports: CasePorts; notifications: NotificationsService }) {
  const { ports } = deps;
  const leverage = caseLeverage(deps, ports);
  const workflow = caseWorkflow(deps, ports.reports, leverage.endAction);
  const notices = caseNotices(deps);
  return {
    ...deps.intake,
    ...caseQueue(deps),
    ...caseDossier(deps, ports),
    ...workflow,
    /** Assigns, and tells the person when someone else did it. */
    async assign(caseId: string, userId: string, actor: Actor) {
      const c = await workflow.assign(caseId, userId, actor);
      await notices.assigned(c, userId, actor);
      return c;
    },
    sendDeadlineDigests: notices.sendDeadlineDigests,
    ...leverage,
    ...caseMerging(deps),
    ...caseReporting(deps, ports.reports),
    ...caseIdentity(deps, ports.reports),
    ...caseRetention(deps, ports.reports),
  };
}

export type CaseWorkService = ReturnType<typeof createCasesService>;
