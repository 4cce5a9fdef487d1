import { ValidationError } from '../../errors';
import { normaliseCode } from '../catalogue/codes';
import type { RiskLevel } from '../../domain/catalogue';
import type { InsightStore } from '../../store/insight';

/** The dashboard's and the exports' filter on product models. */
export interface InsightFilters {
  model?: string;
  risk?: RiskLevel;
}

/** Who is looking: what they may see of cases follows the cases module's access rule. */
export interface Actor {
  userId: string;
}

/** The model ids a filter selects: null means all models. */
export async function modelIdsFor(store: InsightStore, filters: InsightFilters): Promise<string[] | null> {
  if (filters.model) {
    const model = await store.modelRisk(normaliseCode(filters.model));
    if (!model) throw new ValidationError({ model: 'No product model with this SKU.' });
    return !filters.risk || model.riskLevel === filters.risk ? [model._id] : [];
  }
  if (!filters.risk) return null;
  return store.modelIdsOfRisk(filters.risk);
}
