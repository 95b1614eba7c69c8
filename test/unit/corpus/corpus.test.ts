import { PostalMimeParser } from '../../../functions/adapters/mime';
import type { CorpusMessage } from '../../support/corpus';
import {
  DEFAULT_BULK_SIZES,
  Random,
  bigCase,
  bigMessage,
  bulkCorpus,
  mulberry32,
  standardCorpus,
} from '../../support/corpus';

const NAMES = [
  'plain-text',
  'html-only',
  'alternative-attachments',
  'subject-utf8-b',
  'subject-utf8-q',
  'subject-latin1-q',
  'header-8bit-utf8',
  'header-8bit-latin1',
  'body-latin1-8bit',
  'body-windows-1252',
  'dot-leading',
  'dot-only-line',
  'dotdot-only-line',
  'long-line',
  'big',
  'nested-rfc822',
  'no-message-id',
  'same-message-id-1',
  'same-message-id-2',
  'no-date',
  'garbage',
  'nul-byte',
  'no-trailing-crlf',
];

const corpus = standardCorpus(11);
const byName = (name: string): CorpusMessage => {
  const found = corpus.find((m) => m.name === name);
  if (!found) throw new Error(`no corpus case ${name}`);
  return found;
};

/** The header block (up to the first empty line) as Latin-1 text, one entry per line. */
function headerLines(raw: Buffer): string[] {
  const end = raw.indexOf('\r\n\r\n');
  return raw
    .subarray(0, end === -1 ? raw.length : end)
    .toString('latin1')
    .split('\r\n');
}

const header = (raw: Buffer, name: string) =>
  headerLines(raw)
    .filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    .map((l) => l.slice(name.length + 1).trim());

/** Positions of LF not preceded by CR, and of CR not followed by LF. */
function bareLineEnds(raw: Buffer): number {
  let bad = 0;
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x0a && raw[i - 1] !== 0x0d) bad++;
    if (raw[i] === 0x0d && raw[i + 1] !== 0x0a) bad++;
  }
  return bad;
}

const lines = (raw: Buffer) => raw.toString('latin1').split('\r\n');

describe('mulberry32 and Random', () => {
  it('gives the same sequence for the same seed and another for another seed', () => {
    const a = mulberry32(1);
    const b = mulberry32(1);
    const c = mulberry32(2);
    const seqA = [a(), a(), a()];
    expect([b(), b(), b()]).toEqual(seqA);
    expect([c(), c(), c()]).not.toEqual(seqA);
    expect(seqA.every((n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32)).toBe(true);
  });

  it('spreads integers over the whole range asked', () => {
    const rng = new Random(5);
    const seen = new Set(Array.from({ length: 500 }, () => rng.int(1, 6)));
    expect([...seen].sort()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(rng.bytes(7)).toHaveLength(7);
  });
});

describe('standardCorpus', () => {
  it('holds every case once, in order', () => {
    expect(corpus.map((m) => m.name)).toEqual(NAMES);
  });

  it('is deterministic: the same seed gives identical bytes, another seed other bytes', () => {
    const again = standardCorpus(11);
    const other = standardCorpus(12);
    corpus.forEach((m, i) => {
      expect([m.name, again[i]!.raw.equals(m.raw)]).toEqual([m.name, true]);
      expect([m.name, other[i]!.raw.equals(m.raw)]).toEqual([m.name, false]);
    });
  });

  it('names every case in X-Corpus-Name and its Subject, except garbage', () => {
    for (const m of corpus) {
      if (m.name === 'garbage') {
        expect(m.raw.includes('X-Corpus-Name')).toBe(false);
        expect(m.expect.subject).toBeUndefined();
        continue;
      }
      expect([m.name, header(m.raw, 'X-Corpus-Name')]).toEqual([m.name, [m.name]]);
      expect(m.expect.subject).toContain(`[corpus:${m.name}]`);
    }
  });

  it('uses CRLF line ends only, and ends with CRLF except no-trailing-crlf and garbage', () => {
    for (const m of corpus) {
      expect([m.name, bareLineEnds(m.raw)]).toEqual([m.name, 0]);
      const endsWithCrlf = m.raw.subarray(-2).toString('latin1') === '\r\n';
      expect([m.name, endsWithCrlf]).toEqual([m.name, !['no-trailing-crlf', 'garbage'].includes(m.name)]);
    }
  });

  it('gives each message its own Message-ID, except the pair that shares one', () => {
    const ids = corpus.map((m) => header(m.raw, 'Message-ID'));
    const [a, b] = [byName('same-message-id-1'), byName('same-message-id-2')];
    expect(header(a.raw, 'Message-ID')).toEqual(header(b.raw, 'Message-ID'));
    expect(header(a.raw, 'Message-ID')).toHaveLength(1);
    expect(a.raw.equals(b.raw)).toBe(false);
    expect(a.expect.subject).not.toBe(b.expect.subject);
    const single = ids.filter((list) => list.length === 1).map((list) => list[0]);
    expect(new Set(single).size).toBe(single.length - 1);
    expect(header(byName('no-message-id').raw, 'Message-ID')).toEqual([]);
    expect(byName('no-message-id').expect.messageId).toBeUndefined();
  });

  it('leaves the Date header out of no-date only', () => {
    for (const m of corpus) {
      if (m.name === 'garbage') continue;
      expect([m.name, header(m.raw, 'Date').length]).toEqual([m.name, m.name === 'no-date' ? 0 : 1]);
    }
  });

  it('has RFC 2047 subjects in UTF-8 B, UTF-8 Q and ISO-8859-1 Q', () => {
    expect(header(byName('subject-utf8-b').raw, 'Subject')[0]).toMatch(/^=\?UTF-8\?B\?/);
    expect(header(byName('subject-utf8-q').raw, 'Subject')[0]).toMatch(
      /^\[corpus:subject-utf8-q\] =\?UTF-8\?Q\?/,
    );
    expect(header(byName('subject-latin1-q').raw, 'Subject')[0]).toMatch(/^=\?ISO-8859-1\?Q\?/);
    for (const name of ['subject-utf8-b', 'subject-utf8-q', 'subject-latin1-q']) {
      const subject = headerLines(byName(name).raw).filter((l) => /^(Subject:| )/.test(l));
      expect(subject.length).toBeGreaterThan(1); // folded: several encoded words
      expect(subject.every((l) => l.length <= 76 && /^[\x20-\x7e]*$/.test(l))).toBe(true);
    }
  });

  it('has raw 8-bit headers: valid UTF-8 in one, Latin-1 (not UTF-8) in the other', () => {
    const fatal = new TextDecoder('utf-8', { fatal: true });
    const utf8Subject = headerLines(byName('header-8bit-utf8').raw).find((l) => l.startsWith('Subject:'))!;
    expect(() => fatal.decode(Buffer.from(utf8Subject, 'latin1'))).not.toThrow();
    expect(/[\x80-\xff]/.test(utf8Subject)).toBe(true);
    const latin1Subject = headerLines(byName('header-8bit-latin1').raw).find((l) =>
      l.startsWith('Subject:'),
    )!;
    expect(latin1Subject).toContain('Caf\xe9');
    expect(() => fatal.decode(Buffer.from(latin1Subject, 'latin1'))).toThrow();
  });

  it('has a Latin-1 8bit body and a windows-1252 body that are not UTF-8', () => {
    const fatal = new TextDecoder('utf-8', { fatal: true });
    const latin1 = byName('body-latin1-8bit').raw;
    expect(header(latin1, 'Content-Type')).toEqual(['text/plain; charset=iso-8859-1']);
    expect(header(latin1, 'Content-Transfer-Encoding')).toEqual(['8bit']);
    expect(latin1.includes(Buffer.from('caf\xe9 cr\xe8me', 'latin1'))).toBe(true);
    expect(() => fatal.decode(latin1)).toThrow();
    const cp1252 = byName('body-windows-1252').raw;
    expect(header(cp1252, 'Content-Type')).toEqual(['text/plain; charset=windows-1252']);
    expect(cp1252.includes(Buffer.from([0x80, 0x35, 0x20, 0x96, 0x20, 0x93]))).toBe(true); // €5 – “
    expect(() => fatal.decode(cp1252)).toThrow();
  });

  it('has lines starting with "." and "..", and lines that are only "." or ".."', () => {
    const leading = lines(byName('dot-leading').raw);
    expect(leading).toEqual(
      expect.arrayContaining(['.hidden-file is a name', '..double dot start', '...triple dot start']),
    );
    const dot = lines(byName('dot-only-line').raw);
    expect(dot.filter((l) => l === '.')).toHaveLength(2);
    expect(dot.slice(-2)).toEqual(['.', '']); // the very last line is "."
    const dotdot = lines(byName('dotdot-only-line').raw);
    expect(dotdot.filter((l) => l === '..')).toHaveLength(2);
    expect(dotdot.slice(-2)).toEqual(['..', '']);
  });

  it('has a body line of 200 KiB without a line break', () => {
    const longest = Math.max(...lines(byName('long-line').raw).map((l) => l.length));
    expect(longest).toBe(200 * 1024);
  });

  it('has a NUL byte in the body of nul-byte only', () => {
    for (const m of corpus) {
      if (m.name === 'garbage') continue;
      expect([m.name, m.raw.includes(0)]).toEqual([m.name, m.name === 'nul-byte']);
    }
  });

  it('has a forwarded message inside nested-rfc822', () => {
    const raw = byName('nested-rfc822').raw.toString('latin1');
    expect(raw).toMatch(/Content-Type: message\/rfc822\r\n/);
    expect(raw).toContain('Subject: The original message inside nested-rfc822\r\n');
  });

  it('has garbage without any header line, empty line or colon', () => {
    const raw = byName('garbage').raw;
    expect(raw.includes(':')).toBe(false);
    expect(raw.includes('\r\n\r\n')).toBe(false);
    expect(raw.toString('latin1').split('\r\n').length).toBeGreaterThanOrEqual(4);
  });

  it('sizes the big case as asked', () => {
    expect(byName('big').raw).toHaveLength(256 * 1024);
    expect(standardCorpus(11, { bigBytes: 100_000 }).find((m) => m.name === 'big')!.raw).toHaveLength(
      100_000,
    );
  });
});

describe('bigMessage', () => {
  it('builds a 30 MiB message of exactly that size, CRLF only, that parses to its attachment', async () => {
    const size = 30 * 1024 * 1024;
    const { raw, expect: expected } = bigCase(size, 3);
    expect(raw).toHaveLength(size);
    expect(bareLineEnds(raw)).toBe(0);
    expect(lines(raw).reduce((max, l) => Math.max(max, l.length), 0)).toBeLessThanOrEqual(998);
    const parsed = await new PostalMimeParser().parse(raw, true);
    expect(parsed).toMatchObject({
      parse: 'full',
      subject: expected.subject,
      attachments: expected.attachments,
    });
    expect(expected.attachments[0]!.size).toBeGreaterThan(size * 0.7);
  });

  it("is bigCase's raw message, deterministic, and refuses sizes below its fixed part", () => {
    expect(bigMessage(50_000, 9).equals(bigCase(50_000, 9).raw)).toBe(true);
    expect(bigMessage(50_000, 9).equals(bigMessage(50_000, 9))).toBe(true);
    expect(bigMessage(50_000, 9).equals(bigMessage(50_000, 10))).toBe(false);
    expect(() => bigMessage(100, 1)).toThrow(/at least/);
  });
});

describe('bulkCorpus', () => {
  const small = { minAttachmentBytes: 1000, maxAttachmentBytes: 3000 };
  const bulk = bulkCorpus(200, 4, small);

  it('is deterministic', () => {
    const again = bulkCorpus(200, 4, small);
    bulk.forEach((m, i) => expect(again[i]!.raw.equals(m.raw)).toBe(true));
    expect(bulkCorpus(3, 5, small)[0]!.raw.equals(bulk[0]!.raw)).toBe(false);
  });

  it('makes count messages with unique names, subjects and Message-IDs, CRLF only', () => {
    expect(bulk).toHaveLength(200);
    expect(new Set(bulk.map((m) => m.name)).size).toBe(200);
    expect(new Set(bulk.map((m) => m.expect.subject)).size).toBe(200);
    expect(new Set(bulk.map((m) => header(m.raw, 'Message-ID')[0])).size).toBe(200);
    bulk.forEach((m, i) => {
      expect(m.expect.subject!.startsWith(`[bulk:${i}] `)).toBe(true);
      expect(header(m.raw, 'X-Corpus-Name')).toEqual([`bulk-${i}`]);
      expect(bareLineEnds(m.raw)).toBe(0);
    });
  });

  it('keeps messages without attachment within minBytes..maxBytes and attachments within their range', () => {
    const withAttachment = bulk.filter((m) => m.expect.attachments.length > 0);
    expect(withAttachment.length).toBeGreaterThan(5);
    expect(withAttachment.length).toBeLessThan(45);
    for (const m of bulk) {
      if (m.expect.attachments.length === 0) {
        expect(m.raw.length).toBeGreaterThanOrEqual(DEFAULT_BULK_SIZES.minBytes);
        expect(m.raw.length).toBeLessThanOrEqual(DEFAULT_BULK_SIZES.maxBytes);
      } else {
        const size = m.expect.attachments[0]!.size;
        expect(size).toBeGreaterThanOrEqual(small.minAttachmentBytes);
        expect(size).toBeLessThanOrEqual(small.maxAttachmentBytes);
      }
    }
    const kinds = new Set(
      bulk.map(
        (m) => /Content-Type: (text\/plain|text\/html|multipart\/\w+)/.exec(m.raw.toString('latin1'))?.[1],
      ),
    );
    expect(kinds).toEqual(new Set(['text/plain', 'text/html', 'multipart/alternative', 'multipart/mixed']));
  });

  it('honours custom sizes', () => {
    const tiny = bulkCorpus(30, 1, { minBytes: 1000, maxBytes: 1500, attachmentRatio: 0 });
    for (const m of tiny) {
      expect(m.raw.length).toBeGreaterThanOrEqual(1000);
      expect(m.raw.length).toBeLessThanOrEqual(1500);
      expect(m.expect.attachments).toEqual([]);
    }
    const defaults = bulkCorpus(40, 2);
    const attached = defaults.flatMap((m) => m.expect.attachments.map((a) => a.size));
    expect(attached.length).toBeGreaterThan(0);
    for (const size of attached) {
      expect(size).toBeGreaterThanOrEqual(50 * 1024);
      expect(size).toBeLessThanOrEqual(500 * 1024);
    }
  });
});

describe('PostalMimeParser over the corpus', () => {
  const parser = new PostalMimeParser();

  it.each(corpus.map((m) => [m.name, m] as const))('reads %s as expected', async (_name, m) => {
    const result = await parser.parse(m.raw, true);
    expect(result.parse).toBe(m.name === 'garbage' ? 'failed' : 'full');
    expect(result.subject).toBe(m.expect.subject);
    expect(result.messageId).toBe(m.expect.messageId);
    expect(result.date).toBe(m.expect.date);
    expect(result.from).toEqual(m.expect.from);
    if (m.expect.snippetStart !== undefined)
      expect(result.snippet.startsWith(m.expect.snippetStart)).toBe(true);
    expect(result.hasAttachments).toBe(m.expect.attachments.length > 0);
    expect(result.attachments).toHaveLength(m.expect.attachments.length);
    result.attachments.forEach((a, i) => {
      const { lines: lineCount, size, ...rest } = m.expect.attachments[i]!;
      expect(a).toMatchObject(rest);
      // A 7bit/8bit part may be counted with LF line ends (postal-mime does): up to one byte less per line.
      expect(a.size).toBeLessThanOrEqual(size);
      expect(a.size).toBeGreaterThanOrEqual(size - (lineCount ?? 0));
    });
  });

  it.each(corpus.map((m) => [m.name, m] as const))(
    'reads the headers of %s when told it is incomplete',
    async (_name, m) => {
      const head = m.raw.subarray(0, Math.min(m.raw.length, 4096));
      const result = await parser.parse(head, false);
      expect(result.parse).toBe(m.name === 'garbage' ? 'failed' : 'headers-only');
      expect(result.subject).toBe(m.expect.subject);
      expect(result.messageId).toBe(m.expect.messageId);
      expect(result.snippet).toBe('');
    },
  );

  it('reads every bulk message as expected', async () => {
    for (const m of bulkCorpus(40, 8)) {
      const result = await parser.parse(m.raw, true);
      expect(result).toMatchObject({
        parse: 'full',
        subject: m.expect.subject,
        messageId: m.expect.messageId,
        attachments: m.expect.attachments,
      });
      expect(result.snippet.startsWith(m.expect.snippetStart!)).toBe(true);
    }
  });
});
