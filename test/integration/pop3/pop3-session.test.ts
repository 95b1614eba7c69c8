import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { openPop3Session } from '../../../functions/adapters/pop3';
import type { Source, TlsMode } from '../../../functions/core/model';
import type { Bytes, Pop3Session } from '../../../functions/core/ports';
import { MailLab, type TestUser } from '../../support/mail-lab';

const lab = MailLab.fromEnv();
const TIMEOUT_MS = 10_000;

function source(user: { name: string }, extra: Partial<Source> = {}): Source {
  return {
    id: 'pop3-it',
    protocol: 'pop3',
    host: lab.info.host,
    port: lab.info.ports.pop3s,
    tls: 'implicit',
    ca: lab.ca.toString('utf8'),
    servername: lab.info.servername,
    user: user.name,
    folders: [],
    pollMinutes: 5,
    enabled: true,
    retention: { mode: 'keep' },
    ...extra,
  };
}

/** The three ways in, each on the port it needs. */
const MODES: Array<[TlsMode, (u: TestUser) => Source]> = [
  ['implicit', (u) => source(u)],
  ['starttls', (u) => source(u, { tls: 'starttls', port: lab.info.ports.pop3 })],
  ['none', (u) => source(u, { tls: 'none', port: lab.info.ports.pop3 })],
];

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const crlf = (file: Buffer) => Buffer.from(file.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');

async function collect(body: Bytes): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of body) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

/**
 * The reference: USER, PASS, RETR... and QUIT written at once over a bare TLS socket, the answers split and
 * un-stuffed here, independently of the adapter (RFC 1939: a leading dot on a line is removed).
 */
async function rawRetr(user: TestUser, numbers: number[]): Promise<Map<number, Buffer>> {
  const socket = tls.connect({
    host: lab.info.host,
    port: lab.info.ports.pop3s,
    ca: lab.ca,
    servername: lab.info.servername,
  });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const script = [`USER ${user.name}`, `PASS ${user.password}`, ...numbers.map((n) => `RETR ${n}`), 'QUIT'];
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => socket.write(script.map((c) => `${c}\r\n`).join('')));
    socket.once('error', reject);
    socket.once('close', () => resolve());
  });
  const all = Buffer.concat(chunks).toString('latin1');
  let pos = 0;
  const line = () => {
    const end = all.indexOf('\r\n', pos);
    const text = all.slice(pos, end);
    pos = end + 2;
    return text;
  };
  for (const expected of ['+OK', '+OK', '+OK']) expect(line()).toMatch(new RegExp(`^\\${expected}`)); // greeting, USER, PASS
  const out = new Map<number, Buffer>();
  for (const n of numbers) {
    expect(line()).toMatch(/^\+OK/);
    let body: string;
    if (all.startsWith('.\r\n', pos)) {
      body = '';
      pos += 3;
    } else {
      const end = all.indexOf('\r\n.\r\n', pos);
      body = all.slice(pos, end + 2);
      pos = end + 5;
    }
    out.set(n, Buffer.from(body.replace(/(^|\r\n)\./g, '$1'), 'latin1'));
  }
  expect(line()).toMatch(/^\+OK/); // QUIT
  return out;
}

/** Messages that break naive readers, as an MDA writes them (LF line ends). */
function nastyMessages(): Array<[string, Buffer]> {
  const lines: string[] = [];
  for (let i = 0, size = 0; size < 5 * 1024 * 1024; i++) {
    const dots = ['.', '..', '.x', '...', ''][i % 5]!;
    lines.push(`${dots}line ${i} ${'abcdefghij'.repeat(i % 9)} \xe9\xf6\xff`);
    size += lines[i]!.length + 1;
  }
  return [
    [
      'dot lines',
      Buffer.from('Subject: dots\nFrom: a@example.test\n\n.\n..\n.x\n...\n. \nmiddle\n.\n..\n', 'latin1'),
    ],
    [
      'Latin-1 8-bit',
      Buffer.from(
        'Subject: caf\xe9\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n' +
          'Gr\xfc\xdfe aus K\xf6ln, \xa9 \xbd \xff\x80\x81\x9f\n.\xe9 dot then 8-bit\n',
        'latin1',
      ),
    ],
    ['a NUL byte', Buffer.from('Subject: nul\n\nbefore\x00after\n\x00\n', 'latin1')],
    ['a 100 KB line', Buffer.from(`Subject: long\n\n${'L'.repeat(100 * 1024)}\n`, 'latin1')],
    ['5 MB', Buffer.from(`Subject: big\n\n${lines.join('\n')}\n`, 'latin1')],
  ];
}

const open: Pop3Session[] = [];
async function connect(src: Source, password: string): Promise<Pop3Session> {
  const session = await openPop3Session(src, password, { timeoutMs: TIMEOUT_MS });
  open.push(session);
  return session;
}
afterEach(() => {
  for (const s of open.splice(0)) s.abort();
});

describe('POP3 against Dovecot: exact bytes', () => {
  const user = lab.createUser('p3bytes');
  const messages = nastyMessages();
  for (const [, m] of messages) lab.deliver(user, m);
  // Dovecot serves a Maildir file with CRLF line ends (and moves it to cur/ once read).
  const delivered = new Set(messages.map(([, m]) => sha(crlf(m))));
  let reference: Map<number, Buffer>;

  beforeAll(async () => {
    reference = await rawRetr(
      user,
      messages.map((_, i) => i + 1),
    );
  });

  it('serves each nasty message, over a bare socket, as the delivered file with CRLF', () => {
    // Proves the reference itself before anything is compared with it.
    expect(new Set([...reference.values()].map(sha))).toEqual(delivered);
  });

  it.each(MODES)('gives the bytes a raw RETR gives, with tls %s', async (_mode, make) => {
    const session = await connect(make(user), user.password);
    const listing = await session.list();
    expect(listing.map((l) => l.number)).toEqual(messages.map((_, i) => i + 1));
    const got = new Map<number, Buffer>();
    await session.retrieve(
      listing.map((l) => l.number),
      async (n, body) => {
        got.set(n, await collect(body));
      },
    );
    for (const l of listing) {
      const bytes = got.get(l.number)!;
      expect({ n: l.number, sha: sha(bytes) }).toEqual({ n: l.number, sha: sha(reference.get(l.number)!) });
      expect(bytes.length).toBe(l.size);
    }
    expect(new Set([...got.values()].map(sha))).toEqual(delivered);
    await session.quit();
  });

  it('reads the header block with TOP n 0, byte-exact', async () => {
    const session = await connect(source(user), user.password);
    for (const l of await session.list()) {
      const whole = reference.get(l.number)!;
      const head = whole.subarray(0, whole.indexOf('\r\n\r\n') + 4);
      expect((await session.topHeaders(l.number)).equals(head)).toBe(true);
    }
    await session.quit();
  });

  it('reads every header block at once with headerBlocks, pipelined, as TOP gives them one by one', async () => {
    const session = await connect(source(user), user.password);
    expect(session.capabilities).toContain('PIPELINING');
    const numbers = (await session.list()).map((l) => l.number).reverse();
    const blocks = await session.headerBlocks(numbers);
    expect([...blocks.keys()]).toEqual(numbers);
    for (const n of numbers) {
      const whole = reference.get(n)!;
      expect({ n, block: blocks.get(n)!.toString('latin1') }).toEqual({
        n,
        block: whole.subarray(0, whole.indexOf('\r\n\r\n') + 4).toString('latin1'),
      });
    }
    await session.quit();
  });
});

describe('POP3 against Dovecot: listing and pipelining', () => {
  it("lists Dovecot's UIDLs (%08x%08x of UID and UIDVALIDITY) with sizes, and STAT agrees", async () => {
    const user = lab.createUser('p3uidl');
    const files = [1, 2, 3].map((i) => Buffer.from(`Subject: m${i}\n\nbody ${'b'.repeat(i)}\n`));
    for (const f of files) lab.deliver(user, f);
    const session = await connect(source(user), user.password);
    const { uidValidity } = await lab.status(user);
    const listing = await session.list();
    const hex = (n: number) => n.toString(16).padStart(8, '0');
    expect(listing.map((l) => l.uidl).sort()).toEqual(
      [1, 2, 3].map((uid) => `${hex(uid)}${hex(Number(uidValidity))}`).sort(),
    );
    expect(listing.map((l) => l.size).sort()).toEqual(files.map((f) => crlf(f).length).sort());
    expect(await session.stat()).toEqual({
      count: 3,
      octets: listing.reduce((s, l) => s + l.size, 0),
    });
    // Read again after login (RFC 2449): Dovecot then no longer lists USER.
    expect(session.capabilities).toEqual(expect.arrayContaining(['UIDL', 'TOP', 'PIPELINING']));
    expect(session.tls).toMatchObject({ subject: 'localhost', issuer: 'Tributary Test CA' });
    expect(session.tls!.protocol).toMatch(/^TLSv1\.[23]$/);
    await session.quit();
  });

  it('retrieves 50 messages pipelined, in the order asked, each one whole', async () => {
    const user = lab.createUser('p3pipe');
    for (let i = 1; i <= 50; i++)
      lab.deliver(user, `Subject: message ${i}\n\n${'.'.repeat(i)}\n${'x'.repeat(i * 97)}\n`);
    const numbers = Array.from({ length: 50 }, (_, i) => i + 1);
    const reference = await rawRetr(user, numbers);
    const session = await connect(source(user), user.password);
    expect(session.capabilities).toContain('PIPELINING');
    const order: number[] = [];
    await session.retrieve(numbers, async (n, body) => {
      const bytes = await collect(body);
      expect(bytes.equals(reference.get(n)!)).toBe(true);
      order.push(n);
    });
    expect(order).toEqual(numbers);
    const backwards: number[] = [];
    await session.retrieve([...numbers].reverse(), async (n, body) => {
      expect((await collect(body)).equals(reference.get(n)!)).toBe(true);
      backwards.push(n);
    });
    expect(backwards).toEqual([...numbers].reverse());
    await session.quit();
  });
});

describe('POP3 against Dovecot: deletion', () => {
  it('applies DELE at QUIT', async () => {
    const user = lab.createUser('p3dele');
    lab.deliver(user, 'Subject: keep\n\nk\n');
    lab.deliver(user, 'Subject: drop\n\nd\n');
    const session = await connect(source(user), user.password);
    // Message numbers follow Dovecot's order, not ours: find the one to drop by its content.
    let drop = 0;
    await session.retrieve([1, 2], async (n, body) => {
      if ((await collect(body)).toString().includes('Subject: drop')) drop = n;
    });
    expect(drop).toBeGreaterThan(0);
    await session.dele(drop);
    await session.quit();
    expect((await lab.status(user)).messages).toBe(1);
    const again = await connect(source(user), user.password);
    const left: Buffer[] = [];
    await again.retrieve([1], async (_n, body) => {
      left.push(await collect(body));
    });
    expect(left[0]!.toString()).toContain('Subject: keep');
    await again.quit();
  });

  it("leaves out of headerBlocks a message deleted in the session and one that never was (Dovecot's -ERR)", async () => {
    const user = lab.createUser('p3tophdr');
    lab.deliver(user, 'Subject: one\n\n1\n');
    lab.deliver(user, Buffer.from('Subject: caf\xe9 two\n\n2\n', 'latin1'));
    const session = await connect(source(user), user.password);
    await session.dele(1);
    const blocks = await session.headerBlocks([1, 2, 99]);
    expect([...blocks.keys()]).toEqual([2]);
    expect(blocks.get(2)!.toString('latin1')).toMatch(/^Subject: (one|caf\xe9 two)\r\n/);
    expect((await session.stat()).count).toBe(1); // still in step
    session.abort(); // nothing deleted
  });

  it('applies nothing when the session is aborted after DELE', async () => {
    const user = lab.createUser('p3abort');
    lab.deliver(user, 'Subject: one\n\n1\n');
    lab.deliver(user, 'Subject: two\n\n2\n');
    const session = await connect(source(user), user.password);
    await session.dele(1);
    await session.dele(2);
    session.abort();
    await new Promise((r) => setTimeout(r, 300));
    expect((await lab.status(user)).messages).toBe(2);
    const again = await connect(source(user), user.password);
    expect((await again.stat()).count).toBe(2);
    await again.quit();
  });
});

describe('POP3 against Dovecot: errors a person can act on', () => {
  const user = lab.createUser('p3err');
  lab.deliver(user, 'Subject: x\n\nx\n');

  async function failure(src: Source, password = user.password): Promise<unknown> {
    return openPop3Session(src, password, { timeoutMs: TIMEOUT_MS }).then(
      (s) => {
        s.abort();
        return new Error('connected, but a failure was expected');
      },
      (err: unknown) => err,
    );
  }

  it('refuses a wrong password with AUTH_FAILED, naming host and user but not the password', async () => {
    const wrong = 'not-the-password-4711';
    const err = await failure(source(user), wrong);
    expect(err).toMatchObject({
      name: 'UpstreamError',
      code: 'AUTH_FAILED',
      retryable: false,
      message: expect.stringMatching(
        new RegExp(`^POP3 login refused by 127\\.0\\.0\\.1 for user ${user.name}: check the password`),
      ),
    });
    expect(JSON.stringify(err) + String((err as Error).message)).not.toContain(wrong);
  });

  it('stops before USER/PASS when STLS is required and not offered, and Dovecot saw no login', async () => {
    const victim = lab.createUser('p3nostls');
    const err = await failure(
      source(victim, { host: lab.info.noTlsHost, port: lab.info.ports.pop3, tls: 'starttls' }),
    );
    expect(err).toMatchObject({ code: 'STARTTLS_UNAVAILABLE', retryable: false });
    // Control: a plain login on the same listener is logged with its user name...
    const control = lab.createUser('p3control');
    const plain = await connect(
      source(control, { host: lab.info.noTlsHost, port: lab.info.ports.pop3, tls: 'none' }),
      control.password,
    );
    await plain.quit();
    const logFile = path.join(lab.info.dir, 'dovecot.log');
    let log = '';
    for (let i = 0; i < 50 && !log.includes(control.name); i++) {
      await new Promise((r) => setTimeout(r, 100));
      log = fs.readFileSync(logFile, 'utf8');
    }
    expect(log).toContain(control.name);
    // ...so the absence of the other user's name means it was never sent.
    expect(log).not.toContain(victim.name);
  });

  it.each([
    ['implicit', lab.info.ports.pop3s],
    ['starttls', lab.info.ports.pop3],
  ] as const)('does not trust the certificate without the CA (tls %s)', async (mode, port) => {
    const { ca: _ca, ...noCa } = source(user, { tls: mode, port });
    expect(await failure(noCa)).toMatchObject({
      code: 'TLS_CERT_UNTRUSTED',
      retryable: false,
      message: expect.stringContaining('caFile'),
    });
  });

  it.each([
    ['implicit', lab.info.ports.pop3s],
    ['starttls', lab.info.ports.pop3],
  ] as const)('refuses a certificate for another name (tls %s)', async (mode, port) => {
    expect(await failure(source(user, { tls: mode, port, servername: 'wrong.example' }))).toMatchObject({
      code: 'TLS_HOSTNAME_MISMATCH',
      retryable: false,
      message: expect.stringContaining('wrong.example'),
    });
  });

  it('verifies an IP address against the certificate when no servername is given', async () => {
    const { servername: _s, ...byIp } = source(user);
    const session = await connect(byIp, user.password);
    expect(session.tls?.subject).toBe('localhost');
    await session.quit();
    // The check is real: the certificate names IP 127.0.0.1, not 127.0.0.2.
    expect(await failure(source(user, { servername: '127.0.0.2' }))).toMatchObject({
      code: 'TLS_HOSTNAME_MISMATCH',
    });
  });

  it.each([
    ['none', lab.info.ports.imap],
    ['implicit', lab.info.ports.imaps],
  ] as const)('says NOT_THAT_PROTOCOL for the IMAP port (tls %s)', async (mode, port) => {
    expect(await failure(source(user, { tls: mode, port }))).toMatchObject({
      code: 'NOT_THAT_PROTOCOL',
      retryable: false,
      message: expect.stringContaining('does not speak POP3'),
    });
  });

  it.each([
    ['none', lab.info.ports.imap],
    ['starttls', lab.info.ports.imap],
    ['implicit', lab.info.ports.imaps],
  ] as const)(
    'says at once, not after the timeout, that the IMAP port looks like an IMAP server (tls %s)',
    async (mode, port) => {
      const started = Date.now();
      const err = await failure(source(user, { tls: mode, port }));
      // The timeout is 10 s: a greeting that is IMAP's must not be waited out (a bound, not a benchmark).
      expect(Date.now() - started).toBeLessThan(3000);
      expect(err).toMatchObject({
        name: 'UpstreamError',
        code: 'NOT_THAT_PROTOCOL',
        retryable: false,
        message: expect.stringMatching(/does not speak POP3 .*looks like an IMAP server/),
      });
    },
  );

  it('says TLS_FAILED for implicit TLS on the plain POP3 port', async () => {
    expect(await failure(source(user, { tls: 'implicit', port: lab.info.ports.pop3 }))).toMatchObject({
      code: 'TLS_FAILED',
    });
  });

  it.each(['none', 'implicit'] as const)(
    'says CONNECTION_REFUSED where nothing listens (tls %s)',
    async (mode) => {
      const port = await new Promise<number>((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as net.AddressInfo).port;
          s.close(() => resolve(p));
        });
      });
      expect(await failure(source(user, { tls: mode, port }))).toMatchObject({
        code: 'CONNECTION_REFUSED',
        retryable: true,
        message: expect.stringContaining(`127.0.0.1:${port}`),
      });
    },
  );

  it('says HOST_NOT_FOUND for a name that does not resolve', async () => {
    expect(
      await failure(source(user, { host: 'no-such-host.invalid', servername: undefined })),
    ).toMatchObject({
      code: 'HOST_NOT_FOUND',
      message: expect.stringContaining('no-such-host.invalid'),
    });
  });
});
