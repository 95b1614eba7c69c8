import type { MessageRecord } from '../../functions/core/model';
import type { Lease } from '../../functions/core/ports';
import {
  all,
  audit,
  farFuture,
  implementations,
  newSha,
  newSourceId,
  openFor,
  record,
  T0,
} from './implementations';

/** SourceMessages: a source's messages (or the merged inbox) newest first in pages, and all of them by identity. */
describe.each(implementations)('SourceMessages on $name', (impl) => {
  const store = openFor(impl);
  const index = () => store().index;

  async function lease(): Promise<Lease> {
    return (await index().acquireLease(newSourceId('list'), 'list-test', 600_000, T0))!;
  }

  /** Every page of listInbox: the items in order, and how many pages it took. */
  async function walk(
    options: { sourceId?: string; limit: number },
    stopWhen?: (seen: MessageRecord[]) => boolean,
  ) {
    const seen: MessageRecord[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await index().listInbox({ ...options, cursor });
      expect(page.items.length).toBeLessThanOrEqual(options.limit);
      seen.push(...page.items);
      cursor = page.cursor;
      pages++;
    } while (cursor && pages < 50 && !stopWhen?.(seen));
    return { seen, pages, cursor };
  }

  it("walks a source's messages newest first, page by page, each once, the last page without a cursor", async () => {
    const l = await lease();
    const records: MessageRecord[] = [];
    // 23 messages, several sharing a date.
    for (let uid = 1; uid <= 23; uid++) {
      const day = String(1 + Math.floor(uid / 3)).padStart(2, '0');
      records.push(record(l.sourceId, uid, { sortDate: `2026-10-${day}T08:00:00.000Z` }));
    }
    for (const r of [...records].reverse()) expect(await index().commitMessage(l, r)).toBe('committed');

    const { seen, pages, cursor } = await walk({ sourceId: l.sourceId, limit: 5 });

    expect(cursor).toBeUndefined();
    expect(pages).toBeLessThanOrEqual(6);
    expect(seen.map((m) => m.identity).sort()).toEqual(records.map((r) => r.identity).sort());
    for (let i = 1; i < seen.length; i++) expect(seen[i - 1]!.sortDate >= seen[i]!.sortDate).toBe(true);
    expect(seen[0]).toMatchObject({
      sourceId: l.sourceId,
      object: records.find((r) => r.identity === seen[0]!.identity)!.object,
    });
    // One page holding everything has no cursor either.
    const whole = await index().listInbox({ sourceId: l.sourceId, limit: 50 });
    expect(whole.items.map((m) => m.identity)).toEqual(seen.map((m) => m.identity));
    expect(whole.cursor).toBeUndefined();
  });

  it('lists nothing for a source without messages', async () => {
    expect(await index().listInbox({ sourceId: newSourceId('nobody'), limit: 5 })).toEqual({ items: [] });
  });

  it('refuses a cursor that is not one of its own', async () => {
    const l = await lease();
    await index().commitMessage(l, record(l.sourceId, 1));
    for (const bad of ['not-a-cursor', Buffer.from('{"x":1}').toString('base64url')])
      await expect(index().listInbox({ sourceId: l.sourceId, limit: 5, cursor: bad })).rejects.toThrow();
  });

  it('walks the merged inbox newest first, one entry per content naming every place', async () => {
    const [a, b] = [await lease(), await lease()];
    const top = farFuture();
    const shared = newSha();
    const ra = record(a.sourceId, 1, { sha: shared, sortDate: top(0) });
    const rb = record(b.sourceId, 7, { sha: shared, sortDate: top(0) });
    const own = Array.from({ length: 7 }, (_, i) => record(a.sourceId, 10 + i, { sortDate: top(i + 1) }));
    for (const r of [ra, ...own]) await index().commitMessage(a, r);
    expect(await index().commitMessage(b, rb)).toBe('shared');
    const mine = new Set([shared, ...own.map((r) => r.object.sha256)]);

    // Dated far ahead: they head the inbox, whatever else a shared store holds.
    const { seen } = await walk(
      { limit: 3 },
      (s) => s.filter((m) => mine.has(m.object.sha256)).length >= mine.size,
    );
    const listed = seen.filter((m) => mine.has(m.object.sha256));

    expect(listed.map((m) => m.object.sha256)).toEqual(
      [...own]
        .reverse()
        .map((r) => r.object.sha256)
        .concat(shared),
    );
    const entry = listed[listed.length - 1]!;
    expect(entry.via).toEqual(
      [
        { sourceId: a.sourceId, identity: ra.identity },
        { sourceId: b.sourceId, identity: rb.identity },
      ].sort((x, y) => (`${x.sourceId}#${x.identity}` < `${y.sourceId}#${y.identity}` ? -1 : 1)),
    );
    for (const m of listed.slice(0, -1))
      expect(m.via).toEqual([{ sourceId: a.sourceId, identity: m.identity }]);
  });

  it('gives every message of a source in identity order, without aliases or evicted copies', async () => {
    const l = await lease();
    const records = Array.from({ length: 30 }, (_, i) => record(l.sourceId, 30 - i));
    await Promise.all(records.map((r) => index().commitMessage(l, r)));
    const pop3 = {
      ...record(l.sourceId, 99),
      upstream: { kind: 'pop3', uidl: 'zz' } as const,
      identity: 'pop3#zz',
    };
    await index().commitMessage(l, pop3);
    const first = records[records.length - 1]!;
    await index().commitAlias(
      l,
      { kind: 'imap', folder: 'INBOX', uidValidity: '8', uid: 1 },
      first.identity,
      first.object.contentSha256,
    );
    await index().evict(l, audit(records[0]!, 'evict'), T0);

    const listed = await all(index().sourceMessages(l.sourceId));

    const expected = [...records.slice(1), pop3].map((r) => r.identity).sort();
    expect(listed.map((m) => m.identity)).toEqual(expected);
    expect(listed.find((m) => m.identity === 'pop3#zz')).toMatchObject({
      upstream: { kind: 'pop3', uidl: 'zz' },
    });
    expect(await all(index().sourceMessages(newSourceId('nobody')))).toEqual([]);
  });
});
