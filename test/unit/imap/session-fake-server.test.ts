import { openImapSession } from '../../../functions/adapters/imap/imap-session';
import { MessageError, UpstreamError } from '../../../functions/core/errors';
import type { Source } from '../../../functions/core/model';
import type { Bytes, ImapSession } from '../../../functions/core/ports';
import {
  filler,
  startFakeImap,
  type FakeImapOptions,
  type FakeImapServer,
} from '../../support/fake-imap-server';

/**
 * The IMAP adapter against the scripted fake (test/support/fake-imap-server.ts) for what Dovecot will not do on
 * demand: a folder without UIDNEXT, a server offering UTF8=ACCEPT, a message whose bytes are not the announced ones.
 */
const PASSWORD = 'secret';

function message(subject: string, body = 'Hello.\r\n'): Buffer {
  return Buffer.from(`Subject: ${subject}\r\nFrom: a@example.test\r\nTo: b@example.test\r\n\r\n${body}`);
}

const MESSAGES = [message('one'), message('two'), message('three')];

function source(port: number): Source {
  return {
    id: 'fake-imap',
    protocol: 'imap',
    host: '127.0.0.1',
    port,
    tls: 'none',
    user: 'ann',
    folders: ['INBOX'],
    pollMinutes: 5,
    enabled: true,
    retention: { mode: 'keep' },
  };
}

async function collect(body: Bytes): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of body) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

let fake: FakeImapServer | undefined;
let session: ImapSession | undefined;

async function start(
  options: Partial<FakeImapOptions> = {},
  wholeMessageBytes?: number,
): Promise<{ fake: FakeImapServer; session: ImapSession }> {
  fake = await startFakeImap({ messages: MESSAGES, password: PASSWORD, ...options });
  session = await openImapSession(source(fake.port), PASSWORD, {
    timeoutMs: 5000,
    ...(wholeMessageBytes === undefined ? {} : { wholeMessageBytes }),
  });
  return { fake, session };
}

afterEach(async () => {
  session?.abort();
  session = undefined;
  await fake?.close();
  fake = undefined;
});

/** The commands after the login, without their tags. */
function commands(f: FakeImapServer): string[] {
  return f.received.map((line) => line.replace(/^\S+ /, '')).filter((l) => !/^(CAPABILITY|LOGIN)\b/i.test(l));
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => err,
  );
}

describe('a folder whose EXAMINE answer has no UIDNEXT (RFC 3501 allows it; Courier does it)', () => {
  it('asks STATUS (UIDNEXT) and takes its answer as the real UIDNEXT', async () => {
    const { fake, session } = await start({ examineOmits: ['UIDNEXT'] });
    expect(await session.openFolder('INBOX')).toStrictEqual({ uidValidity: '4242', uidNext: 4, exists: 3 });
    expect(commands(fake)).toContain('STATUS INBOX (UIDNEXT)');
  });

  it('derives it from the highest UID + 1 when STATUS does not say it either, and marks it derived', async () => {
    const { fake, session } = await start({ examineOmits: ['UIDNEXT'], statusOmits: ['UIDNEXT'] });
    const status = await session.openFolder('INBOX');
    expect(status).toStrictEqual({ uidValidity: '4242', uidNext: 4, exists: 3, uidNextDerived: true });
    expect(commands(fake)).toEqual(
      expect.arrayContaining(['EXAMINE INBOX', 'STATUS INBOX (UIDNEXT)', 'UID FETCH * UID']),
    );
    // The newest expunged: the stand-in goes down (the planner does not read that as a re-created folder).
    expect(await session.deleteUids('INBOX', '4242', [3])).toEqual(new Set([3]));
    expect(await session.openFolder('INBOX')).toMatchObject({ uidNext: 3, exists: 2, uidNextDerived: true });
  });

  it('derives 1 for an empty folder without asking for a UID', async () => {
    const { fake, session } = await start({
      messages: [],
      examineOmits: ['UIDNEXT'],
      statusOmits: ['UIDNEXT'],
    });
    expect(await session.openFolder('INBOX')).toStrictEqual({
      uidValidity: '4242',
      uidNext: 1,
      exists: 0,
      uidNextDerived: true,
    });
    expect(commands(fake).some((l) => /FETCH/.test(l))).toBe(false);
  });

  it('takes a missing UIDVALIDITY from STATUS, and refuses the folder when nobody says it (never "undefined")', async () => {
    const { session } = await start({ examineOmits: ['UIDVALIDITY'] });
    expect(await session.openFolder('INBOX')).toMatchObject({ uidValidity: '4242', uidNext: 4 });
    session.abort();
    await fake?.close();

    const again = await start({ examineOmits: ['UIDVALIDITY'], statusOmits: ['UIDVALIDITY'] });
    const err = await failure(again.session.openFolder('INBOX'));
    expect(err).toMatchObject({ name: 'UpstreamError', code: 'PROTOCOL_ERROR' });
    expect((err as Error).message).toMatch(/did not say the UIDVALIDITY of "INBOX"/);
  });
});

describe('UTF8=ACCEPT (RFC 6855)', () => {
  const raw = Buffer.from('Subject: Grüße aus Köln\r\nFrom: Jörg <jörg@exämple.test>\r\n\r\nÄ body\r\n');
  const placeholder = Buffer.from('Subject: =?UTF-8?Q?downgraded?=\r\n\r\nThis message was downgraded.\r\n');

  it('is ENABLEd before any folder is opened when offered, so the server serves the message as it is', async () => {
    const { fake, session } = await start({
      messages: [raw],
      capabilities: ['IMAP4rev1', 'UIDPLUS', 'ENABLE', 'UTF8=ACCEPT'],
      downgraded: () => placeholder,
    });
    await session.openFolder('INBOX');
    const listed = await session.listUids(1);
    const bodies: Buffer[] = [];
    await session.fetchBodies(listed, async (_uid, _size, body) => void bodies.push(await collect(body)));
    expect(fake.enabled).toEqual(['UTF8=ACCEPT']);
    const sent = commands(fake);
    expect(sent.indexOf('ENABLE UTF8=ACCEPT')).toBeGreaterThanOrEqual(0);
    expect(sent.indexOf('ENABLE UTF8=ACCEPT')).toBeLessThan(sent.indexOf('EXAMINE INBOX'));
    expect(bodies).toEqual([raw]);
    expect(listed).toEqual([{ uid: 1, size: raw.length }]);
  });

  it('sends no ENABLE to a server that does not offer it', async () => {
    const { fake, session } = await start({ capabilities: ['IMAP4rev1', 'UIDPLUS', 'ENABLE'] });
    await session.openFolder('INBOX');
    expect(commands(fake).some((l) => /^ENABLE/.test(l))).toBe(false);
  });

  it('sends a folder name as UTF-8 once enabled, and reads it under the same name', async () => {
    const { fake, session } = await start({ capabilities: ['IMAP4rev1', 'ENABLE', 'UTF8=ACCEPT'] });
    await session.openFolder('Entwürfe');
    // The fake reads bytes as Latin-1: UTF-8 on the wire shows as two characters per umlaut, not as &APw-. (The
    // prefix is imapflow's guess of the personal namespace: the fake has no NAMESPACE.)
    const examine = commands(fake).find((l) => l.startsWith('EXAMINE'));
    expect(Buffer.from(examine!, 'latin1').toString('utf8')).toMatch(/^EXAMINE "?(INBOX\/)?Entwürfe"?$/);
  });
});

describe('a failure of one message is a MessageError naming its UID; the connection failing is not', () => {
  it('a body far from its RFC822.SIZE', async () => {
    const { session } = await start({
      announcedSize: (uid, actual) => (uid === 2 ? actual * 4 + 2_000_000 : actual),
    });
    await session.openFolder('INBOX');
    const delivered: number[] = [];
    const err = await failure(
      session.fetchBodies(await session.listUids(1), async (uid, _size, body) => {
        await collect(body);
        delivered.push(uid);
      }),
    );
    expect(err).toBeInstanceOf(MessageError);
    expect(err).toMatchObject({ code: 'PROTOCOL_ERROR', retryable: true, at: { uid: 2 } });
    expect(delivered).toEqual([1]);
  });

  it('a UID not delivered although UID SEARCH says it is still there', async () => {
    const { session } = await start({
      // The body of UID 2 left out of every UID FETCH BODY.PEEK[] answer.
      override: (cmd) => {
        if (cmd.verb !== 'UID FETCH' || !/BODY\.PEEK\[\]/i.test(cmd.args)) return undefined;
        const pieces: string[] = [];
        for (const uid of [1, 3]) {
          const body = MESSAGES[uid - 1]!;
          pieces.push(
            `* ${uid} FETCH (UID ${uid} BODY[] {${body.length}}\r\n${body.toString('latin1')})\r\n`,
          );
        }
        return [...pieces, `${cmd.tag} OK FETCH done\r\n`];
      },
    });
    await session.openFolder('INBOX');
    const err = await failure(
      session.fetchBodies(await session.listUids(1), (_u, _s, body) => collect(body).then(() => undefined)),
    );
    expect(err).toBeInstanceOf(MessageError);
    expect(err).toMatchObject({ code: 'PROTOCOL_ERROR', at: { uid: 2 } });
    expect((err as Error).message).toMatch(
      /did not send BODY\.PEEK\[\] of UID 2 although the message exists/,
    );
  });

  it('a chunked download that gets fewer bytes than RFC822.SIZE', async () => {
    const big = Buffer.concat([message('big', ''), filler(6000)]);
    const { session } = await start(
      { messages: [big], announcedSize: (_uid, actual) => actual + 3000 },
      1024,
    );
    await session.openFolder('INBOX');
    const err = await failure(
      session.fetchBodies(await session.listUids(1), (_u, _s, body) => collect(body).then(() => undefined)),
    );
    expect(err).toBeInstanceOf(MessageError);
    expect(err).toMatchObject({ code: 'PROTOCOL_ERROR', at: { uid: 1 } });
    expect((err as Error).message).toMatch(/sent 6\d+ of the 9\d+ bytes of UID 1/);
  });

  it('a connection dropped in the middle of a FETCH stays a connection failure', async () => {
    const { session } = await start({
      override: (cmd) =>
        cmd.verb === 'UID FETCH' && /BODY\.PEEK\[\]/i.test(cmd.args) ? ['close'] : undefined,
    });
    await session.openFolder('INBOX');
    const err = await failure(
      session.fetchBodies(await session.listUids(1), (_u, _s, body) => collect(body).then(() => undefined)),
    );
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).not.toBeInstanceOf(MessageError);
    expect(err).toMatchObject({ code: 'CONNECTION_LOST' });
  });
});

describe('headerBlocks against the fake', () => {
  it('a header block withheld although UID SEARCH finds the message is a MessageError, not "gone"', async () => {
    const { session } = await start({
      override: (cmd) =>
        cmd.verb === 'UID FETCH' && /HEADER/i.test(cmd.args)
          ? [`* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n${cmd.tag} OK FETCH done\r\n`]
          : undefined,
    });
    const err = await failure(session.headerBlocks('INBOX', '4242', [1, 2]));
    expect(err).toBeInstanceOf(MessageError);
    expect(err).toMatchObject({ code: 'PROTOCOL_ERROR', at: { uid: 1 } });
  });

  it('serves the RFC 6855 message, not the downgraded one, when UTF8=ACCEPT is offered', async () => {
    const raw = Buffer.from('Subject: Grüße\r\nFrom: jörg@exämple.test\r\n\r\nbody\r\n');
    const { session } = await start({
      messages: [raw],
      capabilities: ['IMAP4rev1', 'ENABLE', 'UTF8=ACCEPT'],
      downgraded: () => Buffer.from('Subject: downgraded\r\n\r\nx\r\n'),
    });
    const blocks = await session.headerBlocks('INBOX', '4242', [1]);
    expect(blocks).toEqual(new Map([[1, Buffer.from('Subject: Grüße\r\nFrom: jörg@exämple.test\r\n\r\n')]]));
  });
});

describe('Courier-IMAP keeps UIDs only for a folder once SELECTed: it gets one SELECT per session, others EXAMINE only', () => {
  const courierGreeting =
    '* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE QUOTA IDLE] Courier-IMAP ready. Copyright 1998-2018 Double Precision, Inc.  See COPYING for distribution information.\r\n';
  const dovecotGreeting = '* OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] Dovecot (Debian) ready.\r\n';
  const opens = (f: FakeImapServer) => commands(f).filter((c) => /^(SELECT|EXAMINE)\b/.test(c));

  it('a server greeting as Courier-IMAP gets SELECT once, then EXAMINE at every open, and reads as before', async () => {
    const { fake, session } = await start({ greeting: [courierGreeting] });
    const status = await session.openFolder('INBOX');
    expect(status).toMatchObject({ uidValidity: '4242', exists: 3, uidNext: 4 });
    expect((await session.listUids(1)).map((m) => m.uid)).toEqual([1, 2, 3]);
    await session.openFolder('INBOX');
    expect(opens(fake)).toEqual(['SELECT INBOX', 'EXAMINE INBOX', 'EXAMINE INBOX']);
    // Reads are never done in the SELECTed state: the UID FETCH comes after the EXAMINE.
    const all = commands(fake);
    expect(all.findIndex((c) => c.startsWith('UID FETCH'))).toBeGreaterThan(all.indexOf('EXAMINE INBOX'));
  });

  it('a Dovecot server gets EXAMINE only, never SELECT', async () => {
    const { fake, session } = await start({ greeting: [dovecotGreeting] });
    await session.openFolder('INBOX');
    await session.openFolder('INBOX');
    expect(opens(fake)).toEqual(['EXAMINE INBOX', 'EXAMINE INBOX']);
  });

  it('a SELECT that Courier refuses is no error: the EXAMINE goes on', async () => {
    const { fake, session } = await start({
      greeting: [courierGreeting],
      override: (c) => (c.verb === 'SELECT' ? [`${c.tag} NO read-only folder\r\n`] : undefined),
    });
    expect(await session.openFolder('INBOX')).toMatchObject({ uidValidity: '4242', exists: 3 });
    expect(opens(fake)).toEqual(['SELECT INBOX', 'EXAMINE INBOX']);
  });
});
