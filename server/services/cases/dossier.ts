import type { CaseStatus } from '../../domain/cases';
import { caseAccess, isAssignee, reportIdsOf, unlessMissing, type Actor } from './access';
import { CASE_PAGE_UNIT_FIELDS, type CaseDeps } from './context';
import type { CasePorts } from './ports';
import { staffDirectory } from './queue';
import { caseIdentity, staffView } from './identity';
import { deadlinesAhead, harmSuggestions, overdueOf, TRANSITIONS } from './rules';

/** How many linked units' timelines and flags the case page loads (the rest are listed). */
const PAGE_DETAIL_CAP = 20;

/**
 * The case page's read model: everything it shows, for this person. The reporters' identity
 * only with `withIdentity` (the page), and only while this person holds a live grant.
 */
export function caseDossier(deps: CaseDeps, ports: Pick<CasePorts, 'reports' | 'registrations'>) {
  const { clock } = deps;
  const { flags, auth, catalogue } = deps.stores;
  const { visibleCase } = caseAccess(deps);
  const { identityAccess, identityIfGranted } = caseIdentity(deps, ports.reports);

  return {
    async dossier(caseId: string, actor: Actor, opts: { withIdentity?: boolean } = {}) {
      const c = await visibleCase(caseId, actor);
      const now = clock.now();
      const assigned = isAssignee(c, actor);
      const flagIds = c.sources.filter((s) => s.kind === 'flag').map((s) => s.id).slice(-PAGE_DETAIL_CAP);
      const shownUnitIds = c.unitIds.slice(0, PAGE_DETAIL_CAP);
      const userIds = [...c.assigneeIds, ...c.conflictedUserIds, ...c.notes.map((n) => n.byUserId), ...c.history.map((h) => h.byUserId)].filter(Boolean).map(String);
      const [flagList, reports, timelines, units, people, staff] = await Promise.all([
        flags.flagsByIds(flagIds),
        Promise.all(
          reportIdsOf(c).map(async (id) => {
            const deleted = c.retention?.deletedReportIds?.includes(id) ?? false;
            const report = deleted ? null : await ports.reports.getReportForStaff(id).catch(unlessMissing);
            return { id, deleted, report: report ? staffView(report, assigned) : null };
          }),
        ),
        Promise.all(shownUnitIds.map(async (unitId) => ({ unitId, timeline: await ports.registrations.timeline(unitId, actor).catch(unlessMissing) }))),
        catalogue.unitsByIds(shownUnitIds, CASE_PAGE_UNIT_FIELDS),
        auth.people(userIds),
        staffDirectory(auth),
      ]);
      // Only assigned investigators ask for and see the identity.
      const identity = !assigned ? null : opts.withIdentity ? ((await identityIfGranted(c, actor)) ?? (await identityAccess(c, actor))) : await identityAccess(c, actor);
      const canWrite = assigned || actor.role === 'admin';
      const reportHarm = reports.map((r) => ({ id: r.id, harmCategories: ((r.report?.what as { harmCategories?: string[] } | undefined)?.harmCategories ?? []) }));
      return {
        case: c,
        now,
        overdue: overdueOf(c, now),
        deadlines: deadlinesAhead(c, now),
        isAssigned: assigned,
        canWrite,
        /** Acknowledge and triage: also anyone on the case's staff while nobody is assigned. */
        canTriage: canWrite || !c.assigneeIds.length,
        /** What pre-fills triage's harm categories until a triage has set them. */
        harmSuggestions: harmSuggestions(reportHarm, c.rules ?? []),
        next: TRANSITIONS[c.status as CaseStatus],
        flags: flagList,
        reports,
        timelines,
        units,
        names: Object.fromEntries(people.map((p) => [String(p._id), p.name])) as Record<string, string>,
        staff,
        identity,
      };
    },
  };
}
