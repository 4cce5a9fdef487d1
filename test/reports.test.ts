import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import ejs from 'ejs';
import { PDFDict, PDFDocument, PDFName } from 'pdf-lib';
import sharp from 'sharp';
import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { Limit } from '../models/limits';
import { Case } from '../models/cases';
import { Flag } from '../models/flags';
import mongoose from 'mongoose';
import { MAX_EVIDENCE, Report, ReportLinkWait, UnclaimedEvidence } from '../models/reports';
import { createApp } from '../server/app';
import { createLogger } from '../server/logger';
import { viewsDir } from '../server/paths';
import { CHALLENGE_MAX_AGE_MS, createReceiptHasher, createReportsService, RECEIPT_FAILURES_PER_WINDOW, RECEIPT_WINDOW_MS } from '../server/services/reports';
import { LABELS } from '../routes/reports';
import { backgroundJobs } from '../server/jobs';
import { startJobs } from '../server/jobs/runner';
import { createStores } from '../server/store';
import { createJobsStore } from '../server/store/jobs';
import { runMigrations } from '../server/store/migrations';
import { makeStaff } from './helpers/cases';
import { makeModel, makeRegistration } from './helpers/catalogue';
import { createTestContext, type TestContext } from './helpers/context';
import { csrfFrom, makeUser, unique } from './helpers/factories';
import {
  digitsOf,
  fileReport,
  formFields,
  jpegWithGps,
  notAnImage,
  pdfWithHiddenData,
  pngImage,
  receiptFrom,
  reportAgent,
  reportFields,
  sha256,
  solvedChallenge,
  countReportsDescribing,
  evidenceBytes,
  reportAsRead,
} from './helpers/reports';

const USER_AGENT = 'DownstreamTestPhone/7.1 (identifying-user-agent)';
const DAY = 86_400_000;

/** Everything stored about a report, as one string to search for what must not be there. */
const storedTextOf = (doc: unknown) => JSON.stringify(doc);
const storedText = async (reportId: string) =>
  JSON.stringify([await Report.findById(reportId).lean(), await AuditEntry.find({ subjectId: reportId }).lean()]);

const expectNoConnectionData = (text: string) => {
  expect(text).not.toContain('127.0.0.1');
  expect(text).not.toContain('::ffff');
  expect(text).not.toMatch(/10\.\d+\.\d+\.\d+/);
  expect(text).not.toContain('DownstreamTestPhone');
  expect(text).not.toMatch(/user-?agent/i);
};

let ipCounter = 0;
const nextIp = () => `10.1.${Math.floor(++ipCounter / 250)}.${ipCounter % 250}`;

async function reportIdOf(ctx: TestContext, receipt: string) {
  return createReceiptHasher(ctx.config.jwt.secret)(digitsOf(receipt));
}

describe('public misuse reports', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({
      TRUST_PROXY: '1', // one proxy hop: tests speak for several clients through X-Forwarded-For
      RATE_LIMIT_PUBLIC_POST_PER_MIN: '10000',
      REPORT_SUBMISSIONS_PER_10MIN: '1000',
      REPORT_MIN_FILL_SECONDS: '5',
      REPORT_POW_BITS: '8',
      UPLOAD_MAX_FILE_MB: '1',
      UPLOAD_MAX_FILES: '3',
    });
  });
  afterAll(() => ctx.close());

  describe('the report form', () => {
    it('works without JavaScript: a plain multipart form with a server-filled model picker and a challenge', async () => {
      await makeModel(ctx, { sku: unique('PICK').toUpperCase(), name: 'Internal name', publicName: 'Skyline Camera 4K' });
      const res = await request(ctx.app).get('/report');
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.text).toMatch(/<form method="post" action="\/report\?challenge=[^"]+" enctype="multipart\/form-data"/);
      expect(res.text).toMatch(/<datalist id="model-names">[\s\S]*<option value="Skyline Camera 4K">/);
      expect(res.text).toContain('<option value="KE">Kenya</option>');
      expect(res.text).toMatch(/name="challenge" value="[^"]+"/);
      expect(res.text).toContain('<script src="/static/js/report-pow.js" defer></script>');
      expect(res.text).not.toMatch(/<script>(?!<\/script>)/); // no inline script (CSP)
    });

    it('files a report with two photos, shows a receipt once, and stores it under a slow hash of that receipt', async () => {
      const agent = reportAgent(ctx, nextIp());
      const photos = [
        { name: 'IMG_0001.jpg', data: await jpegWithGps() },
        { name: 'IMG_0002.jpg', data: await jpegWithGps({ r: 20, g: 200, b: 90 }) },
      ];
      const res = await agent.file(reportFields({ serials: 'XYZ-1\nXYZ-2', modelText: 'Some camera' }), photos, { userAgent: USER_AGENT });
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      const receipt = receiptFrom(res.text);
      expect(receipt).toMatch(/^\d{4} \d{4} \d{4} \d{4}$/);
      expect(res.text).toContain('Write it down or keep it somewhere safe now');

      const reportId = await reportIdOf(ctx, receipt!);
      expect(reportId).toMatch(/^rpt_[0-9a-f]{40}$/);
      const report = await reportAsRead(ctx, reportId);
      expect(report).toMatchObject({
        reporterKind: 'ngo',
        anonymous: true,
        contact: null,
        status: 'received',
        product: { serials: ['XYZ-1', 'XYZ-2'], modelText: 'Some camera' },
        where: { country: 'KE', place: 'Nairobi' },
        what: { harmCategories: ['privacy-surveillance'], ongoing: 'yes' },
      });
      expect(report!.evidence).toHaveLength(2);
      for (const e of report!.evidence) {
        const onDisk = await evidenceBytes(ctx, reportId, e.fileId);
        expect(sha256(onDisk)).toBe(e.sha256);
        expect((await sharp(onDisk).metadata()).exif).toBeUndefined();
        expect(onDisk.toString('latin1')).not.toContain('SpyPhone');
        expect(e).toMatchObject({ addedBy: 'reporter', mediaType: 'image/jpeg' });
      }
      // Known by their place in the report: a device's file name is not kept unless asked for.
      expect(report!.evidence.map((e) => [e.name, e.originalName])).toEqual([['evidence-1.jpg', null], ['evidence-2.jpg', null]]);
      expect(storedTextOf(report)).not.toContain('IMG_0001');

      // The receipt exists nowhere in the database; the case carries the deadlines.
      const all = await storedText(reportId);
      expect(all).not.toContain(digitsOf(receipt!));
      expect(all).not.toContain(receipt!);
      expectNoConnectionData(all);
      const kase = (await Case.findById(report!.caseId).lean())!;
      expect(kase.sources).toEqual([expect.objectContaining({ kind: 'report', id: reportId })]);
      expect(kase.deadlines!.acknowledgeBy!.getTime()).toBe(report!.receivedAt.getTime() + 7 * DAY);
      expect(kase.deadlines!.feedbackBy!.getTime()).toBeGreaterThan(kase.deadlines!.acknowledgeBy!.getTime() + 89 * DAY);
      expect(await AuditEntry.countDocuments({ action: 'report.received', subjectId: reportId, actorKind: 'reporter', actorId: null })).toBe(1);
    });

    it('keeps contact details only when given, and then the report is not anonymous', async () => {
      const res = await fileReport(ctx, { contactName: 'Achieng O.', contactOrganisation: 'Haki Watch', contactEmail: 'Achieng@Haki.example' }, { 'X-Forwarded-For': nextIp() });
      expect(res.status).toBe(201);
      const report = await reportAsRead(ctx, await reportIdOf(ctx, res.body.receipt));
      expect(report).toMatchObject({ anonymous: false, contact: { name: 'Achieng O.', organisation: 'Haki Watch', email: 'achieng@haki.example' } });
    });

    it('shows the form again after a mistake with the description and the photo already accepted, and files it with that photo', async () => {
      const agent = reportAgent(ctx, nextIp());
      const hidden = await agent.openForm();
      ctx.clock.advance(6000); // a person without JavaScript: the slow path
      const photo = await jpegWithGps();
      const description = 'The <b>second</b> floor camera films the union meeting room.';
      const first = await agent.postForm(hidden, reportFields({ country: '', description, harmCategories: [] }), [{ name: 'meeting-room.jpg', data: photo }]);
      expect(first.status).toBe(400);
      expect(first.text).toContain('Choose the country where it happened.');
      expect(first.text).toContain('Choose at least one kind of harm');
      expect(first.text).toContain('The &lt;b&gt;second&lt;/b&gt; floor camera films the union meeting room.');
      expect(first.text).toMatch(/id="kept-evidence"[^>]*>\s*<li><span dir="auto">evidence-1</);
      const again = formFields(first.text);
      expect(again.keptEvidence).not.toBe('');
      expect(again.challenge).toBe(hidden.challenge);
      expect(await countReportsDescribing(ctx, description)).toBe(0);

      const second = await agent.postForm(again, reportFields({ description, harmCategories: ['labour-rights'] }));
      expect(second.status).toBe(200);
      const report = (await reportAsRead(ctx, await reportIdOf(ctx, receiptFrom(second.text)!)))!;
      expect(report.what!.description).toBe(description);
      expect(report.evidence.map((e) => e.name)).toEqual(['evidence-1.jpg']);
    });

    it('answers a 70,000-character description with a message about its length, keeping the text and the photo', async () => {
      const agent = reportAgent(ctx, nextIp());
      const description = `Testimony ${'w'.repeat(70_000)}`;
      const res = await agent.file(reportFields({ description }), [{ name: 'scene.jpg', data: await jpegWithGps() }]);
      expect(res.status).toBe(400);
      expect(res.text).toContain('What happened? has 70,010 characters; at most 10,000 fit. Please shorten it: nothing you wrote was removed.');
      expect(res.text).not.toContain('could not be received');
      expect(res.text).toContain(description);
      expect(res.text).toContain('At most 10,000 characters.');
      expect(res.text).not.toMatch(/\smaxlength=/); // a browser would cut a longer paste without a word
      expect(res.text).toMatch(/id="kept-evidence"[^>]*>\s*<li><span dir="auto">evidence-1</);
    });

    it('keeps the photo of a form sent too soon, lists it as attached, and files the report with it', async () => {
      const agent = reportAgent(ctx, nextIp());
      const hidden = await agent.openForm();
      const tooSoon = await agent.postForm(hidden, reportFields({ description: 'Quick hand with a photo' }), [{ name: 'early.jpg', data: await jpegWithGps() }]);
      expect(tooSoon.status).toBe(429);
      expect(tooSoon.text).toContain('Already attached: 1 file');
      ctx.clock.advance(5000);
      const later = await agent.postForm(formFields(tooSoon.text), reportFields({ description: 'Quick hand with a photo' }));
      expect(later.status).toBe(200);
      const report = (await reportAsRead(ctx, await reportIdOf(ctx, receiptFrom(later.text)!)))!;
      expect(report.evidence.map((e) => e.name)).toEqual(['evidence-1.jpg']);
    });

    it('shows the receipt again on reload from a sealed cookie for a short while, then only that the report was received', async () => {
      const agent = reportAgent(ctx, nextIp());
      const filed = await agent.file(reportFields({ description: 'Reloaded receipt page' }));
      const receipt = receiptFrom(filed.text);
      expect(receipt).not.toBeNull();
      const cookie = String(filed.request.cookies ?? '');
      expect(cookie.replace(/\D/g, '')).not.toContain(digitsOf(receipt!).slice(0, 8));
      const reload = await agent.get('/report/received').set('X-Forwarded-For', agent.ip);
      expect(receiptFrom(reload.text)).toBe(receipt);
      ctx.clock.advance(11 * 60_000);
      const later = await agent.get('/report/received').set('X-Forwarded-For', agent.ip);
      expect(later.status).toBe(200);
      expect(receiptFrom(later.text)).toBeNull();
      expect(later.text).toContain('Your report was received.');
      expect(await countReportsDescribing(ctx, 'Reloaded receipt page')).toBe(1);
      ctx.clock.advance(-11 * 60_000); // later tests count windows from where the clock was
    });

    it('speaks the reporter\'s language: Accept-Language, a ?lang= switch remembered in a cookie, and rtl for Arabic', async () => {
      const french = await request(ctx.app).get('/report').set('Accept-Language', 'fr-CA,fr;q=0.9,en;q=0.5');
      expect(french.text).toContain('<html lang="fr" dir="ltr">');
      expect(french.text).toContain('Signaler l’utilisation abusive d’un produit');
      const agent = reportAgent(ctx, nextIp());
      const arabic = await agent.get('/report?lang=ar').set('Accept-Language', 'fr');
      expect(arabic.text).toContain('<html lang="ar" dir="rtl">');
      expect(String(arabic.headers['set-cookie'])).toMatch(/lang=ar;/);
      const remembered = await agent.get('/follow-up').set('Accept-Language', 'fr');
      expect(remembered.text).toContain('<html lang="ar" dir="rtl">');
      expect(remembered.text).toContain('متابعة بلاغ');
    });

    it('removes the photos of a form never sent once the form has expired, and keeps every photo a report holds', async () => {
      const unclaimed = async () => new Set((await UnclaimedEvidence.find({}, { _id: 1 }).lean()).map((u) => u._id));
      const before = await unclaimed();
      const agent = reportAgent(ctx, nextIp());
      const hidden = await agent.openForm();
      ctx.clock.advance(6000);
      const refused = await agent.postForm(hidden, reportFields({ country: '' }), [{ name: 'abandoned.jpg', data: await jpegWithGps() }]);
      expect(refused.status).toBe(400);
      const [abandoned, ...others] = [...(await unclaimed())].filter((id) => !before.has(id));
      expect(others).toEqual([]);
      expect(ctx.services.files.exists(abandoned!)).toBe(true);

      const { challenge, pow } = await solvedChallenge(ctx);
      const req = request(ctx.app).post('/api/v1/reports').set('X-Report-Challenge', challenge).field('challenge', challenge).field('pow', pow);
      for (const [k, v] of Object.entries(reportFields({ description: 'Claimed photo' }))) for (const item of [v].flat()) req.field(k, String(item));
      const filed = await req.attach('evidence', await jpegWithGps(), 'claimed.jpg');
      expect(filed.status).toBe(201);
      const claimed = (await reportAsRead(ctx, await reportIdOf(ctx, filed.body.receipt)))!.evidence[0]!.fileId;
      expect(await UnclaimedEvidence.findById(claimed).lean()).toBeNull();
      // As if the claim had failed after the report was saved: the record is there, the report holds the file.
      await UnclaimedEvidence.create({ _id: claimed, storedAt: ctx.clock.now() });

      expect(await ctx.services.reports.removeUnclaimedEvidence()).toEqual({ removed: 0, kept: 0 }); // the form could still be sent
      const later = CHALLENGE_MAX_AGE_MS + 2 * 3_600_000;
      ctx.clock.advance(later);
      try {
        const result = await ctx.services.reports.removeUnclaimedEvidence();
        expect(result.kept).toBe(1);
        expect(result.removed).toBeGreaterThanOrEqual(1);
        expect(ctx.services.files.exists(abandoned!)).toBe(false);
        expect(ctx.services.files.exists(claimed)).toBe(true);
        expect(await UnclaimedEvidence.countDocuments({ _id: { $in: [abandoned!, claimed] } })).toBe(0);
      } finally {
        ctx.clock.advance(-later);
      }
    });

    it('refuses a file renamed to .jpg that is not an image, naming it, and keeps the good photo and the text', async () => {
      const agent = reportAgent(ctx, nextIp());
      const res = await agent.file(reportFields({ description: 'Kept description 41' }), [
        { name: 'good.jpg', data: await jpegWithGps() },
        { name: 'holiday.jpg', data: notAnImage() },
      ]);
      expect(res.status).toBe(400);
      expect(res.text).toContain('&#34;holiday.jpg&#34; is not a JPEG, PNG, WebP or PDF file (judged by its content, not its name)');
      expect(res.text).toContain('Kept description 41');
      expect(res.text).toMatch(/id="kept-evidence"[^>]*>\s*<li><span dir="auto">evidence-1</);
      expect(await countReportsDescribing(ctx, 'Kept description 41')).toBe(0);
    });

    it('sets an oversize file aside naming it, keeps the valid file sent with it and what was typed, and files the report with that file', async () => {
      const agent = reportAgent(ctx, nextIp());
      const before = await Report.countDocuments();
      const big = Buffer.concat([await jpegWithGps(), Buffer.alloc(1.5 * 1024 * 1024)]);
      const photo = await jpegWithGps({ r: 20, g: 140, b: 90 });
      const res = await agent.file(reportFields({ description: 'Typed before the big file', place: 'Mombasa port' }), [
        { name: 'street.jpg', data: photo },
        { name: 'huge.jpg', data: big },
      ]);
      expect(res.status).toBe(400);
      expect(res.text).toContain('&#34;huge.jpg&#34;: This file is larger than 1 MB: leave it out or send a smaller copy.');
      expect(res.text).not.toContain('&#34;street.jpg&#34;');
      expect(res.text).toContain('Typed before the big file');
      expect(res.text).toContain('value="Mombasa port"');
      expect(res.text).toMatch(/id="kept-evidence"[^>]*>\s*<li><span dir="auto">evidence-1</);
      expect(await Report.countDocuments()).toBe(before);

      ctx.clock.advance(6000); // sent again without JavaScript: the slow path
      const again = await agent.postForm(formFields(res.text), reportFields({ description: 'Typed before the big file', place: 'Mombasa port' }));
      expect(again.status).toBe(200);
      const report = await reportAsRead(ctx, await reportIdOf(ctx, receiptFrom(again.text)!));
      expect(report.evidence.map((e) => e.name)).toEqual(['evidence-1.jpg']);
      expect(sha256(await evidenceBytes(ctx, report._id, report.evidence[0]!.fileId))).toBe(report.evidence[0]!.sha256);
      expect(report.where?.place).toBe('Mombasa port');
    });

    it('refuses an upload past four times the size limit as a whole, with a clear message and what was typed', async () => {
      const agent = reportAgent(ctx, nextIp());
      const before = await Report.countDocuments();
      const enormous = Buffer.concat([await jpegWithGps(), Buffer.alloc(4.5 * 1024 * 1024)]);
      const res = await agent.file(reportFields({ description: 'Typed before the enormous file' }), [{ name: 'enormous.jpg', data: enormous }]);
      expect(res.status).toBe(413);
      expect(res.text).toContain('Each file can be at most 1 MB.');
      expect(res.text).toContain('Typed before the enormous file');
      expect(await Report.countDocuments()).toBe(before);
    });

    it('refuses too many files with a clear message', async () => {
      const agent = reportAgent(ctx, nextIp());
      const png = await pngImage();
      const res = await agent.file(reportFields({ description: 'Four files' }), [1, 2, 3, 4].map((i) => ({ name: `p${i}.png`, data: png })));
      expect(res.status).toBe(413);
      expect(res.text).toContain('Send at most 3 files at a time.');
      expect(res.text).toContain('Four files');

      const { challenge } = await solvedChallenge(ctx);
      const api = await request(ctx.app)
        .post(`/api/v1/reports?challenge=${encodeURIComponent(challenge)}`)
        .attach('evidence', png, 'a.png').attach('evidence', png, 'b.png').attach('evidence', png, 'c.png').attach('evidence', png, 'd.png');
      expect(api.status).toBe(413);
      expect(api.body.error.code).toMatch(/^upload_limit_/);
    });

    it('holds a form sent too fast without proof of work, keeps what was typed, and accepts it after the minimum time', async () => {
      const agent = reportAgent(ctx, nextIp());
      const hidden = await agent.openForm();
      const tooSoon = await agent.postForm(hidden, reportFields({ description: 'Sent by a quick hand' }));
      expect(tooSoon.status).toBe(429);
      expect(tooSoon.text).toContain('please wait a few seconds and send it again');
      expect(tooSoon.text).toContain('Sent by a quick hand');

      ctx.clock.advance(5000);
      const later = await agent.postForm(hidden, reportFields({ description: 'Sent by a quick hand' }));
      expect(later.status).toBe(200);
      expect(receiptFrom(later.text)).not.toBeNull();

      // Sent again (a reload, the back button): the receipt page once more, no second report.
      const replay = await agent.postForm(hidden, reportFields({ description: 'Sent by a quick hand' }));
      expect(replay.status).toBe(200);
      expect(receiptFrom(replay.text)).toBe(receiptFrom(later.text));
      expect(await countReportsDescribing(ctx, 'Sent by a quick hand')).toBe(1);
    });

    it('refuses a wrong proof of work and a forged token', async () => {
      const { challenge } = await solvedChallenge(ctx);
      const wrong = await request(ctx.app).post('/api/v1/reports').send({ ...reportFields(), challenge, pow: 'not-a-number' });
      expect(wrong.status).toBe(429);
      expect(wrong.body.error.fields).toHaveProperty('challenge');
      const forged = await request(ctx.app).post('/api/v1/reports').send({ ...reportFields(), challenge: `${challenge.slice(0, -3)}AAA`, pow: '1' });
      expect(forged.status).toBe(400);
      expect(forged.body.error.code).toBe('challenge_invalid');
    });
  });

  describe('the reports API', () => {
    it('files a JSON report and returns the receipt once', async () => {
      const res = await fileReport(ctx, { serials: ['A-1', 'B-2'], from: '2026-01-01', until: '2026-01-10' });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({ status: 'received', evidence: [] });
      expect(res.body.receipt).toMatch(/^\d{4} \d{4} \d{4} \d{4}$/);
      const report = (await reportAsRead(ctx, await reportIdOf(ctx, res.body.receipt)))!;
      expect(report.product!.serials).toEqual(['A-1', 'B-2']);
      expect(report.when!.from!.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    });

    it('files a multipart report with evidence', async () => {
      const { challenge, pow } = await solvedChallenge(ctx);
      const fields = reportFields({ description: 'Multipart report 7' });
      const req = request(ctx.app).post('/api/v1/reports').set('User-Agent', USER_AGENT).set('X-Report-Challenge', challenge).field('challenge', challenge).field('pow', pow);
      for (const [k, v] of Object.entries(fields)) for (const item of [v].flat()) req.field(k, String(item));
      const res = await req.attach('evidence', await jpegWithGps(), 'scene.jpg');
      expect(res.status).toBe(201);
      expect(res.body.evidence).toEqual([expect.objectContaining({ name: 'evidence-1.jpg', mediaType: 'image/jpeg' })]);
      expect(JSON.stringify(res.body)).not.toContain('scene.jpg');
      const reportId = await reportIdOf(ctx, res.body.receipt);
      expect((await reportAsRead(ctx, reportId))!.evidence[0]!.sha256).toBe(res.body.evidence[0].sha256);
      expectNoConnectionData(await storedText(reportId));
    });

    it.each([
      ['reporterKind', { reporterKind: 'spy' }, 'Choose who you are'],
      ['country', { country: 'XX' }, 'Choose the country'],
      ['country', { country: undefined }, 'Choose the country'],
      ['description', { description: '   ' }, 'What happened?: this field is required.'],
      ['description', { description: 'x'.repeat(10_001) }, 'has 10,001 characters; at most 10,000 fit'],
      ['harmCategories', { harmCategories: [] }, 'Choose at least one kind of harm'],
      ['harmCategories.0', { harmCategories: ['bad-vibes'] }, 'Choose from the list.'],
      ['contactEmail', { contactEmail: 'not-an-email' }, 'Enter a valid e-mail address.'],
      ['serials', { serials: Array.from({ length: 21 }, (_, i) => `S${i}`) }, 'at most 20 serial numbers'],
      ['from', { from: 'last tuesday' }, 'Enter a date as YYYY-MM-DD'],
      ['from', { from: '2030-01-01' }, 'cannot be in the future'],
      ['until', { from: '2026-01-10', until: '2026-01-01' }, 'after its start'],
      ['ongoing', { ongoing: 'maybe' }, 'Choose yes, no'],
    ])('refuses a bad %s with a 400 naming it, and saves nothing', async (field, fields, message) => {
      const before = await Report.countDocuments();
      const res = await fileReport(ctx, fields);
      expect(res.status).toBe(400);
      expect(res.body.error.fields[field]).toContain(message);
      expect(await Report.countDocuments()).toBe(before);
    });

    it('lists public model names for the picker, paginated', async () => {
      const tag = unique('Picker').toLowerCase();
      for (const n of [1, 2, 3]) await makeModel(ctx, { sku: unique('PK').toUpperCase(), publicName: `${tag} model ${n}` });
      const res = await request(ctx.app).get('/api/v1/reports/models').query({ q: tag, perPage: 2 });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ total: 3, page: 1, perPage: 2 });
      expect(res.body.items.map((m: { publicName: string }) => m.publicName)).toEqual([`${tag} model 1`, `${tag} model 2`]);
    });
  });

  describe('linking in two steps', () => {
    const linksOf = async (reportId: string) => (await reportAsRead(ctx, reportId))!;

    it('files at once with the unit, its registration and model, and adds registrations of that model in the country in a background step', async () => {
      const model = await makeModel(ctx, { sku: unique('TWO').toUpperCase(), name: 'Two Step Camera' });
      const { registration, unit } = await makeRegistration(ctx, { model, country: 'KE' });
      const neighbour = await makeRegistration(ctx, { model, country: 'KE' });
      const abroad = await makeRegistration(ctx, { model, country: 'TZ' });

      const res = await fileReport(ctx, { serials: [unit.serial], country: 'KE' }, { 'X-Forwarded-For': nextIp() });
      expect(res.status).toBe(201);
      const reportId = await reportIdOf(ctx, res.body.receipt);
      const filed = await linksOf(reportId);
      // Saved and answered before the slow step: the report says it is still to come.
      expect(filed.linking).toBe('pending');
      expect(filed.caseId).toBeTruthy();
      const first = filed.links.map((l) => [l.kind, l.targetId, l.confidence]);
      expect(first).toEqual(expect.arrayContaining([['unit', unit._id, 'high'], ['registration', registration._id, 'high'], ['model', model._id, 'medium'], ['country', 'KE', 'high']]));
      expect(first.map(([, id]) => id)).not.toContain(neighbour.registration._id);
      const staffPage = async () => ejs.renderFile(path.join(viewsDir, 'reports/_report.ejs'), { report: await ctx.services.reports.getReportForStaff(reportId), labels: LABELS, evidenceHref: (id: string) => id });
      expect(await staffPage()).toContain('still being looked up');
      await ctx.services.reports.confirmLink(reportId, 0, true, 'user-1');

      await ctx.services.reports.completePendingLinks();
      const done = await linksOf(reportId);
      expect(done.linking).toBe('done');
      const after = done.links.map((l) => [l.kind, l.targetId, l.confidence]);
      // Appended after the links investigators may already have reviewed, whose positions stay.
      expect(after.slice(0, first.length)).toEqual(first);
      expect(done.links[0]!.confirmed).toBe(true);
      expect(after.slice(first.length)).toEqual([['registration', neighbour.registration._id, 'low']]);
      expect(after.map(([, id]) => id)).not.toContain(abroad.registration._id);
      expect(after.filter(([, id]) => id === registration._id)).toHaveLength(1);
      expect(await staffPage()).not.toContain('still being looked up');
    });

    it('raises a misuse-report red flag on the report\'s own case when it names a unit, and none when it names nothing known', async () => {
      const model = await makeModel(ctx, { sku: unique('FLG').toUpperCase(), name: 'Flagged Camera' });
      const { unit } = await makeRegistration(ctx, { model, country: 'KE' });
      const res = await fileReport(ctx, { serials: [unit.serial], country: 'UG' }, { 'X-Forwarded-For': nextIp() });
      expect(res.status).toBe(201);
      const report = await linksOf(await reportIdOf(ctx, res.body.receipt));
      const flags = await Flag.find({ unitId: unit._id }).lean();
      expect(flags).toHaveLength(1);
      expect(flags[0]).toMatchObject({ rule: 'misuse-report', modelId: model._id, serial: unit.serial, country: 'UG', caseId: report.caseId, source: { kind: 'report', id: report._id } });
      expect(await Case.countDocuments({ unitIds: unit._id })).toBe(1); // no second case for the flag

      const unknown = await fileReport(ctx, { serials: ['NOT-IN-ANY-CATALOGUE-7'] }, { 'X-Forwarded-For': nextIp() });
      expect(unknown.status).toBe(201);
      const quiet = await reportIdOf(ctx, unknown.body.receipt);
      expect(await Flag.countDocuments({ 'source.id': quiet })).toBe(0);
    });

    it('needs no background step when no model is linked', async () => {
      const res = await fileReport(ctx, { serials: ['NOT-IN-ANY-CATALOGUE-9'] }, { 'X-Forwarded-For': nextIp() });
      expect(res.status).toBe(201);
      const report = await linksOf(await reportIdOf(ctx, res.body.receipt));
      expect(report.linking).toBe('done');
      expect(report.links.map((l) => l.kind)).toEqual(['country']);
    });

    const fileAbout = (model: string, country: string) => fileReport(ctx, { serials: [], modelText: model, country }, { 'X-Forwarded-For': nextIp() });

    it('runs the background step from the report-links job, for every report waiting', async () => {
      const model = await makeModel(ctx, { sku: unique('BGS').toUpperCase(), name: 'Background Sensor' });
      const regs = [await makeRegistration(ctx, { model, country: 'UG' }), await makeRegistration(ctx, { model, country: 'RW' })];
      const [ug, rw] = await Promise.all([fileAbout(model._id, 'UG'), fileAbout(model._id, 'RW')].map(async (res) => reportIdOf(ctx, (await res).body.receipt)));
      expect((await linksOf(ug!)).linking).toBe('pending');

      const jobs = backgroundJobs(ctx.services, { ...ctx.config.jobs, reportLinksEveryMs: 50 }, createLogger('silent')).filter((j) => j.name === 'report-links');
      const runner = startJobs(jobs, { store: createJobsStore(ctx.db.engine), clock: ctx.clock, logger: createLogger('silent'), instanceId: unique('links'), leaseMs: 5_000, pollMs: 50 });
      try {
        const deadline = Date.now() + 20_000;
        while (Date.now() < deadline && ((await linksOf(ug!)).linking !== 'done' || (await linksOf(rw!)).linking !== 'done')) await new Promise((r) => setTimeout(r, 100));
      } finally {
        await runner.stop();
      }
      const [a, b] = [await linksOf(ug!), await linksOf(rw!)];
      expect([a.linking, b.linking]).toEqual(['done', 'done']);
      expect(a.links.filter((l) => l.kind === 'registration').map((l) => l.targetId)).toEqual([regs[0]!.registration._id]);
      expect(b.links.filter((l) => l.kind === 'registration').map((l) => l.targetId)).toEqual([regs[1]!.registration._id]);
    });

    it('finishes reports filed before the pass had its queue once npm run migrate queued them', async () => {
      const model = await makeModel(ctx, { sku: unique('OLDQ').toUpperCase(), name: 'Queued Late Sensor' });
      const { registration } = await makeRegistration(ctx, { model, country: 'MW' });
      const reportId = await reportIdOf(ctx, (await fileAbout(model._id, 'MW')).body.receipt);
      // Written the old way: pending, with nothing but the report saying so.
      await ReportLinkWait.deleteOne({ _id: reportId });
      await ctx.services.reports.completePendingLinks();
      expect((await linksOf(reportId)).linking).toBe('pending');

      await mongoose.connection.collection('migrations').deleteOne({ _id: '006-report-link-waits' as never });
      await runMigrations(ctx.db.engine);
      await ctx.services.reports.completePendingLinks();
      const done = await linksOf(reportId);
      expect(done.linking).toBe('done');
      expect(done.links.filter((l) => l.targetId === registration._id)).toHaveLength(1);
      expect(await ReportLinkWait.findById(reportId).lean()).toBeNull();
    });

    it('keeps a queued report whose document is not written yet, and drops the wait once it is clearly never coming', async () => {
      // A filing that queued its report and then died before writing it (or is still writing it).
      const ghost = `rpt_${unique('ghost')}`;
      await ReportLinkWait.create({ _id: ghost, queuedAt: ctx.clock.now() });
      await ctx.services.reports.completePendingLinks();
      expect(await ReportLinkWait.findById(ghost).lean()).not.toBeNull();

      ctx.clock.advance(11 * 60_000);
      await ctx.services.reports.completePendingLinks();
      expect(await ReportLinkWait.findById(ghost).lean()).toBeNull();
    });

    it('appends a report\'s country links once when a second instance\'s pass finishes after the first', async () => {
      const model = await makeModel(ctx, { sku: unique('TWI').toUpperCase(), name: 'Twice Linked Sensor' });
      const { registration } = await makeRegistration(ctx, { model, country: 'BI' });
      const reportId = await reportIdOf(ctx, (await fileAbout(model._id, 'BI')).body.receipt);

      // The other instance reads the report while it is pending, then answers only after the first pass finished it.
      let reached!: () => void;
      let release!: () => void;
      const [atGate, gate] = [new Promise<void>((r) => (reached = r)), new Promise<void>((r) => (release = r))];
      const { files, cases, audit, catalogue, flags, linker, webhooks, notifications } = ctx.services;
      const lateLinker = { ...linker, registrationLinksFor: async (...args: Parameters<typeof linker.registrationLinksFor>) => { const found = await linker.registrationLinksFor(...args); reached(); await gate; return found; } };
      const other = createReportsService({ config: ctx.config, clock: ctx.clock, stores: createStores(ctx.db.engine), files, cases, audit, catalogue, flags, linker: lateLinker, webhooks, notifications });
      const late = other.completePendingLinks();
      await atGate;
      await ctx.services.reports.completePendingLinks();
      release();
      await late;

      const done = await linksOf(reportId);
      expect(done.linking).toBe('done');
      expect(done.links.filter((l) => l.targetId === registration._id)).toHaveLength(1);
    });
  });

  describe('follow-up with the receipt', () => {
    it('shows status, shared feedback and the conversation, and nothing about customers, registrations or cases', async () => {
      const { registration, unit, model } = await makeRegistration(ctx, { ownerOrganisation: 'Secret Customer Holdings' });
      const filed = await fileReport(ctx, { serials: [unit.serial], modelText: model._id, country: 'KE' });
      const reportId = await reportIdOf(ctx, filed.body.receipt);
      const report = await reportAsRead(ctx, reportId);
      expect(report!.links.map((l) => l.kind)).toEqual(expect.arrayContaining(['unit', 'registration']));
      const investigator = await makeUser(ctx, 'investigator');
      await ctx.services.reports.setStatus(reportId, 'acknowledged', String(investigator.user._id));
      await ctx.services.reports.setFeedback(reportId, 'We contacted the <i>owner</i>.', String(investigator.user._id));
      await ctx.services.reports.postInvestigatorMessage(reportId, String(investigator.user._id), 'Which floor? <script>alert(1)</script>');

      const agent = reportAgent(ctx, nextIp());
      const res = await agent.followUp(filed.body.receipt.replace(/ /g, '-'));
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.text).toContain('Acknowledged: an investigator has read it');
      expect(res.text).toContain('We contacted the &lt;i&gt;owner&lt;/i&gt;.');
      expect(res.text).toContain('Which floor? &lt;script&gt;alert(1)&lt;/script&gt;');
      expect(res.text).not.toContain('<script>alert(1)');
      for (const secret of ['Secret Customer Holdings', registration._id, unit._id, report!.caseId!, reportId, investigator.email]) {
        expect(res.text).not.toContain(secret);
      }

      const api = await request(ctx.app).post('/api/v1/follow-up').set('X-Forwarded-For', nextIp()).send({ receipt: filed.body.receipt });
      expect(api.status).toBe(200);
      expect(api.body).toMatchObject({ status: 'acknowledged', feedback: { text: 'We contacted the <i>owner</i>.' }, messages: [{ from: 'investigator' }] });
      expect(Object.keys(api.body).sort()).toEqual(['canAddEvidence', 'canWrite', 'closure', 'evidence', 'feedback', 'messagePage', 'messages', 'receivedAt', 'status', 'submitted']);
      expect(JSON.stringify(api.body)).not.toMatch(/Secret Customer|reg_|caseId|links|C-20\d\d/);
    });

    it('lets the reporter answer and add a file, each post redirecting to the report page, with the receipt in no URL and no cookie', async () => {
      const filed = await fileReport(ctx);
      const reportId = await reportIdOf(ctx, filed.body.receipt);
      const agent = reportAgent(ctx, nextIp());
      const page = await agent.followUp(filed.body.receipt);
      expect(page.status).toBe(200);
      expect(page.redirects).toEqual([expect.stringMatching(/\/follow-up\/report$/)]);
      const digits = digitsOf(filed.body.receipt);
      expect(page.text.replace(/\D/g, '')).not.toContain(digits.slice(0, 8));
      expect(page.redirects.join(' ')).not.toContain(digits.slice(0, 8));

      const empty = await agent.post('/follow-up/messages').set('X-Forwarded-For', agent.ip).type('form').send({ _csrf: csrfFrom(page.text), text: ' ' });
      expect(empty.status).toBe(400);
      expect(empty.text).toContain('Message: this field is required.');

      const sent = await agent
        .post('/follow-up/messages')
        .set('X-Forwarded-For', agent.ip)
        .set('User-Agent', USER_AGENT)
        .type('form')
        .send({ _csrf: csrfFrom(page.text), text: 'It is the third floor.' });
      expect(sent.status).toBe(303);
      expect(sent.headers.location).toBe('/follow-up/report?done=message');
      const after = await agent.get(String(sent.headers.location)).set('X-Forwarded-For', agent.ip);
      expect(after.text).toContain('Your message was sent to the investigators.');
      expect(after.text).toContain('It is the third floor.');

      // Going back to the post's address opens the report page, not a 404.
      const back = await agent.get('/follow-up/messages').set('X-Forwarded-For', agent.ip);
      expect(back.status).toBe(303);
      expect(back.headers.location).toBe('/follow-up/report');

      // The upload form carries its CSRF token in its address, checked before the files are read.
      const uploadAction = /action="(\/follow-up\/evidence\?_csrf=[^"]+)"/.exec(after.text)![1]!;
      const added = await agent
        .post(uploadAction)
        .set('X-Forwarded-For', agent.ip)
        .field('_csrf', csrfFrom(after.text))
        .attach('evidence', await jpegWithGps(), 'third-floor.jpg')
        .redirects(1);
      expect(added.status).toBe(200);
      expect(added.text).toContain('Your files were added to the report.');
      expect(added.text).toContain('evidence-1.jpg');
      expect(added.text).not.toContain('third-floor.jpg');
      const forged = await agent.post('/follow-up/evidence').set('X-Forwarded-For', agent.ip).attach('evidence', await jpegWithGps(), 'x.jpg');
      expect(forged.status).toBe(403);

      const report = await reportAsRead(ctx, reportId);
      expect(report!.messages).toEqual([expect.objectContaining({ from: 'reporter', userId: null, text: 'It is the third floor.' })]);
      expect(report!.messageCount).toBe(1);
      expect(report!.evidence).toEqual([expect.objectContaining({ name: 'evidence-1.jpg', originalName: null, addedBy: 'reporter' })]);
      expectNoConnectionData(await storedText(reportId));

      // Leaving forgets the report in this browser.
      const left = await agent.post('/follow-up/leave').set('X-Forwarded-For', agent.ip).type('form').send({ _csrf: csrfFrom(after.text) });
      expect(left.status).toBe(303);
      const gone = await agent.get('/follow-up/report').set('X-Forwarded-For', agent.ip);
      expect(gone.status).toBe(400);
      expect(gone.text).toContain('Enter your receipt code again');
    });

    it('shows the reporter what they sent, and keeps a mistyped receipt in the box', async () => {
      const filed = await fileReport(ctx, { description: 'Line one of the testimony.\nLine two.', place: 'Kisumu market', serials: ['KSM-77'] });
      const agent = reportAgent(ctx, nextIp());
      const page = await agent.followUp(filed.body.receipt);
      expect(page.text).toMatch(/id="submitted-description"><p dir="auto">Line one of the testimony.<\/p><p dir="auto">Line two.<\/p>/);
      expect(page.text).toContain('Kisumu market');
      expect(page.text).toContain('KSM-77');
      expect(page.text).toContain('Kenya');

      const other = reportAgent(ctx, nextIp());
      const form = await other.get('/follow-up').set('X-Forwarded-For', other.ip);
      const wrong = await other.post('/follow-up').set('X-Forwarded-For', other.ip).type('form').send({ _csrf: csrfFrom(form.text), receipt: '1234 5678 9012 345' });
      expect(wrong.status).toBe(400);
      expect(wrong.text).toContain('value="1234 5678 9012 345"');
    });

    it('shows a closed report\'s outcome, takes messages for the configured days after closing, then refuses them saying why', async () => {
      const filed = await fileReport(ctx);
      const reportId = await reportIdOf(ctx, filed.body.receipt);
      const investigator = await makeUser(ctx, 'investigator');
      await ctx.services.reports.postInvestigatorMessage(reportId, String(investigator.user._id), 'We found the cameras were removed.', 'feedback');
      await ctx.services.reports.setStatus(reportId, 'closed', String(investigator.user._id), 'The owner removed the cameras from the clinic entrance.');
      const agent = reportAgent(ctx, nextIp());
      const open = await agent.followUp(filed.body.receipt);
      expect(open.text).toContain('The owner removed the cameras from the clinic entrance.');
      expect(open.text).toContain('You can still write to the investigators or add files until');
      expect(open.text).toContain('Feedback from the investigators');
      expect(open.text).not.toContain('Nothing yet.');

      ctx.clock.advance(31 * DAY);
      const api = await request(ctx.app).post('/api/v1/follow-up/messages').set('X-Forwarded-For', nextIp()).send({ receipt: filed.body.receipt, text: 'One more thing' });
      expect(api.status).toBe(409);
      expect(api.body.error.fields.text).toContain('no longer accepts messages or files');
      const late = await agent.followUp(filed.body.receipt);
      expect(late.text).toContain('This report is closed and no longer accepts messages or files.');
      expect(late.text).not.toContain('action="/follow-up/messages"');
      expect((await reportAsRead(ctx, reportId))!.messages.map((m) => m.text)).toEqual(['We found the cameras were removed.']);
      expect((await reportAsRead(ctx, reportId))!.feedback).toMatchObject({ text: 'We found the cameras were removed.' });
      ctx.clock.advance(-31 * DAY); // later tests count windows from where the clock was
    });

    it('adds the valid file of a follow-up upload and names the oversize one sent with it', async () => {
      const filed = await fileReport(ctx);
      const agent = reportAgent(ctx, nextIp());
      const page = await agent.followUp(filed.body.receipt);
      const uploadAction = /action="(\/follow-up\/evidence\?_csrf=[^"]+)"/.exec(page.text)![1]!;
      const res = await agent
        .post(uploadAction)
        .set('X-Forwarded-For', agent.ip)
        .field('_csrf', csrfFrom(page.text))
        .attach('evidence', await jpegWithGps(), 'stairs.jpg')
        .attach('evidence', Buffer.concat([await jpegWithGps(), Buffer.alloc(1.5 * 1024 * 1024)]), 'long-video.jpg');
      expect(res.status).toBe(400);
      expect(res.text).toContain('&#34;long-video.jpg&#34;: This file is larger than 1 MB');
      expect(res.text).toMatch(/id="evidence">\s*<li>evidence-1\.jpg/);
      const report = await reportAsRead(ctx, await reportIdOf(ctx, filed.body.receipt));
      expect(report.evidence.map((e) => [e.name, e.size < 1024 * 1024])).toEqual([['evidence-1.jpg', true]]);
    });

    it('refuses a bad file added at follow-up, naming it, and stores nothing', async () => {
      const filed = await fileReport(ctx);
      const res = await request(ctx.app)
        .post('/api/v1/follow-up/evidence')
        .set('X-Forwarded-For', nextIp())
        .field('receipt', filed.body.receipt)
        .attach('evidence', notAnImage(), 'photo.jpg');
      expect(res.status).toBe(400);
      expect(res.body.error.fields.evidence).toContain('"photo.jpg" is not a JPEG');
      expect((await reportAsRead(ctx, await reportIdOf(ctx, filed.body.receipt)))!.evidence).toEqual([]);
    });

    it('throttles receipt guessing with a growing delay and a cap, and lets the reporter in again after the window', async () => {
      // Windows are fixed spans of the clock: start at one's beginning, so that the ten guesses a
      // minute apart fall in one window whatever time earlier tests left the clock at.
      ctx.clock.advance(RECEIPT_WINDOW_MS - (ctx.clock.now().getTime() % RECEIPT_WINDOW_MS));
      const filed = await fileReport(ctx);
      const ip = nextIp();
      const attempt = (receipt: string) => request(ctx.app).post('/api/v1/follow-up').set('X-Forwarded-For', ip).send({ receipt });
      const guess = (i: number) => `0000 0000 0000 ${String(1000 + i)}`;

      const first = await attempt(guess(0));
      expect(first.status).toBe(400);
      expect(first.body.error.fields.receipt).toContain('No report has this receipt code');
      const tooQuick = await attempt(filed.body.receipt);
      expect(tooQuick.status).toBe(429); // the delay after a failure applies to every code
      expect(tooQuick.body.error.message).toMatch(/wait \d+ seconds/);

      for (let i = 1; i < RECEIPT_FAILURES_PER_WINDOW; i++) {
        ctx.clock.advance(61_000);
        expect((await attempt(guess(i))).status).toBe(400);
      }
      ctx.clock.advance(61_000);
      const capped = await attempt(filed.body.receipt);
      expect(capped.status).toBe(429);
      expect(capped.body.error.code).toBe('rate_limited');
      const elsewhere = await request(ctx.app).post('/api/v1/follow-up').set('X-Forwarded-For', nextIp()).send({ receipt: filed.body.receipt });
      expect(elsewhere.status).toBe(200);

      ctx.clock.advance(RECEIPT_WINDOW_MS);
      const back = await attempt(filed.body.receipt);
      expect(back.status).toBe(200);
      expect(back.body.status).toBe('received');
    });

    it('does not count a malformed code as a guess, and says what a code looks like', async () => {
      const res = await request(ctx.app).post('/api/v1/follow-up').set('X-Forwarded-For', nextIp()).send({ receipt: '12345' });
      expect(res.status).toBe(400);
      expect(res.body.error.fields).toEqual({ receipt: 'Enter the 16 digits of your receipt code.' });
    });
  });

  describe('for investigators', () => {
    it('renders HTML in a description as text in the staff partial', async () => {
      const filed = await fileReport(ctx, { description: '<img src=x onerror=alert(1)>Soldiers used it\n<script>steal()</script>', contactName: '<b>Name</b>' });
      const report = await ctx.services.reports.getReportForStaff(await reportIdOf(ctx, filed.body.receipt));
      const html = await ejs.renderFile(path.join(viewsDir, 'reports/_report.ejs'), { report, labels: LABELS, evidenceHref: (id: string) => `/cases/x/evidence/${id}` });
      expect(html).toContain('<p>&lt;img src=x onerror=alert(1)&gt;Soldiers used it</p>');
      expect(html).toContain('<p>&lt;script&gt;steal()&lt;/script&gt;</p>');
      expect(html).toContain('&lt;b&gt;Name&lt;/b&gt;');
      expect(html).not.toMatch(/<script>|<img src=x/);
      expect(html).toContain('Privacy and surveillance');
    });

    it('opens evidence for the caller to stream, only for files of that report', async () => {
      const photo = await jpegWithGps();
      const { challenge, pow } = await solvedChallenge(ctx);
      const req = request(ctx.app).post('/api/v1/reports').set('X-Report-Challenge', challenge).field('challenge', challenge).field('pow', pow);
      for (const [k, v] of Object.entries(reportFields())) for (const item of [v].flat()) req.field(k, String(item));
      const filed = await req.attach('evidence', photo, 'x.jpg');
      const reportId = await reportIdOf(ctx, filed.body.receipt);
      const [ref] = (await ctx.services.reports.getReportForStaff(reportId)).evidence;
      const opened = await ctx.services.reports.openEvidence(reportId, ref!.fileId);
      const chunks: Buffer[] = [];
      for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
      expect(sha256(Buffer.concat(chunks))).toBe(opened.sha256);
      expect(opened).toMatchObject({ mediaType: 'image/jpeg', name: 'evidence-1.jpg' });
      await expect(ctx.services.reports.openEvidence(reportId, 'f'.repeat(32))).rejects.toMatchObject({ status: 404 });
    });

    it('confirms and rejects links, recording who did it', async () => {
      const filed = await fileReport(ctx, { country: 'UG' });
      const reportId = await reportIdOf(ctx, filed.body.receipt);
      const { user } = await makeUser(ctx, 'investigator');
      const before = await reportAsRead(ctx, reportId);
      const countryIndex = before!.links.findIndex((l) => l.kind === 'country');
      expect(countryIndex).toBeGreaterThanOrEqual(0);
      await ctx.services.reports.confirmLink(reportId, countryIndex, false, String(user._id));
      const after = await reportAsRead(ctx, reportId);
      expect(after!.links[countryIndex]).toMatchObject({ kind: 'country', targetId: 'UG', confirmed: false, confirmedBy: String(user._id) });
      expect(await AuditEntry.countDocuments({ action: 'report.link-rejected', subjectId: reportId })).toBe(1);
      await expect(ctx.services.reports.confirmLink(reportId, 99, true, String(user._id))).rejects.toMatchObject({ status: 400, fields: { linkIndex: expect.any(String) } });
    });

    it('adds investigator evidence, which the reporter does not see', async () => {
      const filed = await fileReport(ctx);
      const reportId = await reportIdOf(ctx, filed.body.receipt);
      const { user } = await makeUser(ctx, 'investigator');
      const ref = await ctx.services.reports.addInvestigatorEvidence(reportId, { buffer: await pngImage(), originalname: 'satellite.png' }, String(user._id));
      expect(ref).toMatchObject({ addedBy: 'investigator', addedByUserId: String(user._id), mediaType: 'image/png' });
      const view = await ctx.services.reports.followUp(filed.body.receipt, nextIp());
      expect(view.evidence).toEqual([]);
    });

    it('stops adding evidence at the per-report cap, and removes the file it refused', async () => {
      const filed = await fileReport(ctx);
      const reportId = await reportIdOf(ctx, filed.body.receipt);
      const { user } = await makeUser(ctx, 'investigator');
      const png = await pngImage();
      for (let i = 0; i < MAX_EVIDENCE; i++) await ctx.services.reports.addInvestigatorEvidence(reportId, { buffer: png, originalname: `p${i}.png` }, String(user._id));
      const storedFiles = () => fs.readdirSync(path.join(ctx.config.dataDir, 'files'), { recursive: true }).filter((f) => /[a-f0-9]{32}$/.test(String(f))).length;
      const filesBefore = storedFiles();
      const res = await request(ctx.app)
        .post('/api/v1/follow-up/evidence')
        .set('X-Forwarded-For', nextIp())
        .field('receipt', filed.body.receipt)
        .attach('evidence', png, 'one-too-many.png');
      expect(res.status).toBe(400);
      expect(res.body.error.fields.evidence).toBe(`A report can hold at most ${MAX_EVIDENCE} files.`);
      expect((await reportAsRead(ctx, reportId))!.evidence).toHaveLength(MAX_EVIDENCE);
      expect(storedFiles()).toBe(filesBefore);
    });

    it('deletes the reporter data for retention: contact, messages and files really gone, a trace kept', async () => {
      const photo = await jpegWithGps();
      const { challenge, pow } = await solvedChallenge(ctx);
      const req = request(ctx.app).post('/api/v1/reports').set('X-Report-Challenge', challenge).field('challenge', challenge).field('pow', pow);
      for (const [k, v] of Object.entries(reportFields({ contactName: 'To be erased' }))) for (const item of [v].flat()) req.field(k, String(item));
      const filed = await req.attach('evidence', photo, 'erase-me.jpg');
      const reportId = await reportIdOf(ctx, filed.body.receipt);
      await ctx.services.reports.reporterMessage(filed.body.receipt, nextIp(), 'A message to erase');
      const before = (await reportAsRead(ctx, reportId))!;
      const file = path.join(ctx.config.dataDir, 'files', before.evidence[0]!.fileId.slice(0, 2), before.evidence[0]!.fileId);
      expect(fs.existsSync(file)).toBe(true);

      expect(await ctx.services.reports.deleteReporterData(reportId)).toEqual({ evidenceFiles: 1, messages: 1 });
      expect(fs.existsSync(file)).toBe(false);
      const after = (await reportAsRead(ctx, reportId))!;
      expect(after).toMatchObject({ contact: null, messages: [], evidence: [], erased: { evidenceFiles: 1, messages: 1, evidenceSha256: [before.evidence[0]!.sha256] } });
      expect(JSON.stringify(after)).not.toContain('To be erased');
      expect(await AuditEntry.countDocuments({ action: 'report.reporter-data-deleted', subjectId: reportId })).toBe(1);
    });
  });

  describe('PDF evidence', () => {
    it('reaches the investigator without its author, creator, XMP, opening script or attached file, under a generic name', async () => {
      const pdf = await pdfWithHiddenData();
      // The fixture carries them (pdf-lib writes the properties as UTF-16 hex strings).
      for (const hidden of ['Jane Reporter (xmp)', 'xmpmeta', '/OpenAction', 'tracking-beacon', '/EmbeddedFile', 'jane-source']) expect(pdf.toString('latin1')).toContain(hidden);
      const original = await PDFDocument.load(pdf, { updateMetadata: false });
      expect([original.getAuthor(), original.getCreator()]).toEqual(['Jane Reporter', 'ScanSnap Home (Jane-Laptop)']);
      const { challenge, pow } = await solvedChallenge(ctx);
      const req = request(ctx.app).post('/api/v1/reports').set('X-Forwarded-For', nextIp()).set('X-Report-Challenge', challenge).field('challenge', challenge).field('pow', pow);
      for (const [k, v] of Object.entries(reportFields())) for (const item of [v].flat()) req.field(k, String(item));
      const filed = await req.attach('evidence', pdf, 'Jane Reporter - delivery note.pdf');
      expect(filed.status).toBe(201);
      const reportId = await reportIdOf(ctx, filed.body.receipt);
      const report = (await reportAsRead(ctx, reportId))!;
      const investigator = await makeStaff(ctx);
      await ctx.services.cases.assign(report.caseId!, investigator.actor.id, investigator.actor);

      const res = await request(ctx.app)
        .get(`/api/v1/cases/${report.caseId}/reports/${reportId}/evidence/${report.evidence[0]!.fileId}`)
        .set(investigator.auth)
        .buffer(true)
        .parse((r, done) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => done(null, Buffer.concat(chunks)));
        });
      expect(res.status).toBe(200);
      expect(res.headers['content-disposition']).toBe('attachment; filename=evidence-1.pdf');
      expect(res.headers['cache-control']).toBe('no-store');
      const text = (res.body as Buffer).toString('latin1');
      expect(text.startsWith('%PDF-')).toBe(true);
      for (const gone of ['Jane Reporter', 'ScanSnap', 'Delivery note', 'xmpmeta', '/Metadata', '/OpenAction', '/JavaScript', 'tracking-beacon', '/EmbeddedFile', 'jane-source', 'attached-secret', '/Author', '/Creator', '/Producer']) {
        expect([gone, text.includes(gone)]).toEqual([gone, false]);
      }
      // Still a PDF with its page.
      const cleaned = await PDFDocument.load(res.body as Buffer, { updateMetadata: false });
      expect(cleaned.getPageCount()).toBe(1);
      expect([cleaned.getAuthor(), cleaned.getCreator(), cleaned.getTitle()]).toEqual([undefined, undefined, undefined]);
      const keys = (dict: PDFDict | undefined) => (dict?.keys() ?? []).map(String);
      expect(keys(cleaned.catalog)).toEqual(expect.not.arrayContaining(['/OpenAction', '/AA', '/Metadata']));
      expect(keys(cleaned.catalog.lookupMaybe(PDFName.of('Names'), PDFDict))).toEqual([]);
    });

    it('refuses a PDF it cannot parse, naming the field', async () => {
      const { challenge, pow } = await solvedChallenge(ctx);
      const req = request(ctx.app).post('/api/v1/reports').set('X-Forwarded-For', nextIp()).set('X-Report-Challenge', challenge).field('challenge', challenge).field('pow', pow);
      for (const [k, v] of Object.entries(reportFields())) for (const item of [v].flat()) req.field(k, String(item));
      const res = await req.attach('evidence', Buffer.from('%PDF-1.7\n garbage without objects'), 'broken.pdf');
      expect(res.status).toBe(400);
      expect(res.body.error.fields.evidence).toContain('"broken.pdf" could not be read as a PDF');
    });
  });

  describe('several app instances on one database', () => {
    const twoInstances = (overrides: Partial<TestContext['config']['reports']> = {}) => {
      const config = { ...ctx.config, reports: { ...ctx.config.reports, ...overrides } };
      return [createApp({ config, db: ctx.db, clock: ctx.clock, logger: createLogger('silent') }), createApp({ config, db: ctx.db, clock: ctx.clock, logger: createLogger('silent') })];
    };
    const fileOn = async (app: ReturnType<typeof createApp>, ip: string, challenge?: { challenge: string; pow: string }) => {
      const solved = challenge ?? (await solvedChallenge(ctx));
      return request(app).post('/api/v1/reports').set('X-Forwarded-For', ip).send({ ...reportFields(), ...solved });
    };

    it('share the per-address report limit: what one instance counted, the other refuses past', async () => {
      ctx.clock.advance(10 * 60_000);
      const [a, b] = twoInstances({ submissionsPer10Min: 2 });
      const ip = nextIp();
      const statuses = [(await fileOn(a!, ip)).status, (await fileOn(b!, ip)).status, (await fileOn(a!, ip)).status, (await fileOn(b!, ip)).status];
      expect(statuses).toEqual([201, 201, 429, 429]);
      expect((await fileOn(b!, nextIp())).status).toBe(201); // another address has its own allowance
      // Kept under a keyed hash of the address, never the address.
      expect(JSON.stringify(await Limit.find().lean())).not.toContain(ip);
    });

    it('refuse on one instance a form token already used on the other', async () => {
      const [a, b] = twoInstances();
      const ip = nextIp();
      const solved = await solvedChallenge(ctx);
      expect((await fileOn(a!, ip, solved)).status).toBe(201);
      const again = await fileOn(b!, ip, solved);
      expect(again.status).toBe(400);
      expect(again.body.error.code).toBe('challenge_invalid');
      expect(await countReportsDescribing(ctx, String(reportFields().description), { receivedAt: ctx.clock.now() })).toBeGreaterThanOrEqual(1);
    });

    it('forget a window once it is over: its document is removed by the sweep', async () => {
      const ip = nextIp();
      expect((await fileOn(ctx.app, ip)).status).toBe(201);
      expect(await Limit.countDocuments({ expiresAt: { $gt: ctx.clock.now() } })).toBeGreaterThan(0);
      ctx.clock.advance(CHALLENGE_MAX_AGE_MS + 60_000);
      await createStores(ctx.db.engine).limits.removeExpired(ctx.clock.now());
      expect(await Limit.countDocuments({ expiresAt: { $lte: ctx.clock.now() } })).toBe(0);
    });
  });

  describe('uploads are admitted before their body is read', () => {
    /** Sends the headers and the first part of a large multipart body, and waits for an answer before sending the rest. */
    function startUpload(url: string, headers: Record<string, string> = {}) {
      return new Promise<{ status: number; bodyComplete: boolean; body: string }>((resolve, reject) => {
        const server = ctx.app.listen(0, '127.0.0.1', () => {
          const { port } = server.address() as AddressInfo;
          const boundary = 'x-boundary-x';
          let sentAll = false;
          const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: url, headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'Content-Length': String(50 * 1024 * 1024), ...headers } });
          req.on('response', (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => {
              req.destroy();
              server.close();
              resolve({ status: res.statusCode ?? 0, bodyComplete: sentAll, body });
            });
          });
          req.on('error', (err) => (res_ok(err) ? undefined : reject(err)));
          const res_ok = (err: Error) => /ECONNRESET|EPIPE|socket hang up/.test(err.message);
          req.write(`--${boundary}\r\nContent-Disposition: form-data; name="evidence"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`);
          req.write(Buffer.alloc(256 * 1024));
          // The remaining ~50 MB are never sent: a server that waits for them never answers.
          setTimeout(() => {
            sentAll = true;
            server.close();
            reject(new Error('no answer before the body was sent'));
          }, 5_000).unref();
        });
      });
    }

    it('refuses a report upload without a live form token at once, without waiting for its files', async () => {
      const res = await startUpload('/api/v1/reports', { 'X-Forwarded-For': nextIp() });
      expect(res.status).toBe(400);
      expect(res.bodyComplete).toBe(false);
      expect(JSON.parse(res.body).error.code).toBe('challenge_invalid');
      expect(fs.existsSync(path.join(ctx.config.dataDir, 'uploads-tmp')) ? fs.readdirSync(path.join(ctx.config.dataDir, 'uploads-tmp')) : []).toEqual([]);
    });

    it('refuses a follow-up upload from a client locked out of receipts before reading it', async () => {
      const ip = nextIp();
      for (let i = 0; i < RECEIPT_FAILURES_PER_WINDOW; i++) {
        ctx.clock.advance(61_000);
        await request(ctx.app).post('/api/v1/follow-up').set('X-Forwarded-For', ip).send({ receipt: '0000 0000 0000 0000' });
      }
      const res = await startUpload('/api/v1/follow-up/evidence', { 'X-Forwarded-For': ip });
      expect(res.status).toBe(429);
      expect(res.bodyComplete).toBe(false);
    });

    it('keeps the names files had only when the reporter asks for it', async () => {
      const { challenge, pow } = await solvedChallenge(ctx);
      const req = request(ctx.app).post('/api/v1/reports').set('X-Forwarded-For', nextIp()).set('X-Report-Challenge', challenge).field('challenge', challenge).field('pow', pow).field('keepFileNames', 'yes');
      for (const [k, v] of Object.entries(reportFields())) for (const item of [v].flat()) req.field(k, String(item));
      const res = await req.attach('evidence', await jpegWithGps(), 'kibera-market.jpg');
      expect(res.status).toBe(201);
      const report = (await reportAsRead(ctx, await reportIdOf(ctx, res.body.receipt)))!;
      expect(report.evidence.map((e) => [e.name, e.originalName])).toEqual([['evidence-1.jpg', 'kibera-market.jpg']]);
    });
  });
});
