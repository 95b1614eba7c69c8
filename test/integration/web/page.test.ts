/**
 * The page end to end (issue #15): mail delivered to the test Dovecot, synced by `tributary sync` from an IMAP and
 * a POP3 account (and a third source with a wrong password), served by `tributary serve`, read in a real headless
 * Chromium (Debian's chromium through playwright-core): the inbox, filters, search, an HTML message with an inline
 * image and an attachment, a plain one, read/unread, delete, the sources view with an error, the keyboard, the
 * dark theme and a phone viewport. Nothing leaves the page's origin, nothing logs an error.
 *
 * TRIBUTARY_SCREENSHOTS=1 also writes docs/screenshots/inbox.png and message.png (off by default, so `npm test`
 * leaves the tree clean).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import type { Browser } from 'playwright-core';
import { launchBrowser, watchPage, type PageWatch } from '../../support/browser';
import { MailLab } from '../../support/mail-lab';
import {
  FAKE_PASSWORD,
  cli,
  fakeSetup,
  freshTable,
  sampleFixture,
  startPageFixtureServer,
  startServe,
  type ServeHandle,
} from '../../support/page-fixture-server';
import { createHash } from 'node:crypto';
import { buildPageAssets, loadPageAssets, writePageAssets } from '../../../functions/web/page-assets';
import type { SyncProgressView } from '../../../functions/web/contract';

const lab = MailLab.fromEnv();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-page-'));
const SCREENSHOTS = process.env.TRIBUTARY_SCREENSHOTS === '1';
const SHOTS_DIR = path.join(__dirname, '..', '..', '..', 'docs', 'screenshots');

const PDF = Buffer.concat([
  Buffer.from('%PDF-1.4\n% Tributary test attachment\n'),
  Buffer.from([0, 1, 2, 250, 251, 255]),
]);
/** A 16x16 PNG (a blue square with a white stripe), built here so the test carries no binary blob. */
const PNG = (() => {
  const rows: number[] = [];
  for (let y = 0; y < 16; y++) {
    rows.push(0); // filter: none
    for (let x = 0; x < 16; x++) rows.push(...(y > 6 && y < 9 ? [255, 255, 255, 255] : [47, 111, 221, 255]));
  }
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([Buffer.from(type), data])));
    return Buffer.concat([len, Buffer.from(type), data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(16, 0);
  ihdr.writeUInt32BE(16, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8 bits, RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.from(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
})();

let serve: ServeHandle;
let browser: Browser;
let config: string;
const ids = new Map<string, string>();

function mail(headers: Record<string, string>, body: string): Buffer {
  const head = Object.entries({ 'MIME-Version': '1.0', To: 'me@example.org', ...headers })
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n');
  return Buffer.from(`${head}\r\n\r\n${body.replace(/\r?\n/g, '\r\n')}\r\n`, 'utf8');
}

function date(daysAgo: number, hour = 9): string {
  const d = new Date(Date.UTC(2026, 10, 30 - daysAgo, hour, 0, 0));
  return d.toUTCString().replace('GMT', '+0000');
}

const report = mail(
  {
    From: 'Ada Lovelace <ada@example.org>',
    Subject: 'Quarterly report',
    Date: date(0, 11),
    'Message-ID': '<report@example.org>',
    'Content-Type': 'multipart/mixed; boundary="mix"',
  },
  [
    '--mix',
    'Content-Type: multipart/related; boundary="rel"',
    '',
    '--rel',
    'Content-Type: text/html; charset=utf-8',
    '',
    '<html><head><style>h1{color:#2f6fdd;font-family:Georgia,serif}td{padding:4px 12px;border-bottom:1px solid #ddd}</style></head>',
    '<body><h1>Quarterly report</h1><p>The numbers are <b>in</b>. Revenue grew in every region.</p>',
    '<table><tr><td>North</td><td>+12%</td></tr><tr><td>South</td><td>+8%</td></tr></table>',
    '<p><img src="cid:chart@example.org" alt="chart" width="64" height="64"></p>',
    '<p>Details: <a href="https://example.org/report">the full report</a>.</p></body></html>',
    '--rel',
    'Content-Type: image/png',
    'Content-ID: <chart@example.org>',
    'Content-Disposition: inline; filename="chart.png"',
    'Content-Transfer-Encoding: base64',
    '',
    PNG.toString('base64'),
    '--rel--',
    '--mix',
    'Content-Type: application/pdf; name="report.pdf"',
    'Content-Disposition: attachment; filename="report.pdf"',
    'Content-Transfer-Encoding: base64',
    '',
    PDF.toString('base64'),
    '--mix--',
  ].join('\n'),
);

const plain = mail(
  {
    From: 'Grace Hopper <grace@example.net>',
    Subject: 'Notes from the meeting',
    Date: date(1, 15),
    'Message-ID': '<notes@example.net>',
    'Content-Type': 'text/plain; charset=utf-8',
  },
  'Hi,\n\nThe notes are at https://example.net/notes/42 (read them before Friday).\n' +
    'Write to mailto:grace@example.net with questions.\n\n<script>alert(1)</script> stays text.\n',
);

const newsletters = Array.from({ length: 6 }, (_, i) =>
  mail(
    {
      From: `Weekly digest <digest${i}@example.com>`,
      Subject: `Digest #${i + 1}: what happened this week`,
      Date: date(3 + i * 2),
      'Message-ID': `<digest${i}@example.com>`,
      'Content-Type': 'text/plain; charset=utf-8',
    },
    `Issue ${i + 1}. Nothing urgent.`,
  ),
);

const postcards = Array.from({ length: 3 }, (_, i) =>
  mail(
    {
      From: `Linus <linus${i}@example.net>`,
      Subject: `Postcard ${i + 1} from the coast`,
      Date: date(2 + i * 3, 18),
      'Message-ID': `<postcard${i}@example.net>`,
      'Content-Type': 'text/plain; charset=utf-8',
    },
    `Greetings ${i + 1}.`,
  ),
);

beforeAll(async () => {
  const work = lab.createUser('pgw');
  const home = lab.createUser('pgh');
  lab.deliver(work, report);
  for (const n of newsletters) lab.deliver(work, n);
  lab.deliver(home, plain);
  for (const p of postcards) lab.deliver(home, p);

  const table = await freshTable('tributary-page');
  fs.writeFileSync(path.join(dir, 'ca.pem'), lab.ca);
  process.env.PW_PAGE_WORK = work.password;
  process.env.PW_PAGE_HOME = home.password;
  process.env.PW_PAGE_WRONG = 'not-the-password';
  const common = { host: '127.0.0.1', caFile: 'ca.pem', servername: 'localhost' };
  config = path.join(dir, 'config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      store: { mode: 'aws', table, bucket: process.env.TRIBUTARY_TEST_BUCKET },
      sources: [
        { id: 'work', protocol: 'imap', port: lab.info.ports.imaps, tls: 'implicit', user: work.name, secret: { env: 'PW_PAGE_WORK' }, ...common },
        { id: 'home', protocol: 'pop3', port: lab.info.ports.pop3s, tls: 'implicit', user: home.name, secret: { env: 'PW_PAGE_HOME' }, ...common },
        { id: 'old-isp', protocol: 'imap', port: lab.info.ports.imaps, tls: 'implicit', user: home.name, secret: { env: 'PW_PAGE_WRONG' }, ...common },
      ],
    }),
  ); // prettier-ignore
  const sync = await cli(['sync', '--config', config]);
  expect(sync.out).toContain('work: ok, 7 new messages');
  expect(sync.out).toContain('home: ok, 4 new messages');
  expect(sync.out).toMatch(/old-isp: FAILED \[AUTH_FAILED\]/);
  serve = await startServe(config);
  browser = await launchBrowser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await serve?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function openPage(options: Parameters<typeof watchPage>[1] = { allow: [] }): Promise<PageWatch> {
  const watch = await watchPage(browser, { ...options, allow: [serve.origin] });
  await watch.page.goto(serve.startUrl);
  await watch.page.waitForSelector('body[data-ready="1"]');
  await watch.page.waitForSelector('#list li');
  watch.arm();
  return watch;
}

async function rows(
  watch: PageWatch,
): Promise<Array<{ subject: string; from: string; unread: boolean; sources: string }>> {
  return watch.page.$$eval('#list li', (lis) =>
    lis.map((li) => ({
      subject: li.querySelector('.subject')?.textContent ?? '',
      from: li.querySelector('.from')?.textContent ?? '',
      unread: li.classList.contains('unread'),
      sources: [...li.querySelectorAll('.badge')].map((b) => b.textContent).join(','),
    })),
  );
}

async function waitRows(watch: PageWatch, count: number): Promise<void> {
  await watch.page.waitForFunction(
    (n) =>
      document.querySelectorAll('#list li').length === n &&
      !document.getElementById('list')?.hasAttribute('aria-busy'),
    count,
  );
}

async function apiList(
  watch: PageWatch,
  query = '',
): Promise<Array<{ id: string; subject: string; unread: boolean }>> {
  return watch.page.evaluate(async (q) => {
    const res = await fetch(`/api/messages?limit=100${q}`, { credentials: 'same-origin' });
    return ((await res.json()) as { messages: Array<{ id: string; subject: string; unread: boolean }> })
      .messages;
  }, query);
}

async function shown(watch: PageWatch, subject: string): Promise<void> {
  await watch.page.waitForFunction((s) => {
    const v = document.getElementById('view-message');
    return !!v?.dataset.shown && v.querySelector('h1.subject')?.textContent === s && (!v.querySelector('iframe') || v.dataset.loaded === v.dataset.shown);
  }, subject); // prettier-ignore
}

/**
 * Waits for the list view. On a timeout the error says what the page was showing (route, view, focused element,
 * status line, console errors): a keyboard step that did nothing once in CI left no trace otherwise.
 */
async function listShown(watch: PageWatch): Promise<void> {
  try {
    await watch.page.waitForSelector('#view-list:not([hidden])', { timeout: 15_000 });
  } catch (err) {
    const state = await watch.page
      .evaluate(() => ({
        hash: location.hash,
        view: document.body.dataset.view,
        focused: `${document.activeElement?.tagName ?? '-'}#${document.activeElement?.id ?? ''}`,
        status: document.getElementById('status')?.textContent,
        shown: document.getElementById('view-message')?.dataset.shown,
      }))
      .catch((e: unknown) => String(e));
    throw new Error(
      `the list view did not come back: ${JSON.stringify(state)}; console errors ${JSON.stringify(watch.consoleErrors)}; ${String(err)}`,
      { cause: err },
    );
  }
}

function expectClean(watch: PageWatch): void {
  expect(watch.consoleErrors).toEqual([]);
  expect(watch.foreignRequests(serve.origin)).toEqual([]);
  expect(watch.dialogs).toEqual([]);
  expect(watch.canary).toEqual([]);
}

describe('the page, served by tributary serve over synced mail', () => {
  it('serves the page under a strict CSP with no inline script', async () => {
    const res = await fetch(`${serve.origin}/`);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
  });

  it('lists the merged inbox newest first with sender, subject, snippet, date, source badge and unread', async () => {
    const watch = await openPage();
    await waitRows(watch, 11);
    const list = await rows(watch);
    expect(list.map((r) => r.subject)).toEqual([
      'Quarterly report',
      'Notes from the meeting',
      'Postcard 1 from the coast',
      'Digest #1: what happened this week',
      'Postcard 2 from the coast',
      'Digest #2: what happened this week',
      'Digest #3: what happened this week',
      'Postcard 3 from the coast',
      'Digest #4: what happened this week',
      'Digest #5: what happened this week',
      'Digest #6: what happened this week',
    ]);
    expect(list[0]).toEqual({
      subject: 'Quarterly report',
      from: 'Ada Lovelace',
      unread: true,
      sources: 'work',
    });
    expect(list[1]).toMatchObject({ from: 'Grace Hopper', sources: 'home', unread: true });
    await expect(watch.page.locator('#list li').first().locator('.snippet').textContent()).resolves.toContain(
      'The numbers are in',
    );
    await expect(watch.page.locator('#list li').first().locator('.clip').count()).resolves.toBe(1);
    for (const m of await apiList(watch)) ids.set(m.subject, m.id);
    expectClean(watch);
    await watch.context.close();
  });

  it('filters by source and unread, and searches sender and subject', async () => {
    const watch = await openPage();
    await watch.page.selectOption('#filter-source', 'home');
    await waitRows(watch, 4);
    expect((await rows(watch)).every((r) => r.sources === 'home')).toBe(true);
    await watch.page.selectOption('#filter-source', '');
    await waitRows(watch, 11);

    await watch.page.fill('#search', 'postcard');
    await watch.page.press('#search', 'Enter');
    await waitRows(watch, 3);
    expect((await rows(watch)).map((r) => r.subject)).toEqual([
      'Postcard 1 from the coast',
      'Postcard 2 from the coast',
      'Postcard 3 from the coast',
    ]);
    await watch.page.fill('#search', 'grace');
    await watch.page.press('#search', 'Enter');
    await waitRows(watch, 1);
    expect((await rows(watch))[0]!.subject).toBe('Notes from the meeting');
    expect(watch.page.url()).toContain('q=grace');
    await watch.page.fill('#search', '');
    await watch.page.press('#search', 'Enter');
    await waitRows(watch, 11);

    // Read one, then "unread" hides it.
    await watch.page.evaluate(
      (id) =>
        fetch(`/api/messages/${encodeURIComponent(id)}/read`, { method: 'POST', credentials: 'same-origin' }),
      ids.get('Digest #6: what happened this week')!,
    );
    await watch.page.check('#filter-unread');
    await waitRows(watch, 10);
    expect((await rows(watch)).every((r) => r.unread)).toBe(true);
    expect((await rows(watch)).map((r) => r.subject)).not.toContain('Digest #6: what happened this week');
    expectClean(watch);
    await watch.context.close();
  });

  it('reads an HTML message in a sandboxed frame with its inline image, marks it read, and downloads the attachment', async () => {
    const watch = await openPage({ allow: [], acceptDownloads: true });
    await watch.page.click('#list li:has-text("Quarterly report")');
    await shown(watch, 'Quarterly report');
    const frame = watch.page.locator('#view-message iframe');
    await expect(frame.getAttribute('sandbox')).resolves.toBe('allow-popups allow-popups-to-escape-sandbox');
    const srcdoc = (await frame.getAttribute('srcdoc')) ?? '';
    expect(srcdoc).toMatch(
      /^<!doctype html><html><head><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:;/,
    );
    const body = watch.page.frameLocator('#view-message iframe');
    await expect(body.locator('h1').textContent()).resolves.toBe('Quarterly report');
    await expect(body.locator('td').first().textContent()).resolves.toBe('North');
    // The cid: image, fetched from the same message and inlined as a data: URL, decoded by the browser.
    await body.locator('img[alt="chart"]').waitFor();
    const img = body.locator('img[alt="chart"]');
    await expect(img.getAttribute('src')).resolves.toMatch(/^data:image\/png;base64,/);
    await expect(img.evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth)).resolves.toBe(16);
    // Presentational attributes survive the sanitizer (width="64" height="64" on the image).
    await expect(img.boundingBox().then((b) => [b?.width, b?.height])).resolves.toEqual([64, 64]);
    const link = body.locator('a', { hasText: 'the full report' });
    await expect(link.getAttribute('target')).resolves.toBe('_blank');
    await expect(link.getAttribute('rel')).resolves.toBe('noopener noreferrer');
    await expect(watch.page.locator('.remote-bar').count()).resolves.toBe(0);

    // Marked read on open.
    await watch.page.waitForFunction(
      () => !document.querySelector('#list li.unread .subject')?.textContent?.includes('Quarterly'),
    );
    expect((await apiList(watch)).find((m) => m.subject === 'Quarterly report')?.unread).toBe(false);

    // The attachment list has the PDF (the inline image is shown, not listed); the download is the exact bytes.
    const files = await watch.page.locator('.attachments li .file').allTextContents();
    expect(files).toEqual(['report.pdf']);
    const [download] = await Promise.all([
      watch.page.waitForEvent('download'),
      watch.page.click('.attachments button.download'),
    ]);
    expect(download.suggestedFilename()).toBe('report.pdf');
    expect(fs.readFileSync(await download.path())).toEqual(PDF);

    if (SCREENSHOTS) {
      fs.mkdirSync(SHOTS_DIR, { recursive: true });
      await watch.page.screenshot({ path: path.join(SHOTS_DIR, 'message.png') });
    }

    // Mark unread again.
    await watch.page.click('#view-message button.mark-unread');
    await listShown(watch);
    await watch.page.waitForSelector('#list li.unread:has-text("Quarterly report")');
    expect((await apiList(watch)).find((m) => m.subject === 'Quarterly report')?.unread).toBe(true);
    expect(watch.leftPage(watch.page.url())).toEqual([]);
    expectClean(watch);
    await watch.context.close();
  });

  it('reads a plain message: text stays text, http(s) and mailto links are clickable', async () => {
    const watch = await openPage();
    await watch.page.click('#list li:has-text("Notes from the meeting")');
    await shown(watch, 'Notes from the meeting');
    const pre = watch.page.locator('#view-message pre.plain');
    await expect(pre.textContent()).resolves.toContain('<script>alert(1)</script> stays text.');
    const links = await pre
      .locator('a')
      .evaluateAll((as: HTMLAnchorElement[]) =>
        as.map((a) => ({ href: a.getAttribute('href'), text: a.textContent, rel: a.rel, target: a.target })),
      );
    expect(links).toEqual([
      { href: 'https://example.net/notes/42', text: 'https://example.net/notes/42', rel: 'noopener noreferrer', target: '_blank' },
      { href: 'mailto:grace@example.net', text: 'mailto:grace@example.net', rel: 'noopener noreferrer', target: '_blank' },
    ]); // prettier-ignore
    await expect(watch.page.locator('#view-message iframe').count()).resolves.toBe(0);
    await expect(watch.page.locator('#view-message .badge').textContent()).resolves.toBe('home');
    expectClean(watch);
    await watch.context.close();
  });

  it("shows each source's last run, a failing source's error in words, and queues a sync", async () => {
    const watch = await openPage();
    await watch.page.click('#tab-sources');
    await watch.page.waitForSelector('#view-sources article.source');
    const broken = watch.page.locator('article.source[data-source="old-isp"]');
    await expect(broken.getAttribute('class')).resolves.toContain('failing');
    await expect(broken.locator('.outcome').textContent()).resolves.toBe('failed');
    const error = (await broken.locator('.error-text').textContent()) ?? '';
    expect(error).toMatch(/^AUTH_FAILED: .*login refused/i);
    expect(error).not.toContain('not-the-password');
    const ok = watch.page.locator('article.source[data-source="work"]');
    await expect(ok.locator('.outcome').textContent()).resolves.toBe('ok');
    await expect(ok.textContent()).resolves.toContain('7 fetched');
    await broken.locator('button.sync').click();
    await watch.page.waitForFunction(
      () => document.getElementById('status')?.textContent === 'Sync of old-isp queued.',
    );
    expectClean(watch);
    await watch.context.close();
  });

  it('works from the keyboard: j/k, o and Enter, u, Shift+U, # and /', async () => {
    const watch = await openPage();
    await waitRows(watch, 11);
    const selected = () => watch.page.$eval('#list li.selected .subject', (el) => el.textContent);
    await expect(selected()).resolves.toBe('Quarterly report');
    await watch.page.keyboard.press('j');
    await watch.page.keyboard.press('j');
    await expect(selected()).resolves.toBe('Postcard 1 from the coast');
    await watch.page.keyboard.press('k');
    await expect(selected()).resolves.toBe('Notes from the meeting');
    await watch.page.keyboard.press('o');
    await shown(watch, 'Notes from the meeting');
    await watch.page.keyboard.press('j');
    await shown(watch, 'Postcard 1 from the coast');
    await watch.page.keyboard.press('u');
    await listShown(watch);
    await expect(selected()).resolves.toBe('Postcard 1 from the coast');
    await watch.page.keyboard.press('Enter');
    await shown(watch, 'Postcard 1 from the coast');
    await watch.page.keyboard.press('u');
    await listShown(watch);

    // Shift+U toggles read/unread on the selected message (opening it marked it read).
    await watch.page.waitForSelector('#list li.selected:not(.unread)');
    await watch.page.keyboard.press('Shift+U');
    await watch.page.waitForSelector('#list li.selected.unread');
    expect((await apiList(watch)).find((m) => m.subject === 'Postcard 1 from the coast')?.unread).toBe(true);

    // # deletes from the inbox.
    await watch.page.keyboard.press('j');
    await expect(selected()).resolves.toBe('Digest #1: what happened this week');
    await watch.page.keyboard.press('#');
    await waitRows(watch, 10);
    expect((await apiList(watch)).map((m) => m.subject)).not.toContain('Digest #1: what happened this week');

    // / focuses the search box.
    await watch.page.keyboard.press('/');
    await expect(watch.page.evaluate(() => document.activeElement?.id)).resolves.toBe('search');
    await watch.page.keyboard.type('digest');
    await watch.page.keyboard.press('Enter');
    await waitRows(watch, 5);
    expectClean(watch);
    await watch.context.close();
  });

  it('follows a dark system theme', async () => {
    const watch = await openPage({ allow: [], colorScheme: 'dark' });
    const bg = await watch.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(bg).toBe('rgb(21, 23, 27)');
    const light = await openPage({ allow: [], colorScheme: 'light' });
    await expect(light.page.evaluate(() => getComputedStyle(document.body).backgroundColor)).resolves.toBe(
      'rgb(255, 255, 255)',
    );
    expectClean(watch);
    await watch.context.close();
    await light.context.close();
  });

  it('fits a phone screen: no sideways scrolling in the list or a message', async () => {
    const watch = await openPage({ allow: [], viewport: { width: 390, height: 844 }, isMobile: true });
    const overflow = () =>
      watch.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await expect(overflow()).resolves.toBeLessThanOrEqual(0);
    const search = await watch.page.locator('#search').boundingBox();
    expect(search!.width).toBeGreaterThan(300);
    // Rows stack: sender and date on one line, subject and snippet below over the whole width.
    const first = watch.page.locator('#list li').first();
    const from = (await first.locator('.from').boundingBox())!;
    const line = (await first.locator('.line').boundingBox())!;
    expect(line.y).toBeGreaterThanOrEqual(from.y + from.height - 1);
    expect(line.width).toBeGreaterThan(300);
    await watch.page.click('#list li:has-text("Quarterly report")');
    await shown(watch, 'Quarterly report');
    await expect(overflow()).resolves.toBeLessThanOrEqual(0);
    const frame = await watch.page.locator('#view-message iframe').boundingBox();
    expect(frame!.width).toBeLessThanOrEqual(390);
    expect(frame!.height).toBeGreaterThan(300);
    expectClean(watch);
    await watch.context.close();
  });

  // Only defined when asked for (not a skipped test in every other run).
  if (SCREENSHOTS)
    it('writes the inbox screenshot for the README', async () => {
      const watch = await openPage({ allow: [], viewport: { width: 1200, height: 640 } });
      await watch.page.screenshot({ path: path.join(SHOTS_DIR, 'inbox.png') });
      await watch.context.close();
    });
});

/**
 * What `tributary serve` cannot show: signing in with Cognito (authorization code + PKCE) as in AWS, and a search
 * that the API answers in short pages. The fixture server (test/support/page-fixture-server.ts) stands in for the
 * API Lambda; the Cognito hosted domain is answered by the test inside the browser (no network).
 */
describe('the page against the fixture server', () => {
  const cognito = 'https://tributary-test.auth.eu-west-1.amazoncognito.com';

  it('signs in with Cognito (code + PKCE S256), sends Bearer tokens, refreshes on 401, signs in again, signs out', async () => {
    const accessTokens = new Set<string>();
    const fixture = await startPageFixtureServer(sampleFixture(), {
      auth: { mode: 'cognito', domain: cognito, clientId: 'client-1', accessTokens },
    });
    const watch = await watchPage(browser, { allow: [fixture.origin] });
    const calls: string[] = [];
    let challenge = '';
    let refreshToken = 'rt-1';
    let n = 0;
    await watch.context.route(`${cognito}/**`, async (route) => {
      const req = route.request();
      const url = new URL(req.url());
      calls.push(url.pathname);
      const cors = { 'access-control-allow-origin': fixture.origin, 'content-type': 'application/json' };
      if (url.pathname === '/oauth2/authorize') {
        const p = url.searchParams;
        expect([p.get('response_type'), p.get('client_id'), p.get('redirect_uri'), p.get('code_challenge_method')]).toEqual(
          ['code', 'client-1', `${fixture.origin}/`, 'S256'],
        ); // prettier-ignore
        expect(p.get('scope')).toBe('openid email');
        challenge = p.get('code_challenge') ?? '';
        const back = new URL(p.get('redirect_uri')!);
        back.searchParams.set('code', `code-${++n}`);
        back.searchParams.set('state', p.get('state') ?? '');
        return route.fulfill({ status: 302, headers: { location: back.toString() } });
      }
      if (url.pathname === '/oauth2/token' && req.method() === 'POST') {
        const form = new URLSearchParams(req.postData() ?? '');
        if (form.get('grant_type') === 'authorization_code') {
          const verifier = form.get('code_verifier') ?? '';
          const s256 = createHash('sha256').update(verifier).digest('base64url');
          if (
            s256 !== challenge ||
            form.get('client_id') !== 'client-1' ||
            !form.get('code')?.startsWith('code-')
          )
            return route.fulfill({ status: 400, headers: cors, body: '{"error":"invalid_grant"}' });
          const token = `at-${++n}`;
          accessTokens.add(token);
          return route.fulfill({
            status: 200,
            headers: cors,
            body: JSON.stringify({ access_token: token, refresh_token: refreshToken, expires_in: 3600 }),
          });
        }
        if (form.get('grant_type') === 'refresh_token' && form.get('refresh_token') === refreshToken) {
          const token = `at-${++n}`;
          accessTokens.add(token);
          return route.fulfill({
            status: 200,
            headers: cors,
            body: JSON.stringify({ access_token: token, expires_in: 3600 }),
          });
        }
        return route.fulfill({ status: 400, headers: cors, body: '{"error":"invalid_grant"}' });
      }
      if (url.pathname === '/logout') {
        return route.fulfill({ status: 302, headers: { location: url.searchParams.get('logout_uri')! } });
      }
      return route.fulfill({ status: 404, body: '' });
    });
    const page = watch.page;
    const listed = (count = 10) =>
      page.waitForFunction((n) => document.querySelectorAll('#list li').length === n, count);
    try {
      await page.goto(`${fixture.origin}/`);
      await listed();
      expect(calls).toEqual(['/oauth2/authorize', '/oauth2/token']);
      expect(page.url()).not.toContain('code=');
      const stored = await page.evaluate(() => [
        sessionStorage.getItem('tributary.tokens'),
        localStorage.length,
      ]);
      expect(JSON.parse(stored[0] as string)).toMatchObject({ accessToken: 'at-2', refreshToken: 'rt-1' });
      expect(stored[1]).toBe(0);
      await expect(page.locator('#sign-out').isVisible()).resolves.toBe(true);

      // The access token is refused: the page refreshes it and retries.
      accessTokens.clear();
      await page.click('#tab-sources');
      await page.waitForSelector('article.source');
      expect(calls).toEqual(['/oauth2/authorize', '/oauth2/token', '/oauth2/token']);

      // Refresh refused too: the page signs in again and comes back where it was.
      accessTokens.clear();
      refreshToken = 'rt-2';
      await page.click('#tab-inbox');
      await page.check('#filter-unread');
      await listed(2);
      expect(calls.slice(3)).toEqual(['/oauth2/token', '/oauth2/authorize', '/oauth2/token']);
      expect(page.url()).toBe(`${fixture.origin}/#/?unread=1`);

      // Sign out: Cognito's logout, back to the page, signed in afresh.
      await page.click('#sign-out');
      await page.waitForFunction(() => document.body.dataset.ready === '1');
      await listed();
      expect(calls.slice(6)).toEqual(['/logout', '/oauth2/authorize', '/oauth2/token']);
      // The refused token (401) and refresh (400) show as failed loads, nothing else.
      expect(watch.consoleErrors.filter((e) => !/status of 40[01]/.test(e))).toEqual([]);
      expect(watch.foreignRequests(fixture.origin).every((u) => u.startsWith(cognito))).toBe(true);
    } finally {
      await watch.context.close();
      await fixture.close();
    }
  });

  it('carries the same assets pre-built (the Lambda bundle) as built in memory', async () => {
    const built = await buildPageAssets();
    const out = path.join(dir, 'page-assets');
    await writePageAssets(out, built);
    const loaded = await loadPageAssets(out);
    expect([...loaded.keys()].sort()).toEqual([
      '/',
      '/assets/app.js',
      '/assets/icon.svg',
      '/assets/style.css',
      '/index.html',
    ]);
    for (const [urlPath, asset] of built) expect(loaded.get(urlPath)).toEqual(asset);
    expect(loaded.get('/assets/app.js')!.contentType).toBe('text/javascript; charset=utf-8');
    // One module, DOMPurify inside, minified.
    const js = loaded.get('/assets/app.js')!.body.toString();
    expect(js).toContain('DOMPurify');
    expect(js.split('\n').length).toBeLessThan(20);
  });

  it('keeps asking while a search comes back short with a cursor', async () => {
    const fixture = await startPageFixtureServer(sampleFixture(), { searchExamines: 3 });
    const watch = await watchPage(browser, { allow: [fixture.origin] });
    try {
      await watch.page.goto(fixture.startUrl);
      await watch.page.waitForSelector('#list li');
      await watch.page.fill('#search', 'sender 7');
      await watch.page.press('#search', 'Enter');
      await watch.page.waitForFunction(
        () => document.querySelector('#list li .subject')?.textContent === 'Newsletter 7',
      );
      await expect(watch.page.locator('#list li').count()).resolves.toBe(1);
      expect(fixture.log.filter((l) => l === 'GET /api/messages').length).toBeGreaterThanOrEqual(5);
      expect(watch.consoleErrors).toEqual([]);
    } finally {
      await watch.context.close();
      await fixture.close();
    }
  });

  /** A failed load of an answer the test provoked (a refused login is 200; a bad field is 400). */
  const unexpected = (watch: PageWatch) => watch.consoleErrors.filter((e) => !/status of 400/.test(e));

  it('first run: with no sources, the page is the form to add one; it tests the connection, shows why not, and adds', async () => {
    const data = { messages: [], sources: [] };
    const setup = fakeSetup(data);
    const fixture = await startPageFixtureServer(data, { setup });
    const watch = await watchPage(browser, { allow: [fixture.origin] });
    const page = watch.page;
    const result = () => page.locator('#setup-result').innerText();
    const value = (id: string) => page.locator(id).inputValue();
    try {
      await page.goto(fixture.startUrl);
      await page.waitForSelector('body[data-ready="1"]');
      expect(new URL(page.url()).hash).toBe('#/setup');
      await expect(page.locator('#view-setup h1').textContent()).resolves.toBe('Add your first mail account');
      await expect(page.locator('#view-list').isHidden()).resolves.toBe(true);
      await expect(page.locator('#view-setup a.cancel').isHidden()).resolves.toBe(true);

      // Every control has a label; the port follows protocol and TLS until typed in; folders are IMAP's.
      const unlabelled = await page.$$eval('#view-setup input, #view-setup select', (els) =>
        els.filter((el) => !(el as HTMLInputElement).labels?.length && !el.getAttribute('aria-label')).map((el) => el.id),
      ); // prettier-ignore
      expect(unlabelled).toEqual([]);
      await expect(value('#setup-port')).resolves.toBe('993');
      await page.selectOption('#setup-protocol', 'pop3');
      await expect(value('#setup-port')).resolves.toBe('995');
      await expect(page.locator('#setup-folders').isHidden()).resolves.toBe(true);
      await page.selectOption('#setup-tls', 'starttls');
      await expect(value('#setup-port')).resolves.toBe('110');
      await page.selectOption('#setup-protocol', 'imap');
      await expect(value('#setup-port')).resolves.toBe('143');
      await expect(value('#setup-folders')).resolves.toBe('INBOX');
      await page.selectOption('#setup-tls', 'implicit');
      await expect(value('#setup-port')).resolves.toBe('993');
      await expect(page.locator('#setup-retention-keep').isChecked()).resolves.toBe(true);
      await expect(page.locator('#setup-days').isDisabled()).resolves.toBe(true);

      // "None" is for this machine only, said beside the choice.
      await page.fill('#setup-host', 'mail.example.com');
      await page.selectOption('#setup-tls', 'none');
      await expect(page.locator('#setup-tls-error').innerText()).resolves.toMatch(
        /only allowed for 127\.0\.0\.1 or localhost/,
      );
      await page.click('#setup-test');
      expect(setup.calls).toEqual([]);
      await page.selectOption('#setup-tls', 'implicit');
      await expect(page.locator('#setup-tls-error').isHidden()).resolves.toBe(true);

      // What the server refuses comes back beside its field.
      await page.fill('#setup-host', 'imaps://mail.example.com');
      await page.fill('#setup-user', 'ann');
      await page.fill('#setup-password', 'wrong');
      await page.click('#setup-test');
      await page.waitForSelector('#setup-host-error:not([hidden])');
      await expect(page.locator('#setup-host-error').innerText()).resolves.toMatch(
        /host name or an IP address alone/,
      );
      await expect(page.locator('#setup-host').getAttribute('aria-invalid')).resolves.toBe('true');
      await expect(page.evaluate(() => document.activeElement?.id)).resolves.toBe('setup-host');

      // A refused login: the code and message, and the password marked.
      await page.fill('#setup-host', 'mail.example.com');
      await expect(page.locator('#setup-host-error').isHidden()).resolves.toBe(true);
      await page.click('#setup-test');
      await page.waitForSelector('#setup-result[data-kind="error"]');
      await expect(result()).resolves.toMatch(
        /^AUTH_FAILED: The server mail\.example\.com refused the login for ann/,
      );
      await expect(page.locator('#setup-password').getAttribute('aria-invalid')).resolves.toBe('true');

      // The right password: the lines of "sources test".
      await page.fill('#setup-password', FAKE_PASSWORD);
      await page.click('#setup-test');
      await page.waitForSelector('#setup-result[data-kind="ok"]');
      const lines = await page.locator('#setup-result li').allInnerTexts();
      expect(lines[0]).toBe('ann-mail-example-com: imap mail.example.com:993 (implicit)');
      expect(lines).toContain('login: ok as ann');
      expect(lines.some((l) => l.startsWith('TLS: TLSv1.3'))).toBe(true);
      expect(lines).toContain('INBOX: 42 messages (UIDVALIDITY 1, UIDNEXT 43)');
      await expect(result()).resolves.toContain('Connection OK');

      // Add, from the keyboard: delete after 14 days, a name of its own, Enter.
      await page.check('#setup-retention-delete-after-days');
      await page.fill('#setup-days', '14');
      await page.fill('#setup-id', 'work-mail');
      await page.focus('#setup-password');
      await page.keyboard.press('Enter');
      await page.waitForSelector('article.source[data-source="work-mail"]');
      expect(new URL(page.url()).hash).toBe('#/sources');
      expect(setup.calls.map((c) => c.what)).toEqual(['test', 'test', 'add']);
      expect(setup.calls[2]!.input).toEqual({
        protocol: 'imap',
        host: 'mail.example.com',
        port: 993,
        tls: 'implicit',
        user: 'ann',
        password: FAKE_PASSWORD,
        folders: ['INBOX'],
        retention: { mode: 'delete-after-days', days: 14 },
        id: 'work-mail',
      });
      await expect(page.locator('#status').innerText()).resolves.toContain('Added work-mail');
      await expect(page.locator('#filter-source option[value="work-mail"]').count()).resolves.toBe(1);

      // Later: "Add a source" from the sources view, an empty form, no first-run greeting.
      await page.click('#view-sources a.add-source');
      await page.waitForSelector('#view-setup:not([hidden])');
      await expect(page.locator('#view-setup h1').textContent()).resolves.toBe('Add a source');
      await expect(value('#setup-password')).resolves.toBe('');
      await expect(value('#setup-id')).resolves.toBe('');
      await expect(page.locator('#setup-retention-keep').isChecked()).resolves.toBe(true);
      await expect(page.locator('#setup-result').innerText()).resolves.toBe('');
      await expect(page.locator('#view-setup a.cancel').isVisible()).resolves.toBe(true);
      // The password went out in request bodies only, never into the page.
      expect(fixture.bodies.filter((b) => b.includes(FAKE_PASSWORD))).toHaveLength(2);
      await expect(page.evaluate(() => document.documentElement.outerHTML)).resolves.not.toContain(
        FAKE_PASSWORD,
      );
      expect(unexpected(watch)).toEqual([]);
      expect(watch.foreignRequests(fixture.origin)).toEqual([]);
    } finally {
      await watch.context.close();
      await fixture.close();
    }
  });

  it('shows no form without the setup capability (AWS), nor once there are sources', async () => {
    const empty = await startPageFixtureServer({ messages: [], sources: [] });
    const withSources = await startPageFixtureServer(sampleFixture(), { setup: fakeSetup(sampleFixture()) });
    const watch = await watchPage(browser, { allow: [empty.origin, withSources.origin] });
    const page = watch.page;
    try {
      await page.goto(empty.startUrl);
      await page.waitForSelector('body[data-ready="1"]');
      await expect(page.locator('#view-list').isVisible()).resolves.toBe(true);
      await expect(page.locator('#view-setup').isHidden()).resolves.toBe(true);
      await page.click('#tab-sources');
      await page.waitForSelector('#view-sources h1');
      await expect(page.locator('#view-sources a.add-source').count()).resolves.toBe(0);
      await page.goto(`${empty.origin}/#/setup`);
      await page.waitForSelector('#view-setup:not([hidden]) h1');
      await expect(page.locator('#view-setup form').count()).resolves.toBe(0);
      await expect(page.locator('#view-setup').innerText()).resolves.toContain('tributary sources add');
      expect(empty.log.filter((l) => l.startsWith('POST'))).toEqual([]);

      await page.goto(withSources.startUrl);
      await page.waitForSelector('#list li');
      expect(new URL(page.url()).hash).toBe('');
      await page.click('#tab-sources');
      await page.waitForSelector('#view-sources a.add-source');
      await expect(page.locator('#view-sources a.add-source').isVisible()).resolves.toBe(true);
      expect(watch.consoleErrors).toEqual([]);
    } finally {
      await watch.context.close();
      await empty.close();
      await withSources.close();
    }
  });

  it('the form fits a phone and follows the dark theme', async () => {
    const data = { messages: [], sources: [] };
    const fixture = await startPageFixtureServer(data, { setup: fakeSetup(data) });
    const watch = await watchPage(browser, {
      allow: [fixture.origin],
      viewport: { width: 390, height: 844 },
      isMobile: true,
      colorScheme: 'dark',
    });
    const page = watch.page;
    try {
      await page.goto(fixture.startUrl);
      await page.waitForSelector('#view-setup form');
      await expect(
        page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth),
      ).resolves.toBeLessThanOrEqual(0);
      const host = (await page.locator('#setup-host').boundingBox())!;
      expect(host.width).toBeGreaterThan(300);
      const colors = await page.evaluate(() => {
        const input = getComputedStyle(document.getElementById('setup-host')!);
        return [getComputedStyle(document.body).backgroundColor, input.backgroundColor, input.color];
      });
      expect(colors).toEqual(['rgb(21, 23, 27)', 'rgb(21, 23, 27)', 'rgb(230, 232, 236)']);
      expect(watch.consoleErrors).toEqual([]);
    } finally {
      await watch.context.close();
      await fixture.close();
    }
  });

  it('shows the progress of a running sync and asks again every ~2 s until it ends', async () => {
    const MB = 1024 * 1024;
    const view = (fetched: number, etaSeconds: number): SyncProgressView => ({
      sourceId: 'work-imap',
      startedAt: Date.now() - 10_000,
      fetched,
      fetchedBytes: (fetched / 10) * 1.5 * MB,
      planned: 100,
      bytesPerSecond: 0.5 * MB,
      etaSeconds,
    });
    let running: SyncProgressView[] = [view(10, 130)];
    const asked: number[] = [];
    const fixture = await startPageFixtureServer(sampleFixture(), {
      progress: () => {
        asked.push(Date.now());
        return running;
      },
    });
    const watch = await watchPage(browser, { allow: [fixture.origin] });
    const page = watch.page;
    const card = page.locator('article.source[data-source="work-imap"]');
    const text = () => card.locator('.progress-text').innerText();
    try {
      await page.goto(fixture.startUrl);
      await page.waitForSelector('#list li');
      await page.click('#tab-sources');
      await page.waitForSelector('article.source[data-source="work-imap"] .progress');
      await expect(text()).resolves.toBe(
        'Syncing: 10 of 100 messages · 1.5 MB · 512 KB/s · about 2 min left',
      );
      await expect(card.locator('[role="progressbar"]').getAttribute('aria-valuenow')).resolves.toBe('10');
      await expect(card.locator('.pill.live').textContent()).resolves.toBe('syncing');
      await expect(page.locator('article.source[data-source="home-pop"] .progress').count()).resolves.toBe(0);

      // It moves on: the page shows the numbers of the next poll, about 2 s after the last.
      const before = asked.length;
      running = [view(20, 40)];
      await page.waitForFunction(() =>
        document.querySelector('article.source[data-source="work-imap"] .progress-text')?.textContent?.startsWith('Syncing: 20 of 100'),
      ); // prettier-ignore
      await expect(text()).resolves.toBe(
        'Syncing: 20 of 100 messages · 3.0 MB · 512 KB/s · less than a minute left',
      );
      const gap = asked[before]! - asked[before - 1]!;
      expect(gap).toBeGreaterThan(1500);
      expect(gap).toBeLessThan(3500);

      // The sync ends: the progress goes, and so does the polling.
      running = [];
      await page.waitForSelector('article.source[data-source="work-imap"]:not(.syncing)', {
        timeout: 10_000,
      });
      await expect(card.locator('.progress').count()).resolves.toBe(0);
      const after = asked.length;
      await new Promise((r) => setTimeout(r, 4500));
      expect(asked.length).toBe(after);

      // "Sync now" looks again a couple of times (the sync may take a moment to start), then stops.
      await card.locator('button.sync').click();
      await page.waitForFunction(
        () => document.getElementById('status')?.textContent === 'Sync of work-imap queued.',
      );
      await new Promise((r) => setTimeout(r, 7000));
      expect(asked.length - after).toBe(2);
      expect(watch.consoleErrors).toEqual([]);
    } finally {
      await watch.context.close();
      await fixture.close();
    }
  });
});
