import { ConflictError, NotFoundError, ValidationError } from '../../errors';
import { caseAccess, type Actor } from './access';
import { caseChanger, recorder, type CaseDeps } from './context';
import { caseNumbers } from './opening';
import { reportDeadlines } from './rules';

/** Duplicates folded into one case, and reports wrongly attached split off into their own. */
export function caseMerging(deps: CaseDeps) {
  const { clock } = deps;
  const store = deps.stores.cases;
  const { visibleCase, writableCase } = caseAccess(deps);
  const nextCaseId = caseNumbers(deps);
  const change = caseChanger(deps);
  const record = recorder(deps.audit);

  return {
    /**
     * Folds a duplicate into `intoCaseId`: the survivor gains its sources and subjects, the
     * duplicate closes (reason: duplicate) and its open-case keys point at the survivor, so
     * further flags on those units attach there instead of reopening the duplicate.
     */
    async merge(caseId: string, intoCaseId: string, reason: string, actor: Actor) {
      if (caseId === intoCaseId) throw new ValidationError({ intoCaseId: 'Choose another case to merge into.' });
      const c = await writableCase(caseId, actor);
      const into = await visibleCase(intoCaseId, actor).catch((err: unknown) => {
        throw err instanceof NotFoundError ? new ValidationError({ intoCaseId: 'No such case.' }) : err;
      });
      if (c.status === 'closed') throw new ConflictError('This case is already closed.', { intoCaseId: 'This case is closed.' });
      if (into.status === 'closed') throw new ValidationError({ intoCaseId: 'That case is closed; reopen it or choose another.' });
      if (c.actions.some((a) => a.status === 'open' && a.kind === 'withhold-updates')) {
        throw new ConflictError('Lift or finish this case’s withholding first: it is tied to this case.', { intoCaseId: 'This case still withholds updates.' });
      }
      // The duplicate closes first, guarded by what was read of it: of two racing merges one
      // closes it and the other gets a 409 before touching any survivor.
      await change(
        c,
        actor,
        { status: c.status, rev: c.rev ?? 0 },
        { set: { status: 'closed', closureReason: 'duplicate', closedAt: clock.now(), mergedIntoCaseId: intoCaseId } },
        { action: 'merged', detail: `into ${intoCaseId}: ${reason}`, audit: { into: intoCaseId, reason } },
      );
      await change(
        into,
        actor,
        {},
        { addToSets: { sources: c.sources, sourceKinds: c.sourceKinds, rules: c.rules, unitIds: c.unitIds, modelIds: c.modelIds, countries: c.countries } },
        { action: 'merged-in', detail: `${caseId}: ${reason}`, audit: { from: caseId, reason } },
      );
      await store.repointKeys(caseId, intoCaseId);
      // Flags and reports name their case; keep them pointing at the survivor.
      await deps.stores.flags.moveFlagsToCase(caseId, intoCaseId);
      await deps.stores.reports.moveReportsToCase(caseId, intoCaseId);
      return intoCaseId;
    },

    /** A report attached to the wrong case becomes a case of its own. */
    async split(caseId: string, reportId: string, actor: Actor) {
      const c = await writableCase(caseId, actor);
      const source = c.sources.find((s) => s.kind === 'report' && s.id === reportId);
      if (!source) throw new ValidationError({ reportId: 'Choose a report attached to this case.' });
      if (c.sources.length < 2) throw new ValidationError({ reportId: 'This is the case’s only source; there is nothing to split it from.' });
      const stillHasReports = c.sources.some((s) => s.kind === 'report' && s.id !== reportId);
      // The source leaves first (the filtered list written whole, guarded by the revision read),
      // so a racing split gets a 409 before a second case is opened.
      const now = clock.now();
      const newCaseId = await nextCaseId(now);
      await change(
        c,
        actor,
        { rev: c.rev ?? 0 },
        { set: { sources: c.sources.filter((s) => s !== source), sourceKinds: stillHasReports ? c.sourceKinds : c.sourceKinds.filter((k) => k !== 'report') } },
        { action: 'split', detail: `report ${reportId} → ${newCaseId}`, audit: { reportId, newCaseId } },
      );
      await store.insertCase({
        _id: newCaseId,
        title: `Report ${reportId} (split from ${caseId})`,
        sources: [source],
        sourceKinds: ['report'],
        rules: [],
        unitIds: [],
        modelIds: [],
        countries: [],
        deadlines: reportDeadlines(source.at),
        assigneeIds: c.assigneeIds,
        conflictedUserIds: c.conflictedUserIds,
        openedAt: now,
        history: [{ at: now, byUserId: actor.id, action: 'opened', detail: `split from ${caseId}` }],
      });
      await store.claimKey(`report:${reportId}`, newCaseId, now);
      await deps.stores.reports.setCaseOfReport(reportId, newCaseId);
      await record(actor, 'case.opened-by-split', newCaseId, { from: caseId, reportId });
      return newCaseId;
    },
  };
}
