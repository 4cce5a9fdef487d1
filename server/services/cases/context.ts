import type { Clock } from '../../clock';
import type { Config } from '../../config';
import { ConflictError } from '../../errors';
import type { Stores } from '../../store';
import type { CaseChange, CaseGuard, StoredCase } from '../../store/cases';
import type { AuditService } from '../audit';
import type { Actor } from './access';

/** What every part of the cases module is built from. */
export interface CaseDeps {
  clock: Clock;
  config: Pick<Config, 'retentionMonths' | 'identity'>;
  stores: Pick<Stores, 'cases' | 'auth' | 'flags' | 'catalogue' | 'identityRequests' | 'reports'>;
  audit: AuditService;
}

export type Case = StoredCase;

/** What a case page and its leverage actions read of a unit. */
export const CASE_PAGE_UNIT_FIELDS = { serial: 1, modelId: 1, controls: 1, current: 1, registrationId: 1 } as const;

/** An audit entry for a case (or another subject) by this person, or by the system. */
export function recorder(audit: AuditService) {
  return (actor: Actor | null, action: string, subjectId: string, detail: Record<string, unknown> = {}, subjectKind = 'case') =>
    audit.record({ actorKind: actor ? 'user' : 'system', actorId: actor?.id ?? null, action, subjectKind, subjectId, detail });
}

/**
 * One change of a case: a single guarded update (what the caller checked must still hold),
 * a history line and an audit entry. A change that lost a race gets a 409.
 */
export function caseChanger(deps: CaseDeps) {
  const record = recorder(deps.audit);
  return async function change(
    c: Case,
    actor: Actor | null,
    guard: CaseGuard,
    update: CaseChange,
    what: { action: string; detail: string; audit?: Record<string, unknown> },
  ) {
    const line = { at: deps.clock.now(), byUserId: actor?.id ?? null, action: what.action, detail: what.detail };
    if (!(await deps.stores.cases.changeCase(c._id, guard, update, line))) {
      throw new ConflictError('The case changed while you were working on it. Reload the page and try again.');
    }
    await record(actor, `case.${what.action}`, c._id, { detail: what.detail, ...what.audit });
  };
}

export type CaseChanger = ReturnType<typeof caseChanger>;
