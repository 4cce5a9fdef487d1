import type { Config } from '../../config';
import type { NotificationsService } from '../notifications';
import type { Actor } from './access';
import type { CaseDeps } from './context';
import { deadlinesAhead } from './rules';

/** A deadline this close (in days) or passed goes into the day's digest. */
export const DIGEST_WITHIN_DAYS = 2;

/**
 * E-mail to investigators about their cases: a case assigned to them by someone else, and
 * one digest a day of the deadlines 2 days away or passed. Each person's preferences (on
 * /account) decide; a case's content never goes beyond its number and title.
 */
export function caseNotices(deps: Pick<CaseDeps, 'clock' | 'stores'> & { notifications: NotificationsService; config: Pick<Config, 'mail'> }) {
  const { clock, notifications } = deps;
  const { auth, cases } = deps.stores;
  const caseLink = (caseId: string) => `${deps.config.mail.publicUrl}/cases/${caseId}`;

  return {
    /** Tells the person assigned, unless they assigned themselves or opted out. */
    async assigned(c: { _id: string; title: string }, userId: string, actor: Actor) {
      if (userId === actor.id) return;
      const [user] = await auth.staffForNotices([userId]);
      if (!user || user.disabled || user.notifications?.caseAssigned === false) return;
      await notifications.sendMail({
        to: user.email,
        subject: `Case ${c._id} is assigned to you`,
        text: [`Hello ${user.name},`, '', `Case ${c._id} ("${c.title}") was assigned to you.`, caseLink(c._id), '', 'Change which e-mails you get on your account page.'].join('\n'),
      });
    },

    /**
     * One mail per person with their open cases whose deadlines are 2 days away or passed.
     * Run hourly under the job's lease; the per-person claim of the day makes a second run,
     * on this or any instance, send nothing more that day. How many mails went out.
     */
    async sendDeadlineDigests(): Promise<number> {
      const now = clock.now();
      const day = now.toISOString().slice(0, 10);
      const due = new Map<string, string[]>();
      for (const c of await cases.openAssignedCases()) {
        const near = deadlinesAhead(c, now).filter((d) => d.daysLeft <= DIGEST_WITHIN_DAYS);
        if (!near.length) continue;
        const line = `${c._id} "${c.title}": ${near.map((d) => `${d.kind} ${d.daysLeft < 0 ? `overdue since ${d.due.toISOString().slice(0, 10)}` : `due ${d.due.toISOString().slice(0, 10)}`}`).join(', ')}\n  ${caseLink(c._id)}`;
        for (const id of c.assigneeIds.map(String)) due.set(id, [...(due.get(id) ?? []), line]);
      }
      let sent = 0;
      for (const user of await auth.staffForNotices([...due.keys()])) {
        if (user.disabled || user.notifications?.deadlineDigest === false) continue;
        if (!(await auth.claimDigest(String(user._id), day))) continue;
        const lines = due.get(String(user._id))!;
        await notifications.sendMail({
          to: user.email,
          subject: `Deadlines on ${lines.length} of your case${lines.length === 1 ? '' : 's'}`,
          text: [`Hello ${user.name},`, '', `These cases have a deadline within ${DIGEST_WITHIN_DAYS} days or already passed:`, '', ...lines, '', 'Change which e-mails you get on your account page.'].join('\n'),
        });
        sent++;
      }
      return sent;
    },
  };
}
