import { displayWidth, fitToWidth, sanitize, truncateToWidth } from '../../../functions/cli/text-width';

describe('terminal column widths', () => {
  it.each([
    ['ascii', 'Hello', 5],
    ['CJK ideographs count two each', '日本語', 6],
    ['Hangul', '한국어', 6],
    ['fullwidth forms', 'ＡＢ', 4],
    ['combining marks count none', 'e\u0301te\u0301', 3],
    ['an emoji counts two', 'ok 👍', 5],
    ['a ZWJ family is one glyph of two columns', '👨‍👩‍👧', 2],
    ['a flag is one glyph of two columns', '🇫🇷', 2],
    ['a text pictograph made emoji by VS16', '❤️', 2],
    ['a text pictograph without VS16 stays narrow', '❤', 1],
    ['Latin with accents precomposed', 'café', 4],
  ])('%s', (_name, text, width) => {
    expect(displayWidth(text)).toBe(width);
  });

  it('cuts at the width with an ellipsis, never inside a glyph, and pads to the exact width', () => {
    expect(truncateToWidth('Hello world', 8)).toBe('Hello w…');
    expect(truncateToWidth('Hello', 5)).toBe('Hello');
    // 日本語のテキスト: two columns each; 7 columns hold three ideographs and the ellipsis.
    expect(truncateToWidth('日本語のテキスト', 7)).toBe('日本語…');
    expect(displayWidth(truncateToWidth('日本語のテキスト', 8))).toBeLessThanOrEqual(8);
    expect(truncateToWidth('e\u0301e\u0301e\u0301e\u0301', 3)).toBe('e\u0301e\u0301…');
    expect(truncateToWidth('👨‍👩‍👧👨‍👩‍👧', 3)).toBe('👨‍👩‍👧…');
    for (const text of ['日本語のテキスト', 'Grüße aus Köln', '👍👍👍👍👍👍', 'abc']) {
      expect(displayWidth(fitToWidth(text, 9))).toBe(9);
    }
    expect(fitToWidth('日本語のテキスト', 8)).toBe('日本語… ');
  });

  it('turns control characters into spaces (no escape sequence from mail reaches the terminal)', () => {
    expect(sanitize('a\x1b[31mred\r\nb\tc')).toBe('a [31mred  b c');
  });
});
