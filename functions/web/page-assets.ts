/**
 * The web page's static assets (issue #15): one HTML file, one stylesheet and one script, served by the same app
 * in the API Lambda and under `tributary serve`. On one machine they are built in memory at start-up
 * (`buildPageAssets`: esbuild bundles `page/app.ts` with DOMPurify); the Lambda bundle carries them pre-built in a
 * folder beside the handler (`writePageAssets` at bundling time, `loadPageAssets` at cold start), because esbuild
 * is not in the Lambda.
 *
 * Every asset is served with `pageHeaders()`: a CSP that allows no inline script and no remote load from the page.
 */
import fs from 'node:fs';
import path from 'node:path';

export type PageAssets = Map<string, { body: Buffer; contentType: string }>;

/** The folder name the Lambda bundle uses for pre-built assets, beside the handler. */
export const PAGE_ASSETS_DIR = 'page-assets';

const PAGE_DIR = path.join(__dirname, 'page');
const MANIFEST = 'manifest.json';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** The files copied as they are, and the URL path each is served at. */
const STATIC_FILES: Array<{ file: string; urlPath: string }> = [
  { file: 'index.html', urlPath: '/index.html' },
  { file: 'style.css', urlPath: '/assets/style.css' },
  { file: 'icon.svg', urlPath: '/assets/icon.svg' },
];

function typeOf(file: string): string {
  return TYPES[path.extname(file)] ?? 'application/octet-stream';
}

/**
 * Builds the page in memory: the bundled, minified ES module at `/assets/app.js`, the HTML at `/` and
 * `/index.html`, the stylesheet and icon under `/assets/`. Needs esbuild (a devDependency): on one machine and
 * at CDK bundling time only.
 */
export async function buildPageAssets(): Promise<PageAssets> {
  // Loaded lazily so that code which only loads pre-built assets never needs esbuild.
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: [path.join(PAGE_DIR, 'app.ts')],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
    write: false,
    outfile: 'app.js',
    legalComments: 'none',
    sourcemap: false,
    logLevel: 'silent',
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'));
  if (!js) throw new Error('esbuild produced no app.js for the page');
  const assets: PageAssets = new Map();
  for (const { file, urlPath } of STATIC_FILES) {
    assets.set(urlPath, {
      body: await fs.promises.readFile(path.join(PAGE_DIR, file)),
      contentType: typeOf(file),
    });
  }
  assets.set('/assets/app.js', { body: Buffer.from(js.contents), contentType: typeOf('app.js') });
  const index = assets.get('/index.html');
  if (index) assets.set('/', index);
  return assets;
}

/** Writes built assets to `dir` (created), with a manifest mapping URL paths to files and types. */
export async function writePageAssets(dir: string, assets?: PageAssets): Promise<void> {
  const built = assets ?? (await buildPageAssets());
  await fs.promises.mkdir(dir, { recursive: true });
  const manifest: Record<string, { file: string; contentType: string }> = {};
  for (const [urlPath, asset] of built) {
    if (urlPath === '/') continue; // the same bytes as /index.html
    const file = urlPath.replace(/^\/+/, '').replace(/\//g, '__');
    await fs.promises.writeFile(path.join(dir, file), asset.body);
    manifest[urlPath] = { file, contentType: asset.contentType };
  }
  await fs.promises.writeFile(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2));
}

/** Reads assets written by `writePageAssets`. */
export async function loadPageAssets(dir: string): Promise<PageAssets> {
  const manifest = JSON.parse(await fs.promises.readFile(path.join(dir, MANIFEST), 'utf8')) as Record<
    string,
    { file: string; contentType: string }
  >;
  const assets: PageAssets = new Map();
  for (const [urlPath, { file, contentType }] of Object.entries(manifest)) {
    if (file.includes('/') || file.includes('\\') || file.startsWith('.'))
      throw new Error(`page asset manifest names an unexpected file: ${file}`);
    assets.set(urlPath, { body: await fs.promises.readFile(path.join(dir, file)), contentType });
  }
  const index = assets.get('/index.html');
  if (index) assets.set('/', index);
  return assets;
}

export interface PageHeaderOptions {
  /**
   * Extra origins the page may call besides its own: the Cognito domain when it is a custom domain (the
   * `*.amazoncognito.com` hosted domains are always allowed).
   */
  connectOrigins?: string[];
}

/**
 * The security headers of every page asset (and fine on `/config.json` too).
 *
 * Why the CSP reads as it does:
 * - `script-src 'self'`: only the bundled `/assets/app.js`; no inline script, no eval, no inline handlers.
 * - The message is shown in an `<iframe sandbox srcdoc>`. A srcdoc document inherits this policy (CSP3 policy
 *   container) and adds its own `<meta>` policy; both apply. So `style-src` allows `'unsafe-inline'` (mail is
 *   styled inline; the page itself never inserts markup) and `img-src` allows `http:`/`https:` (only used by a
 *   message whose reader clicked "show remote content": the frame's own meta policy is `img-src data:` until
 *   then, and the sanitizer strips remote URLs as well).
 * - `connect-src`: the API on this origin and Cognito's token endpoint.
 * - `frame-ancestors 'none'`, `base-uri 'none'`, `form-action 'none'`, `object-src 'none'`.
 */
export function pageHeaders(options: PageHeaderOptions = {}): Record<string, string> {
  const connect = ["'self'", 'https://*.amazoncognito.com', ...(options.connectOrigins ?? [])];
  const csp = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: http: https:",
    "font-src 'self' data:",
    `connect-src ${connect.join(' ')}`,
    "frame-src 'self'",
    "child-src 'self'",
    "worker-src 'none'",
    "manifest-src 'none'",
    "media-src 'none'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return {
    'Content-Security-Policy': csp,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Permissions-Policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()',
    'Cache-Control': 'no-cache',
  };
}
