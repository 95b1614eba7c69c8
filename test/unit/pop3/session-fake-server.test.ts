import { createHash } from 'node:crypto';
import util from 'node:util';
import { openPop3Session } from '../../../functions/adapters/pop3';
import { Pop3Reader } from '../../../functions/adapters/pop3/reader';
import { UpstreamError } from '../../../functions/core/errors';
import type { Source } from '../../../functions/core/model';
import type { Bytes, Pop3Session } from '../../../functions/core/ports';
import { startFakePop3, type FakeOptions, type FakeServer } from './fake-pop3-server';

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
