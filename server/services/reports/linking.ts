import { countryQueryOf, mergeLinks, type LinkProposal } from '../linker';
import type { ReportToLink } from '../../store/reports';
import type { ReportsDeps } from './context';

/** Reports finished by one pass: bounds the lists of its one registrations query. */
export const LINK_PASS_MAX_REPORTS = 200;

/**
 * The linker's second step, off the request path: registrations of a report's linked models
 * in its country (the registrations' model-and-country lists).
 * The `report-links` job runs it under a lease (server/jobs/index.ts), every
 * REPORT_LINKS_EVERY_SECONDS: as soon after a report as a per-submission timer would be, and
 * one pass serves every report of a burst, on whichever instance holds the lease.
 * The reports waiting are queued in the database (the store's link waits); nothing is queued in a process.
 *
 * Safe when two passes meet on one report (a lease that lapsed mid-pass, a script beside the
 * job): each finishes a report with one update guarded by `linking: 'pending'`, so only the
 * first appends its links and the other changes nothing.
 */
export function reportLinking(deps: ReportsDeps) {
  const { clock } = deps;
  const { registrationLinksFor } = deps.linker;
  const store = deps.stores.reports;

  /** Appends only links the report does not have yet: existing ones, which investigators confirm by index, never move. */
  const finish = (report: ReportToLink, found: LinkProposal[]) => {
    const have = new Set((report.links ?? []).map((l) => `${l.kind}|${l.targetId}`));
    return store.finishLinking(report._id, mergeLinks(found).filter((l) => !have.has(`${l.kind}|${l.targetId}`)), clock.now());
  };

  /** One pass over up to LINK_PASS_MAX_REPORTS pending reports, with one registrations query; how many it read. */
  async function pass(): Promise<number> {
    const ids = await store.pendingLinks(LINK_PASS_MAX_REPORTS);
    const reports = await store.reportsToLink(ids, clock.now());
    const queries = reports.map((r) => countryQueryOf(r.links ?? [], r.where?.country ?? ''));
    const asked = reports.flatMap((r, i) => (queries[i] ? [i] : []));
    const answers = await registrationLinksFor(asked.map((i) => queries[i]!));
    const found = new Map(asked.map((i, n) => [i, answers[n]!]));
    for (const [i, report] of reports.entries()) await finish(report, found.get(i) ?? []);
    return ids.length;
  }

  return {
    /** Links every report still pending; resolves when done (the report-links job, tests, scripts). A failure leaves them pending for the next run. */
    async completePendingLinks() {
      let read: number;
      do {
        read = await pass();
      } while (read === LINK_PASS_MAX_REPORTS); // a full pass: more may be waiting
    },
  };
}
