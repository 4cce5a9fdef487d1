import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Config } from '../../config';
import { KEY_BYTES } from '../../crypto/sealed';
import { openSealedFile, writeSealedFile, type Keyring, type WrappedKey } from '../../crypto/envelope';
import { NotFoundError } from '../../errors';
import { safeDisplayName, storageError, type FilesService, type IncomingFile, type StoredFile } from '../files';

/**
 * A stored evidence file waiting for its report: its own key wrapped by the master key (the
 * report, and so its data key, does not exist yet). Submitting re-seals the key under the
 * report's data key (`EvidenceRef.key`).
 */
export type PendingFile = StoredFile & { key: WrappedKey };

const FILE_ID = /^[a-f0-9]{32}$/;

/**
 * Evidence files sealed at rest: checked and cleaned by the files service (type by content,
 * metadata stripped), then streamed through AES-256-GCM to disk under a key of their own, and
 * decrypted while streaming to an authorised download. They sit where the files service keeps
 * files (`DATA_DIR/files/<2>/<id>`, so its clean-ups and disk checks see them); files of reports
 * written before encryption at rest are there in the clear until `npm run migrate` seals them.
 */
export function createEvidenceFiles(deps: { config: Pick<Config, 'dataDir'>; files: FilesService; keyring: Keyring }) {
  const { files, keyring } = deps;
  const root = path.join(deps.config.dataDir, 'files');
  const aadOf = (fileId: string) => `evidence/${fileId}`;

  const pathFor = (fileId: string) => {
    if (!FILE_ID.test(fileId)) throw new NotFoundError('No such file.');
    return path.join(root, fileId.slice(0, 2), fileId);
  };

  /** Writes `data` sealed under `fileKey`, atomically (temp file + rename). */
  async function writeSealed(fileId: string, data: Readable, fileKey: Buffer, field: string) {
    const target = pathFor(fileId);
    const tmp = `${target}.tmp`;
    try {
      await fs.promises.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      await writeSealedFile(tmp, data, fileKey, aadOf(fileId));
      await fs.promises.rename(tmp, target);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true }).catch(() => {});
      throw storageError(err, field);
    }
  }

  return {
    /** Checks, cleans and seals one upload; a 400 naming `field` when it is refused. */
    async store(file: IncomingFile, field: string): Promise<PendingFile> {
      const { data, mediaType } = await files.sanitise(file, field);
      const fileId = crypto.randomBytes(16).toString('hex');
      const fileKey = crypto.randomBytes(KEY_BYTES);
      const digest = crypto.subtle.digest('SHA-256', data);
      digest.catch(() => {}); // awaited below
      await writeSealed(fileId, Readable.from([data]), fileKey, field);
      return {
        fileId,
        sha256: Buffer.from(await digest).toString('hex'),
        mediaType,
        size: data.length,
        originalName: safeDisplayName(file.originalname),
        key: keyring.wrap(fileKey, aadOf(fileId)),
      };
    },

    /** The file's key of a pending file (null: not ours, or its master key is gone). */
    pendingKey(file: PendingFile): Buffer | null {
      try {
        return keyring.unwrap(file.key, aadOf(file.fileId));
      } catch {
        return null;
      }
    },

    /** The plaintext of a sealed file, streamed; `fileKey` null: a file from before encryption at rest, read as it is. */
    async open(fileId: string, fileKey: Buffer | null): Promise<Readable> {
      if (!fileKey) return files.open(fileId);
      const file = pathFor(fileId);
      if (!fs.existsSync(file)) throw new NotFoundError('No such file.');
      return openSealedFile(file, fileKey, aadOf(fileId));
    },

    /**
     * The encryption migration's first step for a file stored in the clear: a sealed copy under
     * a new id. The clear file goes only once the report names the copy (an interrupted run
     * leaves an unnamed copy, which the unclaimed-file clean-up does not know: harmless, sealed).
     */
    async sealClearFile(fileId: string): Promise<{ fileId: string; fileKey: Buffer }> {
      const copy = { fileId: crypto.randomBytes(16).toString('hex'), fileKey: crypto.randomBytes(KEY_BYTES) };
      await writeSealed(copy.fileId, files.open(fileId), copy.fileKey, 'evidence');
      return copy;
    },

    remove: (fileId: string) => files.remove(fileId),

    exists: (fileId: string) => files.exists(fileId),
  };
}

export type EvidenceFiles = ReturnType<typeof createEvidenceFiles>;
