import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { Config } from '../config';
import { BadRequestError, HttpError, NotFoundError } from '../errors';
import { stripJpegMetadata } from './jpeg-metadata';
import { rewritePdf, UnreadablePdfError } from './pdf-metadata';

/**
 * Stored files (report evidence, proofs of purchase): type decided by content, never by name;
 * no EXIF/GPS/device metadata survives in an image (JPEGs losslessly reduced to their decoding
 * segments, PNG and WebP re-encoded), and PDFs are rewritten without document properties, XMP,
 * scripts, automatic actions or attached files (pdf-metadata.ts); kept under DATA_DIR/files with random names (never
 * under public/), referenced by id and SHA-256.
 */

export const ACCEPTED_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'application/pdf'] as const;
export type AcceptedType = (typeof ACCEPTED_TYPES)[number];

/**
 * libvips keeps recent operations and decoded images in a cache (by default up to 50 MB and
 * 100 operations) to reuse them: every upload here is a different image decoded once, so the
 * cache only holds memory (measured by bench/, issue 7: RSS stayed high after the reports phase).
 */
sharp.cache(false);

/**
 * PNG and WebP images decoded and re-encoded at once (JPEGs are not decoded). The work is
 * CPU-bound, so more at a time only holds more decoded pixels and buffers in memory, which
 * glibc then keeps. Measured by bench/ (issue 7, 20 concurrent reporters with two 2 MB photos
 * each, 2 cores, when JPEGs were still re-encoded): server peak RSS 549 MB with libuv's 4
 * threads all decoding, 434 MB with 2 slots, at the same throughput within noise. Others
 * wait their turn, first come first served.
 */
export const IMAGE_SLOTS = 2;
function createSlots(size: number) {
  let free = size;
  const waiting: Array<() => void> = [];
  return async <T>(work: () => Promise<T>): Promise<T> => {
    if (free > 0) free--;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else free++;
    }
  };
}
const imageSlot = createSlots(IMAGE_SLOTS);

/** A decompression bomb is refused before decoding: at most ~40 megapixels. */
export const MAX_IMAGE_PIXELS = 40_000_000;

export interface StoredFile {
  fileId: string;
  sha256: string;
  mediaType: AcceptedType;
  size: number;
  /** The name the uploader's device gave it, reduced to a safe display string. */
  originalName: string;
}

/**
 * An upload: on disk where multer put it (`path`, a private temp file the uploads middleware
 * removes after the response), or in memory (`buffer`, from scripts and tests).
 */
export interface IncomingFile {
  buffer?: Buffer;
  path?: string;
  originalname: string;
  fieldname?: string;
}

const bytesOf = async (file: IncomingFile): Promise<Buffer> => file.buffer ?? (file.path ? await fs.promises.readFile(file.path) : Buffer.alloc(0));

const FILE_ID = /^[a-f0-9]{32}$/;

function unreadable(label: string, field: string) {
  const message = `"${label}" could not be read as an image (it may be truncated or damaged).`;
  return new BadRequestError(message, { [field]: message }, 'file_rejected');
}

/**
 * The disk is full or the data directory cannot be written: the uploader is told so, not
 * "something went wrong". Also used for the upload's temp files (server/middleware/uploads.ts).
 */
const STORAGE_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'ENOTDIR']);
export function storageError(err: unknown, field: string): unknown {
  if (!STORAGE_ERRORS.has((err as NodeJS.ErrnoException)?.code ?? '')) return err;
  const message = 'The file could not be saved: the server has no room to store files right now. Nothing was saved; please try again later.';
  return new HttpError(507, 'storage_unavailable', message, { [field]: message });
}

/** Display-safe: no path, no control characters, bounded length. */
export function safeDisplayName(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? '';
  // Control characters are exactly what this strips.
  // eslint-disable-next-line no-control-regex
  const cleaned = base.replace(/[\u0000-\u001f\u007f<>:"|?*]/g, '').trim();
  return (cleaned || 'file').slice(0, 120);
}

interface Detected {
  format: 'jpeg' | 'png' | 'webp' | 'too-large' | null;
  /** EXIF orientation 1–8, when the image has one. */
  orientation?: number;
}

/** 'too-large' for a decompression bomb (few bytes, huge canvas), so the refusal says why. Reads the header only. */
async function detectImage(buffer: Buffer): Promise<Detected> {
  try {
    const meta = await sharp(buffer, { limitInputPixels: MAX_IMAGE_PIXELS }).metadata();
    if ((meta.width ?? 0) * (meta.height ?? 0) > MAX_IMAGE_PIXELS) return { format: 'too-large' };
    const format = meta.format === 'jpeg' || meta.format === 'png' || meta.format === 'webp' ? meta.format : null;
    return { format, orientation: meta.orientation };
  } catch (err) {
    return { format: /pixel limit/i.test((err as Error).message) ? 'too-large' : null };
  }
}

export function createFilesService(deps: { config: Pick<Config, 'dataDir'> }) {
  const root = path.join(deps.config.dataDir, 'files');

  const pathFor = (fileId: string) => {
    if (!FILE_ID.test(fileId)) throw new NotFoundError('No such file.');
    return path.join(root, fileId.slice(0, 2), fileId);
  };

  /**
   * Checks and cleans one upload; throws a 400 naming `field` when the content is not an
   * accepted type or the image cannot be decoded (truncated, bomb, disguised).
   */
  async function sanitise(file: IncomingFile, field: string): Promise<{ data: Buffer; mediaType: AcceptedType }> {
    const label = safeDisplayName(file.originalname);
    const buffer = await bytesOf(file);
    if (buffer.length === 0) throw new BadRequestError(`"${label}" is empty.`, { [field]: `"${label}" is empty.` }, 'file_rejected');
    if (buffer.subarray(0, 5).toString('latin1') === '%PDF-') return { data: await cleanPdf(buffer, field, label), mediaType: 'application/pdf' };
    const { format, orientation } = await detectImage(buffer);
    if (format === 'too-large') {
      const message = `"${label}" has too many pixels to open safely (at most ${MAX_IMAGE_PIXELS / 1_000_000} megapixels).`;
      throw new BadRequestError(message, { [field]: message }, 'file_rejected');
    }
    if (!format) {
      const message = `"${label}" is not a JPEG, PNG, WebP or PDF file (judged by its content, not its name), or it is damaged or too large to open.`;
      throw new BadRequestError(message, { [field]: message }, 'file_rejected');
    }
    if (format === 'jpeg') {
      // Lossless: every segment but the picture's own goes (see jpeg-metadata.ts for why).
      const data = stripJpegMetadata(buffer, orientation);
      if (!data) throw unreadable(label, field);
      return { data, mediaType: 'image/jpeg' };
    }
    return imageSlot(() => reencode(buffer, format, field, label));
  }

  /** A PDF that cannot be parsed cannot be cleaned, so it is refused rather than kept as sent. */
  async function cleanPdf(buffer: Buffer, field: string, label: string): Promise<Buffer> {
    try {
      return await rewritePdf(buffer);
    } catch (err) {
      if (!(err instanceof UnreadablePdfError)) throw err;
      const message = `"${label}" could not be read as a PDF (it may be damaged, encrypted or password-protected), so its hidden data cannot be removed. Send an unprotected copy, or a photo of the pages.`;
      throw new BadRequestError(message, { [field]: message }, 'file_rejected');
    }
  }

  async function reencode(buffer: Buffer, format: 'png' | 'webp', field: string, label: string): Promise<{ data: Buffer; mediaType: AcceptedType }> {
    try {
      // Decoding and re-encoding drops EXIF, XMP, ICC and text chunks; `rotate()` first
      // applies the EXIF orientation so the picture still looks the right way up.
      const pipeline = sharp(buffer, { limitInputPixels: MAX_IMAGE_PIXELS, failOn: 'error' }).rotate();
      const data = format === 'png' ? await pipeline.png().toBuffer() : await pipeline.webp({ quality: 90 }).toBuffer();
      return { data, mediaType: `image/${format}` };
    } catch {
      throw unreadable(label, field);
    }
  }

  return {
    sanitise,

    /** Sanitises then writes atomically (temp file + rename): a failure leaves no partial file. */
    async store(file: IncomingFile, field = file.fieldname ?? 'file'): Promise<StoredFile> {
      const { data, mediaType } = await sanitise(file, field);
      const fileId = crypto.randomBytes(16).toString('hex');
      const target = pathFor(fileId);
      const tmp = `${target}.tmp`;
      // Web Crypto's digest runs on libuv's thread pool, beside the write; `createHash` would
      // hash the 2 MB photos on the event loop (~5 ms a report, issue 7's profile), which is
      // what limits the public report channel under load.
      const digest = crypto.subtle.digest('SHA-256', data);
      digest.catch(() => {}); // awaited below; never an unhandled rejection while the write runs
      try {
        await fs.promises.mkdir(path.dirname(target), { recursive: true });
        await fs.promises.writeFile(tmp, data, { mode: 0o600, flag: 'wx' });
        await fs.promises.rename(tmp, target);
      } catch (err) {
        // Best effort: where the directory itself is unusable there is no temp file to remove.
        await fs.promises.rm(tmp, { force: true }).catch(() => {});
        throw storageError(err, field);
      }
      return {
        fileId,
        sha256: Buffer.from(await digest).toString('hex'),
        mediaType,
        size: data.length,
        originalName: safeDisplayName(file.originalname),
      };
    },

    /** Streams a stored file; callers check who may read it first. */
    open(fileId: string): fs.ReadStream {
      const file = pathFor(fileId);
      if (!fs.existsSync(file)) throw new NotFoundError('No such file.');
      return fs.createReadStream(file);
    },

    async remove(fileId: string): Promise<void> {
      await fs.promises.rm(pathFor(fileId), { force: true });
    },

    exists: (fileId: string) => FILE_ID.test(fileId) && fs.existsSync(pathFor(fileId)),
  };
}

export type FilesService = ReturnType<typeof createFilesService>;
