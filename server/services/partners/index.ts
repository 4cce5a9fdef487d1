import { partnerChannel } from './channel';
import type { PartnerDeps } from './context';
import { partnerDiversion } from './diversion';
import { partnerDueDiligence } from './due-diligence';
import { partnerFootprints } from './footprint';
import { partnerRecords } from './records';
import { partnerRequests } from './requests';
import { saleReviews } from './reviews';

export { SALES_CSV_HEADER, SALES_CSV_MAX_LINES, type SaleInput } from './channel';
export type { PartnerActor } from './context';
export { DASHBOARD_PARTNERS } from './footprint';
export type { PartnerInput } from './records';
export { MERGE_THRESHOLD } from './records';
export type { QuestionnaireAnswers, QuestionnaireReview, TrainingAttestation } from './due-diligence';
export type { DecisionInput, ReviewInput } from './reviews';

/**
 * Channel partners (records.ts), the units and sales flowing through them (channel.ts) and
 * high-risk sale reviews (reviews.ts), requests from cases (requests.ts), the due-diligence
 * profile (due-diligence.ts), the diversion
 * rules that wait for a grace period (diversion.ts) and where each partner's units were seen
 * (footprint.ts, kept by the same sweep). Every function that takes a partner's actor checks
 * that the records it touches are that partner's or its children's (context.ts).
 */
export function createPartnersService(deps: PartnerDeps) {
  const requests = partnerRequests(deps);
  const records = partnerRecords(deps, requests);
  return { ...records, ...partnerChannel(deps), ...saleReviews(deps), ...requests, ...partnerDiversion(deps), ...partnerFootprints(deps, records.scorecards), ...partnerDueDiligence(deps) };
}

export type PartnersService = ReturnType<typeof createPartnersService>;
