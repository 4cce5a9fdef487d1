import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { Env } from '../../server/config';
import { createTestContext, type TestContext } from './context';

export const CHROMIUM = '/usr/bin/chromium';

/**
 * Debian's Chromium driven by playwright-core: never a downloaded browser. The flags keep it
 * off the network (this machine has none beyond loopback) and quiet.
 */
export async function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: run \`npm test\` (its set-up installs Debian's chromium) or \`apt-get install chromium\`.`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** Serves the test app on a free loopback port for the browser. */
export async function serve(ctx: TestContext): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(ctx.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A phone-sized page (the reporting channel is used from phones). */
export async function phonePage(browser: Browser): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
  return context.newPage();
}

/** Saves a screenshot under test-results/ (git-ignored) so a person can look at it. */
export async function screenshot(page: Page, name: string): Promise<string> {
  const dir = path.join(process.cwd(), 'test-results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

export const tmpFile = (name: string, data: Buffer) => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-upload-')), name);
  fs.writeFileSync(file, data);
  return file;
};

export interface BrowserSuite {
  ctx: TestContext;
  browser: Browser;
  site: { url: string; close(): Promise<void> };
}

/**
 * The set-up every browser test file shares: an app on its own database (with `env`
 * overrides), `prepare` for the file's own data, Chromium, and the app served on loopback;
 * all closed after the file. Fields are filled in `beforeAll`.
 */
export function browserSuite(env: Env = {}, prepare: (ctx: TestContext) => Promise<void> = async () => {}, timeoutMs = 60_000): BrowserSuite {
  const suite = {} as BrowserSuite;
  beforeAll(async () => {
    suite.ctx = await createTestContext(env);
    await prepare(suite.ctx);
    suite.browser = await launchBrowser();
    suite.site = await serve(suite.ctx);
  }, timeoutMs);
  afterAll(async () => {
    await suite.browser?.close();
    await suite.site?.close();
    await suite.ctx?.close();
  });
  return suite;
}
