import type { CaseStatus, HarmCategory, PriorityLevel } from '../../domain/cases';
import { isUserId } from '../../domain/auth';
import { ValidationError } from '../../errors';
import type { AuthStore } from '../../store/auth';
import { isConflicted, isStaff, type Actor } from './access';
import type { CaseDeps } from './context';
import { deadlinesAhead, overdueOf } from './rules';

/** The case queue and a unit's cases: queries of the cases collection, paged by the database. */

export interface QueueFilters {
  status?: CaseStatus | 'open' | 'all';
  priority?: PriorityLevel;
  harm?: HarmCategory;
  country?: string;
  model?: string;
  assignee?: string;
  mine?: boolean;
  overdue?: boolean;
  source?: 'flag' | 'report';
  sort?: 'opened' | 'priority' | 'updated';
}

/** Investigators and admins, for the assignee pickers (users are a small collection). */
export async function staffDirectory(auth: AuthStore) {
  return (await auth.staff()).map((u) => ({ id: String(u._id), name: u.name, role: u.role }));
}

export function caseQueue(deps: Pick<CaseDeps, 'clock' | 'stores'>) {
  const { clock } = deps;
  const { cases, auth } = deps.stores;

  return {
    /**
     * Every case, open or closed, that names this unit and that `viewer` may see, oldest first:
     * a case hidden from someone (a conflict of interest) is hidden from every list they reach.
     */
    async casesOfUnit(unitId: string, viewer: Actor) {
      if (!isStaff(viewer)) return [];
      return (await cases.casesOfUnit(unitId)).filter((c) => !isConflicted(c, viewer.id));
    },

    /** The queue: a page under the filters, the counts per status, and the overdue badges at `now`. */
    async queue(filters: QueueFilters, page: { skip: number; limit: number }, actor: Actor) {
      const now = clock.now();
      const assigneeId = filters.mine ? actor.id : filters.assignee;
      if (assigneeId && !isUserId(assigneeId)) throw new ValidationError({ assignee: 'Choose an investigator from the list.' });
      const [{ items, total, counts }, staff] = await Promise.all([
        cases.queue({
          status: filters.status ?? 'open',
          priority: filters.priority,
          harm: filters.harm,
          country: filters.country,
          model: filters.model,
          source: filters.source,
          assigneeId,
          overdueAt: filters.overdue ? now : undefined,
          hiddenFrom: actor.id,
          sort: filters.sort ?? 'opened',
          skip: page.skip,
          limit: page.limit,
        }),
        staffDirectory(auth),
      ]);
      return { items: items.map((c) => ({ ...c, overdue: overdueOf(c, now), deadlinesAhead: deadlinesAhead(c, now) })), total, counts, now, staff };
    },
  };
}
