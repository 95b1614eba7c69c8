import PostalMime from 'postal-mime';
import type { Address, AttachmentInfo, MessageMetadata } from '../../core/model';
import type { MetadataParser } from '../../core/ports';
import { parseMailDate } from './date';
import { readHeaderBlock } from './header-block';
import type { HeaderField } from './header-block';
import { cut, displayText, htmlToText, snippetOf } from './text';

export interface PostalMimeParserOptions {
  /** Longest snippet, in UTF-16 code units. @default 200 */
  snippetChars?: number;
  /** Most attachments listed; `hasAttachments` still counts them all. @default 100 */
  maxAttachments?: number;
  /**
   * Header bytes considered: the top-level header block is read up to this many bytes, and postal-mime refuses
   * a message whose headers (all MIME parts together) exceed it. @default 1 MiB
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
   * Most lines beginning with `--` (an upper bound on MIME boundaries) before the body is not parsed at all and
   * the message is `headers-only`: postal-mime bounds nesting, not breadth, and builds an object per part.
   * @default 10000
   */
  maxBoundaryLines?: number;
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
  maxBoundaryLines: 10_000,
};

/** Characters of body text (or HTML) looked at to build the snippet. */
const TEXT_SCAN_CHARS = 64 * 1024;
const HTML_SCAN_CHARS = 1024 * 1024;
const MAX_ERROR_CHARS = 500;

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
 * Work is bounded by the options (see PostalMimeParserOptions) except for the size of `raw` and the time
 * postal-mime takes over it, which is linear in that size: the caller caps how much it passes with
 * `complete = true`.
 */
export class PostalMimeParser implements MetadataParser {
  private readonly options: Required<PostalMimeParserOptions>;

  constructor(options: PostalMimeParserOptions = {}) {
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
    const block = readHeaderBlock(raw, this.options.maxHeaderBytes);
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
    if (!complete) return base;

    const boundaryLines = countLinesStartingWithDashes(raw, this.options.maxBoundaryLines + 1);
    if (boundaryLines > this.options.maxBoundaryLines) {
      return {
        ...base,
        parse: base.parse === 'failed' ? 'failed' : 'headers-only',
        parseError: `more than ${this.options.maxBoundaryLines} lines start with "--": too many MIME parts to parse`,
      };
    }

    let email: PostalMime.Email;
    try {
      email = await PostalMime.parse(raw, {
        attachmentEncoding: 'arraybuffer',
        maxNestingDepth: this.options.maxNestingDepth,
        maxHeadersSize: this.options.maxHeaderBytes,
        maxRfc822NestingDepth: this.options.maxRfc822NestingDepth,
      });
    } catch (error) {
      return { ...base, parse: 'failed', parseError: errorText(error) };
    }

    const body = this.bodyMetadata(email);
    return { ...base, ...body };
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

    const subject = first('subject');
    if (subject !== undefined) {
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
    for (const value of values) {
      const parsed = guard(() => PostalMime.addressParser(value, { flatten: true })) ?? [];
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
    email: PostalMime.Email,
  ): Pick<MessageMetadata, 'snippet' | 'hasAttachments' | 'attachments'> {
    const { snippetChars, maxAttachments, maxNameChars } = this.options;
    let snippet = email.text ? snippetOf(email.text, snippetChars, TEXT_SCAN_CHARS) : '';
    if (!snippet && email.html) {
      const html = email.html.length > HTML_SCAN_CHARS ? email.html.slice(0, HTML_SCAN_CHARS) : email.html;
      snippet = snippetOf(htmlToText(html), snippetChars, Number.POSITIVE_INFINITY);
    }

    const listed = email.attachments.filter((a) => a.related !== true);
    const attachments: AttachmentInfo[] = listed.slice(0, maxAttachments).map((a) => {
      const info: AttachmentInfo = {
        mimeType: displayText(a.mimeType || 'application/octet-stream', maxNameChars),
        size: contentSize(a.content),
      };
      const filename = a.filename ? displayText(a.filename, maxNameChars) : '';
      if (filename) info.filename = filename;
      return info;
    });
    return { snippet, hasAttachments: listed.length > 0, attachments };
  }
}

function emptyMetadata(): MessageMetadata {
  return { to: [], cc: [], snippet: '', hasAttachments: false, attachments: [], parse: 'failed' };
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

/** Lines starting with `--`, counted up to `stop`. */
function countLinesStartingWithDashes(raw: Uint8Array, stop: number): number {
  let count = raw[0] === 0x2d && raw[1] === 0x2d ? 1 : 0;
  let pos = raw.indexOf(0x0a);
  while (pos !== -1 && count < stop) {
    if (raw[pos + 1] === 0x2d && raw[pos + 2] === 0x2d) count++;
    pos = raw.indexOf(0x0a, pos + 1);
  }
  return count;
}
