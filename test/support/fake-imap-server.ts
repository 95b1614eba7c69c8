import net from 'node:net';

/**
 * A scripted IMAP server on 127.0.0.1 (plain TCP) for the faults Dovecot will not make on demand: sizes that lie,
 * literals longer than announced, endless answers, garbage, silence (docs/contributing.md, tests). It speaks just enough IMAP4rev1
 * for what Tributary sends: CAPABILITY, LOGIN, ENABLE, LIST, EXAMINE/SELECT, STATUS, UID FETCH (UID, RFC822.SIZE,
 * INTERNALDATE, BODY.PEEK[] whole or partial, BODY.PEEK[HEADER]), UID SEARCH UID, UID STORE, UID EXPUNGE, NOOP,
 * LOGOUT. Not a stand-in for Dovecot.
 */

/** What the server writes: bytes (the string 'close' drops the connection instead); a stream, written with
 *  backpressure until it ends or the client goes away (an endless one never ends); or a pause. */
export type FakePiece = string | Buffer | { stream: () => AsyncIterable<Buffer> } | { pauseMs: number };

export interface FakeImapCommand {
  tag: string;
  /** Upper-cased, `UID FETCH` for a UID command. */
  verb: string;
  /** The rest of the line after the verb. */
  args: string;
  line: string;
}

export interface FakeImapOptions {
  /** Message i has UID i + 1 (a UID leaves with it when expunged). */
  messages: Buffer[];
  password?: string;
  capabilities?: string[];
  /** RFC822.SIZE to announce for UID n instead of the true size: the lie. */
  announcedSize?: (uid: number, actual: number) => number;
  /** The literal sent for BODY[] of UID n (whole or the partial window asked): the other lie. */
  bodyFor?: (uid: number, window: Buffer) => FakePiece[];
  /** Pieces in place of the greeting; null says nothing at all. */
  greeting?: FakePiece[] | null;
  /** The whole answer to a command instead of the normal one; 'stall' answers nothing. */
  override?: (command: FakeImapCommand) => FakePiece[] | 'stall' | undefined;
  /** Response codes EXAMINE/SELECT leave out ('UIDNEXT', 'UIDVALIDITY'): RFC 3501 lets a server omit them. */
  examineOmits?: string[];
  /** STATUS items the server leaves out of its answer ('UIDNEXT', ...). */
  statusOmits?: string[];
  /** What BODY[] / BODY[HEADER] serves for UID n to a connection that did not ENABLE UTF8=ACCEPT (RFC 6855's
   *  downgraded message); the true bytes otherwise. */
  downgraded?: (uid: number, body: Buffer) => Buffer;
}

export interface FakeImapServer {
  port: number;
  /** Every command line received, in order (LOGIN included: the fake is the server). */
  received: string[];
  /** Commands that would delete: UID STORE with \Deleted, EXPUNGE, UID EXPUNGE. */
  deletions: string[];
  /** UIDs actually removed by an expunge. */
  expunged: Set<number>;
  /** What each ENABLE enabled, in order (`UTF8=ACCEPT`). */
  enabled: string[];
  close(): Promise<void>;
}

const UIDVALIDITY = 4242;

/** An endless stream of `unit`, as fast as the client reads it. */
export function endless(unit: Buffer | string): { stream: () => AsyncIterable<Buffer> } {
  const chunk = Buffer.from(typeof unit === 'string' ? unit : unit.toString('latin1'), 'latin1');
  // Whole units per write, at least 64 KB: full speed without one syscall per unit.
  const block = Buffer.concat(Array(Math.max(1, Math.ceil(65536 / chunk.length))).fill(chunk));
  return {
    stream: async function* () {
      for (;;) yield block;
    },
  };
}

/** `size` bytes of filler in lines of up to 78 characters ending with CRLF, a valid message body for any size. */
export function filler(size: number, seed = 'x'): Buffer {
  const line = Buffer.from(seed.repeat(76).slice(0, 76) + '\r\n');
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += line.length) line.copy(out, i, 0, Math.min(line.length, size - i));
  if (size >= 2) out.write('\r\n', size - 2, 'latin1');
  return out;
}

/** Writes pieces one after the other, respecting the socket's backpressure; stops when the socket is gone. */
export class PieceWriter {
  private readonly queue: FakePiece[] = [];
  private running = false;

  constructor(private readonly socket: net.Socket) {}

  send(...pieces: FakePiece[]): void {
    this.queue.push(...pieces);
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length && !this.socket.destroyed) {
        const piece = this.queue.shift()!;
        if (piece === 'close') {
          this.socket.destroy();
        } else if (typeof piece === 'string' || Buffer.isBuffer(piece)) {
          await this.write(typeof piece === 'string' ? Buffer.from(piece, 'latin1') : piece);
        } else if ('pauseMs' in piece) {
          await new Promise((resolve) => setTimeout(resolve, piece.pauseMs));
        } else {
          for await (const chunk of piece.stream()) {
            if (this.socket.destroyed) break;
            await this.write(chunk);
          }
        }
      }
    } finally {
      this.running = false;
    }
  }

  private write(data: Buffer): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    if (this.socket.write(data)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }
}

/** `1:3,7,9:*` against the UIDs present (`*` is the highest; `n:*` includes it even when below n, RFC 3501). */
function parseSet(set: string, uids: number[]): number[] {
  const max = uids.length ? uids[uids.length - 1]! : 0;
  const wanted = new Set<number>();
  for (const part of set.split(',')) {
    const [a, b] = part.split(':');
    const lo = a === '*' ? max : Number(a);
    const hi = b === undefined ? lo : b === '*' ? max : Number(b);
    const [from, to] = lo <= hi ? [lo, hi] : [hi, lo];
    for (const uid of uids) if (uid >= from && uid <= to) wanted.add(uid);
  }
  return [...wanted].sort((x, y) => x - y);
}

export async function startFakeImap(options: FakeImapOptions): Promise<FakeImapServer> {
  const password = options.password ?? 'secret';
  const caps = options.capabilities ?? ['IMAP4rev1', 'UIDPLUS', 'LITERAL+'];
  const capLine = caps.join(' ');
  /** The mailbox, shared by every connection: UID -> bytes. */
  const mailbox = new Map<number, Buffer>(options.messages.map((m, i) => [i + 1, m]));
  const sockets = new Set<net.Socket>();
  const fake: FakeImapServer = {
    port: 0,
    received: [],
    deletions: [],
    expunged: new Set(),
    enabled: [],
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const out = new PieceWriter(socket);
    const deleted = new Set<number>();
    /** Extensions this connection ENABLEd. */
    const enabled = new Set<string>();
    const served = (uid: number, body: Buffer) =>
      options.downgraded && !enabled.has('UTF8=ACCEPT') ? options.downgraded(uid, body) : body;

    const uids = () => [...mailbox.keys()].sort((a, b) => a - b);
    const seqOf = (uid: number) => uids().indexOf(uid) + 1;
    /** Never below what was ever handed out: UIDs are not reused. */
    const uidNext = () => {
      const all = uids();
      return Math.max((all.length ? all[all.length - 1]! : 0) + 1, options.messages.length + 1);
    };

    const fetch = (tag: string, args: string): FakePiece[] => {
      // A list of items, or one bare item (`UID FETCH * UID`).
      const m = /^(\S+)\s+(?:\((.*)\)|(\S+))$/.exec(args);
      if (!m) return [`${tag} BAD bad FETCH\r\n`];
      const items = (m[2] ?? m[3]!).toUpperCase();
      const pieces: FakePiece[] = [];
      for (const uid of parseSet(m[1]!, uids())) {
        const body = served(uid, mailbox.get(uid)!);
        const attrs: string[] = [`UID ${uid}`];
        if (items.includes('RFC822.SIZE'))
          attrs.push(`RFC822.SIZE ${options.announcedSize?.(uid, body.length) ?? body.length}`);
        if (items.includes('INTERNALDATE'))
          attrs.push(`INTERNALDATE "01-Jan-2024 00:00:${String(uid % 60).padStart(2, '0')} +0000"`);
        if (items.includes('BODY.PEEK[HEADER]')) {
          const end = body.indexOf('\r\n\r\n');
          const header = end < 0 ? body : body.subarray(0, end + 4);
          pieces.push(
            `* ${seqOf(uid)} FETCH (${attrs.join(' ')} BODY[HEADER] {${header.length}}\r\n`,
            header,
            ')\r\n',
          );
          continue;
        }
        const peek = /BODY\.PEEK\[\](?:<(\d+)\.(\d+)>)?/.exec(items);
        if (!peek) {
          pieces.push(`* ${seqOf(uid)} FETCH (${attrs.join(' ')})\r\n`);
          continue;
        }
        const start = peek[1] === undefined ? 0 : Number(peek[1]);
        const window = peek[2] === undefined ? body : body.subarray(start, start + Number(peek[2]));
        const section = peek[1] === undefined ? 'BODY[]' : `BODY[]<${start}>`;
        const literal = options.bodyFor?.(uid, window) ?? [`{${window.length}}\r\n`, window];
        pieces.push(`* ${seqOf(uid)} FETCH (${attrs.join(' ')} ${section} `, ...literal, ')\r\n');
      }
      pieces.push(`${tag} OK FETCH done\r\n`);
      return pieces;
    };

    const answer = (cmd: FakeImapCommand): FakePiece[] => {
      const { tag, verb, args } = cmd;
      switch (verb) {
        case 'CAPABILITY':
          return [`* CAPABILITY ${capLine}\r\n${tag} OK done\r\n`];
        case 'LOGIN': {
          const [, pass] = args.split(' ').map((a) => a.replace(/^"(.*)"$/, '$1'));
          return pass === password
            ? [`${tag} OK [CAPABILITY ${capLine}] logged in\r\n`]
            : [`${tag} NO [AUTHENTICATIONFAILED] bad password\r\n`];
        }
        case 'LIST':
          return [`* LIST (\\HasNoChildren) "/" INBOX\r\n${tag} OK LIST done\r\n`];
        case 'EXAMINE':
        case 'SELECT': {
          const all = uids();
          const omits = options.examineOmits ?? [];
          return [
            `* ${all.length} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n`,
            omits.includes('UIDVALIDITY') ? '' : `* OK [UIDVALIDITY ${UIDVALIDITY}] UIDs valid\r\n`,
            omits.includes('UIDNEXT') ? '' : `* OK [UIDNEXT ${uidNext()}] next\r\n`,
            `${tag} OK [${verb === 'EXAMINE' ? 'READ-ONLY' : 'READ-WRITE'}] opened\r\n`,
          ];
        }
        case 'STATUS': {
          const m = /^("[^"]*"|\S+)\s+\((.*)\)$/.exec(args);
          if (!m) return [`${tag} BAD bad STATUS\r\n`];
          const values: Record<string, number> = {
            MESSAGES: uids().length,
            UIDNEXT: uidNext(),
            UIDVALIDITY: UIDVALIDITY,
            UNSEEN: 0,
          };
          const items = m[2]!
            .toUpperCase()
            .split(/\s+/)
            .filter((item) => item in values && !(options.statusOmits ?? []).includes(item));
          return [
            `* STATUS ${m[1]} (${items.map((item) => `${item} ${values[item]}`).join(' ')})\r\n`,
            `${tag} OK STATUS done\r\n`,
          ];
        }
        case 'ENABLE': {
          const offered = new Set(caps.map((c) => c.toUpperCase()));
          const now = args
            .toUpperCase()
            .split(/\s+/)
            .filter((e) => offered.has(e));
          for (const e of now) enabled.add(e);
          fake.enabled.push(...now);
          return [`* ENABLED${now.map((e) => ` ${e}`).join('')}\r\n${tag} OK ENABLE done\r\n`];
        }
        case 'UID FETCH':
          return fetch(tag, args);
        case 'UID SEARCH': {
          const m = /UID\s+(\S+)/i.exec(args);
          const found = m ? parseSet(m[1]!, uids()) : uids();
          return [`* SEARCH${found.map((u) => ` ${u}`).join('')}\r\n${tag} OK SEARCH done\r\n`];
        }
        case 'UID STORE': {
          const [set = '', flags = ''] = args.split(/\s+(.*)/);
          if (/\\Deleted/i.test(flags) && flags.startsWith('+')) {
            fake.deletions.push(cmd.line);
            for (const uid of parseSet(set, uids())) deleted.add(uid);
          }
          return [`${tag} OK STORE done\r\n`];
        }
        case 'UID EXPUNGE':
        case 'EXPUNGE': {
          fake.deletions.push(cmd.line);
          const set =
            verb === 'EXPUNGE' ? [...deleted] : parseSet(args, uids()).filter((u) => deleted.has(u));
          const pieces: FakePiece[] = [];
          for (const uid of set.sort((a, b) => b - a)) {
            pieces.push(`* ${seqOf(uid)} EXPUNGE\r\n`);
            mailbox.delete(uid);
            deleted.delete(uid);
            fake.expunged.add(uid);
          }
          return [...pieces, `${tag} OK EXPUNGE done\r\n`];
        }
        case 'NOOP':
          return [`${tag} OK NOOP done\r\n`];
        case 'LOGOUT':
          return [`* BYE bye\r\n${tag} OK LOGOUT done\r\n`, 'close'];
        default:
          return [`${tag} BAD unknown command\r\n`];
      }
    };

    out.send(
      ...(options.greeting === null
        ? []
        : (options.greeting ?? [`* OK [CAPABILITY ${capLine}] fake IMAP ready\r\n`])),
    );

    let input = '';
    socket.on('data', (chunk: Buffer) => {
      input += chunk.toString('latin1');
      let eol: number;
      while ((eol = input.indexOf('\r\n')) >= 0) {
        const line = input.slice(0, eol);
        input = input.slice(eol + 2);
        fake.received.push(line);
        const m = /^(\S+)\s+(UID\s+\S+|\S+)\s*(.*)$/i.exec(line);
        if (!m) continue;
        const cmd: FakeImapCommand = {
          tag: m[1]!,
          verb: m[2]!.toUpperCase().replace(/\s+/, ' '),
          args: m[3]!,
          line,
        };
        const custom = options.override?.(cmd);
        if (custom === 'stall') continue;
        out.send(...(custom ?? answer(cmd)));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.port = (server.address() as net.AddressInfo).port;
  return fake;
}
