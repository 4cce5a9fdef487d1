import crypto from 'node:crypto';
import { hashRaw } from '@node-rs/argon2';
import type { Clock } from '../../clock';
import { MAX_EVIDENCE, type ReportStatus } from '../../domain/reports';
import { BadRequestError, ConflictError, TooManyRequestsError, ValidationError } from '../../errors';
import { createTokenSealer } from '../../crypto/sealed';
import type { LimitsStore } from '../../store/limits';
import type { ReportRecord } from '../../store/reports';
import type { IncomingFile } from '../files';
import { hmac, MINUTE, reportOf, type ReportsDeps } from './context';
import type { ReportSealing } from './sealing';
import { evidenceNameOf, type ReportEvidence } from './evidence';
import { messagePage, type ReportMessages } from './messages';

export const RECEIPT_FAILURES_PER_WINDOW = 10;
export const RECEIPT_WINDOW_MS = 15 * MINUTE;
export const RECEIPT_BASE_DELAY_MS = 1000;
export const RECEIPT_MAX_DELAY_MS = 60_000;

/** 16 random digits, shown in groups of four. */
export function newReceipt(): string {
  let digits = '';
  for (let i = 0; i < 16; i++) digits += String(crypto.randomInt(10));
  return digits;
}

export const formatReceipt = (digits: string) => digits.replace(/(\d{4})(?=\d)/g, '$1 ');

/** What people type: spaces, dashes, dots between groups are fine; anything else is not a receipt. */
export function parseReceipt(input: unknown): string | null {
  if (typeof input !== 'string' || input.length > 64) return null;
  const digits = input.replace(/[\s.-]/g, '');
  return /^\d{16}$/.test(digits) ? digits : null;
}

/**
 * Receipt → report `_id` with argon2id keyed by the server secret. The salt is fixed (derived
 * from the secret) because the result must be found again by `_id`; the per-receipt entropy
 * (10^16) and the key stand in for a random salt.
 */
export function createReceiptHasher(secret: string) {
  const salt = hmac(secret, 'downstream/report-receipt/salt').subarray(0, 16);
  const key = hmac(secret, 'downstream/report-receipt/key');
  return async (digits: string) => {
    // argon2id is the library's default algorithm (its enum is a const enum, not importable here).
    const raw = await hashRaw(digits, { memoryCost: 19_456, timeCost: 2, parallelism: 1, outputLen: 20, salt, secret: key });
    return `rpt_${raw.toString('hex')}`;
  };
}

/**
 * Receipt guessing: each failure doubles the wait before the next try (1 s, 2 s, 4 s … 60 s),
 * and RECEIPT_FAILURES_PER_WINDOW failures in one RECEIPT_WINDOW_MS window stop all tries until
 * the window ends. Successes do not reset it (an attacker holding one real receipt could
 * otherwise interleave it), so a real reporter waits at most the window. Counted in the
 * database: guesses spread over several app instances add up.
 */
export function createReceiptGuard(clock: Clock, limits: LimitsStore) {
  return {
    async check(client: string) {
      const now = clock.now();
      const window = await limits.peekWindow('receipt', client, RECEIPT_WINDOW_MS, now);
      if (window.count >= RECEIPT_FAILURES_PER_WINDOW) {
        throw new TooManyRequestsError('Too many receipt codes were tried from here. Please wait 15 minutes and try again.');
      }
      if (window.last && window.count > 0) {
        const delay = Math.min(RECEIPT_BASE_DELAY_MS * 2 ** (window.count - 1), RECEIPT_MAX_DELAY_MS);
        const wait = window.last.getTime() + delay - now.getTime();
        if (wait > 0) throw new TooManyRequestsError(`Please wait ${Math.ceil(wait / 1000)} seconds before trying another receipt code.`);
      }
    },
    fail: async (client: string) => void (await limits.hitWindow('receipt', client, RECEIPT_WINDOW_MS, clock.now())),
  };
}

/** How long a follow-up page stays open in a browser without the receipt being typed again. */
export const FOLLOW_UP_SESSION_MS = 30 * MINUTE;

/** Until when a closed report still takes the reporter's messages and files (null: it is not closed). */
export function writableUntil(report: Pick<ReportRecord, 'status' | 'closedAt'>, daysAfterClosure: number): Date | null {
  if (report.status !== 'closed') return null;
  return new Date((report.closedAt ?? new Date(0)).getTime() + daysAfterClosure * 86_400_000);
}

/** What a reporter may see: what they sent, and never links, case, registrations, customers, contact or other reports. */
function reporterView(report: ReportRecord, now: Date, daysAfterClosure: number, page = 1) {
  const evidence = report.evidence ?? [];
  const until = writableUntil(report, daysAfterClosure);
  const canWrite = !report.erased && (until === null || until > now);
  return {
    receivedAt: report.receivedAt,
    status: report.status as ReportStatus,
    feedback: report.feedback?.text ? { text: report.feedback.text, at: report.feedback.at } : null,
    /** The outcome the investigators gave on closing, and until when the channel still takes messages. */
    closure: report.status === 'closed' ? { at: report.closedAt ?? null, outcome: report.outcome ?? report.feedback?.text ?? '', acceptsMessagesUntil: until } : null,
    submitted: {
      reporterKind: report.reporterKind,
      serials: report.product?.serials ?? [],
      modelText: report.product?.modelText ?? '',
      deviceDescription: report.product?.deviceDescription ?? '',
      country: report.where?.country ?? '',
      place: report.where?.place ?? '',
      from: report.when?.from ?? null,
      until: report.when?.until ?? null,
      harmCategories: report.what?.harmCategories ?? [],
      description: report.what?.description ?? '',
      affected: report.what?.affected ?? '',
      ongoing: report.what?.ongoing ?? 'unknown',
    },
    ...messagePage(report.messages ?? [], page),
    evidence: evidence.flatMap((e, i) => (e.addedBy === 'reporter' ? [{ name: evidenceNameOf(e, i), mediaType: e.mediaType, size: e.size, addedAt: e.addedAt }] : [])),
    canWrite,
    canAddEvidence: canWrite && evidence.length < MAX_EVIDENCE,
  };
}

export type ReporterView = ReturnType<typeof reporterView>;

/** The reporter's follow-up with a receipt: status, feedback, the conversation, more evidence. */
export function reportFollowUp(deps: ReportsDeps, parts: { evidence: ReportEvidence; messages: ReportMessages; sealing: ReportSealing; reportIdFor: (digits: string) => Promise<string> }) {
  const { evidence, messages, sealing, reportIdFor } = parts;
  const store = deps.stores.reports;
  const receiptGuard = createReceiptGuard(deps.clock, deps.stores.limits);

  const sessions = createTokenSealer(deps.config.jwt.secret, 'report-follow-up');
  const { messagesAfterClosureDays } = deps.config.reports;
  /** What the reporter sees, decrypted for the page. */
  const viewOf = async (report: ReportRecord, page = 1) => reporterView(await sealing.open(report), deps.clock.now(), messagesAfterClosureDays, page);

  /** The only way in for a reporter: the guard first (before any slow hash), then an `_id` lookup. */
  async function openByReceipt(receipt: unknown, client: string): Promise<ReportRecord> {
    await receiptGuard.check(client);
    const digits = parseReceipt(receipt);
    if (!digits) throw new ValidationError({ receipt: 'Enter the 16 digits of your receipt code.' });
    const report = await store.reportById(await reportIdFor(digits));
    if (!report) {
      await receiptGuard.fail(client);
      throw new ValidationError({ receipt: 'No report has this receipt code. Check the digits and try again.' });
    }
    return report;
  }

  /** A follow-up page's sealed session (the report's `_id`, never the receipt), or a 401 once it has lapsed. */
  async function openBySession(session: unknown): Promise<ReportRecord> {
    const reportId = sessions.open<string>(session, deps.clock.now());
    if (!reportId) {
      const message = `For your safety, this page forgets your report after ${FOLLOW_UP_SESSION_MS / MINUTE} minutes. Enter your receipt code again to open it.`;
      throw new BadRequestError(message, { receipt: message }, 'follow_up_lapsed');
    }
    return reportOf(store, reportId);
  }

  /** A reporter may write while the report is open, and for the configured days after it closed. */
  function checkWritable(report: ReportRecord, field: string) {
    if (reporterView(report, deps.clock.now(), messagesAfterClosureDays).canWrite) return;
    const message = report.erased
      ? 'The data of this report was deleted under the retention policy, so nothing more can be added.'
      : `This report was closed and no longer accepts messages or files (it did for ${messagesAfterClosureDays} days after closing). If something new has happened, please send a new report.`;
    throw new ConflictError(message, { [field]: message });
  }

  async function addMessage(report: ReportRecord, text: string) {
    checkWritable(report, 'text');
    await messages.post(report._id, 'reporter', null, text);
    if (report.caseId) await deps.cases.reporterWrote(report.caseId);
    return viewOf(await reportOf(store, report._id));
  }

  /** `refused`: files the upload set aside (too large): the others are added, then these are named. */
  async function addEvidence(report: ReportRecord, incoming: IncomingFile[], refused: string[] = []) {
    checkWritable(report, 'evidence');
    if (!incoming.length && !refused.length) throw new ValidationError({ evidence: 'Choose at least one file to add.' });
    if (incoming.length) {
      const { stored } = await evidence.storeAll(incoming, 'evidence', true);
      await evidence.append(report._id, await evidence.refsOf(report, stored, 'reporter', null), { kind: 'reporter', id: null });
    }
    if (refused.length) throw new ValidationError({ evidence: refused.join(' ') }, refused.join(' '));
    return viewOf(await reportOf(store, report._id));
  }

  return {
    /** Before a follow-up upload's body is read: a client locked out of receipts, or past its allowance, sends nothing. */
    async admitFollowUpUpload(args: { client: string }) {
      await receiptGuard.check(args.client);
      await evidence.admitUploadBatch(args.client);
    },

    async followUp(receipt: unknown, client: string, page = 1) {
      return viewOf(await openByReceipt(receipt, client), page);
    },

    reporterMessage: async (receipt: unknown, client: string, text: string) => addMessage(await openByReceipt(receipt, client), text),

    reporterEvidence: async (receipt: unknown, client: string, incoming: IncomingFile[]) => addEvidence(await openByReceipt(receipt, client), incoming),

    // -- the follow-up pages: the receipt is typed once, then a sealed session cookie names the report

    /** Checks the receipt; a session for the follow-up pages, valid FOLLOW_UP_SESSION_MS. */
    async openFollowUpSession(receipt: unknown, client: string): Promise<string> {
      const report = await openByReceipt(receipt, client);
      return sessions.seal(report._id, new Date(deps.clock.now().getTime() + FOLLOW_UP_SESSION_MS));
    },

    followUpBySession: async (session: unknown, page = 1) => viewOf(await openBySession(session), page),

    reporterMessageBySession: async (session: unknown, text: string) => addMessage(await openBySession(session), text),

    reporterEvidenceBySession: async (session: unknown, incoming: IncomingFile[], refused: string[] = []) => addEvidence(await openBySession(session), incoming, refused),
  };
}
