import net from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import Pop3Command from 'node-pop3';
import { UpstreamError } from '../../core/errors';
import type { Source } from '../../core/model';
import type { Bytes, ConnectOptions, Pop3Listing, Pop3Session, TlsInfo } from '../../core/ports';
import { Pop3Refusal, pop3Error, serverText, where } from './errors';
import { Pop3Reader, printable, startsWith, type BodyStream, type ReaderLimits } from './reader';

/** RETR commands in flight when the server offers PIPELINING: enough to hide the round trips, few enough that a
 *  failed run leaves little to drain. Responses are read one by one, so this bounds commands, not memory. */
const PIPELINE_WINDOW = 8;
const MAX_CAPA_BYTES = 64 * 1024;
const MAX_TOP_BYTES = 8 * 1024 * 1024;
/**
 * UIDL/LIST answers: ~40 bytes a message, so this is some 400,000 messages. The answer is held several times over
 * (our frame, node-pop3's stream, the text), so an endless one must stop early: at 64 MB it cost ~70 MB of memory.
 */
const MAX_LISTING_BYTES = 16 * 1024 * 1024;
/** How far a LIST size and the bytes RETR serves may differ before the body is refused (see `sizesAgree`). */
const SIZE_SLACK_BYTES = 1024 * 1024;

/**
 * Whether a body of `actual` bytes may be the message LIST announced at `announced` bytes. LIST sizes are not exact
 * everywhere (servers that count LF line ends, Exchange's estimates), but a body more than twice the other plus a
 * megabyte is not the message announced: a runaway answer, or a truncated one that must not be stored as the
 * message (a deleting policy would then DELE the real one).
 */
function sizesAgree(announced: number, actual: number): boolean {
  return Math.max(announced, actual) <= 2 * Math.min(announced, actual) + SIZE_SLACK_BYTES;
}

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

/** Thrown through `retrieve` so the consumer's own error reaches the caller unchanged. */
class ConsumerFailure extends Error {
  constructor(override readonly cause: unknown) {
    super('the consumer of a message body failed');
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
 * chunk; CAPA, TOP and RETR we write and read ourselves. Operations are serialized; any failure other than a
 * plain -ERR leaves the session broken and its socket destroyed.
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
      if (this.capabilities.length > 0 && !this.capabilities.includes('TOP'))
        throw new UpstreamError(
          'CAPABILITY_MISSING',
          `${where(this.source)} does not offer TOP, needed to identify messages when UIDL is missing`,
          false,
        );
      this.write(`TOP ${number} 0\r\n`);
      const status = await this.reader.readStatus();
      if (!status.ok) throw new Pop3Refusal(`TOP ${number} 0`, status.text);
      this.stage = `the headers of message ${number} (TOP)`;
      return await this.reader.readBody(MAX_TOP_BYTES);
    });
  }

  retrieve(numbers: number[], onMessage: (number: number, body: Bytes) => Promise<void>): Promise<void> {
    numbers.forEach(checkNumber);
    return this.run('RETR', async () => {
      const window = this.capabilities.includes('PIPELINING') ? PIPELINE_WINDOW : 1;
      let sent = 0;
      let consumerError: ConsumerFailure | undefined;
      for (let received = 0; received < sent || (!consumerError && received < numbers.length); received++) {
        if (!consumerError) {
          const batch: string[] = [];
          while (sent < numbers.length && sent - received < window) batch.push(`RETR ${numbers[sent++]}\r\n`);
          if (batch.length) this.write(batch.join(''));
        }
        const number = numbers[received]!;
        this.stage = `the answer to RETR ${number}`;
        const status = await this.reader.readStatus();
        if (!status.ok) continue; // deleted by another client meanwhile: not delivered, the session goes on
        this.stage = `the body of message ${number} (RETR)`;
        const body = this.reader.body();
        if (!consumerError) {
          try {
            const announced = this.listed.get(number);
            await onMessage(number, announced === undefined ? body : this.sized(body, number, announced));
          } catch (err) {
            // When the body failed under the consumer, the connection's error is the real one.
            const failure = this.reader.failure;
            if (failure) throw failure;
            consumerError = new ConsumerFailure(err);
          }
        }
        await body.drain(); // a consumer that stopped early, or answers still in flight: stay in step
      }
      if (consumerError) throw consumerError;
    });
  }

  /**
   * The body, held to its LIST size. Before, a RETR that never ended was streamed into storage until the run's
   * deadline, and one far off its LIST size was stored and then deleted upstream by a deleting policy.
   */
  private async *sized(body: BodyStream, number: number, announced: number): Bytes {
    let received = 0;
    for await (const part of body) {
      received += part.length;
      if (received > 2 * announced + SIZE_SLACK_BYTES) {
        // Reading on might never end: the session is given up (nothing is drained) and fails with this error.
        const err = this.reader.protocolError(
          `more than ${2 * announced + SIZE_SLACK_BYTES} bytes in answer to RETR ${number}, whose LIST size is ${announced}`,
          [],
        );
        this.reader.abort(err);
        this.destroy();
        throw err;
      }
      yield part;
    }
    if (!sizesAgree(announced, received))
      throw new UpstreamError(
        'PROTOCOL_ERROR',
        `${where(this.source)} sent ${received} bytes for message ${number}, whose LIST size is ${announced}: that is not the message it announced, so it was not stored`,
        true,
      );
  }

  dele(number: number): Promise<void> {
    checkNumber(number);
    this.prefetched = undefined;
    return this.run(`DELE ${number}`, async () => {
      await this.nodeCommand('line', 'DELE', number);
    });
  }

  quit(): Promise<void> {
    return this.run('QUIT', async () => {
      try {
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
        if (err instanceof ConsumerFailure) throw err.cause;
        const e = this.toUpstream(err);
        if (!(err instanceof Pop3Refusal)) {
          this.broken = e;
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
      ...(this.source.ca ? { ca: [...tls.rootCertificates, this.source.ca] } : {}),
      servername: net.isIP(name) ? '' : name,
      rejectUnauthorized: true,
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
    return new UpstreamError(
      'NOT_THAT_PROTOCOL',
      `${where(this.source)} does not speak POP3 (${greeted}): check "port" and "protocol" (POP3S is usually 995, POP3 110)`,
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
