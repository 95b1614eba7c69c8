import net from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import Pop3Command from 'node-pop3';
import { MessageError, UpstreamError } from '../../core/errors';
import type { Source } from '../../core/model';
import type { Bytes, ConnectOptions, Pop3Listing, Pop3Session, TlsInfo } from '../../core/ports';
import { runawayBytes } from '../common/sizes';
import { trustOptions } from '../common/tls';
import { Pop3Refusal, pop3Error, serverText, where } from './errors';
import { Pop3Reader, printable, startsWith, type BodyStream, type ReaderLimits, type Status } from './reader';

/** RETR and TOP commands in flight when the server offers PIPELINING: enough to hide the round trips, few enough
 *  that a failed run leaves little to drain. Responses are read one by one, so this bounds commands, not memory. */
const PIPELINE_WINDOW = 8;
const MAX_CAPA_BYTES = 64 * 1024;
const MAX_TOP_BYTES = 8 * 1024 * 1024;
/**
 * UIDL/LIST answers: ~40 bytes a message, so this is some 400,000 messages. The answer is held several times over
 * (our frame, node-pop3's stream, the text), so an endless one must stop early: at 64 MB it cost ~70 MB of memory.
 */
const MAX_LISTING_BYTES = 16 * 1024 * 1024;
const CR = 0x0d;
const LF = 0x0a;

/**
 * Whether a RETR body of `actual` bytes holding `lines` CRLFs (dot-unstuffed) is the message LIST announced at
 * `announced` bytes. RFC 1939 makes LIST the exact size as transmitted (CRLF line ends, before dot-stuffing), and
 * RFC 6856 repeats it, so only differences an honest server is known to make pass:
 * - 0: the exact size;
 * - +2: the message has no final line end, the server adds the CRLF the terminating "." needs (RFC 1939 section
 *   3) and does not count it (Courier's pop3d does this);
 * - +lines: the server counts its stored LF line ends as one octet each (against RFC 1939 section 11) and sends
 *   them as CRLF;
 * - +lines+1: both at once (the last line had no LF, so it is not among the converted ones).
 * Anything else is not the announced message, however close: a server that advertises UTF8 may serve a message
 * with 8-bit headers, to a client that did not send UTF8, wrapped in a generated notice (Courier: ~700 bytes
 * more), and a deleting policy would then DELE the real one. A size right by chance stays possible (a notice
 * exactly `lines` bytes longer), which the header-block check before a DELE may not catch either (TOP can serve
 * the notice's headers): sending UTF8 is what prevents the notice. Estimated sizes (Exchange with
 * EnableExactRFC822Size off) and mixed line ends in one stored file are refused too: such a message stays
 * upstream, set aside, which loses nothing.
 */
function isAnnouncedSize(announced: number, actual: number, lines: number): boolean {
  const d = actual - announced;
  return d === 0 || d === 2 || d === lines || d === lines + 1;
}

/**
 * Whether nothing more a body can bring would make it pass `isAnnouncedSize`: both `received` and
 * `received - lines` only grow as the body goes on, so past both bounds it never will.
 */
function pastAnnouncedSize(announced: number, received: number, lines: number): boolean {
  return received > announced + 2 && received - lines > announced + 1;
}

/** Counts CRLFs across the parts of a body, wherever they were cut. */
class CrlfCounter {
  count = 0;
  private lastCr = false;

  add(part: Uint8Array): void {
    for (let i = part.indexOf(LF); i >= 0; i = part.indexOf(LF, i + 1))
      if (i > 0 ? part[i - 1] === CR : this.lastCr) this.count++;
    if (part.length > 0) this.lastCr = part[part.length - 1] === CR;
  }
}

/**
 * A refusal of TOP that means the server does not know the command, not that the message is gone: Courier says
 * "Invalid command." (and "Invalid message number." for a message), Dovecot "Unknown command", UW "Unknown
 * TRANSACTION state command", Cyrus "Unrecognized command".
 */
const UNKNOWN_COMMAND =
  /\b(unknown|unrecogni[sz]ed|invalid|bad|illegal|unsupported|unimplemented)\b[^.]*\bcommand\b|\bcommand\b[^.]*\b(unknown|unrecogni[sz]ed|not (recogni[sz]ed|supported|implemented))\b/i;

type Pop3Connection = Pick<Pop3Command, '_socket' | '_command' | 'connect' | 'command' | 'on'>;
type Pop3ConnectionClass = new (config: {
  host: string;
  port?: number;
  tls?: boolean;
  tlsOptions?: tls.ConnectionOptions;
}) => Pop3Connection;

/**
 * node-pop3 exports only Pop3Command, which keeps the password on the instance and decodes RETR as UTF-8; its
 * base class, Pop3Connection, is the session without either.
 */
const Pop3Connection = Object.getPrototypeOf(Pop3Command) as Pop3ConnectionClass;
const proto = (Pop3Connection as { prototype?: Partial<Record<'command' | 'connect', unknown>> }).prototype;
if (typeof proto?.command !== 'function' || typeof proto.connect !== 'function')
  throw new Error(
    'node-pop3: Pop3Connection (the base class of Pop3Command) is not where this adapter expects it',
  );

type Frame = 'line' | 'multi';

/**
 * Carries an error out of an operation that read every answer it asked for, so the session is still in step: the
 * error reaches the caller unchanged (a consumer's own error, a MessageError about one message) and the session
 * stays usable.
 */
class InStep extends Error {
  constructor(override readonly cause: unknown) {
    super('an operation failed with the session still in step');
  }
}

/**
 * Opens a POP3 session in TRANSACTION state: connect (implicit TLS, STLS or plain), greeting, CAPA, USER/PASS.
 * node-pop3 runs the conversation; our reader frames every response first (node-pop3 only ever sees whole
 * frames) and reads message bodies itself, byte-exact.
 */
export async function openPop3Session(
  source: Source,
  password: string,
  options: ConnectOptions & { readerLimits?: Partial<ReaderLimits> },
): Promise<Pop3Session> {
  if (!(options.timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${options.timeoutMs}`);
  const session = new NodePop3Session(source, options.timeoutMs, options.readerLimits);
  try {
    await session.open(password);
  } catch (err) {
    const e = session.toUpstream(err, password);
    session.abort();
    throw e;
  }
  return session;
}

/**
 * The socket's data goes to our reader only. Commands node-pop3 knows (USER, PASS, STAT, UIDL, LIST, DELE, QUIT,
 * STLS) go through it and get their answer forwarded as one frame, since it assumes a response arrives in one
 * chunk; CAPA, UTF8, TOP and RETR we write and read ourselves. Operations are serialized; a failure that leaves
 * the session in step (a plain -ERR, a body refused once read to its end, a consumer's error) leaves it usable,
 * any other leaves it broken and its socket destroyed.
 */
class NodePop3Session implements Pop3Session {
  capabilities: string[] = [];
  tls?: TlsInfo;

  private conn!: Pop3Connection;
  /** The socket commands go to and answers come from (the TLS socket once STLS is done). */
  private socket!: net.Socket;
  private readonly sockets: net.Socket[] = [];
  /** node-pop3's own 'data' listener: receives whole frames only, from `forward`. */
  private nodeData!: (chunk: Buffer) => void;
  private readonly reader: Pop3Reader;
  private timer: NodeJS.Timeout | undefined;
  private stage = 'connect';
  private tlsHandshake = false;
  private handshakeFailed: ((err: Error) => void) | undefined;
  private broken: UpstreamError | undefined;
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  /** UIDL and LIST answers read right after login (PIPELINING), for the first list(). */
  private prefetched: { uidl: string | Pop3Refusal; list: string | Pop3Refusal } | undefined;
  /** The sizes of the last LIST, by message number: what RETR is held to. */
  private listed = new Map<number, number>();

  constructor(
    private readonly source: Source,
    private readonly timeoutMs: number,
    limits?: Partial<ReaderLimits>,
  ) {
    this.reader = new Pop3Reader(
      where(source),
      {
        waiting: (on) => (on ? this.arm() : this.disarm()),
        pause: () => this.socket.pause(),
        resume: () => this.socket.resume(),
      },
      limits,
    );
  }

  async open(password: string): Promise<void> {
    const { source } = this;
    const implicit = source.tls === 'implicit';
    this.conn = new Pop3Connection({
      host: source.host,
      port: source.port,
      tls: implicit,
      ...(implicit ? { tlsOptions: this.tlsOptions() } : {}),
    });
    // node-pop3 emits 'error' for every -ERR; command() listens for it, this keeps a stray one from throwing.
    this.conn.on('error', () => undefined);
    this.stage = 'connect';
    const connecting = this.conn.connect();
    connecting.catch(() => undefined); // its failures reach us through the socket listeners below
    this.takeOver();
    if (implicit) {
      this.tlsHandshake = true;
      this.socket.once('secureConnect', () => (this.tlsHandshake = false));
    }

    this.stage = 'the greeting';
    const greeting = await this.reader.readLine().catch((err: unknown) => {
      throw err instanceof UpstreamError && err.code === 'PROTOCOL_ERROR'
        ? this.greetingError(Buffer.alloc(0))
        : err;
    });
    if (!startsWith(greeting, '+OK')) throw this.greetingError(greeting);
    this.forward(greeting);
    await connecting;
    if (implicit) this.tls = tlsInfo(this.socket as tls.TLSSocket);

    this.capabilities = await this.capa();
    if (source.tls === 'starttls') {
      if (!this.capabilities.includes('STLS'))
        throw new UpstreamError(
          'STARTTLS_UNAVAILABLE',
          `${where(source)} does not offer STLS, and this source requires it: nothing was sent in clear. ` +
            'Use tls "implicit" with the POP3S port (usually 995) if the server has one.',
          false,
        );
      await this.startTls();
      this.capabilities = await this.capa(); // RFC 2595: forget what was learnt before TLS
    }
    if (this.offers('UTF8')) await this.enableUtf8();
    await this.login(password);
    // RFC 2449: TRANSACTION state may offer more (PIPELINING, UIDL). A server that offers PIPELINING already
    // takes CAPA, UIDL and LIST in one write: after login a poll then costs one round trip instead of three, and
    // the listing (the next thing every run asks for) is kept for list().
    if (this.capabilities.includes('PIPELINING')) {
      this.write('CAPA\r\nUIDL\r\nLIST\r\n');
      this.capabilities = await this.readCapa();
      const uidl = await this.readListing('UIDL');
      this.prefetched = { uidl, list: await this.readListing('LIST') };
    } else {
      this.capabilities = await this.capa();
    }
  }

  stat(): Promise<{ count: number; octets: number }> {
    return this.run('STAT', async () => {
      const [info] = await this.nodeCommand('line', 'STAT');
      const m = /^(\d+)\s+(\d+)/.exec(info.trim());
      if (!m) throw this.reader.protocolError('a STAT answer without count and size', [Buffer.from(info)]);
      return { count: Number(m[1]), octets: Number(m[2]) };
    });
  }

  list(): Promise<Pop3Listing[]> {
    return this.run('UIDL and LIST', async () => {
      const prefetched = this.prefetched;
      this.prefetched = undefined; // the maildrop of this session does not change, but DELE changes the listing
      let uidls: Map<number, string> | undefined;
      const uidlText = prefetched ? prefetched.uidl : await this.nodeListing('UIDL');
      if (typeof uidlText === 'string') {
        uidls = new Map();
        for (const [n, uidl] of this.parseListing(uidlText, 'UIDL')) uidls.set(n, uidl);
      } // else no UIDL: the caller falls back to TOP hashes
      const listText = prefetched ? prefetched.list : await this.nodeListing('LIST');
      if (typeof listText !== 'string') throw listText;
      const out: Pop3Listing[] = [];
      for (const [number, size] of this.parseListing(listText, 'LIST')) {
        if (!/^\d+$/.test(size))
          throw this.reader.protocolError('a LIST line without a size', [Buffer.from(size)]);
        const uidl = uidls?.get(number);
        out.push(uidl === undefined ? { number, size: Number(size) } : { number, uidl, size: Number(size) });
      }
      this.listed = new Map(out.map((e) => [e.number, e.size]));
      return out.sort((a, b) => a.number - b.number);
    });
  }

  topHeaders(number: number): Promise<Buffer> {
    checkNumber(number);
    return this.run(`TOP ${number} 0`, async () => {
      const { blocks, refused } = await this.readHeaderBlocks([number]);
      const block = blocks.get(number);
      if (block) return block;
      throw new InStep(
        new MessageError(
          'PROTOCOL_ERROR',
          `${where(this.source)} refused TOP ${number} 0 (server said: ${serverText(refused.get(number) ?? '')}): message ${number} cannot be read`,
          { number },
        ),
      );
    });
  }

  headerBlocks(numbers: number[]): Promise<Map<number, Buffer>> {
    numbers.forEach(checkNumber);
    return this.run('TOP', async () => (await this.readHeaderBlocks(numbers)).blocks);
  }

  /**
   * `TOP n 0` for each number, pipelined like RETR. A message the server refuses is left out (with what the server
   * said); a server without TOP is CAPABILITY_MISSING, thrown once every answer is read.
   */
  private async readHeaderBlocks(
    numbers: number[],
  ): Promise<{ blocks: Map<number, Buffer>; refused: Map<number, string> }> {
    const blocks = new Map<number, Buffer>();
    const refused = new Map<number, string>();
    if (numbers.length === 0) return { blocks, refused };
    const missing = () =>
      new UpstreamError(
        'CAPABILITY_MISSING',
        `${where(this.source)} does not offer TOP, needed to identify messages when UIDL is missing and to check a message before deleting it`,
        false,
      );
    // RFC 2449: a server that answers CAPA lists TOP when it has it. Nothing was sent: the session goes on.
    if (this.capabilities.length > 0 && !this.capabilities.includes('TOP')) throw new InStep(missing());
    let unknown = false;
    await this.pipelined(
      numbers,
      (n) => `TOP ${n} 0`,
      () => MAX_TOP_BYTES,
      async (number, status) => {
        if (status.ok) blocks.set(number, await this.readHeaderBlock(number));
        else {
          refused.set(number, status.text);
          // Without CAPA only the server's words tell "no such command" from "no such message".
          if (this.capabilities.length === 0 && UNKNOWN_COMMAND.test(status.text)) unknown = true;
        }
      },
    );
    if (unknown) throw new InStep(missing());
    return { blocks, refused };
  }

  /** The body of a TOP answer whose status was just read, whole; one too big for a header block ends the session. */
  private async readHeaderBlock(number: number): Promise<Buffer> {
    this.stage = `the headers of message ${number} (TOP)`;
    const body = this.reader.body();
    const parts: Buffer[] = [];
    let size = 0;
    for (let part = await body.read(); part !== undefined; part = await body.read()) {
      size += part.length;
      if (size > MAX_TOP_BYTES)
        throw this.giveUp(
          new MessageError(
            'PROTOCOL_ERROR',
            `${where(this.source)} sent more than ${MAX_TOP_BYTES} bytes in answer to TOP ${number} 0, which is no header block; the session was given up`,
            { number },
          ),
        );
      parts.push(part);
    }
    return Buffer.concat(parts);
  }

  retrieve(numbers: number[], onMessage: (number: number, body: Bytes) => Promise<void>): Promise<void> {
    numbers.forEach(checkNumber);
    return this.run('RETR', () =>
      this.pipelined(
        numbers,
        (n) => `RETR ${n}`,
        (n) => this.retrLimit(n),
        async (number, status) => {
          if (!status.ok) return; // deleted by another client meanwhile: not delivered, the session goes on
          this.stage = `the body of message ${number} (RETR)`;
          const body = this.reader.body();
          const announced = this.listed.get(number);
          const read = { bytes: 0 };
          let consumerError: InStep | undefined;
          try {
            await onMessage(
              number,
              announced === undefined ? body : this.sized(body, number, announced, read),
            );
          } catch (err) {
            // When the body failed under the consumer, the connection's error is the real one.
            const failure = this.reader.failure;
            if (failure) throw failure;
            consumerError = new InStep(err);
          }
          // A consumer that stopped early: read the rest, so the next answer starts in step.
          await this.drain(body, number, `RETR ${number}`, this.retrLimit(number) - read.bytes);
          if (consumerError) throw consumerError;
        },
      ),
    );
  }

  /**
   * Sends `command(n)` for each number, up to PIPELINE_WINDOW ahead when the server offers PIPELINING (one at a
   * time otherwise), and hands each status to `onAnswer`, which reads the answer's body. When `onAnswer` throws an
   * InStep, nothing more is sent; the answers already asked for are read (their bodies dropped, each up to
   * `limit(n)` bytes) and then the InStep is thrown.
   */
  private async pipelined(
    numbers: number[],
    command: (n: number) => string,
    limit: (n: number) => number,
    onAnswer: (n: number, status: Status) => Promise<void>,
  ): Promise<void> {
    const window = this.capabilities.includes('PIPELINING') ? PIPELINE_WINDOW : 1;
    let sent = 0;
    let stopped: InStep | undefined;
    for (let received = 0; received < sent || (!stopped && received < numbers.length); received++) {
      if (!stopped) {
        const batch: string[] = [];
        while (sent < numbers.length && sent - received < window)
          batch.push(`${command(numbers[sent++]!)}\r\n`);
        if (batch.length) this.write(batch.join(''));
      }
      const number = numbers[received]!;
      this.stage = `the answer to ${command(number)}`;
      const status = await this.reader.readStatus();
      if (stopped) {
        if (status.ok) await this.drain(this.reader.body(), number, command(number), limit(number));
        continue;
      }
      try {
        await onAnswer(number, status);
      } catch (err) {
        if (!(err instanceof InStep)) throw err;
        stopped = err;
      }
    }
    if (stopped) throw stopped;
  }

  /** Reads what is left of a body, dropping it; past `max` more bytes the session is given up. */
  private async drain(body: BodyStream, number: number, command: string, max: number): Promise<void> {
    let left = max;
    for (let part = await body.read(); part !== undefined; part = await body.read()) {
      left -= part.length;
      if (left < 0)
        throw this.giveUp(
          new MessageError(
            'PROTOCOL_ERROR',
            `${where(this.source)} sent an answer to ${command} that does not end; the session was given up`,
            { number },
          ),
        );
    }
  }

  private retrLimit(number: number): number {
    const announced = this.listed.get(number);
    return announced === undefined ? Infinity : runawayBytes(announced);
  }

  /**
   * The body, held to its LIST size (`isAnnouncedSize`): a body that is not the announced message fails the
   * consumer's read with a MessageError naming the message. Once it cannot be that message, nothing more is handed
   * on; the rest is read (so the session stays in step) up to `runawayBytes`, past which the session is given up.
   */
  private async *sized(body: BodyStream, number: number, announced: number, read: { bytes: number }): Bytes {
    const lines = new CrlfCounter();
    const limit = runawayBytes(announced);
    let passed = false;
    for (let part = await body.read(); part !== undefined; part = await body.read()) {
      read.bytes += part.length;
      lines.add(part);
      if (read.bytes > limit)
        throw this.giveUp(
          this.notAnnounced(number, announced, `more than ${limit} bytes (the session was given up there)`),
        );
      passed ||= pastAnnouncedSize(announced, read.bytes, lines.count);
      if (!passed) yield part;
    }
    if (passed || !isAnnouncedSize(announced, read.bytes, lines.count))
      throw this.notAnnounced(number, announced, `${read.bytes} bytes (${lines.count} lines)`);
  }

  private notAnnounced(number: number, announced: number, came: string): MessageError {
    return new MessageError(
      'PROTOCOL_ERROR',
      `${where(this.source)} announced message ${number} as ${announced} bytes (LIST) and sent ${came} in answer to RETR ${number}: that is not the message it announced, so it was not stored`,
      { number },
    );
  }

  /** Ends the session at once (nothing more is read), for an answer that may never end; returns `err` to throw. */
  private giveUp(err: UpstreamError): UpstreamError {
    this.reader.abort(err);
    this.destroy();
    return err;
  }

  dele(number: number): Promise<void> {
    checkNumber(number);
    this.prefetched = undefined;
    return this.run(`DELE ${number}`, async () => {
      await this.nodeCommand('line', 'DELE', number);
    });
  }

  quit(mayQuit?: () => void): Promise<void> {
    return this.run('QUIT', async () => {
      try {
        try {
          mayQuit?.();
        } catch (err) {
          // Not QUIT: the connection is dropped in the TRANSACTION state, so the server applies no DELE.
          throw new InStep(err);
        }
        await this.nodeCommand('line', 'QUIT');
      } catch (err) {
        if (err instanceof Pop3Refusal)
          throw new UpstreamError(
            'PROTOCOL_ERROR',
            `${where(this.source)} answered QUIT with -ERR ${serverText(err.text)}: the deletions of this session may not have been applied`,
            true,
            { cause: err },
          );
        throw err;
      } finally {
        this.closed = true;
        this.destroy();
      }
    });
  }

  abort(): void {
    this.closed = true;
    this.reader.abort(
      new UpstreamError('CONNECTION_LOST', `the POP3 session with ${where(this.source)} was aborted`, true),
    );
    this.destroy();
  }

  toUpstream(err: unknown, password?: string): UpstreamError {
    if (err instanceof Pop3Refusal)
      return new UpstreamError(
        'PROTOCOL_ERROR',
        `${where(this.source)} refused ${err.command}: ${serverText(err.text, password)}`,
        true,
        { cause: err },
      );
    return pop3Error(err, {
      source: this.source,
      stage: this.stage,
      tlsHandshake: this.tlsHandshake,
      password,
    });
  }

  /** One operation at a time; a broken connection fails every later call with its original error. */
  private run<T>(stage: string, fn: () => Promise<T>): Promise<T> {
    const task = this.queue.then(async () => {
      if (this.broken) throw this.broken;
      if (this.closed)
        throw new UpstreamError(
          'CONNECTION_LOST',
          `the POP3 session with ${where(this.source)} is closed`,
          false,
        );
      this.stage = stage;
      try {
        if (this.reader.buffered > 0) await this.unsolicited();
        return await fn();
      } catch (err) {
        if (err instanceof InStep) throw err.cause;
        const e = this.toUpstream(err);
        if (!(err instanceof Pop3Refusal)) {
          // Later calls fail as the connection did: the message's error is reported once, by the call it broke.
          this.broken =
            e instanceof MessageError
              ? new UpstreamError(
                  'CONNECTION_LOST',
                  `the POP3 session with ${where(this.source)} was given up after message ${e.at.number}: ${e.message}`,
                  true,
                  { cause: e },
                )
              : e;
          this.destroy();
        }
        throw e;
      }
    });
    this.queue = task.catch(() => undefined);
    return task;
  }

  /** Data before any command: a server that said goodbye on its own (idle timeout), or one out of step. */
  private async unsolicited(): Promise<never> {
    const said = await this.reader.readLine().catch(() => Buffer.alloc(0));
    if (this.reader.hasEnded)
      throw new UpstreamError(
        'CONNECTION_LOST',
        `${where(this.source)} closed the connection on its own (it said: ${printable(said.subarray(0, 120))})`,
        true,
      );
    throw this.reader.protocolError('data nobody asked for', [said]);
  }

  /**
   * Sends a command through node-pop3 and hands it the answer as one whole frame. node-pop3 registers its
   * listener and writes within microtasks of the call, before any socket data can arrive, and `run` checked that
   * nothing was buffered, so the frame we read is the answer to this command.
   */
  private async nodeCommand(frame: Frame, ...args: Array<string | number>): Promise<[string, Readable]> {
    const name = args[0] === 'PASS' ? 'PASS' : args.join(' ');
    this.stage = `the answer to ${name}`;
    const pending = this.conn.command(...args);
    pending.catch(() => undefined);
    const status = await this.reader.readStatus();
    let bytes = status.line;
    if (frame === 'multi' && status.ok) {
      const body = await this.reader.readRawBody(MAX_LISTING_BYTES);
      // node-pop3 ignores a body whose first byte is 0 and would then wait forever for its end.
      if (body[0] === 0) throw this.reader.protocolError(`a ${name} answer starting with NUL`, []);
      bytes = Buffer.concat([status.line, body]);
    }
    this.forward(bytes);
    if (!status.ok) throw new Pop3Refusal(name, status.text);
    return await pending;
  }

  /** A UIDL or LIST through node-pop3: the listing's text, or the server's refusal. */
  private async nodeListing(command: 'UIDL' | 'LIST'): Promise<string | Pop3Refusal> {
    try {
      const [, stream] = await this.nodeCommand('multi', command);
      return await readAll(stream);
    } catch (err) {
      if (err instanceof Pop3Refusal) return err;
      throw err;
    }
  }

  /** The answer to a UIDL or LIST written by us (pipelined): the listing's text, or the server's refusal. */
  private async readListing(command: 'UIDL' | 'LIST'): Promise<string | Pop3Refusal> {
    this.stage = `the answer to ${command}`;
    const status = await this.reader.readStatus();
    if (!status.ok) return new Pop3Refusal(command, status.text);
    // Raw, so an endless or oversized listing fails at once (readBody would read it to its end to stay in step);
    // listing lines start with a digit, so there is nothing to un-stuff, only the terminator to drop.
    const text = (await this.reader.readRawBody(MAX_LISTING_BYTES)).toString('latin1');
    return text.endsWith('.\r\n') ? text.slice(0, -3) : text;
  }

  /** Whether CAPA lists `keyword`, with or without arguments ('UTF8' matches 'UTF8 USER'). */
  private offers(keyword: string): boolean {
    return this.capabilities.some((c) => c === keyword || c.startsWith(`${keyword} `));
  }

  /**
   * RFC 6856: UTF8 is valid in the AUTHORIZATION state only, so it goes after STLS (whose CAPA is the one that
   * counts) and before USER/PASS. Without it a server may serve a message whose headers carry 8-bit bytes as a
   * generated notice instead of the message (Courier does); with it the message comes as stored. A refusal is no
   * reason to stop: the session goes on in ASCII mode, and RETR's size check refuses such a notice.
   */
  private async enableUtf8(): Promise<void> {
    this.write('UTF8\r\n');
    this.stage = 'the answer to UTF8';
    await this.reader.readStatus();
  }

  /** CAPA is read by us: node-pop3 does not know it is a multi-line command. */
  private async capa(): Promise<string[]> {
    this.write('CAPA\r\n');
    return this.readCapa();
  }

  private async readCapa(): Promise<string[]> {
    this.stage = 'the answer to CAPA';
    const status = await this.reader.readStatus();
    if (!status.ok) return [];
    const body = await this.reader.readBody(MAX_CAPA_BYTES);
    return body
      .toString('latin1')
      .split('\r\n')
      .map((line) => line.trim())
      .filter(Boolean)
      .map((line) => {
        const [keyword = '', ...rest] = line.split(/\s+/);
        return [keyword.toUpperCase(), ...rest].join(' ');
      });
  }

  private async login(password: string): Promise<void> {
    const { source } = this;
    if (/[\r\n\0]/.test(source.user) || /[\r\n\0]/.test(password))
      throw new UpstreamError(
        'AUTH_FAILED',
        `the user name or password of source ${source.id} contains a line break or NUL, which POP3 cannot send`,
        false,
      );
    try {
      await this.nodeCommand('line', 'USER', source.user);
      await this.nodeCommand('line', 'PASS', password);
    } catch (err) {
      if (!(err instanceof Pop3Refusal)) throw err;
      const said = serverText(err.text, password);
      // RFC 2449/3206: these say "not now", not "wrong password".
      const transient = /^\[(IN-USE|SYS\/TEMP|LOGIN-DELAY)\]/i.test(said);
      throw new UpstreamError(
        'AUTH_FAILED',
        transient
          ? `POP3 login to ${source.host} for user ${source.user} was refused for now (server said: ${said}); it will be retried`
          : `POP3 login refused by ${source.host} for user ${source.user}: check the password (server said: ${said})`,
        transient,
        { cause: new Pop3Refusal(err.command, said) }, // the server's words, with the password masked
      );
    } finally {
      this.conn._command = ''; // node-pop3 keeps the last command line, which would be "PASS <password>"
    }
  }

  private async startTls(): Promise<void> {
    try {
      await this.nodeCommand('line', 'STLS');
    } catch (err) {
      if (!(err instanceof Pop3Refusal)) throw err;
      throw new UpstreamError(
        'STARTTLS_UNAVAILABLE',
        `${where(this.source)} refused STLS (server said: ${serverText(err.text)}): nothing was sent in clear`,
        false,
        { cause: err },
      );
    }
    // Bytes sent after "+OK" but before the handshake would be read as if they came over TLS.
    if (this.reader.buffered > 0)
      throw this.reader.protocolError('data after accepting STLS, before the TLS handshake', []);
    const plain = this.socket;
    plain.removeListener('data', this.onData);
    this.stage = 'the TLS handshake after STLS';
    this.tlsHandshake = true;
    const secure = tls.connect({ socket: plain, ...this.tlsOptions() });
    this.socket = secure;
    this.conn._socket = secure; // node-pop3 writes its commands through TLS from now on
    this.listen(secure);
    await new Promise<void>((resolve, reject) => {
      this.handshakeFailed = reject;
      this.arm();
      secure.once('secureConnect', () => {
        this.disarm();
        this.handshakeFailed = undefined;
        resolve();
      });
    });
    this.tlsHandshake = false;
    this.tls = tlsInfo(secure);
  }

  /**
   * Certificate checks stay on; `source.ca` adds to the system roots. The name checked is `servername` or the
   * host; SNI is sent only for a DNS name (Node refuses an IP as SNI), while an IP is still verified against the
   * certificate's IP addresses.
   */
  private tlsOptions(): tls.ConnectionOptions {
    const name = this.source.servername ?? this.source.host;
    return {
      ...trustOptions(this.source),
      servername: net.isIP(name) ? '' : name,
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
    };
  }

  /** Detaches node-pop3 from the socket it just created: our reader becomes the only consumer of its data. */
  private takeOver(): void {
    const socket = this.conn._socket;
    if (!socket) throw new Error('node-pop3 did not create its socket synchronously in connect()');
    const own = socket.listeners('data');
    if (own.length !== 1) throw new Error(`node-pop3 attached ${own.length} data listeners, expected 1`);
    this.nodeData = own[0] as (chunk: Buffer) => void;
    socket.removeListener('data', this.nodeData);
    this.socket = socket;
    this.listen(socket);
  }

  private listen(socket: net.Socket): void {
    this.sockets.push(socket);
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer): void => this.reader.feed(chunk);

  private readonly onError = (err: Error): void => this.fail(this.toUpstream(err));

  private readonly onClose = (): void => {
    const what = this.reader.isWaiting || this.handshakeFailed ? ` while waiting for ${this.stage}` : '';
    this.fail(
      new UpstreamError('CONNECTION_LOST', `the connection to ${where(this.source)} closed${what}`, true),
    );
  };

  private fail(err: UpstreamError): void {
    this.disarm();
    this.reader.end(err);
    const handshake = this.handshakeFailed;
    this.handshakeFailed = undefined;
    handshake?.(err);
  }

  private forward(frame: Buffer): void {
    this.nodeData(frame);
  }

  private write(text: string): void {
    this.socket.write(text, 'latin1');
  }

  private arm(): void {
    this.disarm();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const hint = this.stage === 'the greeting' ? ' (is this a POP3 port?)' : '';
      const err = new UpstreamError(
        'TIMEOUT',
        `${where(this.source)} sent nothing for ${this.timeoutMs} ms while we waited for ${this.stage}${hint}`,
        true,
      );
      this.reader.abort(err);
      this.fail(err);
      this.destroy();
    }, this.timeoutMs);
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private destroy(): void {
    this.disarm();
    for (const s of this.sockets) s.destroy();
  }

  private greetingError(greeting: Buffer): UpstreamError {
    const said = printable(greeting.subarray(0, 120));
    if (startsWith(greeting, '-ERR'))
      return new UpstreamError(
        'CONNECTION_REFUSED',
        `${where(this.source)} refused the POP3 session at its greeting (server said: ${said})`,
        true,
      );
    const greeted = said ? `it greeted with "${said}"` : 'its first line is not a POP3 greeting';
    // An IMAP greeting answers at once: the port (or "protocol") is the wrong one, no need to wait for a timeout.
    const imap = /^\* (OK|PREAUTH|BYE)\b/i.test(said) ? ', which looks like an IMAP server' : '';
    return new UpstreamError(
      'NOT_THAT_PROTOCOL',
      `${where(this.source)} does not speak POP3 (${greeted}${imap}): check "port" and "protocol" (POP3S is usually 995, POP3 110)`,
      false,
    );
  }

  private parseListing(text: string, command: string): Array<[number, string]> {
    const out: Array<[number, string]> = [];
    for (const line of text.split('\r\n')) {
      if (line.trim() === '') continue;
      const m = /^(\d+)\s+(\S+)/.exec(line);
      if (!m)
        throw this.reader.protocolError(`a ${command} line that is not "number value"`, [Buffer.from(line)]);
      out.push([Number(m[1]), m[2]!]);
    }
    return out;
  }
}

function checkNumber(n: number): void {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`POP3 message numbers start at 1, got ${n}`);
}

async function readAll(stream: Readable | null | undefined): Promise<string> {
  if (!stream) return '';
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(parts).toString('latin1');
}

function tlsInfo(socket: tls.TLSSocket): TlsInfo {
  const cert = socket.getPeerCertificate();
  const cipher = socket.getCipher();
  const cn = (name: unknown) => {
    const v = (name as Record<string, unknown> | undefined)?.CN;
    return Array.isArray(v) ? v.join(', ') : typeof v === 'string' ? v : '';
  };
  return {
    protocol: socket.getProtocol() ?? 'unknown',
    cipher: cipher?.name ?? 'unknown',
    subject: cn(cert?.subject),
    issuer: cn(cert?.issuer),
    validTo: cert?.valid_to ?? '',
  };
}
