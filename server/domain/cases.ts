/**
 * The cases module's vocabulary: plain constants and types, shared by the schema
 * (models/cases.ts), the rules (server/services/cases/) and the routes' validation.
 */

export const CASE_STATUSES = ['new', 'triaged', 'investigating', 'action', 'remediation', 'closed'] as const;
export type CaseStatus = (typeof CASE_STATUSES)[number];

/** Harm categories from the domain primer, shared with reports. */
export const HARM_CATEGORIES = [
  'privacy-surveillance',
  'expression-assembly-association',
  'life-liberty-security',
  'discrimination',
  'labour-rights',
  'environment-health',
  'consumer-safety',
  'other',
] as const;
export type HarmCategory = (typeof HARM_CATEGORIES)[number];

/** UNGP involvement: responsibility follows it. */
export const INVOLVEMENTS = ['cause', 'contribute', 'directly-linked'] as const;
export type Involvement = (typeof INVOLVEMENTS)[number];

export const CLOSURE_REASONS = ['substantiated', 'unsubstantiated', 'referred', 'duplicate', 'out-of-scope'] as const;
export type ClosureReason = (typeof CLOSURE_REASONS)[number];

export const PRIORITY_LEVELS = ['critical', 'high', 'medium', 'low'] as const;
export type PriorityLevel = (typeof PRIORITY_LEVELS)[number];

/** Leverage actions (Shift 2013; BSR 2021), as listed in the domain primer. */
export const LEVERAGE_ACTIONS = [
  'request-information',
  'require-clearance',
  'training-guidance',
  'audit-visit',
  'withhold-updates',
  'void-warranty',
  'notify-channel-partner',
  'escalate-compliance-board',
  'suspend-relationship',
  'support-remediation',
] as const;
export type LeverageActionKind = (typeof LEVERAGE_ACTIONS)[number];

/** `open` is the only status in which an action has effect on units (e.g. withholding). */
export const ACTION_STATUSES = ['open', 'done', 'lifted', 'cancelled'] as const;
export type ActionStatus = (typeof ACTION_STATUSES)[number];

/** A request to see a case's reporter identity: waiting, approved (the grant), refused, or an approval run out. */
export const IDENTITY_REQUEST_STATUSES = ['pending', 'approved', 'refused', 'expired'] as const;
export type IdentityRequestStatus = (typeof IDENTITY_REQUEST_STATUSES)[number];
