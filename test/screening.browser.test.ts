import type { Page } from 'playwright-core';
import { Case } from '../models/cases';
import { Unit } from '../models/catalogue';
import { Flag } from '../models/flags';
import { ScreeningHit } from '../models/screening';
import { browserSuite, screenshot } from './helpers/browser';
import { makeUnit } from './helpers/catalogue';
import { makeUser } from './helpers/factories';
import { importSyntheticList } from './helpers/screening';

describe('a registration by a listed party is held, reviewed and confirmed (headless Chromium)', () => {
  const suite = browserSuite({}, async (ctx) => {
    await importSyntheticList(ctx);
  });

  async function signIn(page: Page, email: string, password: string, next: string) {
    await page.goto(`${suite.site.url}/login?next=${encodeURIComponent(next)}`);
    await page.fill('#f-email', email);
    await page.fill('#f-password', password);
    await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')]);
  }

  it('holds the registration; the investigator reads the explanation side by side, confirms it, and a case opens', async () => {
    const { unit } = await makeUnit(suite.ctx);
    const customer = await makeUser(suite.ctx, 'customer');
    const investigator = await makeUser(suite.ctx, 'investigator', { name: 'Amara Diallo' });

    // The customer registers as a listed company (Cyrillic, with its company form).
    const phone = await (await suite.browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true })).newPage();
    await signIn(phone, customer.email, customer.password, `/register?model=${encodeURIComponent(unit.modelId)}`);
    await phone.fill('#f-serial', unit.serial);
    await phone.fill('#f-ownerOrganisation', 'ООО Ромашка');
    await phone.fill('#f-contactName', 'Olga Smirnova');
    await phone.fill('#f-contactEmail', 'olga@romashka.example');
    await phone.selectOption('#f-country', 'RU');
    await phone.selectOption('#f-endUserType', 'commercial-company');
    await phone.selectOption('#f-intendedUse', 'office networking');
    await phone.fill('#f-declaredEndUse', 'Office network');
    await phone.fill('#f-purchaseDate', '2026-01-05');
    await phone.check('#f-acceptTerms');
    await Promise.all([phone.waitForNavigation(), phone.click('form[action="/register"][method="post"] button[type="submit"]')]);
    expect(new URL(phone.url()).pathname).toBe('/account/products');
    expect((await Unit.findById(unit._id).lean())!.status).toBe('unregistered');

    // The investigator finds it in the screening queue.
    for (const [width, height, name] of [[1280, 900, 'desktop'], [390, 844, 'phone']] as const) {
      const page = await (await suite.browser.newContext({ viewport: { width, height } })).newPage();
      await signIn(page, investigator.email, investigator.password, '/screening');
      expect(new URL(page.url()).pathname).toBe('/screening');
      expect(await page.textContent('table')).toContain('ООО Ромашка');
      await Promise.all([page.waitForNavigation(), page.click('a:has-text("Review")')]);
      expect(await page.textContent('#explanation')).toContain('"ООО Ромашка" ~ "Romashka LLC"');
      expect(await page.textContent('#side-by-side')).toContain('Romashka Trading');
      // Nothing is wider than the screen.
      expect(await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth)).toBeLessThanOrEqual(width);
      await screenshot(page, `screening-hit-${name}`);
      if (name === 'phone') {
        // A decision without a reason is refused by the field, keeping the choice.
        await page.selectOption('#f-decision', 'true-match');
        await Promise.all([page.waitForNavigation(), page.click('form[action^="/screening/"] button[type="submit"]')]);
        expect(await page.textContent('#f-reason-error')).toBe('The reason is required.');
        expect(await page.inputValue('#f-decision')).toBe('true-match');
        await page.fill('#f-reason', 'Same company registration number (OGRN) on the invoice.');
        await Promise.all([page.waitForNavigation(), page.click('form[action^="/screening/"] button[type="submit"]')]);
        expect(new URL(page.url()).pathname).toMatch(/^\/cases\//);
        expect(await page.textContent('.notice')).toContain('Confirmed as a listed party');
        await screenshot(page, 'screening-case-opened');
      }
      await page.context().close();
    }

    const hit = await ScreeningHit.findOne({ 'party.name': 'ООО Ромашка' }).lean();
    expect(hit).toMatchObject({ status: 'true-match', caseId: expect.any(String) });
    expect(await Flag.findOne({ rule: 'restricted-party', unitId: unit._id }).lean()).toMatchObject({ caseId: hit!.caseId });
    expect(await Case.findById(hit!.caseId).lean()).toMatchObject({ status: 'new', unitIds: [unit._id] });
  }, 60_000);
});
