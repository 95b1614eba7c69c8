import type { Source } from '../../functions/core/model';
import type { SourceSchedule } from '../../functions/core/schedule';
import { implementations, newSourceId, openFor } from './implementations';

function source(id: string, overrides: Partial<Source> = {}): Source {
  return {
    id,
    protocol: 'imap',
    host: 'mail.example.org',
    port: 993,
    tls: 'implicit',
    user: 'me@example.org',
    folders: ['INBOX', 'Archive'],
    pollMinutes: 5,
    enabled: true,
    retention: { mode: 'keep' },
    ...overrides,
  };
}

/** Times of this test only, in 1970: far before any real schedule. */
function clock(): (offset: number) => number {
  const base = (1_000 + Math.floor(Math.random() * 1_000_000)) * 1_000_000;
  return (offset) => base + offset;
}

/**
 * Times of a `due` test only, before every clock() time: `due` up to one of them finds only that test's entries, even
 * in a registry other tests share (the entries other tests leave are due later).
 */
function dueClock(): (offset: number) => number {
  const base = (1 + Math.floor(Math.random() * 900)) * 1_000;
  return (offset) => base + offset;
}

/**
 * SourceRegistry: sources with their settings, schedule and revision; which are due, soonest first; schedule writes
 * that name the revision they read.
 */
describe.each(implementations)('SourceRegistry on $name', (impl) => {
  const store = openFor(impl);
  const registry = () => store().registry;

  it('adds a source due at once at revision 1, replaces its settings keeping its schedule, and forgets it', async () => {
    const at = clock();
    const id = newSourceId('reg');
    expect(await registry().get(id)).toBeUndefined();

    await registry().put(source(id), at(0));

    expect(await registry().get(id)).toEqual({
      source: source(id),
      schedule: { nextDueAt: at(0), failures: 0 },
      revision: 1,
    });
    const schedule: SourceSchedule = {
      nextDueAt: at(500),
      failures: 2,
      backoffUntil: at(900),
      lastRunAt: at(10),
      lastOutcome: 'failed',
      lastErrorCode: 'TIMEOUT',
    };
    expect(await registry().setSchedule(id, schedule, 1)).toBe(true);
    const changed = source(id, {
      pollMinutes: 30,
      folders: ['INBOX'],
      retention: { mode: 'delete-after-days', days: 7 },
    });
    await registry().put(changed, at(1000));
    expect(await registry().get(id)).toEqual({ source: changed, schedule, revision: 3 });
    expect((await registry().list()).filter((e) => e.source.id === id)).toEqual([
      { source: changed, schedule, revision: 3 },
    ]);

    await registry().remove(id);
    expect(await registry().get(id)).toBeUndefined();
    expect((await registry().list()).filter((e) => e.source.id === id)).toEqual([]);
    await registry().remove(id);
    await registry().remove(newSourceId('never'));
  });

  it('lists every source', async () => {
    const ids = [newSourceId('reg'), newSourceId('reg'), newSourceId('reg')];
    for (const id of ids) await registry().put(source(id, { protocol: 'pop3', folders: [] }), clock()(0));
    const listed = (await registry().list()).filter((e) => ids.includes(e.source.id));
    expect(listed.map((e) => e.source.id).sort()).toEqual([...ids].sort());
    for (const e of listed) expect(e.source).toEqual(source(e.source.id, { protocol: 'pop3', folders: [] }));
    for (const id of ids) await registry().remove(id);
  });

  it('gives the enabled sources due at or before now, soonest first, at most `limit`', async () => {
    const at = dueClock();
    const ids = Array.from({ length: 5 }, () => newSourceId('due'));
    // Put in an order of their own; due at 40, 10, 30, 20, 50.
    const dueAt = [40, 10, 30, 20, 50];
    for (const [i, id] of ids.entries()) await registry().put(source(id), at(dueAt[i]!));
    const dueIds = async (now: number, limit: number) =>
      (await registry().due(now, limit)).map((e) => e.source.id);

    expect(await dueIds(at(5), 10)).toEqual([]);
    expect(await dueIds(at(30), 10)).toEqual([ids[1], ids[3], ids[2]]);
    expect(await dueIds(at(50), 10)).toEqual([ids[1], ids[3], ids[2], ids[0], ids[4]]);
    expect(await dueIds(at(50), 2)).toEqual([ids[1], ids[3]]);
    const [first] = await registry().due(at(50), 1);
    expect(first).toEqual({
      source: source(ids[1]!),
      schedule: { nextDueAt: at(10), failures: 0 },
      revision: 1,
    });
    for (const id of ids) await registry().remove(id);
    expect(await dueIds(at(50), 10)).toEqual([]);
  });

  it('does not give a disabled source, nor one backing off, and follows schedule writes', async () => {
    const at = dueClock();
    const [off, backing, later] = [newSourceId('due'), newSourceId('due'), newSourceId('due')];
    await registry().put(source(off, { enabled: false }), at(10));
    await registry().put(source(backing), at(10));
    await registry().put(source(later), at(10));
    expect(
      await registry().setSchedule(backing, { nextDueAt: at(10), failures: 1, backoffUntil: at(100) }, 1),
    ).toBe(true);
    expect(await registry().setSchedule(later, { nextDueAt: at(60), failures: 0 }, 1)).toBe(true);
    const dueIds = async (now: number) => (await registry().due(now, 10)).map((e) => e.source.id);

    expect(await dueIds(at(50))).toEqual([]);
    expect(await dueIds(at(60))).toEqual([later]);
    expect(await dueIds(at(100))).toEqual([later, backing]);

    // Enabled again: due as its schedule says; disabled again: not due.
    await registry().put(source(off), at(999));
    expect(await dueIds(at(100))).toEqual([off, later, backing]);
    await registry().put(source(later, { enabled: false }), at(999));
    expect(await dueIds(at(100))).toEqual([off, backing]);
    for (const id of [off, backing, later]) await registry().remove(id);
  });

  it('writes a schedule only at the revision read, and never for a source that is gone', async () => {
    const at = clock();
    const id = newSourceId('rev');
    await registry().put(source(id), at(0));
    const claim: SourceSchedule = { nextDueAt: at(900), failures: 0, dispatchedAt: at(0) };

    expect(await registry().setSchedule(id, claim, 1)).toBe(true);
    // A second writer that read revision 1 too loses.
    expect(await registry().setSchedule(id, { nextDueAt: at(1), failures: 0 }, 1)).toBe(false);
    expect(await registry().get(id)).toEqual({ source: source(id), schedule: claim, revision: 2 });
    expect(await registry().setSchedule(id, { nextDueAt: at(5), failures: 0 }, 3)).toBe(false);

    await registry().remove(id);
    expect(await registry().setSchedule(id, claim, 2)).toBe(false);
    expect(await registry().get(id)).toBeUndefined();
    expect(await registry().setSchedule(newSourceId('never'), claim, 1)).toBe(false);
  });

  it('lets exactly one of concurrent schedule writers at one revision win', async () => {
    const id = newSourceId('rev');
    await registry().put(source(id), clock()(0));
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, k) => registry().setSchedule(id, { nextDueAt: k, failures: 0 }, 1)),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await registry().get(id))?.revision).toBe(2);
    await registry().remove(id);
  });
});
