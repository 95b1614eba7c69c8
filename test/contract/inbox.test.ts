import { randomBytes } from 'node:crypto';
import type { MessageRecord } from '../../functions/core/model';
import type { InboxEntry, InboxQuery, Lease } from '../../functions/core/ports';
import { all, farFuture, implementations, newSha, newSourceId, openFor, record, T0 } from './implementations';

const byVia = (a: { sourceId: string; identity: string }, b: { sourceId: string; identity: string }) =>
  `${a.sourceId}#${a.identity}` < `${b.sourceId}#${b.identity}` ? -1 : 1;

/**
 * InboxReader and InboxWriter: the merged inbox a reader sees (opaque ids, one entry per content, unread by default,
 * filters, pages newest first) and what a reader changes (read state, removal; never the stored copies).
 */
describe.each(implementations)('InboxReader and InboxWriter on $name', (impl) => {
  const store = openFor(impl);
  const index = () => store().index;
  const inbox = () => store().inbox;

  async function lease(): Promise<Lease> {
    return (await index().acquireLease(newSourceId('inbox'), 'inbox-test', 600_000, T0))!;
  }

  /** Every page of a query: the entries in order, and the pages (a filtered page may be short, even empty). */
  async function walk(query: Omit<InboxQuery, 'cursor'>, until?: (seen: InboxEntry[]) => boolean) {
    const seen: InboxEntry[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await inbox().list({ ...query, cursor });
      expect(page.entries.length).toBeLessThanOrEqual(query.limit);
      seen.push(...page.entries);
      cursor = page.cursor;
      pages++;
    } while (cursor && pages < 200 && !until?.(seen));
    return { seen, pages, cursor };
  }

  async function entryOf(sourceId: string, m: MessageRecord): Promise<InboxEntry> {
    const { seen } = await walk({ sourceId, limit: 50 });
    const entry = seen.find((e) => e.record.object.sha256 === m.object.sha256);
    expect(entry).toBeDefined();
    return entry!;
  }

  it('lists a source’s entries with distinct ids that get() answers, unread by default', async () => {
    const l = await lease();
    const records = [1, 2, 3].map((uid) => record(l.sourceId, uid));
    for (const r of records) await index().commitMessage(l, r);

    const { entries, cursor } = await inbox().list({ sourceId: l.sourceId, limit: 10 });

    expect(cursor).toBeUndefined();
    expect(entries.map((e) => e.record.identity)).toEqual(records.map((r) => r.identity));
    expect(new Set(entries.map((e) => e.id)).size).toBe(3);
    for (const e of entries) {
      expect(e.unread).toBe(true);
      expect(e.record.via).toEqual([{ sourceId: l.sourceId, identity: e.record.identity }]);
      expect(await inbox().get(e.id)).toEqual(e);
    }
    const r = records[0]!;
    expect(entries[0]!.record).toMatchObject({
      sourceId: r.sourceId,
      identity: r.identity,
      object: r.object,
      metadata: r.metadata,
      sortDate: r.sortDate,
    });
  });

  it('answers nothing for ids from nowhere or forged, and changes nothing for them', async () => {
    const l = await lease();
    const m = record(l.sourceId, 1);
    await index().commitMessage(l, m);
    const real = (await entryOf(l.sourceId, m)).id;
    const flip = (s: string, at: number) => s.slice(0, at) + (s[at] === 'a' ? 'b' : 'a') + s.slice(at + 1);
    const forged = [
      '',
      'x',
      `${real}0`,
      real.slice(0, -1),
      flip(real, real.length - 1),
      flip(real, Math.floor(real.length / 2)),
      `c${newSha()}`,
      `l${Buffer.from(`${l.sourceId}\0${m.identity}`).toString('base64url')}`,
      Buffer.from(`${l.sourceId}\0${m.identity}`).toString('base64url'),
      `../${real}`,
      'x'.repeat(5000),
      m.identity,
      m.object.sha256,
      randomBytes(12).toString('hex'),
    ].filter((id) => id !== real);

    for (const id of forged) {
      expect({ id, entry: await inbox().get(id) }).toEqual({ id, entry: undefined });
      expect({ id, changed: await inbox().setUnread(id, false, T0) }).toEqual({ id, changed: false });
      expect({ id, removed: await inbox().removeFromInbox(id, 'mallory', T0) }).toEqual({
        id,
        removed: false,
      });
    }
    expect(await inbox().get(real)).toMatchObject({ unread: true });
  });

  it('marks an entry read and unread again', async () => {
    const l = await lease();
    const [m1, m2] = [record(l.sourceId, 1), record(l.sourceId, 2)];
    for (const m of [m1, m2]) await index().commitMessage(l, m);
    const e1 = await entryOf(l.sourceId, m1);

    expect(await inbox().setUnread(e1.id, false, T0 + 1)).toBe(true);
    expect((await inbox().get(e1.id))?.unread).toBe(false);
    expect(
      (await walk({ sourceId: l.sourceId, unread: true, limit: 10 })).seen.map((e) => e.record.identity),
    ).toEqual([m2.identity]);
    expect((await inbox().list({ sourceId: l.sourceId, limit: 10 })).entries.map((e) => e.unread)).toEqual([
      false,
      true,
    ]);
    // Idempotent either way.
    expect(await inbox().setUnread(e1.id, false, T0 + 2)).toBe(true);
    expect(await inbox().setUnread(e1.id, true, T0 + 3)).toBe(true);
    expect((await inbox().get(e1.id))?.unread).toBe(true);
    expect(await inbox().setUnread(e1.id, true, T0 + 4)).toBe(true);
    expect(
      (await walk({ sourceId: l.sourceId, unread: true, limit: 10 })).seen
        .map((e) => e.record.identity)
        .sort(),
    ).toEqual([m1.identity, m2.identity].sort());
  });

  it('filters by source (every source the bytes came through), unread, and sender or subject, case-insensitively', async () => {
    const [a, b] = [await lease(), await lease()];
    const tag = `Tag${randomBytes(4).toString('hex')}`;
    const shared = newSha();
    const ra = record(a.sourceId, 1, { sha: shared, subject: `Invoice ${tag} March` });
    const rb = record(b.sourceId, 1, { sha: shared, subject: `Invoice ${tag} March` });
    const fromAnn = record(a.sourceId, 2, {
      from: { name: `Ann ${tag}`, address: 'ann@example.org' },
      subject: 'hello',
    });
    const fromBob = record(b.sourceId, 2, {
      from: { address: `bob.${tag.toLowerCase()}@example.org` },
      subject: 'hi',
    });
    const other = record(b.sourceId, 3, { subject: 'unrelated' });
    await index().commitMessage(a, ra);
    await index().commitMessage(a, fromAnn);
    expect(await index().commitMessage(b, rb)).toBe('shared');
    await index().commitMessage(b, fromBob);
    await index().commitMessage(b, other);
    const shas = async (query: Omit<InboxQuery, 'cursor' | 'limit'>) =>
      (await walk({ ...query, limit: 10 })).seen.map((e) => e.record.object.sha256).sort();

    expect(await shas({ sourceId: a.sourceId })).toEqual([shared, fromAnn.object.sha256].sort());
    expect(await shas({ sourceId: b.sourceId })).toEqual(
      [shared, fromBob.object.sha256, other.object.sha256].sort(),
    );
    const sharedEntry = (await walk({ sourceId: b.sourceId, limit: 10 })).seen.find(
      (e) => e.record.object.sha256 === shared,
    )!;
    expect(sharedEntry.record.via).toEqual(
      [
        { sourceId: a.sourceId, identity: ra.identity },
        { sourceId: b.sourceId, identity: rb.identity },
      ].sort(byVia),
    );
    // `q` across the whole inbox: subject, sender name, sender address; any case.
    expect(await shas({ q: tag.toUpperCase() })).toEqual(
      [shared, fromAnn.object.sha256, fromBob.object.sha256].sort(),
    );
    expect(await shas({ q: `invoice ${tag.toLowerCase()}` })).toEqual([shared]);
    expect(await shas({ sourceId: a.sourceId, q: tag })).toEqual([shared, fromAnn.object.sha256].sort());
    expect(await shas({ q: `${tag}-nowhere` })).toEqual([]);

    await inbox().setUnread(sharedEntry.id, false, T0);
    expect(await shas({ sourceId: b.sourceId, unread: true })).toEqual(
      [fromBob.object.sha256, other.object.sha256].sort(),
    );
    expect(await shas({ sourceId: a.sourceId, unread: true })).toEqual([fromAnn.object.sha256]);
    expect(await shas({ unread: true, q: tag })).toEqual(
      [fromAnn.object.sha256, fromBob.object.sha256].sort(),
    );
  });

  it('pages newest first without gaps or repeats, filtered or not', async () => {
    const l = await lease();
    const top = farFuture();
    const tag = `Page${randomBytes(4).toString('hex')}`;
    // 17 entries dated far ahead (a few sharing a minute), every third one matching `q`.
    const records = Array.from({ length: 17 }, (_, i) =>
      record(l.sourceId, i + 1, {
        sortDate: top(Math.floor(i / 2)),
        subject: i % 3 === 0 ? `${tag} ${i}` : `x ${i}`,
      }),
    );
    for (const r of records) await index().commitMessage(l, r);
    const mine = new Set(records.map((r) => r.object.sha256));
    const ordered = (seen: InboxEntry[]) => {
      for (let i = 1; i < seen.length; i++)
        expect(seen[i - 1]!.record.sortDate >= seen[i]!.record.sortDate).toBe(true);
      return seen.map((e) => e.record.object.sha256);
    };

    const bySource = await walk({ sourceId: l.sourceId, limit: 4 });
    expect(bySource.cursor).toBeUndefined();
    expect(ordered(bySource.seen).sort()).toEqual([...mine].sort());
    expect(new Set(bySource.seen.map((e) => e.id)).size).toBe(17);

    // The whole inbox: they head it.
    const merged = await walk(
      { limit: 4 },
      (seen) => seen.filter((e) => mine.has(e.record.object.sha256)).length >= 17,
    );
    const listed = ordered(merged.seen).filter((s) => mine.has(s));
    expect([...listed].sort()).toEqual([...mine].sort());

    const matching = records.filter((_, i) => i % 3 === 0).map((r) => r.object.sha256);
    const searched = await walk({ q: tag, limit: 2 });
    expect(ordered(searched.seen).sort()).toEqual([...matching].sort());
    const unread = await walk({ sourceId: l.sourceId, unread: true, limit: 5 });
    expect(ordered(unread.seen).sort()).toEqual([...mine].sort());
  });

  it('removes an entry from every view, keeping identities, copies and counters; a second removal is refused', async () => {
    const [a, b] = [await lease(), await lease()];
    const shared = newSha();
    const ra = record(a.sourceId, 1, { sha: shared, size: 1000 });
    const rb = record(b.sourceId, 1, { sha: shared, size: 1000 });
    const keep = record(a.sourceId, 2, { size: 50 });
    await index().commitMessage(a, ra);
    await index().commitMessage(a, keep);
    await index().commitMessage(b, rb);
    const entry = await entryOf(a.sourceId, ra);

    expect(await inbox().removeFromInbox(entry.id, 'reader@example.org', T0 + 1)).toBe(true);

    expect(await inbox().get(entry.id)).toBeUndefined();
    expect((await walk({ sourceId: a.sourceId, limit: 10 })).seen.map((e) => e.record.identity)).toEqual([
      keep.identity,
    ]);
    expect((await walk({ sourceId: b.sourceId, limit: 10 })).seen).toEqual([]);
    expect((await index().listInbox({ sourceId: b.sourceId, limit: 10 })).items).toEqual([]);
    expect(await inbox().setUnread(entry.id, true, T0 + 2)).toBe(false);
    expect(await inbox().removeFromInbox(entry.id, 'reader@example.org', T0 + 3)).toBe(false);
    // Still committed (never fetched again), still stored and counted (until evicted).
    expect(await index().committedIdentities(a.sourceId, 'imap#')).toEqual(
      new Set([ra.identity, keep.identity]),
    );
    expect(await index().commitMessage(b, rb)).toBe('exists');
    expect(await index().inboxUsage(a.sourceId)).toEqual({ messages: 2, bytes: 1050 });
    expect(await index().inboxUsage(b.sourceId)).toEqual({ messages: 1, bytes: 1000 });
    const copies = await index().lookup(a.sourceId, [ra.identity]);
    expect(copies.get(ra.identity)).toMatchObject({ state: 'stored', key: ra.object.key });
    expect(await index().objectUnreferenced(ra.object)).toBe(false);
    expect((await all(index().sourceMessages(a.sourceId))).map((m) => m.identity).sort()).toEqual(
      [ra.identity, keep.identity].sort(),
    );
  });
});
