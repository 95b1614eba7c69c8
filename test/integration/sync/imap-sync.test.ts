import { createHash } from 'node:crypto';
import { bigMessage, bulkCorpus, standardCorpus } from '../../support/corpus';
import { startFaultProxy } from '../../support/fault-proxy';
import { syncSource } from '../../../functions/core/sync';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';

const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MB = 1024 * 1024;

/** A clean proxy that records the body FETCH commands the client sends (tags dropped). */
async function commandTap(target: { host: string; port: number }) {
  let text = '';
  const proxy = await startFaultProxy({
    target,
    choose: () => 'none',
    seed: 1,
    onClientData: (chunk) => (text += chunk.toString('latin1')),
  });
  return {
    port: proxy.port,
    bodyFetches: () =>
      text
        .split('\r\n')
        .map((line) => line.replace(/^\S+ /, ''))
        .filter((line) => /^UID FETCH .*BODY\.PEEK\[/.test(line)),
    /** The command names the client sent after it logged in (the AUTHENTICATE or LOGIN line excluded). */
    afterLogin: () => {
      const names = text
        .split('\r\n')
        .map((line) => /^\S+ ([A-Z]+)(?: |$)/.exec(line)?.[1])
        .filter((name): name is string => name !== undefined);
      const login = names.findIndex((name) => name === 'AUTHENTICATE' || name === 'LOGIN');
      return login < 0 ? names : names.slice(login + 1);
    },
    reset: () => (text = ''),
    close: () => proxy.close(),
  };
}

/** What the server serves over IMAP, read independently of Tributary: UID -> sha256 of BODY[], and the flags. */
async function served(
  user: TestUser,
): Promise<{ bodies: Map<number, string>; flags: Map<number, string[]> }> {
  const client = await lab.imap(user);
  const bodies = new Map<number, string>();
  const flags = new Map<number, string[]>();
  try {
    const lock = await client.getMailboxLock('INBOX', { readOnly: true });
    try {
      if (client.mailbox && client.mailbox.exists > 0) {
        for await (const m of client.fetch('1:*', { uid: true, source: true, flags: true }, { uid: true })) {
          bodies.set(m.uid, sha(m.source!));
          flags.set(m.uid, [...(m.flags ?? [])].sort());
        }
      }
    } finally {
      lock.release();
    }
  } finally {
    await client.logout();
  }
  return { bodies, flags };
}

async function expectStoreMatchesServer(sourceId: string, user: TestUser) {
  const { bodies } = await served(user);
  const stored = await t.stored(sourceId);
  expect(stored).toHaveLength(bodies.size);
  for (const m of stored) {
    if (m.upstream.kind !== 'imap') throw new Error('not an IMAP identity');
    const bytes = await t.bytes(m.object.key);
    expect({ uid: m.upstream.uid, sha: sha(bytes) }).toEqual({
      uid: m.upstream.uid,
      sha: bodies.get(m.upstream.uid),
    });
    expect(m.object.sha256).toBe(sha(bytes));
    expect(m.object.size).toBe(bytes.length);
  }
  return stored;
}

describe('IMAP sync against Dovecot', () => {
  it.each(['implicit', 'starttls', 'none'] as const)(
    'stores every corpus message byte-exact over TLS mode %s, then fetches nothing more',
    async (tls) => {
      const user = lab.createUser();
      const corpus = standardCorpus(7);
      for (const m of corpus) lab.deliver(user, m.raw);
      const source = t.source(user, 'imap', tls);
      const before = await served(user);

      const first = await t.sync(source);
      expect(first).toMatchObject({ outcome: 'ok', fetched: corpus.length });
      const stored = await expectStoreMatchesServer(source.id, user);
      expect(stored.every((m) => m.metadata.parse !== undefined)).toBe(true);

      const second = await t.sync(source);
      expect(second).toMatchObject({ outcome: 'ok', fetched: 0, skipped: 0 });

      // BODY.PEEK and EXAMINE only: no flag changed upstream.
      expect((await served(user)).flags).toEqual(before.flags);
    },
  );

  it('fetches only the mail that arrived between two syncs', async () => {
    const user = lab.createUser();
    for (const m of bulkCorpus(20, 3, { maxBytes: 30_000 })) lab.deliver(user, m.raw);
    const source = t.source(user, 'imap');
    expect(await t.sync(source)).toMatchObject({ fetched: 20 });
    const extra = bulkCorpus(3, 99, { maxBytes: 30_000 });
    await lab.append(
      user,
      extra.map((m) => m.raw),
    );
    const next = await t.sync(source);
    expect(next).toMatchObject({ outcome: 'ok', fetched: 3 });
    const stored = await expectStoreMatchesServer(source.id, user);
    expect(stored).toHaveLength(23);
  });

  it('a poll that finds nothing new asks STATUS and logs out: no EXAMINE, NAMESPACE, second ID, LIST or LSUB', async () => {
    const user = lab.createUser();
    for (const m of bulkCorpus(5, 31, { maxBytes: 10_000 })) lab.deliver(user, m.raw);
    // Plain IMAP through a proxy that reads the commands.
    const proxy = await commandTap({ host: lab.info.noTlsHost, port: lab.info.ports.imap });
    try {
      const source = t.source(user, 'imap', 'none', { host: '127.0.0.1', port: proxy.port });
      expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 5 });
      expect(proxy.afterLogin()).not.toContain('NAMESPACE');

      proxy.reset();
      expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 0 });
      expect(proxy.afterLogin()).toEqual(['STATUS', 'LOGOUT']);

      // New mail: STATUS sees UIDNEXT moved, the folder is opened and only the new message fetched.
      await lab.append(user, [bulkCorpus(1, 32, { maxBytes: 10_000 })[0]!.raw]);
      proxy.reset();
      expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 1 });
      // (imapflow's LIST and LSUB before an EXAMINE are skipped too: the sync reads nothing they answer.)
      expect(proxy.afterLogin()).toEqual(['STATUS', 'EXAMINE', 'UID', 'UID', 'LOGOUT']);
      expect(await expectStoreMatchesServer(source.id, user)).toHaveLength(6);

      // A folder other than INBOX is named only after NAMESPACE (imapflow prefixes names with it).
      const client = await lab.imap(user);
      try {
        await client.mailboxCreate('Archive');
      } finally {
        await client.logout();
      }
      proxy.reset();
      const both = { ...source, folders: ['INBOX', 'Archive'] };
      expect(await t.sync(both)).toMatchObject({ outcome: 'ok', fetched: 0 });
      expect(proxy.afterLogin()).toEqual(['STATUS', 'NAMESPACE', 'EXAMINE', 'LOGOUT']);
    } finally {
      await proxy.close();
    }
  });

  it('after a UIDVALIDITY change stores nothing twice and picks up what is new', async () => {
    const user = lab.createUser();
    const corpus = bulkCorpus(12, 5, { maxBytes: 20_000 });
    for (const m of corpus) lab.deliver(user, m.raw);
    const source = t.source(user, 'imap');
    expect(await t.sync(source)).toMatchObject({ fetched: 12 });
    const status = await lab.status(user);
    await lab.setUidValidity(user, Number(status.uidValidity) + 1000);
    lab.deliver(user, bulkCorpus(1, 77, { maxBytes: 20_000 })[0]!.raw);

    const after = await t.sync(source);
    expect(after).toMatchObject({ outcome: 'ok', fetched: 1, skipped: 12 });
    expect(after.notes.join(' ')).toMatch(/UIDVALIDITY changed/);
    const stored = await t.stored(source.id);
    expect(stored).toHaveLength(13);
    expect(new Set(stored.map((m) => m.object.sha256)).size).toBe(13);
    expect(await t.sync(source)).toMatchObject({ fetched: 0, skipped: 0 });
  });

  it('a rematch cut short by its deadline resumes without storing anything twice', async () => {
    const user = lab.createUser();
    for (const m of bulkCorpus(25, 15, { maxBytes: 10_000 })) lab.deliver(user, m.raw);
    const source = t.source(user, 'imap');
    expect(await t.sync(source)).toMatchObject({ fetched: 25 });
    const status = await lab.status(user);
    await lab.setUidValidity(user, Number(status.uidValidity) + 55);
    let calls = 0;
    const clock = { now: () => (calls++ > 30 ? Date.now() + 3_600_000 : Date.now()) };
    const cut = await syncSource({ ...t.deps, clock }, source, { deadline: Date.now() + 60_000 });
    expect(cut.outcome).toBe('more');
    const rest = await t.sync(source);
    expect(rest).toMatchObject({ outcome: 'ok', fetched: 0 });
    expect(await t.stored(source.id)).toHaveLength(25);
    expect(await t.sync(source)).toMatchObject({ fetched: 0, skipped: 0 });
  });

  it('streams a 30 MB message byte-exact', async () => {
    const user = lab.createUser();
    lab.deliver(user, bigMessage(30 * 1024 * 1024, 11));
    const source = t.source(user, 'imap');
    const report = await t.sync(source);
    expect(report).toMatchObject({ outcome: 'ok', fetched: 1 });
    expect(report.fetchedBytes).toBe(30 * 1024 * 1024);
    await expectStoreMatchesServer(source.id, user);
  });

  it('fetches messages of a few MB whole in one FETCH, and in partial FETCHes above wholeMessageBytes', async () => {
    const user = lab.createUser();
    const sizes = [3 * MB + 1, 4 * MB + 512 * 1024, 2 * MB + 7];
    sizes.forEach((size, i) => lab.deliver(user, bigMessage(size, 60 + i)));
    // Plain IMAP through a proxy that reads the commands (a counting proxy on IMAPS would see only TLS records).
    const proxy = await commandTap({ host: lab.info.noTlsHost, port: lab.info.ports.imap });
    try {
      const whole = t.source(user, 'imap', 'none', { host: '127.0.0.1', port: proxy.port });
      expect(await t.sync(whole)).toMatchObject({ outcome: 'ok', fetched: 3 });
      expect(proxy.bodyFetches()).toEqual(['UID FETCH 1:3 (UID BODY.PEEK[])']);
      await expectStoreMatchesServer(whole.id, user);

      proxy.reset();
      const chunked = t.source(user, 'imap', 'none', { host: '127.0.0.1', port: proxy.port });
      expect(await t.sync(chunked, { wholeMessageBytes: MB })).toMatchObject({ outcome: 'ok', fetched: 3 });
      // 2 MB a round trip: 2 + 3 + 2 partial FETCHes.
      expect(proxy.bodyFetches()).toHaveLength(7);
      expect(proxy.bodyFetches().every((c) => /BODY\.PEEK\[\]<\d+\.\d+>/.test(c))).toBe(true);
      await expectStoreMatchesServer(chunked.id, user);
    } finally {
      await proxy.close();
    }
  });

  it('reports busy for a second concurrent sync of the same source and duplicates nothing', async () => {
    const user = lab.createUser();
    for (const m of bulkCorpus(40, 8, { maxBytes: 20_000 })) lab.deliver(user, m.raw);
    const source = t.source(user, 'imap');
    const reports = await Promise.all([t.sync(source), t.sync(source)]);
    expect(reports.map((r) => r.outcome).sort()).toEqual(['busy', 'ok']);
    expect(reports.reduce((n, r) => n + r.fetched, 0)).toBe(40);
    const stored = await expectStoreMatchesServer(source.id, user);
    expect(stored).toHaveLength(40);
  });

  it('stops at its deadline with a checkpoint and finishes on the next run', async () => {
    const user = lab.createUser();
    for (const m of bulkCorpus(30, 9, { maxBytes: 10_000 })) lab.deliver(user, m.raw);
    const source = t.source(user, 'imap');
    // The clock jumps past the deadline after a few reads: before the 30 messages' budget checks are all made,
    // whatever the pipeline's depth (each message reads it once when fetched, once when stored).
    let calls = 0;
    const clock = { now: () => (calls++ > 20 ? Date.now() + 3_600_000 : Date.now()) };
    const partial = await syncSource({ ...t.deps, clock }, source, {
      deadline: Date.now() + 60_000,
    });
    expect(partial.outcome).toBe('more');
    expect(partial.fetched).toBeGreaterThan(0);
    expect(partial.fetched).toBeLessThan(30);
    const rest = await t.sync(source);
    expect(rest.fetched + partial.fetched).toBe(30);
    await expectStoreMatchesServer(source.id, user);
  });
});
