import type { MaturityLevel, QuestionnaireStatus, RiskTier } from '../../domain/partners';

/**
 * A partner's risk tier, computed from what is known of it and shown with every input, so an
 * investigator can see why a partner is high risk. Points add up; the tier is read off them.
 */

export interface RiskFactor {
  factor: string;
  value: string;
  points: number;
}

export interface RiskInputs {
  territories: readonly string[];
  restrictedCountries: ReadonlySet<string>;
  /** The risk levels of the models the partner may sell (every level when unrestricted). */
  modelRiskLevels: readonly string[];
  maturity: MaturityLevel;
  /** The partner's due-diligence questionnaire: its status and how many answers were "no" or "partly". */
  questionnaire: { status: QuestionnaireStatus; no: number; partly: number } | null;
  nextReviewAt: Date | null;
  allocated: number;
  flags: number;
  cases: number;
  now: Date;
}

export const TIER_AT = { high: 6, medium: 3 } as const;

const MATURITY_POINTS: Record<MaturityLevel, number> = { none: 2, basic: 1, established: 0, leading: 0 };

export function riskTier(inputs: RiskInputs): { tier: RiskTier; score: number; factors: RiskFactor[] } {
  const restricted = inputs.territories.filter((c) => inputs.restrictedCountries.has(c));
  const perThousand = inputs.allocated ? (inputs.flags * 1000) / inputs.allocated : inputs.flags ? Infinity : 0;
  const overdue = !inputs.nextReviewAt || inputs.nextReviewAt.getTime() < inputs.now.getTime();
  const factors: RiskFactor[] = [
    { factor: 'Territories on the restricted list', value: restricted.length ? restricted.join(', ') : 'none', points: Math.min(restricted.length * 3, 6) },
    { factor: 'Highest risk level of the models it may sell', value: inputs.modelRiskLevels.includes('high') ? 'high' : inputs.modelRiskLevels.includes('elevated') ? 'elevated' : 'low', points: inputs.modelRiskLevels.includes('high') ? 2 : inputs.modelRiskLevels.includes('elevated') ? 1 : 0 },
    { factor: 'Due-diligence maturity', value: inputs.maturity, points: MATURITY_POINTS[inputs.maturity] },
    questionnaireFactor(inputs.questionnaire),
    { factor: 'Due-diligence review', value: inputs.nextReviewAt ? `${overdue ? 'overdue since' : 'next by'} ${inputs.nextReviewAt.toISOString().slice(0, 10)}` : 'never scheduled', points: overdue ? 2 : 0 },
    { factor: 'Red flags per 1,000 units allocated', value: Number.isFinite(perThousand) ? perThousand.toFixed(1) : `${inputs.flags} with no units allocated`, points: perThousand >= 10 ? 2 : inputs.flags > 0 ? 1 : 0 },
    { factor: 'Cases linked to its sales', value: String(inputs.cases), points: inputs.cases >= 5 ? 2 : inputs.cases > 0 ? 1 : 0 },
  ];
  const score = factors.reduce((sum, f) => sum + f.points, 0);
  return { tier: score >= TIER_AT.high ? 'high' : score >= TIER_AT.medium ? 'medium' : 'low', score, factors };
}

/**
 * Until compliance accepts a questionnaire, what it says is not known: one point. Once
 * accepted, each "no" is a point and two "partly" make one, up to two.
 */
function questionnaireFactor(q: RiskInputs['questionnaire']): RiskFactor {
  const factor = 'Due-diligence answers';
  if (!q) return { factor, value: 'not answered', points: 1 };
  if (q.status !== 'accepted') return { factor, value: q.status === 'submitted' ? 'answered, not yet reviewed' : 'sent back', points: 1 };
  return { factor, value: `accepted: ${q.no} "no", ${q.partly} "partly"`, points: Math.min(2, q.no + Math.floor(q.partly / 2)) };
}
