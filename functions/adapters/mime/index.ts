import { randomBytes } from 'node:crypto';
import PostalMime from 'postal-mime';
import type { Address, AttachmentInfo, MessageMetadata } from '../../core/model';
import type { MetadataParser } from '../../core/ports';
import { parseMailDate } from './date';
import { elideBinaryParts } from './elide';
import { readHeaderBlock } from './header-block';
import type { HeaderBlock, HeaderField } from './header-block';
import { cut, displayText, htmlToText, snippetOf } from './text';

export interface PostalMimeParserOptions {
  /** Longest snippet, in UTF-16 code units. @default 200 */
  snippetChars?: number;
  /** Most attachments listed; `hasAttachments` still counts them all. @default 100 */
  maxAttachments?: number;
  /**
   * Header bytes considered: the top-level header block (and that of each inline message) is read up to this many
   * bytes, and postal-mime refuses a message whose MIME parts' headers together exceed it. @default 1 MiB
   */
  maxHeaderBytes?: number;
  /** Longest Subject or Message-ID kept, in UTF-16 code units. @default 998 */
  maxFieldChars?: number;
  /**
   * Longest display name, address, attachment filename or MIME type kept. With the other caps it keeps the
   * worst-case metadata well under DynamoDB's 400 KB item. @default 256
   */
  maxNameChars?: number;
  /** Most addresses kept per To and per Cc. @default 100 */
  maxAddresses?: number;
  /** Deepest multipart nesting parsed; deeper mail is `failed` with its headers. @default 32 */
  maxNestingDepth?: number;
  /** Deepest inline message/rfc822 parsed; deeper ones are listed as attachments. @default 3 */
  maxRfc822NestingDepth?: number;
  /**
   * Most inline message/rfc822 parts (forwarded messages, digest entries) parsed as messages, all depths together;
   * the others are listed as attachments. @default 100
   */
  maxInlineMessages?: number;
  /**
   * Most lines beginning with `--` (an upper bound on MIME boundaries) before the body is not parsed at all and
   * the message is `headers-only`: postal-mime bounds nesting, not breadth, and builds an object per part.
   * @default 10000
   */
  maxBoundaryLines?: number;
  /**
   * Most body lines handed to postal-mime, or one per 64 bytes of the message if that is more; the lines of
   * inline messages count again each time they are read. Past it the message is `headers-only`. postal-mime 4.0
   * keeps every line of a 7bit/8bit part as a Blob part of its own (some 11 µs and 1 KB each): 7 MB of 3-byte
   * lines took 33 s and 2.4 GB, where mail in 72-column text or 76-column base64 always fits. @default 120000
   */
  maxLines?: number;
}

const DEFAULTS: Required<PostalMimeParserOptions> = {
  snippetChars: 200,
  maxAttachments: 100,
  maxHeaderBytes: 1024 * 1024,
  maxFieldChars: 998,
  maxNameChars: 256,
  maxAddresses: 100,
  maxNestingDepth: 32,
  maxRfc822NestingDepth: 3,
  maxInlineMessages: 100,
  maxBoundaryLines: 10_000,
  maxLines: 120_000,
};

/** Characters of body text (or HTML) looked at to build the snippet. */
const TEXT_SCAN_CHARS = 64 * 1024;
const HTML_SCAN_CHARS = 1024 * 1024;
const MAX_ERROR_CHARS = 500;
/** Bytes per line a message is allowed beyond maxLines (see there): shorter than any text or base64 column. */
const LINE_ALLOWANCE_BYTES = 64;
/**
 * Characters of From / To / Cc values given to postal-mime's address parser, per field kind: it re-reads the rest
 * of a value for every group (`name:`) it opens, up to 50 deep, so a 1 MB `To: ::::...` took 6 s. 32 KiB holds
 * maxAddresses addresses of 320 characters.
 */
const ADDRESS_SCAN_CHARS = 32 * 1024;
/** Characters of the Subject value RFC 2047 decoded; a Subject is kept to maxFieldChars anyway. */
const SUBJECT_SCAN_CHARS = 64 * 1024;
/** The header fields postal-mime reads to decide how a body is parsed (postal-mime's CONTENT_HEADERS). */
const CONTENT_FIELDS = new Set([
  'content-type',
  'content-transfer-encoding',
  'content-disposition',
  'content-id',
  'content-description',
]);
/** A message with one of these parts is a report: postal-mime lists the message/rfc822 in it, never inlines it. */
const REPORT_TYPES = new Set(['message/delivery-status', 'message/feedback-report']);
const CRLF = Buffer.from('\r\n');

type HeaderMetadata = Pick<MessageMetadata, 'messageId' | 'date' | 'from' | 'to' | 'cc' | 'subject'> & {
  /** Lower-cased media type of the top-level Content-Type, e.g. `multipart/mixed`. */
  mediaType?: string;
};

/**
 * The MetadataParser on postal-mime. The header fields come from our own bounded header-block reader in every
 * mode, so a message reads the same whether its body was parsed, cut off or refused; postal-mime parses the body
 * (text for the snippet, the attachment list). Nothing here throws: a failure is `parse: 'failed'` with
 * `parseError` and whatever the headers gave.
 *
 * Field conventions: `messageId` is the first `<...>` token of the header, angle brackets included (the raw
 * trimmed value when it has none); `subject` and display names are RFC 2047 decoded, raw 8-bit headers read as
 * UTF-8 when valid, else windows-1252; control characters in them become spaces; a blank Subject is undefined.
 * `hasAttachments` counts parts postal-mime lists as attachments except inline images of a multipart/related
 * (`related`); a `headers-only` or `failed` message guesses it from a top-level multipart/mixed.
 *
 * Work is bounded by the options (see PostalMimeParserOptions) and by the size of `raw`: the caller caps how much
 * it passes with `complete = true`. postal-mime never sees a top-level header block (it would parse its address
 * fields again, unbounded): it gets the body with just the Content-* fields, and parses no message/rfc822 part
 * itself. Inline messages are parsed here, one level at a time, each checked against the same bounds.
 */
export class PostalMimeParser implements MetadataParser {
  private readonly options: Required<PostalMimeParserOptions>;

  /** See elideBinaryParts; off only to compare against postal-mime's own decoding in tests. */
  private readonly elide: boolean;
  /** Makes the placeholders of elided parts unguessable, so a message cannot pass its own bytes off as one. */
  private readonly nonce = randomBytes(8).toString('hex');

  constructor(options: PostalMimeParserOptions & { elideAttachments?: boolean } = {}) {
    const { elideAttachments = true, ...limits } = options;
    this.elide = elideAttachments;
    options = limits;
    const merged = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS) as Array<keyof PostalMimeParserOptions>) {
      const value = options[key];
      if (value === undefined) continue;
      if (!Number.isInteger(value) || value < 0) throw new TypeError(`${key} must be a non-negative integer`);
      merged[key] = value;
    }
    this.options = merged;
  }

  async parse(raw: Uint8Array, complete: boolean): Promise<MessageMetadata> {
    try {
      return await this.parseOrThrow(raw, complete);
    } catch (error) {
      // Unreachable by design (every step below guards itself); kept so the port's promise holds regardless.
      return { ...emptyMetadata(), parse: 'failed', parseError: errorText(error) };
    }
  }

  private async parseOrThrow(raw: Uint8Array, complete: boolean): Promise<MessageMetadata> {
    const { maxHeaderBytes } = this.options;
    const block = readHeaderBlock(raw, maxHeaderBytes);
    const headers = this.headerMetadata(block.fields);
    const { mediaType, ...fields } = headers;
    const guessedAttachments = mediaType === 'multipart/mixed';
    const base: MessageMetadata = {
      ...emptyMetadata(),
      ...fields,
      hasAttachments: guessedAttachments,
      parse: block.fields.length > 0 ? (complete ? 'full' : 'headers-only') : 'failed',
    };
    if (block.fields.length === 0) {
      base.parseError =
        raw.length === 0
          ? 'empty message'
          : 'no header fields: the data does not start like an RFC 5322 message';
    }
    if (!complete) {
      base.parseError ??=
        block.bodyOffset === undefined
          ? `the header block does not end within the first ${raw.length} bytes: the fields after them and the body are not read`
          : `only the first ${raw.length} bytes were given (the message is over the parse limit): the body is not parsed`;
      return base;
    }
    if (block.bodyOffset === undefined && block.truncated) {
      return {
        ...base,
        parse: 'failed',
        parseError: `the header block exceeds the maximum header size of ${maxHeaderBytes} bytes`,
      };
    }

    const lines = Math.max(this.options.maxLines, Math.floor(raw.length / LINE_ALLOWANCE_BYTES));
    const budget: Budget = { lines, maxLines: lines, inlineMessages: this.options.maxInlineMessages };
    const body = await this.parseBody(raw, block, 0, budget);
    if (!body.ok) {
      return { ...base, parse: base.parse === 'failed' ? 'failed' : body.parse, parseError: body.error };
    }
    return { ...base, ...this.bodyMetadata(body) };
  }

  /**
   * The body of one message (the top level or an inline message/rfc822) through postal-mime, once it passed the
   * breadth checks, then its inline messages in turn. `budget` is shared by all levels.
   */
  private async parseBody(
    raw: Uint8Array,
    block: HeaderBlock,
    depth: number,
    budget: Budget,
  ): Promise<BodyOutcome> {
    const { maxBoundaryLines, maxRfc822NestingDepth } = this.options;
    const body = raw.subarray(block.bodyOffset ?? raw.length);
    const { lines, dashLines } = countLines(body, budget.lines + 1, maxBoundaryLines + 1);
    if (dashLines > maxBoundaryLines) {
      return {
        ok: false,
        parse: 'headers-only',
        error: `more than ${maxBoundaryLines} lines start with "--": too many MIME parts to parse`,
      };
    }
    if (lines > budget.lines) {
      return {
        ok: false,
        parse: 'headers-only',
        error: `more than ${budget.maxLines} lines: too many to parse`,
      };
    }
    budget.lines -= lines;

    // Only the fields that say how to read the body: postal-mime would parse the address fields again.
    const contentFields = block.fields
      .filter((f) => CONTENT_FIELDS.has(f.key))
      .map((f) => raw.subarray(f.start, f.end));
    let email: PostalMime.Email;
    let sizes: Map<string, number> | undefined;
    try {
      const elided = this.elide
        ? elideBinaryParts(
            Buffer.concat([...contentFields, CRLF, body]),
            this.nonce,
            this.options.maxNestingDepth,
          )
        : undefined;
      sizes = elided?.sizes;
      email = await PostalMime.parse(elided?.entity ?? Buffer.concat([...contentFields, CRLF, body]), {
        attachmentEncoding: 'arraybuffer',
        forceRfc822Attachments: true,
        maxNestingDepth: this.options.maxNestingDepth,
        maxHeadersSize: this.options.maxHeaderBytes,
      });
    } catch (error) {
      return { ok: false, parse: 'failed', error: errorText(error) };
    }

    if (sizes?.size) for (const a of email.attachments) markElided(a, sizes);
    const texts = [readableText(email)];
    let textChars = texts[0]!.length;
    const attachments: ParsedAttachment[] = [];
    // As postal-mime decides it: a message/rfc822 part without a disposition or `inline` is part of the message,
    // except in a delivery or feedback report, where it is the evidence.
    const report = email.attachments.some((a) => REPORT_TYPES.has(a.mimeType));
    for (const a of email.attachments) {
      const inline = !report && a.mimeType === 'message/rfc822' && (a.disposition ?? 'inline') === 'inline';
      if (
        inline &&
        typeof a.content !== 'string' &&
        depth < maxRfc822NestingDepth &&
        budget.inlineMessages > 0
      ) {
        budget.inlineMessages--;
        const inner = a.content instanceof Uint8Array ? a.content : new Uint8Array(a.content);
        const innerBlock = readHeaderBlock(inner, this.options.maxHeaderBytes);
        const sub =
          innerBlock.bodyOffset === undefined && innerBlock.truncated
            ? undefined
            : await this.parseBody(inner, innerBlock, depth + 1, budget);
        if (sub?.ok) {
          for (const text of sub.texts) {
            if (textChars >= TEXT_SCAN_CHARS) break;
            texts.push(text);
            textChars += text.length;
          }
          attachments.push(...sub.attachments);
          continue;
        }
        // A forwarded message that cannot be parsed within the bounds is listed as what it is.
      }
      attachments.push(a);
    }
    return { ok: true, texts, attachments };
  }

  private headerMetadata(fields: HeaderField[]): HeaderMetadata {
    const { maxFieldChars, maxAddresses } = this.options;
    const first = (key: string) => fields.find((f) => f.key === key)?.value;
    const all = (key: string) => fields.filter((f) => f.key === key).map((f) => f.value);
    const out: HeaderMetadata = { to: [], cc: [] };

    const messageId = first('message-id');
    if (messageId !== undefined) {
      const bracketed = /<[^<>\s]*>/.exec(messageId)?.[0];
      const id = cut(bracketed ?? messageId.replace(/\s+/g, ''), maxFieldChars);
      // eslint-disable-next-line no-control-regex -- an id with control characters is not an id
      if (id && !/[\u0000-\u001f\u007f]/.test(id)) out.messageId = id;
    }

    out.date = guard(() => parseMailDate(first('date')));

    const rawSubject = first('subject');
    if (rawSubject !== undefined) {
      const subject = cut(rawSubject, SUBJECT_SCAN_CHARS);
      const decoded = displayText(guard(() => PostalMime.decodeWords(subject)) ?? subject, maxFieldChars);
      if (decoded) out.subject = decoded;
    }

    const from = first('from');
    if (from !== undefined) out.from = this.addresses([from], 1)[0];
    out.to = this.addresses(all('to'), maxAddresses);
    out.cc = this.addresses(all('cc'), maxAddresses);

    const contentType = first('content-type');
    if (contentType !== undefined) {
      out.mediaType = contentType.split(';', 1)[0]!.trim().toLowerCase() || undefined;
    }
    return out;
  }

  private addresses(values: string[], max: number): Address[] {
    const { maxNameChars } = this.options;
    const out: Address[] = [];
    let room = ADDRESS_SCAN_CHARS;
    for (const value of values) {
      if (room <= 0) break;
      const text = cut(value, room);
      room -= text.length;
      const parsed = guard(() => PostalMime.addressParser(text, { flatten: true })) ?? [];
      // The last address of a value cut short may be cut too: not an address anyone wrote.
      if (text.length < value.length) parsed.pop();
      for (const mailbox of parsed) {
        if (out.length >= max) return out;
        const address: Address = {};
        const name = displayText(mailbox.name ?? '', maxNameChars);
        const email = displayText(mailbox.address ?? '', maxNameChars);
        if (name) address.name = name;
        if (email) address.address = email;
        if (address.name !== undefined || address.address !== undefined) out.push(address);
      }
    }
    return out;
  }

  private bodyMetadata(
    body: ParsedBody,
  ): Pick<MessageMetadata, 'snippet' | 'hasAttachments' | 'attachments'> {
    const { snippetChars, maxAttachments, maxNameChars } = this.options;
    // The message's own text first, then its inline messages' (where postal-mime puts them, after a header table).
    const snippet = snippetOf(body.texts.filter(Boolean).join('\n'), snippetChars, TEXT_SCAN_CHARS);

    const listed = body.attachments.filter((a) => a.related !== true);
    const attachments: AttachmentInfo[] = listed.slice(0, maxAttachments).map((a) => {
      const info: AttachmentInfo = {
        mimeType: displayText(a.mimeType || 'application/octet-stream', maxNameChars),
        size: a.elidedSize ?? contentSize(a.content),
      };
      const filename = a.filename ? displayText(a.filename, maxNameChars) : '';
      if (filename) info.filename = filename;
      return info;
    });
    return { snippet, hasAttachments: listed.length > 0, attachments };
  }
}

interface ParsedBody {
  /** Readable text of the message and of its inline messages, in order, each at most TEXT_SCAN_CHARS long. */
  texts: string[];
  /** Attachments of the message, inline messages replaced by theirs. */
  attachments: ParsedAttachment[];
}

type BodyOutcome =
  ({ ok: true } & ParsedBody) | { ok: false; parse: 'headers-only' | 'failed'; error: string };

/** What the body parser may still do, over a message and all its inline messages. */
interface Budget {
  /** Lines left to parse, of `maxLines`. */
  lines: number;
  maxLines: number;
  inlineMessages: number;
}

/** The text a reader would see first: the plain text, or the visible text of the HTML when there is none. */
function readableText(email: PostalMime.Email): string {
  const text = email.text ? cut(email.text, TEXT_SCAN_CHARS) : '';
  if (!email.html || snippetOf(text, 1, TEXT_SCAN_CHARS)) return text;
  const html = email.html.length > HTML_SCAN_CHARS ? email.html.slice(0, HTML_SCAN_CHARS) : email.html;
  return cut(htmlToText(html), TEXT_SCAN_CHARS);
}

function emptyMetadata(): MessageMetadata {
  return { to: [], cc: [], snippet: '', hasAttachments: false, attachments: [], parse: 'failed' };
}

/** An attachment as parsed; `elidedSize` when its body was replaced by a placeholder before parsing. */
type ParsedAttachment = PostalMime.Attachment & { elidedSize?: number };

function markElided(a: ParsedAttachment, sizes: ReadonlyMap<string, number>): void {
  const content = a.content;
  if (typeof content === 'string' || content.byteLength > 128) return;
  const bytes = content instanceof Uint8Array ? content : new Uint8Array(content);
  const size = sizes.get(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1'));
  if (size !== undefined) a.elidedSize = size;
}

function contentSize(content: ArrayBuffer | Uint8Array | string): number {
  return typeof content === 'string' ? Buffer.byteLength(content) : content.byteLength;
}

function guard<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return cut(text || 'unknown parse error', MAX_ERROR_CHARS);
}

/** Lines (a last one without LF included) and lines starting with `--`, counted until either reaches its stop. */
function countLines(
  raw: Uint8Array,
  stopLines: number,
  stopDashes: number,
): { lines: number; dashLines: number } {
  if (raw.length === 0) return { lines: 0, dashLines: 0 };
  let lines = 1;
  let dashLines = raw[0] === 0x2d && raw[1] === 0x2d ? 1 : 0;
  let pos = raw.indexOf(0x0a);
  while (pos !== -1 && pos + 1 < raw.length && lines < stopLines && dashLines < stopDashes) {
    lines++;
    if (raw[pos + 1] === 0x2d && raw[pos + 2] === 0x2d) dashLines++;
    pos = raw.indexOf(0x0a, pos + 1);
  }
  return { lines, dashLines };
}
