/**
 * Showing a message safely (issue #15, docs/web.md "The page"). Four layers, each enough against script:
 *
 * 1. DOMPurify with a mail allowlist: no script, no SVG/MathML, no forms, frames, objects, `<base>`, `<meta>`,
 *    `<link>`; URLs only http(s)/mailto on links and http(s)/cid/raster data: on images; remote loads (images,
 *    CSS `url()`, `@import`, `image-set()`) removed until the reader asks for them for this message.
 * 2. The result goes into a fresh document whose first head element is a CSP meta: no script, inline style
 *    only, images from data: (plus http(s) once remote content is shown), nothing else.
 * 3. That document is the `srcdoc` of an `<iframe sandbox>` without allow-scripts and without allow-same-origin:
 *    an opaque origin that can run nothing, reach nothing of the page, navigate nothing but a new tab.
 * 4. The page's own CSP (page-assets.ts), inherited by the srcdoc document.
 *
 * Plain text is shown with text nodes; only http(s) and mailto links are made clickable.
 */
import DOMPurify from 'dompurify';
import type { Config } from 'dompurify';

/** Tags kept from mail HTML: layout and text, tables, images. Everything else goes (its text stays). */
const ALLOWED_TAGS = [
  'a', 'abbr', 'acronym', 'address', 'article', 'aside', 'b', 'bdi', 'bdo', 'big', 'blockquote', 'br',
  'caption', 'center', 'cite', 'code', 'col', 'colgroup', 'dd', 'del', 'details', 'dfn', 'div', 'dl', 'dt',
  'em', 'figcaption', 'figure', 'font', 'footer', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'header', 'hr', 'i',
  'img', 'ins', 'kbd', 'li', 'main', 'mark', 'nav', 'ol', 'p', 'pre', 'q', 's', 'samp', 'section', 'small',
  'span', 'strike', 'strong', 'style', 'sub', 'summary', 'sup', 'table', 'tbody', 'td', 'tfoot', 'th',
  'thead', 'time', 'tr', 'tt', 'u', 'ul', 'var', 'wbr',
]; // prettier-ignore

/** Attributes kept: presentation only. No id/name (clobbering), no event handlers, no URL but href/src. */
const ALLOWED_ATTR = [
  'align', 'alt', 'bgcolor', 'border', 'cellpadding', 'cellspacing', 'class', 'clear', 'color', 'cols',
  'colspan', 'dir', 'face', 'headers', 'height', 'href', 'hspace', 'lang', 'noshade', 'nowrap', 'reversed',
  'role', 'rowspan', 'rules', 'scope', 'size', 'span', 'src', 'start', 'style', 'summary', 'title', 'type',
  'valign', 'vspace', 'width', 'datetime', 'open', 'abbr',
]; // prettier-ignore

/** Every kept attribute but the two URL ones: their values are not URLs and are not checked as such. */
const URI_SAFE_ATTR = ALLOWED_ATTR.filter((a) => a !== 'href' && a !== 'src');

/** Whose content goes with them (not kept as text), on top of DOMPurify's list (script, style, svg, math, ...). */
const ADD_FORBID_CONTENTS = [
  'iframe', 'frame', 'frameset', 'object', 'embed', 'applet', 'textarea', 'select', 'option', 'button',
  'canvas', 'noscript', 'noembed', 'noframes', 'template', 'xmp', 'plaintext',
]; // prettier-ignore

const RASTER_DATA_URL = /^data:image\/(?:png|gif|jpe?g|webp);base64,[a-z0-9+/=\s]*$/i;

export interface RenderOptions {
  /** Remote images (http/https) allowed: the reader asked, for this message. */
  allowRemote: boolean;
  /** Content-ID (lowercase, no brackets) -> data: URL of the inline image. */
  inline: Map<string, string>;
}

export interface Rendered {
  /** The whole frame document, CSP meta first. */
  srcdoc: string;
  /** Remote loads removed (images, CSS url(), @import): > 0 means "show remote content" would change something. */
  blockedRemote: number;
  /** `cid:` references with no inline image to show. */
  missingInline: number;
}

/** The frame's own policy: inline style only, images from data: (and http(s) once asked). */
export function frameCsp(allowRemote: boolean): string {
  return [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    `img-src data:${allowRemote ? ' http: https:' : ''}`,
    "font-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
}

/** `cid:` references in mail HTML (lowercase, URL-decoded), to fetch before rendering. */
export function cidReferences(html: string): string[] {
  const found = new Set<string>();
  for (const m of html.matchAll(/cid:([^\s"'<>()\\]+)/gi)) found.add(normalizeCid(m[1] ?? ''));
  found.delete('');
  return [...found];
}

export function normalizeCid(cid: string): string {
  let v = cid.trim().replace(/^<|>$/g, '');
  try {
    v = decodeURIComponent(v);
  } catch {
    /* keep as it is */
  }
  return v.toLowerCase();
}

function decodeCssEscapes(css: string): string {
  return css
    .replace(/\\([0-9a-f]{1,6})[ \t\n\r\f]?/gi, (_m, hex: string) => {
      const code = parseInt(hex, 16);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : '\ufffd';
    })
    .replace(/\\([^\n0-9a-f])/gi, '$1');
}

/**
 * Neutralises CSS from mail: comments and escapes undone first (so `u\72l(` is seen as `url(`), then `@import`,
 * legacy script hooks (`expression()`, `behavior`, `-moz-binding`, `javascript:`) and, unless remote content is
 * allowed, every `url()`/`image-set()` that is not a raster data: URL. Counts what it removed.
 */
export function cleanCss(input: string, allowRemote: boolean): { css: string; blocked: number } {
  let blocked = 0;
  let css = decodeCssEscapes(input.replace(/\/\*[\s\S]*?(?:\*\/|$)/g, ' '));
  css = css.replace(/</g, ' '); // no markup can ever be spelled inside a <style> we emit
  css = css.replace(/@import\b[^;{}]*;?/gi, () => {
    blocked++;
    return '';
  });
  css = css.replace(
    /expression\s*\(|behaviou?r\s*:|-moz-binding\s*:|javascript\s*:|vbscript\s*:/gi,
    'x-blocked(',
  );
  css = css.replace(/(?:-webkit-)?image-set\s*\([^)]*(?:\([^)]*\)[^)]*)*\)/gi, (m) => {
    if (allowRemote && !/url\s*\(\s*['"]?\s*(?!https?:|data:)/i.test(m)) return m;
    blocked++;
    return 'none';
  });
  css = css.replace(/url\s*\(\s*(['"]?)([^'")]*)\1\s*\)/gi, (m, _q: string, url: string) => {
    const u = url.trim();
    if (RASTER_DATA_URL.test(u)) return m;
    if (allowRemote && /^https?:\/\//i.test(u)) return `url("${u.replace(/["\\\n\r]/g, '')}")`;
    if (/^https?:|^\/\//i.test(u)) blocked++;
    return 'none';
  });
  // A url( that the pattern above could not read (unbalanced, odd quoting): drop it rather than guess.
  css = css.replace(/url\s*\((?!"[^"]*"\))/gi, () => {
    blocked++;
    return 'x-blocked(';
  });
  return { css, blocked };
}

const purifier = DOMPurify(window);

/** Sanitizes mail HTML into the frame document. */
export function renderHtml(html: string, options: RenderOptions): Rendered {
  let blockedRemote = 0;
  let missingInline = 0;
  const config: Config = {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ADD_FORBID_CONTENTS,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: true,
    ALLOW_UNKNOWN_PROTOCOLS: false,
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|cid:)/i,
    // DOMPurify checks the value of every attribute not "URI-safe" against ALLOWED_URI_REGEXP: without this,
    // width="40" or bgcolor="#fff" would fail the strict pattern above and go. Only href and src hold URLs here.
    ADD_URI_SAFE_ATTR: URI_SAFE_ATTR,
    SAFE_FOR_TEMPLATES: false,
    SANITIZE_DOM: true,
    SANITIZE_NAMED_PROPS: true,
    KEEP_CONTENT: true,
    FORCE_BODY: true,
  };
  purifier.removeAllHooks();
  purifier.addHook('uponSanitizeElement', (node, data) => {
    if (data.tagName === 'style' && node.textContent) {
      const cleaned = cleanCss(node.textContent, options.allowRemote);
      blockedRemote += cleaned.blocked;
      node.textContent = cleaned.css;
    }
  });
  purifier.addHook('afterSanitizeAttributes', (node) => {
    const el = node;
    const style = el.getAttribute('style');
    if (style !== null) {
      const cleaned = cleanCss(style, options.allowRemote);
      blockedRemote += cleaned.blocked;
      el.setAttribute('style', cleaned.css);
    }
    const tag = el.tagName.toLowerCase();
    for (const attr of [...el.attributes]) {
      const name = attr.name.toLowerCase();
      // href on links and src on images are the only URLs left; anything else URL-shaped goes.
      if ((name === 'href' && tag !== 'a') || (name === 'src' && tag !== 'img'))
        el.removeAttribute(attr.name);
    }
    if (tag === 'a') {
      const href = el.getAttribute('href');
      if (href !== null && !safeLink(href)) el.removeAttribute('href');
      if (el.hasAttribute('href')) {
        el.setAttribute('target', '_blank');
        el.setAttribute('rel', 'noopener noreferrer');
        el.setAttribute('referrerpolicy', 'no-referrer');
      }
    }
    if (tag === 'img') {
      const src = (el.getAttribute('src') ?? '').trim();
      el.removeAttribute('src');
      if (/^cid:/i.test(src)) {
        const data = options.inline.get(normalizeCid(src.slice(4)));
        if (data) el.setAttribute('src', data);
        else missingInline++;
      } else if (RASTER_DATA_URL.test(src)) {
        el.setAttribute('src', src);
      } else if (/^https?:\/\//i.test(src)) {
        if (options.allowRemote) {
          el.setAttribute('src', src);
          el.setAttribute('referrerpolicy', 'no-referrer');
        } else {
          blockedRemote++;
        }
      }
      el.setAttribute('loading', 'lazy');
    }
  });
  const body = purifier.sanitize(html, config);
  purifier.removeAllHooks();
  const head =
    `<meta http-equiv="Content-Security-Policy" content="${frameCsp(options.allowRemote)}">` +
    '<meta charset="utf-8"><meta name="referrer" content="no-referrer"><meta name="color-scheme" content="light">' +
    '<style>html{background:#fff;color:#1b1b1b}body{margin:0;padding:16px;font:15px/1.5 system-ui,sans-serif;' +
    'overflow-wrap:anywhere}img{max-width:100%;height:auto}table{max-width:100%}pre{white-space:pre-wrap}</style>';
  return {
    srcdoc: `<!doctype html><html><head>${head}</head><body>${body}</body></html>`,
    blockedRemote,
    missingInline,
  };
}

function safeLink(href: string): boolean {
  try {
    const url = new URL(href);
    return url.protocol === 'http:' || url.protocol === 'https:' || url.protocol === 'mailto:';
  } catch {
    return false;
  }
}

const LINK = /\b(?:https?:\/\/|mailto:)[^\s<>"'`]+/gi;

/** Plain text as text nodes, with http(s) and mailto links made clickable (new tab, no opener, no referrer). */
export function renderText(text: string, into: HTMLElement): void {
  let last = 0;
  for (const m of text.matchAll(LINK)) {
    let url = m[0];
    // Trailing punctuation ends a sentence, not the link (a closing parenthesis only when unbalanced).
    while (/[.,;:!?'"\]}>]$/.test(url) || (url.endsWith(')') && count(url, '(') < count(url, ')'))) {
      url = url.slice(0, -1);
    }
    const start = m.index;
    if (start > last) into.append(document.createTextNode(text.slice(last, start)));
    if (safeLink(url)) {
      const a = document.createElement('a');
      a.href = url;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.referrerPolicy = 'no-referrer';
      a.textContent = url;
      into.append(a);
    } else {
      into.append(document.createTextNode(url));
    }
    last = start + url.length;
  }
  if (last < text.length) into.append(document.createTextNode(text.slice(last)));
}

function count(s: string, ch: string): number {
  return s.split(ch).length - 1;
}
