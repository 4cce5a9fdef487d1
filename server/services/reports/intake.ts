import crypto from 'node:crypto';
import type { Clock } from '../../clock';
import type { HarmCategory, Ongoing, ReporterKind } from '../../domain/reports';
import { BadRequestError, HttpError, TooManyRequestsError, ValidationError } from '../../errors';
import type { LimitsStore } from '../../store/limits';
import type { IncomingFile } from '../files';
import type { PendingFile } from './evidence-files';
import type { ReportSealing } from './sealing';
import { createTokenSealer } from '../../crypto/sealed';
import { hmac, MINUTE, type ReportsDeps } from './context';
import type { EvidenceRef, ReportEvidence } from './evidence';
import { formatReceipt, newReceipt } from './receipts';

/** A report form older than this is refused (and shown again with a fresh challenge). */
export const CHALLENGE_MAX_AGE_MS = 24 * 60 * MINUTE;
/** Receipts drawn before giving up: a collision among 10^16 is already unheard of. */
const RECEIPT_DRAWS = 3;
/**
 * How long the receipt page shows the receipt again (a reload, the back button), from a sealed
 * cookie in the reporter's browser: the receipt itself is never stored on the server.
 */
export const RECEIPT_SHOWN_AGAIN_MS = 10 * MINUTE;

/** What the receipt page shows, sealed in the reporter's browser for RECEIPT_SHOWN_AGAIN_MS. */
export interface ShownReceipt {
  receipt: string;
  evidence: string[];
}

export interface ReportInput {
  reporterKind: ReporterKind;
  contactName?: string;
  contactOrganisation?: string;
  contactEmail?: string;
  /** The reporter asked to be told by e-mail when there is news (never what it is). */
  contactNews?: boolean;
  serials: string[];
  modelText?: string;
  deviceDescription?: string;
  country: string;
  place?: string;
  from?: Date | null;
  until?: Date | null;
  harmCategories: HarmCategory[];
  description: string;
  affected?: string;
  ongoing: Ongoing;
  /** The reporter chose to keep the names their files had (by default only `evidence-1.jpg`, … are kept). */
  keepFileNames?: boolean;
}

// ---------------------------------------------------------------- anti-spam challenge

const leadingZeroBits = (buf: Buffer) => {
  let bits = 0;
  for (const byte of buf) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
};

/** The hashcash check `public/js/report-pow.js` solves: sha256(`token:counter`) starts with `bits` zero bits. */
export function powSolves(token: string, pow: unknown, bits: number): boolean {
  if (bits === 0) return true;
  if (typeof pow !== 'string' || !/^\d{1,16}$/.test(pow)) return false;
  return leadingZeroBits(crypto.createHash('sha256').update(`${token}:${pow}`).digest()) >= bits;
}

/**
 * A signed, time-stamped form token. Accepted once, and only after `minFillSeconds` (the slow
 * path that needs no JavaScript) or with a valid proof of work (the fast path). Used nonces are
 * kept in the database (any instance refuses a token another one accepted) until the token
 * could no longer be accepted anyway.
 */
export function createChallenge(deps: { clock: Clock; secret: string; minFillSeconds: number; powBits: number; limits: LimitsStore }) {
  const key = hmac(deps.secret, 'downstream/report-challenge');
  const sign = (body: string) => hmac(key, body).toString('base64url').slice(0, 27);

  /** Signed by us and not expired; whether it was used is `read`'s question. */
  const parse = (token: unknown): { issuedAt: number; nonce: string } | null => {
    if (typeof token !== 'string' || token.length > 100) return null;
    const [t, nonce, mac] = token.split('.');
    if (!t || !nonce || !mac || !crypto.timingSafeEqual(Buffer.from(sign(`${t}.${nonce}`)), Buffer.from(mac.padEnd(27).slice(0, 27)))) return null;
    const issuedAt = parseInt(t, 36);
    const age = deps.clock.now().getTime() - issuedAt;
    if (!Number.isFinite(issuedAt) || age < 0 || age > CHALLENGE_MAX_AGE_MS) return null;
    return { issuedAt, nonce };
  };

  const read = async (token: unknown) => {
    const parsed = parse(token);
    return parsed && !(await deps.limits.nonceUsed(parsed.nonce)) ? parsed : null;
  };

  const expired = () => {
    const message = 'This form has expired. Your entries are kept: please check them and send the form again.';
    return new BadRequestError(message, { challenge: message }, 'challenge_invalid');
  };

  const issue = () => {
    const body = `${deps.clock.now().getTime().toString(36)}.${crypto.randomBytes(12).toString('base64url')}`;
    return `${body}.${sign(body)}`;
  };

  return {
    issue,
    powBits: deps.powBits,
    nonceOf: (token: unknown) => parse(token)?.nonce ?? null,
    /** A genuine token whose report was filed: a reload, a back button or a double click sent it again. */
    wasUsed: async (token: unknown) => {
      const parsed = parse(token);
      return parsed !== null && (await deps.limits.nonceUsed(parsed.nonce));
    },
    /** The same token while it can still be used (its wait keeps counting), else a new one. */
    reuse: async (token: unknown) => ((await read(token)) ? (token as string) : issue()),
    /** Throws a 400 unless the token is ours, unexpired and unused: checked before an upload's body is read. */
    async admit(token: unknown) {
      if (await read(token)) return;
      const message = 'This form has expired or was already sent, so its files were not received. Please open the report form again.';
      throw new BadRequestError(message, { challenge: message }, 'challenge_invalid');
    },
    /** Throws a 400 (expired or forged) or 429 (sent too soon) naming the `challenge` field. */
    async verify(token: unknown, pow: unknown) {
      const parsed = await read(token);
      if (!parsed) throw expired();
      if (powSolves(token as string, pow, deps.powBits)) return;
      if (deps.clock.now().getTime() - parsed.issuedAt >= deps.minFillSeconds * 1000) return;
      const message = `This form was sent within ${deps.minFillSeconds} seconds of opening it, which is how automated spam behaves. Your entries are kept: please wait a few seconds and send it again.`;
      throw new HttpError(429, 'sent_too_soon', message, { challenge: message });
    },
    async consume(token: string) {
      const parsed = parse(token);
      const fresh = parsed && (await deps.limits.useNonce(parsed.nonce, new Date(parsed.issuedAt + CHALLENGE_MAX_AGE_MS), deps.clock.now()));
      if (!fresh) throw new BadRequestError('This form was already sent.', { challenge: 'This form was already sent.' }, 'challenge_invalid');
    },
  };
}

// ---------------------------------------------------------------- the form and its submission

const harmTitle = (input: ReportInput) => (input.harmCategories.length ? input.harmCategories.join(', ') : 'misuse');

/** The report form: its challenge, its evidence, and filing the report with its case. */
export function reportIntake(deps: ReportsDeps, parts: { evidence: ReportEvidence; sealing: ReportSealing; reportIdFor: (digits: string) => Promise<string> }) {
  const { config, clock, cases, audit, catalogue, flags, linker } = deps;
  const { evidence, sealing, reportIdFor } = parts;
  const { limits, reports: store } = deps.stores;
  const challenge = createChallenge({ clock, secret: config.jwt.secret, ...config.reports, limits });
  const receiptTickets = createTokenSealer(config.jwt.secret, 'report-receipt');

  /** The files an earlier attempt of this form accepted, minus those the reporter chose to remove. */
  function keptOf(body: { challenge?: unknown; keptEvidence?: unknown; removeEvidence?: unknown }): PendingFile[] {
    const removed = new Set([body.removeEvidence ?? []].flat().map(String));
    return evidence.readKept(body.keptEvidence, challenge.nonceOf(body.challenge)).filter((f) => !removed.has(f.fileId));
  }

  function checkDates(input: ReportInput) {
    const today = clock.now();
    if (input.from && input.from > today) throw new ValidationError({ from: 'The date cannot be in the future.' });
    if (input.until && input.until > today) throw new ValidationError({ until: 'The date cannot be in the future.' });
    if (input.from && input.until && input.until < input.from) throw new ValidationError({ until: 'The end of the period must be after its start.' });
  }

  return {
    /**
     * Before an evidence upload's body is read: the form token must be live (a request without
     * one never gets to send megabytes), and the client within its upload allowance.
     */
    async admitReportUpload(args: { challenge: unknown; client: string }) {
      await challenge.admit(args.challenge);
      await evidence.admitUploadBatch(args.client);
    },

    /** True when this form's report was already filed: the answer is then the receipt page, never a second report. */
    formAlreadySent: (token: unknown) => challenge.wasUsed(token),

    /** The receipt page's sealed cookie: the receipt of a report just filed, readable for RECEIPT_SHOWN_AGAIN_MS. */
    receiptTicket: (filed: { receipt: string; evidence: Array<{ name: string }> }) =>
      receiptTickets.seal<ShownReceipt>({ receipt: filed.receipt, evidence: filed.evidence.map((e) => e.name) }, new Date(clock.now().getTime() + RECEIPT_SHOWN_AGAIN_MS)),

    /** The receipt a ticket holds, or null once it has expired (or was never ours). */
    shownReceipt: (ticket: unknown) => receiptTickets.open<ShownReceipt>(ticket, clock.now()),

    /** A fresh form token for the report form (page or API). */
    newChallenge: () => ({ token: challenge.issue(), powBits: config.reports.powBits, minFillSeconds: config.reports.minFillSeconds }),

    /**
     * What the report form carries between attempts: the challenge (kept while valid, so the
     * wait keeps counting) and the evidence already accepted, re-signed for that challenge.
     */
    async formState(body: { challenge?: unknown; keptEvidence?: unknown; removeEvidence?: unknown } | undefined, accepted?: PendingFile[]) {
      const kept = accepted ?? keptOf(body ?? {});
      const token = await challenge.reuse(body?.challenge);
      return { challenge: token, powBits: config.reports.powBits, kept, keptEvidence: evidence.signKept(kept, challenge.nonceOf(token)) };
    },

    /**
     * Step one of a submission: stores the new files next to those an earlier attempt of the
     * same form accepted. Refused files are named in `problems` (page) or refuse the whole
     * request (`strict`, API), but never lose the accepted ones. The challenge is checked by
     * `submit`, after this: a form sent too early keeps the files it carried (an upload's token
     * was already found live before its body was read).
     */
    async acceptEvidence(args: { challenge: unknown; keptEvidence?: unknown; removeEvidence?: unknown; files: IncomingFile[]; refused?: string[]; strict?: boolean }) {
      const kept = keptOf(args);
      const max = config.uploads.maxFiles;
      if (kept.length + args.files.length > max) {
        throw new HttpError(413, 'upload_limit_file_count', `A report can carry at most ${max} files; ${kept.length} already attached.`, {
          evidence: `Send at most ${max - kept.length} more file(s): at most ${max} per report.`,
        });
      }
      const { stored, problems } = await evidence.storeAll(args.files, 'evidence', args.strict ?? false);
      await store.noteUnclaimedEvidence(stored.map((f) => f.fileId), clock.now());
      // `refused`: files the upload set aside (too large), named with the others refused.
      return { files: [...kept, ...stored], problems: [...(args.refused ?? []), ...problems] };
    },

    /**
     * Step two: files a validated report with the evidence of step one; links it, opens or
     * attaches its case; returns the receipt, the only time it exists outside a hash.
     */
    async submit(input: ReportInput, accepted: { files: PendingFile[]; problems: string[] }, args: { challenge: string; pow?: unknown; client: string }) {
      await challenge.verify(args.challenge, args.pow);
      if (accepted.problems.length) throw new ValidationError({ evidence: accepted.problems.join(' ') }, accepted.problems.join(' '));
      checkDates(input);
      // Counted before the form token is spent, on every instance alike.
      const sent = await limits.hitWindow('report', args.client, 10 * MINUTE, clock.now());
      if (sent.count > config.reports.submissionsPer10Min) throw new TooManyRequestsError('Too many reports were sent from here in the last minutes. Please try again in 10 minutes.');
      await challenge.consume(args.challenge);

      const now = clock.now();
      const contact = { name: input.contactName ?? '', organisation: input.contactOrganisation ?? '', email: input.contactEmail ?? '', newsByEmail: Boolean(input.contactEmail && input.contactNews) };
      const anonymous = !contact.name && !contact.organisation && !contact.email;
      // Unit, registration and model links now (`_id` lookups); registrations of those models
      // in the country later, by the report-links job: `linking` says which.
      const linked = await linker.linkDirect({ serials: input.serials, modelText: input.modelText ?? '', country: input.country });

      let receipt = '';
      let reportId = '';
      let refs: EvidenceRef[] = [];
      for (let draw = 0; !reportId && draw < RECEIPT_DRAWS; draw++) {
        const digits = newReceipt();
        const id = await reportIdFor(digits);
        // The data key first, under the same `_id`: a report never exists without the key that opens it.
        const dataKey = await sealing.createDataKey(id);
        if (!dataKey) continue;
        refs = evidence.refsFor(id, dataKey, accepted.files, 'reporter', null, 0, input.keepFileNames);
        const saved = await store.insertReport(sealing.sealNew(id, dataKey, {
          _id: id,
          reporterKind: input.reporterKind,
          anonymous,
          contact: anonymous ? null : contact,
          product: { serials: input.serials, modelText: input.modelText ?? '', deviceDescription: input.deviceDescription ?? '' },
          where: { country: input.country, place: input.place ?? '' },
          when: { from: input.from ?? null, until: input.until ?? null },
          what: { harmCategories: input.harmCategories, description: input.description, affected: input.affected ?? '', ongoing: input.ongoing },
          evidence: refs,
          links: linked.links,
          linking: linked.pending ? 'pending' : 'done',
          status: 'received',
          sealed: true,
          receivedAt: now,
          updatedAt: now,
        }));
        if (saved) [receipt, reportId] = [digits, id];
      }
      if (!reportId) throw new Error('could not draw a free receipt');
      // Best effort: the clean-up keeps any file a report holds, so a failure here must not
      // fail a report that is saved.
      await store.claimEvidence(accepted.files.map((f) => f.fileId)).catch((err: unknown) =>
        deps.logger?.error({ err, reportId }, 'evidence of a filed report not marked as claimed; the clean-up will keep it'),
      );

      const where = [linked.unitId ?? linked.modelId, input.country].filter(Boolean).join(', ');
      const { caseId } = await cases.openOrAttachForReport({
        id: reportId,
        receivedAt: now,
        title: `Misuse report (${harmTitle(input)}): ${where}`.slice(0, 300),
        unitId: linked.unitId,
        modelId: linked.modelId,
        serial: input.serials[0] ?? null,
        country: input.country,
      });
      await store.setCaseOfReport(reportId, caseId);
      const hit = flags.rules.misuseReport(linked, input.harmCategories);
      if (hit) {
        const subject = { unitId: linked.unitId, modelId: linked.modelId, serial: linked.unitId ? (input.serials[0] ?? null) : null, country: input.country };
        await flags.recordOnCase(hit, subject, { kind: 'report', id: reportId }, caseId, `flg_${reportId}`);
      }
      await audit.record({
        actorKind: 'reporter',
        action: 'report.received',
        subjectKind: 'report',
        subjectId: reportId,
        detail: { caseId, evidenceFiles: accepted.files.length, links: linked.links.length },
      });
      return { receipt: formatReceipt(receipt), reportId, caseId, receivedAt: now, evidence: refs };
    },

    /** Public model names (and SKUs) for the report form's picker. */
    publicModels: (q = '', limit = 500) => catalogue.searchPublicModels(q, limit),
  };
}
