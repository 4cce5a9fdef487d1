import type { Browser, Page } from 'playwright-core';
import { browserSuite, screenshot } from './helpers/browser';
import { makeReportCase } from './helpers/cases';
import { makeUser } from './helpers/factories';

/**
 * The notifications pages as a person meets them in Chromium, at 1280 and 390 px: the unread
 * count in the navigation, the list, marking read without JavaScript, the e-mail choices and
 * the admins' mail outbox. None wider than the screen; every box a finger can hit (24 px).
 */
describe('notifications (headless Chromium)', () => {
  const suite = browserSuite();
  const problems: string[] = [];

  async function signedIn(browser: Browser, email: string, password: string): Promise<Page> {
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 }, javaScriptEnabled: false })).newPage();
    page.on('response', (r) => r.status() >= 500 && problems.push(`${r.status()} ${r.url()}`));
    await page.goto(`${suite.site.url}/login`);
    await page.fill('#f-email', email);
    await page.fill('#f-password', password);
    await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')]);
    return page;
  }

  /** The page at 1280 px and at 390 px, neither wider than the screen. */
  async function lookAt(page: Page, name: string) {
    await screenshot(page, `notifications-${name}`);
    await page.setViewportSize({ width: 390, height: 844 });
    await screenshot(page, `notifications-${name}-390`);
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  /** The smallest side of each checkbox's clickable area (its label), in px. */
  const smallestTarget = (page: Page) =>
    page.evaluate(`Math.min(...[...document.querySelectorAll('input[type=checkbox], input[type=radio]')].map((i) => { const r = (i.closest('label') || i).getBoundingClientRect(); return Math.min(r.width, r.height); }))`) as Promise<number>;

  it('an investigator sees the unread count, reads the list and marks it read; the admin reads the outbox', async () => {
    const investigator = await makeUser(suite.ctx, 'investigator', { name: 'Imani Investigator' });
    const admin = await makeUser(suite.ctx, 'admin', { name: 'Ada Admin' });
    const { caseId } = await makeReportCase(suite.ctx);
    await suite.ctx.services.notifications.sendMail({ to: 'someone@example.test', subject: 'A message written to the outbox folder for the admins to read', text: 'Hello.\nA link: https://portal.example/signup/confirm?token=0123456789abcdef0123456789abcdef' });

    const page = await signedIn(suite.browser, investigator.email, investigator.password);
    expect(await page.textContent('header .session a[href="/notifications"]')).toMatch(/Notifications\s+1/);
    await page.click('header .session a[href="/notifications"]');
    expect(await page.textContent('ul.notices')).toContain(`New case ${caseId} in the queue`);
    await lookAt(page, 'list');
    await Promise.all([page.waitForNavigation(), page.click('form[action="/notifications/read"] button[type="submit"]')]);
    expect(await page.textContent('.notice')).toContain('marked as read');
    expect(await page.$('header .session .count')).toBeNull();
    expect(await page.$$('ul.notices li.unread')).toHaveLength(0);

    await page.goto(`${suite.site.url}/account`);
    expect(await smallestTarget(page)).toBeGreaterThanOrEqual(24);
    await lookAt(page, 'account');

    const adminPage = await signedIn(suite.browser, admin.email, admin.password);
    await adminPage.goto(`${suite.site.url}/admin/outbox`);
    await adminPage.click('text=A message written to the outbox folder');
    expect(await adminPage.textContent('pre.mail')).toContain('signup/confirm?token=');
    await lookAt(adminPage, 'outbox-message');
    await adminPage.goto(`${suite.site.url}/admin/outbox`);
    await lookAt(adminPage, 'outbox');

    const reporter = await (await suite.browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
    await reporter.goto(`${suite.site.url}/report`);
    expect(await smallestTarget(reporter)).toBeGreaterThanOrEqual(24);
    await reporter.goto(`${suite.site.url}/register`);
    expect(await smallestTarget(reporter)).toBeGreaterThanOrEqual(24);
    expect(problems).toEqual([]);
  }, 120_000);
});
