import { openImapSession } from '../../../functions/adapters/imap/imap-session';
import type { Source } from '../../../functions/core/model';
import { startFakeImap } from '../../support/fake-imap-server';
import { recordWire } from '../../support/imap-wire';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';

const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => err,
  );
}

describe('certificate errors name the certificate problem, with implicit TLS and after STARTTLS', () => {
  const cases: Array<[Source['tls'], string, Partial<Source>, string, RegExp]> = [
    ['implicit', 'no CA for the private certificate', { ca: undefined }, 'TLS_CERT_UNTRUSTED', /not trusted/],
    [
      'implicit',
      'a certificate for another name',
      { servername: 'mail.other.example' },
      'TLS_HOSTNAME_MISMATCH',
      /not valid for the name mail\.other\.example/,
    ],
    ['starttls', 'no CA for the private certificate', { ca: undefined }, 'TLS_CERT_UNTRUSTED', /not trusted/],
    [
      'starttls',
      'a certificate for another name',
      { servername: 'mail.other.example' },
      'TLS_HOSTNAME_MISMATCH',
      /not valid for the name mail\.other\.example/,
    ],
  ];
  it.each(cases)('%s, %s: %s', async (tls, _name, overrides, code, message) => {
    const user = lab.createUser('tlserr');
    const source = t.source(user, 'imap', tls, overrides);
    const err = await failure(openImapSession(source, user.password, { timeoutMs: 10_000 }));
    expect(err).toMatchObject({ name: 'UpstreamError', code, retryable: false });
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toMatch(/caFile|not valid for the name/);
  });

  it('a server that does not offer STARTTLS is still STARTTLS_UNAVAILABLE', async () => {
    const user = lab.createUser('nostls');
    const source = t.source(user, 'imap', 'starttls', { host: lab.info.noTlsHost });
    const err = await failure(openImapSession(source, user.password, { timeoutMs: 10_000 }));
    expect(err).toMatchObject({ code: 'STARTTLS_UNAVAILABLE', retryable: false });
  });
});

describe('an IMAP source pointed at a POP3 port', () => {
  it.each([
    ['none', () => lab.info.ports.pop3],
    ['starttls', () => lab.info.ports.pop3],
    ['implicit', () => lab.info.ports.pop3s],
  ] as const)(
    'fails at once, not at the greeting timeout, saying it looks like a POP3 server (tls %s)',
    async (tls, port) => {
      const user = lab.createUser('imapatpop');
      const source = t.source(user, 'imap', tls, { port: port() });
      const started = Date.now();
      // The greeting timeout is 10 s: a POP3 greeting must not be waited out (a bound, not a benchmark).
      const err = await failure(openImapSession(source, user.password, { timeoutMs: 10_000 }));
      expect(Date.now() - started).toBeLessThan(3000);
      expect(err).toMatchObject({ name: 'UpstreamError', code: 'NOT_THAT_PROTOCOL', retryable: false });
      expect((err as Error).message).toMatch(/does not speak IMAP: it greets like a POP3 server/);
    },
  );
});

describe('headerBlocks against Dovecot: the proof before a delete', () => {
  const ascii = (subject: string) =>
    Buffer.from(
      `From: Ann <ann@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.test>\r\n\r\nbody of ${subject}\r\n`,
    );
  // Raw 8-bit headers, UTF-8 and Latin-1 (no UTF8=ACCEPT in Dovecot 2.3): served and returned as stored.
  const eightBit = Buffer.concat([
    Buffer.from('From: =?utf-8?q?J=C3=B6rg?= <j@example.test>\r\nSubject: Grüße aus Köln\r\n'),
    Buffer.from('X-Latin1: caf\xe9 \xff\r\n\r\nBody \xe9\r\n', 'latin1'),
  ]);
  const headerOf = (raw: Buffer) => raw.subarray(0, raw.indexOf('\r\n\r\n') + 4);

  async function fill(
    user: TestUser,
  ): Promise<{ uids: number[]; uidValidity: string; other: number; otherValidity: string }> {
    const client = await lab.imap(user);
    try {
      const uids: number[] = [];
      let uidValidity = '';
      for (const raw of [ascii('h-0'), eightBit, ascii('h-2'), ascii('h-3')]) {
        const res = await client.append('INBOX', raw);
        if (!res || res.uid === undefined) throw new Error('APPEND gave no APPENDUID');
        uids.push(res.uid);
        uidValidity = String(res.uidValidity);
      }
      await client.mailboxCreate('Entwürfe');
      const res = await client.append('Entwürfe', ascii('draft'));
      if (!res || res.uid === undefined) throw new Error('APPEND gave no APPENDUID');
      return { uids, uidValidity, other: res.uid, otherValidity: String(res.uidValidity) };
    } finally {
      await client.logout();
    }
  }

  async function flagsAndModseq(user: TestUser): Promise<{ flags: string[][]; modseq: unknown }> {
    const client = await lab.imap(user);
    try {
      const status = await client.status('INBOX', { highestModseq: true });
      await client.mailboxOpen('INBOX', { readOnly: true });
      const flags: string[][] = [];
      for await (const m of client.fetch('1:*', { uid: true, flags: true }, { uid: true })) {
        flags.push([...(m.flags ?? [])].sort());
      }
      return { flags, modseq: status && status.highestModseq };
    } finally {
      await client.logout();
    }
  }

  it('reads the exact header blocks with one UID FETCH BODY.PEEK[HEADER], EXAMINE first, \\Seen untouched', async () => {
    const user = lab.createUser('hdr');
    const { uids, uidValidity, other, otherValidity } = await fill(user);
    const [a, b, c, d] = uids as [number, number, number, number];
    const before = await flagsAndModseq(user);
    const session = await t.deps.connector.openImap(t.source(user, 'imap'), user.password, {
      timeoutMs: 10_000,
    });
    try {
      const wire = recordWire(session);
      const blocks = await session.headerBlocks('INBOX', uidValidity, [c, a, b, a]);
      expect(blocks).toEqual(
        new Map([
          [a, headerOf(ascii('h-0'))],
          [b, headerOf(eightBit)],
          [c, headerOf(ascii('h-2'))],
        ]),
      );
      // No LIST or LSUB before the EXAMINE (imapflow's would be skipped, folders.ts skipFolderListing).
      expect(wire).toEqual(['EXAMINE INBOX', `UID FETCH ${a}:${c} (UID BODY.PEEK[HEADER])`]);

      // The open folder is not opened again; another folder is EXAMINEd (never SELECTed).
      wire.length = 0;
      expect((await session.headerBlocks('INBOX', uidValidity, [d])).get(d)).toEqual(headerOf(ascii('h-3')));
      expect(wire).toEqual([`UID FETCH ${d} (UID BODY.PEEK[HEADER])`]);
      wire.length = 0;
      expect(await session.headerBlocks('Entwürfe', otherValidity, [other])).toEqual(
        new Map([[other, headerOf(ascii('draft'))]]),
      );
      // The first folder other than INBOX: NAMESPACE once before it (imapflow prefixes names with it).
      expect(wire).toEqual([
        'NAMESPACE',
        expect.stringMatching(/^EXAMINE /),
        `UID FETCH ${other} (UID BODY.PEEK[HEADER])`,
      ]);
      expect(wire.filter((l) => /^(SELECT|STORE|UID STORE|EXPUNGE|UID EXPUNGE)\b/.test(l))).toEqual([]);
      expect(await session.headerBlocks('INBOX', uidValidity, [])).toEqual(new Map());
    } finally {
      await session.close();
    }
    // Read-only: no \Seen, no MODSEQ change.
    expect(await flagsAndModseq(user)).toEqual(before);
  });

  it('leaves out UIDs the folder no longer holds, and reads the folder a delete left SELECTed as it is', async () => {
    const user = lab.createUser('hdrdel');
    const { uids, uidValidity } = await fill(user);
    const [a, b, c, d] = uids as [number, number, number, number];
    const session = await t.deps.connector.openImap(
      t.source(user, 'imap', 'implicit', { retention: { mode: 'delete-on-retrieve' } }),
      user.password,
      {
        timeoutMs: 10_000,
      },
    );
    try {
      await session.openFolder('INBOX');
      expect(await session.deleteUids('INBOX', uidValidity, [b])).toEqual(new Set([b]));
      const wire = recordWire(session);
      const blocks = await session.headerBlocks('INBOX', uidValidity, [a, b, c, d + 1000]);
      expect([...blocks.keys()].sort((x, y) => x - y)).toEqual([a, c]);
      expect(wire).toEqual([
        `UID FETCH ${a}:${c},${d + 1000} (UID BODY.PEEK[HEADER])`,
        `UID SEARCH UID ${b},${d + 1000}`,
      ]);
    } finally {
      await session.close();
    }
  });

  it('throws, and fetches nothing, when the UIDVALIDITY is no longer the one asked for', async () => {
    const user = lab.createUser('hdruidv');
    const { uids, uidValidity } = await fill(user);
    await lab.setUidValidity(user, Number(uidValidity) + 1000);
    const session = await t.deps.connector.openImap(t.source(user, 'imap'), user.password, {
      timeoutMs: 10_000,
    });
    try {
      const wire = recordWire(session);
      const err = await failure(session.headerBlocks('INBOX', uidValidity, uids));
      expect(err).toMatchObject({ name: 'UpstreamError', code: 'PROTOCOL_ERROR', retryable: true });
      expect((err as Error).message).toMatch(/UIDVALIDITY of "INBOX" .* changed/);
      expect(wire.filter((l) => /FETCH/.test(l))).toEqual([]);
    } finally {
      await session.close();
    }
  });
});

describe('a server that sends no UIDNEXT at all (EXAMINE nor STATUS)', () => {
  it('syncs, and expunging the newest message is not taken for a re-created folder', async () => {
    const messages = ['one', 'two', 'three'].map((s) =>
      Buffer.from(`Subject: ${s}\r\nFrom: a@example.test\r\n\r\nbody ${s}\r\n`),
    );
    const fake = await startFakeImap({ messages, examineOmits: ['UIDNEXT'], statusOmits: ['UIDNEXT'] });
    try {
      const user = lab.createUser('nouidnext');
      const source = t.source(user, 'imap', 'none', { host: '127.0.0.1', port: fake.port, ca: undefined });
      t.passwords.set(source.id, 'secret');
      const first = await t.sync(source);
      expect(first).toMatchObject({ outcome: 'ok', fetched: 3 });
      expect(await t.index.getFolderState(source.id, 'INBOX')).toMatchObject({
        uidNext: 4,
        committedThroughUid: 3,
      });

      const session = await openImapSession(source, 'secret', { timeoutMs: 5000 });
      try {
        expect(await session.deleteUids('INBOX', '4242', [3])).toEqual(new Set([3]));
      } finally {
        await session.close();
      }
      const second = await t.sync(source);
      expect(second).toMatchObject({ outcome: 'ok', fetched: 0 });
      expect(second.notes.join('\n')).not.toMatch(/re-created|UIDNEXT went back/);
      const state = await t.index.getFolderState(source.id, 'INBOX');
      expect(state?.generation).toBeUndefined();
      expect(state).toMatchObject({ committedThroughUid: 3 });
      expect((await t.stored(source.id)).length).toBe(3);
    } finally {
      await fake.close();
    }
  });
});
