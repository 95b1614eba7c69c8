import { randomBytes } from 'node:crypto';
import type { MessageRecord } from '../../functions/core/model';
import type { Lease } from '../../functions/core/ports';
import { all, audit, implementations, newSha, newSourceId, openFor, record, T0 } from './implementations';

/**
 * StoredCopies: the counters committed with every message, evicting a copy (a tombstone: out of the inboxes,
 * counters down, identity still known), and whether an object is still referenced by any committed item.
 */
describe.each(implementations)('StoredCopies on $name', (impl) => {
  const store = openFor(impl);
  const index = () => store().index;

  async function lease(): Promise<Lease> {
    return (await index().acquireLease(newSourceId('copies'), 'copies-test', 600_000, T0))!;
  }

  async function commit(l: Lease, m: MessageRecord): Promise<MessageRecord> {
    await index().commitMessage(l, m);
    return m;
  }

  it('counts nothing for a source without messages, and each committed message once', async () => {
    const l = await lease();
    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 0, bytes: 0 });
    await commit(l, record(l.sourceId, 1, { size: 100 }));
    await commit(l, record(l.sourceId, 3, { size: 300 }));
    await index().commitMessage(l, record(l.sourceId, 3, { size: 300 }));
    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 2, bytes: 400 });
  });

  it('evicts a copy into a tombstone: out of the inboxes, counters down, identity and alias still known', async () => {
    const l = await lease();
    const m1 = await commit(l, record(l.sourceId, 1, { size: 100 }));
    const m2 = await commit(l, record(l.sourceId, 2, { size: 200 }));
    const alias = { kind: 'imap', folder: 'INBOX', uidValidity: '8', uid: 11 } as const;
    await index().commitAlias(l, alias, m1.identity, m1.object.contentSha256);
    const aliasId = 'imap#INBOX#8#0000000011';
    const entryOf = async (m: MessageRecord) =>
      (await store().inbox.list({ sourceId: l.sourceId, limit: 10 })).entries.find(
        (e) => e.record.object.sha256 === m.object.sha256,
      );
    const entry = await entryOf(m1);
    expect(entry).toBeDefined();

    expect(await index().evict(l, audit(m1, 'evict'), T0 + 1000)).toBe('evicted');

    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 1, bytes: 200 });
    expect(
      (await index().listInbox({ sourceId: l.sourceId, limit: 10 })).items.map((m) => m.identity),
    ).toEqual([m2.identity]);
    expect((await all(index().sourceMessages(l.sourceId))).map((m) => m.identity)).toEqual([m2.identity]);
    expect(await entryOf(m1)).toBeUndefined();
    expect(await store().inbox.get(entry!.id)).toBeUndefined();
    expect(await index().committedIdentities(l.sourceId, 'imap#')).toEqual(
      new Set([m1.identity, m2.identity, aliasId]),
    );
    const found = await index().lookup(l.sourceId, [m1.identity, aliasId]);
    expect(found.get(m1.identity)).toMatchObject({
      identity: m1.identity,
      key: m1.object.key,
      state: 'evicted',
    });
    expect(found.get(aliasId)).toMatchObject({ identity: m1.identity, state: 'evicted' });
    // Neither the copy nor its alias is found by content: a rematch cannot point at a copy that is gone.
    expect(await index().findByContent(l.sourceId, m1.object.contentSha256)).toEqual([]);
    expect(await index().findByContent(l.sourceId, m2.object.contentSha256)).toEqual([
      { identity: m2.identity, target: m2.identity },
    ]);
    // Nothing references the object any more: the caller may delete it.
    expect(await index().objectUnreferenced(m1.object)).toBe(true);
    expect(await index().objectUnreferenced(m2.object)).toBe(false);
    // The identity stays committed: a retried commit of it is 'exists' and counts nothing.
    expect(await index().commitMessage(l, m1)).toBe('exists');
    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 1, bytes: 200 });

    // Evicted again (a run cut after the tombstone): 'already', counted once.
    expect(await index().evict(l, audit(m1, 'evict', T0, 2), T0 + 2000)).toBe('already');
    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 1, bytes: 200 });
  });

  it('refuses to evict a message the source does not have, changing nothing', async () => {
    const l = await lease();
    await commit(l, record(l.sourceId, 1, { size: 100 }));
    await expect(index().evict(l, audit(record(l.sourceId, 5), 'evict'), T0)).rejects.toThrow();
    expect(await index().inboxUsage(l.sourceId)).toEqual({ messages: 1, bytes: 100 });
  });

  it('keeps shared bytes referenced until the last reference is evicted, and registers them anew after', async () => {
    const [a, b, c] = [await lease(), await lease(), await lease()];
    const sha = newSha();
    const ra = await commit(a, record(a.sourceId, 1, { sha, size: 1000 }));
    const rb = record(b.sourceId, 1, { sha, size: 1000 });
    expect(await index().commitMessage(b, rb)).toBe('shared');
    const object = { key: ra.object.key, sha256: sha };
    expect(await index().objectUnreferenced(object)).toBe(false);

    // A's own copy goes first: B still references the object.
    expect(await index().evict(a, audit(ra, 'evict'), T0)).toBe('evicted');
    expect(await index().objectUnreferenced(object)).toBe(false);
    expect(await index().inboxUsage(a.sourceId)).toEqual({ messages: 0, bytes: 0 });
    expect(await index().inboxUsage(b.sourceId)).toEqual({ messages: 1, bytes: 1000 });
    expect((await index().lookup(b.sourceId, [rb.identity])).get(rb.identity)).toMatchObject({
      key: ra.object.key,
      state: 'stored',
    });
    // The merged entry now names B only.
    const entries = (await store().inbox.list({ sourceId: b.sourceId, limit: 10 })).entries;
    expect(entries.map((e) => e.record.via)).toEqual([[{ sourceId: b.sourceId, identity: rb.identity }]]);
    expect(await index().evict(a, audit(ra, 'evict', T0, 2), T0)).toBe('already');
    expect(await index().objectUnreferenced(object)).toBe(false);

    // The last reference: the object may go, the merged entry goes.
    const last = audit(rb, 'evict');
    expect(await index().evict(b, { ...last, object: { ...last.object, key: ra.object.key } }, T0)).toBe(
      'evicted',
    );
    expect(await index().objectUnreferenced(object)).toBe(true);
    expect((await store().inbox.list({ sourceId: b.sourceId, limit: 10 })).entries).toEqual([]);

    // The same bytes through a third source register anew under its own object.
    const rc = record(c.sourceId, 1, { sha, size: 1000 });
    expect(await index().commitMessage(c, rc)).toBe('committed');
    expect(await index().objectUnreferenced(object)).toBe(true);
    expect(await index().objectUnreferenced({ key: rc.object.key, sha256: sha })).toBe(false);
  });

  it('calls an object nobody ever committed unreferenced', async () => {
    expect(
      await index().objectUnreferenced({
        key: `raw/nobody/${randomBytes(8).toString('hex')}.eml`,
        sha256: newSha(),
      }),
    ).toBe(true);
  });
});
