import { seedDemo } from '../server/seed';
import { browserSuite, screenshot } from './helpers/browser';
import { makeUser } from './helpers/factories';

describe('the dashboard on seeded data (headless Chromium)', () => {
  const suite = browserSuite(
    {},
    async (ctx) => {
      ctx.clock.set('2026-06-30T12:00:00Z');
      await seedDemo(ctx.services, { units: 300, clock: ctx.clock });
      await ctx.services.insight.refreshDashboard();
    },
    300_000,
  );

  it('draws the world map, the charts and their tables, with no script and no CSP complaint', async () => {
    const { email, password } = await makeUser(suite.ctx, 'investigator');
    const page = await (await suite.browser.newContext({ viewport: { width: 1366, height: 900 } })).newPage();
    const problems: string[] = [];
    // Console errors other than failed loads (those are checked by URL below: the favicon may be missing).
    page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && problems.push(m.text()));
    page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && problems.push(`${r.status()} ${r.url()}`));
    page.on('pageerror', (e) => problems.push(e.message));

    await page.goto(`${suite.site.url}/login?next=/dashboard`);
    await page.fill('#f-email', email);
    await page.fill('#f-password', password);
    await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')]);
    expect(new URL(page.url()).pathname).toBe('/dashboard');

    expect(await page.locator('svg.world path').count()).toBeGreaterThan(150);
    const shaded = await page.locator('svg.world path:not(.q0)').count();
    expect(shaded).toBeGreaterThan(20); // registrations across many countries
    const box = await page.locator('svg.world').boundingBox();
    expect(box!.width).toBeGreaterThan(500);
    expect(await page.locator('svg.chart').count()).toBe(5);
    expect(await page.locator('svg.chart rect[class^="rule-"]').count()).toBeGreaterThan(3); // red flags over time
    expect(await page.textContent('.tiles:not(#due-diligence)')).toMatch(/306\s*units/); // 300 + the channel partner's six (seedPartners)
    expect(await page.locator('script').count()).toBe(0);
    await screenshot(page, 'insight-dashboard');

    // On a phone nothing is wider than the screen: wide tables scroll inside their own box.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    expect(await page.textContent('#channel-partners')).toBe('Channel partners');
    expect(await page.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await screenshot(page, 'insight-dashboard-390');
    await page.setViewportSize({ width: 1366, height: 900 });

    await Promise.all([page.waitForNavigation(), page.click('a[href*="map=check-in"]')]);
    expect(await page.locator('tr.attention').count()).toBeGreaterThan(0); // units checking in where none is registered
    await page.locator('#where').scrollIntoViewIfNeeded();
    await screenshot(page, 'insight-dashboard-check-ins');

    await page.goto(`${suite.site.url}/transparency?period=2026-Q1`);
    expect(await page.textContent('h1')).toBe('Transparency report');
    expect(await page.textContent('main')).toContain('fewer than 5');
    await screenshot(page, 'insight-transparency');
    expect(problems).toEqual([]);
  }, 120_000);
});
