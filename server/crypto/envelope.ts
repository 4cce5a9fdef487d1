import crypto from 'node:crypto';
import fs from 'node:fs';
import { pipeline } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { KEY_BYTES, seal, unseal } from './sealed';

/**
 * Envelope encryption at rest (AES-256-GCM, Node's crypto): each report has its own random
 * data key, stored only wrapped by the master key (ENCRYPTION_KEY). Rotating the master key
 * re-wraps the small data keys and never touches the data; destroying a report's data key
 * makes every copy of its data unreadable (crypto-shredding).
 */

/** A data key as stored: sealed by the master key named by `keyId`. */
export interface WrappedKey {
  keyId: string;
  wrapped: string;
}

export class UnknownMasterKeyError extends Error {
  constructor(keyId: string) {
    super(`A data key is wrapped by master key ${keyId}, which is neither ENCRYPTION_KEY nor ENCRYPTION_KEY_PREVIOUS.`);
    this.name = 'UnknownMasterKeyError';
  }
}

/** A short public name of a master key (not secret: a hash prefix), so a wrapped key says which master opens it. */
export const keyIdOf = (master: Buffer) => crypto.createHash('sha256').update('downstream/master-key-id').update(master).digest('hex').slice(0, 12);

/**
 * The master keys: the current one wraps, the previous one (during a rotation) still unwraps.
 * `aad` binds a wrapped key to what it belongs to (a report's `_id`, a file's id).
 */
export function createKeyring(keys: { key: Buffer; previousKey: Buffer | null }) {
  const current = { id: keyIdOf(keys.key), key: keys.key };
  const known = new Map([[current.id, current.key]]);
  if (keys.previousKey) known.set(keyIdOf(keys.previousKey), keys.previousKey);

  const wrap = (dataKey: Buffer, aad: string): WrappedKey => ({ keyId: current.id, wrapped: seal(current.key, dataKey, aad).toString('base64') });

  function unwrap(w: WrappedKey, aad: string): Buffer {
    const master = known.get(w.keyId);
    if (!master) throw new UnknownMasterKeyError(w.keyId);
    const key = unseal(master, Buffer.from(w.wrapped, 'base64'), aad);
    if (!key) throw new Error(`The data key of ${aad} does not open with master key ${w.keyId}: it was altered or belongs elsewhere.`);
    return key;
  }

  return {
    currentKeyId: current.id,
    /** A fresh data key, and how it is stored. */
    newDataKey(aad: string) {
      const dataKey = crypto.randomBytes(KEY_BYTES);
      return { dataKey, wrapped: wrap(dataKey, aad) };
    },
    wrap,
    unwrap,
    /** The same data key under the current master key (a rotation's step). */
    rewrap: (w: WrappedKey, aad: string) => wrap(unwrap(w, aad), aad),
  };
}

export type Keyring = ReturnType<typeof createKeyring>;

// ---------------------------------------------------------------- text fields

/** A text as stored in a sealed report: base64 of `seal()`; the empty text stays empty (nothing to hide, nothing to decrypt). */
export const sealText = (key: Buffer, text: string, aad: string) => (text ? seal(key, Buffer.from(text, 'utf8'), aad).toString('base64') : '');

export function openText(key: Buffer, stored: string, aad: string): string {
  if (!stored) return '';
  const opened = unseal(key, Buffer.from(stored, 'base64'), aad);
  if (!opened) throw new Error(`${aad} does not open with its report's data key: it was altered or moved.`);
  return opened.toString('utf8');
}

// ---------------------------------------------------------------- files

/** A sealed file: `version (1) | iv (12) | ciphertext | tag (16)`; the tag last, so the file is written while it streams. */
const FILE_VERSION = 2;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES;

/** Streams `source` through the cipher into `target` (created 0600, never overwritten). */
export async function writeSealedFile(target: string, source: Readable, key: Buffer, aad: string): Promise<void> {
  const iv = crypto.randomBytes(IV_BYTES);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad));
  await pipelineAsync(
    source,
    async function* (chunks: AsyncIterable<Buffer>) {
      yield Buffer.concat([Buffer.from([FILE_VERSION]), iv]);
      for await (const chunk of chunks) yield cipher.update(chunk);
      yield cipher.final();
      yield cipher.getAuthTag();
    },
    fs.createWriteStream(target, { mode: 0o600, flags: 'wx' }),
  );
}

/**
 * The file's plaintext as a stream. The tag is read first (it is at the end), so an altered file
 * fails the stream at its end: a download then breaks off instead of completing.
 */
export async function openSealedFile(file: string, key: Buffer, aad: string): Promise<Readable> {
  const handle = await fs.promises.open(file, 'r');
  let header: Buffer;
  let tag: Buffer;
  let size: number;
  try {
    size = (await handle.stat()).size;
    if (size < HEADER_BYTES + TAG_BYTES) throw new Error(`${file} is too short to be a sealed file.`);
    header = Buffer.alloc(HEADER_BYTES);
    tag = Buffer.alloc(TAG_BYTES);
    await handle.read(header, 0, HEADER_BYTES, 0);
    await handle.read(tag, 0, TAG_BYTES, size - TAG_BYTES);
  } finally {
    await handle.close();
  }
  if (header[0] !== FILE_VERSION) throw new Error(`${file} is not a sealed file.`);
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, header.subarray(1));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(tag);
  if (size === HEADER_BYTES + TAG_BYTES) {
    decipher.end();
    return decipher;
  }
  // The callback form returns the last stream, which carries any error (a bad tag) to the reader.
  return pipeline(fs.createReadStream(file, { start: HEADER_BYTES, end: size - TAG_BYTES - 1 }), decipher, () => {});
}
