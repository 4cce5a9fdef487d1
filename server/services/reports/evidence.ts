import crypto from 'node:crypto';
import { MAX_EVIDENCE, type ReportParty } from '../../domain/reports';
import { HttpError, TooManyRequestsError, ValidationError } from '../../errors';
import type { ReportRecord } from '../../store/reports';
import type { IncomingFile, StoredFile } from '../files';
import { hmac, MINUTE, reportOf, type ReportsDeps } from './context';
import type { PendingFile } from './evidence-files';
import type { ReportSealing } from './sealing';
import { CHALLENGE_MAX_AGE_MS } from './intake';

/** Evidence uploads (multipart posts) one client may start in 10 minutes. */
export const UPLOADS_PER_SUBMISSION = 4;
/** Unclaimed files one clean-up run looks at. */
const CLEAN_UP_BATCH = 1_000;

export type EvidenceRef = Omit<StoredFile, 'originalName'> & {
  /** What the portal shows and downloads it as: `evidence-<n>.<ext>`, its place in the report. */
  name: string;
  /** The uploader's own file name, kept only when the reporter asked for it (a checkbox). */
  originalName: string | null;
  addedAt: Date;
  addedBy: ReportParty;
  addedByUserId: string | null;
  /** The file's key sealed by the report's data key (null: a report still in the clear). */
  key: string | null;
};

const EXTENSIONS: Record<StoredFile['mediaType'], string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp', 'application/pdf': 'pdf' };

/**
 * File names say where a file came from (`IMG_20260114_Kibera.jpg`, `Scan of J. Doe's ID.pdf`),
 * so evidence is known by its place in the report; for reports saved before names were generic,
 * by the same rule.
 */
export const evidenceName = (mediaType: string, position: number) => `evidence-${position}.${EXTENSIONS[mediaType as StoredFile['mediaType']] ?? 'bin'}`;
export const evidenceNameOf = (e: { name?: string | null; mediaType: string }, index: number) => e.name || evidenceName(e.mediaType, index + 1);

/** Storing, carrying, appending and cleaning up evidence files; used by intake, follow-up and staff. */
export function reportEvidence(deps: ReportsDeps, sealing: ReportSealing) {
  const { config, clock, audit } = deps;
  const { files } = sealing;
  const { limits, reports: store } = deps.stores;
  const keptKey = hmac(config.jwt.secret, 'downstream/report-kept-evidence');

  /** A new report's refs (`dataKey`: its data key, which seals each file's key). */
  const refsFor = (reportId: string, dataKey: Buffer | null, list: PendingFile[], addedBy: ReportParty, userId: string | null, already: number, keepNames = false): EvidenceRef[] =>
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
      key: sealing.fileKeyFor(reportId, dataKey, f),
    }));

  return {
    // -- evidence carried between attempts of one form, signed and bound to its challenge nonce

    signKept(list: PendingFile[], nonce: string | null) {
      if (!list.length || !nonce) return '';
      const body = Buffer.from(JSON.stringify(list)).toString('base64url');
      return `${body}.${hmac(keptKey, `${nonce}.${body}`).toString('base64url')}`;
    },

    readKept(token: unknown, nonce: string | null): PendingFile[] {
      if (typeof token !== 'string' || !token || !nonce) return [];
      const [body, mac] = token.split('.');
      if (!body || !mac) return [];
      const expected = hmac(keptKey, `${nonce}.${body}`).toString('base64url');
      if (mac.length !== expected.length || !crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(expected))) return [];
      const list = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as PendingFile[];
      return list.filter((f) => files.exists(f.fileId)).slice(0, MAX_EVIDENCE);
    },

    /** Stores each file; a refused one is named, the others are kept. `strict` undoes all on a refusal. */
    async storeAll(incoming: IncomingFile[], field: string, strict: boolean): Promise<{ stored: PendingFile[]; problems: string[] }> {
      const stored: PendingFile[] = [];
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
    },

    refsFor,

    /** Refs of files added to an existing report; names continue its numbering. */
    async refsOf(report: ReportRecord, list: PendingFile[], addedBy: ReportParty, userId: string | null): Promise<EvidenceRef[]> {
      return refsFor(report._id, await sealing.writableKeyOf(report), list, addedBy, userId, (report.evidence ?? []).length);
    },

    /** Appends evidence while the report stays under MAX_EVIDENCE, in one guarded update; refused files are removed. */
    async append(reportId: string, refs: EvidenceRef[], actor: { kind: 'reporter' | 'user'; id: string | null }) {
      if (!(await store.appendEvidence(reportId, refs, MAX_EVIDENCE, clock.now()))) {
        await Promise.all(refs.map((r) => files.remove(r.fileId)));
        await reportOf(store, reportId); // 404 if it is gone
        throw new ValidationError({ evidence: `A report can hold at most ${MAX_EVIDENCE} files.` });
      }
      await audit.record({ actorKind: actor.kind, actorId: actor.id, action: 'report.evidence-added', subjectKind: 'report', subjectId: reportId, detail: { files: refs.map((r) => r.sha256) } });
    },

    /** Counted in the database: a client's uploads add up over every instance. */
    async admitUploadBatch(client: string) {
      const batch = await limits.hitWindow('upload', client, 10 * MINUTE, clock.now());
      if (batch.count > config.reports.submissionsPer10Min * UPLOADS_PER_SUBMISSION) throw new TooManyRequestsError('Too many uploads were sent from here in the last minutes. Please try again in 10 minutes.');
    },

    /**
     * Removes evidence files a report form stored and no report took, once that form has
     * expired (its challenge, which carries them, lives CHALLENGE_MAX_AGE_MS): abandoned forms
     * and API submissions refused after their files were stored. A file some report names is
     * kept whatever its record says. Off the request path (hourly).
     */
    async removeUnclaimed(): Promise<{ removed: number; kept: number }> {
      const cutoff = new Date(clock.now().getTime() - CHALLENGE_MAX_AGE_MS - 60 * MINUTE);
      const candidates = await store.unclaimedEvidenceBefore(cutoff, CLEAN_UP_BATCH);
      if (!candidates.length) return { removed: 0, kept: 0 };
      const held = await store.evidenceHeldByReports(candidates);
      for (const fileId of candidates) {
        if (!held.has(fileId)) await files.remove(fileId);
        await store.forgetUnclaimedEvidence(fileId);
      }
      const kept = candidates.filter((id) => held.has(id)).length;
      return { removed: candidates.length - kept, kept };
    },
  };
}

export type ReportEvidence = ReturnType<typeof reportEvidence>;
