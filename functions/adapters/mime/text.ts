/**
 * Text helpers for the metadata a reader sees: HTML to text for the snippet, entity decoding, display-safe
 * strings. All of them run in time linear in their (bounded) input: no backtracking regular expressions.
 */

/** HTML 4 Latin-1 entity names, in code point order from U+00A0. */
const LATIN1_ENTITIES =
  'nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 ' +
  'acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc Atilde Auml ' +
  'Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde ' +
  'Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig agrave aacute acirc atilde auml aring aelig ' +
  'ccedil egrave eacute ecirc euml igrave iacute icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide ' +
  'oslash ugrave uacute ucirc uuml yacute thorn yuml';

const OTHER_ENTITIES: Record<string, number> = {
  amp: 0x26,
  lt: 0x3c,
  gt: 0x3e,
  quot: 0x22,
  apos: 0x27,
  OElig: 0x152,
  oelig: 0x153,
  Scaron: 0x160,
  scaron: 0x161,
  Yuml: 0x178,
  fnof: 0x192,
  circ: 0x2c6,
  tilde: 0x2dc,
  ensp: 0x2002,
  emsp: 0x2003,
  thinsp: 0x2009,
  zwnj: 0x200c,
  zwj: 0x200d,
  lrm: 0x200e,
  rlm: 0x200f,
  ndash: 0x2013,
  mdash: 0x2014,
  lsquo: 0x2018,
  rsquo: 0x2019,
  sbquo: 0x201a,
  ldquo: 0x201c,
  rdquo: 0x201d,
  bdquo: 0x201e,
  dagger: 0x2020,
  Dagger: 0x2021,
  bull: 0x2022,
  hellip: 0x2026,
  permil: 0x2030,
  prime: 0x2032,
  lsaquo: 0x2039,
  rsaquo: 0x203a,
  euro: 0x20ac,
  trade: 0x2122,
  larr: 0x2190,
  uarr: 0x2191,
  rarr: 0x2192,
  darr: 0x2193,
  harr: 0x2194,
  minus: 0x2212,
  hearts: 0x2665,
};

export const NAMED_ENTITIES: ReadonlyMap<string, number> = (() => {
  const map = new Map<string, number>(Object.entries(OTHER_ENTITIES));
  LATIN1_ENTITIES.split(' ').forEach((name, i) => map.set(name, 0xa0 + i));
  return map;
})();

/**
 * windows-1252 at 0x80-0x9F (WHATWG Encoding), where it differs from Latin-1; the five undefined bytes map to
 * themselves. Spelled out because Node's TextDecoder('windows-1252') decodes these bytes as Latin-1 C1 controls
 * since Node 20.18.3 / 22.13.0 (nodejs/node#60888).
 */
const WINDOWS_1252_C1 =
  '\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f' +
  '\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178';

/**
 * Reads C1 control characters (U+0080-U+009F) as the windows-1252 characters of those bytes. They never carry
 * meaning in mail text; they appear when windows-1252 or ISO-8859-1 text (the same decoder, per WHATWG) went
 * through an affected TextDecoder, postal-mime's included.
 */
export function repairC1(text: string): string {
  return /[\u0080-\u009f]/.test(text)
    ? text.replace(/[\u0080-\u009f]/g, (c) => WINDOWS_1252_C1[c.charCodeAt(0) - 0x80]!)
    : text;
}

/** windows-1252 bytes as text, without TextDecoder (see WINDOWS_1252_C1). */
export function decodeWindows1252(bytes: Uint8Array): string {
  return repairC1(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1'));
}

function fromCodePoint(code: number): string {
  if (code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return '\ufffd';
  // HTML maps the C1 range of numeric references through windows-1252 (&#150; is an en dash).
  if (code >= 0x80 && code <= 0x9f) return WINDOWS_1252_C1[code - 0x80]!;
  return String.fromCodePoint(code);
}

const ENTITY = /&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([A-Za-z][A-Za-z0-9]{1,31}));?/g;

/** Decodes numeric references and the common named entities; unknown names stay as written. */
export function decodeEntities(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(ENTITY, (whole, dec?: string, hex?: string, name?: string) => {
    if (dec !== undefined) return fromCodePoint(parseInt(dec, 10));
    if (hex !== undefined) return fromCodePoint(parseInt(hex, 16));
    const code = name === undefined ? undefined : NAMED_ENTITIES.get(name);
    return code === undefined ? whole : String.fromCodePoint(code);
  });
}

/** Elements whose content is never shown as text. */
const HIDDEN_ELEMENTS = new Set(['script', 'style', 'title', 'noscript', 'template', 'xml']);
/** Elements that separate words; every other tag is removed without a space (`H<b>ello</b>` is `Hello`). */
const BLOCK_ELEMENTS = new Set([
  'address', 'article', 'aside', 'blockquote', 'body', 'br', 'caption', 'center', 'dd', 'div', 'dl', 'dt',
  'fieldset', 'figcaption', 'figure', 'footer', 'form', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'header', 'hr',
  'html', 'img', 'li', 'main', 'nav', 'ol', 'p', 'pre', 'section', 'table', 'tbody', 'td', 'tfoot', 'th',
  'thead', 'tr', 'ul',
]); // prettier-ignore

const TAG_NAME = /<(\/?)([A-Za-z][A-Za-z0-9:-]*)/y;

/**
 * The visible text of an HTML document, for a snippet: tags removed, script/style/title content dropped,
 * comments dropped, entities decoded. Whitespace is not collapsed here (see `snippetOf`).
 * An unclosed `<script>` hides the rest of the document, as it does in a browser.
 */
export function htmlToText(html: string): string {
  const out: string[] = [];
  let pos = 0;
  const len = html.length;
  while (pos < len) {
    const lt = html.indexOf('<', pos);
    if (lt === -1) {
      out.push(html.slice(pos));
      break;
    }
    if (lt > pos) out.push(html.slice(pos, lt));

    if (html.startsWith('<!--', lt)) {
      const end = html.indexOf('-->', lt + 4);
      pos = end === -1 ? len : end + 3;
      continue;
    }
    const c = html.charCodeAt(lt + 1);
    if (c === 0x21 /* ! */ || c === 0x3f /* ? */) {
      // <!DOCTYPE ...>, <![CDATA[ ... ]]>-ish, <?xml ...?>: markup, not text
      const end = html.indexOf('>', lt + 2);
      pos = end === -1 ? len : end + 1;
      continue;
    }
    TAG_NAME.lastIndex = lt;
    const m = TAG_NAME.exec(html);
    if (!m) {
      out.push('<'); // a literal `<` in text ("a < b")
      pos = lt + 1;
      continue;
    }
    const closing = m[1] === '/';
    const name = m[2]!.toLowerCase();
    const end = html.indexOf('>', lt + m[0].length);
    pos = end === -1 ? len : end + 1;
    if (BLOCK_ELEMENTS.has(name)) out.push(' ');
    if (!closing && HIDDEN_ELEMENTS.has(name) && html.charCodeAt(end - 1) !== 0x2f /* self-closed */) {
      const close = new RegExp(`</${name}\\s*>`, 'gi');
      close.lastIndex = pos;
      const closeMatch = close.exec(html);
      pos = closeMatch ? closeMatch.index + closeMatch[0].length : len;
      out.push(' ');
    }
  }
  return decodeEntities(out.join(''));
}

/** Invisible characters that marketing mail pads its preheader with: removed, not turned into spaces. */
const INVISIBLE =
  /(?:[\u00ad\u061c\u115f\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]|\u034f|\u1160|\u17b4|\u17b5)+/g;
/** Whitespace and control characters (C0, DEL, C1): one space per run. */
// eslint-disable-next-line no-control-regex -- control characters are what it replaces
const BLANKS = /[\s\u0000-\u001f\u007f-\u009f]+/g;

/** Control characters (C0, DEL, C1), one by one. */
// eslint-disable-next-line no-control-regex -- control characters are what it replaces
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/g;

/** At most `max` UTF-16 code units, never splitting a surrogate pair. */
export function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return text.slice(0, end);
}

/** One line of text for a listing: invisibles removed, whitespace and controls collapsed, at most `max` chars. */
export function snippetOf(text: string, max: number, scanChars: number): string {
  const limit = Math.min(text.length, scanChars);
  // The first `max` characters of the cleaned text depend only on a prefix of it: clean a growing prefix (most
  // text needs one small one) instead of all `scanChars`. Once the cleaned prefix holds max + 2 characters, the
  // rest cannot change its first max (a blank run across the cut is one space after them; a surrogate pair cut in
  // two is the last character, past them).
  for (let window = Math.max(256, max * 4); ; window *= 4) {
    const end = Math.min(window, limit);
    const cleaned = repairC1(text.slice(0, end)).replace(INVISIBLE, '').replace(BLANKS, ' ').trim();
    if (end === limit || cleaned.length >= max + 2) return cut(cleaned, max).trimEnd();
  }
}

/**
 * A header-derived string safe to show and store: C1 characters read as windows-1252 (see repairC1), control
 * characters (NUL, CR, LF, TAB...) become spaces.
 */
export function displayText(text: string, max: number): string {
  return cut(repairC1(text).replace(CONTROLS, ' ').trim(), max).trimEnd();
}
