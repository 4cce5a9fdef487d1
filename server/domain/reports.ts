/**
 * The reporting channel's vocabulary: plain constants and types, shared by the schema
 * (models/reports.ts), the rules (server/services/reports/), the store and the routes' validation.
 */

// Harm categories are the primer's, shared with cases (server/domain/cases.ts owns the list).
export { HARM_CATEGORIES, type HarmCategory } from './cases';

export const REPORTER_KINDS = ['ngo', 'journalist', 'employee', 'affected-person', 'other'] as const;
export type ReporterKind = (typeof REPORTER_KINDS)[number];

/** What the reporter is shown of the case's progress. */
export const REPORT_STATUSES = ['received', 'acknowledged', 'under-investigation', 'closed'] as const;
export type ReportStatus = (typeof REPORT_STATUSES)[number];

/** Whether the reported harm is still happening. */
export const ONGOING = ['yes', 'no', 'unknown'] as const;
export type Ongoing = (typeof ONGOING)[number];

export const LINK_KINDS = ['unit', 'model', 'registration', 'country'] as const;
export type LinkKind = (typeof LINK_KINDS)[number];
export const CONFIDENCES = ['high', 'medium', 'low'] as const;
export type Confidence = (typeof CONFIDENCES)[number];

/**
 * Whether the linker's second step (registrations of the linked models in the report's
 * country) is still to run: `pending` until the report-links job has run it.
 */
export const LINKING_STATES = ['pending', 'done'] as const;
export type LinkingState = (typeof LINKING_STATES)[number];

/** Who added a message or an evidence file: never anything about the reporter beyond that. */
export const REPORT_PARTIES = ['reporter', 'investigator'] as const;
export type ReportParty = (typeof REPORT_PARTIES)[number];

/** A message, or feedback: what investigators owe the reporter within three months of acknowledging. */
export const MESSAGE_KINDS = ['message', 'feedback'] as const;
export type MessageKind = (typeof MESSAGE_KINDS)[number];

/** Caps of a report's embedded arrays: they keep the document far below the 16 MB limit. */
export const MAX_MESSAGES = 500;
export const MAX_EVIDENCE = 20;
