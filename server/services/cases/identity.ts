import { ConflictError, ForbiddenError, NotFoundError } from '../../errors';
import type { StoredIdentityRequest } from '../../store/identity-requests';
import { caseAccess, isConflicted, reportIdsOf, unlessMissing, type Actor } from './access';
import { recorder, type Case, type CaseDeps } from './context';
import type { ReportsPort } from './ports';
import { newId } from './workflow';

/**
 * Reading a reporter's identity (issue 20, finding 11). Being assigned to a case is not
 * enough: an assigned investigator asks with a reason, someone else with the authority
 * (an admin, or a custodian named in IDENTITY_CUSTODIAN_EMAILS) approves, and the grant lets
 * that investigator see the identity on that case for IDENTITY_GRANT_HOURS. Every step is in
 * the audit log: requested, approved, refused, viewed, expired.
 */

/** Contact fields a staff report may carry; shown only through a live grant. */
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

export const GRANT_REQUIRED =
  'Seeing the reporter’s identity needs an approved request: give your reason on the case page; an admin (or custodian) other than you approves it.';

/** Where a person stands on seeing a case's reporter identity. */
export type IdentityAccess =
  | { state: 'none' }
  | { state: 'pending'; request: StoredIdentityRequest }
  | { state: 'granted'; request: StoredIdentityRequest; expiresAt: Date };

export function caseIdentity(deps: CaseDeps, reports: ReportsPort) {
  const { clock, config } = deps;
  const store = deps.stores.identityRequests;
  const { visibleCase, assignedCase } = caseAccess(deps);
  const record = recorder(deps.audit);

  /** Admins, and custodians by their account's e-mail. */
  async function mayApprove(actor: Actor) {
    if (actor.role === 'admin') return true;
    const user = await deps.stores.auth.userById(actor.id);
    return Boolean(user && !user.disabled && config.identity.custodianEmails.includes(user.email.toLowerCase()));
  }

  async function requireApprover(actor: Actor) {
    if (!(await mayApprove(actor))) throw new ForbiddenError('Only admins and identity custodians decide requests to see a reporter’s identity.');
  }

  /**
   * This person's standing on the case. A grant found past its time is marked expired here:
   * the guarded write lets exactly one reader (of any instance) record the expiry.
   */
  async function accessOf(c: Case, actor: Actor): Promise<IdentityAccess> {
    const now = clock.now();
    let pending: StoredIdentityRequest | null = null;
    for (const request of await store.requestsOf(c._id, actor.id)) {
      if (request.status === 'approved' && request.expiresAt && request.expiresAt > now) return { state: 'granted', request, expiresAt: request.expiresAt };
      if (request.status === 'approved' && (await store.expire(request._id, now))) {
        await record(null, 'identity.expired', c._id, { requestId: request._id, userId: actor.id, expiresAt: request.expiresAt });
      }
      if (request.status === 'pending') pending ??= request;
    }
    return pending ? { state: 'pending', request: pending } : { state: 'none' };
  }

  /** The reporters' contact details of a case; logged as a view. */
  async function contactsOf(c: Case, actor: Actor) {
    const contacts = [];
    for (const reportId of reportIdsOf(c)) {
      if (c.retention?.deletedReportIds?.includes(reportId)) continue;
      const report = await reports.getReportForStaff(reportId).catch(unlessMissing);
      contacts.push({ reportId, contact: report ? identityOf(report) : null });
    }
    await record(actor, 'identity.viewed', c._id, { reportIds: contacts.map((x) => x.reportId) });
    return contacts;
  }

  /** A request of this case, for a decision on it. */
  async function requestOf(requestId: string, caseId?: string) {
    const request = await store.requestById(requestId);
    if (!request || (caseId && request.caseId !== caseId)) throw new NotFoundError('No such identity request.');
    return request;
  }

  return {
    /** Where `actor` stands on seeing this case's reporter identity (the case page's section). */
    identityAccess: accessOf,

    /**
     * The case's reporter identity while `actor` holds a live grant for it (the case page
     * shows it then); null otherwise. Each time it is returned, the view is logged.
     */
    async identityIfGranted(c: Case, actor: Actor) {
      const access = await accessOf(c, actor);
      return access.state === 'granted' ? { ...access, contacts: await contactsOf(c, actor) } : null;
    },

    /** The reporters' contact details: assigned investigators with a live grant; every view is logged. */
    async reporterContact(caseId: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      const access = await accessOf(c, actor);
      if (access.state !== 'granted') throw new ForbiddenError(GRANT_REQUIRED, 'identity_grant_required');
      return { case: c, contacts: await contactsOf(c, actor), expiresAt: access.expiresAt };
    },

    /** An assigned investigator asks to see the identity, giving the reason. */
    async requestIdentity(caseId: string, reason: string, actor: Actor) {
      const c = await assignedCase(caseId, actor);
      const access = await accessOf(c, actor);
      if (access.state === 'pending') throw new ConflictError('Your request is already waiting for a decision.', { reason: 'Already requested.' });
      if (access.state === 'granted') throw new ConflictError('You can already see the reporter’s identity on this case.', { reason: 'Already granted.' });
      const id = newId('idr');
      await store.insertRequest({ _id: id, caseId: c._id, requesterId: actor.id, reason, requestedAt: clock.now() });
      await record(actor, 'identity.requested', c._id, { requestId: id, reason });
      return (await store.requestById(id))!;
    },

    /** A case's requests, for whoever may see the case. */
    async identityRequestsOfCase(caseId: string, actor: Actor) {
      const c = await visibleCase(caseId, actor);
      return store.requestsOfCase(c._id);
    },

    /**
     * The approver's queue: pending requests, without their own and without those on cases
     * hidden from them (a conflicted approver does not learn of the case from here either).
     */
    async pendingIdentityRequests(actor: Actor) {
      await requireApprover(actor);
      const pending = (await store.pendingRequests()).filter((r) => String(r.requesterId) !== actor.id);
      const cases = new Map<string, Case>((await deps.stores.cases.casesByIds([...new Set(pending.map((r) => r.caseId))])).map((c) => [c._id, c]));
      const shown = pending.filter((r) => {
        const c = cases.get(r.caseId);
        return c && !isConflicted(c, actor.id);
      });
      const people = await deps.stores.auth.people(shown.map((r) => String(r.requesterId)));
      const names = new Map(people.map((p) => [String(p._id), p.name]));
      return shown.map((r) => ({ ...r, caseTitle: cases.get(r.caseId)!.title, requesterName: names.get(String(r.requesterId)) ?? '(unknown)' }));
    },

    /** One pending request as its approver sees it before deciding. */
    async identityRequestForDecision(requestId: string, actor: Actor) {
      await requireApprover(actor);
      const request = await requestOf(requestId);
      const c = await visibleCase(request.caseId, actor);
      const [requester] = await deps.stores.auth.people([String(request.requesterId)]);
      return { request, case: c, requesterName: requester?.name ?? '(unknown)', own: String(request.requesterId) === actor.id };
    },

    /**
     * Approves (a grant for IDENTITY_GRANT_HOURS from now) or refuses a pending request. Never
     * the requester themself; never someone the case is hidden from.
     */
    async decideIdentityRequest(requestId: string, input: { decision: 'approve' | 'refuse'; reason?: string; caseId?: string }, actor: Actor) {
      await requireApprover(actor);
      const request = await requestOf(requestId, input.caseId);
      const c = await visibleCase(request.caseId, actor);
      if (String(request.requesterId) === actor.id) throw new ForbiddenError('You cannot decide your own request: another admin or custodian must.', 'own_request');
      if (request.status !== 'pending') throw new ConflictError(`This request was already ${request.status}.`);
      const now = clock.now();
      const approve = input.decision === 'approve';
      const expiresAt = approve ? new Date(now.getTime() + config.identity.grantHours * 3_600_000) : null;
      const decided = await store.decide(requestId, { status: approve ? 'approved' : 'refused', decidedByUserId: actor.id, decidedAt: now, decisionReason: input.reason ?? '', expiresAt });
      if (!decided) throw new ConflictError('This request was decided meanwhile.');
      await record(actor, approve ? 'identity.approved' : 'identity.refused', c._id, {
        requestId,
        userId: String(request.requesterId),
        reason: input.reason ?? '',
        ...(expiresAt ? { expiresAt } : {}),
      });
      return decided;
    },
  };
}
