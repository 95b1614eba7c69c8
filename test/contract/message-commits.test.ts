import { identityKey, type MessageRecord } from '../../functions/core/model';
import type { StoredCopy } from '../../functions/core/policies';
import type { Lease } from '../../functions/core/ports';
import { all, audit, implementations, newSha, newSourceId, openFor, record, T0 } from './implementations';

function copyOf(m: MessageRecord, state: StoredCopy['state'], key = m.object.key): StoredCopy {
  return {
    identity: m.identity,
    key,
    size: m.object.size,
    sha256: m.object.sha256,
    fetchedAt: m.fetchedAt,
    state,
  };
}

const byVia = (a: { sourceId: string; identity: string }, b: { sourceId: string; identity: string }) =>
  `${a.sourceId}#${a.identity}` < `${b.sourceId}#${b.identity}` ? -1 : 1;

/**
 * MessageCommits: the commit of a message (its item, content entry, registry reference and counters, once), the
 * identities committed, content matches, aliases, and what each identity maps to (ports.ts, decision 0007).
 */
describe.each(implementations)('MessageCommits on $name', (impl) => {
  const store = openFor(impl);
  const index = () => store().index;

  async function lease(sourceId = newSourceId('commit')): Promise<Lease> {
    const l = await index().acquireLease(sourceId, 'commit-test', 600_000, T0);
    expect(l).toBeDefined();
    return l!;
  }

  it("commits new bytes as 'committed', a retry as 'exists', counting them once", async () => {
    const l = await lease();
    const m = record(l.sourceId, 3, { size: 1234 });

    expect(await index().commitMessage(l, m)).toBe('committed');
    expect(await index().commitMessage(l, m)).toBe('exists');
    expect(await index().commitMessage(l, { ...m, fetchedAt: new Date(T0 + 99_000).toISOString() })).toBe(
      'exists',
    );

    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 1, bytes: 1234 });
    expect(await index().summary(l.sourceId)).toMatchObject({ messages: 1, bytes: 1234 });
    const stored = await all(index().sourceMessages(l.sourceId));
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      sourceId: m.sourceId,
      identity: m.identity,
      upstream: m.upstream,
      object: m.object,
      metadata: m.metadata,
      fetchedAt: m.fetchedAt,
      sortDate: m.sortDate,
    });
    expect(stored[0]!.deletedUpstreamAt).toBeUndefined();
    expect((await index().lookup(l.sourceId, [m.identity])).get(m.identity)).toStrictEqual(
      copyOf(m, 'stored'),
    );
  });

  it("commits bytes another source registered as 'shared', pointing at the registered object, with both places", async () => {
    const [a, b] = [await lease(), await lease()];
    const sha = newSha();
    const ra = record(a.sourceId, 1, { sha, size: 1000 });
    const rb = record(b.sourceId, 4, { sha, size: 1000 });

    expect(await index().commitMessage(a, ra)).toBe('committed');
    expect(await index().commitMessage(b, rb)).toBe('shared');
    expect(await index().commitMessage(b, rb)).toBe('exists');

    // B's item relies on A's object; B's own object is the caller's to delete.
    expect((await index().lookup(b.sourceId, [rb.identity])).get(rb.identity)).toStrictEqual(
      copyOf(rb, 'stored', ra.object.key),
    );
    expect((await all(index().sourceMessages(b.sourceId)))[0]!.object.key).toBe(ra.object.key);
    expect(await index().objectUnreferenced({ key: ra.object.key, sha256: sha })).toBe(false);
    expect(await index().objectUnreferenced({ key: rb.object.key, sha256: sha })).toBe(true);
    // Each source counts its own item.
    expect(await index().inboxUsage(a.sourceId)).toEqual({ messages: 1, bytes: 1000 });
    expect(await index().inboxUsage(b.sourceId)).toEqual({ messages: 1, bytes: 1000 });
    // One merged entry naming both places.
    const merged = (await store().inbox.list({ sourceId: b.sourceId, limit: 10 })).entries;
    expect(merged).toHaveLength(1);
    expect(merged[0]!.record.via).toEqual(
      [
        { sourceId: a.sourceId, identity: ra.identity },
        { sourceId: b.sourceId, identity: rb.identity },
      ].sort(byVia),
    );
  });

  it("commits twins of one source (two folders, same bytes): the second is 'shared', both counted", async () => {
    const l = await lease();
    const sha = newSha();
    const inbox = record(l.sourceId, 1, { sha, size: 500 });
    const archive = record(l.sourceId, 1, { sha, size: 500, folder: 'Archive' });
    const outcomes = await Promise.all([index().commitMessage(l, inbox), index().commitMessage(l, archive)]);
    expect([...outcomes].sort()).toEqual(['committed', 'shared']);
    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 2, bytes: 1000 });
    const copies = await index().lookup(l.sourceId, [inbox.identity, archive.identity]);
    expect(new Set([...copies.values()].map((c) => c.key)).size).toBe(1);
  });

  it("commits twins that wait behind each other's commit (a read ahead made stale): one copy, 'shared'", async () => {
    const l = await lease();
    const sha = newSha();
    // Each next message is asked for while the one before commits: it waits behind it, and what an index may read
    // ahead for it (its bytes' registration) is taken before the one before registered the same bytes.
    const twins = Array.from({ length: 4 }, (_, i) =>
      record(l.sourceId, i + 1, { sha, size: 300, folder: `F${i}` }),
    );
    const outcomes: Array<Promise<string>> = [];
    for (const twin of twins) {
      outcomes.push(index().commitMessage(l, twin));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(await Promise.all(outcomes)).toEqual(['committed', 'shared', 'shared', 'shared']);
    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 4, bytes: 1200 });
    const copies = await index().lookup(
      l.sourceId,
      twins.map((t) => t.identity),
    );
    expect(new Set([...copies.values()].map((c) => c.key))).toEqual(new Set([twins[0]!.object.key]));
  });

  it('commits many concurrent messages of one source with exact counters, each once', async () => {
    const l = await lease();
    const records = Array.from({ length: 60 }, (_, i) => record(l.sourceId, i + 1, { size: 1000 + i }));

    const outcomes = await Promise.all(records.map((r) => index().commitMessage(l, r)));
    // Again, concurrently, mixed with 10 new ones: only those count.
    const more = Array.from({ length: 10 }, (_, i) => record(l.sourceId, 100 + i, { size: 7 }));
    const again = await Promise.all([...records, ...more].map((r) => index().commitMessage(l, r)));

    expect(outcomes).toEqual(records.map(() => 'committed'));
    expect(again).toEqual([...records.map(() => 'exists'), ...more.map(() => 'committed')]);
    const bytes = records.reduce((n, r) => n + r.object.size, 0) + 70;
    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 70, bytes });
    expect(await index().committedIdentities(l.sourceId, 'imap#')).toEqual(
      new Set([...records, ...more].map((r) => r.identity)),
    );
    expect(await all(index().sourceMessages(l.sourceId))).toHaveLength(70);
  });

  it("commits the same bytes through two sources on two handles at once: one 'committed', one 'shared' each", async () => {
    const other = store().sibling();
    try {
      const a = await lease();
      const b = (await other.index.acquireLease(newSourceId('commit'), 'other-process', 600_000, T0))!;
      const shas = Array.from({ length: 12 }, () => newSha());
      const ra = shas.map((sha, i) => record(a.sourceId, i + 1, { sha, size: 100 + i }));
      const rb = shas.map((sha, i) => record(b.sourceId, i + 1, { sha, size: 100 + i }));

      const [oa, ob] = await Promise.all([
        Promise.all(ra.map((r) => index().commitMessage(a, r))),
        Promise.all(rb.map((r) => other.index.commitMessage(b, r))),
      ]);

      for (let i = 0; i < shas.length; i++) expect([oa[i], ob[i]].sort()).toEqual(['committed', 'shared']);
      const bytes = ra.reduce((n, r) => n + r.object.size, 0);
      expect(await index().inboxUsage(a.sourceId)).toEqual({ messages: 12, bytes });
      expect(await other.index.inboxUsage(b.sourceId)).toEqual({ messages: 12, bytes });
      // Both items of each content rely on one object: the one of the commit that registered it.
      const ca = await index().lookup(
        a.sourceId,
        ra.map((r) => r.identity),
      );
      const cb = await index().lookup(
        b.sourceId,
        rb.map((r) => r.identity),
      );
      for (let i = 0; i < shas.length; i++) {
        const registered = oa[i] === 'committed' ? ra[i]!.object.key : rb[i]!.object.key;
        expect([ca.get(ra[i]!.identity)?.key, cb.get(rb[i]!.identity)?.key]).toEqual([
          registered,
          registered,
        ]);
      }
      const merged = (await store().inbox.list({ sourceId: a.sourceId, limit: 50 })).entries;
      expect(merged).toHaveLength(12);
      for (const e of merged)
        expect(e.record.via?.map((v) => v.sourceId).sort()).toEqual([a.sourceId, b.sourceId].sort());
    } finally {
      other.close();
    }
  });

  it('answers committed identities by prefix, and from a given identity on', async () => {
    const l = await lease();
    const inbox = [1, 2, 10, 11].map((uid) => record(l.sourceId, uid));
    const other = record(l.sourceId, 5, { uidValidity: '8' });
    const archive = record(l.sourceId, 3, { folder: 'Archive' });
    for (const r of [...inbox, other, archive]) await index().commitMessage(l, r);
    const prefix = 'imap#INBOX#7#';
    const id = (uid: number) => identityKey({ kind: 'imap', folder: 'INBOX', uidValidity: '7', uid });

    expect(await index().committedIdentities(l.sourceId, prefix)).toEqual(
      new Set(inbox.map((r) => r.identity)),
    );
    expect(await index().committedIdentities(l.sourceId, prefix, id(10))).toEqual(new Set([id(10), id(11)]));
    expect(await index().committedIdentities(l.sourceId, prefix, id(3))).toEqual(new Set([id(10), id(11)]));
    // A `from` sorting before the prefix starts at the prefix; one after every identity gives nothing.
    expect(await index().committedIdentities(l.sourceId, prefix, 'imap#A')).toEqual(
      new Set(inbox.map((r) => r.identity)),
    );
    expect(await index().committedIdentities(l.sourceId, prefix, id(12))).toEqual(new Set());
    expect(await index().committedIdentities(l.sourceId, 'imap#INBOX#')).toEqual(
      new Set([...inbox, other].map((r) => r.identity)),
    );
    expect(await index().committedIdentities(l.sourceId, 'imap#')).toEqual(
      new Set([...inbox, other, archive].map((r) => r.identity)),
    );
    expect(await index().committedIdentities(l.sourceId, 'pop3')).toEqual(new Set());
    expect(await index().committedIdentities(newSourceId('nobody'), 'imap#')).toEqual(new Set());
  });

  it('answers POP3 identities (UIDL and header hash) under the pop3 prefix', async () => {
    const l = await lease();
    const base = record(l.sourceId, 1);
    const uidl = { ...base, upstream: { kind: 'pop3', uidl: 'a#b%c' } as const };
    uidl.identity = identityKey(uidl.upstream);
    const top = { ...record(l.sourceId, 2), upstream: { kind: 'pop3-top', headerHash: 'ff00#2' } as const };
    top.identity = identityKey(top.upstream);
    for (const r of [uidl, top]) expect(await index().commitMessage(l, r)).toBe('committed');
    expect(await index().committedIdentities(l.sourceId, 'pop3')).toEqual(
      new Set([uidl.identity, top.identity]),
    );
    expect(await index().committedIdentities(l.sourceId, 'pop3#')).toEqual(new Set([uidl.identity]));
  });

  it('finds committed messages and aliases by content, within the source only', async () => {
    const [a, b] = [await lease(), await lease()];
    const sha = newSha();
    const m = record(a.sourceId, 1, { sha });
    const twin = record(a.sourceId, 1, { sha, folder: 'Archive' });
    await index().commitMessage(a, m);
    await index().commitMessage(a, twin);
    await index().commitMessage(b, record(b.sourceId, 1, { sha }));
    const upstream = { kind: 'imap', folder: 'INBOX', uidValidity: '8', uid: 1 } as const;
    expect(await index().commitAlias(a, upstream, m.identity, sha)).toBe('committed');

    const found = await index().findByContent(a.sourceId, sha);

    expect([...found].sort((x, y) => (x.identity < y.identity ? -1 : 1))).toEqual(
      [
        { identity: m.identity, target: m.identity },
        { identity: twin.identity, target: twin.identity },
        { identity: identityKey(upstream), target: m.identity },
      ].sort((x, y) => (x.identity < y.identity ? -1 : 1)),
    );
    expect(await index().findByContent(a.sourceId, newSha())).toEqual([]);
  });

  it('records an alias once, as a committed identity that looks up to its target copy', async () => {
    const l = await lease();
    const m = record(l.sourceId, 1, { size: 321 });
    await index().commitMessage(l, m);
    const upstream = { kind: 'imap', folder: 'INBOX', uidValidity: '8', uid: 40 } as const;
    const alias = identityKey(upstream);

    expect(await index().commitAlias(l, upstream, m.identity, m.object.contentSha256)).toBe('committed');
    expect(await index().commitAlias(l, upstream, m.identity, m.object.contentSha256)).toBe('exists');

    expect(await index().committedIdentities(l.sourceId, 'imap#INBOX#8#')).toEqual(new Set([alias]));
    const found = await index().lookup(l.sourceId, [alias, m.identity]);
    expect(found.get(alias)).toStrictEqual(copyOf(m, 'stored'));
    expect(found.get(m.identity)).toStrictEqual(copyOf(m, 'stored'));
    // An alias is no message: not counted, not listed, not in the source's messages.
    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 1, bytes: 321 });
    expect((await all(index().sourceMessages(l.sourceId))).map((r) => r.identity)).toEqual([m.identity]);
    expect(
      (await index().listInbox({ sourceId: l.sourceId, limit: 10 })).items.map((r) => r.identity),
    ).toEqual([m.identity]);
  });

  it('looks up messages, aliases, evicted copies and unknown identities, many at once', async () => {
    const l = await lease();
    const records = Array.from({ length: 130 }, (_, i) => record(l.sourceId, i + 1));
    for (let i = 0; i < records.length; i += 26)
      await Promise.all(records.slice(i, i + 26).map((r) => index().commitMessage(l, r)));
    const [m1, m2] = [records[0]!, records[1]!];
    const a1 = { kind: 'imap', folder: 'INBOX', uidValidity: '8', uid: 1 } as const;
    const a2 = { kind: 'imap', folder: 'INBOX', uidValidity: '8', uid: 2 } as const;
    await index().commitAlias(l, a1, m1.identity, m1.object.contentSha256);
    await index().commitAlias(l, a2, m2.identity, m2.object.contentSha256);
    expect(await index().evict(l, audit(m2, 'evict'), T0 + 1000)).toBe('evicted');
    const unknown = [201, 202].map((uid) => record(l.sourceId, uid).identity);

    const found = await index().lookup(l.sourceId, [
      ...records.map((r) => r.identity),
      identityKey(a1),
      identityKey(a2),
      ...unknown,
      m1.identity,
    ]);

    expect(found.size).toBe(132);
    for (const r of records.slice(2)) expect(found.get(r.identity)).toStrictEqual(copyOf(r, 'stored'));
    expect(found.get(m1.identity)).toStrictEqual(copyOf(m1, 'stored'));
    expect(found.get(identityKey(a1))).toStrictEqual(copyOf(m1, 'stored'));
    expect(found.get(m2.identity)).toStrictEqual(copyOf(m2, 'evicted'));
    expect(found.get(identityKey(a2))).toStrictEqual(copyOf(m2, 'evicted'));
    for (const id of unknown) expect(found.has(id)).toBe(false);
    // Another source's lookup sees none of them.
    expect((await index().lookup(newSourceId('nobody'), [m1.identity])).size).toBe(0);
    expect(await index().lookup(l.sourceId, [])).toEqual(new Map());
  });
});
