import crypto from 'node:crypto';
import type { ReviewDecision, ReviewStatus } from '../../domain/partners';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import { normaliseCode, unitId } from '../catalogue/codes';
import type { SaleInput } from './channel';
import { reviewCriteria } from './sale-rules';
import { auditActor, type PartnerActor, type PartnerDeps, partnerScope } from './context';

/**
 * High-risk sale review before delivery: the partner submits a sale that meets the criteria,
 * compliance approves (with conditions or not), rejects or asks for more, with reasons; the
 * partner sees the decision. Every step is audited.
 */

/** A sale planned rather than done: the same facts, with when it is planned instead of when it happened. */
export type ReviewInput = Omit<SaleInput, 'soldAt'> & { plannedAt: Date | null };

export interface DecisionInput {
  decision: ReviewDecision;
  reasons: string;
  conditions: string[];
}

/** A decision can be taken while compliance holds the review; a final one ends it. */
const DECIDABLE: readonly ReviewStatus[] = ['pending'];

export function saleReviews(deps: PartnerDeps) {
  const { clock, audit } = deps;
  const store = deps.stores.partners;
  const scope = partnerScope(deps);

  async function visibleReview(id: string, actor: PartnerActor) {
    const review = await store.reviewById(id);
    if (!review) throw new NotFoundError('No such sale review.');
    if (!(await scope.canSee(actor, review.partnerId))) throw new ForbiddenError('This sale review is not yours.');
    return review;
  }

  return {
    async submitReview(actor: PartnerActor & { kind: 'partner' }, input: ReviewInput) {
      const id = unitId(normaliseCode(input.sku), normaliseCode(input.serial));
      const unit = await deps.stores.catalogue.unitById(id);
      if (!unit) throw new ValidationError({ serial: `No unit ${id} in the catalogue.` });
      const held = await store.channelUnitById(id);
      const visible = (await scope.visibleIds(actor))!;
      if (!held || !visible.includes(held.holderId)) throw new ForbiddenError(`Unit ${id} was not allocated to you.`, 'not_your_units');
      const model = (await deps.stores.catalogue.modelById(unit.modelId))!;
      const criteria = reviewCriteria(model.riskLevel, input.customerType, input.country, await deps.flags.restrictedCountries());
      if (!criteria.length) throw new ValidationError({ customerType: 'This sale meets no review criterion (high-risk model, high-risk end user, restricted country): report it as done.' });
      const now = clock.now();
      const reviewId = `rev_${crypto.randomBytes(10).toString('hex')}`;
      await store.insertReview({
        _id: reviewId,
        partnerId: held.holderId,
        unitId: id,
        customerName: input.customerName,
        customerType: input.customerType,
        country: input.country,
        endUse: input.endUse,
        plannedAt: input.plannedAt,
        criteria,
        status: 'pending',
        submittedByUserId: actor.userId,
        submittedAt: now,
        updatedAt: now,
      });
      await audit.record({ ...auditActor(actor), action: 'sale-review.submitted', subjectKind: 'sale-review', subjectId: reviewId, detail: { unitId: id, criteria } });
      return (await store.reviewById(reviewId))!;
    },

    async decide(id: string, input: DecisionInput, actor: PartnerActor & { kind: 'staff' }) {
      if (input.decision === 'approved-with-conditions' && !input.conditions.length) throw new ValidationError({ conditions: 'Name at least one condition, one per line.' });
      const review = await store.reviewById(id);
      if (!review) throw new NotFoundError('No such sale review.');
      if (!DECIDABLE.includes(review.status as ReviewStatus)) throw new ConflictError(`This review is ${review.status}: it cannot be decided now.`, { decision: `The review is ${review.status}.` });
      const conditions = input.decision === 'approved-with-conditions' ? input.conditions : [];
      const decided = await store.decideReview(id, DECIDABLE, input.decision, { decision: input.decision, reasons: input.reasons, conditions, byUserId: actor.userId, at: clock.now() });
      if (!decided) throw new ConflictError('Someone decided this review meanwhile; read it again.', { decision: 'Decided meanwhile.' });
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'sale-review.decided', subjectKind: 'sale-review', subjectId: id, detail: { decision: input.decision, conditions } });
      return (await store.reviewById(id))!;
    },

    /** The partner's answer when compliance asked for more: the review goes back to compliance. */
    async answer(id: string, text: string, actor: PartnerActor & { kind: 'partner' }) {
      await visibleReview(id, actor);
      if (!(await store.answerReview(id, text, clock.now()))) throw new ConflictError('Compliance has not asked for more on this review.', { text: 'Nothing was asked.' });
      await audit.record({ ...auditActor(actor), action: 'sale-review.answered', subjectKind: 'sale-review', subjectId: id });
      return (await store.reviewById(id))!;
    },

    getReview: visibleReview,

    /** Staff: the queue (open ones first by age); a partner: its own and its children's. */
    async listReviews(actor: PartnerActor, page: Page, open = false) {
      const ids = await scope.visibleIds(actor);
      if (ids === null) return store.reviewsWithStatus(open ? ['pending'] : ['pending', 'more-information', 'approved', 'approved-with-conditions', 'rejected'], page);
      return store.reviewsOf(ids, page);
    },
  };
}
