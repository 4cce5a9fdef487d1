import { webhookEvent } from '../webhooks';
import crypto from 'node:crypto';
import type { CaseStatus, ClosureReason, HarmCategory, Involvement } from '../../domain/cases';
import { ConflictError, NotFoundError, ValidationError } from '../../errors';
import { caseAccess, isAssigned, isConflicted, namedInReports, tellReporters, type Actor } from './access';
import { caseChanger, type CaseDeps } from './context';
import type { ReportsPort } from './ports';
import { addMonths, canTransition, DAY, FEEDBACK_WITHIN_MONTHS, priorityOf, reporterStatusOf, REVIEW_WITHIN_DAYS, TRANSITIONS } from './rules';

/**
 * Triage, assignment, conflicts of interest, status transitions, notes and legal holds. Each
 * is a read, a check and one guarded update whose guard is what was checked, so a change
 * raced from two app instances is made once and the other caller gets a 409.
 */

export interface TriageInput {
  harmCategories: HarmCategory[];
  scale: number;
  scope: number;
  irremediable: number;
  likelihood: number;
  involvement: Involvement;
  involvementRationale: string;
}

export interface TransitionInput {
  to: CaseStatus;
  reason: string;
  closureReason?: ClosureReason;
  /** Closing: what becomes of each open leverage action (by id), chosen on purpose. */
  openActions?: Record<string, 'end' | 'keep'>;
}

/** Ends a leverage action (its effect on units too): the leverage part of the module does it. */
export type EndAction = (caseId: string, actionId: string, outcome: string, actor: Actor) => Promise<void>;

export const newId = (prefix: string) => `${prefix}_${crypto.randomBytes(8).toString('hex')}`;

export function caseWorkflow(deps: CaseDeps, reports: ReportsPort, endAction: EndAction) {
  const { clock } = deps;
  const store = deps.stores.cases;
  const { getCase, visibleCase, writableCase, workableCase, investigator } = caseAccess(deps);

  /**
   * Closing with open leverage (a withholding still in force): each open action must be
   * ended or kept on purpose, or the case stays open and the form names every undecided one.
   */
  async function settleOpenActions(c: Awaited<ReturnType<typeof getCase>>, input: TransitionInput, actor: Actor) {
    const open = c.actions.filter((a) => a.status === 'open');
    const undecided = open.filter((a) => !input.openActions?.[a._id]);
    if (undecided.length) {
      throw new ValidationError(
        Object.fromEntries(undecided.map((a) => [`openActions.${a._id}`, `"${a.kind.replace(/-/g, ' ')}" is still open: choose to end it or to keep it after closing.`])),
        `This case has ${open.length} open action${open.length === 1 ? '' : 's'}: decide for each whether it ends with the case or stays in force.`,
      );
    }
    for (const a of open) if (input.openActions![a._id] === 'end') await endAction(c._id, a._id, `Ended on closing the case: ${input.reason}`, actor);
    return Object.fromEntries(open.map((a) => [a._id, input.openActions![a._id]!]));
  }
  const change = caseChanger(deps);

  return {
    async triage(caseId: string, input: TriageInput, actor: Actor) {
      const c = await workableCase(caseId, actor);
      if (c.status === 'closed') throw new ConflictError('A closed case cannot be triaged. Reopen it first.', { status: 'The case is closed.' });
      const severity = { scale: input.scale, scope: input.scope, irremediable: input.irremediable };
      const { priority, level } = priorityOf(severity, input.likelihood);
      const advance = c.status === 'new';
      await change(
        c,
        actor,
        { rev: c.rev ?? 0 },
        {
          set: {
            harmCategories: input.harmCategories,
            triage: { severity, likelihood: input.likelihood, involvement: input.involvement, involvementRationale: input.involvementRationale, at: clock.now(), byUserId: actor.id },
            priority,
            priorityLevel: level,
            ...(advance ? { status: 'triaged' } : {}),
          },
        },
        {
          action: 'triaged',
          detail: `priority ${level} (severity ${severity.scale}/${severity.scope}/${severity.irremediable}, likelihood ${input.likelihood}), ${input.involvement}${advance ? '; new → triaged' : ''}`,
          audit: { priority, level, harmCategories: input.harmCategories, involvement: input.involvement },
        },
      );
      return getCase(caseId);
    },

    async transition(caseId: string, input: TransitionInput, actor: Actor) {
      const c = await writableCase(caseId, actor);
      const from = c.status as CaseStatus;
      // Someone (another tab, another instance) made this very move first: a conflict with the
      // case as it now is, as when both read it before either wrote (the guarded write's 409).
      if (from === input.to) throw new ConflictError(`The case is already ${input.to.replace(/-/g, ' ')}: someone changed it meanwhile. Reload it to see.`);
      if (!canTransition(from, input.to)) {
        throw new ValidationError({ to: `A ${from} case cannot move to ${input.to}; it can move to ${TRANSITIONS[from].join(' or ')}.` });
      }
      if (input.to === 'triaged' && !c.triage) throw new ValidationError({ to: 'Record the triage (severity, likelihood, involvement) first.' });
      if (input.to === 'closed' && !input.closureReason) throw new ValidationError({ closureReason: 'Choose why the case is closed.' });
      const closing = input.to === 'closed';
      const openActions = closing ? await settleOpenActions(c, input, actor) : {};
      const kept = Object.keys(openActions).filter((id) => openActions[id] === 'keep');
      const now = clock.now();
      const reopening = from === 'closed';
      const reviewBy = c.deadlines?.reviewBy && !closing ? { 'deadlines.reviewBy': new Date(now.getTime() + REVIEW_WITHIN_DAYS * DAY) } : {};
      // The webhook events go in the same update as the change (delivered even if this process dies next).
      const at = now.toISOString();
      const announce = [
        webhookEvent('case.status_changed', `${caseId}|${from}|${input.to}|${at}`, { caseId, from, to: input.to, at }, now),
        ...(closing ? [webhookEvent('case.closed', `${caseId}|${at}`, { caseId, closureReason: input.closureReason ?? null, closedAt: at }, now)] : []),
      ];
      await change(
        c,
        actor,
        { status: from },
        { set: { status: input.to, closureReason: closing ? input.closureReason : null, closedAt: closing ? now : null, ...reviewBy }, announce },
        {
          action: reopening ? 'reopened' : 'status-changed',
          detail: `${from} → ${input.to}${closing ? ` (${input.closureReason})` : ''}: ${input.reason}${kept.length ? `; kept open: ${kept.join(', ')}` : ''}`,
          audit: { from, to: input.to, reason: input.reason, closureReason: input.closureReason ?? null, ...(closing && Object.keys(openActions).length ? { openActions } : {}) },
        },
      );
      if (closing) await store.releaseKeys(caseId);
      const shown = reporterStatusOf(input.to);
      if (shown) await tellReporters(reports, c, (r, reportId) => r.setStatus(reportId, shown, actor.id));
      return getCase(caseId);
    },

    /** Report-sourced cases: receipt acknowledged; feedback is then due 3 months later. */
    async acknowledge(caseId: string, actor: Actor) {
      const c = await workableCase(caseId, actor);
      if (!c.deadlines?.acknowledgeBy) throw new ValidationError({ acknowledge: 'Only cases with a report have a receipt to acknowledge.' });
      if (c.deadlines.acknowledgedAt) throw new ConflictError('The report was already acknowledged.', { acknowledge: 'Already acknowledged.' });
      const now = clock.now();
      await change(
        c,
        actor,
        { notAcknowledged: true },
        { set: { 'deadlines.acknowledgedAt': now, 'deadlines.feedbackBy': addMonths(now, FEEDBACK_WITHIN_MONTHS) } },
        { action: 'acknowledged', detail: 'receipt acknowledged to the reporter' },
      );
      await tellReporters(reports, c, (r, reportId) => r.setStatus(reportId, 'acknowledged', actor.id));
      return getCase(caseId);
    },

    async assign(caseId: string, userId: string, actor: Actor) {
      const c = await visibleCase(caseId, actor);
      const user = await investigator(userId, 'userId');
      if (isConflicted(c, userId)) throw new ValidationError({ userId: `${user.name} has a conflict of interest in this case and cannot be assigned.` });
      if (await namedInReports(reports, c, user)) throw new ValidationError({ userId: `${user.name} is named in a report on this case and cannot be assigned.` });
      if (isAssigned(c, userId)) throw new ConflictError(`${user.name} is already assigned.`, { userId: 'Already assigned.' });
      await change(c, actor, { notAssigned: userId, notConflicted: userId }, { addToSets: { assigneeIds: [userId] } }, { action: 'assigned', detail: user.name, audit: { userId } });
      return getCase(caseId);
    },

    async unassign(caseId: string, userId: string, actor: Actor) {
      const c = await writableCase(caseId, actor);
      if (!isAssigned(c, userId)) throw new NotFoundError('That person is not assigned to this case.');
      await change(c, actor, { assigned: userId }, { removeFromSets: { assigneeIds: userId } }, { action: 'unassigned', detail: userId, audit: { userId } });
      return getCase(caseId);
    },

    /** Marks an investigator conflicted: unassigned, and the case disappears for them. */
    async declareConflict(caseId: string, userId: string, reason: string, actor: Actor) {
      const c = await writableCase(caseId, actor);
      const user = await investigator(userId, 'conflictUserId');
      if (isConflicted(c, userId)) throw new ConflictError(`${user.name} is already marked conflicted.`, { conflictUserId: 'Already marked conflicted.' });
      await change(
        c,
        actor,
        { notConflicted: userId },
        {
          addToSets: { conflictedUserIds: [userId] },
          removeFromSets: { assigneeIds: userId },
          append: { conflicts: { userId, reason, at: clock.now(), byUserId: actor.id } },
        },
        { action: 'conflict-declared', detail: `${user.name}: ${reason}`, audit: { userId, reason } },
      );
      return getCase(caseId);
    },

    /** Notes only append, so concurrent notes all land. */
    async addNote(caseId: string, text: string, actor: Actor) {
      const c = await writableCase(caseId, actor);
      const id = newId('note');
      await change(c, actor, {}, { append: { notes: { _id: id, at: clock.now(), byUserId: actor.id, text } } }, { action: 'note-added', detail: id, audit: { noteId: id } });
      return id;
    },

    async setLegalHold(caseId: string, input: { on: boolean; reason: string }, actor: Actor) {
      const c = await writableCase(caseId, actor);
      if (Boolean(c.legalHold?.on) === input.on) throw new ConflictError(input.on ? 'The case is already on legal hold.' : 'The case is not on legal hold.', { holdReason: 'Nothing to change.' });
      await change(
        c,
        actor,
        { legalHold: !input.on },
        { set: { legalHold: { on: input.on, reason: input.reason, at: clock.now(), byUserId: actor.id } } },
        { action: input.on ? 'legal-hold-placed' : 'legal-hold-released', detail: input.reason, audit: { reason: input.reason } },
      );
      return getCase(caseId);
    },
  };
}
