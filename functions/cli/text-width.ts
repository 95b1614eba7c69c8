/**
 * Terminal column widths, for the CLI's aligned text output: East Asian wide and fullwidth characters and emoji take
 * two columns, combining marks and other zero-width characters none, everything else one. Measured per grapheme
 * cluster (what a terminal draws as one glyph): a flag, a ZWJ family or a letter with its accents is one unit, so a
 * cut never splits it.
 */

const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** Drawn with no width of their own: combining marks, format characters (ZWJ, bidi marks), variation selectors. */
const ZERO_WIDTH = /^[\p{Mn}\p{Me}\p{Cf}]$/u;
const EMOJI_PRESENTATION = /\p{Emoji_Presentation}/u;
const PICTOGRAPHIC = /\p{Extended_Pictographic}/u;

/** East Asian Width W and F (Unicode 15), as code point ranges; emoji are recognised by their properties instead. */
const WIDE_RANGES: Array<[number, number]> = [
  [0x1100, 0x115f], // Hangul Jamo initial consonants
  [0x2329, 0x232a],
  [0x2e80, 0x303e], // CJK radicals, Kangxi, ideographic description, CJK symbols and punctuation
  [0x3041, 0x33ff], // Hiragana, Katakana, Bopomofo, Hangul compatibility Jamo, Kanbun, CJK strokes, enclosed CJK
  [0x3400, 0x4dbf], // CJK Extension A
  [0x4e00, 0x9fff], // CJK Unified Ideographs
  [0xa000, 0xa4cf], // Yi
  [0xa960, 0xa97f], // Hangul Jamo extended A
  [0xac00, 0xd7a3], // Hangul syllables
  [0xf900, 0xfaff], // CJK compatibility ideographs
  [0xfe10, 0xfe19], // vertical forms
  [0xfe30, 0xfe6f], // CJK compatibility forms, small form variants
  [0xff00, 0xff60], // fullwidth forms
  [0xffe0, 0xffe6],
  [0x16fe0, 0x16fe4],
  [0x17000, 0x18cff], // Tangut
  [0x1b000, 0x1b2ff], // Kana supplement and extensions, Nushu
  [0x1f200, 0x1f2ff], // enclosed ideographic supplement
  [0x20000, 0x2fffd], // CJK Extensions B to F
  [0x30000, 0x3fffd], // CJK Extension G and beyond
];

function isWideCodePoint(cp: number): boolean {
  let lo = 0;
  let hi = WIDE_RANGES.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [start, end] = WIDE_RANGES[mid]!;
    if (cp < start) hi = mid - 1;
    else if (cp > end) lo = mid + 1;
    else return true;
  }
  return false;
}

/** The columns one grapheme cluster takes. */
function clusterWidth(cluster: string): number {
  const first = cluster.codePointAt(0)!;
  const firstChar = String.fromCodePoint(first);
  if (ZERO_WIDTH.test(firstChar) || first < 0x20 || (first >= 0x7f && first < 0xa0)) {
    // A cluster made only of zero-width characters (a lone combining mark, ZWJ) or a control character.
    return cluster.length > firstChar.length ? clusterWidth(cluster.slice(firstChar.length)) : 0;
  }
  if (EMOJI_PRESENTATION.test(cluster)) return 2;
  // A text-style pictograph made an emoji by VARIATION SELECTOR-16 (❤️) is drawn wide.
  if (cluster.includes('\uFE0F') && PICTOGRAPHIC.test(cluster)) return 2;
  return isWideCodePoint(first) ? 2 : 1;
}

/** The terminal columns `text` takes (one line: no control characters expected, see `sanitize`). */
export function displayWidth(text: string): number {
  let width = 0;
  for (const { segment } of segmenter.segment(text)) width += clusterWidth(segment);
  return width;
}

/**
 * One line of text fit for a terminal: control characters (a header's CR LF or TAB, an escape sequence a hostile
 * subject carries) become spaces, so nothing in mail can move the cursor or recolour the screen.
 */
export function sanitize(text: string): string {
  return text.replace(/[\p{Cc}\u2028\u2029]/gu, ' ');
}

/**
 * `text` in at most `width` columns: cut at a grapheme boundary with an ellipsis "…" (one column) when it is wider.
 * The result may be one column narrower than `width` when a wide character did not fit beside the ellipsis.
 */
export function truncateToWidth(text: string, width: number): string {
  if (width <= 0) return '';
  if (displayWidth(text) <= width) return text;
  let out = '';
  let used = 0;
  for (const { segment } of segmenter.segment(text)) {
    const w = clusterWidth(segment);
    if (used + w > width - 1) break;
    out += segment;
    used += w;
  }
  return `${out}…`;
}

/** `text` cut to `width` columns (see truncateToWidth) and padded with spaces to exactly `width` columns. */
export function fitToWidth(text: string, width: number): string {
  const cut = truncateToWidth(text, width);
  return cut + ' '.repeat(Math.max(0, width - displayWidth(cut)));
}
