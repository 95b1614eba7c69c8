import { createHash } from 'node:crypto';
import util from 'node:util';
import { openPop3Session } from '../../../functions/adapters/pop3';
import { Pop3Reader } from '../../../functions/adapters/pop3/reader';
import { MessageError, UpstreamError } from '../../../functions/core/errors';
import type { Source } from '../../../functions/core/model';
import type { Bytes, Pop3Session } from '../../../functions/core/ports';
import { startFakePop3, utf8Notice, type FakeOptions, type FakeServer } from './fake-pop3-server';

const PASSWORD = 'sw0rdfish-9c1e';

const MESSAGES = [
  Buffer.from('Subject: one\r\nFrom: a@example.test\r\n\r\n.\r\n..\r\n.x\r\nend\r\n', 'latin1'),
  Buffer.from('Subject: caf\xe9\r\n\r\n8-bit \xe9\xff\x80 and NUL \x00 here\r\n.\r\n', 'latin1'),
  Buffer.from('Subject: three\r\n\r\n' + 'y'.repeat(3000) + '\r\n', 'latin1'),
];

function source(port: number, extra: Partial<Source> = {}): Source {
  return {
    id: 'fake',
    protocol: 'pop3',
    host: '127.0.0.1',
    port,
    tls: 'none',
    user: 'ann',
    folders: [],
    pollMinutes: 5,
    enabled: true,
    retention: { mode: 'keep' },
    ...extra,
  };
}

async function collect(body: Bytes): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of body) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let fake: FakeServer | undefined;
let session: Pop3Session | undefined;

async function start(options: Partial<FakeOptions> = {}, timeoutMs = 5000, extra: Partial<Source> = {}) {
  fake = await startFakePop3({ messages: MESSAGES, password: PASSWORD, ...options });
  session = await openPop3Session(source(fake.port, extra), PASSWORD, { timeoutMs });
  return { fake, session };
}

afterEach(async () => {
  session?.abort();
  session = undefined;
  await fake?.close();
  fake = undefined;
});

describe('openPop3Session against a server that sends every byte in its own TCP segment', () => {
  it('runs a whole session: greeting, CAPA, USER/PASS, STAT, UIDL, LIST, RETR, TOP, DELE, QUIT', async () => {
    // A spy that calls through: it only counts how the bytes reached the reader.
    const feed = jest.spyOn(Pop3Reader.prototype, 'feed');
    const { fake, session } = await start({ mode: 'bytes' });
    expect(session.capabilities).toEqual(['USER', 'UIDL', 'TOP', 'PIPELINING']);
    expect(session.tls).toBeUndefined();
    expect(await session.stat()).toEqual({
      count: 3,
      octets: MESSAGES.reduce((s, m) => s + m.length, 0),
    });
    expect(await session.list()).toEqual(
      MESSAGES.map((m, i) => ({ number: i + 1, uidl: `uid-${i + 1}`, size: m.length })),
    );
    const got: Array<[number, Buffer]> = [];
    await session.retrieve([1, 2, 3], async (n, body) => {
      got.push([n, await collect(body)]);
    });
    expect(got.map(([n]) => n)).toEqual([1, 2, 3]);
    got.forEach(([n, bytes]) => expect(bytes.equals(MESSAGES[n - 1]!)).toBe(true));
    expect(fake.maxRetrAhead).toBe(3); // PIPELINING: all three RETRs went out before the first answer ended
    const head = await session.topHeaders(2);
    expect(head.equals(Buffer.from('Subject: caf\xe9\r\n\r\n', 'latin1'))).toBe(true);
    await session.dele(1);
    await session.quit();
    expect([...fake.deleted]).toEqual([1]);
    expect(fake.received).toEqual([
      'CAPA',
      'USER ann',
      `PASS ${PASSWORD}`,
      'CAPA',
      'UIDL',
      'LIST',
      'STAT',
      'RETR 1',
      'RETR 2',
      'RETR 3',
      'TOP 2 0',
      'DELE 1',
      'QUIT',
    ]);
    // PIPELINING: after login, CAPA, UIDL and LIST went in one write (one round trip), and list() used them.
    const [capa, uidl, list] = [3, 4, 5].map((i) => fake.arrivals[i]);
    expect(capa).toBe(uidl);
    expect(uidl).toBe(list);
    expect(fake.arrivals[2]).toBeLessThan(capa!);
    const sizes = feed.mock.calls.map(([chunk]) => chunk.length);
    expect(sizes.filter((n) => n === 1).length).toBeGreaterThan(sizes.length * 0.9);
    feed.mockRestore();
  });

  it('sends one RETR at a time when the server does not offer PIPELINING, and copes without CAPA or UIDL', async () => {
    const { fake, session } = await start({
      mode: 'bytes',
      override: (c) => (c === 'CAPA' || c === 'UIDL' ? ['-ERR unknown command\r\n'] : undefined),
    });
    expect(session.capabilities).toEqual([]);
    expect(await session.list()).toEqual(MESSAGES.map((m, i) => ({ number: i + 1, size: m.length })));
    const got: number[] = [];
    await session.retrieve([3, 1, 2], async (n, body) => {
      expect((await collect(body)).equals(MESSAGES[n - 1]!)).toBe(true);
      got.push(n);
    });
    expect(got).toEqual([3, 1, 2]);
    expect(fake.maxRetrAhead).toBe(1);
  });
});

describe('the listing pipelined after login', () => {
  it('copes with a refused UIDL, and a refused LIST fails list() and nothing else', async () => {
    const { fake, session } = await start({
      mode: 'bulk',
      override: (c) => (c === 'UIDL' ? ['-ERR [SYS/PERM] no UIDL here\r\n'] : undefined),
    });
    expect(await session.list()).toEqual(MESSAGES.map((m, i) => ({ number: i + 1, size: m.length })));
    expect(fake.received.filter((c) => c === 'UIDL')).toHaveLength(1);
    session.abort();
    await fake.close();

    const refused = await start({
      mode: 'bulk',
      override: (c) => (c === 'LIST' ? ['-ERR not now\r\n'] : undefined),
    });
    await expect(refused.session.list()).rejects.toMatchObject({ code: 'PROTOCOL_ERROR' });
    expect(await refused.session.stat()).toMatchObject({ count: 3 });
  });

  it('is not used for a list() after a DELE: the second listing comes from the server', async () => {
    const { fake, session } = await start({ mode: 'bulk' });
    await session.dele(2);
    const listing = await session.list();
    expect(listing.map((e) => e.number)).toEqual([1, 3]);
    expect(fake.received.filter((c) => c === 'LIST')).toHaveLength(2);
  });
});

describe('openPop3Session when the server or the consumer misbehaves', () => {
  it('skips a message whose RETR gets -ERR (deleted meanwhile) and goes on', async () => {
    const { session } = await start({
      mode: 'bulk',
      override: (c) => (c === 'RETR 2' ? ['-ERR Message is deleted.\r\n'] : undefined),
    });
    const got: number[] = [];
    await session.retrieve([1, 2, 3], async (n, body) => {
      expect((await collect(body)).equals(MESSAGES[n - 1]!)).toBe(true);
      got.push(n);
    });
    expect(got).toEqual([1, 3]);
    expect((await session.stat()).count).toBe(3);
  });

  it("passes the consumer's own error through and keeps the session in step", async () => {
    const { session } = await start({ mode: 'bulk' });
    const boom = new Error('S3 said no');
    const seen: number[] = [];
    await expect(
      session.retrieve([1, 2, 3], async (n, body) => {
        seen.push(n);
        if (n === 2) throw boom;
        await collect(body);
      }),
    ).rejects.toBe(boom);
    expect(seen).toEqual([1, 2]);
    // The answers still in flight were drained: the next command gets its own answer.
    expect((await session.stat()).count).toBe(3);
    await session.retrieve([3], async (_n, body) => {
      expect((await collect(body)).equals(MESSAGES[2]!)).toBe(true);
    });
  });

  it('reads past a body the consumer left unfinished', async () => {
    const { session } = await start({ mode: 'bulk' });
    const got: Buffer[] = [];
    await session.retrieve([3, 1], async (n, body) => {
      if (n === 3) return; // not even started
      got.push(await collect(body));
    });
    expect(got[0]!.equals(MESSAGES[0]!)).toBe(true);
  });

  it('times out on a server that never greets', async () => {
    const fake2 = await startFakePop3({ messages: [], greeting: null });
    fake = fake2;
    const t0 = Date.now();
    await expect(openPop3Session(source(fake2.port), PASSWORD, { timeoutMs: 300 })).rejects.toMatchObject({
      code: 'TIMEOUT',
      retryable: true,
      message: expect.stringContaining('while we waited for the greeting'),
    });
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('times out when the server stalls in the middle of a message, and the session stays failed', async () => {
    const { session } = await start(
      { mode: 'bulk', override: (c) => (c === 'RETR 1' ? ['+OK\r\nSubject: half\r\n'] : undefined) },
      300,
    );
    const err = await session
      .retrieve([1], async (_n, body) => {
        await collect(body);
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ code: 'TIMEOUT', retryable: true });
    await expect(session.stat()).rejects.toBe(err);
  });

  it('does not time out while the consumer is slow or the session sits idle', async () => {
    const { session } = await start({ mode: 'bulk' }, 200);
    await sleep(500); // idle between commands: no read is waiting, no timer runs
    await session.retrieve([1, 2], async (n, body) => {
      await sleep(400);
      const bytes = await collect(body);
      await sleep(400);
      expect(bytes.equals(MESSAGES[n - 1]!)).toBe(true);
    });
    expect((await session.stat()).count).toBe(3);
  });

  it('reports CONNECTION_LOST, not a shorter message, when the server drops mid-body', async () => {
    const { session } = await start({
      mode: 'bytes',
      override: (c) => (c === 'RETR 2' ? ['+OK\r\nSubject: cut\r\n\r\nsome text\r\n', 'close'] : undefined),
    });
    const delivered: number[] = [];
    await expect(
      session.retrieve([1, 2, 3], async (n, body) => {
        await collect(body);
        delivered.push(n);
      }),
    ).rejects.toMatchObject({ code: 'CONNECTION_LOST', retryable: true });
    expect(delivered).toEqual([1]);
  });

  it('reports PROTOCOL_ERROR for garbage instead of a status line', async () => {
    const { session } = await start({
      mode: 'bytes',
      override: (c) => (c === 'STAT' ? ['hello there\r\n'] : undefined),
    });
    await expect(session.stat()).rejects.toMatchObject({
      code: 'PROTOCOL_ERROR',
      message: expect.stringContaining('neither +OK nor -ERR: "hello there"'),
    });
  });

  it('reports CONNECTION_LOST when the server hung up on an idle session', async () => {
    const { fake, session } = await start({ mode: 'bulk' });
    fake.lastSocket!.end('-ERR Disconnected for inactivity.\r\n');
    await sleep(100);
    await expect(session.stat()).rejects.toMatchObject({
      code: 'CONNECTION_LOST',
      message: expect.stringContaining('Disconnected for inactivity'),
    });
  });

  it('applies no DELE when the session is aborted', async () => {
    const { fake, session } = await start({ mode: 'bulk' });
    await session.dele(1);
    session.abort();
    await sleep(50);
    expect(fake.deleted.size).toBe(0);
    await expect(session.stat()).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
  });

  it('refuses a -ERR greeting as a refused session and an IMAP greeting as not POP3', async () => {
    for (const [greeting, code] of [
      ['-ERR [SYS/TEMP] too many connections\r\n', 'CONNECTION_REFUSED'],
      ['* OK [CAPABILITY IMAP4rev1] ready\r\n', 'NOT_THAT_PROTOCOL'],
    ] as const) {
      const f = await startFakePop3({ messages: [], greeting });
      await expect(openPop3Session(source(f.port), PASSWORD, { timeoutMs: 2000 })).rejects.toMatchObject({
        code,
      });
      expect(f.received).toEqual([]);
      await f.close();
    }
  });

  it('never sends USER or PASS in clear when STLS is required but not offered', async () => {
    const f = await startFakePop3({ messages: [] });
    fake = f;
    await expect(
      openPop3Session(source(f.port, { tls: 'starttls' }), PASSWORD, { timeoutMs: 2000 }),
    ).rejects.toMatchObject({ code: 'STARTTLS_UNAVAILABLE', retryable: false });
    expect(f.received).toEqual(['CAPA']);
  });
});

describe('the password', () => {
  it('appears in no error, cause or session dump, even when the server echoes it', async () => {
    const f = await startFakePop3({
      messages: MESSAGES,
      override: (c) => (c.startsWith('PASS ') ? [`-ERR [AUTH] bad password ${c.slice(5)}\r\n`] : undefined),
    });
    fake = f;
    const err = await openPop3Session(source(f.port), PASSWORD, { timeoutMs: 2000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'AUTH_FAILED', retryable: false });
    expect((err as Error).message).toMatch(
      /^POP3 login refused by 127\.0\.0\.1 for user ann: check the password/,
    );
    expect(util.inspect(err, { depth: 10 })).not.toContain(PASSWORD);
    expect(f.received).toContain(`PASS ${PASSWORD}`); // it was sent, so the check above means something
  });

  it('is not kept where a dump of a live session would show it', async () => {
    const { session } = await start({ mode: 'bulk' });
    expect(util.inspect(session, { depth: 10, showHidden: true })).not.toContain(PASSWORD);
  });

  it('treats [IN-USE] as a retryable refusal, not a wrong password', async () => {
    const f = await startFakePop3({
      messages: [],
      override: (c) =>
        c.startsWith('PASS ') ? ['-ERR [IN-USE] Mailbox locked by another client\r\n'] : undefined,
    });
    fake = f;
    await expect(openPop3Session(source(f.port), PASSWORD, { timeoutMs: 2000 })).rejects.toMatchObject({
      code: 'AUTH_FAILED',
      retryable: true,
    });
  });
});

describe('memory while a big message streams to a slow consumer', () => {
  it('stops reading the socket (the server is left holding the bytes) until the consumer asks', async () => {
    const big = Buffer.concat([
      Buffer.from('Subject: big\r\n\r\n'),
      Buffer.alloc(48 * 1024 * 1024, 'z'.repeat(1022) + '\r\n'), // whole lines: a POP3 message ends with CRLF
    ]);
    const { fake, session } = await start({ mode: 'bulk', messages: [big] }, 5000);
    let held = 0;
    const hash = createHash('sha256');
    await session.retrieve([1], async (_n, body) => {
      const it = body[Symbol.asyncIterator]();
      const first = await it.next();
      hash.update(first.value as Uint8Array);
      await sleep(1000);
      held = fake.lastSocket!.writableLength; // what the server could not hand to the kernel
      for (let r = await it.next(); !r.done; r = await it.next()) hash.update(r.value);
    });
    expect(held).toBeGreaterThan(16 * 1024 * 1024);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
  });
});

/** About 1 KB, with raw 8-bit bytes in its headers: what RFC 6856 servers will not serve as is without UTF8. */
const EIGHT_BIT_HEADERS = Buffer.from(
  'Subject: caf\xe9 cr\xe8me\r\nFrom: J\xfcrgen <j@example.test>\r\n\r\n' +
    Array.from({ length: 16 }, (_, i) => `line ${i} ${'t'.repeat(50)}\r\n`).join(''),
  'latin1',
);
const UTF8_CAPS = ['USER', 'UIDL', 'TOP', 'PIPELINING', 'UTF8 USER'];

async function failureOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('it succeeded, but a failure was expected'),
    (err: unknown) => err,
  );
}

describe('UTF8 (RFC 6856)', () => {
  /** A session, listed, whose server refuses UTF8 and holds message 2 with 8-bit headers (so serves the notice). */
  async function listedWithoutUtf8(): Promise<Pop3Session> {
    const { session } = await start({
      mode: 'bulk',
      messages: [MESSAGES[0]!, EIGHT_BIT_HEADERS, MESSAGES[2]!],
      capabilities: UTF8_CAPS,
      override: (c) => (c === 'UTF8' ? ['-ERR no\r\n'] : undefined),
    });
    await session.list();
    return session;
  }

  it('sends UTF8 before USER exactly when CAPA offers it, and then gets the message, not the notice', async () => {
    const messages = [MESSAGES[0]!, EIGHT_BIT_HEADERS];
    const offered = await start({ mode: 'bytes', messages, capabilities: UTF8_CAPS });
    expect(offered.fake.received.slice(0, 4)).toEqual(['CAPA', 'UTF8', 'USER ann', `PASS ${PASSWORD}`]);
    const got = new Map<number, Buffer>();
    await offered.session.retrieve([1, 2], async (n, body) => {
      got.set(n, await collect(body));
    });
    expect(got.get(2)!.equals(EIGHT_BIT_HEADERS)).toBe(true);
    expect(got.get(1)!.equals(MESSAGES[0]!)).toBe(true);
    session!.abort();
    await fake!.close();

    const plain = await start({ mode: 'bulk', messages });
    expect(plain.fake.received).not.toContain('UTF8');
    expect(plain.fake.received.slice(0, 3)).toEqual(['CAPA', 'USER ann', `PASS ${PASSWORD}`]);
  });

  it('goes on without UTF8 when the server refuses it', async () => {
    const { fake, session } = await start({
      mode: 'bulk',
      capabilities: UTF8_CAPS,
      override: (c) => (c === 'UTF8' ? ['-ERR [SYS/TEMP] not now\r\n'] : undefined),
    });
    expect(fake.received.slice(0, 3)).toEqual(['CAPA', 'UTF8', 'USER ann']);
    expect(await session.list()).toHaveLength(3);
    const got: number[] = [];
    await session.retrieve([1, 3], async (n, body) => {
      expect((await collect(body)).equals(MESSAGES[n - 1]!)).toBe(true);
      got.push(n);
    });
    expect(got).toEqual([1, 3]);
  });

  it('refuses the notice a server serves without UTF8 as a MessageError naming the message, and stays in step', async () => {
    const notice = utf8Notice(EIGHT_BIT_HEADERS);
    // The case: LIST says ~1.0 KB, RETR brings ~1.7 KB, well inside the old "twice plus a megabyte".
    expect(EIGHT_BIT_HEADERS.length).toBeGreaterThan(900);
    expect(notice.length).toBeGreaterThan(1600);
    const session = await listedWithoutUtf8();
    const delivered: number[] = [];
    const err = await failureOf(
      session.retrieve([1, 2, 3], async (n, body) => {
        await collect(body);
        delivered.push(n);
      }),
    );
    expect(err).toBeInstanceOf(MessageError);
    expect(err).toMatchObject({
      code: 'PROTOCOL_ERROR',
      at: { number: 2 },
      message: expect.stringMatching(
        new RegExp(`message 2 as ${EIGHT_BIT_HEADERS.length} bytes .*sent ${notice.length} bytes`),
      ),
    });
    expect(delivered).toEqual([1]);
    // In step: the next commands get their own answers.
    expect((await session.stat()).count).toBe(3);
    await session.retrieve([3], async (_n, body) => {
      expect((await collect(body)).equals(MESSAGES[2]!)).toBe(true);
    });
  });

  it('lets a consumer that catches the MessageError go on with the next message in the same call', async () => {
    const session = await listedWithoutUtf8();
    const outcome: Array<[number, string]> = [];
    await session.retrieve([1, 2, 3], async (n, body) => {
      const bytes = await collect(body).catch((e: unknown) => e);
      outcome.push([n, bytes instanceof MessageError ? 'set aside' : 'stored']);
    });
    expect(outcome).toEqual([
      [1, 'stored'],
      [2, 'set aside'],
      [3, 'stored'],
    ]);
  });
});

describe('RETR held to its LIST size', () => {
  // 7 CRLF-ended lines, three of them dot-stuffed on the wire: the LF-counting cases count lines, not dots.
  const message = MESSAGES[0]!;
  const lines = 7;

  it('accepts only the honest differences (exact, +2 final CRLF, +lines, +lines+1); any other is a MessageError', async () => {
    // A generated notice: the message with some 700 bytes of text in front (Courier's notice is the same idea).
    const notice = Buffer.concat([Buffer.from(`${'x'.repeat(98)}\r\n`.repeat(7)), message]);
    // [case, what RETR serves, LIST size = the message's size minus this, accepted]
    const cases: Array<[string, Buffer, number, boolean]> = [
      ['exact', message, 0, true],
      ['a final CRLF added and not counted', message, 2, true],
      ['LF line ends counted as one octet', message, lines, true],
      ['LF counted, and a final CRLF added', message, lines + 1, true],
      ['one byte more', message, 1, false],
      ['three bytes more', message, 3, false],
      ['one more than LF counting explains', message, lines + 2, false],
      ['two bytes fewer', message, -2, false],
      ['a generated notice around it', notice, 0, false],
    ];
    const outcome: Record<string, unknown> = {};
    for (const [name, served, extra] of cases) {
      const f = await startFakePop3({
        mode: 'bulk',
        messages: [served],
        password: PASSWORD,
        announcedSize: () => message.length - extra,
      });
      const s = await openPop3Session(source(f.port), PASSWORD, { timeoutMs: 5000 });
      await s.list();
      outcome[name] = await s
        .retrieve([1], async (_n, body) => {
          expect((await collect(body)).equals(served)).toBe(true);
        })
        .then(
          () => 'accepted',
          (err: unknown) => (err instanceof MessageError ? err.at : String(err)),
        );
      s.abort();
      await f.close();
    }
    expect(outcome).toEqual(
      Object.fromEntries(cases.map(([name, , , ok]) => [name, ok ? 'accepted' : { number: 1 }])),
    );
  });

  it('gives up on a RETR that runs far past its LIST size with a MessageError; later calls say the connection is gone', async () => {
    const endless = async function* () {
      for (;;) yield Buffer.from(`${'z'.repeat(1022)}\r\n`.repeat(64));
    };
    const { session } = await start({
      mode: 'bulk',
      override: (c) => (c === 'RETR 2' ? ['+OK\r\n', { stream: endless }] : undefined),
    });
    await session.list();
    const err = await failureOf(
      session.retrieve([1, 2, 3], async (_n, body) => {
        await collect(body);
      }),
    );
    expect(err).toBeInstanceOf(MessageError);
    expect(err).toMatchObject({ code: 'PROTOCOL_ERROR', at: { number: 2 } });
    const later = await failureOf(session.stat());
    expect(later).not.toBeInstanceOf(MessageError);
    expect(later).toMatchObject({ code: 'CONNECTION_LOST', message: expect.stringContaining('message 2') });
  });
});

describe('headerBlocks', () => {
  /** Header blocks that break naive readers: dot-led lines (stuffed on the wire), 8-bit bytes, NUL, a bare LF. */
  const NASTY = [
    Buffer.from(
      'Subject: caf\xe9 \xff\x80\r\n.X-Dot: one\r\n..X-Two: two\r\n\tfolded \x00 \n x\r\n\r\nbody\r\n',
      'latin1',
    ),
    Buffer.from('Subject: plain\r\n\r\n.\r\n', 'latin1'),
    Buffer.from('.\r\n\r\nbody only after a dot line\r\n', 'latin1'),
  ];
  const head = (m: Buffer) => m.subarray(0, m.indexOf('\r\n\r\n') + 4);

  it('reads each header block with TOP n 0, pipelined, byte-exact, one byte per TCP segment', async () => {
    const { fake, session } = await start({ mode: 'bytes', messages: NASTY });
    const blocks = await session.headerBlocks([3, 1, 2]);
    expect([...blocks.keys()]).toEqual([3, 1, 2]);
    for (const [n, block] of blocks)
      expect({ n, hex: block.toString('hex') }).toEqual({ n, hex: head(NASTY[n - 1]!).toString('hex') });
    expect(fake.maxTopAhead).toBe(3);
    expect(fake.received.slice(-3)).toEqual(['TOP 3 0', 'TOP 1 0', 'TOP 2 0']);
    // topHeaders is the same code for one message.
    expect((await session.topHeaders(1)).equals(head(NASTY[0]!))).toBe(true);
  });

  it('keeps at most 8 TOPs in flight with PIPELINING, and sends one at a time without it', async () => {
    const many = Array.from({ length: 20 }, (_, i) => Buffer.from(`Subject: ${i}\r\n\r\nb\r\n`));
    const numbers = many.map((_, i) => i + 1);
    const piped = await start({ mode: 'bulk', messages: many });
    expect([...(await piped.session.headerBlocks(numbers)).keys()]).toEqual(numbers);
    expect(piped.fake.maxTopAhead).toBe(8);
    session!.abort();
    await fake!.close();

    const single = await start({ mode: 'bulk', messages: many, capabilities: ['USER', 'UIDL', 'TOP'] });
    const blocks = await single.session.headerBlocks(numbers);
    expect([...blocks.values()].map(String)).toEqual(many.map((m) => String(head(m))));
    expect(single.fake.maxTopAhead).toBe(1);
  });

  it('leaves out a message the server refuses and goes on, also without CAPA', async () => {
    for (const capa of [true, false]) {
      const { session } = await start({
        mode: 'bulk',
        override: (c) =>
          c === 'TOP 2 0'
            ? ['-ERR Invalid message number.\r\n'] // Courier's words for a message that is gone
            : c === 'CAPA' && !capa
              ? ['-ERR Invalid command.\r\n']
              : undefined,
      });
      expect(session.capabilities.length > 0).toBe(capa);
      const blocks = await session.headerBlocks([1, 2, 3]);
      expect([...blocks.keys()]).toEqual([1, 3]);
      expect(blocks.get(3)!.equals(head(MESSAGES[2]!))).toBe(true);
      expect((await session.stat()).count).toBe(3);
      session.abort();
      await fake!.close();
    }
  });

  it('says CAPABILITY_MISSING without TOP: nothing sent when CAPA lacks it, or TOP refused as an unknown command', async () => {
    const noTop = await start({ mode: 'bulk', capabilities: ['USER', 'UIDL', 'PIPELINING'] });
    await expect(noTop.session.headerBlocks([1, 2])).rejects.toMatchObject({
      name: 'UpstreamError',
      code: 'CAPABILITY_MISSING',
    });
    expect(noTop.fake.received.some((c) => c.startsWith('TOP'))).toBe(false);
    session!.abort();
    await fake!.close();

    const unknown = await start({
      mode: 'bulk',
      override: (c) => (c === 'CAPA' || c.startsWith('TOP ') ? ['-ERR Invalid command.\r\n'] : undefined),
    });
    const err = await failureOf(unknown.session.headerBlocks([1, 2, 3]));
    expect(err).toMatchObject({ code: 'CAPABILITY_MISSING', retryable: false });
    expect(err).not.toBeInstanceOf(MessageError);
    expect((await unknown.session.stat()).count).toBe(3); // every answer was read
  });

  it('makes a refused topHeaders a MessageError naming the message, and the session goes on', async () => {
    const { session } = await start({
      mode: 'bulk',
      override: (c) => (c === 'TOP 2 0' ? ['-ERR Message is deleted.\r\n'] : undefined),
    });
    const err = await failureOf(session.topHeaders(2));
    expect(err).toBeInstanceOf(MessageError);
    expect(err).toMatchObject({
      code: 'PROTOCOL_ERROR',
      at: { number: 2 },
      message: expect.stringContaining('Message is deleted'),
    });
    expect((await session.topHeaders(3)).equals(head(MESSAGES[2]!))).toBe(true);
  });

  it('gives up on a TOP answer too big for a header block with a MessageError naming the message', async () => {
    const endless = async function* () {
      for (;;) yield Buffer.from(`X-Junk: ${'j'.repeat(1014)}\r\n`.repeat(64));
    };
    const { session } = await start({
      mode: 'bulk',
      override: (c) => (c === 'TOP 2 0' ? ['+OK\r\n', { stream: endless }] : undefined),
    });
    const err = await failureOf(session.headerBlocks([1, 2, 3]));
    expect(err).toBeInstanceOf(MessageError);
    expect(err).toMatchObject({ at: { number: 2 } });
    await expect(session.stat()).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
  });
});
