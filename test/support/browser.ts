/**
 * A real headless Chromium for the page's tests (issue #15): Debian's `chromium`, driven by playwright-core with
 * `executablePath` (no browser download). Installed with apt where missing, like Dovecot.
 *
 * `watchPage` records what a hostile message could make the browser do: console errors, every request by
 * origin, navigations of the top window, dialogs, popups and calls of the `__xss` canary.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium'];

function findChromium(): string | undefined {
  const fromEnv = process.env.TRIBUTARY_CHROMIUM;
  if (fromEnv && fs.existsSync(fromEnv)) return fromEnv;
  return CHROMIUM_CANDIDATES.find((c) => fs.existsSync(c));
}

/** Finds Chromium; installs Debian's `chromium` with apt when missing and we are root, else says what to install. */
export function ensureChromium(): string {
  const found = findChromium();
  if (found) return found;
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !fs.existsSync('/usr/bin/apt-get')) {
    throw new Error(
      'Chromium is needed by the browser tests and is not installed. Install the package `chromium` ' +
        '(Debian/Ubuntu: sudo apt-get install chromium) or set TRIBUTARY_CHROMIUM to its path, then run npm test again.',
    );
  }
  process.stderr.write('[harness] installing chromium with apt-get...\n');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
  execFileSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'ignore', env });
  const after = findChromium();
  if (!after) throw new Error('apt-get installed chromium, but no chromium binary is found');
  return after;
}

/** Launches headless Chromium. */
export async function launchBrowser(): Promise<Browser> {
  const executablePath = ensureChromium();
  return chromium.launch({
    executablePath,
    headless: true,
    // --no-sandbox: the tests may run as root in a container, where Chromium's own sandbox cannot start.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
}

export interface PageWatch {
  page: Page;
  context: BrowserContext;
  consoleErrors: string[];
  /** Every request the browser sent (or tried to send), by URL. */
  requests: string[];
  /** Navigations of the top window after `arm()`, same-document ones (the page's own hash routing) included. */
  topNavigations: string[];
  /** Documents loaded into the top window after `arm()` (a reload or any navigation that left the page). */
  topLoads: string[];
  /** Navigations of any frame inside the page to something other than about:srcdoc / about:blank. */
  frameNavigations: string[];
  dialogs: string[];
  popups: string[];
  /** Arguments of every `__xss(...)` canary call, from any frame. */
  canary: string[];
  /** Requests to any origin but `ownOrigin`. */
  foreignRequests(ownOrigin: string): string[];
  /** Top-window navigations that left the page at `pageUrl` (hash routing aside) or reloaded it. */
  leftPage(pageUrl: string): string[];
  /** Starts counting top-window navigations from now (the page's own load is not one). */
  arm(): void;
  /** Forgets what was recorded so far. */
  clear(): void;
}

/**
 * A new context and page with recorders. Requests to an origin other than `allow` are aborted (after being
 * recorded), so no test sends anything off loopback; pass `allow` with every origin the test may reach.
 */
export async function watchPage(
  browser: Browser,
  options: {
    allow: string[];
    colorScheme?: 'light' | 'dark';
    viewport?: { width: number; height: number };
    isMobile?: boolean;
    acceptDownloads?: boolean;
  },
): Promise<PageWatch> {
  const context = await browser.newContext({
    colorScheme: options.colorScheme ?? 'light',
    viewport: options.viewport ?? { width: 1280, height: 800 },
    isMobile: options.isMobile ?? false,
    hasTouch: options.isMobile ?? false,
    acceptDownloads: options.acceptDownloads ?? true,
    serviceWorkers: 'block',
  });
  const watch: PageWatch = {
    page: undefined as unknown as Page,
    context,
    consoleErrors: [],
    requests: [],
    topNavigations: [],
    frameNavigations: [],
    topLoads: [],
    dialogs: [],
    popups: [],
    canary: [],
    foreignRequests(ownOrigin: string) {
      return watch.requests.filter((u) => {
        try {
          const url = new URL(u);
          if (url.protocol === 'data:' || url.protocol === 'blob:' || url.protocol === 'about:') return false;
          return url.origin !== ownOrigin;
        } catch {
          return true;
        }
      });
    },
    leftPage(pageUrl: string) {
      const base = pageUrl.split('#')[0];
      return [...watch.topNavigations.filter((u) => u.split('#')[0] !== base), ...watch.topLoads];
    },
    arm() {
      armed = true;
    },
    clear() {
      watch.consoleErrors.length = 0;
      watch.requests.length = 0;
      watch.topNavigations.length = 0;
      watch.frameNavigations.length = 0;
      watch.topLoads.length = 0;
      watch.dialogs.length = 0;
      watch.popups.length = 0;
      watch.canary.length = 0;
    },
  };
  let armed = false;
  await context.exposeFunction('__xss', (id: unknown) => {
    watch.canary.push(String(id));
  });
  // Recorded both where the route sees a request and from the request event (either alone has been seen to miss
  // one under load), once per request.
  const seen = new WeakSet<object>();
  const record = (request: { url(): string }) => {
    if (seen.has(request)) return;
    seen.add(request);
    watch.requests.push(request.url());
  };
  await context.route('**/*', async (route) => {
    record(route.request());
    const url = route.request().url();
    let origin: string;
    try {
      origin = new URL(url).origin;
    } catch {
      origin = 'null';
    }
    if (options.allow.includes(origin)) await route.continue();
    else await route.abort('blockedbyclient');
  });
  context.on('request', record);
  const page = await context.newPage();
  watch.page = page;
  page.on('console', (m) => {
    if (m.type() === 'error') watch.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => watch.consoleErrors.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => {
    watch.dialogs.push(`${d.type()}: ${d.message()}`);
    void d.dismiss().catch(() => undefined);
  });
  page.on('domcontentloaded', () => {
    if (armed) watch.topLoads.push(page.url());
  });
  page.on('popup', (p) => {
    watch.popups.push(p.url());
  });
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) {
      if (armed) watch.topNavigations.push(f.url());
    } else if (!/^about:(srcdoc|blank)$/.test(f.url())) {
      watch.frameNavigations.push(f.url());
    }
  });
  return watch;
}
