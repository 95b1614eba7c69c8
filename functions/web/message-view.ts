import PostalMime, { type Attachment, type Address as PostalAddress } from 'postal-mime';
import { readHeaderBlock } from '../adapters/mime/header-block';
import type { Address as ModelAddress } from '../core/model';
import type { InboxEntry, RawMailStore } from '../core/ports';
import type { Address, AttachmentView, MessageSummary, MessageView } from './contract';

/**
 * The message view (issue #15): the stored raw message parsed for reading. Bounded like the sync's parse
 * (functions/adapters/mime): a message over 8 MB, or one the sync could not parse whole, is shown from its stored
 * metadata only (`headers-only` / `failed`: the raw download has everything); postal-mime never sees the
 * top-level address fields (their parse is unbounded in postal-mime), only the Content-* fields and the body, and
 * is not given mail whose line or boundary count would make it slow.
 */

/** Largest message parsed for the view: the sync's parse limit. */
export const VIEW_PARSE_LIMIT = 8 * 1024 * 1024;
const MAX_HEADER_BYTES = 1024 * 1024;
/** As the sync's parser: more body lines than this (or one per 64 bytes) and postal-mime is not used. */
const MAX_LINES = 120_000;
const LINE_ALLOWANCE_BYTES = 64;
const MAX_BOUNDARY_LINES = 10_000;
const REPLY_TO_SCAN_CHARS = 32 * 1024;
const MAX_REPLY_TO = 20;
const PASSED_FIELDS = new Set([
  'content-type',
  'content-transfer-encoding',
  'content-disposition',
  'content-id',
  'content-description',
  'mime-version',
]);

/** Inline images shown by `/inline/:cid`: raster types only (an SVG is a document that can run script). */
export const RASTER_TYPES = new Set(['image/png', 'image/gif', 'image/jpeg', 'image/webp']);

export interface ParsedMessage {
  view: MessageView;
  /** The decoded parts behind `view.attachments`, by index; empty when the body was not parsed. */
  parts: Attachment[];
}

function address(a: ModelAddress | undefined): Address | null {
  if (!a) return null;
  return { ...(a.name ? { name: a.name } : {}), ...(a.address ? { address: a.address } : {}) };
}

export function summaryOf(entry: InboxEntry): MessageSummary {
  const { record } = entry;
  const m = record.metadata;
  const via = record.via ?? [{ sourceId: record.sourceId, identity: record.identity }];
  return {
    id: entry.id,
    date: record.sortDate || m.date || record.fetchedAt,
    from: address(m.from),
    subject: m.subject ?? null,
    snippet: m.snippet ?? '',
    unread: entry.unread,
    hasAttachments: m.hasAttachments,
    size: record.object.size,
    sources: [...new Set(via.map((v) => v.sourceId))],
  };
}

function fromMetadata(entry: InboxEntry, parse: MessageView['parse']): MessageView {
  const { record } = entry;
  const m = record.metadata;
  return {
    ...summaryOf(entry),
    messageId: m.messageId ?? null,
    to: m.to.map((a) => address(a)!),
    cc: m.cc.map((a) => address(a)!),
    replyTo: [],
    via: record.via ?? [{ sourceId: record.sourceId, identity: record.identity }],
    text: null,
    html: null,
    attachments: [],
    parse,
  };
}

async function readBounded(store: RawMailStore, key: string, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of await store.get(key)) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

function countLines(body: Uint8Array): { lines: number; boundaries: number } {
  let lines = 0;
  let boundaries = 0;
  let atStart = true;
  for (let i = 0; i < body.length; i++) {
    const b = body[i]!;
    if (atStart && b === 0x2d && body[i + 1] === 0x2d) boundaries++;
    atStart = b === 0x0a;
    if (atStart) lines++;
  }
  return { lines, boundaries };
}

function flatten(list: PostalAddress[] | undefined): Address[] {
  const out: Address[] = [];
  for (const a of list ?? []) {
    for (const m of a.group ?? [a]) {
      if (out.length >= MAX_REPLY_TO) return out;
      if (m.address !== undefined || m.name)
        out.push({ ...(m.name ? { name: m.name } : {}), ...(m.address ? { address: m.address } : {}) });
    }
  }
  return out;
}

function bare(contentId: string | undefined): string | null {
  if (!contentId) return null;
  return contentId.trim().replace(/^<|>$/g, '') || null;
}

/** Reads and parses the message behind an inbox entry, within the bounds above. Never throws for bad mail. */
export async function readMessage(store: RawMailStore, entry: InboxEntry): Promise<ParsedMessage> {
  const { record } = entry;
  const stored = record.metadata.parse;
  if (stored !== 'full' || record.object.size > VIEW_PARSE_LIMIT) {
    return { view: fromMetadata(entry, stored === 'full' ? 'headers-only' : stored), parts: [] };
  }
  const raw = await readBounded(store, record.object.key, VIEW_PARSE_LIMIT);
  if (!raw) return { view: fromMetadata(entry, 'headers-only'), parts: [] };
  const block = readHeaderBlock(raw, MAX_HEADER_BYTES);
  if (block.bodyOffset === undefined) return { view: fromMetadata(entry, 'failed'), parts: [] };
  const body = raw.subarray(block.bodyOffset);
  const { lines, boundaries } = countLines(body);
  if (
    lines > Math.max(MAX_LINES, Math.floor(raw.length / LINE_ALLOWANCE_BYTES)) ||
    boundaries > MAX_BOUNDARY_LINES
  ) {
    return { view: fromMetadata(entry, 'headers-only'), parts: [] };
  }
  // The Content-* fields as they are, Reply-To cut to a bounded length; the address fields come from metadata.
  const head: Buffer[] = [];
  for (const f of block.fields) {
    const bytes = raw.subarray(f.start, f.end);
    if (PASSED_FIELDS.has(f.key)) head.push(bytes);
    else if (f.key === 'reply-to')
      head.push(
        Buffer.from(`Reply-To: ${f.value.slice(0, REPLY_TO_SCAN_CHARS).replace(/[\r\n]/g, ' ')}\r\n`),
      );
  }
  try {
    const email = await PostalMime.parse(Buffer.concat([...head, Buffer.from('\r\n'), body]), {
      attachmentEncoding: 'arraybuffer',
      maxNestingDepth: 32,
      maxHeadersSize: MAX_HEADER_BYTES,
      maxRfc822NestingDepth: 3,
    });
    const html = email.html ?? null;
    const attachments: AttachmentView[] = email.attachments.map((a, n) => {
      const cid = bare(a.contentId);
      const content = a.content as ArrayBuffer;
      return {
        n,
        filename: a.filename ?? null,
        contentType: a.mimeType || 'application/octet-stream',
        size: content.byteLength ?? 0,
        contentId: cid,
        inline:
          a.disposition === 'inline' ||
          a.related === true ||
          (cid !== null && !!html?.includes(`cid:${cid}`)),
      };
    });
    return {
      view: {
        ...fromMetadata(entry, 'full'),
        replyTo: flatten(email.replyTo),
        text: email.text ?? null,
        html,
        attachments,
      },
      parts: email.attachments,
    };
  } catch {
    return { view: fromMetadata(entry, 'failed'), parts: [] };
  }
}

/** The decoded bytes of attachment `n`, or undefined. */
export function attachmentBytes(parsed: ParsedMessage, n: number): Uint8Array | undefined {
  const part = parsed.parts[n];
  if (!part) return undefined;
  const content = part.content;
  return typeof content === 'string' ? Buffer.from(content) : new Uint8Array(content as ArrayBuffer);
}

/** The inline image with this Content-ID when it is a raster image: its bytes and type; else undefined. */
export function inlineImage(
  parsed: ParsedMessage,
  cid: string,
): { bytes: Uint8Array; type: string } | undefined {
  const n = parsed.view.attachments.findIndex((a) => a.contentId === cid);
  if (n < 0) return undefined;
  const type = parsed.view.attachments[n]!.contentType.toLowerCase();
  if (!RASTER_TYPES.has(type)) return undefined;
  const bytes = attachmentBytes(parsed, n);
  return bytes && { bytes, type };
}
