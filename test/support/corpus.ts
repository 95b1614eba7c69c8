/**
 * A deterministic test-mail generator: every message is built from a seed (no real mail, no clock, no
 * crypto randomness), with CRLF line ends, and carries what a parser should read from it (`expect`).
 *
 * Every case except `garbage` has an `X-Corpus-Name: <name>` header and a Subject that contains
 * `[corpus:<name>]` once decoded. `bulkCorpus` messages use `X-Corpus-Name: bulk-<i>` and `[bulk:<i>]`.
 *
 * Messages end with CRLF, except `no-trailing-crlf`. Dovecot 2.3.19 with that one (checked with the harness's
 * Dovecot, delivered into the Maildir and by IMAP APPEND alike): IMAP RFC822.SIZE and BODY[] are the exact bytes,
 * no CRLF added; POP3 LIST gives the same size, but RETR sends the last line followed by CRLF and the `.` line,
 * so a POP3 reader that keeps every line end gets 2 bytes more than LIST says, the CRLF before the terminator
 * being indistinguishable from the message's own. Only the LIST size tells them apart.
 */
import type { AttachmentInfo } from '../../functions/core/model';

// ---------------------------------------------------------------------------------------------------------
// Randomness

/** mulberry32: a tiny 32-bit PRNG; `next()` returns an unsigned 32-bit integer. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** FNV-1a over a string: derives independent seeds per case, so adding a case changes no other. */
function hash32(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export class Random {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  /** A generator for one named part of the output, independent of how much this one was used. */
  static for(seed: number, name: string): Random {
    return new Random(hash32(name, hash32(String(seed >>> 0))));
  }

  uint32(): number {
    return this.next();
  }

  /** In [0, 1). */
  float(): number {
    return this.next() / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)]!;
  }

  hex(chars: number): string {
    let out = '';
    while (out.length < chars) out += this.next().toString(16).padStart(8, '0');
    return out.slice(0, chars);
  }

  bytes(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let i = 0;
    for (; i + 4 <= length; i += 4) out.writeUInt32LE(this.next(), i);
    if (i < length) {
      const last = this.next();
      for (let k = 0; i < length; i++, k++) out[i] = (last >>> (8 * k)) & 0xff;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Text

const WORDS = (
  'the of and to in is for on that with as by this from at be are was it an or have not which one all ' +
  'mail message inbox server folder account sync quota upload bucket table lease report weekly meeting ' +
  'invoice project budget schedule draft review notes agenda follow update please thanks regards team ' +
  'customer order shipping delivery tracking number reference payment receipt summary question answer ' +
  'tomorrow today morning afternoon evening friday monday office remote release version feature issue'
).split(' ');

function sentence(rng: Random): string {
  const n = rng.int(6, 14);
  const words: string[] = [];
  for (let i = 0; i < n; i++) words.push(rng.pick(WORDS));
  const text = words.join(' ');
  return `${text[0]!.toUpperCase()}${text.slice(1)}${rng.pick(['.', '.', '.', '?', '!'])}`;
}

/** Lines of at most `width` characters, broken at spaces. */
function wrap(text: string, width = 72): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/** Paragraphs of wrapped sentences, about `chars` characters (at least one sentence). */
function paragraphs(rng: Random, chars: number): string[] {
  const lines: string[] = [];
  let size = 0;
  do {
    const sentences: string[] = [];
    const count = rng.int(2, 6);
    for (let i = 0; i < count; i++) sentences.push(sentence(rng));
    for (const l of wrap(sentences.join(' '))) {
      lines.push(l);
      size += l.length + 2;
    }
    lines.push('');
    size += 2;
  } while (size < chars);
  lines.pop();
  return lines;
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

// ---------------------------------------------------------------------------------------------------------
// Encodings

const CRLF = '\r\n';

/** Base64 in lines of 76 characters, CRLF-separated, no trailing CRLF. */
function base64Lines(data: Buffer): string {
  const b64 = data.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return lines.join(CRLF);
}

/** Quoted-printable (RFC 2045) of UTF-8 text whose lines are separated by `\n`; output uses CRLF. */
function quotedPrintable(text: string): string {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (
      line.length <= 76 &&
      /^[\x21-\x3c\x3e-\x7e]?(?:[\x20-\x3c\x3e-\x7e]*[\x21-\x3c\x3e-\x7e])?$/.test(line)
    ) {
      out.push(line); // printable ASCII without `=` or trailing space: already quoted-printable
      continue;
    }
    const bytes = Buffer.from(line, 'utf8');
    let current = '';
    bytes.forEach((b, i) => {
      const last = i === bytes.length - 1;
      const literal = (b >= 33 && b <= 126 && b !== 0x3d) || ((b === 0x20 || b === 0x09) && !last);
      const token = literal ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
      if (current.length + token.length > 75) {
        out.push(`${current}=`);
        current = '';
      }
      current += token;
    });
    out.push(current);
  }
  return out.join(CRLF);
}

type Charset = 'UTF-8' | 'ISO-8859-1';

function charsetBytes(text: string, charset: Charset): Buffer {
  if (charset === 'UTF-8') return Buffer.from(text, 'utf8');
  if ([...text].some((ch) => ch.codePointAt(0)! > 0xff)) throw new Error(`not in ISO-8859-1: ${text}`);
  return Buffer.from(text, 'latin1');
}

/**
 * RFC 2047 encoded words (B or Q), folded with CRLF SP so that no line is longer than 76 characters (an encoded
 * word at most 75); `lineStart` is how much of the first line is already used (`Subject: ` is 9).
 */
export function encodedWords(
  text: string,
  encoding: 'B' | 'Q',
  charset: Charset = 'UTF-8',
  lineStart = 0,
): string {
  const prefix = `=?${charset}?${encoding}?`;
  const words: string[] = [];
  const room = () => (words.length === 0 ? Math.min(75, 76 - lineStart) : 75) - prefix.length - 2;
  let chunk: Buffer[] = [];
  const encode = (bytes: Buffer) =>
    encoding === 'B'
      ? bytes.toString('base64')
      : [...bytes]
          .map((b) =>
            b === 0x20
              ? '_'
              : /[A-Za-z0-9!*+\-/]/.test(String.fromCharCode(b))
                ? String.fromCharCode(b)
                : `=${b.toString(16).toUpperCase().padStart(2, '0')}`,
          )
          .join('');
  const flush = () => {
    if (chunk.length) words.push(`${prefix}${encode(Buffer.concat(chunk))}?=`);
    chunk = [];
  };
  for (const ch of text) {
    const bytes = charsetBytes(ch, charset);
    const next = encode(Buffer.concat([...chunk, bytes])).length;
    if (next > room() && chunk.length) flush();
    chunk.push(bytes);
  }
  flush();
  return words.join(`${CRLF} `);
}

/** RFC 2231 parameter with continuations: `name*0*=UTF-8''...; name*1*=...`, sections of at most 40 chars. */
function rfc2231(name: string, value: string): string {
  const attrChar = /[A-Za-z0-9!#$&+\-.^_`|~]/;
  const tokens = [...Buffer.from(value, 'utf8')].map((b) => {
    const c = String.fromCharCode(b);
    return attrChar.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  });
  const sections: string[] = [];
  let current = '';
  for (const t of tokens) {
    if (current.length + t.length > 40) {
      sections.push(current);
      current = '';
    }
    current += t;
  }
  sections.push(current);
  return sections.map((s, i) => `${name}*${i}*=${i === 0 ? "UTF-8''" : ''}${s}`).join(`;${CRLF} `);
}

/**
 * The windows-1252 characters at 0x80-0x9F (WHATWG), where it differs from Latin-1. Spelled out: Node's
 * TextDecoder('windows-1252') is Latin-1 since 20.18.3 / 22.13.0 (nodejs/node#60888).
 */
const CP1252_HIGH = new Map<string, number>(
  [...'€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ'].map((ch, i) => [ch, 0x80 + i]),
);

/** windows-1252 bytes of a string. */
function windows1252(text: string): Buffer {
  return Buffer.from(
    [...text].map((ch) => {
      const code = CP1252_HIGH.get(ch) ?? ch.codePointAt(0)!;
      if (code > 0xff || (code >= 0x80 && code <= 0x9f && !CP1252_HIGH.has(ch))) {
        throw new Error(`not in windows-1252: ${ch}`);
      }
      return code;
    }),
  );
}

// ---------------------------------------------------------------------------------------------------------
// Message assembly

type HeaderValue = string | Buffer;
type Header = [name: string, value: HeaderValue];

function headerBlock(headers: Header[]): Buffer {
  return Buffer.concat(
    headers.flatMap(([name, value]) => [
      Buffer.from(`${name}: `),
      typeof value === 'string' ? Buffer.from(value, 'utf8') : value,
      Buffer.from(CRLF),
    ]),
  );
}

/** A MIME entity: its headers, an empty line, the body. */
function entity(headers: Header[], body: Buffer | string): Buffer {
  return Buffer.concat([
    headerBlock(headers),
    Buffer.from(CRLF),
    typeof body === 'string' ? Buffer.from(body, 'utf8') : body,
  ]);
}

/** A multipart body: each part followed by the delimiter (whose leading CRLF belongs to the delimiter). */
function multipartBody(boundary: string, parts: Buffer[]): Buffer {
  const pieces: Buffer[] = [Buffer.from(`This is a multi-part message in MIME format.${CRLF}`)];
  for (const part of parts) pieces.push(Buffer.from(`--${boundary}${CRLF}`), part, Buffer.from(CRLF));
  pieces.push(Buffer.from(`--${boundary}--${CRLF}`));
  return Buffer.concat(pieces);
}

export interface ExpectedAttachment extends AttachmentInfo {
  /**
   * For a 7bit/8bit part: its line breaks. `size` is the part's exact content (CRLF line ends); a parser that
   * hands such content with LF line ends counts up to `lines` (+1) fewer bytes.
   */
  lines?: number;
}

/** What a parser should read from a corpus message. */
export interface CorpusExpectation {
  /** The decoded Subject; absent when the message has none (garbage). */
  subject?: string;
  /** The Message-ID header value, angle brackets included. */
  messageId?: string;
  /** The Date header as ISO 8601 (UTC, milliseconds). */
  date?: string;
  from?: { name?: string; address: string };
  /** Attachments in document order (inline images of a multipart/related excluded). */
  attachments: ExpectedAttachment[];
  /** What the text snippet starts with (whitespace collapsed). */
  snippetStart?: string;
}

export interface CorpusMessage {
  name: string;
  raw: Buffer;
  expect: CorpusExpectation;
}

interface Envelope {
  headers: Header[];
  expect: Omit<CorpusExpectation, 'attachments' | 'snippetStart'>;
}

const SENDERS: Array<{ header: string; name?: string; address: string }> = [
  { header: 'Ann Example <ann@example.com>', name: 'Ann Example', address: 'ann@example.com' },
  { header: 'bob@example.org', address: 'bob@example.org' },
  {
    header: `${encodedWords('Jürgen Müller', 'Q')} <jurgen@example.de>`,
    name: 'Jürgen Müller',
    address: 'jurgen@example.de',
  },
  {
    header: `${encodedWords('Zoë Ångström', 'B')} <zoe@example.se>`,
    name: 'Zoë Ångström',
    address: 'zoe@example.se',
  },
  { header: '"Doe, Jane" <jane.doe@example.net>', name: 'Doe, Jane', address: 'jane.doe@example.net' },
];

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const TWO = (n: number) => String(n).padStart(2, '0');

/** An RFC 5322 date in 2024 in one of a few zones, and the same instant in ISO 8601. */
function mailDate(rng: Random): { header: string; iso: string } {
  const instant = Date.UTC(2024, 0, 1) + rng.int(0, 366 * 86400 - 1) * 1000;
  const offset = rng.pick([0, 60, 120, -300, -480, 330]);
  const local = new Date(instant + offset * 60_000);
  const zone = `${offset < 0 ? '-' : '+'}${TWO(Math.floor(Math.abs(offset) / 60))}${TWO(Math.abs(offset) % 60)}`;
  const header =
    `${DAYS[local.getUTCDay()]}, ${local.getUTCDate()} ${MONTHS[local.getUTCMonth()]} ${local.getUTCFullYear()} ` +
    `${TWO(local.getUTCHours())}:${TWO(local.getUTCMinutes())}:${TWO(local.getUTCSeconds())} ${zone}`;
  return { header, iso: new Date(instant).toISOString() };
}

function messageIdFor(name: string, rng: Random): string {
  return `<${name}.${rng.hex(12)}@corpus.tributary.test>`;
}

interface EnvelopeOptions {
  /** The Subject header value as written (raw bytes allowed), and the decoded Subject. */
  subject?: { header: HeaderValue; decoded: string };
  /** null: no Message-ID header. */
  messageId?: string | null;
  date?: boolean;
  from?: { header: HeaderValue; name?: string; address: string };
  /** Headers after the common ones (Content-Type...). */
  content?: Header[];
}

function envelope(name: string, rng: Random, options: EnvelopeOptions = {}): Envelope {
  const subject = options.subject ?? {
    header: `[corpus:${name}] ${sentence(rng)}`,
    decoded: '',
  };
  const decodedSubject = subject.decoded || (typeof subject.header === 'string' ? subject.header : '');
  const from = options.from ?? rng.pick(SENDERS);
  const date = options.date === false ? undefined : mailDate(rng);
  const messageId = options.messageId === null ? undefined : (options.messageId ?? messageIdFor(name, rng));
  const headers: Header[] = [
    ['Return-Path', `<${from.address}>`],
    ['From', from.header],
    ['To', 'Tributary Inbox <inbox@tributary.test>'],
    ['Subject', subject.header],
  ];
  if (date) headers.push(['Date', date.header]);
  if (messageId) headers.push(['Message-ID', messageId]);
  headers.push(['X-Corpus-Name', name], ['MIME-Version', '1.0'], ...(options.content ?? []));
  const expect: Envelope['expect'] = {
    subject: decodedSubject,
    from: from.name === undefined ? { address: from.address } : { name: from.name, address: from.address },
  };
  if (date) expect.date = date.iso;
  if (messageId) expect.messageId = messageId;
  return { headers, expect };
}

const TEXT_PLAIN: Header[] = [
  ['Content-Type', 'text/plain; charset=utf-8'],
  ['Content-Transfer-Encoding', '7bit'],
];

function greeting(name: string): string {
  return `Hello from ${name}.`;
}

/** A simple text/plain message whose body is `lines` (joined with CRLF, a final CRLF added). */
function plainMessage(
  name: string,
  seed: number,
  lines: (rng: Random) => string[],
  opts: EnvelopeOptions = {},
) {
  const rng = Random.for(seed, name);
  const env = envelope(name, rng, { content: TEXT_PLAIN, ...opts });
  const body = lines(rng);
  return {
    name,
    raw: entity(env.headers, body.join(CRLF) + CRLF),
    expect: { ...env.expect, attachments: [], snippetStart: greeting(name) },
  } satisfies CorpusMessage;
}

// ---------------------------------------------------------------------------------------------------------
// The cases

export function plainText(seed: number): CorpusMessage {
  return plainMessage('plain-text', seed, (rng) => [greeting('plain-text'), '', ...paragraphs(rng, 1500)]);
}

export function htmlOnly(seed: number): CorpusMessage {
  const name = 'html-only';
  const rng = Random.for(seed, name);
  const env = envelope(name, rng, {
    content: [
      ['Content-Type', 'text/html; charset=utf-8'],
      ['Content-Transfer-Encoding', 'quoted-printable'],
    ],
  });
  const paras = paragraphs(rng, 1200)
    .join(' ')
    .split('  ')
    .map((p) => `<p>${escapeHtml(p.trim())}</p>`);
  const html = [
    '<!DOCTYPE html>',
    '<html><head><meta charset="utf-8"><title>This title is not text</title>',
    '<style>p { color: #333; } .hidden { display: none; }</style>',
    '<script>document.write("no script text");</script></head>',
    `<body><!-- a comment --><div><p>Hello from html-only &mdash; caf&eacute; &amp; <b>cr</b>&#232;me &#x263A;</p>`,
    ...paras,
    '<p>Visit <a href="https://example.com/?a=1&amp;b=2">our site</a>.</p></div></body></html>',
  ].join('\n');
  return {
    name,
    raw: entity(env.headers, quotedPrintable(html) + CRLF),
    expect: { ...env.expect, attachments: [], snippetStart: 'Hello from html-only — café & crème ☺' },
  };
}

/** Bytes that look like a small PDF: a header, random binary, a trailer. */
function pdfLike(rng: Random, size: number): Buffer {
  const head = Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1');
  const tail = Buffer.from('\n%%EOF\n');
  return Buffer.concat([head, rng.bytes(Math.max(0, size - head.length - tail.length)), tail]);
}

export function alternativeWithAttachments(seed: number): CorpusMessage {
  const name = 'alternative-attachments';
  const rng = Random.for(seed, name);
  const mixed = `mixed-${rng.hex(16)}`;
  const alternative = `alt-${rng.hex(16)}`;
  const env = envelope(name, rng, {
    content: [['Content-Type', `multipart/mixed; boundary="${mixed}"`]],
  });

  const text = [greeting(name), '(text part)', '', ...paragraphs(rng, 600)].join(CRLF);
  const html = `<html><body><p>${escapeHtml(greeting(name))} (html part)</p><p>${escapeHtml(sentence(rng))}</p></body></html>`;
  const alternativePart = entity(
    [['Content-Type', `multipart/alternative; boundary="${alternative}"`]],
    multipartBody(alternative, [
      entity(TEXT_PLAIN, text),
      entity(
        [
          ['Content-Type', 'text/html; charset=utf-8'],
          ['Content-Transfer-Encoding', 'quoted-printable'],
        ],
        quotedPrintable(html),
      ),
    ]),
  );

  const pdfName = `report-${rng.int(1000, 9999)}.pdf`;
  const pdf = pdfLike(rng, rng.int(2048, 8192));
  const pdfPart = entity(
    [
      ['Content-Type', `application/pdf; name="${pdfName}"`],
      ['Content-Disposition', `attachment; filename="${pdfName}"`],
      ['Content-Transfer-Encoding', 'base64'],
    ],
    base64Lines(pdf),
  );

  const noteName = 'Résumé – Zürich 日本語 notes.txt';
  const note = Buffer.from(`Notes for ${noteName}${CRLF}${paragraphs(rng, 400).join(CRLF)}${CRLF}`, 'utf8');
  const notePart = entity(
    [
      ['Content-Type', `text/plain; charset=utf-8;${CRLF} name="${encodedWords(noteName, 'B')}"`],
      ['Content-Disposition', `attachment;${CRLF} ${rfc2231('filename', noteName)}`],
      ['Content-Transfer-Encoding', 'base64'],
    ],
    base64Lines(note),
  );

  return {
    name,
    raw: entity(env.headers, multipartBody(mixed, [alternativePart, pdfPart, notePart])),
    expect: {
      ...env.expect,
      snippetStart: `${greeting(name)} (text part)`,
      attachments: [
        { filename: pdfName, mimeType: 'application/pdf', size: pdf.length },
        { filename: noteName, mimeType: 'text/plain', size: note.length },
      ],
    },
  };
}

function encodedSubjectCase(
  name: string,
  seed: number,
  header: (decoded: string) => string,
  decoded: string,
) {
  const full = `[corpus:${name}] ${decoded}`;
  return plainMessage(name, seed, (rng) => [greeting(name), '', ...paragraphs(rng, 400)], {
    subject: { header: header(full), decoded: full },
  });
}

/** Subject as UTF-8 B encoded words, with a non-BMP character (split across words only at code points). */
export function subjectUtf8B(seed: number): CorpusMessage {
  return encodedSubjectCase(
    'subject-utf8-b',
    seed,
    (s) => encodedWords(s, 'B', 'UTF-8', 'Subject: '.length),
    'Grüße aus Köln — 日本語のメール 😀 und noch viel mehr Text, damit es mehrere Wörter werden',
  );
}

/** Subject with a plain ASCII start followed by UTF-8 Q encoded words. */
export function subjectUtf8Q(seed: number): CorpusMessage {
  const name = 'subject-utf8-q';
  const tail = 'Crème brûlée für alle: ½ Preis, €3 — ça va?';
  const full = `[corpus:${name}] ${tail}`;
  return plainMessage(name, seed, (rng) => [greeting(name), '', ...paragraphs(rng, 400)], {
    subject: {
      header: `[corpus:${name}] ${encodedWords(tail, 'Q', 'UTF-8', `Subject: [corpus:${name}] `.length)}`,
      decoded: full,
    },
  });
}

export function subjectLatin1Q(seed: number): CorpusMessage {
  return encodedSubjectCase(
    'subject-latin1-q',
    seed,
    (s) => encodedWords(s, 'Q', 'ISO-8859-1', 'Subject: '.length),
    'Déjà vu à Montréal, ça coûte 5 £ « non »',
  );
}

/** Raw UTF-8 in Subject and From (RFC 6532, as sent by SMTPUTF8 servers). */
export function header8bitUtf8(seed: number): CorpusMessage {
  const name = 'header-8bit-utf8';
  const subject = `[corpus:${name}] Grüße 日本 ✓`;
  return plainMessage(name, seed, (rng) => [greeting(name), '', ...paragraphs(rng, 400)], {
    subject: { header: Buffer.from(subject, 'utf8'), decoded: subject },
    from: {
      header: Buffer.from('Jürgen Müller <jurgen@example.de>', 'utf8'),
      name: 'Jürgen Müller',
      address: 'jurgen@example.de',
    },
  });
}

/** Raw Latin-1 bytes in the Subject: invalid, common, and not UTF-8. */
export function header8bitLatin1(seed: number): CorpusMessage {
  const name = 'header-8bit-latin1';
  const subject = `[corpus:${name}] Café crème à emporter`;
  return plainMessage(name, seed, (rng) => [greeting(name), '', ...paragraphs(rng, 400)], {
    subject: { header: charsetBytes(subject, 'ISO-8859-1'), decoded: subject },
  });
}

function eightBitBody(
  name: string,
  seed: number,
  charset: string,
  encode: (s: string) => Buffer,
  lines: string[],
) {
  const rng = Random.for(seed, name);
  const env = envelope(name, rng, {
    content: [
      ['Content-Type', `text/plain; charset=${charset}`],
      ['Content-Transfer-Encoding', '8bit'],
    ],
  });
  const body = [...lines, '', ...paragraphs(rng, 600)].join(CRLF) + CRLF;
  return {
    name,
    raw: entity(env.headers, encode(body)),
    expect: { ...env.expect, attachments: [], snippetStart: lines[0]! },
  } satisfies CorpusMessage;
}

/** text/plain; charset=iso-8859-1, 8bit: raw 0xE9 etc. in the body, not valid UTF-8. */
export function latin1Body(seed: number): CorpusMessage {
  return eightBitBody('body-latin1-8bit', seed, 'iso-8859-1', (s) => charsetBytes(s, 'ISO-8859-1'), [
    'Voilà: hello from body-latin1-8bit, café crème et déjà vu.',
    'Ça coûte cher; naïve façade, señor, año, über, Straße, Ærøskøbing.',
  ]);
}

/** text/plain; charset=windows-1252, 8bit: € (0x80), curly quotes, dashes, ellipsis, ™. */
export function windows1252Body(seed: number): CorpusMessage {
  return eightBitBody('body-windows-1252', seed, 'windows-1252', windows1252, [
    'Price: €5 – “quoted” and ‘single’… Brand™ — from body-windows-1252.',
    'Œuvre • bullet „low“ ‚low’.',
  ]);
}

/** Lines beginning with `.`, `..` and `...` (dot-stuffing in POP3 and SMTP). */
export function dotLeadingLines(seed: number): CorpusMessage {
  const name = 'dot-leading';
  return plainMessage(name, seed, (rng) => [
    greeting(name),
    '.hidden-file is a name',
    '..double dot start',
    '...triple dot start',
    '. a dot then a space',
    '.',
    'x',
    ...paragraphs(rng, 300),
    '..',
    '.end',
  ]);
}

/** A line that is only `.`, in the middle and as the very last line (the POP3 terminator, if unstuffed). */
export function dotOnlyLine(seed: number): CorpusMessage {
  const name = 'dot-only-line';
  return plainMessage(name, seed, (rng) => [
    greeting(name),
    '',
    ...paragraphs(rng, 300),
    '.',
    'after the dot',
    '.',
  ]);
}

/** A line that is only `..`, in the middle and as the very last line. */
export function dotDotOnlyLine(seed: number): CorpusMessage {
  const name = 'dotdot-only-line';
  return plainMessage(name, seed, (rng) => [
    greeting(name),
    '',
    ...paragraphs(rng, 300),
    '..',
    'after',
    '..',
  ]);
}

/** One body line of `bytes` bytes (200 KiB by default) without a line break. */
export function longLine(seed: number, bytes = 200 * 1024): CorpusMessage {
  const name = 'long-line';
  return plainMessage(name, seed, (rng) => {
    let line = '';
    while (line.length < bytes) line += `${sentence(rng)} `;
    return [greeting(name), line.slice(0, bytes), 'after the long line'];
  });
}

/** `bigCase` with its expectation; `bytes` is the exact size of `raw`. */
export function bigCase(bytes: number, seed: number): CorpusMessage {
  const name = 'big';
  const rng = Random.for(seed, `${name}:${bytes}`);
  const boundary = `big-${rng.hex(16)}`;
  const env = envelope(name, rng, {
    subject: { header: `[corpus:${name}] ${bytes} bytes`, decoded: `[corpus:${name}] ${bytes} bytes` },
    content: [['Content-Type', `multipart/mixed; boundary="${boundary}"`]],
  });
  const filename = `big-${seed >>> 0}.bin`;
  const attachmentHeaders: Header[] = [
    ['Content-Type', `application/octet-stream; name="${filename}"`],
    ['Content-Disposition', `attachment; filename="${filename}"`],
    ['Content-Transfer-Encoding', 'base64'],
  ];
  const build = (filler: string, data: Buffer) =>
    entity(
      env.headers,
      multipartBody(boundary, [
        entity(TEXT_PLAIN, `${greeting(name)}${CRLF}${filler}${CRLF}`),
        entity(attachmentHeaders, base64Lines(data)),
      ]),
    );
  const encodedSize = (n: number) => {
    const chars = 4 * Math.ceil(n / 3);
    return chars + 2 * Math.max(0, Math.ceil(chars / 76) - 1);
  };
  const fixed = build('', Buffer.alloc(0)).length;
  const room = bytes - fixed;
  if (room < 0) throw new Error(`bigMessage needs at least ${fixed} bytes`);
  let n = Math.floor((room * 57) / 78);
  while (n > 0 && encodedSize(n) > room) n--;
  while (encodedSize(n + 1) <= room) n++;
  const data = rng.bytes(n);
  const raw = build('x'.repeat(room - encodedSize(n)), data);
  if (raw.length !== bytes) throw new Error(`bigMessage built ${raw.length} bytes, not ${bytes}`);
  return {
    name,
    raw,
    expect: {
      ...env.expect,
      snippetStart: greeting(name),
      attachments: [{ filename, mimeType: 'application/octet-stream', size: n }],
    },
  };
}

/** A message of exactly `bytes` bytes: a short text part and one base64 attachment filling the rest. */
export function bigMessage(bytes: number, seed: number): Buffer {
  return bigCase(bytes, seed).raw;
}

/** A forwarded message (message/rfc822, as an attachment) with its own headers, body and attachment. */
export function nestedRfc822(seed: number): CorpusMessage {
  const name = 'nested-rfc822';
  const rng = Random.for(seed, name);
  const outer = `outer-${rng.hex(16)}`;
  const inner = `inner-${rng.hex(16)}`;
  const env = envelope(name, rng, {
    subject: {
      header: `[corpus:${name}] Fwd: the original message`,
      decoded: `[corpus:${name}] Fwd: the original message`,
    },
    content: [['Content-Type', `multipart/mixed; boundary="${outer}"`]],
  });
  const innerDate = mailDate(rng);
  const forwarded = entity(
    [
      ['From', 'Original Sender <original@example.com>'],
      ['To', 'ann@example.com'],
      ['Subject', 'The original message inside nested-rfc822'],
      ['Date', innerDate.header],
      ['Message-ID', messageIdFor(`${name}-inner`, rng)],
      ['MIME-Version', '1.0'],
      ['Content-Type', `multipart/mixed; boundary="${inner}"`],
    ],
    multipartBody(inner, [
      entity(TEXT_PLAIN, `This is the original body.${CRLF}${paragraphs(rng, 300).join(CRLF)}`),
      entity(
        [
          ['Content-Type', 'application/pdf; name="inner.pdf"'],
          ['Content-Disposition', 'attachment; filename="inner.pdf"'],
          ['Content-Transfer-Encoding', 'base64'],
        ],
        base64Lines(pdfLike(rng, 1500)),
      ),
    ]),
  );
  const raw = entity(
    env.headers,
    multipartBody(outer, [
      entity(TEXT_PLAIN, `${greeting(name)}${CRLF}Forwarding the message below.`),
      entity(
        [
          ['Content-Type', 'message/rfc822'],
          ['Content-Disposition', 'attachment; filename="forwarded.eml"'],
        ],
        forwarded,
      ),
    ]),
  );
  const lines = forwarded.toString('latin1').split(CRLF).length - 1;
  return {
    name,
    raw,
    expect: {
      ...env.expect,
      snippetStart: greeting(name),
      attachments: [{ filename: 'forwarded.eml', mimeType: 'message/rfc822', size: forwarded.length, lines }],
    },
  };
}

export function missingMessageId(seed: number): CorpusMessage {
  const name = 'no-message-id';
  return plainMessage(name, seed, (rng) => [greeting(name), '', ...paragraphs(rng, 400)], {
    messageId: null,
  });
}

export function missingDate(seed: number): CorpusMessage {
  const name = 'no-date';
  return plainMessage(name, seed, (rng) => [greeting(name), '', ...paragraphs(rng, 400)], { date: false });
}

/** Two different messages (subject, body, date) with the same Message-ID. */
export function sameMessageIdPair(seed: number): [CorpusMessage, CorpusMessage] {
  const messageId = `<duplicate.${Random.for(seed, 'same-message-id').hex(12)}@corpus.tributary.test>`;
  const make = (name: string) =>
    plainMessage(name, seed, (rng) => [greeting(name), '', ...paragraphs(rng, 400)], { messageId });
  return [make('same-message-id-1'), make('same-message-id-2')];
}

/**
 * Random bytes with a few CRLFs and no header: no CR or LF other than those CRLFs (so no empty line), and no
 * colon (so no line can read as a header field). No X-Corpus-Name: its name is only in the corpus entry.
 */
export function garbage(seed: number, bytes = 4096): CorpusMessage {
  const rng = Random.for(seed, 'garbage');
  const data = rng.bytes(bytes);
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    if (b === 0x0a || b === 0x0d || b === 0x3a) data[i] = 0x80 | (b + 1);
  }
  data[0] = 0x89; // not a header-name character
  for (let k = 0; k < 5; k++) {
    const at = rng.int(1 + k * Math.floor(bytes / 5), (k + 1) * Math.floor(bytes / 5) - 3);
    data[at] = 0x0d;
    data[at + 1] = 0x0a;
    data[at + 2] = 0x80;
  }
  return { name: 'garbage', raw: data, expect: { attachments: [] } };
}

/** A NUL byte in a body line (Dovecot serves it as 0x80 over IMAP, raw over POP3). */
export function nulByte(seed: number): CorpusMessage {
  const name = 'nul-byte';
  return plainMessage(name, seed, (rng) => [greeting(name), 'before\u0000after', ...paragraphs(rng, 300)]);
}

/** The last line has no CRLF. */
export function noTrailingCrlf(seed: number): CorpusMessage {
  const message = plainMessage('no-trailing-crlf', seed, (rng) => [
    greeting('no-trailing-crlf'),
    '',
    ...paragraphs(rng, 300),
    'the last line, without a line break',
  ]);
  return { ...message, raw: message.raw.subarray(0, message.raw.length - 2) };
}

/** `depth` multiparts nested in each other, one text leaf at the bottom (not in the standard corpus). */
export function deepNesting(depth: number, seed: number): CorpusMessage {
  const name = 'deep-nesting';
  const rng = Random.for(seed, name);
  let part = entity(TEXT_PLAIN, `${greeting(name)}${CRLF}`);
  for (let level = depth; level >= 1; level--) {
    const boundary = `level-${level}-${rng.hex(6)}`;
    part = entity(
      [['Content-Type', `multipart/mixed; boundary="${boundary}"`]],
      multipartBody(boundary, [part]),
    );
  }
  const env = envelope(name, rng);
  // `part` is an entity: its Content-Type joins the message's headers.
  const raw = Buffer.concat([headerBlock(env.headers), part]);
  return { name, raw, expect: { ...env.expect, attachments: [], snippetStart: greeting(name) } };
}

// ---------------------------------------------------------------------------------------------------------
// Collections

export interface StandardCorpusOptions {
  /** Size of the `big` case. @default 256 KiB */
  bigBytes?: number;
  /** Length of the `long-line` case's line. @default 200 KiB */
  longLineBytes?: number;
}

/** Every case above (not `deepNesting`), in a fixed order, with unique names. */
export function standardCorpus(seed: number, options: StandardCorpusOptions = {}): CorpusMessage[] {
  const [sameA, sameB] = sameMessageIdPair(seed);
  return [
    plainText(seed),
    htmlOnly(seed),
    alternativeWithAttachments(seed),
    subjectUtf8B(seed),
    subjectUtf8Q(seed),
    subjectLatin1Q(seed),
    header8bitUtf8(seed),
    header8bitLatin1(seed),
    latin1Body(seed),
    windows1252Body(seed),
    dotLeadingLines(seed),
    dotOnlyLine(seed),
    dotDotOnlyLine(seed),
    longLine(seed, options.longLineBytes),
    bigCase(options.bigBytes ?? 256 * 1024, seed),
    nestedRfc822(seed),
    missingMessageId(seed),
    sameA,
    sameB,
    missingDate(seed),
    garbage(seed),
    nulByte(seed),
    noTrailingCrlf(seed),
  ];
}

export interface BulkSizes {
  /** Smallest and largest message without an attachment, in bytes. @default 2 KiB, 20 KiB */
  minBytes: number;
  maxBytes: number;
  /** Share of messages with one attachment. @default 0.1 */
  attachmentRatio: number;
  /** Smallest and largest attachment (decoded), in bytes. @default 50 KiB, 500 KiB */
  minAttachmentBytes: number;
  maxAttachmentBytes: number;
}

export const DEFAULT_BULK_SIZES: BulkSizes = {
  minBytes: 2 * 1024,
  maxBytes: 20 * 1024,
  attachmentRatio: 0.1,
  minAttachmentBytes: 50 * 1024,
  maxAttachmentBytes: 500 * 1024,
};

const ATTACHMENT_KINDS = [
  { ext: 'pdf', mimeType: 'application/pdf' },
  { ext: 'jpg', mimeType: 'image/jpeg' },
  { ext: 'zip', mimeType: 'application/zip' },
  { ext: 'docx', mimeType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document' },
];

/**
 * `count` realistic messages: text, HTML or both, of `minBytes`..`maxBytes` (without the attachment, when
 * there is one), `attachmentRatio` of them with one base64 attachment. Names are `bulk-<i>`, subjects start
 * with `[bulk:<i>]`, Message-IDs are unique.
 */
export function bulkCorpus(count: number, seed: number, sizes: Partial<BulkSizes> = {}): CorpusMessage[] {
  const s: BulkSizes = { ...DEFAULT_BULK_SIZES, ...sizes };
  const out: CorpusMessage[] = [];
  for (let i = 0; i < count; i++) {
    const name = `bulk-${i}`;
    const rng = Random.for(seed, name);
    // A body line costs at most ~160 bytes (HTML and text of an alternative): stay that far under the maximum.
    const target = rng.int(s.minBytes, Math.max(s.minBytes, s.maxBytes - 300));
    const kind = rng.pick(['text', 'text', 'html', 'alternative'] as const);
    const withAttachment = rng.float() < s.attachmentRatio;
    const boundary = `bulk-${rng.hex(16)}`;
    const altBoundary = `bulk-alt-${rng.hex(16)}`;
    const subject = `[bulk:${i}] ${sentence(rng)}`;
    const env = envelope(name, rng, {
      subject: { header: subject, decoded: subject },
      content: withAttachment ? [['Content-Type', `multipart/mixed; boundary="${boundary}"`]] : [],
    });
    const pool = [greeting(name), '', ...paragraphs(rng, target)]; // enough: headers and markup only add
    const htmlPart = (lines: string[]) =>
      entity(
        [
          ['Content-Type', 'text/html; charset=utf-8'],
          ['Content-Transfer-Encoding', 'quoted-printable'],
        ],
        quotedPrintable(
          `<html><body>${lines
            .join('\n')
            .split('\n\n')
            .map((p) => `<p>${escapeHtml(p)}</p>`)
            .join('\n')}</body></html>`,
        ),
      );
    const content = (lines: string[]): Buffer => {
      if (kind === 'text') return entity(TEXT_PLAIN, lines.join(CRLF));
      if (kind === 'html') return htmlPart(lines);
      return entity(
        [['Content-Type', `multipart/alternative; boundary="${altBoundary}"`]],
        multipartBody(altBoundary, [entity(TEXT_PLAIN, lines.join(CRLF)), htmlPart(lines)]),
      );
    };
    // `content` is an entity: its headers join the message's, its body follows the empty line.
    const plain = (k: number) =>
      Buffer.concat([headerBlock(env.headers), content(pool.slice(0, k)), Buffer.from(CRLF)]);
    // The fewest body lines that reach the target size.
    let low = 1;
    let high = pool.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (plain(mid).length >= target) high = mid;
      else low = mid + 1;
    }
    let raw: Buffer = plain(low);
    const attachments: ExpectedAttachment[] = [];
    if (withAttachment) {
      const k = rng.pick(ATTACHMENT_KINDS);
      const filename = `file-${i}.${k.ext}`;
      const data = rng.bytes(rng.int(s.minAttachmentBytes, s.maxAttachmentBytes));
      attachments.push({ filename, mimeType: k.mimeType, size: data.length });
      const attachment = entity(
        [
          ['Content-Type', `${k.mimeType}; name="${filename}"`],
          ['Content-Disposition', `attachment; filename="${filename}"`],
          ['Content-Transfer-Encoding', 'base64'],
        ],
        base64Lines(data),
      );
      raw = entity(env.headers, multipartBody(boundary, [content(pool.slice(0, low)), attachment]));
    }
    out.push({ name, raw, expect: { ...env.expect, attachments, snippetStart: greeting(name) } });
  }
  return out;
}
