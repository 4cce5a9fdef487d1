import crypto from 'node:crypto';
import { hashRaw } from '@node-rs/argon2';
import type { Clock } from '../clock';
import type { Config } from '../config';
import type { LimitsStore } from '../store/limits';
import { BadRequestError, HttpError, NotFoundError, TooManyRequestsError, ValidationError } from '../errors';
import { MAX_EVIDENCE, MAX_MESSAGES, Report, UnclaimedEvidence, type HarmCategory, type ReportRecord, type ReportStatus, type ReporterKind } from '../../models/reports';
import type { AuditService } from './audit';
import type { CasesService } from './cases';
import type { CatalogueService } from './catalogue';
import type { FilesService, IncomingFile, StoredFile } from './files';
import type { FlagsService } from './flags';
import type { Logger } from '../logger';
import { countryQueryOf, mergeLinks, type LinkerService } from './linker';

/**
 * The public misuse-reporting channel: anonymous reports, evidence, receipts, follow-up.
 *
 * Called by the cases module (investigators; the caller checks access and audits reads):
 *   getReportForStaff(reportId): Promise<ReportRecord>            full report incl. contact, links, messages
 *   listMessages(reportId): Promise<Message[]>                     oldest first
 *   postInvestigatorMessage(reportId, userId, text): Promise<Message>
 *   setFeedback(reportId, text, userId): Promise<void>             what the reporter is shown
 *   setStatus(reportId, status, userId?): Promise<void>            received|acknowledged|under-investigation|closed
 *   addInvestigatorEvidence(reportId, file, userId): Promise<EvidenceRef>
 *   openEvidence(reportId, fileId): { stream, mediaType, size, name, sha256 }   name
 *       is the generic download name (`evidence-2.pdf`): the name a device gave a file is never sent
 *   confirmLink(reportId, linkIndex, confirmed, userId): Promise<void>
 *   deleteReporterData(reportId): Promise<{ evidenceFiles, messages }>   retention: contact,
 *       messages and evidence files really removed; the report keeps a trace (`erased`).
 *
 * Privacy: nothing about the sender's connection is stored with a report. Rate limits, the
 * receipt guard and used form tokens live in the database (every app instance shares them,
 * server/store/limits.ts) for at most their window, under `client`: a keyed hash of the
 * address that routes compute (server/middleware/rate-limit.ts), never the address.
 */

const MINUTE = 60_000;
/** A report form older than this is refused (and shown again with a fresh challenge). */
export const CHALLENGE_MAX_AGE_MS = 24 * 60 * MINUTE;
export const RECEIPT_FAILURES_PER_WINDOW = 10;
export const RECEIPT_WINDOW_MS = 15 * MINUTE;
export const RECEIPT_BASE_DELAY_MS = 1000;
export const RECEIPT_MAX_DELAY_MS = 60_000;
export const MESSAGES_PER_PAGE = 20;
/** Evidence uploads (multipart posts) one client may start in 10 minutes. */
export const UPLOADS_PER_SUBMISSION = 4;
/**
 * The background linking step starts this long after a report starts waiting for it, and
 * passes are at least this far apart: on FerretDB v1 a pass scans every registration (8.7 s
 * measured at 150,000), which slows every other request while it runs, so under a
 * burst of reports one scan serves all of them instead of one each.
 */
export const LINK_PASS_DELAY_MS = 60_000;
/** Reports finished by one pass: bounds the `$in` lists of its one query. */
export const LINK_PASS_MAX_REPORTS = 200;

export type EvidenceRef = Omit<StoredFile, 'originalName'> & {
  /** What the portal shows and downloads it as: `evidence-<n>.<ext>`, its place in the report. */
  name: string;
  /** The uploader's own file name, kept only when the reporter asked for it (a checkbox). */
  originalName: string | null;
  addedAt: Date;
  addedBy: 'reporter' | 'investigator';
  addedByUserId: string | null;
};
export type Message = ReportRecord['messages'][number];

export interface ReportInput {
  reporterKind: ReporterKind;
  contactName?: string;
  contactOrganisation?: string;
  contactEmail?: string;
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
  ongoing: 'yes' | 'no' | 'unknown';
  /** The reporter chose to keep the names their files had (by default only `evidence-1.jpg`, … are kept). */
  keepFileNames?: boolean;
}

const EXTENSIONS: Record<StoredFile['mediaType'], string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp', 'application/pdf': 'pdf' };

/**
 * File names say where a file came from (`IMG_20260114_Kibera.jpg`, `Scan of J. Doe's ID.pdf`),
 * so evidence is known by its place in the report; for reports saved before names were generic,
 * by the same rule.
 */
export const evidenceName = (mediaType: string, position: number) => `evidence-${position}.${EXTENSIONS[mediaType as StoredFile['mediaType']] ?? 'bin'}`;
const nameOf = (e: { name?: string | null; mediaType: string }, index: number) => e.name || evidenceName(e.mediaType, index + 1);

// ---------------------------------------------------------------- receipts

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

const hmac = (key: crypto.BinaryLike, data: string) => crypto.createHmac('sha256', key).update(data).digest();

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

// ---------------------------------------------------------------- receipt guessing

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

// ---------------------------------------------------------------- the service

export function createReportsService(deps: {
  config: Config;
  clock: Clock;
  stores: { limits: LimitsStore };
  logger?: Pick<Logger, 'error'>;
  /** LINK_PASS_DELAY_MS unless given (tests). */
  linkPassDelayMs?: number;
  files: FilesService;
  cases: CasesService;
  audit: AuditService;
  catalogue: Pick<CatalogueService, 'searchPublicModels'>;
  flags: Pick<FlagsService, 'rules' | 'recordOnCase'>;
  linker: Pick<LinkerService, 'linkDirect' | 'registrationLinksFor'>;
}) {
  const { config, clock, files, cases, audit, catalogue, flags } = deps;
  const { linkDirect, registrationLinksFor } = deps.linker;
  const reportIdFor = createReceiptHasher(config.jwt.secret);
  const { limits } = deps.stores;
  const challenge = createChallenge({ clock, secret: config.jwt.secret, ...config.reports, limits });
  const receiptGuard = createReceiptGuard(clock, limits);
  const keptKey = hmac(config.jwt.secret, 'downstream/report-kept-evidence');

  // -- the linker's second step (registrations in the report's country), off the request path

  const linkQueue = new Set<string>();
  let linkPass: Promise<void> | null = null;
  let linkTimer: NodeJS.Timeout | null = null;
  let lastPassEnded = 0;
  const linkDelay = deps.linkPassDelayMs ?? LINK_PASS_DELAY_MS;

  /** One pass: every queued report (up to the bound) gets its country links from one query. */
  async function runLinkPass(): Promise<void> {
    const ids = [...linkQueue].slice(0, LINK_PASS_MAX_REPORTS);
    const reports = (await Promise.all(ids.map((id) => Report.findById(id, { links: 1, where: 1, linking: 1 }).lean<ReportRecord>()))).filter(
      (r): r is ReportRecord => r !== null && r.linking === 'pending',
    );
    for (const id of ids) if (!reports.some((r) => r._id === id)) linkQueue.delete(id); // gone, or done elsewhere
    const queries = reports.map((r) => countryQueryOf(r.links ?? [], r.where?.country ?? ''));
    const asked = reports.flatMap((r, i) => (queries[i] ? [i] : []));
    const answers = await registrationLinksFor(asked.map((i) => queries[i]!));
    for (const [n, i] of asked.entries()) await finishLinks(reports[i]!, answers[n]!);
    for (const [i, r] of reports.entries()) if (!queries[i]) await finishLinks(r, []);
  }

  /**
   * Appends only links the report does not have yet (indexes of existing links, which
   * investigators confirm by, never move). By `_id` alone (any other filter is a scan of the
   * reports on FerretDB); `$addToSet` of the same computed links makes a repeated pass harmless.
   */
  async function finishLinks(report: ReportRecord, found: ReturnType<typeof mergeLinks>) {
    const have = new Set((report.links ?? []).map((l) => `${l.kind}|${l.targetId}`));
    const fresh = mergeLinks(found).filter((l) => !have.has(`${l.kind}|${l.targetId}`));
    await Report.updateOne({ _id: report._id }, { $addToSet: { links: { $each: fresh } }, $set: { linking: 'done', updatedAt: clock.now() } });
    linkQueue.delete(report._id);
  }

  /** Starts a pass LINK_PASS_DELAY_MS from now or from the end of the last one, whichever is later; errors keep the reports queued for the next. */
  function scheduleLinks() {
    if (linkPass || linkTimer || !linkQueue.size) return;
    const now = clock.now().getTime();
    const wait = Math.max(linkDelay, lastPassEnded + linkDelay - now);
    linkTimer = setTimeout(() => {
      linkTimer = null;
      linkPass = runLinkPass()
        .catch((err: unknown) => deps.logger?.error({ err }, 'report linking pass failed; the reports stay pending'))
        .finally(() => {
          linkPass = null;
          lastPassEnded = clock.now().getTime();
          scheduleLinks();
        });
    }, wait);
    linkTimer.unref();
  }

  // -- evidence carried between attempts of one form, signed and bound to its challenge nonce

  const signKept = (list: StoredFile[], nonce: string | null) => {
    if (!list.length || !nonce) return '';
    const body = Buffer.from(JSON.stringify(list)).toString('base64url');
    return `${body}.${hmac(keptKey, `${nonce}.${body}`).toString('base64url')}`;
  };

  const readKept = (token: unknown, nonce: string | null): StoredFile[] => {
    if (typeof token !== 'string' || !token || !nonce) return [];
    const [body, mac] = token.split('.');
    if (!body || !mac) return [];
    const expected = hmac(keptKey, `${nonce}.${body}`).toString('base64url');
    if (mac.length !== expected.length || !crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(expected))) return [];
    const list = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as StoredFile[];
    return list.filter((f) => files.exists(f.fileId)).slice(0, MAX_EVIDENCE);
  };

  /** Stores each file; a refused one is named, the others are kept. `strict` undoes all on a refusal. */
  async function storeAll(incoming: IncomingFile[], field: string, strict: boolean): Promise<{ stored: StoredFile[]; problems: string[] }> {
    const stored: StoredFile[] = [];
    const problems: string[] = [];
    for (const file of incoming) {
      try {
        stored.push(await files.store(file, field));
      } catch (err) {
        if (!(err instanceof HttpError) || err.status !== 400) {
          // e.g. the disk is full: the files of this batch already written must not stay behind.
          await Promise.all(stored.map((f) => files.remove(f.fileId)));
          throw err;
        }
        problems.push(err.message);
      }
    }
    if (strict && problems.length) {
      await Promise.all(stored.map((f) => files.remove(f.fileId)));
      throw new ValidationError({ [field]: problems.join(' ') }, problems.join(' '));
    }
    return { stored, problems };
  }

  /** `already`: files the report holds before these, so names continue its numbering. */
  const evidenceRefs = (list: StoredFile[], addedBy: 'reporter' | 'investigator', userId: string | null, already: number, keepNames = false): EvidenceRef[] =>
    list.map((f, i) => ({
      fileId: f.fileId,
      sha256: f.sha256,
      mediaType: f.mediaType,
      size: f.size,
      name: evidenceName(f.mediaType, already + i + 1),
      originalName: keepNames ? f.originalName : null,
      addedAt: clock.now(),
      addedBy,
      addedByUserId: userId,
    }));

  async function findReport(reportId: string): Promise<ReportRecord> {
    const report = await Report.findById(reportId).lean<ReportRecord>();
    if (!report) throw new NotFoundError('No such report.');
    return report;
  }

  /** The only way in for a reporter: the guard first (before any slow hash), then an `_id` lookup. */
  async function openByReceipt(receipt: unknown, client: string): Promise<ReportRecord> {
    await receiptGuard.check(client);
    const digits = parseReceipt(receipt);
    if (!digits) throw new ValidationError({ receipt: 'Enter the 16 digits of your receipt code.' });
    const report = await Report.findById(await reportIdFor(digits)).lean<ReportRecord>();
    if (!report) {
      await receiptGuard.fail(client);
      throw new ValidationError({ receipt: 'No report has this receipt code. Check the digits and try again.' });
    }
    return report;
  }

  /** What a reporter may see: never links, case, registrations, customers, contact or other reports. */
  function reporterView(report: ReportRecord, page = 1) {
    const messages = report.messages ?? [];
    const pages = Math.max(1, Math.ceil(messages.length / MESSAGES_PER_PAGE));
    const current = Math.min(Math.max(1, page), pages);
    const end = messages.length - (current - 1) * MESSAGES_PER_PAGE;
    return {
      receivedAt: report.receivedAt,
      status: report.status as ReportStatus,
      feedback: report.feedback?.text ? { text: report.feedback.text, at: report.feedback.at } : null,
      // Newest page first; within a page, oldest first, as a conversation reads.
      messages: messages.slice(Math.max(0, end - MESSAGES_PER_PAGE), end).map((m) => ({ from: m.from, text: m.text, at: m.at })),
      messagePage: { page: current, pages, total: messages.length },
      evidence: (report.evidence ?? []).flatMap((e, i) => (e.addedBy === 'reporter' ? [{ name: nameOf(e, i), mediaType: e.mediaType, size: e.size, addedAt: e.addedAt }] : [])),
      canAddEvidence: (report.evidence ?? []).length < MAX_EVIDENCE && !report.erased,
    };
  }

  async function pushMessage(reportId: string, from: 'reporter' | 'investigator', userId: string | null, text: string) {
    const message = { _id: `msg_${crypto.randomBytes(10).toString('hex')}`, from, userId, text, at: clock.now() };
    const updated = await Report.updateOne(
      { _id: reportId, messageCount: { $lt: MAX_MESSAGES } },
      { $push: { messages: message }, $inc: { messageCount: 1 }, $set: { updatedAt: message.at } },
    );
    if (updated.matchedCount === 0) {
      await findReport(reportId); // 404 if it is gone
      throw new ValidationError({ text: `This conversation has reached ${MAX_MESSAGES} messages.` });
    }
    await audit.record({ actorKind: from === 'reporter' ? 'reporter' : 'user', actorId: userId, action: 'report.message-added', subjectKind: 'report', subjectId: reportId, detail: { from } });
    return message;
  }

  /** Appends evidence while the report stays under MAX_EVIDENCE, atomically by `_id`. */
  async function pushEvidence(reportId: string, refs: EvidenceRef[], actor: { kind: 'reporter' | 'user'; id: string | null }) {
    const updated = await Report.updateOne(
      { _id: reportId, erased: null, [`evidence.${MAX_EVIDENCE - refs.length}`]: { $exists: false } },
      { $push: { evidence: { $each: refs } }, $set: { updatedAt: clock.now() } },
    );
    if (updated.matchedCount === 0) {
      await Promise.all(refs.map((r) => files.remove(r.fileId)));
      await findReport(reportId);
      throw new ValidationError({ evidence: `A report can hold at most ${MAX_EVIDENCE} files.` });
    }
    await audit.record({ actorKind: actor.kind, actorId: actor.id, action: 'report.evidence-added', subjectKind: 'report', subjectId: reportId, detail: { files: refs.map((r) => r.sha256) } });
  }

  async function admitUploadBatch(client: string) {
    const batch = await limits.hitWindow('upload', client, 10 * MINUTE, clock.now());
    if (batch.count > config.reports.submissionsPer10Min * UPLOADS_PER_SUBMISSION) throw new TooManyRequestsError('Too many uploads were sent from here in the last minutes. Please try again in 10 minutes.');
  }

  const harmTitle = (input: ReportInput) => (input.harmCategories.length ? input.harmCategories.join(', ') : 'misuse');

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
      await admitUploadBatch(args.client);
    },

    /** Before a follow-up upload's body is read: a client locked out of receipts, or past its allowance, sends nothing. */
    async admitFollowUpUpload(args: { client: string }) {
      await receiptGuard.check(args.client);
      await admitUploadBatch(args.client);
    },

    /** A fresh form token for the report form (page or API). */
    newChallenge: () => ({ token: challenge.issue(), powBits: config.reports.powBits, minFillSeconds: config.reports.minFillSeconds }),

    /**
     * What the report form carries between attempts: the challenge (kept while valid, so the
     * wait keeps counting) and the evidence already accepted, re-signed for that challenge.
     */
    async formState(body: { challenge?: unknown; keptEvidence?: unknown } | undefined, accepted?: StoredFile[]) {
      const kept = accepted ?? readKept(body?.keptEvidence, challenge.nonceOf(body?.challenge));
      const token = await challenge.reuse(body?.challenge);
      return { challenge: token, powBits: config.reports.powBits, kept, keptEvidence: signKept(kept, challenge.nonceOf(token)) };
    },

    /**
     * Step one of a submission: passes the challenge, then stores the new files next to those
     * an earlier attempt of the same form accepted. Refused files are named in `problems`
     * (page) or refuse the whole request (`strict`, API), but never lose the accepted ones.
     */
    async acceptEvidence(args: { challenge: unknown; pow: unknown; keptEvidence?: unknown; files: IncomingFile[]; strict?: boolean }) {
      await challenge.verify(args.challenge, args.pow);
      const kept = readKept(args.keptEvidence, challenge.nonceOf(args.challenge));
      const max = config.uploads.maxFiles;
      if (kept.length + args.files.length > max) {
        throw new HttpError(413, 'upload_limit_file_count', `A report can carry at most ${max} files; ${kept.length} already attached.`, {
          evidence: `Send at most ${max - kept.length} more file(s): at most ${max} per report.`,
        });
      }
      const { stored, problems } = await storeAll(args.files, 'evidence', args.strict ?? false);
      if (stored.length) await UnclaimedEvidence.insertMany(stored.map((f) => ({ _id: f.fileId, storedAt: clock.now() })));
      return { files: [...kept, ...stored], problems };
    },

    /**
     * Step two: files a validated report with the evidence of step one; links it, opens or
     * attaches its case; returns the receipt, the only time it exists outside a hash.
     */
    async submit(input: ReportInput, evidence: { files: StoredFile[]; problems: string[] }, args: { challenge: string; client: string }) {
      if (evidence.problems.length) throw new ValidationError({ evidence: evidence.problems.join(' ') }, evidence.problems.join(' '));
      checkDates(input);
      // Counted before the form token is spent, on every instance alike.
      const sent = await limits.hitWindow('report', args.client, 10 * MINUTE, clock.now());
      if (sent.count > config.reports.submissionsPer10Min) throw new TooManyRequestsError('Too many reports were sent from here in the last minutes. Please try again in 10 minutes.');
      await challenge.consume(args.challenge);

      const now = clock.now();
      const contact = { name: input.contactName ?? '', organisation: input.contactOrganisation ?? '', email: input.contactEmail ?? '' };
      const anonymous = !contact.name && !contact.organisation && !contact.email;
      // Unit, registration and model links now (`_id` lookups); registrations of those models
      // in the country later, in the background (a scan on FerretDB): `linking` says which.
      const linked = await linkDirect({ serials: input.serials, modelText: input.modelText ?? '', country: input.country });

      const refs = evidenceRefs(evidence.files, 'reporter', null, 0, input.keepFileNames);
      let receipt = '';
      let reportId = '';
      for (let attempt = 0; !reportId && attempt < 3; attempt++) {
        receipt = newReceipt();
        const id = await reportIdFor(receipt);
        try {
          await Report.create({
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
            receivedAt: now,
            updatedAt: now,
          });
          reportId = id;
          // Queued as soon as it is saved: the rest of this request failing must not strand it.
          if (linked.pending) linkQueue.add(id);
        } catch (err) {
          if ((err as { code?: number }).code !== 11000) throw err; // a receipt collision: draw again
        }
      }
      if (!reportId) throw new Error('could not draw a free receipt');
      // Claimed: by `_id` one by one ($in scans on FerretDB). Best effort: the clean-up keeps any
      // file a report holds, so a failure here must not fail a report that is saved.
      await Promise.all(evidence.files.map((f) => UnclaimedEvidence.deleteOne({ _id: f.fileId }))).catch((err: unknown) =>
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
      await Report.updateOne({ _id: reportId }, { $set: { caseId } });
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
        detail: { caseId, evidenceFiles: evidence.files.length, links: linked.links.length },
      });
      scheduleLinks();
      return { receipt: formatReceipt(receipt), reportId, caseId, receivedAt: now, evidence: refs };
    },

    /**
     * Removes evidence files a report form stored and no report took, once that form has
     * expired (its challenge, which carries them, lives CHALLENGE_MAX_AGE_MS): abandoned forms
     * and API submissions refused after their files were stored. A file some report names is
     * kept whatever its record says. Off the request path (hourly): scans the unclaimed
     * records, then the reports for the candidates.
     */
    async removeUnclaimedEvidence(): Promise<{ removed: number; kept: number }> {
      const cutoff = new Date(clock.now().getTime() - CHALLENGE_MAX_AGE_MS - 60 * MINUTE);
      const candidates = (await UnclaimedEvidence.find({ storedAt: { $lt: cutoff } }, { _id: 1 }).limit(1_000).lean()).map((u) => u._id);
      if (!candidates.length) return { removed: 0, kept: 0 };
      const referenced = new Set(
        (await Report.find({ 'evidence.fileId': { $in: candidates } }, { 'evidence.fileId': 1 }).lean()).flatMap((r) => (r.evidence ?? []).map((e) => e.fileId)),
      );
      for (const fileId of candidates) {
        if (!referenced.has(fileId)) await files.remove(fileId);
        await UnclaimedEvidence.deleteOne({ _id: fileId });
      }
      const kept = candidates.filter((id) => referenced.has(id)).length;
      return { removed: candidates.length - kept, kept };
    },

    /**
     * At start: queues the reports a stopped process left with their linking step pending
     * (found by a scan of the reports collection, which is small) for the background pass.
     */
    async resumePendingLinks() {
      for (const r of await Report.find({ linking: 'pending' }, { _id: 1 }).lean()) linkQueue.add(r._id);
      scheduleLinks();
      return linkQueue.size;
    },

    /** Runs the background linking now for every report still pending; resolves when done (tests, scripts). */
    async completePendingLinks() {
      for (const r of await Report.find({ linking: 'pending' }, { _id: 1 }).lean()) linkQueue.add(r._id);
      if (linkTimer) {
        clearTimeout(linkTimer);
        linkTimer = null;
      }
      while (linkQueue.size) {
        if (linkPass) await linkPass;
        else {
          // A failure rejects here (the reports stay pending); each pass removes what it finished.
          linkPass = runLinkPass().finally(() => {
            linkPass = null;
            lastPassEnded = clock.now().getTime();
          });
          await linkPass;
        }
      }
    },

    /** Public model names (and SKUs) for the report form's picker. */
    async publicModels(q = '', limit = 500) {
      return catalogue.searchPublicModels(q, limit);
    },

    // -- the reporter, with a receipt

    async followUp(receipt: unknown, client: string, page = 1) {
      return reporterView(await openByReceipt(receipt, client), page);
    },

    async reporterMessage(receipt: unknown, client: string, text: string) {
      const report = await openByReceipt(receipt, client);
      await pushMessage(report._id, 'reporter', null, text);
      return reporterView(await findReport(report._id));
    },

    async reporterEvidence(receipt: unknown, client: string, incoming: IncomingFile[]) {
      const report = await openByReceipt(receipt, client);
      if (!incoming.length) throw new ValidationError({ evidence: 'Choose at least one file to add.' });
      const { stored } = await storeAll(incoming, 'evidence', true);
      await pushEvidence(report._id, evidenceRefs(stored, 'reporter', null, (report.evidence ?? []).length), { kind: 'reporter', id: null });
      return reporterView(await findReport(report._id));
    },

    // -- investigators (the cases module checks access and audits reads)

    /** Evidence carries its generic `name` (derived for reports older than it). */
    async getReportForStaff(reportId: string): Promise<ReportRecord> {
      const report = await findReport(reportId);
      return { ...report, evidence: (report.evidence ?? []).map((e, i) => ({ ...e, name: nameOf(e, i) })) } as ReportRecord;
    },

    async listMessages(reportId: string): Promise<Message[]> {
      return (await findReport(reportId)).messages ?? [];
    },

    postInvestigatorMessage: (reportId: string, userId: string, text: string) => pushMessage(reportId, 'investigator', userId, text),

    async setFeedback(reportId: string, text: string, userId: string) {
      const updated = await Report.updateOne({ _id: reportId }, { $set: { feedback: { text, at: clock.now(), byUserId: userId }, updatedAt: clock.now() } });
      if (updated.matchedCount === 0) throw new NotFoundError('No such report.');
      await audit.record({ actorKind: 'user', actorId: userId, action: 'report.feedback-shared', subjectKind: 'report', subjectId: reportId });
    },

    async setStatus(reportId: string, status: ReportStatus, userId: string | null = null) {
      const before = await findReport(reportId);
      if (before.status === status) return;
      await Report.updateOne({ _id: reportId }, { $set: { status, updatedAt: clock.now() } });
      await audit.record({ actorKind: userId ? 'user' : 'system', actorId: userId, action: 'report.status-changed', subjectKind: 'report', subjectId: reportId, detail: { from: before.status, to: status } });
    },

    async addInvestigatorEvidence(reportId: string, file: IncomingFile, userId: string): Promise<EvidenceRef> {
      const report = await findReport(reportId);
      const { stored } = await storeAll([file], 'evidence', true);
      const [ref] = evidenceRefs(stored, 'investigator', userId, (report.evidence ?? []).length);
      await pushEvidence(reportId, [ref!], { kind: 'user', id: userId });
      return ref!;
    },

    async openEvidence(reportId: string, fileId: string) {
      const report = await findReport(reportId);
      const index = (report.evidence ?? []).findIndex((e) => e.fileId === fileId);
      const ref = report.evidence?.[index];
      if (!ref) throw new NotFoundError('No such file in this report.');
      return { stream: files.open(fileId), mediaType: ref.mediaType, size: ref.size, name: nameOf(ref, index), sha256: ref.sha256 };
    },

    async confirmLink(reportId: string, linkIndex: number, confirmed: boolean, userId: string) {
      const report = await findReport(reportId);
      const link = (report.links ?? [])[linkIndex];
      if (!Number.isInteger(linkIndex) || !link) throw new ValidationError({ linkIndex: 'No such link on this report.' });
      await Report.updateOne(
        { _id: reportId },
        { $set: { [`links.${linkIndex}.confirmed`]: confirmed, [`links.${linkIndex}.confirmedBy`]: userId, [`links.${linkIndex}.confirmedAt`]: clock.now(), updatedAt: clock.now() } },
      );
      await audit.record({ actorKind: 'user', actorId: userId, action: confirmed ? 'report.link-confirmed' : 'report.link-rejected', subjectKind: 'report', subjectId: reportId, detail: { kind: link.kind, targetId: link.targetId } });
    },

    /** Retention: the reporter's contact, messages and evidence files go; a trace stays. */
    async deleteReporterData(reportId: string) {
      const report = await findReport(reportId);
      const evidence = report.evidence ?? [];
      await Promise.all(evidence.map((e) => files.remove(e.fileId)));
      const erased = { at: clock.now(), evidenceFiles: evidence.length, messages: (report.messages ?? []).length, evidenceSha256: evidence.map((e) => e.sha256) };
      await Report.updateOne({ _id: reportId }, { $set: { contact: null, messages: [], messageCount: 0, evidence: [], erased, updatedAt: erased.at } });
      await audit.record({ actorKind: 'system', action: 'report.reporter-data-deleted', subjectKind: 'report', subjectId: reportId, detail: { evidenceFiles: erased.evidenceFiles, messages: erased.messages } });
      return { evidenceFiles: erased.evidenceFiles, messages: erased.messages };
    },
  };
}

export type ReportsService = ReturnType<typeof createReportsService>;
