import crypto from 'node:crypto';
import request from 'supertest';
import type { Page } from 'playwright-core';
import { AuditEntry } from '../models/audit';
import { User } from '../models/auth';
import { Case } from '../models/cases';
import { Unit } from '../models/catalogue';
import { Report } from '../models/reports';
import { createApp } from '../server/app';
import { createLogger } from '../server/logger';
import { browserSuite, screenshot, serve } from './helpers/browser';
import { makeReportCase } from './helpers/cases';
import { makeUnit } from './helpers/catalogue';
import { checkInItem, makeApiKey } from './helpers/check-ins';
import { makeUser } from './helpers/factories';

describe('an investigator works a case from new to closed (headless Chromium)', () => {
  const suite = browserSuite();

  /** Submits the form whose action ends with `action` and waits for the page it leads to. */
  async function submit(page: Page, action: string) {
    await Promise.all([page.waitForNavigation(), page.click(`form[action$="${action}"] button[type="submit"]`)]);
    const notice = await page.textContent('.notice, .error-summary');
    return notice?.trim() ?? '';
  }

  async function moveTo(page: Page, to: string, reason: string, closureReason = '') {
    await page.selectOption('#f-to', to);
    if (closureReason) await page.selectOption('#f-closureReason', closureReason);
    await page.fill('#f-reason', reason);
    return submit(page, '/transition');
  }

  /** Whether the page scrolls sideways at its current width. */
  const overflows = (page: Page) => page.evaluate<boolean>('document.documentElement.scrollWidth > window.innerWidth');

  it('triages, investigates, withholds the unit’s updates, remediates and closes; the unit answers withheld, and allowed once lifted', async () => {
    const { unit } = await makeUnit(suite.ctx);
    const { caseId, reportId } = await makeReportCase(suite.ctx, { unitId: unit._id, modelId: unit.modelId });
    const { user, email, password } = await makeUser(suite.ctx, 'investigator', { name: 'Imani Njoroge' });

    const page = await (await suite.browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.setDefaultTimeout(10_000);
    await page.goto(`${suite.site.url}/login`);
    await page.fill('#f-email', email);
    await page.fill('#f-password', password);
    await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')]);
    // Investigators land on the queue; its first case is visible without scrolling at 1280×900.
    expect(new URL(page.url()).pathname).toBe('/cases');
    const firstCase = await page.locator('table.queue tbody tr').first().boundingBox();
    expect(firstCase!.y + firstCase!.height).toBeLessThanOrEqual(900);
    expect(await overflows(page)).toBe(false);
    await screenshot(page, 'queue-1280');
    await Promise.all([page.waitForNavigation(), page.click(`a[href="/cases/${caseId}"]`)]);
    expect(await page.textContent('h1')).toContain(caseId);
    expect(await overflows(page)).toBe(false);
    // Summary first, then the conversation with the reporter, before timelines and links.
    const order = await page.evaluate<number[]>(`['summary', 'reports', 'units', 'links', 'work', 'history'].map((id) => document.getElementById(id).getBoundingClientRect().top)`);
    expect(order).toEqual([...order].sort((a, b) => a - b));

    // Nobody is assigned yet: acknowledging and triaging need no assignment.
    expect(await submit(page, '/acknowledge')).toContain('Receipt acknowledged');
    // The reporter's harm category is pre-filled, and says where it came from.
    expect(await page.isChecked('input[name="harmCategories"][value="privacy-surveillance"]')).toBe(true);
    expect(await page.textContent('.prefilled')).toContain(`privacy surveillance (from report ${reportId})`);
    await page.selectOption('#f-scale', '4');
    await page.selectOption('#f-scope', '2');
    await page.selectOption('#f-irremediable', '3');
    await page.selectOption('#f-likelihood', '3');
    await page.selectOption('#f-involvement', 'directly-linked');
    await page.fill('#f-involvementRationale', 'A third party uses our camera to watch a clinic entrance.');
    expect(await submit(page, '/triage')).toBe('Triage saved: priority high.');
    expect((await Case.findById(caseId).lean())!.harmCategories).toEqual(['privacy-surveillance']);

    // The assign menu offers no default; "Assign to me" is one click.
    expect(await page.inputValue('#f-userId')).toBe('');
    await Promise.all([page.waitForNavigation(), page.click('button:has-text("Assign to me")')]);
    expect(await page.textContent('.notice')).toBe('Investigator assigned.');

    // A refused move keeps what was typed and says why.
    await page.selectOption('#f-to', 'closed');
    await page.fill('#f-reason', 'Kept while the closure reason is missing');
    await Promise.all([page.waitForNavigation(), page.click('form[action$="/transition"] button[type="submit"]')]);
    expect(await page.textContent('#f-closureReason-error')).toBe('Choose why the case is closed.');
    expect(await page.inputValue('#f-reason')).toBe('Kept while the closure reason is missing');

    expect(await moveTo(page, 'investigating', 'Asking the customer about the installation')).toBe('The case is now investigating.');

    // Leverage: withhold firmware updates for the unit.
    await page.selectOption('#f-kind', 'withhold-updates');
    await page.check(`input[name="unitIds"][value="${unit._id}"]`);
    await page.fill('#f-customer', 'Clinic Security Ltd');
    await page.fill('#f-dueBy', '2026-02-28');
    await page.fill('#f-description', 'Until the cameras are moved away from the clinic entrance.');
    expect(await submit(page, '/actions')).toBe('Action recorded.');
    expect(await page.textContent('#units')).toContain('withheld');
    expect(await moveTo(page, 'action', 'Updates withheld; waiting for the customer')).toBe('The case is now action.');

    await page.fill('#f-message', 'Thank you. We have acted on the device you reported.');
    expect(await submit(page, '/messages')).toBe('Message sent to the reporter.');
    await page.fill('#f-note', 'Customer confirmed by phone that the cameras will be moved.');
    expect(await submit(page, '/notes')).toBe('Note added.');

    expect(await moveTo(page, 'remediation', 'Cameras moved; remedy for patients')).toBe('The case is now remediation.');
    await page.fill('#f-provided', 'Deletion of recordings verified by an auditor');
    await page.fill('#f-toWhom', 'Patients of the clinic');
    await page.fill('#f-reporterFeedback', 'The recordings were deleted and the cameras moved.');
    expect(await submit(page, '/remediation')).toBe('Remediation recorded.');

    // Closing with the withholding still open asks what becomes of it, keeping what was typed.
    const actionId = (await Case.findById(caseId).lean())!.actions[0]!._id;
    expect(await moveTo(page, 'closed', 'Remedy delivered and verified', 'substantiated')).toContain('open action');
    expect(await page.textContent(`[id="f-openActions.${actionId}"] .field-error`)).toContain('withhold updates');
    expect(await page.inputValue('#f-reason')).toBe('Remedy delivered and verified');
    expect((await Case.findById(caseId).lean())!.status).toBe('remediation');
    await page.check(`input[name="openAction-${actionId}"][value="keep"]`);
    expect(await moveTo(page, 'closed', 'Remedy delivered and verified', 'substantiated')).toBe('The case is now closed.');

    // On a phone the closed case page does not scroll sideways.
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await screenshot(page, 'case-closed-390');
    await page.setViewportSize({ width: 1280, height: 900 });

    const shot = await screenshot(page, 'case-closed');
    expect(shot).toMatch(/case-closed\.png$/);

    // What the database now holds.
    const stored = (await Case.findById(caseId).lean())!;
    expect(stored).toMatchObject({ status: 'closed', closureReason: 'substantiated', priorityLevel: 'high' });
    expect(stored.history.filter((h) => h.action === 'status-changed').map((h) => h.detail.split(':')[0])).toEqual([
      'triaged → investigating',
      'investigating → action',
      'action → remediation',
      'remediation → closed (substantiated)',
    ]);
    expect(stored.actions).toEqual([expect.objectContaining({ kind: 'withhold-updates', status: 'open', target: expect.objectContaining({ unitIds: [unit._id] }) })]);
    expect((await Report.findById(reportId).lean())!.messages.at(-1)).toMatchObject({ from: 'investigator', userId: String(user._id) });
    const audited = (await AuditEntry.find({ subjectKind: 'case', subjectId: caseId }).sort({ seq: 1 }).lean()).map((e) => e.action);
    expect(audited).toEqual(expect.arrayContaining(['case.assigned', 'case.acknowledged', 'case.triaged', 'case.action-added', 'case.message-posted', 'case.remediation-recorded', 'case.status-changed']));
    const closing = await AuditEntry.findOne({ subjectKind: 'case', subjectId: caseId, action: 'case.status-changed', 'detail.to': 'closed' }).lean();
    expect(closing!.detail).toMatchObject({ openActions: { [actionId]: 'keep' } });
    expect((await suite.ctx.services.audit.verify()).ok).toBe(true);

    // The unit's next check-in is answered "withheld".
    const unitNow = (await Unit.findById(unit._id).lean())!;
    expect(unitNow.controls).toMatchObject({ updates: 'withheld', withheldByCaseIds: [caseId] });
    const device = await makeApiKey(suite.ctx);
    const checkIn = await request(suite.ctx.app).post('/api/v1/check-ins').set(device.auth).send(checkInItem(unit, { observedAt: suite.ctx.clock.now().toISOString() }));
    expect(checkIn.status).toBe(200);
    expect(checkIn.body).toMatchObject({ serial: unit.serial, answer: 'withheld' });

    // Lifting the withholding from the case page restores updates at the next check-in.
    await page.selectOption(`#s-${actionId}`, 'lifted');
    await page.fill(`#o-${actionId}`, 'Cameras moved; updates may resume.');
    expect(await submit(page, `/actions/${actionId}`)).toBe('Action updated.');
    suite.ctx.clock.advance(60_000);
    const after = await request(suite.ctx.app).post('/api/v1/check-ins').set(device.auth).send(checkInItem(unit, { observedAt: suite.ctx.clock.now().toISOString() }));
    expect(after.body).toMatchObject({ serial: unit.serial, answer: 'allowed' });
  }, 90_000);

  /** RFC 6238 from the key the page shows, computed here rather than by the app. */
  function totpCode(secret: string, at: Date) {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
    const bits = [...secret.replace(/\s/g, '')].map((c) => alphabet.indexOf(c).toString(2).padStart(5, '0')).join('');
    const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)));
    const counter = Buffer.alloc(8);
    counter.writeBigUInt64BE(BigInt(Math.floor(at.getTime() / 30_000)));
    const mac = crypto.createHmac('sha1', key).update(counter).digest();
    return String((mac.readUInt32BE(mac[19]! & 15) & 0x7fffffff) % 1_000_000).padStart(6, '0');
  }

  it('makes staff enrol at first sign-in from the QR page, then sign in with a code; both fit a phone', async () => {
    // Another instance on the same database, with two-factor sign-in required as in production.
    const strict = await serve({ ...suite.ctx, app: createApp({ config: { ...suite.ctx.config, staffTwoFactor: 'required' }, db: suite.ctx.db, clock: suite.ctx.clock, logger: createLogger('silent') }) });
    const { email, password } = await makeUser(suite.ctx, 'investigator', { name: 'Baraka Mwangi' });
    for (const width of [1280, 390]) {
      const page = await (await suite.browser.newContext({ viewport: { width, height: 900 } })).newPage();
      page.setDefaultTimeout(10_000);
      await page.goto(`${strict.url}/login`);
      await page.fill('#f-email', email);
      await page.fill('#f-password', password);
      await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')]);
      if (width === 1280) {
        expect(new URL(page.url()).pathname).toBe('/login/enrol');
        expect(await page.evaluate<number>(`document.querySelector('figure.qr img').naturalWidth`)).toBeGreaterThan(100);
        expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(width);
        const secret = (await page.textContent('code.secret'))!;
        await page.fill('#f-code', totpCode(secret, suite.ctx.clock.now()));
        await Promise.all([page.waitForNavigation(), page.click('form[action="/login/enrol"] button[type="submit"]')]);
        expect(await page.locator('ul.recovery-codes li').count()).toBe(10);
        await screenshot(page, 'two-factor-recovery-codes');
        await Promise.all([page.waitForNavigation(), page.click('a.button')]);
        expect(new URL(page.url()).pathname).toBe('/cases');
        suite.ctx.clock.advance(30_000);
      } else {
        expect(new URL(page.url()).pathname).toBe('/login/code');
        expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
        await page.fill('#f-code', '000000');
        await Promise.all([page.waitForNavigation(), page.click('form[action="/login/code"] button[type="submit"]')]);
        expect(await page.textContent('#f-code-error')).toContain('That code is not valid.');
        const secret = (await User.findOne({ email }).lean())!.twoFactor!.secret!;
        await page.fill('#f-code', totpCode(secret, suite.ctx.clock.now()));
        await Promise.all([page.waitForNavigation(), page.click('form[action="/login/code"] button[type="submit"]')]);
        expect(new URL(page.url()).pathname).toBe('/cases');
        expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
        await screenshot(page, 'queue-390');
      }
    }
    await strict.close();
  }, 60_000);
});
