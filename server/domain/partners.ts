/** The partners module's vocabulary: plain values shared by the schemas, services, routes and views. */

export const PARTNER_TYPES = ['distributor', 'reseller', 'integrator', 'service-partner'] as const;
export type PartnerType = (typeof PARTNER_TYPES)[number];

/** Contract clauses the BSR/HPE sales-channel case asks a partner contract to hold. */
export const CLAUSE_KINDS = ['end-use-restriction', 'no-re-export', 'audit-rights', 'duty-to-notify-misuse'] as const;
export type ClauseKind = (typeof CLAUSE_KINDS)[number];

export const MATURITY_LEVELS = ['none', 'basic', 'established', 'leading'] as const;
export type MaturityLevel = (typeof MATURITY_LEVELS)[number];

export const RISK_TIERS = ['low', 'medium', 'high'] as const;
export type RiskTier = (typeof RISK_TIERS)[number];

/** How a unit came to a partner: shipped by the vendor, passed on by its parent, or found in older free-text data. */
export const ALLOCATION_SOURCES = ['import', 'pass-on', 'migration'] as const;
export type AllocationSource = (typeof ALLOCATION_SOURCES)[number];

/** A high-risk sale before delivery: waiting for compliance, or decided. */
export const REVIEW_STATUSES = ['pending', 'more-information', 'approved', 'approved-with-conditions', 'rejected'] as const;
export type ReviewStatus = (typeof REVIEW_STATUSES)[number];
export const REVIEW_DECISIONS = ['approved', 'approved-with-conditions', 'rejected', 'more-information'] as const;
export type ReviewDecision = (typeof REVIEW_DECISIONS)[number];
/** A sale may be reported as done only under one of these. */
export const APPROVING_DECISIONS: readonly ReviewStatus[] = ['approved', 'approved-with-conditions'];

/** Why a sale needs compliance's review before delivery. */
export const REVIEW_CRITERIA = ['high-risk-model', 'high-risk-end-user', 'restricted-country'] as const;
export type ReviewCriterion = (typeof REVIEW_CRITERIA)[number];

/** Partner ids are `ptn_` and 20 hex digits. */
export const isPartnerId = (id: string) => /^ptn_[0-9a-f]{20}$/.test(id);

/**
 * A partner name folded for matching free text: case, accents, punctuation and common legal
 * forms do not tell two partners apart.
 */
export function nameKey(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .replace(/\b(ltd|limited|inc|llc|gmbh|sa|sarl|bv|plc|co|corp|company)\b/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

/** A partner's answer to one due-diligence question. */
export const DD_ANSWERS = ['yes', 'partly', 'no'] as const;
export type DueDiligenceAnswer = (typeof DD_ANSWERS)[number];

/** A due-diligence questionnaire: answered and waiting for compliance, sent back with a reason, or accepted. */
export const QUESTIONNAIRE_STATUSES = ['submitted', 'sent-back', 'accepted'] as const;
export type QuestionnaireStatus = (typeof QUESTIONNAIRE_STATUSES)[number];
export const QUESTIONNAIRE_DECISIONS = ['accept', 'send-back'] as const;
export type QuestionnaireDecision = (typeof QUESTIONNAIRE_DECISIONS)[number];
