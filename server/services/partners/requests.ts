import crypto from 'node:crypto';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import { auditActor, type PartnerActor, type PartnerDeps, partnerScope } from './context';
import { nameKey } from '../../domain/partners';

/**
 * Requests from cases: a case's "notify channel partner" action becomes a request to the
 * partner, with the investigator's questions and a deadline. The partner answers in its
 * portal; the answer becomes the action's outcome on the case (one guarded write of the
 * case, through the cases store).
 */

/** How often an answer is written again when the case changed between read and write. */
const CASE_WRITE_ATTEMPTS = 5;
const DAY_MS = 86_400_000;

export type RequestFigures = { overdueRequests: number; medianAnswerDays: number | null };

export function median(values: readonly number[]): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function partnerRequests(deps: PartnerDeps) {
  const { clock, audit } = deps;
  const store = deps.stores.partners;
  const scope = partnerScope(deps);

  /** The partner a case names, by id, name or a spelling merged into it. */
  async function partnerNamed(named: string) {
    if (!named.trim()) throw new ValidationError({ channelPartner: 'Name the channel partner to notify.' });
    const key = nameKey(named);
    const partner = (await store.allPartners()).find((p) => p._id === named.trim() || p.nameKey === key || p.aliases.some((a) => nameKey(a) === key));
    if (!partner) throw new ValidationError({ channelPartner: `No channel partner named "${named}": choose one from the partners list.` });
    return partner;
  }

  async function visibleRequest(id: string, actor: PartnerActor) {
    const request = await store.requestById(id);
    if (!request) throw new NotFoundError('No such request.');
    if (!(await scope.canSee(actor, request.partnerId))) throw new ForbiddenError('This request is not yours.');
    return request;
  }

  /** The answer as the action's outcome; the action is done. Guarded by the case's revision. */
  async function putAnswerOnCase(request: { caseId: string; actionId: string }, partnerName: string, answer: string, at: Date) {
    for (let attempt = 0; attempt < CASE_WRITE_ATTEMPTS; attempt++) {
      const c = await deps.stores.cases.caseById(request.caseId);
      if (!c) return;
      const outcome = `${partnerName} answered on ${at.toISOString().slice(0, 10)}: ${answer}`;
      const actions = c.actions.map((a) => (a._id === request.actionId ? { ...a, status: a.status === 'open' ? 'done' : a.status, outcome, updatedAt: at } : a));
      const line = { at, byUserId: null, action: 'partner-answered', detail: `${partnerName} answered the request of action ${request.actionId}.` };
      if (await deps.stores.cases.changeCase(c._id, { rev: c.rev ?? 0 }, { set: { actions } }, line)) return;
    }
    throw new ConflictError('The case kept changing; the answer is saved with the request but not yet on the case. Try again.');
  }

  return {
    /** For cases: refuses an action naming no known partner, before it is recorded. */
    checkPartnerNamed: async (named: string) => (await partnerNamed(named))._id,

    /** For cases: the action's request reaches the partner's portal. */
    async requestFromCase(input: { caseId: string; actionId: string; channelPartner: string; questions: string; unitIds: string[]; dueBy: Date | null; byUserId: string }) {
      const partner = await partnerNamed(input.channelPartner);
      const id = `prq_${crypto.randomBytes(10).toString('hex')}`;
      await store.insertRequest({ _id: id, partnerId: partner._id, caseId: input.caseId, actionId: input.actionId, questions: input.questions || 'Please tell us what you know about these units and their end users.', unitIds: input.unitIds, dueBy: input.dueBy, status: 'open', createdAt: clock.now() });
      await audit.record({ actorKind: 'user', actorId: input.byUserId, action: 'partner-request.sent', subjectKind: 'partner-request', subjectId: id, detail: { partnerId: partner._id, caseId: input.caseId } });
      return id;
    },

    async answerRequest(id: string, answer: string, actor: PartnerActor & { kind: 'partner' }) {
      const request = await visibleRequest(id, actor);
      const at = clock.now();
      if (!(await store.answerRequest(id, answer, at, actor.userId))) throw new ConflictError('This request was answered already.', { answer: 'Answered already.' });
      const partner = await store.partnerById(request.partnerId);
      await putAnswerOnCase(request, partner?.name ?? request.partnerId, answer, at);
      await audit.record({ ...auditActor(actor), action: 'partner-request.answered', subjectKind: 'partner-request', subjectId: id, detail: { caseId: request.caseId } });
      return (await store.requestById(id))!;
    },

    getRequest: visibleRequest,

    async listRequests(actor: PartnerActor & { kind: 'partner' }, page: Page) {
      return store.requestsOf((await scope.visibleIds(actor))!, page);
    },

    /**
     * The scorecards' request figures per partner: open past their deadline, and the median
     * days to answer. `null`: every partner with a request (the ranked table, which reads them
     * beside the partners rather than after).
     */
    async requestFigures(partnerIds: readonly string[] | null): Promise<Map<string, RequestFigures>> {
      const now = clock.now().getTime();
      const all = await store.requestTimesOf(partnerIds);
      return new Map(
        (partnerIds ?? [...new Set(all.map((r) => r.partnerId))]).map((id) => {
          const requests = all.filter((r) => r.partnerId === id);
          return [
            id,
            {
              overdueRequests: requests.filter((r) => r.status === 'open' && r.dueBy && r.dueBy.getTime() < now).length,
              medianAnswerDays: median(requests.filter((r) => r.answeredAt).map((r) => (r.answeredAt!.getTime() - r.createdAt.getTime()) / DAY_MS)),
            },
          ];
        }),
      );
    },
  };
}
