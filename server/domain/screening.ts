/** Restricted-party screening's vocabulary: plain values shared by the schemas, services and routes. */

/** open: waiting for an investigator; true-match: confirmed (a red flag and case follow); false-positive: cleared. */
export const HIT_STATUSES = ['open', 'true-match', 'false-positive'] as const;
export type HitStatus = (typeof HIT_STATUSES)[number];

/** What a screened party was found in: `sale` is a partner's sell-through sale (its key), `partner` a partner record. */
export const SCREENED_SUBJECT_KINDS = ['registration', 'transfer', 'sale', 'partner'] as const;
export type ScreenedSubjectKind = (typeof SCREENED_SUBJECT_KINDS)[number];

export const HIT_DECISIONS = ['true-match', 'false-positive'] as const;
export type HitDecision = (typeof HIT_DECISIONS)[number];
