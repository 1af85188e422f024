import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { build } from 'vite';
import { describe, it } from 'vitest';
import { executable } from './executable.js';
import { tempDir } from './relay-fixture.js';

/**
 * Harness of the browser end-to-end tests: a real headless Chromium (driven by
 * playwright-core, which brings no browser of its own), a test page bundled by Vite from
 * TypeScript sources, served by the relay under test.
 */

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

export const CHROMIUM_MISSING =
  'browser tests skipped: Chromium not found; install it with `apt-get install -y chromium` or set CHROMIUM_PATH';

/**
 * The Chromium to drive: `CHROMIUM_PATH` if set (and only it: a wrong path is not silently
 * replaced by another browser), else the Debian/Ubuntu locations. Undefined if none exists.
 */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const configured = env['CHROMIUM_PATH'];
  if (configured) return executable(configured) ? configured : undefined;
  return CANDIDATES.find(executable);
}

/** True on CI, where a missing browser is a failure rather than a skip. */
export function onCI(env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env['CI'];
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

function missingDetail(): string {
  const configured = process.env['CHROMIUM_PATH'];
  return configured ? ` (CHROMIUM_PATH=${configured} is not an executable file)` : ` (looked in ${CANDIDATES.join(', ')})`;
}

/**
 * `describe` for tests that need Chromium. Without one: on CI the suite fails with a test
 * that says why; elsewhere it is skipped and the run says so plainly, once per file.
 */
export function describeBrowser(name: string, fn: (chromiumPath: string) => void): void {
  const chromiumPath = findChromium();
  if (chromiumPath) {
    describe(name, () => fn(chromiumPath));
  } else if (onCI()) {
    describe(name, () => {
      it('needs Chromium (CI is set, so a missing browser fails the run)', () => {
        throw new Error(`Chromium not found${missingDetail()}; install it with \`apt-get install -y chromium\` or set CHROMIUM_PATH`);
      });
    });
  } else {
    console.warn(`${CHROMIUM_MISSING}${missingDetail()}`);
    describe.skip(`${name} — ${CHROMIUM_MISSING}`, () => fn(''));
  }
}

/** Launches headless Chromium with the flags a container or CI runner needs. */
export function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox', // CI runs as root, where Chromium's sandbox refuses to start
      '--disable-gpu',
      '--disable-dev-shm-usage', // containers often have a 64 MB /dev/shm
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-extensions',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--password-store=basic',
      '--use-mock-keychain',
    ],
  });
}

/**
 * A fresh context (profile: its own IndexedDB, BroadcastChannel scope and network
 * emulation). `local-network-access` is granted because the test origin is loopback: a
 * page served by `serveFromDisk` (a route, which has no IP address space) would otherwise
 * be treated as public and Chromium (141+) blocks its WebSockets to 127.0.0.1 with
 * ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS. In production page and relay share one origin
 * and address space, so this restriction never applies there.
 */
export function newContext(browser: Browser): Promise<BrowserContext> {
  return browser.newContext({ permissions: ['local-network-access'] });
}

/** Collects a page's console messages and errors, labelled, for dumping when a test fails. */
export function recordPage(page: Page, label: string, log: string[]): Page {
  page.on('console', (m) => log.push(`[${label}] console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`[${label}] pageerror: ${e.stack ?? e.message}`));
  page.on('crash', () => log.push(`[${label}] page crashed`));
  return page;
}

export interface BuiltPage {
  /** Directory of index.html and its assets; pass it to the relay as `staticDir`. */
  dir: string;
  remove(): void;
}

/**
 * Bundles the page at `root` (index.html plus the modules it loads) into a temporary
 * directory with Vite. Sibling packages compile from their TypeScript sources through the
 * `source` export condition, as in the rest of the test suite.
 */
export async function buildPage(root: string): Promise<BuiltPage> {
  const out = tempDir('capsync-page-');
  try {
    await build({
      root,
      configFile: false,
      envDir: false,
      publicDir: false,
      logLevel: 'warn',
      mode: 'production',
      resolve: { conditions: ['source', 'browser', 'module', 'import', 'default'] },
      build: {
        outDir: out.dir,
        emptyOutDir: true,
        target: 'es2022',
        minify: false,
        sourcemap: true,
        reportCompressedSize: false,
      },
    });
  } catch (err) {
    out.remove();
    throw err;
  }
  return out;
}

/**
 * Serves `origin`'s HTTP requests from `dir` in this context, without the network: the
 * stand-in for an app shell cached by a Service Worker, so a page can load (and reload)
 * while the context is offline. WebSockets are not routed and stay subject to
 * `context.setOffline`. Returns a function that removes the route.
 */
export async function serveFromDisk(context: BrowserContext, origin: string, dir: string): Promise<() => Promise<void>> {
  const root = path.resolve(dir);
  const matches = (url: URL) => url.origin === origin;
  await context.route(matches, async (route) => {
    const url = new URL(route.request().url());
    let rel = decodeURIComponent(url.pathname);
    if (rel.endsWith('/')) rel += 'index.html';
    const file = path.resolve(root, `.${rel}`);
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      await route.fulfill({ status: 404, body: 'not found' });
      return;
    }
    await route.fulfill({ path: file });
  });
  return () => context.unroute(matches);
}
