import { webhookEvent } from '../webhooks';
import type { ActionStatus, LeverageActionKind } from '../../domain/cases';
import { ConflictError, NotFoundError, ValidationError } from '../../errors';
import { caseAccess, tellReporters, type Actor } from './access';
import { CASE_PAGE_UNIT_FIELDS, caseChanger, type Case, type CaseDeps } from './context';
import type { CasePorts } from './ports';
import { newId } from './workflow';

/**
 * Leverage actions and remediation. Withholding updates and voiding a warranty act on units
 * through the unit-controls and registrations ports, at once; other actions are recorded
 * with their target and outcome.
 */

export interface ActionInput {
  kind: LeverageActionKind;
  customer?: string;
  channelPartner?: string;
  unitIds?: string[];
  dueBy?: Date | null;
  description?: string;
}

export interface ActionUpdate {
  status: ActionStatus;
  outcome?: string;
}

export interface RemediationInput {
  provided: string;
  toWhom: string;
  reporterFeedback?: string;
}

export function caseLeverage(deps: CaseDeps, ports: CasePorts) {
  const { clock } = deps;
  const { writableCase } = caseAccess(deps);
  const change = caseChanger(deps);

  function checkUnitsOfCase(c: Case, unitIds: string[]) {
    const foreign = unitIds.filter((u) => !c.unitIds.includes(u));
    if (foreign.length) throw new ValidationError({ unitIds: `Not linked to this case: ${foreign.join(', ')}.` });
  }

  async function registrationsOf(unitIds: string[]): Promise<string[]> {
    const units = new Map((await deps.stores.catalogue.unitsByIds(unitIds, CASE_PAGE_UNIT_FIELDS)).map((u) => [u._id, u]));
    return unitIds.map((id) => {
      const registrationId = units.get(id)?.registrationId;
      if (!registrationId) throw new ValidationError({ unitIds: `${id} has no registration whose warranty could be voided.` });
      return registrationId;
    });
  }

  /** The leverage action's effect on units, when it is created (`on`) or stops being open. */
  async function applyEffect(caseId: string, action: { kind: string; target: { unitIds: string[] } }, on: boolean, actor: Actor) {
    const unitIds = action.target.unitIds;
    if (action.kind === 'withhold-updates') {
      await (on ? ports.unitControls.withholdUpdates(unitIds, caseId) : ports.unitControls.liftWithholding(unitIds, caseId));
    } else if (action.kind === 'void-warranty' && on) {
      for (const registrationId of await registrationsOf(unitIds)) await ports.registrations.setWarranty(registrationId, 'void', { userId: actor.id, caseId });
    }
  }

  /** Moves an action on (done, lifted, cancelled) with its outcome; leaving `open` ends its effect. */
  async function updateAction(caseId: string, actionId: string, input: ActionUpdate, actor: Actor) {
    const c = await writableCase(caseId, actor);
    const action = c.actions.find((a) => a._id === actionId);
    if (!action) throw new NotFoundError('No such action on this case.');
    if (action.status !== 'open' && input.status !== action.status) throw new ValidationError({ status: `This action is already ${action.status}.` });
    if (input.status === 'lifted' && action.kind !== 'withhold-updates') throw new ValidationError({ status: 'Only a withholding can be lifted; use done or cancelled.' });
    const now = clock.now();
    const actions = c.actions.map((a) => (a._id === actionId ? { ...a, status: input.status, outcome: input.outcome ?? a.outcome, updatedAt: now } : a));
    // The whole list is rewritten: guarded by the revision it was read at.
    const restored = action.status === 'open' && input.status !== 'open' && action.kind === 'withhold-updates';
    const announce = restored ? [webhookEvent('leverage.updates_restored', actionId, { caseId, actionId, unitIds: action.target?.unitIds ?? [], at: now.toISOString() }, now)] : [];
    await change(c, actor, { rev: c.rev ?? 0 }, { set: { actions }, announce }, {
      action: 'action-updated',
      detail: `${action.kind} ${actionId}: ${action.status} → ${input.status}`,
      audit: { actionId, kind: action.kind, from: action.status, to: input.status, outcome: input.outcome ?? '' },
    });
    if (action.status === 'open' && input.status !== 'open') {
      await applyEffect(caseId, { kind: action.kind, target: { unitIds: action.target?.unitIds ?? [] } }, false, actor);
    }
  }

  return {
    /** Records a leverage action; withholding and voiding take effect on the units at once. */
    async addAction(caseId: string, input: ActionInput, actor: Actor) {
      const c = await writableCase(caseId, actor);
      if (c.status === 'closed') throw new ConflictError('Reopen the case to record a new action.', { kind: 'The case is closed.' });
      const unitIds = [...new Set(input.unitIds ?? [])];
      checkUnitsOfCase(c, unitIds);
      if ((input.kind === 'withhold-updates' || input.kind === 'void-warranty') && unitIds.length === 0) {
        throw new ValidationError({ unitIds: 'Choose the units (serials) this action applies to.' });
      }
      const now = clock.now();
      const action = {
        _id: newId('act'),
        kind: input.kind,
        target: { customer: input.customer ?? '', channelPartner: input.channelPartner ?? '', unitIds },
        status: 'open' as const,
        dueBy: input.dueBy ?? null,
        description: input.description ?? '',
        outcome: '',
        createdAt: now,
        createdByUserId: actor.id,
        updatedAt: now,
      };
      if (input.kind === 'void-warranty') await registrationsOf(unitIds); // refuse before recording
      if (input.kind === 'notify-channel-partner') await ports.partners.checkPartnerNamed(input.channelPartner ?? '');
      const added = { caseId, actionId: action._id, kind: action.kind, unitIds, at: now.toISOString() };
      const announce = [
        webhookEvent('leverage.action_added', action._id, added, now),
        ...(action.kind === 'withhold-updates' ? [webhookEvent('leverage.updates_withheld', action._id, { caseId, actionId: action._id, unitIds, at: added.at }, now)] : []),
      ];
      await change(c, actor, { open: true }, { append: { actions: action }, announce }, {
        action: 'action-added',
        detail: `${action.kind} ${action._id}${unitIds.length ? ` on ${unitIds.join(', ')}` : ''}`,
        audit: { actionId: action._id, kind: action.kind, unitIds },
      });
      await applyEffect(caseId, action, true, actor);
      if (input.kind === 'notify-channel-partner') {
        // The partner answers in its portal; the answer comes back as this action's outcome.
        await ports.partners.requestFromCase({ caseId, actionId: action._id, channelPartner: action.target.channelPartner, questions: action.description, unitIds, dueBy: action.dueBy, byUserId: actor.id });
      }
      return action._id;
    },

    updateAction,

    /** Ends an open action as the case closes: a withholding is lifted, anything else done. */
    async endAction(caseId: string, actionId: string, outcome: string, actor: Actor) {
      const c = await writableCase(caseId, actor);
      const action = c.actions.find((a) => a._id === actionId);
      if (!action) throw new NotFoundError('No such action on this case.');
      await updateAction(caseId, actionId, { status: action.kind === 'withhold-updates' ? 'lifted' : 'done', outcome }, actor);
    },

    async addRemediation(caseId: string, input: RemediationInput, actor: Actor) {
      const c = await writableCase(caseId, actor);
      const now = clock.now();
      const id = newId('rem');
      const feedback = input.reporterFeedback ? { 'deadlines.feedbackGivenAt': now } : {};
      await change(
        c,
        actor,
        {},
        { append: { remediation: { _id: id, at: now, byUserId: actor.id, provided: input.provided, toWhom: input.toWhom, reporterFeedback: input.reporterFeedback ?? '' } }, set: feedback },
        { action: 'remediation-recorded', detail: `${input.provided.slice(0, 80)} → ${input.toWhom.slice(0, 80)}`, audit: { remediationId: id, feedbackGiven: Boolean(input.reporterFeedback) } },
      );
      const feedbackText = input.reporterFeedback;
      if (feedbackText) await tellReporters(ports.reports, c, (r, reportId) => r.setFeedback(reportId, feedbackText, actor.id));
      return id;
    },
  };
}
