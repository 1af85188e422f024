import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, expect, it, onTestFailed } from 'vitest';
import { buildPage, describeBrowser, launchChromium, newContext, recordPage, serveFromDisk, type BuiltPage } from '../support/browser.js';
import { startRelay, tempDir, type TestRelay } from '../support/relay-fixture.js';
import { killRelay, spawnRelay, type RelayProcess } from '../support/relay-process.js';
import type { DocView } from './page/main.js';

/**
 * End to end in a real headless Chromium: the real `@capsync/client` with IndexedDB storage,
 * bundled from source, served by a real relay (same origin as its WebSocket, as in
 * production). No mocks and no sleeps: every wait is a condition polled in the page with a
 * deadline, and a timeout reports the page's last view of the document.
 */

const PAGE_ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'page');
const WAIT_MS = 10_000;

describeBrowser('browser: offline-first sync in real Chromium', (chromiumPath) => {
  let built: BuiltPage;
  let browser: Browser;
  /** Console output and errors of every page of the running test, printed if it fails. */
  let pageLog: string[] = [];
  let contexts: BrowserContext[] = [];

  beforeAll(async () => {
    await Promise.all([buildPage(PAGE_ROOT).then((p) => (built = p)), launchChromium(chromiumPath).then((b) => (browser = b))]);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    built?.remove();
  });

  afterEach(async () => {
    await Promise.all(contexts.map((c) => c.close()));
    contexts = [];
    pageLog = [];
  });

  function recordFailures(): void {
    const log = pageLog; // afterEach starts a new log before vitest reports the failure
    onTestFailed(() => {
      console.error(`browser console of the failed test:\n${log.length > 0 ? log.join('\n') : '(empty)'}`);
    });
  }

  /** A fresh browser profile: a user with their own IndexedDB. Closed after the test. */
  async function context(): Promise<BrowserContext> {
    const c = await newContext(browser);
    contexts.push(c);
    return c;
  }

  /** Loads the test page from the relay and opens `doc` in it. */
  async function openDoc(ctx: BrowserContext, httpUrl: string, label: string, doc: string): Promise<Page> {
    const page = recordPage(await ctx.newPage(), label, pageLog);
    await page.goto(`${httpUrl}/`);
    await page.evaluate((d) => window.capsync.open(d), doc);
    return page;
  }

  function view(page: Page, doc: string): Promise<DocView> {
    return page.evaluate((d) => window.capsync.view(d), doc);
  }

  function append(page: Page, doc: string, text: string): Promise<void> {
    return page.evaluate(([d, t]) => window.capsync.append(d, t), [doc, text] as const);
  }

  /**
   * Waits until `check(view, arg)` holds in the page. `check` runs in the page, so it must
   * be self-contained (it sees only its arguments).
   */
  async function until<A>(page: Page, doc: string, what: string, check: (v: DocView, arg: A) => boolean, arg: A, timeout = WAIT_MS): Promise<DocView> {
    try {
      await page.waitForFunction(
        ({ d, src, a }) => (0, eval)(src)(window.capsync.view(d), a) as boolean,
        { d: doc, src: `(${check.toString()})`, a: arg },
        { timeout, polling: 20 },
      );
    } catch (err) {
      const last = await view(page, doc).catch((e: Error) => `(unreadable: ${e.message})`);
      throw new Error(`${what}: ${(err as Error).message.split('\n')[0]}\nlast view: ${JSON.stringify(last)}`);
    }
    return view(page, doc);
  }

  const hasAll = (v: DocView, parts: string[]) => parts.every((p) => v.text.includes(p));

  it('a user edits offline, reloads offline, reconnects, and the edits survive a relay SIGKILL', async () => {
    recordFailures();
    const doc = 'notes/offline-reload';
    const data = tempDir('capsync-browser-relay-');
    // A real relay process, so it can be SIGKILLed; restarted on the same port (the pages'
    // URL) with the same data directory. A later --port overrides spawnRelay's --port 0.
    const relayArgs = ['--data', data.dir, '--static-dir', built.dir];
    let relay: RelayProcess = await spawnRelay(relayArgs);
    try {
      const origin = new URL(relay.httpUrl).origin;
      // Two users: two contexts, so A's network can fail alone, each with its own IndexedDB.
      const ctxA = await context();
      const ctxB = await context();
      const a = await openDoc(ctxA, relay.httpUrl, 'A', doc);
      const b = await openDoc(ctxB, relay.httpUrl, 'B', doc);
      await until(a, doc, 'A synced', (v) => v.status === 'synced', null);
      await until(b, doc, 'B synced', (v) => v.status === 'synced', null);
      await append(a, doc, '[A1]');
      await append(b, doc, '[B1]');
      await until(a, doc, 'A sees both first edits', (v, p) => p.every((s) => v.text.includes(s)), ['[A1]', '[B1]']);
      await until(b, doc, 'B sees both first edits', (v, p) => p.every((s) => v.text.includes(s)), ['[A1]', '[B1]']);

      // A loses its network: navigator.onLine turns false, the 'offline' event fires, and new
      // connections fail with ERR_INTERNET_DISCONNECTED. A keeps editing; so does B.
      await ctxA.setOffline(true);
      await until(a, doc, 'A offline', (v) => v.status === 'offline', null);
      await append(a, doc, '[A-offline]');
      await append(b, doc, '[B-while-A-offline]');
      await a.evaluate((d) => window.capsync.flush(d, 'local', 5_000), doc);
      expect((await view(a, doc)).pending).toBeGreaterThan(0);
      await until(b, doc, 'B synced with its edit durable', (v) => v.status === 'synced' && v.pending === 0, null);

      // A reloads while still offline. A page cannot load over an offline network, and in
      // production an offline app shell comes from a Service Worker cache; here a route
      // serves the same built files from disk (the test's stand-in for that cache). Only
      // HTTP is routed: the relay's WebSocket stays behind setOffline, so the reloaded page
      // really is offline. Same context, so the same origin's IndexedDB survives the reload.
      const unroute = await serveFromDisk(ctxA, origin, built.dir);
      await a.reload();
      expect(await a.evaluate(() => navigator.onLine)).toBe(false);
      await a.evaluate((d) => window.capsync.open(d), doc);
      const reloaded = await view(a, doc);
      expect(reloaded.text).toContain('[A1]');
      expect(reloaded.text).toContain('[B1]');
      expect(reloaded.text).toContain('[A-offline]'); // from IndexedDB
      expect(reloaded.text).not.toContain('[B-while-A-offline]');
      expect(reloaded.status).toBe('offline');
      expect(reloaded.statuses).toEqual(['offline']); // it never tried to look connected
      expect(reloaded.pending).toBeGreaterThan(0); // the stored outbox came back with it

      // Back online: A reconnects on the 'online' event, sends its outbox, and both converge.
      await unroute();
      await ctxA.setOffline(false);
      const everything = ['[A1]', '[B1]', '[A-offline]', '[B-while-A-offline]'];
      const aDone = await until(a, doc, 'A synced with everything', (v, p) => v.status === 'synced' && v.pending === 0 && p.every((s) => v.text.includes(s)), everything);
      const bDone = await until(b, doc, 'B has A\'s text', (v, t) => v.text === t, aDone.text);
      expect(hasAll(bDone, everything)).toBe(true);
      await a.evaluate((d) => window.capsync.flush(d, 'relay', 5_000), doc);
      await b.evaluate((d) => window.capsync.flush(d, 'relay', 5_000), doc);
      expect((await view(a, doc)).pending).toBe(0);
      const finalText = aDone.text;
      expect((await view(a, doc)).errors).toEqual([]);
      expect((await view(b, doc)).errors).toEqual([]);

      // The relay crashes. Everything it acknowledged (flush 'relay' resolved) must be there
      // for a user who never saw this document, once the relay is back.
      await killRelay(relay, 'SIGKILL');
      relay = await spawnRelay([...relayArgs, '--port', new URL(origin).port]);
      expect(new URL(relay.httpUrl).origin).toBe(origin);
      const c = await openDoc(await context(), relay.httpUrl, 'C', doc);
      await c.evaluate((d) => window.capsync.whenSynced(d, 10_000), doc);
      expect((await view(c, doc)).text).toBe(finalText);

      // The open pages reconnect to the restarted relay by themselves and keep syncing.
      await until(a, doc, 'A reconnected after the relay restart', (v) => v.status === 'synced', null, 20_000);
      await append(a, doc, '[A-after-restart]');
      await until(c, doc, 'C sees A\'s edit after the restart', (v, s) => v.text.includes(s), '[A-after-restart]');
      await until(b, doc, 'B sees A\'s edit after the restart', (v, s) => v.text.includes(s), '[A-after-restart]', 20_000);
    } finally {
      await killRelay(relay);
      data.remove();
    }
  });

  it('subdocuments edited offline in two browsers, reloaded from IndexedDB offline, converge after heal', async () => {
    recordFailures();
    const doc = 'notes/notebook';
    const sub = `${doc}#page-1`;
    const relay: TestRelay = await startRelay({ staticDir: built.dir });
    try {
      const origin = new URL(relay.httpUrl).origin;
      const ctxA = await context();
      const ctxB = await context();
      const a = await openDoc(ctxA, relay.httpUrl, 'A', doc);
      await a.evaluate((d) => window.capsync.openSubdoc(d, 'page-1'), doc);
      await append(a, sub, '[A1]');
      await until(a, sub, 'A page synced', (v) => v.status === 'synced' && v.pending === 0, null);
      const b = await openDoc(ctxB, relay.httpUrl, 'B', doc);
      await until(b, doc, 'B notebook synced', (v) => v.status === 'synced', null);
      await b.evaluate((d) => window.capsync.openSubdoc(d, 'page-1'), doc);
      await until(b, sub, 'B page has A1', (v) => v.status === 'synced' && v.text.includes('[A1]'), null);

      // Both offline: each edits the page, saves locally, and reloads offline from IndexedDB.
      for (const [ctx, page, edit] of [[ctxA, a, '[A-off]'], [ctxB, b, '[B-off]']] as const) {
        await ctx.setOffline(true);
        await until(page, sub, 'page offline', (v) => v.status === 'offline', null);
        await append(page, sub, edit);
        await page.evaluate((d) => window.capsync.flush(d, 'local', 5_000), sub);
        const unroute = await serveFromDisk(ctx, origin, built.dir);
        await page.reload();
        await page.evaluate((d) => window.capsync.open(d), doc);
        await page.evaluate((d) => window.capsync.openSubdoc(d, 'page-1'), doc);
        const reloaded = await view(page, sub);
        expect(reloaded.text).toContain('[A1]');
        expect(reloaded.text).toContain(edit); // from IndexedDB
        expect(reloaded.status).toBe('offline');
        expect(reloaded.pending).toBeGreaterThan(0);
        await unroute();
      }

      // Heal: both reconnect and the page converges, with the parent untouched by its content.
      await ctxA.setOffline(false);
      await ctxB.setOffline(false);
      const both = ['[A1]', '[A-off]', '[B-off]'];
      const aDone = await until(a, sub, 'A page has everything', (v, p) => v.status === 'synced' && v.pending === 0 && p.every((s) => v.text.includes(s)), both);
      await until(b, sub, "B page has A's text", (v, t) => v.status === 'synced' && v.text === t, aDone.text);
      for (const page of [a, b]) {
        expect((await view(page, doc)).text).toBe('');
        expect((await view(page, doc)).errors).toEqual([]);
        expect((await view(page, sub)).errors).toEqual([]);
      }
    } finally {
      await relay.dispose();
    }
  });

  it('two tabs of one browser converge over BroadcastChannel while offline', async () => {
    recordFailures();
    const doc = 'notes/two-tabs';
    const relay: TestRelay = await startRelay({ staticDir: built.dir });
    try {
      // Two pages in ONE context: tabs of one browser profile, same origin, shared IndexedDB.
      const ctx = await context();
      const t1 = await openDoc(ctx, relay.httpUrl, 'tab1', doc);
      const t2 = await openDoc(ctx, relay.httpUrl, 'tab2', doc);
      await until(t1, doc, 'tab1 synced', (v) => v.status === 'synced', null);
      await until(t2, doc, 'tab2 synced', (v) => v.status === 'synced', null);

      await ctx.setOffline(true); // both tabs: no relay from here on
      await until(t1, doc, 'tab1 offline', (v) => v.status === 'offline', null);
      await until(t2, doc, 'tab2 offline', (v) => v.status === 'offline', null);
      await append(t1, doc, '[tab1]');
      await append(t2, doc, '[tab2]');
      const both = ['[tab1]', '[tab2]'];
      const v1 = await until(t1, doc, 'tab1 has both edits', (v, p) => p.every((s) => v.text.includes(s)), both);
      const v2 = await until(t2, doc, 'tab2 has tab1\'s text', (v, t) => v.text === t, v1.text);
      expect(hasAll(v2, both)).toBe(true);
      expect(v1.status).toBe('offline');
      expect(v2.status).toBe('offline');
      expect(v1.pending).toBeGreaterThan(0);
      expect(v2.pending).toBeGreaterThan(0);

      // The relay never saw these edits: they went tab to tab.
      const onRelay = await fetch(`${relay.httpUrl}/v1/docs/${encodeURIComponent(doc)}`).then((r) => r.text());
      expect(onRelay).not.toContain('[tab1]');
      expect(onRelay).not.toContain('[tab2]');
    } finally {
      await relay.dispose();
    }
  });
});
