import { cut, repairC1, snippetOf } from '../../../functions/adapters/mime/text';

/** The snippet as defined: all of the scanned text cleaned, then cut (what snippetOf computes from a prefix). */
function reference(text: string, max: number, scanChars: number): string {
  const head = text.length > scanChars ? text.slice(0, scanChars) : text;
  return cut(
    repairC1(head)
      .replace(
        /(?:[\u00ad\u061c\u115f\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]|\u034f|\u1160|\u17b4|\u17b5)+/g,
        '',
      )
      // eslint-disable-next-line no-control-regex -- control characters are what it replaces
      .replace(/[\s\u0000-\u001f\u007f-\u009f]+/g, ' ')
      .trim(),
    max,
  ).trimEnd();
}

/** Deterministic text of words, long blank runs, invisibles, C1 characters and astral characters. */
function text(seed: number, length: number): string {
  let x = seed;
  const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pieces = [
    'word',
    ' ',
    '\r\n',
    ' '.repeat(300),
    '\u200b',
    '\u0093',
    '😀',
    'é',
    '\t\t',
    '\u00ad\u00ad',
  ];
  let out = '';
  while (out.length < length) out += pieces[Math.floor(next() * pieces.length)]!;
  return out.slice(0, length);
}

describe('snippetOf', () => {
  it('gives what cleaning all the scanned text gives, for every length, limit and cut', () => {
    for (let seed = 1; seed <= 300; seed++) {
      for (const max of [1, 5, 200]) {
        const t = text(seed, (seed * 37) % 5000);
        for (const scan of [100, 1000, 64 * 1024])
          expect(snippetOf(t, max, scan)).toBe(reference(t, max, scan));
      }
    }
  });

  it('sees text after a long blank stretch, and a surrogate pair at the window edge stays whole or goes', () => {
    const late = `${' '.repeat(10_000)}\u200b${'\r\n'.repeat(5_000)}hello   world`;
    expect(snippetOf(late, 200, 64 * 1024)).toBe('hello world');
    for (let pad = 250; pad < 262; pad++) {
      const edge = `${'a'.repeat(pad)}😀${'b'.repeat(900)}`;
      for (const max of [pad, pad + 1, pad + 2, 200])
        expect(snippetOf(edge, max, 64 * 1024)).toBe(reference(edge, max, 64 * 1024));
    }
  });
});
