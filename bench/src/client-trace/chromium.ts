/**
 * The sequential trace through capsync clients in headless Chromium with real IndexedDB. A page
 * (page/) is bundled by Vite from TypeScript sources and served by the in-process relay
 * (staticDir) with the trace as trace.json. Per run: a writing page and a receiving page, each
 * in its own browser context (own IndexedDB, own renderer process); then the writing context
 * reloads its page and times cold opens of the finished document.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { ReplicaSize } from '@capsync/client';
import type { PageTrace } from './page/api.js';
import { startRelay, type RelayStorage } from './relay.js';
import type { Patch, TypingTime } from './replay.js';
import type { WireCounts } from './wire-count.js';

const PAGE_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'page');
const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

export interface ChromiumRun {
  /** The plain-Yjs baseline typed in the writing page (edits + update encoding), just before the replay. */
  plain: TypingTime;
  replay: TypingTime;
  /** Frames from the relay (acks) the writing page handled while it was typing. */
  receivedWhileTyping: number;
  flushMs: number;
  bSyncedMs: number;
  localSavedMs: number;
  wireA: WireCounts;
  wireB: WireCounts;
  finalV1Bytes: number;
  finalV2Bytes: number;
  before: ReplicaSize;
  after: ReplicaSize;
  compactMs: number;
  coldOpenMs: number[];
}

export type ChromiumOutcome = { ok: true; version: string; runs: ChromiumRun[] } | { ok: false; skipped: string };

export interface ChromiumOptions {
  patches: readonly Patch[];
  expected: string;
  runs: number;
  coldOpens: number;
  relayStorage: RelayStorage;
  docPrefix: string;
  log(line: string): void;
  /** Wraps each run (the bench waits for a quiet machine and records interference). */
  eachRun<T>(fn: () => Promise<T>): Promise<T>;
}

/** `CHROMIUM_PATH` if set (and only it), else the Debian/Ubuntu locations. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const executable = (file: string): boolean => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  };
  const configured = env['CHROMIUM_PATH'];
  if (configured) return executable(configured) ? configured : undefined;
  return CANDIDATES.find(executable);
}

export async function runChromium(o: ChromiumOptions): Promise<ChromiumOutcome> {
  const executablePath = findChromium();
  if (!executablePath) {
    const where = process.env['CHROMIUM_PATH'] ? `CHROMIUM_PATH=${process.env['CHROMIUM_PATH']}` : CANDIDATES.join(', ');
    return { ok: false, skipped: `Chromium not found (${where}); install it with \`apt-get install -y chromium\` or set CHROMIUM_PATH` };
  }
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsync-client-trace-page-'));
  let browser: Browser | null = null;
  let relay: Awaited<ReturnType<typeof startRelay>> | null = null;
  try {
    await buildPage(outDir);
    const pageTrace: PageTrace = { patches: o.patches as PageTrace['patches'], expected: o.expected };
    fs.writeFileSync(path.join(outDir, 'trace.json'), JSON.stringify(pageTrace));
    relay = await startRelay(o.relayStorage, outDir);
    browser = await chromium.launch({
      executablePath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--js-flags=--expose-gc'],
    });
    const runs: ChromiumRun[] = [];
    for (let i = 0; i < o.runs; i++) {
      const b = browser;
      const r = relay;
      const run = await o.eachRun(() => oneRun(b, r.httpUrl, r.url, `${o.docPrefix}-chromium-${i}`, o));
      o.log(
        `chromium   run ${i + 1}/${o.runs}: typing busy plain Yjs ${run.plain.busyMs.toFixed(0)} ms, capsync ${run.replay.busyMs.toFixed(0)} ms ` +
          `(x${(run.replay.busyMs / run.plain.busyMs).toFixed(2)}; wall x${(run.replay.wallMs / run.plain.wallMs).toFixed(2)}), ` +
          `${run.receivedWhileTyping} frames received while typing, reconnects ${run.wireA.sockets}/${run.wireB.sockets}, ` +
          `longest silence ${run.wireA.longestSilenceMs.toFixed(0)}/${run.wireB.longestSilenceMs.toFixed(0)} ms, flush ${run.flushMs.toFixed(0)} ms, ` +
          `B synced ${run.bSyncedMs.toFixed(0)} ms, saved locally ${run.localSavedMs.toFixed(0)} ms, ` +
          `stored ${run.before.bytes} B -> ${run.after.bytes} B, cold open ${run.coldOpenMs.map((v) => v.toFixed(1)).join(', ')} ms`,
      );
      runs.push(run);
    }
    return { ok: true, version: browser.version(), runs };
  } finally {
    await browser?.close();
    await relay?.close();
    fs.rmSync(outDir, { recursive: true, force: true });
  }
}

async function buildPage(outDir: string): Promise<void> {
  const { build } = await import('vite');
  await build({
    root: PAGE_DIR,
    base: './',
    configFile: false,
    envDir: false,
    publicDir: false,
    logLevel: 'warn',
    mode: 'production',
    // Workspace packages compile from their TypeScript sources (the `source` condition).
    resolve: { conditions: ['source', 'browser', 'module', 'import', 'default'] },
    build: { outDir, emptyOutDir: true, target: 'es2022', sourcemap: false, reportCompressedSize: false },
  });
}

async function oneRun(browser: Browser, httpUrl: string, relayUrl: string, docName: string, o: ChromiumOptions): Promise<ChromiumRun> {
  const contexts: BrowserContext[] = [];
  try {
    const [writer, receiver] = await Promise.all([openPage(browser, httpUrl, contexts), openPage(browser, httpUrl, contexts)]);
    await Promise.all([writer.evaluate(() => window.clientTrace!.loadTrace()), receiver.evaluate(() => window.clientTrace!.loadTrace())]);
    const args = { relayUrl, docName };
    const plain = await writer.evaluate(() => window.clientTrace!.plainReplay());
    await receiver.evaluate((a) => window.clientTrace!.startReceiver(a), args);
    const w = await writer.evaluate((a) => window.clientTrace!.replay(a), args);
    const r = await receiver.evaluate(() => window.clientTrace!.receiverDone());

    const coldOpenMs: number[] = [];
    for (let i = 0; i < o.coldOpens; i++) {
      await writer.reload();
      await writer.waitForFunction(() => window.clientTrace !== undefined);
      const c = await writer.evaluate((a) => window.clientTrace!.coldOpen(a), { ...args, expected: o.expected });
      if (!c.textOk) throw new Error('chromium cold open: the reopened document differs from the expected text');
      coldOpenMs.push(c.ms);
    }
    return {
      plain,
      replay: w.replay,
      receivedWhileTyping: w.receivedWhileTyping,
      flushMs: w.flushMs,
      bSyncedMs: r.doneEpoch - w.t0Epoch,
      localSavedMs: w.localSavedMs,
      wireA: w.wire,
      wireB: r.wire,
      finalV1Bytes: w.finalV1Bytes,
      finalV2Bytes: w.finalV2Bytes,
      before: w.before,
      after: w.after,
      compactMs: w.compactMs,
      coldOpenMs,
    };
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
  }
}

/** A page in a fresh context (its own IndexedDB), loaded, with page errors turned into failures. */
async function openPage(browser: Browser, httpUrl: string, contexts: BrowserContext[]): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (err) => process.stderr.write(`chromium page error: ${err.stack ?? err.message}\n`));
  await page.goto(`${httpUrl}/`);
  await page.waitForFunction(() => window.clientTrace !== undefined);
  return page;
}
