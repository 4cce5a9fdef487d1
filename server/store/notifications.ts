import crypto from 'node:crypto';
import { NotificationInbox, QueuedMail } from '../../models/notifications';
import { INBOX_KEEPS, type NoticeKind } from '../domain/notifications';
import { chunksOf, type Engine } from './engine';

/**
 * In-app notices (one inbox document per person, read and written by `_id`) and the e-mail
 * outbox the delivery job drains. Every write is a single-document update.
 */

export interface StoredNotice {
  _id: string;
  kind: NoticeKind;
  subject: string;
  link: string;
  at: Date;
}

export interface Inbox {
  _id: string;
  notices: StoredNotice[];
  unread: number;
  readUpTo: Date | null;
}

export interface QueuedMailDoc {
  _id: string;
  to: string;
  subject: string;
  text: string;
  queuedAt: Date;
  attempts: number;
  nextAttemptAt: Date;
}

/** Sortable by time across instances, unique without coordination. */
const timeId = (at: Date) => `${at.getTime().toString(36).padStart(9, '0')}${crypto.randomBytes(6).toString('hex')}`;

export function createNotificationsStore(engine: Engine) {
  return {
    /** One notice into each person's inbox, the unread count raised with it in the same update. */
    async addNotices(userIds: readonly string[], notice: Omit<StoredNotice, '_id'>) {
      for (const chunk of chunksOf([...new Set(userIds)], engine.statementsPerCommand)) {
        await NotificationInbox.bulkWrite(
          chunk.map((userId) => ({
            updateOne: {
              filter: { _id: userId },
              update: { $push: { notices: { $each: [{ ...notice, _id: timeId(notice.at) }] as never[], $slice: -INBOX_KEEPS } }, $inc: { unread: 1 } },
              upsert: true,
            },
          })),
          { ordered: false },
        );
      }
    },

    inboxOf: (userId: string) => NotificationInbox.findById(userId).lean<Inbox>(),

    unreadOf: async (userId: string) => (await NotificationInbox.findById(userId, { unread: 1 }).lean<Pick<Inbox, 'unread'>>())?.unread ?? 0,

    /**
     * Marks read up to `upTo`, if the inbox still has the unread count it was read with (a notice
     * that arrived meanwhile raised it: the caller reads again). False when it moved on.
     */
    async markReadUpTo(userId: string, expectUnread: number, upTo: Date, stillUnread: number): Promise<boolean> {
      const res = await NotificationInbox.updateOne({ _id: userId, unread: expectUnread }, { $set: { unread: stillUnread, readUpTo: upTo } });
      return res.matchedCount === 1;
    },

    // ----- the e-mail outbox -----

    async queueMails(mails: ReadonlyArray<Pick<QueuedMailDoc, 'to' | 'subject' | 'text'>>, at: Date) {
      if (!mails.length) return;
      for (const chunk of chunksOf(mails.map((m) => ({ ...m, _id: timeId(at), queuedAt: at, attempts: 0, nextAttemptAt: at })), engine.statementsPerCommand)) {
        await QueuedMail.insertMany(chunk, { ordered: false });
      }
    },

    /** Mails due to be sent, oldest first (the outbox holds only what is pending: a small collection). */
    mailsDue: (now: Date, limit: number) => QueuedMail.find({ nextAttemptAt: { $lte: now } }).sort({ _id: 1 }).limit(limit).lean<QueuedMailDoc[]>(),

    /** Sent: gone from the outbox. */
    mailSent: (id: string) => QueuedMail.deleteOne({ _id: id }).then(() => undefined),

    /** Not sent: tried again at `nextAttemptAt`, guarded by the attempt count the sender read. */
    mailFailed: (id: string, attempts: number, nextAttemptAt: Date) =>
      QueuedMail.updateOne({ _id: id, attempts }, { $set: { nextAttemptAt }, $inc: { attempts: 1 } }).then(() => undefined),

    pendingMailCount: () => QueuedMail.countDocuments({}),
  };
}

export type NotificationsStore = ReturnType<typeof createNotificationsStore>;
