import type { Browser, Page } from 'playwright-core';
import { ChannelUnit, Partner, SaleReview } from '../models/partners';
import { browserSuite, screenshot, tmpFile } from './helpers/browser';
import { makeModel } from './helpers/catalogue';
import { makeUser, TEST_PASSWORD } from './helpers/factories';
import { makePartner } from './helpers/partners';

/**
 * The channel end to end in Chromium: an admin sets up a distributor and its reseller and
 * ships 50 units to the distributor by CSV import; the distributor's user passes 10 on,
 * reports sales by CSV (one line wrong) and submits a high-risk sale; an investigator
 * approves it with conditions; the partner sees the decision. Every page is also looked at
 * on a phone-sized screen.
 */
describe('sales channel partners (headless Chromium)', () => {
  let sku = '';
  const suite = browserSuite({}, async (ctx) => {
    sku = (await makeModel(ctx, { sku: 'CAM-200', riskLevel: 'elevated' }))._id;
  });
  const problems: string[] = [];

  async function signedIn(browser: Browser, email: string, password: string, width = 1280): Promise<Page> {
    const page = await (await browser.newContext({ viewport: { width, height: 900 } })).newPage();
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('response', (r) => r.status() >= 500 && problems.push(`${r.status()} ${r.url()}`));
    await page.goto(`${suite.site.url}/login`);
    await page.fill('#f-email', email);
    await page.fill('#f-password', password);
    await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')]);
    return page;
  }

  const submit = (page: Page, action: string) => Promise.all([page.waitForNavigation(), page.click(`form[action="${action}"] button[type="submit"]`)]);

  /** The page at 1280 px and at 390 px, neither wider than the screen. */
  async function lookAt(page: Page, name: string) {
    await screenshot(page, `partners-${name}`);
    await page.setViewportSize({ width: 390, height: 844 });
    await screenshot(page, `partners-${name}-390`);
    // A string, so the test's TypeScript needs no DOM types.
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await page.setViewportSize({ width: 1280, height: 900 });
  }

  it('admin sets up the channel; the partner reports sales and a high-risk sale; compliance approves with conditions', async () => {
    const { ctx, browser } = suite;
    const admin = await makeUser(ctx, 'admin');
    const investigator = await makeUser(ctx, 'investigator');

    // 1. An admin creates a distributor and a reseller under it, with territories.
    const adminPage = await signedIn(browser, admin.email, admin.password);
    await adminPage.goto(`${suite.site.url}/admin/partners`);
    await adminPage.fill('#f-name', 'Rift Valley Distribution');
    await adminPage.selectOption('#f-type', 'distributor');
    await adminPage.fill('#f-territories', 'KE, TZ, XX');
    await submit(adminPage, '/admin/partners');
    expect(await adminPage.textContent('#f-territories-error')).toContain('ISO 3166-1');
    expect(await adminPage.inputValue('#f-name')).toBe('Rift Valley Distribution'); // nothing typed is lost
    await adminPage.fill('#f-territories', 'KE, TZ');
    await adminPage.check('input[name="clause_no-re-export"]');
    await adminPage.fill('#f-clause_no-re-export_since', '2025-01-01');
    await submit(adminPage, '/admin/partners');
    const distributor = (await Partner.findOne({ name: 'Rift Valley Distribution' }).lean())!;
    expect(distributor).toMatchObject({ territories: ['KE', 'TZ'], clauses: [{ kind: 'no-re-export' }] });
    await lookAt(adminPage, 'partner');

    await adminPage.goto(`${suite.site.url}/admin/partners`);
    await adminPage.fill('#f-name', 'Nakuru Resellers');
    await adminPage.selectOption('#f-type', 'reseller');
    await adminPage.selectOption('#f-parentId', distributor._id);
    await adminPage.fill('#f-territories', 'KE');
    await submit(adminPage, '/admin/partners');
    const reseller = (await Partner.findOne({ name: 'Nakuru Resellers' }).lean())!;
    expect(reseller.parentId).toBe(distributor._id);
    await adminPage.goto(`${suite.site.url}/admin/partners`);
    await lookAt(adminPage, 'list');

    // 2. A catalogue import allocates 50 units to the distributor.
    const serials = Array.from({ length: 50 }, (_, i) => `RV-${String(i).padStart(3, '0')}`);
    const csv = ['sku,serial,manufactured_at,channel_partner,ship_to_country,sold_at,partner', ...serials.map((s) => `${sku},${s},2025-06-01,,,,Rift Valley Distribution`)].join('\n');
    await adminPage.goto(`${suite.site.url}/admin/catalogue/import`);
    await adminPage.setInputFiles('#f-file', tmpFile('units.csv', Buffer.from(csv)));
    await submit(adminPage, '/admin/catalogue/import');
    await adminPage.waitForSelector('text=Finished.', { timeout: 30_000 });
    expect((await Partner.findById(distributor._id).lean())!.tallies?.allocated).toBe(50);

    // The distributor gets a portal user.
    await adminPage.goto(`${suite.site.url}/admin/partners/${distributor._id}`);
    await adminPage.fill('#f-memberName', 'Wanjiru Kamau');
    await adminPage.fill('#f-memberEmail', 'wanjiru@riftvalley.example');
    await adminPage.fill('#f-memberPassword', 'a long enough password');
    await submit(adminPage, `/admin/partners/${distributor._id}/users`);
    expect(await adminPage.textContent('.notice')).toContain('wanjiru@riftvalley.example');

    // 3. The partner signs in (landing on the portal), passes 10 to the reseller, reports 5 sales by CSV, one line wrong.
    const partnerPage = await signedIn(browser, 'wanjiru@riftvalley.example', 'a long enough password');
    expect(new URL(partnerPage.url()).pathname).toBe('/partner');
    expect(await partnerPage.textContent('main')).toMatch(/Units allocated\s*50/);
    await partnerPage.selectOption('#f-toId', reseller._id);
    await partnerPage.fill('#f-units', serials.slice(0, 10).map((s) => `${sku}:${s}`).join('\n'));
    await submit(partnerPage, '/partner/pass-on');
    expect(await partnerPage.textContent('.notice')).toContain('10 units passed on.');
    expect((await ChannelUnit.findById(`${sku}:RV-000`).lean())!.holderId).toBe(reseller._id);
    await lookAt(partnerPage, 'portal');

    await partnerPage.goto(`${suite.site.url}/partner/sales`);
    const sales = [
      'sku,serial,customer_name,customer_type,country,end_use,sold_at',
      `${sku},RV-000,Nakuru Clinic,commercial-company,KE,clinic security,2026-03-01`, // sold by the reseller, reported by its distributor
      `${sku},RV-020,Arusha Hotel,commercial-company,TZ,lobby cameras,2026-03-02`,
      `${sku},RV-021,Kisumu School,ngo-academic,Kenya,campus safety,2026-03-03`,
      `${sku},RV-022,Mombasa Port,commercial-company,KE,port security,2026-03-04`,
      `${sku},RV-023,Eldoret Farm,individual,KE,farm gate,2026-03-05`,
    ].join('\n');
    await partnerPage.setInputFiles('#f-file', tmpFile('sales.csv', Buffer.from(sales)));
    await submit(partnerPage, '/partner/sales/csv');
    expect(await partnerPage.textContent('#csv-result')).toMatch(/5 lines read: 4 sales recorded, 0 already reported, 1 refused/);
    expect(await partnerPage.textContent('#csv-errors tbody tr')).toMatch(/^4\s*country\s*bad country "Kenya"/);
    await ctx.services.partners.settleSales();
    expect((await ChannelUnit.findById(`${sku}:RV-020`).lean())!.sales).toHaveLength(1);
    await lookAt(partnerPage, 'sales');

    // 4. One high-risk sale is submitted for review.
    await partnerPage.goto(`${suite.site.url}/partner/reviews`);
    await partnerPage.fill('#f-sku', sku);
    await partnerPage.fill('#f-serial', 'RV-030');
    await partnerPage.fill('#f-customerName', 'Regional Border Unit');
    await partnerPage.selectOption('#f-customerType', 'police-security');
    await partnerPage.selectOption('#f-country', 'KE');
    await partnerPage.fill('#f-endUse', 'Border crossing monitoring');
    await submit(partnerPage, '/partner/reviews');
    expect(await partnerPage.textContent('#review-status')).toBe('pending');
    const review = (await SaleReview.findOne({ unitId: `${sku}:RV-030` }).lean())!;
    await lookAt(partnerPage, 'review-pending');

    // An investigator approves it with conditions.
    const investigatorPage = await signedIn(browser, investigator.email, investigator.password);
    await investigatorPage.goto(`${suite.site.url}/admin/sale-reviews`);
    await lookAt(investigatorPage, 'queue');
    await Promise.all([investigatorPage.waitForNavigation(), investigatorPage.click(`a[href="/admin/sale-reviews/${review._id}"]`)]);
    await investigatorPage.selectOption('#f-decision', 'approved-with-conditions');
    await investigatorPage.fill('#f-reasons', 'End-user certificate verified with the ministry.');
    await investigatorPage.fill('#f-conditions', 'Firmware updates only via the vendor\nSite visit within six months');
    await submit(investigatorPage, `/admin/sale-reviews/${review._id}/decision`);
    expect(await investigatorPage.textContent('#review-status')).toBe('approved-with-conditions');
    await lookAt(investigatorPage, 'review-decided');

    // The partner sees the decision and its conditions.
    await partnerPage.goto(`${suite.site.url}/partner/reviews`);
    expect(await partnerPage.textContent('tbody')).toContain('approved-with-conditions');
    await Promise.all([partnerPage.waitForNavigation(), partnerPage.click(`a[href="/partner/reviews/${review._id}"]`)]);
    expect(await partnerPage.textContent('ul.conditions')).toMatch(/Firmware updates only via the vendor\s*Site visit within six months/);
    expect(await partnerPage.textContent('li.decision')).toContain('End-user certificate verified with the ministry.');
    await lookAt(partnerPage, 'review-seen');

    await adminPage.goto(`${suite.site.url}/admin/partners/scorecards`);
    await lookAt(adminPage, 'scorecards');
    expect(problems).toEqual([]);
  }, 180_000);

  it('due diligence: an admin publishes questions, the partner answers (a missed question is named), compliance sends back then accepts, trainings recorded', async () => {
    const { ctx, browser } = suite;
    const admin = await makeUser(ctx, 'admin');
    const investigator = await makeUser(ctx, 'investigator');
    const partner = await makePartner(ctx, { name: 'Lake Region Integrators', maturity: 'basic' });
    const email = 'dd-partner@example.test';
    await ctx.services.partners.addPartnerUser(partner._id, { email, password: TEST_PASSWORD, name: 'DD partner' }, { kind: 'staff', userId: String(admin.user._id) });

    const adminPage = await signedIn(browser, admin.email, admin.password);
    await adminPage.goto(`${suite.site.url}/admin/partners/questions`);
    await adminPage.fill('#f-questions', 'Do you screen every end customer against restricted-party lists?\nDo you keep signed end-use declarations for high-risk models?');
    await submit(adminPage, '/admin/partners/questions');
    await lookAt(adminPage, 'dd-questions');

    const partnerPage = await signedIn(browser, email, TEST_PASSWORD);
    await partnerPage.goto(`${suite.site.url}/partner/due-diligence`);
    await partnerPage.check('input[name="answer_q1"][value="yes"]');
    await partnerPage.fill('#f-comment_q2', 'Only for police customers so far');
    await submit(partnerPage, '/partner/due-diligence');
    expect(await partnerPage.textContent('#f-answer_q2-error')).toContain('Question 2 needs an answer');
    expect(await partnerPage.inputValue('#f-comment_q2')).toBe('Only for police customers so far'); // nothing typed is lost
    expect(await partnerPage.isChecked('input[name="answer_q1"][value="yes"]')).toBe(true);
    await lookAt(partnerPage, 'dd-answer-error');
    await partnerPage.check('input[name="answer_q2"][value="partly"]');
    await submit(partnerPage, '/partner/due-diligence');
    expect(await partnerPage.textContent('#dd-status')).toContain('waiting for compliance');

    const investigatorPage = await signedIn(browser, investigator.email, investigator.password);
    await investigatorPage.goto(`${suite.site.url}/admin/partners/${partner._id}/due-diligence`);
    await investigatorPage.selectOption('#f-decision', 'send-back');
    await submit(investigatorPage, `/admin/partners/${partner._id}/due-diligence/review`);
    expect(await investigatorPage.textContent('#f-reason-error')).toContain('Say why');
    await investigatorPage.fill('#f-reason', 'Declarations for every high-risk model, please: which ones are missing?');
    await submit(investigatorPage, `/admin/partners/${partner._id}/due-diligence/review`);

    await partnerPage.goto(`${suite.site.url}/partner/due-diligence`);
    expect(await partnerPage.textContent('#dd-reason')).toContain('which ones are missing?');
    expect(await partnerPage.isChecked('input[name="answer_q2"][value="partly"]')).toBe(true); // the answers sent stay offered
    await partnerPage.check('input[name="answer_q2"][value="no"]');
    await submit(partnerPage, '/partner/due-diligence');
    await partnerPage.fill('#f-person', 'Grace Wanjiru');
    await partnerPage.fill('#f-training', 'End-use red flags');
    await partnerPage.fill('#f-completedAt', '2026-01-15');
    await submit(partnerPage, '/partner/due-diligence/trainings');
    await lookAt(partnerPage, 'dd-portal');

    await investigatorPage.goto(`${suite.site.url}/admin/partners/${partner._id}/due-diligence`);
    await investigatorPage.selectOption('#f-decision', 'accept');
    await investigatorPage.selectOption('#f-maturity', 'established');
    await submit(investigatorPage, `/admin/partners/${partner._id}/due-diligence/review`);
    expect(await investigatorPage.textContent('#dd-status')).toContain('accepted');
    expect(await investigatorPage.textContent('#dd-maturity')).toBe('established');
    await lookAt(investigatorPage, 'dd-reviewed');
    const stored = await Partner.findById(partner._id).lean();
    expect(stored!.dueDiligence).toMatchObject({ maturity: 'established', questionnaire: { status: 'accepted', answers: [{ answer: 'yes' }, { answer: 'no', comment: 'Only for police customers so far' }] }, trainings: [{ person: 'Grace Wanjiru', training: 'End-use red flags' }] });
    expect(problems).toEqual([]);
  }, 120_000);
});
