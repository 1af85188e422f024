/**
 * IndexedDbStorage runs the StorageAdapter conformance suite in a real headless Chromium,
 * against the browser's own IndexedDB (the page is bundled from sources; see
 * storage-page/main.ts). Each case runs in the page; its failure comes back with its stack.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, it } from 'vitest';
import { storageAdapterConformance } from '@capsync/client/conformance';
import { buildPage, describeBrowser, launchChromium, newContext, recordPage, serveFromDisk, type BuiltPage } from '../support/browser.js';
import type {} from './storage-page/main.js';

const PAGE_ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'storage-page');
const ORIGIN = 'http://capsync-storage.test';

describeBrowser('IndexedDbStorage conformance in real Chromium', (chromiumPath) => {
  let built: BuiltPage;
  let browser: Browser;
  let page: Page;
  const log: string[] = [];

  beforeAll(async () => {
    await Promise.all([buildPage(PAGE_ROOT).then((p) => (built = p)), launchChromium(chromiumPath).then((b) => (browser = b))]);
    const context = await newContext(browser);
    await serveFromDisk(context, ORIGIN, built.dir);
    page = recordPage(await context.newPage(), 'storage', log);
    await page.goto(`${ORIGIN}/`);
    await page.waitForFunction(() => window.storageConformance !== undefined);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    built?.remove();
  });

  for (const c of storageAdapterConformance) {
    it(c.name, async (ctx) => {
      const result = await page.evaluate((name) => window.storageConformance.run(name), c.name);
      if (result && 'skipped' in result) ctx.skip(result.skipped);
      if (result && 'error' in result) throw new Error(`${result.error}\nbrowser console:\n${log.join('\n') || '(empty)'}`);
    });
  }
});
