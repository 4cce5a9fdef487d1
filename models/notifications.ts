import mongoose, { Schema } from 'mongoose';
import { NOTICE_KINDS } from '../server/domain/notifications';

/**
 * A staff member's in-app notices: one document per person (`_id` is the user id), so the
 * unread count in the navigation is one `_id` read on every engine. The newest notices are
 * kept (bounded); `readUpTo` is the time of the newest one the person has marked read.
 */
const noticeSchema = new Schema(
  {
    _id: { type: String, required: true },
    kind: { type: String, enum: NOTICE_KINDS, required: true },
    subject: { type: String, required: true },
    /** A path in the portal (`/cases/C-2026-000001`), never content. */
    link: { type: String, default: '' },
    at: { type: Date, required: true },
  },
  { _id: false },
);

const inboxSchema = new Schema(
  {
    _id: { type: String, required: true },
    notices: { type: [noticeSchema], default: [] },
    unread: { type: Number, default: 0 },
    readUpTo: { type: Date, default: null },
  },
  { versionKey: false, collection: 'notifications' },
);

export const NotificationInbox = mongoose.model('NotificationInbox', inboxSchema);

/**
 * E-mail waiting to be sent: the outbox the delivery job drains (a sent message is deleted,
 * so the collection holds only what is pending and is read whole).
 */
const queuedMailSchema = new Schema(
  {
    _id: { type: String, required: true }, // time-sortable: queued order
    to: { type: String, required: true },
    subject: { type: String, required: true },
    text: { type: String, required: true },
    queuedAt: { type: Date, required: true },
    attempts: { type: Number, default: 0 },
    nextAttemptAt: { type: Date, required: true },
  },
  { versionKey: false, collection: 'notificationmails' },
);
queuedMailSchema.index({ nextAttemptAt: 1 });

export const QueuedMail = mongoose.model('QueuedMail', queuedMailSchema);
