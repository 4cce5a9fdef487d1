import type { Clock } from '../../clock';
import type { Config } from '../../config';
import type { NoticeKind } from '../../domain/notifications';
import type { Logger } from '../../logger';
import type { Page } from '../../middleware/validate';
import type { AuthStore } from '../../store/auth';
import type { NotificationsStore } from '../../store/notifications';
import { mailSender, type Mail } from './mail';
import { outboxFolder } from './outbox-folder';

export { outboxDir, type Mail } from './mail';
export type { OutboxMessage } from './outbox-folder';

/** Mails sent per run of the delivery job; the job comes back soon while more wait. */
export const MAILS_PER_RUN = 50;
/** A message the server refused is tried again for about a day, then given up (and logged). */
export const MAIL_ATTEMPTS = 12;
const retryDelayMs = (attempts: number) => Math.min(2 ** attempts * 30_000, 4 * 3_600_000);

/** A staff member as notices need them (the auth store's `staffForNotices`). */
export interface StaffRecipient {
  _id: unknown;
  name: string;
  email: string;
  disabled?: boolean | null;
  notifications?: { caseAssigned?: boolean | null; deadlineDigest?: boolean | null } | null;
}

/** Which of a person's e-mail choices (on /account) covers a notice. */
const MAIL_CHOICE: Record<NoticeKind, 'caseAssigned' | 'deadlineDigest'> = {
  'case-assigned': 'caseAssigned',
  'case-opened': 'caseAssigned',
  'report-added': 'caseAssigned',
  'reporter-message': 'caseAssigned',
  'transfer-pending': 'caseAssigned',
  'deadline-digest': 'deadlineDigest',
};

export interface Notice {
  kind: NoticeKind;
  subject: string;
  /** A path in the portal; the e-mail carries it as a full link. */
  link: string;
  /** The e-mail's text after the greeting: numbers and titles, never a reporter's words. */
  text: string;
}

/**
 * Notices to staff (in the portal and by e-mail), e-mail to customers and reporters, and the
 * outbox admins read when no SMTP server is set.
 *
 * Notices are raised on hot paths (a report sent, a flag opening a case, a transfer asked
 * for), so their e-mail is queued in the database in the same call and sent by the leased
 * `notification-mail` job: the caller's answer never waits on, or fails with, a mail server.
 */
export function createNotificationsService(deps: { config: Config; clock: Clock; logger: Logger; stores: { notifications: NotificationsStore; auth: AuthStore } }) {
  const { config, clock, logger } = deps;
  const store = deps.stores.notifications;
  const sender = mailSender(deps);
  const folder = outboxFolder(config);
  const link = (path: string) => `${config.mail.publicUrl}${path}`;

  /** E-mail sent by the delivery job, soon. */
  const mailLater = (mails: readonly Mail[]) => store.queueMails(mails, clock.now());

  return {
    /** Sends one message now (sign-up links the person is waiting for). Never throws; `false` if not sent. */
    sendMail: sender.sendMail,
    mailLater,

    /** A notice in each person's inbox, and an e-mail to those whose choices want it. Disabled accounts get nothing. */
    async notifyStaff(people: readonly StaffRecipient[], notice: Notice) {
      const active = people.filter((p) => !p.disabled);
      if (!active.length) return;
      await store.addNotices(active.map((p) => String(p._id)), { kind: notice.kind, subject: notice.subject, link: notice.link, at: clock.now() });
      const choice = MAIL_CHOICE[notice.kind];
      await mailLater(
        active
          .filter((p) => p.notifications?.[choice] !== false)
          .map((p) => ({
            to: p.email,
            subject: notice.subject,
            text: [`Hello ${p.name},`, '', notice.text, link(notice.link), '', 'Change which e-mails you get on your account page.'].join('\n'),
          })),
      );
    },

    /** Every active investigator: the unassigned queue is theirs. */
    investigators: () => deps.stores.auth.activeInvestigators(),

    /** Every active investigator and admin: who may decide a customer's transfer. */
    transferDeciders: () => deps.stores.auth.activeStaff(),

    /**
     * A reporter who gave an address and asked for news: told only that there is news, never
     * what (the mail may be read by someone else; the receipt is the only way in). Sent now,
     * not queued: the address is sealed with the report and must not wait in the clear.
     */
    tellReporterOfNews: (email: string) =>
      sender.sendMail({
        to: email,
        sealedRecipient: true,
        subject: 'There is news about your report',
        text: ['There is news about the report you sent us.', '', `To read it, open ${link('/follow-up')} and enter your receipt.`, '', 'This message says nothing more on purpose.'].join('\n'),
      }),

    /** The delivery job: due mails sent, each once; a refused one is tried again later. How many went out. */
    async deliverMail(): Promise<{ sent: number; failed: number; more: boolean }> {
      const now = clock.now();
      const due = await store.mailsDue(now, MAILS_PER_RUN);
      let sent = 0;
      let failed = 0;
      for (const mail of due) {
        if (await sender.sendMail(mail)) {
          await store.mailSent(mail._id);
          sent++;
          continue;
        }
        failed++;
        if (mail.attempts + 1 >= MAIL_ATTEMPTS) {
          logger.error({ subject: mail.subject, attempts: mail.attempts + 1 }, 'mail given up');
          await store.mailSent(mail._id);
        } else await store.mailFailed(mail._id, mail.attempts, new Date(now.getTime() + retryDelayMs(mail.attempts)));
      }
      return { sent, failed, more: due.length === MAILS_PER_RUN };
    },

    // ----- in the portal -----

    unreadCount: (userId: string) => store.unreadOf(userId),

    /** Newest first, one page, each with whether it is read. */
    async inbox(userId: string, page: Page) {
      const inbox = await store.inboxOf(userId);
      const all = [...(inbox?.notices ?? [])].reverse();
      const readUpTo = inbox?.readUpTo?.getTime() ?? -Infinity;
      return {
        items: all.slice(page.skip, page.skip + page.limit).map((n) => ({ id: n._id, kind: n.kind, subject: n.subject, link: n.link, at: n.at, read: n.at.getTime() <= readUpTo })),
        total: all.length,
        unread: inbox?.unread ?? 0,
        newestAt: all[0]?.at ?? null,
      };
    },

    /**
     * Marks read every notice up to `upTo` (the newest one the person was shown): one that
     * arrived after the page was drawn stays unread.
     */
    async markRead(userId: string, upTo: Date) {
      // Retried while notices keep arriving between the read and the guarded write.
      for (let attempt = 0; attempt < 5; attempt++) {
        const inbox = await store.inboxOf(userId);
        if (!inbox) return;
        const stillUnread = inbox.notices.filter((n) => n.at.getTime() > upTo.getTime()).length;
        const readUpTo = inbox.readUpTo && inbox.readUpTo > upTo ? inbox.readUpTo : upTo;
        if (await store.markReadUpTo(userId, inbox.unread, readUpTo, Math.min(stillUnread, inbox.unread))) return;
      }
    },

    // ----- the outbox folder (no SMTP) -----

    outbox: folder,
  };
}

export type NotificationsService = ReturnType<typeof createNotificationsService>;
