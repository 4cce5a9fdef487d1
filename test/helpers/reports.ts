import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { PDFDocument, PDFName, PDFString, StandardFonts } from 'pdf-lib';
import sharp from 'sharp';
import request from 'supertest';
import { powSolves } from '../../server/services/reports';
import { Report } from '../../models/reports';
import type { TestContext } from './context';
import { csrfFrom, pageAgent } from './factories';

/** Report fields that pass every check; override any of them. */
export function reportFields(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    reporterKind: 'ngo',
    country: 'KE',
    place: 'Nairobi',
    harmCategories: ['privacy-surveillance'],
    description: 'Cameras of this model watch the entrance of a clinic and record every visitor.',
    affected: 'Patients and staff',
    ongoing: 'yes',
    ...fields,
  };
}

/** A counter that solves the challenge, as public/js/report-pow.js finds one in a browser. */
export function solvePow(token: string, bits: number): string {
  for (let n = 0; ; n++) if (powSolves(token, String(n), bits)) return String(n);
}

/** A fresh, solved challenge from the API. */
export async function solvedChallenge(ctx: TestContext) {
  const { body } = await request(ctx.app).get('/api/v1/reports/challenge');
  return { challenge: body.token as string, pow: solvePow(body.token, body.powBits) };
}

/** Files a report through the JSON API; returns the response (201 with `receipt` on success). */
export async function fileReport(ctx: TestContext, fields: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  const challenge = await solvedChallenge(ctx);
  return request(ctx.app).post('/api/v1/reports').set(headers).send({ ...reportFields(fields), ...challenge });
}

export const digitsOf = (receipt: string) => receipt.replace(/\D/g, '');

/** A camera photo with maker, model and GPS position in its EXIF, as phones write them. */
export async function jpegWithGps(colour = { r: 180, g: 60, b: 40 }, size = { width: 320, height: 240 }) {
  return sharp({ create: { ...size, channels: 3, background: colour } })
    .jpeg()
    .withExif({
      IFD0: { Make: 'SpyPhone', Model: 'Tracker X1', Software: 'SpyOS 9' },
      IFD3: { GPSLatitudeRef: 'S', GPSLatitude: '1/1 17/1 0/1', GPSLongitudeRef: 'E', GPSLongitude: '36/1 49/1 0/1' },
    })
    .toBuffer();
}

export const pngImage = () => sharp({ create: { width: 64, height: 64, channels: 4, background: { r: 0, g: 120, b: 200, alpha: 1 } } }).png().toBuffer();

/** A noisy JPEG cut short: the header reads, the pixels do not. */
export async function truncatedJpeg() {
  const full = await sharp({ create: { width: 800, height: 600, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 30 } } }).jpeg().toBuffer();
  return full.subarray(0, Math.floor(full.length * 0.7));
}

function crc32(buf: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of buf) {
    let c = (crc ^ byte) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A decompression bomb: a valid 20000×20000 PNG (400 megapixels) in about 50 KB. */
export function pixelBombPng(): Buffer {
  const width = 20_000;
  const height = 20_000;
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 1; // bit depth
  header[9] = 0; // greyscale
  const rows = zlib.deflateSync(Buffer.alloc((1 + width / 8) * height), { level: 9 });
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', header), pngChunk('IDAT', rows), pngChunk('IEND', Buffer.alloc(0))]);
}

export const svgWithScript = () => Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(document.cookie)</script></svg>');
export const notAnImage = () => Buffer.from('#!/bin/sh\necho this is a shell script, not a photo\n');
export const pdfDocument = () => Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');

export const sha256 = (buf: Buffer) => crypto.createHash('sha256').update(buf).digest('hex');

/** The hidden fields the report form carries between attempts. */
export function formFields(html: string) {
  const hidden = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1] ?? '';
  return { _csrf: csrfFrom(html), challenge: hidden('challenge'), keptEvidence: hidden('keptEvidence') };
}

export interface Attachment {
  name: string;
  data: Buffer;
}

/**
 * A page agent that fills the report form as a browser without JavaScript would: loads the
 * form, then posts multipart with the hidden fields first (as the page orders them).
 */
export function reportAgent(ctx: TestContext, ip = '10.0.0.1') {
  const agent = pageAgent(ctx);
  return Object.assign(agent, {
    ip,
    async openForm() {
      const res = await agent.get('/report').set('X-Forwarded-For', ip);
      return formFields(res.text);
    },
    /** Posts the form; `hidden` are the fields of the page last shown (form or re-rendered form). */
    postForm(hidden: Record<string, string>, fields: Record<string, unknown>, files: Attachment[] = [], extra: { pow?: string; userAgent?: string } = {}) {
      // The form's address carries its token, as the page writes it (checked before the body is read).
      const req = agent.post(`/report?challenge=${encodeURIComponent(hidden.challenge ?? '')}`).set('X-Forwarded-For', ip);
      if (extra.userAgent) req.set('User-Agent', extra.userAgent);
      for (const [k, v] of Object.entries({ ...hidden, pow: extra.pow ?? '' })) req.field(k, v);
      for (const [k, v] of Object.entries(fields)) {
        for (const item of Array.isArray(v) ? v : [v]) if (item !== undefined) req.field(k, String(item));
      }
      for (const f of files) req.attach('evidence', f.data, f.name);
      // A filed report answers with a redirect to the receipt page (post/redirect/get): followed, as a browser does.
      return req.redirects(1);
    },
    /** Form → solved challenge → post: what a browser with JavaScript sends. */
    async file(fields: Record<string, unknown>, files: Attachment[] = [], extra: { userAgent?: string } = {}) {
      const hidden = await this.openForm();
      return this.postForm(hidden, fields, files, { ...extra, pow: solvePow(hidden.challenge, ctx.config.reports.powBits) });
    },
    /** Opens the follow-up page for a receipt (the post redirects to the report's page, followed). */
    async followUp(receipt: string) {
      const form = await agent.get('/follow-up').set('X-Forwarded-For', ip);
      return agent.post('/follow-up').set('X-Forwarded-For', ip).type('form').send({ _csrf: csrfFrom(form.text), receipt }).redirects(1);
    },
  });
}

/** The receipt as shown (groups joined by spaces, some non-breaking), in plain spaces. */
export const receiptFrom = (html: string) => /id="receipt"[^>]*>([\d\s]+)</.exec(html)?.[1]?.replace(/\s+/g, ' ') ?? null;

/**
 * A PDF as a scanner app or word processor leaves it: author and creator in its properties,
 * the same in XMP, a script run on opening, and a file attached. Written without object
 * streams, so that what it carries can be seen in its bytes (and its absence after cleaning).
 */
export async function pdfWithHiddenData(): Promise<Buffer> {
  const doc = await PDFDocument.create();
  doc.setAuthor('Jane Reporter');
  doc.setCreator('ScanSnap Home (Jane-Laptop)');
  doc.setTitle('Delivery note');
  const page = doc.addPage([300, 200]);
  page.drawText('Delivery note: 40 cameras', { x: 20, y: 100, size: 12, font: await doc.embedFont(StandardFonts.Helvetica) });
  const xmp = `<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>Jane Reporter (xmp)</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>`;
  const metadata = doc.context.stream(xmp, { Type: 'Metadata', Subtype: 'XML' });
  doc.catalog.set(PDFName.of('Metadata'), doc.context.register(metadata));
  const action = doc.context.obj({ Type: 'Action', S: 'JavaScript', JS: PDFString.of('app.alert("tracking-beacon")') });
  doc.catalog.set(PDFName.of('OpenAction'), doc.context.register(action));
  await doc.attach(Buffer.from('source spreadsheet of Jane'), 'jane-source.xlsx', { mimeType: 'application/vnd.ms-excel', description: 'attached-secret' });
  return Buffer.from(await doc.save({ useObjectStreams: false }));
}

/** A report as investigators read it (through the service: its texts are sealed in the database). */
export const reportAsRead = (ctx: TestContext, reportId: string) => ctx.services.reports.getReportForStaff(reportId);

/** Reports whose description is `text`, among those matching `filter`: decrypted one by one (the stored text is sealed). */
export async function countReportsDescribing(ctx: TestContext, text: string, filter: Record<string, unknown> = {}) {
  const ids = (await Report.find(filter, { _id: 1 }).lean()).map((r) => r._id);
  const reports = await Promise.all(ids.map((id) => reportAsRead(ctx, id)));
  return reports.filter((r) => r.what?.description === text).length;
}

/** An evidence file's plaintext as an authorised download streams it (the file on disk is sealed). */
export async function evidenceBytes(ctx: TestContext, reportId: string, fileId: string): Promise<Buffer> {
  const { stream } = await ctx.services.reports.openEvidence(reportId, fileId);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
