import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { InboxEntry, RawMailStore } from '../core/ports';
import type { DownloadLink } from './contract';

/**
 * Downloads (issue #15) are links, not bytes in the API's answer: in AWS a presigned S3 GetObject URL, on one machine
 * a same-origin URL with a short-lived HMAC-signed token. Whatever follows the link gets `Content-Disposition:
 * attachment`, `X-Content-Type-Options: nosniff` and `application/octet-stream`: nothing downloaded renders as a
 * page of the app's origin.
 */
export interface DownloadLinks {
  /** The raw message (.eml) behind the entry. */
  raw(entry: InboxEntry, filename: string): Promise<DownloadLink>;
  /** Attachment `n` of the entry's message, whose decoded bytes are `bytes`. */
  attachment(
    entry: InboxEntry,
    n: number,
    filename: string,
    bytes: () => Promise<Uint8Array>,
  ): Promise<DownloadLink>;
}

export const DOWNLOAD_TTL_SECONDS = 300;

/** A file name a download can carry: no path, no control characters, not empty, not too long. */
export function safeFilename(name: string | null | undefined, fallback: string): string {
  const cleaned = (name ?? '')
    // Control characters (C0 and DEL) and path separators.
    .replace(/[/\\]/g, '_')
    .replace(/\p{Cc}/gu, '_')
    .replace(/^[.\s]+/, '')
    .trim()
    .slice(0, 200);
  return cleaned || fallback;
}

/** RFC 6266: an ASCII fallback `filename` and the exact name as `filename*` (RFC 8187, UTF-8). */
export function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\%]/g, '_');
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** The headers of every download answer, whatever serves it. */
export function downloadHeaders(filename: string): Record<string, string> {
  return {
    'Content-Type': 'application/octet-stream',
    'Content-Disposition': contentDisposition(filename),
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'private, no-store',
    'Content-Security-Policy': "default-src 'none'; sandbox",
  };
}

/** What a local download token names. */
export interface DownloadGrant {
  id: string;
  /** Absent: the raw message; else the attachment's index. */
  n?: number;
  filename: string;
  /** Epoch seconds. */
  exp: number;
}

/** Same-origin download URLs for `tributary serve`: `/api/download/<payload>.<hmac>`, valid DOWNLOAD_TTL_SECONDS. */
export class LocalDownloadLinks implements DownloadLinks {
  constructor(
    private readonly secret: Buffer = randomBytes(32),
    private readonly now: () => number = Date.now,
    private readonly ttlSeconds = DOWNLOAD_TTL_SECONDS,
  ) {}

  private sign(payload: string): string {
    return createHmac('sha256', this.secret).update(`download\0${payload}`).digest('base64url');
  }

  private link(grant: Omit<DownloadGrant, 'exp'>): DownloadLink {
    const exp = Math.floor(this.now() / 1000) + this.ttlSeconds;
    const payload = Buffer.from(JSON.stringify({ ...grant, exp })).toString('base64url');
    return {
      url: `/api/download/${payload}.${this.sign(payload)}`,
      expiresAt: new Date(exp * 1000).toISOString(),
      filename: grant.filename,
    };
  }

  raw(entry: InboxEntry, filename: string): Promise<DownloadLink> {
    return Promise.resolve(this.link({ id: entry.id, filename }));
  }

  attachment(entry: InboxEntry, n: number, filename: string): Promise<DownloadLink> {
    return Promise.resolve(this.link({ id: entry.id, n, filename }));
  }

  /** The grant a token carries, when it is ours (constant-time check) and not expired; else undefined. */
  verify(token: string): DownloadGrant | undefined {
    const [payload, mac, extra] = token.split('.');
    if (!payload || !mac || extra !== undefined) return undefined;
    const expected = Buffer.from(this.sign(payload));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let grant: DownloadGrant;
    try {
      grant = JSON.parse(Buffer.from(payload, 'base64url').toString()) as DownloadGrant;
    } catch {
      return undefined;
    }
    if (typeof grant.exp !== 'number' || grant.exp * 1000 < this.now()) return undefined;
    if (typeof grant.id !== 'string' || typeof grant.filename !== 'string') return undefined;
    if (grant.n !== undefined && !(Number.isInteger(grant.n) && grant.n >= 0)) return undefined;
    return grant;
  }
}

/** Where an attachment extracted for a presigned download is written: deterministic, under its own prefix. */
export const ATTACHMENTS_PREFIX = 'attachments/';
export function attachmentKey(sha256: string, n: number): string {
  return `${ATTACHMENTS_PREFIX}${sha256}/${n}`;
}

/**
 * Presigned S3 GetObject URLs for the API Lambda. The raw message is its stored object; an attachment lives inside
 * the raw MIME, so it is extracted once to `attachments/<sha256 of the message>/<n>` (deterministic: the same
 * message's attachment n is always the same bytes; the bucket's lifecycle rule expires the prefix) and that object
 * is presigned. S3 answers with the disposition and type the URL asks for (response-content-* parameters, part of
 * the signature).
 */
export class S3DownloadLinks implements DownloadLinks {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly store: RawMailStore,
    private readonly now: () => number = Date.now,
    private readonly ttlSeconds = DOWNLOAD_TTL_SECONDS,
  ) {}

  private async presign(key: string, filename: string): Promise<DownloadLink> {
    const url = await getSignedUrl(
      this.s3,
      new GetObjectCommand({
        Bucket: this.bucket,
        Key: key,
        ResponseContentDisposition: contentDisposition(filename),
        ResponseContentType: 'application/octet-stream',
        ResponseCacheControl: 'private, no-store',
      }),
      { expiresIn: this.ttlSeconds },
    );
    return { url, expiresAt: new Date(this.now() + this.ttlSeconds * 1000).toISOString(), filename };
  }

  raw(entry: InboxEntry, filename: string): Promise<DownloadLink> {
    return this.presign(entry.record.object.key, filename);
  }

  async attachment(
    entry: InboxEntry,
    n: number,
    filename: string,
    bytes: () => Promise<Uint8Array>,
  ): Promise<DownloadLink> {
    const key = attachmentKey(entry.record.object.sha256, n);
    if (!(await this.store.head(key))) {
      const content = await bytes();
      await this.store.put(
        key,
        (async function* () {
          yield content;
        })(),
        { size: content.length },
      );
    }
    return this.presign(key, filename);
  }
}
