import crypto from 'node:crypto';
import { hashRaw } from '@node-rs/argon2';
import type { Clock } from '../../clock';
import { MAX_EVIDENCE, type ReportStatus } from '../../domain/reports';
import { TooManyRequestsError, ValidationError } from '../../errors';
import type { LimitsStore } from '../../store/limits';
import type { ReportRecord } from '../../store/reports';
import type { IncomingFile } from '../files';
import { hmac, MINUTE, reportOf, type ReportsDeps } from './context';
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

/** What a reporter may see: never links, case, registrations, customers, contact or other reports. */
function reporterView(report: ReportRecord, page = 1) {
  const evidence = report.evidence ?? [];
  return {
    receivedAt: report.receivedAt,
    status: report.status as ReportStatus,
    feedback: report.feedback?.text ? { text: report.feedback.text, at: report.feedback.at } : null,
    ...messagePage(report.messages ?? [], page),
    evidence: evidence.flatMap((e, i) => (e.addedBy === 'reporter' ? [{ name: evidenceNameOf(e, i), mediaType: e.mediaType, size: e.size, addedAt: e.addedAt }] : [])),
    canAddEvidence: evidence.length < MAX_EVIDENCE && !report.erased,
  };
}

/** The reporter's follow-up with a receipt: status, feedback, the conversation, more evidence. */
export function reportFollowUp(deps: ReportsDeps, parts: { evidence: ReportEvidence; messages: ReportMessages; reportIdFor: (digits: string) => Promise<string> }) {
  const { evidence, messages, reportIdFor } = parts;
  const store = deps.stores.reports;
  const receiptGuard = createReceiptGuard(deps.clock, deps.stores.limits);

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

  return {
    /** Before a follow-up upload's body is read: a client locked out of receipts, or past its allowance, sends nothing. */
    async admitFollowUpUpload(args: { client: string }) {
      await receiptGuard.check(args.client);
      await evidence.admitUploadBatch(args.client);
    },

    async followUp(receipt: unknown, client: string, page = 1) {
      return reporterView(await openByReceipt(receipt, client), page);
    },

    async reporterMessage(receipt: unknown, client: string, text: string) {
      const report = await openByReceipt(receipt, client);
      await messages.post(report._id, 'reporter', null, text);
      return reporterView(await reportOf(store, report._id));
    },

    async reporterEvidence(receipt: unknown, client: string, incoming: IncomingFile[]) {
      const report = await openByReceipt(receipt, client);
      if (!incoming.length) throw new ValidationError({ evidence: 'Choose at least one file to add.' });
      const { stored } = await evidence.storeAll(incoming, 'evidence', true);
      await evidence.append(report._id, evidence.refsOf(stored, 'reporter', null, (report.evidence ?? []).length), { kind: 'reporter', id: null });
      return reporterView(await reportOf(store, report._id));
    },
  };
}
