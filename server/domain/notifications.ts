/** The notifications module's vocabulary: what a staff member is told about in the portal. */

export const NOTICE_KINDS = [
  // A case assigned to them by someone else.
  'case-assigned',
  // A new case in the unassigned queue (every investigator's queue until someone takes it).
  'case-opened',
  // A further report joined a case assigned to them.
  'report-added',
  // The reporter wrote on a case assigned to them.
  'reporter-message',
  // Deadlines of their cases 2 days away or passed (the daily digest).
  'deadline-digest',
  // A customer's transfer waiting for a staff decision.
  'transfer-pending',
] as const;
export type NoticeKind = (typeof NOTICE_KINDS)[number];

/** How many notices a person's inbox keeps (the oldest go first). */
export const INBOX_KEEPS = 200;
