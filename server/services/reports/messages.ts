import crypto from 'node:crypto';
import { MAX_MESSAGES, type MessageKind, type ReportParty } from '../../domain/reports';
import { ValidationError } from '../../errors';
import type { StoredMessage } from '../../store/reports';
import { reportOf, type ReportsDeps } from './context';
import type { ReportSealing } from './sealing';

export const MESSAGES_PER_PAGE = 20;

export type Message = StoredMessage;

/**
 * One page of a conversation for the reporter: the newest page first; within a page, oldest
 * first, as a conversation reads.
 */
export function messagePage(messages: readonly Message[], page: number) {
  const pages = Math.max(1, Math.ceil(messages.length / MESSAGES_PER_PAGE));
  const current = Math.min(Math.max(1, page), pages);
  const end = messages.length - (current - 1) * MESSAGES_PER_PAGE;
  return {
    messages: messages.slice(Math.max(0, end - MESSAGES_PER_PAGE), end).map((m) => ({ from: m.from, kind: m.kind ?? 'message', text: m.text, at: m.at })),
    messagePage: { page: current, pages, total: messages.length },
  };
}

/** The conversation between the reporter and investigators, embedded in the report. */
export function reportMessages(deps: ReportsDeps, sealing: ReportSealing) {
  const { clock, audit } = deps;
  const store = deps.stores.reports;

  return {
    /** Appends a message (sealed) while the conversation is under MAX_MESSAGES, in one guarded update; returns it in the clear. */
    async post(reportId: string, from: ReportParty, userId: string | null, text: string, kind: MessageKind = 'message'): Promise<Message> {
      const message = { _id: `msg_${crypto.randomBytes(10).toString('hex')}`, from, kind, userId, text, at: clock.now() };
      const sealed = { ...message, text: await sealing.sealText(reportId, sealing.messagePlace(message._id), text) };
      if (!(await store.appendMessage(reportId, sealed, MAX_MESSAGES))) {
        await reportOf(store, reportId); // 404 if it is gone
        throw new ValidationError({ text: `This conversation has reached ${MAX_MESSAGES} messages.` });
      }
      await audit.record({ actorKind: from === 'reporter' ? 'reporter' : 'user', actorId: userId, action: 'report.message-added', subjectKind: 'report', subjectId: reportId, detail: { from, kind } });
      return message;
    },
  };
}

export type ReportMessages = ReturnType<typeof reportMessages>;
