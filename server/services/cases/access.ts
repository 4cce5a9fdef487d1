import type { Role } from '../../domain/auth';
import { ForbiddenError, NotFoundError, ValidationError } from '../../errors';
import type { CaseDeps, Case } from './context';
import type { ReportsPort } from './ports';
import { namesPerson, stringsIn } from './rules';

/**
 * Who may see and act on a case: staff see it unless conflicted; its assigned investigators
 * (and admins) change it; only the assigned see reporters' identity, messages and evidence.
 */

/** The signed-in person acting on a case. */
export interface Actor {
  id: string;
  role: Role;
}

const has = (ids: readonly unknown[] | undefined, userId: string) => (ids ?? []).some((x) => String(x) === userId);
export const isAssignee = (c: { assigneeIds?: readonly unknown[] }, actor: Actor) => has(c.assigneeIds, actor.id);
export const isConflicted = (c: { conflictedUserIds?: readonly unknown[] }, userId: string) => has(c.conflictedUserIds, userId);
export const isAssigned = (c: { assigneeIds?: readonly unknown[] }, userId: string) => has(c.assigneeIds, userId);
export const isStaff = (actor: Actor) => actor.role === 'investigator' || actor.role === 'admin';

export const reportIdsOf = (c: Case) => c.sources.filter((s) => s.kind === 'report').map((s) => s.id);

export function requireReportOf(c: Case, reportId: string) {
  if (!reportIdsOf(c).includes(reportId)) throw new NotFoundError('No such report on this case.');
}

/** A report or timeline that is gone shows as absent; any other failure is a real error. */
export const unlessMissing = (err: unknown): null => {
  if (err instanceof NotFoundError) return null;
  throw err;
};

export function caseAccess(deps: CaseDeps) {
  const { cases, auth } = deps.stores;

  async function getCase(id: string) {
    const found = await cases.caseById(id);
    if (!found) throw new NotFoundError('No such case.');
    return found;
  }

  /** A case as this person may see it: conflicted investigators and customers get "no such case". */
  async function visibleCase(caseId: string, actor: Actor): Promise<Case> {
    const found = await cases.caseById(caseId);
    if (!found || !isStaff(actor) || isConflicted(found, actor.id)) throw new NotFoundError('No such case.');
    return found;
  }

  /** Changes are made by the case's investigators; admins may step in. */
  async function writableCase(caseId: string, actor: Actor): Promise<Case> {
    const found = await visibleCase(caseId, actor);
    if (!isAssignee(found, actor) && actor.role !== 'admin') {
      throw new ForbiddenError('Only investigators assigned to this case can change it. Assign yourself first.');
    }
    return found;
  }

  /**
   * Acknowledging and triaging: also by any investigator while nobody is assigned, so a new
   * case does not wait for an assignment before its first step (conflicted people never see it).
   */
  async function workableCase(caseId: string, actor: Actor): Promise<Case> {
    const found = await visibleCase(caseId, actor);
    if (!(found.assigneeIds ?? []).length) return found;
    return writableCase(caseId, actor);
  }

  /** Reporter identity, messages and evidence: only for the case's assigned investigators. */
  async function assignedCase(caseId: string, actor: Actor): Promise<Case> {
    const found = await visibleCase(caseId, actor);
    if (!isAssignee(found, actor)) throw new ForbiddenError('Only investigators assigned to this case can see the reporter’s identity, messages and evidence.');
    return found;
  }

  /** An active investigator or admin, or a validation error on `field`. */
  async function investigator(userId: string, field: string) {
    const user = await auth.userById(userId);
    if (!user || user.disabled || !['investigator', 'admin'].includes(user.role)) {
      throw new ValidationError({ [field]: 'Choose an active investigator or admin.' });
    }
    return user;
  }

  return { getCase, visibleCase, writableCase, workableCase, assignedCase, investigator };
}

/** Whether any report on the case names this person (then they may not work on it). */
export async function namedInReports(reports: ReportsPort, c: Case, person: { email: string; name: string }): Promise<boolean> {
  for (const reportId of reportIdsOf(c)) {
    const report = await reports.getReportForStaff(reportId).catch(unlessMissing);
    if (report && namesPerson(stringsIn(report), person)) return true;
  }
  return false;
}

/** Tells the case's reporters (through their follow-up page), skipping reports retention cleared. */
export async function tellReporters(reports: ReportsPort, c: Case, tell: (r: ReportsPort, reportId: string) => Promise<unknown>) {
  for (const reportId of reportIdsOf(c)) if (!c.retention?.deletedReportIds?.includes(reportId)) await tell(reports, reportId);
}
