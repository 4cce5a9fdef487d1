import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { createFilesService, IMAGE_SLOTS, type FilesService } from '../server/services/files';
import { jpegWithGps, notAnImage, pdfDocument, pdfWithHiddenData, pixelBombPng, pngImage, sha256, svgWithScript, truncatedJpeg } from './helpers/reports';

/** The files service touches only the disk: a temporary data directory per test file. */
describe('stored files (evidence and proofs)', () => {
  let dataDir: string;
  let files: FilesService;
  beforeAll(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-files-'));
    files = createFilesService({ config: { dataDir } });
  });
  afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  const onDisk = (fileId: string) => path.join(dataDir, 'files', fileId.slice(0, 2), fileId);
  const storedNames = () => fs.readdirSync(path.join(dataDir, 'files'), { recursive: true }).map(String);

  it('strips EXIF, GPS and camera data from a JPEG, under a random name, with the SHA-256 of what is stored', async () => {
    const photo = await jpegWithGps();
    const original = await sharp(photo).metadata();
    expect(original.exif).toBeDefined(); // the fixture really carries metadata
    expect(photo.toString('latin1')).toContain('SpyPhone');

    const stored = await files.store({ buffer: photo, originalname: 'C:\\Users\\amina\\DCIM\\IMG_2201.jpg' }, 'evidence');
    expect(stored).toMatchObject({ mediaType: 'image/jpeg', originalName: 'IMG_2201.jpg' });
    expect(stored.fileId).toMatch(/^[a-f0-9]{32}$/);
    const data = fs.readFileSync(onDisk(stored.fileId));
    const meta = await sharp(data).metadata();
    expect(meta.exif).toBeUndefined();
    expect(meta.xmp).toBeUndefined();
    expect(meta.icc).toBeUndefined();
    expect(meta).toMatchObject({ format: 'jpeg', width: 320, height: 240 });
    expect(data.toString('latin1')).not.toMatch(/SpyPhone|Tracker X1|SpyOS/);
    expect(sha256(data)).toBe(stored.sha256);
    expect(stored.size).toBe(data.length);
    expect(storedNames().join('\n')).not.toContain('IMG_2201');
    expect(fs.statSync(onDisk(stored.fileId)).mode & 0o077).toBe(0);
  });

  it('keeps a JPEG\'s pixels exactly and its orientation, and nothing else of its metadata or what follows the image', async () => {
    const photo = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
      .jpeg({ progressive: true })
      .withMetadata({ orientation: 6, icc: 'srgb' })
      .withExif({ IFD0: { Make: 'SpyPhone', Model: 'Tracker X1' }, IFD3: { GPSLatitudeRef: 'S', GPSLatitude: '1/1 17/1 0/1' } })
      .toBuffer();
    const comment = Buffer.from('shot by amina K.', 'latin1');
    const withComment = Buffer.concat([photo.subarray(0, 2), Buffer.from([0xff, 0xfe, 0, comment.length + 2]), comment, photo.subarray(2)]);
    const withTrailer = Buffer.concat([withComment, Buffer.from('PK\u0003\u0004<html>secret attachment</html>', 'latin1')]);
    expect((await sharp(withTrailer).metadata()).icc).toBeDefined(); // the fixture really carries a profile

    const stored = await files.store({ buffer: withTrailer, originalname: 'IMG_2202.jpg' }, 'evidence');
    const data = fs.readFileSync(onDisk(stored.fileId));
    const meta = await sharp(data).metadata();
    expect(meta).toMatchObject({ format: 'jpeg', width: 64, height: 48, orientation: 6, isProgressive: true });
    expect(meta.icc).toBeUndefined();
    expect(meta.xmp).toBeUndefined();
    expect(data.toString('latin1')).not.toMatch(/SpyPhone|Tracker X1|amina|secret|PK/);
    expect(data.subarray(-2)).toEqual(Buffer.from([0xff, 0xd9])); // ends where the picture ends
    const pixels = (b: Buffer) => sharp(b).raw().toBuffer();
    expect(await pixels(data)).toEqual(await pixels(photo));
    expect(sha256(data)).toBe(stored.sha256);
  });

  it('cleans many images sent at once, a few at a time, and a refused one does not hold up the others', async () => {
    const [photo, broken, bad] = [await pngImage(), await truncatedJpeg(), notAnImage()];
    const uploads = Array.from({ length: IMAGE_SLOTS * 4 }, (_, i) => (i % 4 === 1 ? broken : i % 4 === 3 ? bad : photo));
    const settled = await Promise.allSettled(uploads.map((buffer, i) => files.store({ buffer, originalname: `upload-${i}.jpg` }, 'evidence')));
    expect(settled.map((r) => r.status)).toEqual(uploads.map((b) => (b === photo ? 'fulfilled' : 'rejected')));
    for (const r of settled) if (r.status === 'fulfilled') expect(fs.existsSync(onDisk(r.value.fileId))).toBe(true);
    // Every slot came back: one more image is cleaned at once.
    await expect(files.store({ buffer: photo, originalname: 'after.png' }, 'evidence')).resolves.toMatchObject({ mediaType: 'image/png' });
  });

  it('re-encodes a PNG, and rewrites a PDF read from the temp file an upload left on disk', async () => {
    const png = await files.store({ buffer: await pngImage(), originalname: 'map.png' }, 'evidence');
    expect(png.mediaType).toBe('image/png');
    expect((await sharp(fs.readFileSync(onDisk(png.fileId))).metadata()).format).toBe('png');
    const uploaded = path.join(dataDir, 'upload-temp');
    fs.writeFileSync(uploaded, await pdfWithHiddenData(), { mode: 0o600 });
    const pdf = await files.store({ path: uploaded, originalname: 'invoice.pdf' }, 'evidence');
    expect(pdf.mediaType).toBe('application/pdf');
    const stored = fs.readFileSync(onDisk(pdf.fileId));
    expect(stored.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    expect(stored.toString('latin1')).not.toContain('xmpmeta');
    expect(stored.toString('latin1')).not.toContain('/OpenAction');
    expect(sha256(stored)).toBe(pdf.sha256);
  });

  it('refuses a PDF it cannot parse instead of keeping it as sent', async () => {
    for (const [name, data] of [['cut.pdf', Buffer.from('%PDF-1.4\nnothing else')], ['no-pages.pdf', pdfDocument()]] as const) {
      await expect(files.store({ buffer: data, originalname: name }, 'evidence')).rejects.toMatchObject({
        status: 400,
        fields: { evidence: expect.stringContaining(`"${name}" could not be read as a PDF`) },
      });
    }
  });

  it.each([
    ['a shell script renamed to .jpg', () => notAnImage(), 'holiday.jpg', 'is not a JPEG, PNG, WebP or PDF file (judged by its content, not its name)'],
    ['an SVG with a script in it', () => svgWithScript(), 'logo.jpg', 'is not a JPEG, PNG, WebP or PDF file'],
    ['a truncated JPEG', () => truncatedJpeg(), 'cut.jpg', 'could not be read as an image (it may be truncated or damaged)'],
    ['a JPEG without its end-of-image marker', async () => (await jpegWithGps()).subarray(0, -2), 'cut.jpg', 'could not be read as an image (it may be truncated or damaged)'],
    ['an empty file', () => Buffer.alloc(0), 'empty.jpg', 'is empty'],
    ['a pixel bomb (20000×20000 PNG in ~50 KB)', () => pixelBombPng(), 'bomb.png', 'has too many pixels to open safely'],
  ])('refuses %s with a 400 naming the field and the file, and writes nothing', async (_what, make, name, message) => {
    const before = fs.existsSync(path.join(dataDir, 'files')) ? storedNames().length : 0;
    const buffer = await make();
    await expect(files.store({ buffer, originalname: name }, 'evidence')).rejects.toMatchObject({
      status: 400,
      code: 'file_rejected',
      fields: { evidence: expect.stringContaining(`"${name}" ${message}`) },
    });
    const after = fs.existsSync(path.join(dataDir, 'files')) ? storedNames().length : 0;
    expect(after).toBe(before);
  });

  it('opens and removes a stored file, and refuses ids that are not file ids', async () => {
    const stored = await files.store({ buffer: await pngImage(), originalname: 'x.png' }, 'evidence');
    expect(files.exists(stored.fileId)).toBe(true);
    const chunks: Buffer[] = [];
    for await (const chunk of files.open(stored.fileId)) chunks.push(chunk as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(stored.sha256);
    await files.remove(stored.fileId);
    expect(fs.existsSync(onDisk(stored.fileId))).toBe(false);
    expect(() => files.open(stored.fileId)).toThrow(expect.objectContaining({ status: 404 }));
    expect(() => files.open('../../etc/passwd')).toThrow(expect.objectContaining({ status: 404 }));
    expect(files.exists('../x')).toBe(false);
  });
});
