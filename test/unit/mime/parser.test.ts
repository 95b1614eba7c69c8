import { PostalMimeParser } from '../../../functions/adapters/mime';
import type { MessageMetadata } from '../../../functions/core/model';
import { deepNestingBomb } from '../../support/bombs';
import { Random, deepNesting, standardCorpus } from '../../support/corpus';

const CRLF = '\r\n';

/** A message from header lines and body lines, CRLF line ends. */
function mail(headers: string[], body: string[] = ['Body text.']): Buffer {
  return Buffer.from([...headers, '', ...body].join(CRLF) + CRLF, 'utf8');
}

function bytes(...parts: Array<string | number[]>): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
}

const b64 = (text: string | Buffer) => Buffer.from(text).toString('base64');

interface Case {
  name: string;
  raw: Buffer;
  complete?: boolean;
  expected: Partial<MessageMetadata>;
}

const cases: Case[] = [
  {
    name: 'reads the envelope fields of a plain message',
    raw: mail(
      [
        'From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jurgen@example.de>',
        'To: ann@example.com, "Doe, Jane" <jane@example.net>',
        'Cc: Team: x@example.org, y@example.org;, <z@example.org>',
        'Subject: Quarterly   report',
        'Date: Tue, 1 Jul 2003 10:52:37 +0200',
        'Message-ID: <abc.123@example.de>',
      ],
      ['Hello   Ann,', '', '\tthe report is attached.'],
    ),
    expected: {
      parse: 'full',
      from: { name: 'Jürgen Müller', address: 'jurgen@example.de' },
      to: [{ address: 'ann@example.com' }, { name: 'Doe, Jane', address: 'jane@example.net' }],
      cc: [{ address: 'x@example.org' }, { address: 'y@example.org' }, { address: 'z@example.org' }],
      subject: 'Quarterly   report',
      date: '2003-07-01T08:52:37.000Z',
      messageId: '<abc.123@example.de>',
      snippet: 'Hello Ann, the report is attached.',
      hasAttachments: false,
      attachments: [],
    },
  },
  {
    name: 'unfolds a folded Message-ID and drops a comment after it',
    raw: mail(['Subject: x', 'Message-ID:', ' <folded@example.com> (added by a relay)']),
    expected: { messageId: '<folded@example.com>' },
  },
  {
    name: 'keeps a Message-ID without angle brackets as written',
    raw: mail(['Subject: x', 'Message-ID: bare-id@example.com ']),
    expected: { messageId: 'bare-id@example.com' },
  },
  {
    name: 'merges several To headers and takes the first Subject and From',
    raw: mail([
      'From: a@example.com',
      'From: b@example.com',
      'To: c@example.com',
      'To: d@example.com',
      'Subject: one',
      'Subject: two',
    ]),
    expected: {
      from: { address: 'a@example.com' },
      to: [{ address: 'c@example.com' }, { address: 'd@example.com' }],
      subject: 'one',
    },
  },
  {
    name: 'decodes UTF-8 B encoded words split across a fold, emoji included',
    raw: mail([`Subject: =?UTF-8?B?${b64('Grüße 😀')}?=${CRLF} =?UTF-8?B?${b64(' aus Köln')}?=`]),
    expected: { subject: 'Grüße 😀 aus Köln' },
  },
  {
    name: 'decodes ISO-8859-1 Q encoded words after plain text',
    raw: mail(['Subject: Re: =?ISO-8859-1?Q?Caf=E9_cr=E8me?= today']),
    expected: { subject: 'Re: Café crème today' },
  },
  {
    name: 'decodes windows-1252 encoded words, the 0x80-0x9F range included',
    raw: mail(['Subject: =?windows-1252?Q?=80_5_=96_=93ok=94?=']),
    expected: { subject: '€ 5 – “ok”' },
  },
  {
    name: 'survives an encoded word in an unknown charset',
    raw: mail(['Subject: =?x-no-such-charset?Q?abc?= tail']),
    expected: { parse: 'full', subject: 'abc tail' },
  },
  {
    name: 'reads raw UTF-8 header bytes (RFC 6532)',
    raw: mail(['Subject: Grüße 日本', 'From: Zoë <zoe@example.se>']),
    expected: { subject: 'Grüße 日本', from: { name: 'Zoë', address: 'zoe@example.se' } },
  },
  {
    name: 'reads raw 8-bit header bytes that are not UTF-8 as windows-1252',
    raw: bytes(
      'Subject: Caf',
      [0xe9],
      ' ',
      [0x80],
      '5 ',
      [0x93],
      'x',
      [0x94],
      CRLF,
      'From: Ren',
      [0xe9],
      ' <r@example.fr>',
      CRLF,
      CRLF,
      'b',
      CRLF,
    ),
    expected: { subject: 'Café €5 “x”', from: { name: 'René', address: 'r@example.fr' } },
  },
  {
    name: 'accepts bare LF line ends',
    raw: Buffer.from(
      'Subject: bare lf\nFrom: a@example.com\nDate: Mon, 5 Feb 2024 09:00:00 -0500\n\nline one\nline two\n',
    ),
    expected: {
      parse: 'full',
      subject: 'bare lf',
      from: { address: 'a@example.com' },
      date: '2024-02-05T14:00:00.000Z',
      snippet: 'line one line two',
    },
  },
  {
    name: 'turns NUL bytes and other controls in headers and body into spaces',
    raw: bytes(
      'Subject: a',
      [0],
      'b',
      [7],
      'c',
      CRLF,
      'From: x@example.com',
      CRLF,
      CRLF,
      'be',
      [0],
      'fore after',
      CRLF,
    ),
    expected: { parse: 'full', subject: 'a b c', snippet: 'be fore after' },
  },
  {
    name: 'leaves a blank Subject undefined',
    raw: mail(['Subject:   ', 'From: a@example.com']),
    expected: { subject: undefined, parse: 'full' },
  },
  {
    name: 'reads the text of an HTML-only message: no script, style, title or comments; entities decoded',
    raw: mail(
      ['Subject: html', 'Content-Type: text/html; charset=utf-8'],
      [
        '<html><head><title>Not text</title><style>p { color: red }</style></head>',
        '<body><!-- hidden --><script type="text/javascript">var s = "<p>no</p>";</script>',
        '<p>Caf&eacute; &amp; cr&#232;me&nbsp;&#x263A; &euro;5&hellip; a &lt; b</p><div>H<b>ell</b>o</div>',
        '<p>&unknown; &#150;</p></body></html>',
      ],
    ),
    expected: { snippet: 'Café & crème ☺ €5… a < b Hello &unknown; –' },
  },
  {
    name: 'treats an unclosed <script> as hiding the rest, as a browser does',
    raw: mail(['Subject: html', 'Content-Type: text/html'], ['<p>before</p><script>after']),
    expected: { snippet: 'before' },
  },
  {
    name: 'takes the snippet from the text part of a multipart/alternative',
    raw: mail(
      ['Subject: alt', 'Content-Type: multipart/alternative; boundary="b"'],
      [
        '--b',
        'Content-Type: text/plain; charset=utf-8',
        '',
        'Plain version.',
        '--b',
        'Content-Type: text/html; charset=utf-8',
        '',
        '<p>HTML version.</p>',
        '--b--',
      ],
    ),
    expected: { snippet: 'Plain version.', hasAttachments: false, attachments: [] },
  },
  {
    name: 'decodes an ISO-8859-1 8bit body',
    raw: bytes(
      'Subject: l1',
      CRLF,
      'Content-Type: text/plain; charset=iso-8859-1',
      CRLF,
      'Content-Transfer-Encoding: 8bit',
      CRLF,
      CRLF,
      'Voil',
      [0xe0],
      ' caf',
      [0xe9],
      CRLF,
    ),
    expected: { snippet: 'Voilà café' },
  },
  {
    name: 'decodes a windows-1252 body, the 0x80-0x9F range included',
    raw: bytes(
      'Subject: w',
      CRLF,
      'Content-Type: text/plain; charset=windows-1252',
      CRLF,
      CRLF,
      [0x80],
      '5 ',
      [0x96],
      ' ',
      [0x93],
      'q',
      [0x94],
      [0x85],
      CRLF,
    ),
    expected: { snippet: '€5 – “q”…' },
  },
  {
    name: 'reads a body in an unknown charset without failing',
    raw: mail(['Subject: c', 'Content-Type: text/plain; charset=x-unknown-charset'], ['plain ascii text']),
    expected: { parse: 'full', snippet: 'plain ascii text' },
  },
  {
    name: 'lists attachments with decoded sizes and RFC 2231 / RFC 2047 filenames, not inline related images',
    raw: mail(
      ['Subject: att', 'Content-Type: multipart/mixed; boundary="m"'],
      [
        '--m',
        'Content-Type: multipart/related; boundary="r"',
        '',
        '--r',
        'Content-Type: text/html',
        '',
        '<p>see <img src="cid:logo@x"></p>',
        '--r',
        'Content-Type: image/png',
        'Content-ID: <logo@x>',
        'Content-Transfer-Encoding: base64',
        '',
        b64(Buffer.alloc(30, 1)),
        '--r--',
        '--m',
        'Content-Type: application/pdf; name="a.pdf"',
        'Content-Disposition: attachment; filename="a.pdf"',
        'Content-Transfer-Encoding: base64',
        '',
        b64(Buffer.alloc(1000, 7)),
        '--m',
        `Content-Type: text/plain; name="=?UTF-8?B?${b64('Résumé.txt')}?="`,
        "Content-Disposition: attachment; filename*0*=UTF-8''R%C3%A9sum%C3%A9; filename*1*=%20%E2%80%93%20%E6%97%A5.txt",
        'Content-Transfer-Encoding: base64',
        '',
        b64('12345'),
        '--m',
        `Content-Type: application/octet-stream; name="=?UTF-8?Q?=C3=BCber.bin?="`,
        'Content-Transfer-Encoding: base64',
        '',
        b64(Buffer.alloc(3)),
        '--m--',
      ],
    ),
    expected: {
      parse: 'full',
      snippet: 'see',
      hasAttachments: true,
      attachments: [
        { filename: 'a.pdf', mimeType: 'application/pdf', size: 1000 },
        { filename: 'Résumé – 日.txt', mimeType: 'text/plain', size: 5 },
        { filename: 'über.bin', mimeType: 'application/octet-stream', size: 3 },
      ],
    },
  },
  {
    name: 'parses an inline message/rfc822 and lists its attachments',
    raw: mail(
      ['Subject: outer', 'Content-Type: multipart/mixed; boundary="o"'],
      [
        '--o',
        'Content-Type: text/plain',
        '',
        'Outer text.',
        '--o',
        'Content-Type: message/rfc822',
        '',
        'Subject: inner',
        'Content-Type: multipart/mixed; boundary="i"',
        '',
        '--i',
        'Content-Type: text/plain',
        '',
        'Inner text.',
        '--i',
        'Content-Type: image/gif; name="in.gif"',
        'Content-Disposition: attachment',
        'Content-Transfer-Encoding: base64',
        '',
        b64('GIF89a'),
        '--i--',
        '--o--',
      ],
    ),
    expected: {
      subject: 'outer',
      hasAttachments: true,
      attachments: [{ filename: 'in.gif', mimeType: 'image/gif', size: 6 }],
    },
  },
  {
    name: 'reads headers only when the message is not complete, guessing attachments from multipart/mixed',
    raw: mail(
      ['Subject: huge', 'From: a@example.com', 'Content-Type: multipart/mixed;', ' boundary="x"'],
      ['--x', 'Content-Type: text/plain', '', 'cut here'],
    ),
    complete: false,
    expected: {
      parse: 'headers-only',
      subject: 'huge',
      from: { address: 'a@example.com' },
      snippet: '',
      hasAttachments: true,
      attachments: [],
    },
  },
  {
    name: 'guesses no attachments for an incomplete multipart/alternative',
    raw: mail(['Subject: huge', 'Content-Type: multipart/alternative; boundary="x"'], ['--x']),
    complete: false,
    expected: { parse: 'headers-only', hasAttachments: false },
  },
  {
    name: 'reads the fields of a header block cut before its end',
    raw: Buffer.from('Subject: cut\r\nFrom: a@example.com\r\nReceived: from somewhere\r\n  by so'),
    complete: false,
    expected: { parse: 'headers-only', subject: 'cut', from: { address: 'a@example.com' } },
  },
  {
    name: 'fails on bytes that are not a message, saying why',
    raw: bytes([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d], 'IHDR', [0xff, 0xfe]),
    expected: {
      parse: 'failed',
      parseError: 'no header fields: the data does not start like an RFC 5322 message',
      subject: undefined,
      to: [],
      cc: [],
      snippet: '',
      hasAttachments: false,
      attachments: [],
    },
  },
  {
    name: 'fails on an empty message',
    raw: Buffer.alloc(0),
    expected: { parse: 'failed', parseError: 'empty message' },
  },
  {
    name: 'keeps the text of a message without headers, marked failed',
    raw: Buffer.from('\r\nJust a body.\r\n'),
    expected: { parse: 'failed', snippet: 'Just a body.' },
  },
];

describe('PostalMimeParser', () => {
  const parser = new PostalMimeParser();

  it.each(cases)('$name', async ({ raw, complete, expected }) => {
    const result = await parser.parse(raw, complete ?? true);
    for (const [key, value] of Object.entries(expected)) {
      expect([key, result[key as keyof MessageMetadata]]).toEqual([key, value]);
    }
  });

  describe('dates', () => {
    it.each([
      ['Tue, 1 Jul 2003 10:52:37 +0200', '2003-07-01T08:52:37.000Z'],
      ['1 Jul 2003 10:52 +0200', '2003-07-01T08:52:00.000Z'],
      ['Tue,  1 Jul 2003 10:52:37 +0200 (CEST)', '2003-07-01T08:52:37.000Z'],
      ['Tue, 01 Jul 03 10:52:37 EDT', '2003-07-01T14:52:37.000Z'],
      ['Fri, 31 Dec 99 23:59:59 GMT', '1999-12-31T23:59:59.000Z'],
      ['Mon, 5 Feb 2024 09:00:00 Z', '2024-02-05T09:00:00.000Z'],
      ['Sat, 31 Dec 2016 23:59:60 +0000', '2016-12-31T23:59:59.000Z'],
      ['2024-02-05T09:00:00+01:00', '2024-02-05T08:00:00.000Z'],
      ['2024-02-05 09:00:00', '2024-02-05T09:00:00.000Z'],
      ['someday soon', undefined],
      ['1', undefined],
      ['Wed, 31 Feb 2024 10:00:00 +0000', undefined],
      ['Wed, 7 Feb 2024 25:00:00 +0000', undefined],
      ['Wed, 7 Foo 2024 10:00:00 +0000', undefined],
    ])('reads Date: %s as %s', async (date, iso) => {
      const result = await parser.parse(mail(['Subject: d', `Date: ${date}`]), true);
      expect(result.date).toBe(iso);
    });
  });

  describe('bounds', () => {
    it('cuts the snippet at snippetChars without splitting a surrogate pair', async () => {
      const small = new PostalMimeParser({ snippetChars: 10 });
      expect((await small.parse(mail(['Subject: s'], ['abcdefghijklmnop']), true)).snippet).toBe(
        'abcdefghij',
      );
      expect((await small.parse(mail(['Subject: s'], ['abcdefghi😀xyz']), true)).snippet).toBe('abcdefghi');
      const long = await parser.parse(mail(['Subject: s'], ['word '.repeat(1000)]), true);
      expect(long.snippet).toHaveLength(199); // 200 characters, the trailing space trimmed
    });

    it('lists at most maxAttachments attachments but still says the message has them', async () => {
      const parts = Array.from({ length: 5 }, (_, i) => [
        '--m',
        `Content-Type: application/octet-stream; name="f${i}.bin"`,
        'Content-Transfer-Encoding: base64',
        '',
        b64('xyz'),
      ]).flat();
      const raw = mail(['Subject: many', 'Content-Type: multipart/mixed; boundary="m"'], [...parts, '--m--']);
      const result = await new PostalMimeParser({ maxAttachments: 2 }).parse(raw, true);
      expect(result.hasAttachments).toBe(true);
      expect(result.attachments.map((a) => a.filename)).toEqual(['f0.bin', 'f1.bin']);
    });

    it('keeps at most maxAddresses addresses and cuts long fields at maxFieldChars / maxNameChars', async () => {
      const to = Array.from({ length: 150 }, (_, i) => `u${i}@example.com`).join(', ');
      const name = 'n'.repeat(1000);
      const result = await parser.parse(
        mail([`To: ${to}`, `Subject: ${'s'.repeat(5000)}`, `From: ${name} <a@example.com>`]),
        true,
      );
      expect(result.to).toHaveLength(100);
      expect(result.to[99]).toEqual({ address: 'u99@example.com' });
      expect(result.subject).toHaveLength(998);
      expect(result.from).toEqual({ name: 'n'.repeat(256), address: 'a@example.com' });
    });

    it('fails a message nested deeper than maxNestingDepth, keeping its headers', async () => {
      const message = deepNesting(40, 1);
      const result = await parser.parse(message.raw, true);
      expect(result).toMatchObject({
        parse: 'failed',
        subject: message.expect.subject,
        messageId: message.expect.messageId,
        parseError: 'Maximum MIME nesting depth of 32 levels exceeded',
      });
      const shallow = deepNesting(20, 1);
      expect(await parser.parse(shallow.raw, true)).toMatchObject({
        parse: 'full',
        snippet: 'Hello from deep-nesting.',
      });
    });

    it('fails a message whose headers exceed maxHeaderBytes, keeping the fields read within the bound', async () => {
      const received = Array.from({ length: 200 }, (_, i) => `Received: from relay${i}.example.com by mx`);
      const raw = mail(['Subject: long header block', ...received]);
      const result = await new PostalMimeParser({ maxHeaderBytes: 4096 }).parse(raw, true);
      expect(result).toMatchObject({ parse: 'failed', subject: 'long header block' });
      expect(result.parseError).toMatch(/header size/);
    });

    it('does not parse the body of a message with more boundary-like lines than maxBoundaryLines', async () => {
      const body = [...Array.from({ length: 50 }, () => ['--b', '', 'x']).flat(), '--b--'];
      const raw = mail(['Subject: wide', 'Content-Type: multipart/mixed; boundary="b"'], body);
      const result = await new PostalMimeParser({ maxBoundaryLines: 20 }).parse(raw, true);
      expect(result).toMatchObject({
        parse: 'headers-only',
        subject: 'wide',
        hasAttachments: true,
        snippet: '',
      });
      expect(result.parseError).toMatch(/more than 20 lines/);
      expect((await parser.parse(raw, true)).parse).toBe('full');
    });

    it('does not parse a body of more lines than maxLines, or one per 64 bytes if that is more', async () => {
      const short = mail(
        ['Subject: short lines'],
        Array.from({ length: 100 }, () => 'x'),
      );
      const small = new PostalMimeParser({ maxLines: 50 });
      const result = await small.parse(short, true);
      expect(result).toMatchObject({ parse: 'headers-only', subject: 'short lines', snippet: '' });
      expect(result.parseError).toMatch(/more than 50 lines/);
      // 100 lines of 70 bytes: more than 50, but not more than one per 64 bytes
      const text = mail(
        ['Subject: text lines'],
        Array.from({ length: 100 }, () => 'y'.repeat(68)),
      );
      expect(await small.parse(text, true)).toMatchObject({
        parse: 'full',
        snippet: expect.stringMatching(/^y+/),
      });
    });

    it('refuses 8 MB of empty lines at once (postal-mime took minutes and gigabytes over them)', async () => {
      const raw = Buffer.concat([
        mail(['Subject: empty lines'], []),
        Buffer.alloc(8 * 1024 * 1024 - 100, 0x0a),
      ]);
      const started = performance.now();
      const result = await parser.parse(raw, true);
      expect(performance.now() - started).toBeLessThan(1000);
      expect(result).toMatchObject({ parse: 'headers-only', subject: 'empty lines' });
      expect(result.parseError).toMatch(/more than \d+ lines: too many to parse/);
    });

    it('reads at most 32 KiB of address fields, never an address cut short', async () => {
      const colons = ':'.repeat(700 * 1024);
      const started = performance.now();
      const result = await parser.parse(
        mail(['Subject: groups', `To: ${colons}`, `Cc: ${'g:a@b,'.repeat(40_000)}`]),
        true,
      );
      expect(performance.now() - started).toBeLessThan(2000); // 9 s when whole fields went to the address parser
      expect(result).toMatchObject({ parse: 'full', subject: 'groups', to: [], snippet: 'Body text.' });
      expect(result.cc[0]).toEqual({ address: 'a@b' }); // groups nested 50 deep: postal-mime stops there
      const cutShort = await parser.parse(mail([`To: ${'x'.repeat(40_000)} <a@example.com>`]), true);
      expect(cutShort.to).toEqual([]);
    });

    it('says why a message is headers-only', async () => {
      const raw = mail(['Subject: big', 'From: a@example.com'], ['body']);
      expect((await parser.parse(raw, false)).parseError).toMatch(/over the parse limit/);
      const endless = Buffer.from(`Subject: endless\r\nX-Filler: ${'f'.repeat(5000)}`);
      expect(await parser.parse(endless, false)).toMatchObject({
        parse: 'headers-only',
        subject: 'endless',
        parseError: expect.stringMatching(
          `header block does not end within the first ${endless.length} bytes`,
        ),
      });
    });

    it('fails a 10,000-deep nesting without close delimiters at maxNestingDepth, quickly', async () => {
      const bomb = deepNestingBomb(10_000, { closed: false });
      const started = performance.now();
      const result = await parser.parse(bomb.raw, true);
      expect(performance.now() - started).toBeLessThan(2000);
      expect(result).toMatchObject({ parse: 'failed', subject: '[bomb:deep-nesting] hostile message' });
      expect(result.parseError).toMatch(/nesting depth of 32/);
    });
  });

  describe('inline messages', () => {
    const forward = (inner: string[], headers: string[] = ['Content-Type: message/rfc822']) => [
      '--o',
      ...headers,
      '',
      ...inner,
    ];
    const outer = (parts: string[][], text = 'FYI.') =>
      mail(
        ['Subject: outer', 'Content-Type: multipart/mixed; boundary="o"'],
        ['--o', 'Content-Type: text/plain', '', text, ...parts.flat(), '--o--'],
      );
    const inner = (n: number, extra: string[] = []) => [
      `Subject: inner ${n}`,
      ...extra,
      'Content-Type: multipart/mixed; boundary="i"',
      '',
      '--i',
      'Content-Type: text/plain',
      '',
      `Inner text ${n}.`,
      '--i',
      `Content-Type: application/pdf; name="in${n}.pdf"`,
      'Content-Transfer-Encoding: base64',
      '',
      b64('%PDF'),
      '--i--',
    ];

    it("adds an inline message's text after the message's own, and lists its attachments", async () => {
      const result = await parser.parse(outer([forward(inner(1))]), true);
      expect(result).toMatchObject({
        parse: 'full',
        subject: 'outer',
        snippet: 'FYI. Inner text 1.',
        attachments: [{ filename: 'in1.pdf', mimeType: 'application/pdf', size: 4 }],
      });
    });

    it('lists a message/rfc822 attachment, or one in a delivery report, as it is', async () => {
      const attached = forward(inner(1), ['Content-Type: message/rfc822', 'Content-Disposition: attachment']);
      expect((await parser.parse(outer([attached]), true)).attachments).toEqual([
        { mimeType: 'message/rfc822', size: expect.any(Number) },
      ]);
      const status = ['--o', 'Content-Type: message/delivery-status', '', 'Action: failed'];
      const report = await parser.parse(outer([status, forward(inner(1))]), true);
      expect(report.attachments.map((a) => a.mimeType)).toEqual([
        'message/delivery-status',
        'message/rfc822',
      ]);
    });

    it('parses at most maxInlineMessages inline messages and lists the others as attachments', async () => {
      const result = await new PostalMimeParser({ maxInlineMessages: 2 }).parse(
        outer([forward(inner(1)), forward(inner(2)), forward(inner(3))]),
        true,
      );
      expect(result.snippet).toBe('FYI. Inner text 1. Inner text 2.');
      expect(result.attachments.map((a) => a.filename ?? a.mimeType)).toEqual([
        'in1.pdf',
        'in2.pdf',
        'message/rfc822',
      ]);
    });

    it('lists an inline message that breaks a bound as an attachment and parses the rest', async () => {
      const deep = deepNestingBomb(40).raw.toString('latin1').split('\r\n');
      const result = await parser.parse(outer([forward(deep), forward(inner(2))]), true);
      expect(result).toMatchObject({ parse: 'full', snippet: 'FYI. Inner text 2.' });
      expect(result.attachments.map((a) => a.filename ?? a.mimeType)).toEqual(['message/rfc822', 'in2.pdf']);
    });

    it('checks inline messages against the bounds whatever their encoding, sharing maxLines', async () => {
      const lines = Buffer.from(`Subject: lines\r\n\r\n${'\n'.repeat(1_000_000)}`);
      const hidden = forward(
        [lines.toString('base64')],
        ['Content-Type: message/rfc822', 'Content-Transfer-Encoding: base64'],
      );
      const colons = forward([`To: ${':'.repeat(512 * 1024)}`, 'Subject: colons', '', 'Inner body.']);
      const started = performance.now();
      const result = await parser.parse(outer([hidden, colons, colons, colons]), true);
      expect(performance.now() - started).toBeLessThan(3000);
      expect(result).toMatchObject({ parse: 'full', snippet: 'FYI. Inner body. Inner body. Inner body.' });
      expect(result.attachments).toEqual([{ mimeType: 'message/rfc822', size: lines.length }]);
    });
  });

  describe('option checks', () => {
    it('refuses options that are not non-negative integers', () => {
      expect(() => new PostalMimeParser({ snippetChars: -1 })).toThrow(TypeError);
      expect(() => new PostalMimeParser({ maxAttachments: 1.5 })).toThrow(TypeError);
    });
  });

  describe('on damaged input', () => {
    it('never throws and always answers a well-formed result (corpus messages cut and flipped at random)', async () => {
      const rng = new Random(20240601);
      const sources = standardCorpus(3, { bigBytes: 16 * 1024, longLineBytes: 8 * 1024 });
      const outcomes = new Set<string>();
      for (let i = 0; i < 300; i++) {
        const source = rng.pick(sources).raw;
        const raw = Buffer.from(source.subarray(0, rng.int(0, source.length)));
        for (let flips = rng.int(0, 20); flips > 0 && raw.length > 0; flips--) {
          raw[rng.int(0, raw.length - 1)] = rng.pick([
            0x00,
            0x0a,
            0x0d,
            0x2d,
            0x3a,
            0x3d,
            0x80,
            0xff,
            rng.int(0, 255),
          ]);
        }
        const complete = rng.float() < 0.8;
        const result = await parser.parse(raw, complete);
        expect(['full', 'headers-only', 'failed']).toContain(result.parse);
        expect(
          Array.isArray(result.to) && Array.isArray(result.cc) && Array.isArray(result.attachments),
        ).toBe(true);
        expect(typeof result.snippet).toBe('string');
        expect(result.snippet.length).toBeLessThanOrEqual(200);
        if (result.parse === 'failed') expect(result.parseError).toEqual(expect.any(String));
        outcomes.add(result.parse);
      }
      expect(outcomes).toEqual(new Set(['full', 'headers-only', 'failed']));
    });

    it('never throws on random bytes', async () => {
      const rng = new Random(7);
      for (let i = 0; i < 100; i++) {
        const result = await parser.parse(rng.bytes(rng.int(0, 4096)), rng.float() < 0.5);
        expect(['full', 'headers-only', 'failed']).toContain(result.parse);
      }
    });
  });
});
