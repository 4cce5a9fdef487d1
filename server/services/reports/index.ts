import type { ReportsDeps } from './context';
import { reportEvidence } from './evidence';
import { reportIntake } from './intake';
import { reportLinking } from './linking';
import { reportMessages } from './messages';
import { createReceiptHasher, reportFollowUp } from './receipts';
import { reportSealing } from './sealing';
import { reportsForStaff } from './staff';

/**
 * The public misuse-reporting channel: anonymous reports, evidence, receipts, follow-up; and
 * what investigators do on a report through the cases module.
 *
 * Privacy: nothing about the sender's connection is stored with a report. Rate limits, the
 * receipt guard and used form tokens live in the database (every app instance shares them,
 * server/store/limits.ts) for at most their window, under `client`: a keyed hash of the
 * address that routes compute (server/middleware/rate-limit.ts), never the address.
 *
 * One responsibility per file: intake.ts (the form, its challenge, the submission),
 * receipts.ts (receipts, their guard, the reporter's follow-up), evidence.ts, messages.ts,
 * linking.ts (the background link pass), staff.ts (what the cases module reads and writes).
 */
export function createReportsService(deps: ReportsDeps) {
  const reportIdFor = createReceiptHasher(deps.config.jwt.secret);
  const sealing = reportSealing(deps);
  const evidence = reportEvidence(deps, sealing);
  const messages = reportMessages(deps, sealing);
  return {
    ...reportIntake(deps, { evidence, sealing, reportIdFor }),
    ...reportFollowUp(deps, { evidence, messages, sealing, reportIdFor }),
    ...reportsForStaff(deps, { evidence, messages, sealing }),
    ...reportLinking(deps),
    /** Evidence files of report forms never sent, once the form has expired (the hourly job). */
    removeUnclaimedEvidence: evidence.removeUnclaimed,
    /** `npm run keys:rotate`: every data key re-wrapped under the current master key. */
    rotateDataKeys: sealing.rotateDataKeys,
    /** The encryption migration (`npm run migrate`): reports and files written in the clear. */
    clearReports: { remaining: sealing.countClearReports, run: sealing.sealClearReports },
  };
}

export type ReportsService = ReturnType<typeof createReportsService>;
export type { ReportsDeps } from './context';
export { evidenceName, UPLOADS_PER_SUBMISSION, type EvidenceRef } from './evidence';
export { CHALLENGE_MAX_AGE_MS, createChallenge, powSolves, RECEIPT_SHOWN_AGAIN_MS, type ReportInput } from './intake';
export { LINK_PASS_MAX_REPORTS } from './linking';
export { MESSAGES_PER_PAGE, type Message } from './messages';
export { createReceiptGuard, createReceiptHasher, FOLLOW_UP_SESSION_MS, formatReceipt, newReceipt, parseReceipt, RECEIPT_BASE_DELAY_MS, RECEIPT_FAILURES_PER_WINDOW, RECEIPT_MAX_DELAY_MS, RECEIPT_WINDOW_MS } from './receipts';
