import { createHash, type Hash } from 'node:crypto';
import type { Bytes } from './ports';

/**
 * Wraps a message body so that, while it streams to storage, we learn its size, its sha256, its content hash
 * (NUL mapped to 0x80, as Dovecot's IMAP serves it, so POP3 and IMAP copies of one message match) and keep its
 * first `keepBytes` for the metadata parser. Memory stays bounded by `keepBytes` whatever the message size.
 */
export class BodyTap {
  private readonly exact = createHash('sha256');
  /** Forked from `exact` at the first NUL byte; until then both hashes are the same (most mail has no NUL). */
  private content: Hash | undefined;
  private readonly kept: Buffer[] = [];
  private keptBytes = 0;
  private result: { sha256: string; contentSha256: string } | undefined;
  size = 0;
  finished = false;

  /**
   * `owned`: the chunks are this run's own buffers, never written to again (a body already collected in memory):
   * the tap keeps views of them instead of copies. Otherwise it copies what it keeps, whoever wrote the chunks.
   */
  constructor(
    private readonly keepBytes: number,
    private readonly owned = false,
  ) {}

  async *wrap(body: Bytes): Bytes {
    for await (const chunk of body) {
      const buf = Buffer.isBuffer(chunk)
        ? chunk
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      this.size += buf.length;
      if (this.content) this.content.update(buf.includes(0) ? mapNul(buf) : buf);
      else if (buf.includes(0)) {
        this.content = this.exact.copy();
        this.content.update(mapNul(buf));
      }
      this.exact.update(buf);
      if (this.keptBytes < this.keepBytes) {
        const part = buf.subarray(0, this.keepBytes - this.keptBytes);
        this.kept.push(this.owned ? part : Buffer.from(part));
        this.keptBytes += part.length;
      }
      yield buf;
    }
    this.finished = true;
  }

  /** Whether `head()` holds the whole message. */
  get complete(): boolean {
    return this.finished && this.keptBytes === this.size;
  }

  head(): Buffer {
    // One piece (a body in memory, or a message in one chunk) is returned as it is: Buffer.concat always copies.
    return this.kept.length === 1 ? this.kept[0]! : Buffer.concat(this.kept);
  }

  digests(): { sha256: string; contentSha256: string } {
    if (!this.finished) throw new Error('BodyTap: the body was not read to its end');
    if (!this.result) {
      const sha256 = this.exact.digest('hex');
      this.result = { sha256, contentSha256: this.content ? this.content.digest('hex') : sha256 };
    }
    return this.result;
  }
}

function mapNul(buf: Buffer): Buffer {
  const copy = Buffer.from(buf);
  for (let i = copy.indexOf(0); i !== -1; i = copy.indexOf(0, i + 1)) copy[i] = 0x80;
  return copy;
}

/** Content hash of bytes already in memory, with the same NUL mapping as BodyTap. */
export function contentSha256(bytes: Buffer): string {
  return createHash('sha256')
    .update(bytes.includes(0) ? mapNul(bytes) : bytes)
    .digest('hex');
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
