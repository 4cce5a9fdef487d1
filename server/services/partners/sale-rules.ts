import type { ReviewCriterion } from '../../domain/partners';
import { HIGH_RISK_END_USER_TYPES } from '../../domain/registrations';
import type { LeanPartner } from '../../store/partners';
import type { FlagHit } from '../flags';

/** The rules one sale is judged by, pure: used when it is reviewed before delivery and when its report is folded. */

export interface SaleFacts {
  customerName: string;
  country: string;
  soldAt: Date;
}

/** Why a sale must be reviewed before delivery: empty when it need not be. */
export function reviewCriteria(modelRiskLevel: string, customerType: string, country: string, restricted: ReadonlySet<string>): ReviewCriterion[] {
  const criteria: ReviewCriterion[] = [];
  if (modelRiskLevel === 'high') criteria.push('high-risk-model');
  if ((HIGH_RISK_END_USER_TYPES as readonly string[]).includes(customerType)) criteria.push('high-risk-end-user');
  if (restricted.has(country)) criteria.push('restricted-country');
  return criteria;
}

/** The diversion rules that look at one sale by its seller (pure). */
export const saleRules = {
  outsideTerritory(partner: Pick<LeanPartner, 'territories'>, country: string): FlagHit | null {
    if (!partner.territories.length || partner.territories.includes(country)) return null;
    return { rule: 'sale-outside-territory', evidence: { country, territories: [...partner.territories] } };
  },

  unauthorisedModel(partner: Pick<LeanPartner, 'authorisedModels' | 'authorisedRiskLevels'>, model: { _id: string; riskLevel: string }): FlagHit | null {
    const byModel = partner.authorisedModels.length > 0 && !partner.authorisedModels.includes(model._id);
    const byLevel = partner.authorisedRiskLevels.length > 0 && !partner.authorisedRiskLevels.includes(model.riskLevel as never);
    if (!byModel && !byLevel) return null;
    return { rule: 'unauthorised-model-sale', evidence: { modelId: model._id, riskLevel: model.riskLevel, authorisedModels: [...partner.authorisedModels], authorisedRiskLevels: [...partner.authorisedRiskLevels] } };
  },
};

/** A sale's idempotency key: the same unit, day and end customer is the same sale. */
export const saleKey = (id: string, sale: Pick<SaleFacts, 'customerName' | 'soldAt'>) => `${id}|${sale.soldAt.toISOString().slice(0, 10)}|${sale.customerName.trim().toLowerCase().replace(/\s+/g, ' ')}`;

