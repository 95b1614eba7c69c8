import { LeaseLostError } from '../../functions/core/errors';
import type { MessageRecord } from '../../functions/core/model';
import type { Lease } from '../../functions/core/ports';
import {
  all,
  audit,
  HOUR,
  implementations,
  iso,
  newSha,
  newSourceId,
  openFor,
  record,
  T0,
} from './implementations';

/**
 * ActionJournal: intents written before a destructive action with a pending marker each, completed after it (state,
 * completedAt, usageAfter, note; an upstream delete done marks its message deletedUpstreamAt), the pending ones
 * listed for the next run, and the trail oldest first.
 */
describe.each(implementations)('ActionJournal on $name', (impl) => {
  const store = openFor(impl);
  const index = () => store().index;

  async function lease(): Promise<Lease> {
    return (await index().acquireLease(newSourceId('journal'), 'journal-test', 600_000, T0))!;
  }

  async function commit(l: Lease, uid: number): Promise<MessageRecord> {
    const m = record(l.sourceId, uid);
    expect(await index().commitMessage(l, m)).toBe('committed');
    return m;
  }

  it('lists begun intents as pending, completes them, and marks only the done upstream delete', async () => {
    const l = await lease();
    const [m1, m2, m3] = [await commit(l, 1), await commit(l, 2), await commit(l, 3)];
    const r1 = audit(m1, 'delete-upstream', T0, 1, { usageBefore: 900 });
    const r2 = audit(m2, 'delete-upstream', T0, 2);
    const r3 = audit(m3, 'evict', T0, 3);
    expect(await index().pendingActions(l.sourceId)).toEqual([]);

    await index().beginActions(l, [r1, r2, r3]);

    expect(await index().pendingActions(l.sourceId)).toStrictEqual([r1, r2, r3]);
    expect(await all(index().auditTrail(l.sourceId))).toStrictEqual([r1, r2, r3]);

    const t1 = T0 + 5000;
    await index().completeActions(
      l,
      [
        { record: r1, state: 'done', usageAfter: 800 },
        { record: r2, state: 'not-applied', note: 'already gone upstream' },
        { record: r3, state: 'done', usageAfter: 500 },
      ],
      t1,
    );

    expect(await index().pendingActions(l.sourceId)).toStrictEqual([]);
    expect(await all(index().auditTrail(l.sourceId))).toStrictEqual([
      { ...r1, state: 'done', completedAt: iso(t1), usageAfter: 800 },
      { ...r2, state: 'not-applied', completedAt: iso(t1), note: 'already gone upstream' },
      { ...r3, state: 'done', completedAt: iso(t1), usageAfter: 500 },
    ]);
    const deleted = new Map(
      (await all(index().sourceMessages(l.sourceId))).map((m) => [m.identity, m.deletedUpstreamAt]),
    );
    expect(deleted).toEqual(
      new Map([
        [m1.identity, iso(t1)],
        [m2.identity, undefined],
        [m3.identity, undefined],
      ]),
    );
    const copies = await index().lookup(l.sourceId, [m1.identity, m2.identity]);
    expect(copies.get(m1.identity)?.deletedUpstreamAt).toBe(iso(t1));
    expect(copies.get(m2.identity)?.deletedUpstreamAt).toBeUndefined();
    expect(copies.get(m1.identity)?.state).toBe('stored');

    // A retried completion keeps the first deletion time.
    await index().completeActions(l, [{ record: r1, state: 'done', usageAfter: 800 }], t1 + 1000);
    const again = (await all(index().sourceMessages(l.sourceId))).find((m) => m.identity === m1.identity);
    expect(again?.deletedUpstreamAt).toBe(iso(t1));
  });

  it('marks an alias target deleted upstream when the delete of its alias is done', async () => {
    const l = await lease();
    const m = await commit(l, 1);
    const upstream = { kind: 'imap', folder: 'INBOX', uidValidity: '8', uid: 9 } as const;
    await index().commitAlias(l, upstream, m.identity, m.object.contentSha256);
    const r = audit(m, 'delete-upstream', T0, 1, { identity: 'imap#INBOX#8#0000000009' });

    await index().beginActions(l, [r]);
    await index().completeActions(l, [{ record: r, state: 'done' }], T0 + 10);

    expect((await index().lookup(l.sourceId, [r.identity])).get(r.identity)?.deletedUpstreamAt).toBe(
      iso(T0 + 10),
    );
  });

  it('leaves a completed batch of nothing as it was', async () => {
    const l = await lease();
    await index().completeActions(l, [], T0);
    expect(await index().pendingActions(l.sourceId)).toEqual([]);
    expect(await all(index().auditTrail(l.sourceId))).toEqual([]);
  });

  it('begins an intent again on a retry (one record), and never reopens a completed one', async () => {
    const l = await lease();
    const m = await commit(l, 1);
    const r = audit(m, 'delete-upstream');
    await index().beginActions(l, [r]);
    await index().beginActions(l, [r]);
    expect(await index().pendingActions(l.sourceId)).toStrictEqual([r]);
    expect(await all(index().auditTrail(l.sourceId))).toStrictEqual([r]);

    await index().completeActions(l, [{ record: r, state: 'done' }], T0 + 100);
    // Whether it refuses or ignores the stale intent, the completed record stays completed.
    await index()
      .beginActions(l, [r])
      .catch(() => undefined);
    expect(await index().pendingActions(l.sourceId)).toStrictEqual([]);
    expect(await all(index().auditTrail(l.sourceId))).toStrictEqual([
      { ...r, state: 'done', completedAt: iso(T0 + 100) },
    ]);
  });

  it('refuses to begin an upstream delete whose target is missing, evicted or records another sha256, writing nothing', async () => {
    const l = await lease();
    const [m1, m2, m3] = [await commit(l, 1), await commit(l, 2), await commit(l, 3)];
    const ok = audit(m1, 'delete-upstream', T0, 1);
    const missing = audit(record(l.sourceId, 9), 'delete-upstream', T0, 2);
    const otherSha = audit(m3, 'delete-upstream', T0, 3);
    otherSha.object = { ...otherSha.object, sha256: newSha() };
    expect(await index().evict(l, audit(m2, 'evict', T0, 4), T0)).toBe('evicted');
    const evicted = audit(m2, 'delete-upstream', T0, 5);
    // The same target as `ok`, begun in the same call, but recording another sha256.
    const twinOtherSha = audit(m1, 'delete-upstream', T0, 6);
    twinOtherSha.object = { ...twinOtherSha.object, sha256: newSha() };
    const trailBefore = await all(index().auditTrail(l.sourceId));
    const pendingBefore = await index().pendingActions(l.sourceId);

    for (const bad of [missing, otherSha, evicted, twinOtherSha]) {
      const begun = index().beginActions(l, [ok, bad]);
      await expect(begun).rejects.toThrow();
      await expect(begun).rejects.not.toBeInstanceOf(LeaseLostError);
    }

    expect(await index().pendingActions(l.sourceId)).toStrictEqual(pendingBefore);
    expect(await all(index().auditTrail(l.sourceId))).toStrictEqual(trailBefore);
    await index().beginActions(l, [ok]);
    expect(await index().pendingActions(l.sourceId)).toStrictEqual([...pendingBefore, ok]);
  });

  it('begins an eviction of any record (the target is checked by evict itself)', async () => {
    const l = await lease();
    const m = await commit(l, 1);
    const r = audit(m, 'evict');
    await index().beginActions(l, [r]);
    expect(await index().pendingActions(l.sourceId)).toStrictEqual([r]);
  });

  it('begins and completes more records than one batch holds', async () => {
    const l = await lease();
    const m = await commit(l, 1);
    const records = Array.from({ length: 120 }, (_, i) => audit(m, 'evict', T0, i + 1));

    await index().beginActions(l, records);
    expect((await index().pendingActions(l.sourceId)).map((r) => r.id)).toEqual(records.map((r) => r.id));

    await index().completeActions(
      l,
      records.map((r) => ({ record: r, state: 'not-applied' as const })),
      T0 + 1000,
    );

    expect(await index().pendingActions(l.sourceId)).toHaveLength(0);
    const trail = await all(index().auditTrail(l.sourceId));
    expect(trail.map((r) => r.id)).toEqual(records.map((r) => r.id));
    expect(new Set(trail.map((r) => r.state))).toEqual(new Set(['not-applied']));
  });

  it('gives the trail oldest first whatever the order written, from `since` on', async () => {
    const l = await lease();
    const m = await commit(l, 1);
    const early = audit(m, 'delete-upstream', T0, 1);
    const early2 = audit(m, 'delete-upstream', T0, 2);
    const middle = audit(m, 'delete-upstream', T0 + HOUR, 1);
    const late = audit(m, 'delete-upstream', T0 + 2 * HOUR, 1);
    await index().beginActions(l, [late, early2]);
    await index().beginActions(l, [middle, early]);

    expect((await all(index().auditTrail(l.sourceId))).map((r) => r.id)).toEqual([
      early.id,
      early2.id,
      middle.id,
      late.id,
    ]);
    expect((await all(index().auditTrail(l.sourceId, iso(T0 + HOUR)))).map((r) => r.id)).toEqual([
      middle.id,
      late.id,
    ]);
    expect((await all(index().auditTrail(l.sourceId, iso(T0 + 1)))).map((r) => r.id)).toEqual([
      middle.id,
      late.id,
    ]);
    expect(await all(index().auditTrail(l.sourceId, iso(T0 + 3 * HOUR)))).toEqual([]);
    // Another source's trail is its own.
    expect(await all(index().auditTrail(newSourceId('nobody')))).toEqual([]);
    expect(await index().pendingActions(newSourceId('nobody'))).toEqual([]);
  });
});
