import net from 'node:net';

/**
 * A scripted POP3 server on 127.0.0.1 for the faults Dovecot will not make on demand: every byte in its own TCP
 * segment, stalls, drops mid-body, garbage, sizes that lie, answers that never end. Not a stand-in for Dovecot on
 * the happy path.
 */

/** Beyond bytes and 'close': a stream written with backpressure until it ends or the client goes away (an endless
 *  one never ends), or a pause. */
export type FakeStreamPiece = { stream: () => AsyncIterable<Buffer> } | { pauseMs: number };

export interface FakeOptions {
  messages: Buffer[];
  password?: string;
  capabilities?: string[];
  /** 'bytes': one byte per write with setImmediate between (NODELAY); 'bulk': whole answers. */
  mode?: 'bytes' | 'bulk';
  /** The greeting line, or pieces in its place (garbage); null says nothing at all. */
  greeting?: string | null | Array<Buffer | string | FakeStreamPiece>;
  /** The size LIST announces for message n instead of its true size: the lie. */
  announcedSize?: (n: number, actual: number) => number;
  /**
   * Answer for a command instead of the normal one (`undefined` = normal): pieces sent in order, where 'close'
   * drops the connection; 'stall' answers nothing.
   */
  override?: (command: string) => Array<Buffer | string | FakeStreamPiece> | 'stall' | undefined;
}

export interface FakeServer {
  port: number;
  /** Every command line received, in order (PASS included: the fake is the server). */
  received: string[];
  /** For each line of `received`, the number of the TCP read it completed in: lines sent in one write share it. */
  arrivals: number[];
  /** Most RETR commands outstanding at once as the server saw it (1 = one at a time, more = pipelined). */
  maxRetrAhead: number;
  /** The same for TOP. */
  maxTopAhead: number;
  /** The server side of the last connection, to look at its write buffer. */
  lastSocket?: net.Socket;
  deleted: Set<number>;
  close(): Promise<void>;
}

/** Writes a stream piece with backpressure (stopping when the socket is gone), or waits out a pause. */
async function writePiece(socket: net.Socket, piece: FakeStreamPiece): Promise<void> {
  if ('pauseMs' in piece) {
    await new Promise((resolve) => setTimeout(resolve, piece.pauseMs));
    return;
  }
  for await (const chunk of piece.stream()) {
    if (socket.destroyed) return;
    if (socket.write(chunk)) continue;
    await new Promise<void>((resolve) => {
      const done = () => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      socket.on('drain', done);
      socket.on('close', done);
    });
  }
}

/** Whether the header block of a message holds 8-bit bytes (RFC 6532 headers, or raw Latin-1 ones). */
function eightBitHeaders(message: Buffer): boolean {
  const end = message.indexOf('\r\n\r\n');
  return message.subarray(0, end < 0 ? message.length : end).some((b) => b > 0x7f);
}

/**
 * What Courier's pop3d serves for a message with 8-bit headers to a client that did not send UTF8: a generated
 * "cannot display" message with the original attached, while LIST still gives the original's size.
 */
export function utf8Notice(message: Buffer): Buffer {
  const boundary = '=_4242-1700000000';
  const head = [
    'From: Mail Delivery Subsystem <postmaster>',
    'Subject: Cannot display Unicode content',
    'Mime-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    '',
    '',
    `--${boundary}`,
    'Content-Type: text/plain',
    '',
    'This E-mail message was determined to be Unicode-formatted',
    'but your E-mail reader does not support Unicode E-mail.',
    '',
    'Please use an E-mail reader that supports POP3 with UTF-8',
    '(see https://tools.ietf.org/html/rfc6856.html).',
    '',
    "This can also happen when the sender's E-mail program does not",
    'correctly format the sent message.',
    '',
    'The original message is included as a separate attachment',
    'so that it can be downloaded manually.',
    '',
    `--${boundary}`,
    'Content-Type: message/global',
    '',
    '',
  ].join('\r\n');
  return Buffer.concat([Buffer.from(head, 'latin1'), message, Buffer.from(`\r\n--${boundary}--\r\n`)]);
}

function stuff(message: Buffer): Buffer {
  const text = message.toString('latin1');
  return Buffer.from(text.replace(/(^|\r\n)\./g, '$1..'), 'latin1');
}

export async function startFakePop3(options: FakeOptions): Promise<FakeServer> {
  const mode = options.mode ?? 'bytes';
  const password = options.password ?? 'secret';
  const caps = options.capabilities ?? ['USER', 'UIDL', 'TOP', 'PIPELINING'];
  const offersUtf8 = caps.some((c) => c === 'UTF8' || c.startsWith('UTF8 '));
  const sockets = new Set<net.Socket>();
  const fake: FakeServer = {
    port: 0,
    received: [],
    arrivals: [],
    maxRetrAhead: 0,
    maxTopAhead: 0,
    deleted: new Set(),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  let reads = 0;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    fake.lastSocket = socket;
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    const out: Array<{ data: Buffer | 'close' | FakeStreamPiece; verb?: 'RETR' | 'TOP' }> = [];
    let writing = false;
    /** RETR and TOP answers queued or being written. */
    const unfinished = { RETR: 0, TOP: 0 };
    let deletedThisSession = new Set<number>();
    let loggedIn = false;
    let utf8 = false;
    /** What RETR and TOP serve: the message, or (UTF8 offered, not enabled, 8-bit headers) Courier's notice. */
    const served = (msg: Buffer) => (offersUtf8 && !utf8 && eightBitHeaders(msg) ? utf8Notice(msg) : msg);

    const pump = () => {
      if (writing) return;
      const item = out.shift();
      if (item === undefined) return;
      const next = item.data;
      if (next === 'close') {
        socket.destroy();
        return;
      }
      writing = true;
      const done = () => {
        writing = false;
        if (item.verb) unfinished[item.verb]--;
        pump();
      };
      if (!Buffer.isBuffer(next)) {
        void writePiece(socket, next).then(done);
        return;
      }
      if (mode === 'bulk') {
        socket.write(next, () => setImmediate(done));
        return;
      }
      let i = 0;
      const step = () => {
        if (socket.destroyed) return;
        if (i >= next.length) return done();
        socket.write(next.subarray(i, ++i));
        setImmediate(step);
      };
      step();
    };
    const send = (data: Buffer | string | FakeStreamPiece, verb?: 'RETR' | 'TOP') => {
      out.push({
        data: typeof data === 'string' && data !== 'close' ? Buffer.from(data, 'latin1') : data,
        ...(verb ? { verb } : {}),
      });
      if (verb) unfinished[verb]++;
      pump();
    };

    const greeting = options.greeting === undefined ? '+OK fake POP3 ready\r\n' : options.greeting;
    if (Array.isArray(greeting)) for (const piece of greeting) send(piece);
    else if (greeting !== null) send(greeting);

    let input = '';
    socket.on('data', (chunk: Buffer) => {
      reads++;
      input += chunk.toString('latin1');
      let eol: number;
      while ((eol = input.indexOf('\r\n')) >= 0) {
        const line = input.slice(0, eol);
        input = input.slice(eol + 2);
        fake.received.push(line);
        fake.arrivals.push(reads);
        const [verb = '', arg1, arg2] = line.split(' ');
        const counted =
          verb.toUpperCase() === 'RETR' ? 'RETR' : verb.toUpperCase() === 'TOP' ? 'TOP' : undefined;
        if (counted === 'RETR') fake.maxRetrAhead = Math.max(fake.maxRetrAhead, unfinished.RETR + 1);
        if (counted === 'TOP') fake.maxTopAhead = Math.max(fake.maxTopAhead, unfinished.TOP + 1);
        const custom = options.override?.(line);
        if (custom === 'stall') continue;
        if (custom !== undefined) {
          custom.forEach((piece, i) => send(piece, i === custom.length - 1 ? counted : undefined));
          continue;
        }
        const n = Number(arg1);
        const msg = options.messages[n - 1];
        const exists = msg !== undefined && !deletedThisSession.has(n);
        switch (verb.toUpperCase()) {
          case 'CAPA':
            send(`+OK\r\n${caps.map((c) => `${c}\r\n`).join('')}.\r\n`);
            break;
          case 'USER':
            send('+OK\r\n');
            break;
          case 'PASS':
            loggedIn = arg1 === password;
            send(loggedIn ? '+OK logged in\r\n' : `-ERR [AUTH] Authentication failed.\r\n`);
            break;
          case 'UTF8': // RFC 6856: AUTHORIZATION state only
            if (offersUtf8 && !loggedIn) utf8 = true;
            send(utf8 ? '+OK UTF8 enabled\r\n' : '-ERR Invalid command.\r\n');
            break;
          case 'STAT': {
            const size = options.messages.reduce((s, m) => s + m.length, 0);
            send(`+OK ${options.messages.length} ${size}\r\n`);
            break;
          }
          case 'UIDL': // messages marked deleted in this session are not listed (RFC 1939)
            send(
              `+OK\r\n${options.messages
                .map((_, i) => (deletedThisSession.has(i + 1) ? '' : `${i + 1} uid-${i + 1}\r\n`))
                .join('')}.\r\n`,
            );
            break;
          case 'LIST':
            send(
              `+OK\r\n${options.messages
                .map((m, i) =>
                  deletedThisSession.has(i + 1)
                    ? ''
                    : `${i + 1} ${options.announcedSize?.(i + 1, m.length) ?? m.length}\r\n`,
                )
                .join('')}.\r\n`,
            );
            break;
          case 'RETR':
            if (!exists) send(`-ERR no such message\r\n`, 'RETR');
            else
              send(
                Buffer.concat([
                  Buffer.from(`+OK ${served(msg).length} octets\r\n`),
                  stuff(served(msg)),
                  Buffer.from('.\r\n'),
                ]),
                'RETR',
              );
            break;
          case 'TOP': {
            if (!exists || arg2 !== '0') {
              send('-ERR no such message\r\n', 'TOP');
              break;
            }
            const text = served(msg).toString('latin1');
            const head = text.slice(0, text.indexOf('\r\n\r\n') + 4);
            send(
              Buffer.concat([
                Buffer.from('+OK\r\n'),
                stuff(Buffer.from(head, 'latin1')),
                Buffer.from('.\r\n'),
              ]),
              'TOP',
            );
            break;
          }
          case 'DELE':
            deletedThisSession.add(n);
            send(exists ? '+OK deleted\r\n' : '-ERR no such message\r\n');
            break;
          case 'QUIT':
            for (const d of deletedThisSession) fake.deleted.add(d);
            deletedThisSession = new Set();
            send('+OK bye\r\n');
            send('close');
            break;
          default:
            send('-ERR unknown command\r\n');
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.port = (server.address() as net.AddressInfo).port;
  return fake;
}
