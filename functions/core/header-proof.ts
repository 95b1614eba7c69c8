/**
 * The proof, right before a delete upstream, that the message the server holds under an identity is the copy the
 * store holds: identities alone are not enough (servers reuse UIDLs, a folder re-created under its old UIDVALIDITY
 * reuses UIDs), and neither is the size. The header block (Received lines, Message-ID, Date, ...) is what two
 * different messages of the same size practically never share, and the server gives it cheaply (POP3 `TOP n 0`,
 * IMAP `BODY.PEEK[HEADER]`).
 */
import { createHash } from 'node:crypto';

const LF = 0x0a;
const CR = 0x0d;

/** The header block: the bytes before the empty line that ends it (all of them when there is none). */
export function headerBlockOf(message: Uint8Array): Uint8Array {
  const bytes = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  // A message that starts with an empty line has no header.
  if (bytes[0] === LF || (bytes[0] === CR && bytes[1] === LF)) return bytes.subarray(0, 0);
  const lfLf = bytes.indexOf('\n\n');
  const lfCrLf = bytes.indexOf('\n\r\n');
  const ends = [lfLf, lfCrLf].filter((i) => i >= 0);
  return ends.length ? bytes.subarray(0, Math.min(...ends) + 1) : bytes;
}

/**
 * A digest of a header block as either side serves it: the trailing line ends are left out (`TOP n 0` and
 * `BODY[HEADER]` include the empty line, a POP3 server adds a final CRLF to a message without one), and NUL counts
 * as 0x80 (Dovecot serves NUL as 0x80 over IMAP and raw over POP3). Everything else must be byte for byte the same.
 */
export function headerDigest(messageOrHeader: Uint8Array): string {
  const block = headerBlockOf(messageOrHeader);
  let end = block.length;
  while (end > 0 && (block[end - 1] === LF || block[end - 1] === CR)) end--;
  const trimmed = block.subarray(0, end);
  const hash = createHash('sha256');
  if (trimmed.includes(0)) {
    const copy = Buffer.from(trimmed);
    for (let i = 0; i < copy.length; i++) if (copy[i] === 0) copy[i] = 0x80;
    hash.update(copy);
  } else {
    hash.update(trimmed);
  }
  return hash.digest('hex');
}

/**
 * Reads the start of a message until its header block is complete (or `limit` bytes, for a header that never
 * ends: then the proof compares that many bytes, which the other side must match just as well).
 */
export class HeaderCollector {
  private readonly parts: Buffer[] = [];
  private size = 0;
  private done = false;

  constructor(private readonly limit = 8 * 1024 * 1024) {}

  add(chunk: Uint8Array): void {
    if (this.done) return;
    const part = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.parts.push(part.subarray(0, Math.max(0, this.limit - this.size)));
    this.size += part.length;
    if (this.size >= this.limit) this.done = true;
    // The empty line may straddle two chunks: look at the joined tail only when a line end arrived.
    else if (part.includes(LF)) {
      const all = Buffer.concat(this.parts);
      if (headerBlockOf(all).length < all.length) this.done = true;
    }
  }

  digest(): string {
    return headerDigest(Buffer.concat(this.parts));
  }
}
