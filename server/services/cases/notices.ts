import type { NotificationsService, StaffRecipient } from '../notifications';
import { isConflicted, type Actor } from './access';
import type { CaseDeps } from './context';
import { deadlinesAhead } from './rules';

/** A deadline this close (in days) or passed goes into the day's digest. */
export const DIGEST_WITHIN_DAYS = 2;

type NoticeDeps = Pick<CaseDeps, 'clock' | 'stores'> & { notifications: NotificationsService };

/**
 * What investigators are told about cases, in the portal and by e-mail (their choices on
 * /account decide the e-mail). A case is in someone's queue when it is assigned to them; while
 * nobody is assigned, it is in every investigator's queue (the unassigned queue is shared), so
 * news on an unassigned case goes to every active investigator not conflicted on it.
 * A notice never carries more of a case than its number and title.
 */
export function caseNotices(deps: NoticeDeps) {
  const { clock, notifications } = deps;
  const { auth, cases } = deps.stores;

  /** The people whose queue holds this case, less `except` (the person who acted). */
  async function queueOf(caseId: string, except: string | null = null): Promise<{ title: string; people: StaffRecipient[] } | null> {
    const c = await cases.caseById(caseId);
    if (!c || c.status === 'closed') return null;
    const people: StaffRecipient[] = c.assigneeIds.length
      ? await auth.staffForNotices(c.assigneeIds.map(String))
      : (await notifications.investigators()).filter((p) => !isConflicted(c, String(p._id)));
    return { title: c.title, people: people.filter((p) => String(p._id) !== except) };
  }

  return {
    /** Tells the person assigned, unless they assigned themselves. */
    async assigned(c: { _id: string; title: string }, userId: string, actor: Actor) {
      if (userId === actor.id) return;
      await notifications.notifyStaff(await auth.staffForNotices([userId]), {
        kind: 'case-assigned',
        subject: `Case ${c._id} is assigned to you`,
        link: `/cases/${c._id}`,
        text: `Case ${c._id} ("${c.title}") was assigned to you.`,
      });
    },

    /** A new case (from a report or a red flag) is in the unassigned queue. */
    /**
     * A misuse report opened a case: a person is waiting, with deadlines, so every investigator
     * hears of it. A red flag's case does not notify anyone: a check-in sweep can open hundreds
     * at once, which would bury the reporters' news; they wait in the queue's "New" view.
     */
    async opened(caseId: string, title: string, source: 'report' | 'flag') {
      if (source !== 'report') return;
      await notifications.notifyStaff(await notifications.investigators(), {
        kind: 'case-opened',
        subject: `New case ${caseId} in the queue`,
        link: `/cases/${caseId}`,
        text: `A misuse report opened case ${caseId} ("${title}"). Nobody is assigned yet.`,
      });
    },

    /** A further report joined an open case. */
    async reportAdded(caseId: string) {
      const queue = await queueOf(caseId);
      if (!queue) return;
      await notifications.notifyStaff(queue.people, {
        kind: 'report-added',
        subject: `A new report joined case ${caseId}`,
        link: `/cases/${caseId}`,
        text: `Another misuse report was added to case ${caseId} ("${queue.title}").`,
      });
    },

    /** The reporter wrote (a message or more evidence); what they wrote stays on the case page. */
    async reporterWrote(caseId: string) {
      const queue = await queueOf(caseId);
      if (!queue) return;
      await notifications.notifyStaff(queue.people, {
        kind: 'reporter-message',
        subject: `The reporter wrote on case ${caseId}`,
        link: `/cases/${caseId}#conversation`,
        text: `The reporter sent a new message on case ${caseId} ("${queue.title}").`,
      });
    },

    /**
     * One digest per person with their open cases whose deadlines are 2 days away or passed.
     * Run hourly under the job's lease; the per-person claim of the day makes a second run,
     * on this or any instance, send nothing more that day. How many people were told.
     */
    async sendDeadlineDigests(): Promise<number> {
      const now = clock.now();
      const day = now.toISOString().slice(0, 10);
      const due = new Map<string, string[]>();
      for (const c of await cases.openAssignedCases()) {
        const near = deadlinesAhead(c, now).filter((d) => d.daysLeft <= DIGEST_WITHIN_DAYS);
        if (!near.length) continue;
        const line = `${c._id} "${c.title}": ${near.map((d) => `${d.kind} ${d.daysLeft < 0 ? `overdue since ${d.due.toISOString().slice(0, 10)}` : `due ${d.due.toISOString().slice(0, 10)}`}`).join(', ')}`;
        for (const id of c.assigneeIds.map(String)) due.set(id, [...(due.get(id) ?? []), line]);
      }
      let sent = 0;
      for (const user of await auth.staffForNotices([...due.keys()])) {
        if (user.disabled) continue;
        if (!(await auth.claimDigest(String(user._id), day))) continue;
        const lines = due.get(String(user._id))!;
        await notifications.notifyStaff([user], {
          kind: 'deadline-digest',
          subject: `Deadlines on ${lines.length} of your case${lines.length === 1 ? '' : 's'}`,
          link: '/cases?mine=1',
          text: [`These cases have a deadline within ${DIGEST_WITHIN_DAYS} days or already passed:`, '', ...lines, ''].join('\n'),
        });
        sent++;
      }
      return sent;
    },
  };
}

export type CaseNotices = ReturnType<typeof caseNotices>;
