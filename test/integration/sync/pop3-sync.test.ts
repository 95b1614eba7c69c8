import { createHash } from 'node:crypto';
import tls from 'node:tls';
import { bulkCorpus, standardCorpus } from '../../support/corpus';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';
import { syncSource } from '../../../functions/core/sync';
import type { Source } from '../../../functions/core/model';

const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * The maildrop as the server serves it, read over a bare TLS socket independently of Tributary's POP3 client:
 * UIDL -> sha256 of the un-stuffed RETR bytes.
 */
async function served(user: TestUser): Promise<Map<string, string>> {
  const socket = tls.connect({
    host: lab.info.host,
    port: lab.info.ports.pop3s,
    ca: lab.ca,
    servername: 'localhost',
  });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const send = (line: string) => socket.write(`${line}\r\n`);
  const waitFor = async (pattern: RegExp) => {
    for (let i = 0; i < 2000; i++) {
      if (pattern.test(Buffer.concat(chunks).toString('latin1'))) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`timeout waiting for ${pattern}`);
  };
  await waitFor(/^\+OK.*\r\n/);
  chunks.length = 0;
  send(`USER ${user.name}`);
  await waitFor(/\r\n$/);
  chunks.length = 0;
  send(`PASS ${user.password}`);
  await waitFor(/\r\n$/);
  chunks.length = 0;
  send('UIDL');
  await waitFor(/\r\n\.\r\n$/);
  const uidls = Buffer.concat(chunks)
    .toString('latin1')
    .split('\r\n')
    .slice(1, -2)
    .map((l) => l.split(' ') as [string, string]);
  const out = new Map<string, string>();
  for (const [n, uidl] of uidls) {
    chunks.length = 0;
    send(`RETR ${n}`);
    await waitFor(/\r\n\.\r\n$/);
    const all = Buffer.concat(chunks);
    const body = all.subarray(all.indexOf('\r\n') + 2, all.length - 3);
    // Undo dot-stuffing: a line starting with '..' loses one dot.
    const text = body.toString('latin1').replace(/(^|\r\n)\.\./g, '$1.');
    out.set(uidl, sha(Buffer.from(text, 'latin1')));
  }
  send('QUIT');
  socket.end();
  return out;
}

describe('POP3 sync against Dovecot', () => {
  it.each(['implicit', 'starttls', 'none'] as const)(
    'stores every corpus message byte-exact over TLS mode %s and leaves the maildrop as it was',
    async (tlsMode) => {
      const user = lab.createUser();
      const corpus = standardCorpus(5);
      for (const m of corpus) lab.deliver(user, m.raw);
      const before = await served(user);
      const source = t.source(user, 'pop3', tlsMode);

      const first = await t.sync(source);
      expect(first).toMatchObject({ outcome: 'ok', fetched: corpus.length });
      const stored = await t.stored(source.id);
      expect(stored).toHaveLength(before.size);
      for (const m of stored) {
        if (m.upstream.kind !== 'pop3') throw new Error('not a POP3 identity');
        const bytes = await t.bytes(m.object.key);
        expect({ uidl: m.upstream.uidl, sha: sha(bytes) }).toEqual({
          uidl: m.upstream.uidl,
          sha: before.get(m.upstream.uidl),
        });
      }
      expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 0 });
      // Same messages, same UIDLs, same bytes upstream.
      expect(await served(user)).toEqual(before);
    },
  );

  it('fetches only new mail on the next sync', async () => {
    const user = lab.createUser();
    for (const m of bulkCorpus(15, 31, { maxBytes: 20_000 })) lab.deliver(user, m.raw);
    const source = t.source(user, 'pop3');
    expect(await t.sync(source)).toMatchObject({ fetched: 15 });
    for (const m of bulkCorpus(2, 32, { maxBytes: 20_000 })) lab.deliver(user, m.raw);
    expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 2 });
    expect(await t.stored(source.id)).toHaveLength(17);
  });

  it('a poll that lists the same maildrop reads no committed identity (left on the server or emptied)', async () => {
    // The index as the sync sees it, counting the reads of every committed identity of a source.
    let fullReads = 0;
    const index = new Proxy(t.index, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === 'committedIdentities') fullReads++;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const sync = (source: Source) =>
      syncSource({ ...t.deps, index }, source, { deadline: Date.now() + 120_000, leaseTtlMs: 30_000 });
    const reads = async (source: Source) => {
      fullReads = 0;
      const report = await sync(source);
      return { fetched: report.fetched, outcome: report.outcome, fullReads };
    };

    const kept = lab.createUser();
    for (const m of bulkCorpus(6, 41, { maxBytes: 10_000 })) lab.deliver(kept, m.raw);
    const keep = t.source(kept, 'pop3');
    expect(await reads(keep)).toEqual({ fetched: 6, outcome: 'ok', fullReads: 1 });
    expect(await reads(keep)).toEqual({ fetched: 0, outcome: 'ok', fullReads: 0 });
    lab.deliver(kept, bulkCorpus(1, 42, { maxBytes: 10_000 })[0]!.raw);
    expect(await reads(keep)).toEqual({ fetched: 1, outcome: 'ok', fullReads: 1 });
    expect(await reads(keep)).toEqual({ fetched: 0, outcome: 'ok', fullReads: 0 });
    expect(await t.stored(keep.id)).toHaveLength(7);

    const emptied = lab.createUser();
    for (const m of bulkCorpus(3, 43, { maxBytes: 10_000 })) lab.deliver(emptied, m.raw);
    const drain = t.source(emptied, 'pop3', 'implicit', { retention: { mode: 'delete-on-retrieve' } });
    expect(await reads(drain)).toEqual({ fetched: 3, outcome: 'ok', fullReads: 1 });
    expect((await served(emptied)).size).toBe(0);
    // The listing changed (emptied by the policy): read once more, then not again while it stays empty.
    expect(await reads(drain)).toEqual({ fetched: 0, outcome: 'ok', fullReads: 1 });
    expect(await reads(drain)).toEqual({ fetched: 0, outcome: 'ok', fullReads: 0 });
    lab.deliver(emptied, bulkCorpus(1, 44, { maxBytes: 10_000 })[0]!.raw);
    expect(await reads(drain)).toEqual({ fetched: 1, outcome: 'ok', fullReads: 1 });
    expect(await t.stored(drain.id)).toHaveLength(4);
  });

  it('reports busy for a second concurrent sync and duplicates nothing', async () => {
    const user = lab.createUser();
    for (const m of bulkCorpus(30, 33, { maxBytes: 20_000 })) lab.deliver(user, m.raw);
    const source = t.source(user, 'pop3');
    const reports = await Promise.all([t.sync(source), t.sync(source)]);
    expect(reports.map((r) => r.outcome).sort()).toEqual(['busy', 'ok']);
    expect(await t.stored(source.id)).toHaveLength(30);
  });

  it('a POP3 and an IMAP copy of the same message have the same content hash', async () => {
    const user = lab.createUser();
    const nul = standardCorpus(1).find((m) => /nul/i.test(m.name));
    expect(nul).toBeDefined();
    lab.deliver(user, nul!.raw);
    const pop = t.source(user, 'pop3');
    const imap = t.source(user, 'imap');
    await t.sync(pop);
    await t.sync(imap);
    const [p] = await t.stored(pop.id);
    const [i] = await t.stored(imap.id);
    expect(p!.object.sha256).not.toBe(i!.object.sha256);
    expect(p!.object.contentSha256).toBe(i!.object.contentSha256);
  });
});
