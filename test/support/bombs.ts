/**
 * Hostile messages ("MIME bombs") for the reliability tests: each is deterministic, ends with CRLF (Dovecot's POP3
 * adds one when it is missing, see corpus.ts) and carries a plain `X-Bomb: <name>` header and a Subject that starts
 * with `[bomb:<name>]`, placed before the hostile part so a bounded reader still finds them.
 *
 * The big ones are written into one Buffer allocated at its final size (`Buffer.fill` for the repeated parts), never
 * through strings or repeated `Buffer.concat`: the 100 MB message is built in well under a second and is held once.
 */

const CRLF = '\r\n';

export interface Bomb {
  name: string;
  raw: Buffer;
  /** What a reader must still get out of the headers, however the body went. */
  expect: { subjectIncludes: string; messageId: string; fromAddress: string };
}

function envelope(name: string, extra: string[] = []): { head: string; expect: Bomb['expect'] } {
  const messageId = `<bomb-${name}@tributary.test>`;
  const head = [
    'From: Bomb Maker <bombs@example.com>',
    'To: Ann <ann@example.com>',
    `Subject: [bomb:${name}] hostile message`,
    'Date: Tue, 1 Jul 2025 10:52:37 +0000',
    `Message-ID: ${messageId}`,
    `X-Bomb: ${name}`,
    'MIME-Version: 1.0',
    ...extra,
  ]
    .map((l) => `${l}${CRLF}`)
    .join('');
  return {
    head,
    expect: { subjectIncludes: `[bomb:${name}]`, messageId, fromAddress: 'bombs@example.com' },
  };
}

/** A string written as is (latin1), or `pattern` repeated over `bytes` bytes (a multiple of its length). */
type Piece = string | { pattern: string; bytes: number };

/** Writes the pieces into one Buffer of exactly their summed size. */
function assemble(pieces: Piece[]): Buffer {
  const size = pieces.reduce((n, p) => n + (typeof p === 'string' ? p.length : p.bytes), 0);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const p of pieces) {
    if (typeof p === 'string') at += out.write(p, at, 'latin1');
    else {
      out.fill(p.pattern, at, at + p.bytes, 'latin1');
      at += p.bytes;
    }
  }
  if (at !== size) throw new Error(`assemble wrote ${at} of ${size} bytes`);
  return out;
}

/**
 * `depth` multiparts nested in one another (each the only part of its parent), a text part at the bottom; with
 * `closed: false` no close delimiter at all (a reader must still stop at the end), which halves the lines that
 * start with `--`. Built
 * in linear time: corpus.ts's `deepNesting` re-copies the whole inner message at every level, which at 10,000
 * levels is gigabytes of copying.
 */
export function deepNestingBomb(depth = 10_000, options: { closed?: boolean } = {}): Bomb {
  const name = 'deep-nesting';
  const env = envelope(name);
  const open: string[] = [];
  const close: string[] = [];
  for (let level = 1; level <= depth; level++) {
    const boundary = `n${level}`;
    const header = level === 1 ? '' : `Content-Type: multipart/mixed; boundary="${boundary}"${CRLF}${CRLF}`;
    open.push(`${header}--${boundary}${CRLF}`);
    if (options.closed !== false) close.push(`${CRLF}--${boundary}--${CRLF}`);
  }
  const top = `Content-Type: multipart/mixed; boundary="n1"${CRLF}${CRLF}`;
  const leaf = `Content-Type: text/plain; charset=us-ascii${CRLF}${CRLF}The bottom of a ${depth}-deep message.`;
  const end = options.closed === false ? CRLF : close.reverse().join('');
  return {
    name,
    raw: assemble([env.head, top, open.join(''), leaf, end]),
    expect: env.expect,
  };
}

/**
 * One multipart/mixed with `parts` empty sibling parts: each is `--b` CRLF CRLF, 7 bytes, so a million of them
 * (7 MB) still fit under the sync's 8 MB parse limit and reach the parser whole.
 */
export function siblingPartsBomb(parts = 1_000_000): Bomb {
  const name = 'sibling-parts';
  const env = envelope(name, ['Content-Type: multipart/mixed; boundary="b"']);
  const part = `--b${CRLF}${CRLF}`;
  return {
    name,
    raw: assemble([env.head, CRLF, { pattern: part, bytes: part.length * parts }, `--b--${CRLF}`]),
    expect: env.expect,
  };
}

/**
 * A header block of about `bytes` bytes: after the ordinary fields, one `To:` field holding tens of thousands of
 * addresses, folded into lines of 998 characters at most (what RFC 5322 allows), then a short text body.
 * The address list is the costly kind of header: every reader of it parses addresses.
 */
export function hugeHeaderBomb(bytes = 10 * 1024 * 1024): Bomb {
  const name = 'huge-header';
  const env = envelope(name);
  const address = 'Recipient Name <recipient@example.com>, '; // 40 bytes
  const perLine = Math.floor(990 / address.length);
  const line = ` ${address.repeat(perLine)}${CRLF}`;
  const lines = Math.max(1, Math.floor((bytes - env.head.length) / line.length));
  const body = `Content-Type: text/plain; charset=us-ascii${CRLF}${CRLF}Under a ${bytes}-byte header.${CRLF}`;
  return {
    name,
    raw: assemble([
      env.head,
      `To: last@example.com,${CRLF}`,
      { pattern: line, bytes: line.length * lines },
      body,
    ]),
    expect: env.expect,
  };
}

/**
 * A multipart/mixed whose attachment is base64 on a single line of `bytes` bytes (no line break at all, where
 * RFC 2045 allows 76 characters), after a short text part. The line repeats a 64-character base64 pattern.
 */
export function longBase64LineBomb(bytes = 100 * 1024 * 1024): Bomb {
  const name = 'long-base64-line';
  const env = envelope(name, ['Content-Type: multipart/mixed; boundary="long-line"']);
  const pattern = Buffer.from('0123456789abcdef0123456789abcdef0123456789abcdef', 'latin1').toString(
    'base64',
  );
  const line = Math.floor(bytes / 4) * 4;
  return {
    name,
    raw: assemble([
      env.head,
      CRLF,
      `--long-line${CRLF}Content-Type: text/plain; charset=us-ascii${CRLF}${CRLF}`,
      `The attachment is one base64 line of ${line} bytes.${CRLF}`,
      `--long-line${CRLF}Content-Type: application/octet-stream; name="line.bin"${CRLF}`,
      `Content-Disposition: attachment; filename="line.bin"${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}`,
      { pattern, bytes: line },
      `${CRLF}--long-line--${CRLF}`,
    ]),
    expect: env.expect,
  };
}

/** Bytes from strings (latin1, so `\xff` is one byte) and byte arrays. */
function bin(...parts: Array<string | number[]>): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
}

/**
 * Charsets that do not exist or that no decoder knows, in headers and in body parts: encoded words in
 * `x-nonexistent` and UTF-7, encoded words with broken base64 or no end, raw bytes that are not UTF-8 in a
 * header, and text parts declared `x-nonexistent`, `utf-7` and `utf-8` (with invalid UTF-8 in it), plus an
 * RFC 2231 filename in an unknown charset. `readable` lists what must survive in the Subject.
 */
export function invalidCharsetsBomb(): Bomb & { readable: string[] } {
  const name = 'invalid-charsets';
  const b = 'charsets';
  const raw = bin(
    'From: =?x-nonexistent?Q?Bomb_Maker?= <bombs@example.com>\r\n',
    'To: =?utf-7?B?K0FHRUFZZ0JqLQ==?= <ann@example.com>\r\n',
    `Subject: [bomb:${name}] plain =?x-nonexistent?B?aGVsbG8=?= =?utf-7?Q?+AGEAYgBj-?=`,
    ' =?UTF-8?B?####?= =?UTF-8?Q?unterminated_word ',
    [0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80],
    ' =?UTF-8?B?w6k=?= end\r\n',
    'Date: Tue, 1 Jul 2025 10:52:37 +0000\r\n',
    `Message-ID: <bomb-${name}@tributary.test>\r\n`,
    `X-Bomb: ${name}\r\n`,
    'MIME-Version: 1.0\r\n',
    `Content-Type: multipart/mixed; boundary="${b}"\r\n`,
    '\r\n',
    `--${b}\r\n`,
    'Content-Type: text/plain; charset=x-nonexistent\r\n',
    'Content-Transfer-Encoding: 8bit\r\n\r\n',
    'First part in a charset nobody has heard of: ',
    [0xe9, 0xe8, 0x80, 0xff],
    '\r\n',
    `--${b}\r\n`,
    'Content-Type: text/plain; charset=utf-7\r\n\r\n',
    'Second part in UTF-7: Hi Mom -+Jjo--!\r\n',
    `--${b}\r\n`,
    'Content-Type: text/html; charset="utf-8"\r\n',
    'Content-Transfer-Encoding: 8bit\r\n\r\n',
    '<p>Third part, invalid UTF-8: ',
    [0xc3, 0x28, 0xa0, 0xa1, 0xf0, 0x28, 0x8c, 0xbc, 0xed, 0xa0, 0x80],
    '</p>\r\n',
    `--${b}\r\n`,
    "Content-Type: application/octet-stream; name*=x-unknown''%FF%FEfile.bin\r\n",
    "Content-Disposition: attachment; filename*=x-unknown''%FF%FEfile.bin\r\n",
    'Content-Transfer-Encoding: base64\r\n\r\n',
    'AAECAwQF\r\n',
    `--${b}--\r\n`,
  );
  return {
    name,
    raw,
    expect: {
      subjectIncludes: `[bomb:${name}] plain`,
      messageId: `<bomb-${name}@tributary.test>`,
      fromAddress: 'bombs@example.com',
    },
    readable: [`[bomb:${name}] plain`, 'end'],
  };
}

/** An ordinary small message, delivered next to a bomb to show the source keeps working. */
export function normalMessage(tag: string): Buffer {
  return Buffer.from(
    [
      'From: Ann <ann@example.com>',
      'To: Bob <bob@example.com>',
      `Subject: [normal:${tag}] after the bomb`,
      'Date: Tue, 1 Jul 2025 11:00:00 +0000',
      `Message-ID: <normal-${tag}@tributary.test>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      `An ordinary message next to the ${tag} bomb.`,
      '',
    ].join(CRLF),
    'utf8',
  );
}

/** Bytes the sync hands its parser (functions/core/sync.ts `store()`): all of a message up to the parse limit. */
export const SYNC_PARSE_LIMIT_BYTES = 8 * 1024 * 1024;
/** ... and of a bigger one only this much, for its header block. */
export const SYNC_HEADER_KEEP_BYTES = 1024 * 1024;

/** What the sync passes to `parser.parse(head, complete)` for a message of these bytes, with the default limits. */
export function syncParserInput(raw: Buffer): { head: Buffer; complete: boolean } {
  return raw.length <= SYNC_PARSE_LIMIT_BYTES
    ? { head: raw, complete: true }
    : { head: raw.subarray(0, SYNC_HEADER_KEEP_BYTES), complete: false };
}
