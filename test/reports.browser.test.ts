import sharp from 'sharp';
import { AuditEntry } from '../models/audit';
import { Report, type ReportRecord } from '../models/reports';
import { createReceiptHasher } from '../server/services/reports';
import type { Page } from 'playwright-core';
import { browserSuite, phonePage, screenshot, tmpFile } from './helpers/browser';
import { makeModel } from './helpers/catalogue';
import { makeUser, unique } from './helpers/factories';
import { countReportsDescribing, digitsOf, evidenceBytes, jpegWithGps, reportAsRead } from './helpers/reports';

const WEEK = 7 * 86_400_000;

describe('reporting misuse from a phone (headless Chromium)', () => {
  // The test clock does not move while the person types, so the form only goes through if
  // public/js/report-pow.js solved the proof of work in the browser.
  const suite = browserSuite({ REPORT_MIN_FILL_SECONDS: '30', REPORT_POW_BITS: '12' });

  it('files a report with two photos, gets a receipt, and a week later reads a question, answers it and adds a file', async () => {
    const model = await makeModel(suite.ctx, { sku: unique('PHN').toUpperCase(), name: 'Street camera', publicName: 'StreetEye 360' });
    const photoWithGps = tmpFile('IMG_4031.jpg', await jpegWithGps());
    const secondPhoto = tmpFile('IMG_4032.jpg', await jpegWithGps({ r: 30, g: 30, b: 160 }));
    const laterPhoto = tmpFile('IMG_5100.jpg', await jpegWithGps({ r: 240, g: 200, b: 10 }));

    // --- filing the report
    const page = await phonePage(suite.browser);
    const userAgent = await page.evaluate<string>('navigator.userAgent');
    await page.goto(`${suite.site.url}/report`);
    await page.selectOption('#f-reporterKind', 'journalist');
    await page.fill('#f-serials', 'SE360-000123');
    await page.fill('#f-modelText', 'StreetEye 360');
    await page.fill('#f-deviceDescription', 'Grey dome camera on a pole, facing the square.');
    await page.selectOption('#f-country', 'KE');
    await page.fill('#f-place', 'Central square');
    await page.fill('#f-from', '2026-01-10');
    await page.check('input[name="harmCategories"][value="expression-assembly-association"]');
    await page.check('input[name="harmCategories"][value="privacy-surveillance"]');
    await page.fill('#f-description', 'Police use the camera to identify people at a peaceful protest. <b>not bold</b>');
    await page.fill('#f-affected', 'Protesters');
    await page.selectOption('#f-ongoing', 'yes');
    await page.setInputFiles('#f-evidence', [photoWithGps, secondPhoto]);
    await page.waitForSelector('form[data-pow-done="true"]', { timeout: 20_000 });
    await screenshot(page, 'report-1-form');
    await page.click('form[action^="/report?challenge="] button[type="submit"]');
    await page.waitForSelector('#receipt');
    const receipt = (await page.textContent('#receipt'))!.trim().replace(/\s+/g, ' ');
    expect(receipt).toMatch(/^\d{4} \d{4} \d{4} \d{4}$/);
    // Post/redirect/get: the receipt page is a GET page; the receipt is never in its address.
    expect(page.url()).toBe(`${suite.site.url}/report/received`);
    // A reload shows the same receipt, and files no second report.
    await page.reload();
    expect((await page.textContent('#receipt'))!.trim().replace(/\s+/g, ' ')).toBe(receipt);
    expect(page.url().replace(/\D/g, '')).not.toContain(digitsOf(receipt).slice(0, 8));
    await screenshot(page, 'report-2-receipt');
    await page.context().close();

    const reportId = await createReceiptHasher(suite.ctx.config.jwt.secret)(digitsOf(receipt));
    const filed = (await Report.findById(reportId).lean<ReportRecord>())!;
    expect(filed.evidence.map((e) => [e.name, e.originalName])).toEqual([['evidence-1.jpg', null], ['evidence-2.jpg', null]]);
    expect(filed.links).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'model', targetId: model._id, confidence: 'high' })]));

    // --- a week later an investigator asks a question
    suite.ctx.clock.advance(WEEK);
    const { user: investigator } = await makeUser(suite.ctx, 'investigator');
    await suite.ctx.services.reports.setStatus(reportId, 'acknowledged', String(investigator._id));
    await suite.ctx.services.reports.postInvestigatorMessage(reportId, String(investigator._id), 'Thank you. Which day was the protest, and how many cameras did you see?');

    // --- the reporter comes back with the receipt, on a fresh suite.browser
    const back = await phonePage(suite.browser);
    await back.goto(`${suite.site.url}/follow-up`);
    await back.fill('#f-receipt', receipt);
    await back.click('form[action="/follow-up"] button[type="submit"]');
    await back.waitForSelector('#messages');
    expect(await back.textContent('#report-status')).toContain('Acknowledged');
    expect(await back.textContent('#messages')).toContain('Which day was the protest, and how many cameras did you see?');
    await screenshot(back, 'report-3-follow-up-question');

    await back.fill('#f-text', 'It was on 10 January. I saw three cameras on the same pole.');
    await back.click('form[action="/follow-up/messages"] button[type="submit"]');
    await back.waitForSelector('text=Your message was sent to the investigators.');
    expect(await back.textContent('#messages')).toContain('I saw three cameras on the same pole.');

    await back.setInputFiles('form[action^="/follow-up/evidence"] input[type="file"]', laterPhoto);
    await back.click('form[action^="/follow-up/evidence"] button[type="submit"]');
    await back.waitForSelector('text=Your files were added to the report.');
    expect(await back.textContent('#evidence')).toContain('evidence-3.jpg');
    expect(await back.textContent('#evidence')).not.toContain('IMG_5100');
    expect(back.url()).toBe(`${suite.site.url}/follow-up/report?done=files`);
    await screenshot(back, 'report-4-answered-and-file-added');
    await back.context().close();

    // --- what the database now holds, read as investigators read it (the texts and files are sealed at rest)
    const report = await reportAsRead(suite.ctx, reportId);
    expect(report.status).toBe('acknowledged');
    expect(report.messages.map((m) => [m.from, m.text])).toEqual([
      ['investigator', 'Thank you. Which day was the protest, and how many cameras did you see?'],
      ['reporter', 'It was on 10 January. I saw three cameras on the same pole.'],
    ]);
    expect(report.evidence.map((e) => [e.name, e.addedBy])).toEqual([
      ['evidence-1.jpg', 'reporter'],
      ['evidence-2.jpg', 'reporter'],
      ['evidence-3.jpg', 'reporter'],
    ]);
    expect(report.evidence[2]!.addedAt.getTime()).toBe(report.receivedAt.getTime() + WEEK);
    for (const e of report.evidence) {
      const data = await evidenceBytes(suite.ctx, reportId, e.fileId);
      expect((await sharp(data).metadata()).exif).toBeUndefined();
    }
    expect(report.what!.description).toBe('Police use the camera to identify people at a peaceful protest. <b>not bold</b>');
    const stored = JSON.stringify([report, await Report.findById(reportId).lean(), await AuditEntry.find({ subjectId: reportId }).lean()]);
    expect(stored).not.toContain(userAgent);
    expect(stored).not.toMatch(/HeadlessChrome|127\.0\.0\.1|::ffff/);
    expect(stored).not.toContain(digitsOf(receipt));
  }, 90_000);

  /** The page is no wider than its window: nothing to scroll sideways. */
  const widthOverflow = (page: Page) => page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
  /** Latin words in what a person sees (the page's own strings should all be Arabic). */
  const latinWords = (page: Page) => page.evaluate<string[]>('document.body.innerText.match(/\\p{Script=Latin}{3,}/gu) ?? []');

  /** The fields every report needs, as a person fills them in. */
  const fillRequired = async (page: Page, description: string) => {
    await page.selectOption('#f-reporterKind', 'ngo');
    await page.selectOption('#f-country', 'MX');
    await page.check('input[name="harmCategories"][value="privacy-surveillance"]');
    await page.fill('#f-description', description);
  };
  const receiptOn = async (page: Page) => (await page.textContent('#receipt'))!.trim().replace(/\s+/g, ' ');
  const reportFiledWith = async (receipt: string) => reportAsRead(suite.ctx, await createReceiptHasher(suite.ctx.config.jwt.secret)(digitsOf(receipt)));

  it('answers a 70,000-character testimony with a message about its length, keeps every character in the box and the photo attached, then files it shortened', async () => {
    const photo = tmpFile('IMG_8800.jpg', await jpegWithGps({ r: 20, g: 140, b: 90 }));
    const testimony = `Testimony ${'w'.repeat(70_000)}`;
    const page = await phonePage(suite.browser);
    await page.goto(`${suite.site.url}/report`);
    await fillRequired(page, testimony);
    await page.setInputFiles('#f-evidence', photo);
    await page.waitForSelector('form[data-pow-done="true"]', { timeout: 20_000 });
    // Stated before sending: the counter, past the limit, reads as an error.
    expect(await page.textContent('#f-description-count')).toBe('70,010 of 10,000 characters');
    expect(await page.getAttribute('#f-description-count', 'class')).toContain('field-error');
    await page.click('form[action^="/report?challenge="] button[type="submit"]');
    await page.waitForSelector('#f-description-error');
    expect(await page.textContent('#f-description-error')).toContain('What happened? has 70,010 characters; at most 10,000 fit.');
    expect(await page.content()).not.toContain('could not be received');
    expect(await page.inputValue('#f-description')).toBe(testimony);
    expect(await page.textContent('#kept-evidence')).toContain('evidence-1');
    await screenshot(page, 'report-long-1-refused');

    const shortened = `Testimony ${'w'.repeat(9000)}`;
    await page.fill('#f-description', shortened);
    await page.waitForSelector('form[data-pow-done="true"]', { timeout: 20_000 });
    await page.click('form[action^="/report?challenge="] button[type="submit"]');
    await page.waitForSelector('#receipt');
    const report = await reportFiledWith(await receiptOn(page));
    await page.context().close();
    expect(report.what!.description).toBe(shortened);
    expect(report.evidence.map((e) => e.name)).toEqual(['evidence-1.jpg']);
  }, 90_000);

  it('keeps the typed text and the attached photo of a form sent too soon without JavaScript, lists the photo as attached, and files the report with it once sent again', async () => {
    const photo = tmpFile('IMG_9100.jpg', await jpegWithGps({ r: 200, g: 20, b: 200 }));
    const description = `Cameras installed outside the clinic ${unique('no-js')}`;
    // Tor Browser's safest level: no scripts, so no proof of work; the form must wait its minimum time.
    const page = await (await suite.browser.newContext({ javaScriptEnabled: false, viewport: { width: 390, height: 844 } })).newPage();
    await page.goto(`${suite.site.url}/report`);
    await fillRequired(page, description);
    await page.setInputFiles('#f-evidence', photo);
    await page.click('form[action^="/report?challenge="] button[type="submit"]');

    await page.waitForSelector('#kept-evidence');
    expect(await page.textContent('body')).toContain('This form was sent within 30 seconds of opening it');
    expect(await page.inputValue('#f-description')).toBe(description);
    expect(await page.textContent('#kept-heading')).toContain('Already attached: 1 file');
    expect(await page.textContent('#kept-evidence')).toContain('evidence-1');
    expect(await countReportsDescribing(suite.ctx, description)).toBe(0);
    expect(await widthOverflow(page)).toBeLessThanOrEqual(0);
    await screenshot(page, 'report-too-soon-1-refused');

    suite.ctx.clock.advance(30_000);
    await page.click('form[action^="/report?challenge="] button[type="submit"]');
    await page.waitForSelector('#receipt');
    const report = await reportFiledWith(await receiptOn(page));
    await page.context().close();
    expect(report.what!.description).toBe(description);
    expect(report.evidence.map((e) => e.name)).toEqual(['evidence-1.jpg']);
    expect((await sharp(await evidenceBytes(suite.ctx, report._id, report.evidence[0]!.fileId)).metadata()).exif).toBeUndefined();
  }, 90_000);

  it('files a report in Arabic right to left on a phone and a desktop, with no sideways scrolling, and opens its follow-up page', async () => {
    const photo = tmpFile('IMG_7001.jpg', await jpegWithGps());
    for (const width of [390, 1280]) {
      const page = width === 390 ? await phonePage(suite.browser) : await (await suite.browser.newContext({ viewport: { width, height: 900 } })).newPage();
      await page.goto(`${suite.site.url}/report?lang=ar`);
      expect(await page.getAttribute('html', 'lang')).toBe('ar');
      expect(await page.getAttribute('html', 'dir')).toBe('rtl');
      // Besides the brand and the other languages' names in the switcher, nothing in Latin letters.
      expect((await latinWords(page)).filter((w) => !['Downstream', 'English', 'Français', 'Español', 'JPEG', 'PNG', 'WebP', 'PDF', 'Tor', 'Browser', 'evidence', 'jpg', 'pdf'].includes(w))).toEqual([]);
      await page.selectOption('#f-reporterKind', 'affected-person');
      await page.selectOption('#f-country', 'EG');
      await page.check('input[name="harmCategories"][value="privacy-surveillance"]');
      await page.fill('#f-description', 'تستخدم الكاميرات لمراقبة المتظاهرين في الميدان.');
      await page.setInputFiles('#f-evidence', [photo]);
      await page.waitForSelector('form[data-pow-done="true"]', { timeout: 20_000 });
      expect(await widthOverflow(page)).toBeLessThanOrEqual(0);
      await screenshot(page, `report-ar-${width}-1-form`);
      await page.click('form[action^="/report?challenge="] button[type="submit"]');
      await page.waitForSelector('#receipt');
      expect(await page.getAttribute('html', 'dir')).toBe('rtl');
      expect(await widthOverflow(page)).toBeLessThanOrEqual(0);
      await screenshot(page, `report-ar-${width}-2-receipt`);
      const receipt = (await page.textContent('#receipt'))!.trim().replace(/\s+/g, ' ');

      await page.goto(`${suite.site.url}/follow-up`);
      await page.fill('#f-receipt', receipt);
      await page.click('form[action="/follow-up"] button[type="submit"]');
      await page.waitForSelector('#submitted');
      expect(await page.getAttribute('html', 'dir')).toBe('rtl');
      expect(await page.textContent('#submitted-description')).toContain('تستخدم الكاميرات لمراقبة المتظاهرين');
      expect(await widthOverflow(page)).toBeLessThanOrEqual(0);
      await screenshot(page, `report-ar-${width}-3-follow-up`);
      await page.context().close();
    }
  }, 90_000);
});
