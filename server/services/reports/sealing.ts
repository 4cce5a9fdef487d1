import { createKeyring, openText, sealText, UnknownMasterKeyError } from '../../crypto/envelope';
import { seal, unseal } from '../../crypto/sealed';
import { ConflictError } from '../../errors';
import type { NewEvidence, ReportRecord } from '../../store/reports';
import { createEvidenceFiles, type PendingFile } from './evidence-files';
import { reportOf, type ReportsDeps } from './context';

/**
 * Encryption at rest of what a reporter and the investigators write (envelope encryption,
 * server/crypto/envelope.ts): every report has a data key of its own, wrapped by the master key
 * and kept in its own document. What is sealed, and what stays plain so that linking, red flags
 * and figures work without it:
 * - sealed: contact details, device description, place, description, who is affected, messages
 *   both ways, feedback, the closing outcome, evidence files (each under a key of its own, kept
 *   sealed by the data key);
 * - plain: serial numbers, model text, country, dates, harm categories, reporter kind,
 *   "still happening", status, links, file types, sizes and SHA-256 (the linker, red-flag rules,
 *   case triage and the transparency report read these).
 */

/** Where a text lives in a report (the associated data that binds its ciphertext to that place). */
const TEXT_FIELDS = [
  ['contact', 'name'],
  ['contact', 'organisation'],
  ['contact', 'email'],
  ['product', 'deviceDescription'],
  ['where', 'place'],
  ['what', 'description'],
  ['what', 'affected'],
] as const;

type Sealable = Pick<ReportRecord, '_id' | 'contact' | 'product' | 'where' | 'what' | 'messages' | 'feedback' | 'outcome' | 'evidence'>;

/** The report with each of its texts replaced by `change(text, place)`: how it is sealed and opened alike. */
function mapTexts<T extends object>(whole: T, change: (text: string, place: string) => string): T {
  const report = whole as Partial<Sealable>;
  const out = { ...whole } as Record<string, unknown>;
  for (const [part, field] of TEXT_FIELDS) {
    const holder = out[part] as Record<string, unknown> | null | undefined;
    if (holder && typeof holder[field] === 'string') out[part] = { ...holder, [field]: change(holder[field] as string, `${part}.${field}`) };
  }
  if (report.messages) out.messages = report.messages.map((m) => ({ ...m, text: change(m.text, `message/${m._id}`) }));
  if (report.feedback?.text) out.feedback = { ...report.feedback, text: change(report.feedback.text, 'feedback') };
  if (report.outcome) out.outcome = change(report.outcome, 'outcome');
  return out as T;
}

export function reportSealing(deps: ReportsDeps) {
  const store = deps.stores.reports;
  const keyring = createKeyring(deps.config.encryption);
  const files = createEvidenceFiles({ config: deps.config, files: deps.files, keyring });
  const keyAad = (reportId: string) => `report/${reportId}`;
  const textAad = (reportId: string, place: string) => `report/${reportId}/${place}`;
  const fileKeyAad = (reportId: string, fileId: string) => `report/${reportId}/evidence/${fileId}`;

  /** The report's data key; null once retention destroyed it (or for a report written in the clear). */
  async function dataKeyOf(reportId: string): Promise<Buffer | null> {
    const stored = await store.reportKeyById(reportId);
    return stored ? keyring.unwrap(stored, keyAad(reportId)) : null;
  }

  /** The data key a new text or file of this report is sealed with; refused once it was shredded. */
  async function writableKeyOf(report: Pick<ReportRecord, '_id' | 'sealed'>): Promise<Buffer | null> {
    const key = await dataKeyOf(report._id);
    if (!key && report.sealed) throw new ConflictError('The reporter\'s data of this report was deleted under the retention policy, so nothing more can be added to it.');
    return key; // null: a report still in the clear (before `npm run migrate`), written as it is
  }

  /** A new report's data key, stored before the report; null when the `_id` is taken (a receipt collision). */
  async function createDataKey(reportId: string): Promise<Buffer | null> {
    const { dataKey, wrapped } = keyring.newDataKey(keyAad(reportId));
    return (await store.insertReportKey(reportId, wrapped, deps.clock.now())) ? dataKey : null;
  }

  const sealWith = (dataKey: Buffer, reportId: string) => (text: string, place: string) => sealText(dataKey, text, textAad(reportId, place));

  /**
   * A pending file's key as its report keeps it: re-sealed from the master key to the report's
   * data key (null for a report still in the clear, whose files the migration seals later).
   */
  function fileKeyFor(reportId: string, dataKey: Buffer | null, file: PendingFile): string | null {
    const fileKey = files.pendingKey(file);
    if (!fileKey) throw new ConflictError('An attached file can no longer be decrypted (the encryption key changed). Please attach it again.');
    return dataKey ? seal(dataKey, fileKey, fileKeyAad(reportId, file.fileId)).toString('base64') : null;
  }

  return {
    files,
    createDataKey,

    sealNew: <T extends object>(reportId: string, dataKey: Buffer, report: T) => mapTexts(report, sealWith(dataKey, reportId)),

    fileKeyFor,
    writableKeyOf,

    /** One text to add to a report (a message, feedback, an outcome), sealed when the report is. */
    async sealText(reportId: string, place: string, text: string): Promise<string> {
      const key = await writableKeyOf(await reportOf(store, reportId));
      return key ? sealWith(key, reportId)(text, place) : text;
    },

    /** The place of a message's text, for `sealText`. */
    messagePlace: (messageId: string) => `message/${messageId}`,

    /** A report as its readers see it: texts in the clear; empty once its data key was destroyed. */
    async open(report: ReportRecord): Promise<ReportRecord & { shredded: boolean }> {
      if (!report.sealed) return { ...report, shredded: false };
      const key = await dataKeyOf(report._id);
      if (!key) return { ...mapTexts(report, () => ''), shredded: true };
      return { ...mapTexts(report, (text, place) => openText(key, text, textAad(report._id, place))), shredded: false };
    },

    /** An evidence file's plaintext stream (the report's data key opens the file's key). */
    async openFile(report: ReportRecord, ref: NewEvidence) {
      if (!ref.key) return files.open(ref.fileId, null);
      const dataKey = await dataKeyOf(report._id);
      const fileKey = dataKey && unseal(dataKey, Buffer.from(ref.key, 'base64'), fileKeyAad(report._id, ref.fileId));
      if (!fileKey) throw new ConflictError('This file can no longer be decrypted: the reporter\'s data of this report was deleted under the retention policy.');
      return files.open(ref.fileId, fileKey);
    },

    /** Crypto-shredding (retention): true when there was a key to destroy. */
    destroyDataKey: (reportId: string) => store.destroyReportKey(reportId),

    /**
     * `npm run keys:rotate`: every data key not yet under the current master key is re-wrapped
     * by it (the previous key, ENCRYPTION_KEY_PREVIOUS, still opens them meanwhile). Resumable:
     * a second run finds only what is left; each key is one guarded update.
     */
    async rotateDataKeys(progress: (done: number, total: number) => void = () => {}) {
      const total = await store.countKeysNotUnder(keyring.currentKeyId);
      let done = 0;
      const unknown = new Set<string>();
      for await (const stored of store.keysNotUnder(keyring.currentKeyId)) {
        try {
          await store.rewrapReportKey(stored._id, stored, keyring.rewrap(stored, keyAad(stored._id)));
          done++;
        } catch (err) {
          if (!(err instanceof UnknownMasterKeyError)) throw err;
          unknown.add(stored.keyId);
        }
        if (done % 100 === 0) progress(done, total);
      }
      progress(done, total);
      return { rewrapped: done, total, unknownMasterKeys: [...unknown] };
    },

    // -- the encryption migration: reports and files written in the clear

    countClearReports: () => store.countUnsealedReports(),

    /** Seals every report still in the clear, with its files; resumable (each report is one guarded update). */
    async sealClearReports(progress: (done: number) => void = () => {}): Promise<number> {
      let done = 0;
      for await (const clear of store.unsealedReports()) {
        const dataKey = (await dataKeyOf(clear._id)) ?? (await createDataKey(clear._id));
        if (!dataKey) continue; // its key was written by a run racing this one: the next run finishes it
        const evidence: NewEvidence[] = [];
        for (const ref of clear.evidence ?? []) {
          if (ref.key || !deps.files.exists(ref.fileId)) {
            evidence.push(ref);
            continue;
          }
          const copy = await files.sealClearFile(ref.fileId);
          evidence.push({ ...ref, fileId: copy.fileId, key: seal(dataKey, copy.fileKey, fileKeyAad(clear._id, copy.fileId)).toString('base64') });
        }
        const { contact, product, where, what, messages, feedback, outcome } = mapTexts({ ...clear, evidence }, sealWith(dataKey, clear._id));
        if (!(await store.sealReport(clear, { contact, product, where, what, messages, feedback, outcome, evidence }))) continue; // written to meanwhile: the next run takes it again
        for (const ref of clear.evidence ?? []) if (!ref.key) await files.remove(ref.fileId);
        progress(++done);
      }
      return done;
    },
  };
}

export type ReportSealing = ReturnType<typeof reportSealing>;
