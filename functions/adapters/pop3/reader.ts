import { UpstreamError } from '../../core/errors';
import { DotUnstuffer } from './unstuff';
import { printable } from '../common/printable';

const CR = 0x0d;
const LF = 0x0a;

/** How the reader tells its owner about flow: the socket binding pauses and arms the read timeout from these. */
export interface ReaderHooks {
  /** A read is blocked on the server (true) or no longer is (false): the read timeout runs only meanwhile. */
  waiting(on: boolean): void;
  /** Too much is buffered: stop reading the socket until the consumer catches up. */
  pause(): void;
  resume(): void;
}

export interface ReaderLimits {
  /** Buffered bytes above which the socket is paused (resumed below a quarter of it). */
  highWaterMark: number;
  /** Longest status line accepted (RFC 1939 allows 512 bytes; servers add response codes). */
  maxLineBytes: number;
}

const DEFAULT_LIMITS: ReaderLimits = { highWaterMark: 1024 * 1024, maxLineBytes: 64 * 1024 };

export interface Status {
  ok: boolean;
  /** What follows `+OK ` / `-ERR ` (Latin-1, without the CRLF). */
  text: string;
  /** The whole line, CRLF included. */
  line: Buffer;
}

/**
 * Pull-based reader of POP3 responses from socket chunks. It frames responses itself, so nothing depends on how
 * TCP cut the bytes, and it reads only as fast as its consumer: unread input past the high-water mark pauses the
 * socket, which bounds memory whatever the message size.
 */
export class Pop3Reader {
  private readonly chunks: Buffer[] = [];
  private queued = 0;
  private paused = false;
  private waiter: (() => void) | undefined;
  private ended: Error | undefined;
  private readonly limits: ReaderLimits;

  constructor(
    private readonly where: string,
    private readonly hooks: ReaderHooks,
    limits: Partial<ReaderLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /** Bytes received and not yet read. */
  get buffered(): number {
    return this.queued;
  }

  /** Whether a read is blocked waiting for the server. */
  get isWaiting(): boolean {
    return this.waiter !== undefined;
  }

  /** Whether input has ended (reads still get what was buffered before). */
  get hasEnded(): boolean {
    return this.ended !== undefined;
  }

  /** The error every read now fails with (input ended and nothing is left to read), if any. */
  get failure(): Error | undefined {
    return this.queued === 0 ? this.ended : undefined;
  }

  feed(chunk: Buffer): void {
    if (this.ended || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
    if (!this.paused && this.queued > this.limits.highWaterMark) {
      this.paused = true;
      this.hooks.pause();
    }
    this.wake();
  }

  /** No more input: reads return what is buffered, then fail with `error` (the first reason given wins). */
  end(error: Error): void {
    this.ended ??= error;
    this.wake();
  }

  /** Like `end`, and drops what is buffered: for timeouts and aborts, where nothing more may be read. */
  abort(error: Error): void {
    this.chunks.length = 0;
    this.queued = 0;
    this.end(error);
  }

  /** The next chunk of input, whole. Only one read may wait at a time: callers serialize. */
  async nextChunk(): Promise<Buffer> {
    while (this.chunks.length === 0) {
      if (this.ended) throw this.ended;
      if (this.waiter) throw new Error('Pop3Reader: two reads at once');
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        this.hooks.waiting(true);
      });
    }
    const chunk = this.chunks.shift()!;
    this.queued -= chunk.length;
    if (this.paused && this.queued <= this.limits.highWaterMark / 4) {
      this.paused = false;
      this.hooks.resume();
    }
    return chunk;
  }

  /** Puts back the part of a chunk that belongs to the next response. */
  unshift(rest: Buffer): void {
    if (rest.length === 0) return;
    this.chunks.unshift(rest);
    this.queued += rest.length;
  }

  /** One line up to and including CRLF, as one buffer (a bare LF does not end it). */
  async readLine(): Promise<Buffer> {
    const parts: Buffer[] = [];
    let size = 0;
    let prevCr = false;
    for (;;) {
      const chunk = await this.nextChunk();
      let from = 0;
      for (;;) {
        const j = chunk.indexOf(LF, from);
        if (j < 0) break;
        if (j > 0 ? chunk[j - 1] === CR : prevCr) {
          this.unshift(chunk.subarray(j + 1));
          parts.push(chunk.subarray(0, j + 1));
          return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
        }
        from = j + 1;
      }
      parts.push(chunk);
      size += chunk.length;
      prevCr = chunk[chunk.length - 1] === CR;
      if (size > this.limits.maxLineBytes)
        throw this.protocolError(`a response line longer than ${this.limits.maxLineBytes} bytes`, parts);
    }
  }

  /** A status line; anything but `+OK` / `-ERR` is a protocol error (the two sides are out of step). */
  async readStatus(): Promise<Status> {
    const line = await this.readLine();
    const ok = startsWith(line, '+OK');
    if (!ok && !startsWith(line, '-ERR'))
      throw this.protocolError('a line that is neither +OK nor -ERR', [line]);
    const text = line
      .subarray(ok ? 3 : 4, line.length - 2)
      .toString('latin1')
      .trim();
    return { ok, text, line };
  }

  /** The raw bytes of a multi-line body up to and including its terminator, not un-stuffed: to hand on as is. */
  async readRawBody(maxBytes: number): Promise<Buffer> {
    const unstuffer = new DotUnstuffer();
    const parts: Buffer[] = [];
    let size = 0;
    for (;;) {
      const chunk = await this.nextChunk();
      const end = unstuffer.push(chunk, noop);
      if (end >= 0) {
        this.unshift(chunk.subarray(end));
        parts.push(chunk.subarray(0, end));
        return Buffer.concat(parts);
      }
      parts.push(chunk);
      size += chunk.length;
      if (size > maxBytes) throw this.protocolError(`a multi-line answer longer than ${maxBytes} bytes`, []);
    }
  }

  /** A whole un-stuffed body, for small answers (CAPA, TOP n 0). */
  async readBody(maxBytes: number): Promise<Buffer> {
    const body = this.body();
    const parts: Buffer[] = [];
    let size = 0;
    for (;;) {
      const part = await body.read();
      if (part === undefined) return Buffer.concat(parts);
      size += part.length;
      if (size > maxBytes) {
        await body.drain();
        throw this.protocolError(`a multi-line answer longer than ${maxBytes} bytes`, []);
      }
      parts.push(part);
    }
  }

  /** The un-stuffed body of the multi-line response whose status line was just read, streamed. */
  body(): BodyStream {
    return new BodyStream(this);
  }

  protocolError(what: string, seen: Buffer[]): UpstreamError {
    const text = printable(
      Buffer.concat(seen)
        .subarray(0, 80)
        .toString('latin1')
        .replace(/\r?\n$/, ''),
    );
    const excerpt = text ? `: "${text}"` : '';
    return new UpstreamError('PROTOCOL_ERROR', `${this.where} sent ${what}${excerpt}`, true);
  }

  private wake(): void {
    const waiter = this.waiter;
    if (!waiter) return;
    this.waiter = undefined;
    this.hooks.waiting(false);
    waiter();
  }
}

/**
 * One message body as exact bytes. It pulls from the reader only when its consumer asks, which is the
 * backpressure; `drain` reads to the end so the next response starts in step even if the consumer stopped early.
 */
export class BodyStream implements AsyncIterable<Uint8Array> {
  private readonly unstuffer = new DotUnstuffer();
  private readonly ready: Buffer[] = [];
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly reader: Pop3Reader) {}

  /** Whether every byte up to the terminator has been read and handed out. */
  get complete(): boolean {
    return this.unstuffer.finished && this.ready.length === 0;
  }

  /** The next part of the body, or undefined after the last one. Calls are served one after the other. */
  read(): Promise<Buffer | undefined> {
    const next = this.tail.then(() => this.readNow());
    this.tail = next.catch(noop);
    return next;
  }

  async drain(): Promise<void> {
    while ((await this.read()) !== undefined);
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        const value = await this.read();
        return value === undefined ? { done: true, value: undefined } : { done: false, value };
      },
    };
  }

  private async readNow(): Promise<Buffer | undefined> {
    while (this.ready.length === 0) {
      if (this.unstuffer.finished) return undefined;
      const chunk = await this.reader.nextChunk();
      const end = this.unstuffer.push(chunk, (part) => this.ready.push(part));
      if (end >= 0) this.reader.unshift(chunk.subarray(end));
    }
    return this.ready.shift();
  }
}

export function startsWith(line: Buffer, prefix: string): boolean {
  return line.length >= prefix.length && line.toString('latin1', 0, prefix.length) === prefix;
}

export { printable };

function noop(): void {}
