import { LeaseLostError } from '../../functions/core/errors';
import type { FolderState, MessageFailure, SourceRunReport } from '../../functions/core/model';
import type { Lease, MessageIndex } from '../../functions/core/ports';
import { all, audit, implementations, iso, newSourceId, openFor, record, T0 } from './implementations';

/**
 * SourceLeases (and SourceStatus.leaseState): one holder at a time per source, a fence that grows at every
 * acquisition, and every state write of a run refused once its lease was taken over (ports.ts).
 */
describe.each(implementations)('SourceLeases on $name', (impl) => {
  const store = openFor(impl);
  const index = () => store().index;

  it('grants a free lease with fence 1 and shows it as stored; a second holder gets nothing while it is held', async () => {
    const sourceId = newSourceId('lease');
    expect(await index().leaseState(sourceId)).toBeUndefined();

    const lease = await index().acquireLease(sourceId, 'first', 60_000, T0);

    expect(lease).toEqual({ sourceId, holder: 'first', fence: 1, expiresAt: T0 + 60_000 });
    expect(await index().leaseState(sourceId)).toEqual(lease);
    expect(await index().acquireLease(sourceId, 'second', 60_000, T0 + 59_000)).toBeUndefined();
    expect(await index().leaseState(sourceId)).toEqual(lease);
  });

  it('takes over an expired lease with the next fence; the fence grows by one at every acquisition', async () => {
    const sourceId = newSourceId('lease');
    const first = (await index().acquireLease(sourceId, 'first', 1_000, T0))!;
    const second = await index().acquireLease(sourceId, 'second', 1_000, T0 + 1_001);
    expect(second).toEqual({ sourceId, holder: 'second', fence: first.fence + 1, expiresAt: T0 + 2_001 });

    await index().releaseLease(second!);
    const third = await index().acquireLease(sourceId, 'third', 1_000, T0 + 1_002);
    expect(third?.fence).toBe(first.fence + 2);
    // The same holder taking it again is a new acquisition too.
    await index().releaseLease(third!);
    expect((await index().acquireLease(sourceId, 'third', 1_000, T0 + 1_003))?.fence).toBe(first.fence + 3);
  });

  it('renews its own lease (a later expiry that keeps others out), and refuses the renewal after a takeover', async () => {
    const sourceId = newSourceId('lease');
    const lease = (await index().acquireLease(sourceId, 'first', 1_000, T0))!;

    const renewed = await index().renewLease(lease, 1_000, T0 + 800);

    expect(renewed).toEqual({ ...lease, expiresAt: T0 + 1_800 });
    expect(await index().acquireLease(sourceId, 'second', 1_000, T0 + 1_500)).toBeUndefined();
    const successor = (await index().acquireLease(sourceId, 'second', 60_000, T0 + 1_900))!;
    expect(successor.fence).toBe(lease.fence + 1);
    await expect(index().renewLease(renewed, 1_000, T0 + 2_000)).rejects.toBeInstanceOf(LeaseLostError);
    expect(await index().leaseState(sourceId)).toEqual(successor);
  });

  it('releases only its own lease: a stale release leaves the successor holding it', async () => {
    const sourceId = newSourceId('lease');
    const stale = (await index().acquireLease(sourceId, 'first', 1_000, T0))!;
    const successor = (await index().acquireLease(sourceId, 'second', 60_000, T0 + 2_000))!;

    await index().releaseLease(stale);

    expect(await index().leaseState(sourceId)).toEqual(successor);
    expect(await index().acquireLease(sourceId, 'third', 60_000, T0 + 3_000)).toBeUndefined();
    // The holder's own release frees it at once.
    await index().releaseLease(successor);
    const next = await index().acquireLease(sourceId, 'third', 60_000, T0 + 3_000);
    expect(next?.fence).toBe(successor.fence + 1);
  });

  it('keeps leases of different sources apart', async () => {
    const [a, b] = [newSourceId('lease'), newSourceId('lease')];
    const la = await index().acquireLease(a, 'one', 60_000, T0);
    const lb = await index().acquireLease(b, 'one', 60_000, T0);
    expect([la?.fence, lb?.fence]).toEqual([1, 1]);
  });

  it('gives a free lease to exactly one of many concurrent acquirers', async () => {
    for (let round = 0; round < 3; round++) {
      const sourceId = newSourceId('lease');
      const granted = await Promise.all(
        Array.from({ length: 8 }, (_, k) => index().acquireLease(sourceId, `racer-${k}`, 60_000, T0)),
      );
      const winners = granted.filter((l) => l !== undefined);
      expect(winners).toHaveLength(1);
      expect(winners[0]!.fence).toBe(1);
      expect(await index().leaseState(sourceId)).toEqual(winners[0]);
    }
  });

  it('gives a lease to exactly one of acquirers on two handles (two processes on one store)', async () => {
    const other = store().sibling();
    try {
      for (let round = 0; round < 3; round++) {
        const sourceId = newSourceId('lease');
        const granted = await Promise.all(
          Array.from({ length: 8 }, (_, k) =>
            (k % 2 ? other.index : index()).acquireLease(sourceId, `racer-${k}`, 60_000, T0),
          ),
        );
        const winners = granted.filter((l) => l !== undefined);
        expect(winners).toHaveLength(1);
        expect(await other.index.leaseState(sourceId)).toEqual(winners[0]);
        // A write of the winner's through the other handle is fenced the same way.
        const loserHandle = granted.indexOf(winners[0]) % 2 ? index() : other.index;
        await loserHandle.saveFolderState(winners[0]!, {
          folder: 'INBOX',
          uidValidity: '1',
          committedThroughUid: 1,
          uidNext: 2,
        });
        const next = (await loserHandle.acquireLease(sourceId, 'next', 60_000, T0 + 61_000))!;
        await expect(
          (loserHandle === index() ? other.index : index()).saveFolderState(winners[0]!, {
            folder: 'INBOX',
            uidValidity: '1',
            committedThroughUid: 9,
            uidNext: 10,
          }),
        ).rejects.toBeInstanceOf(LeaseLostError);
        expect(next.fence).toBe(winners[0]!.fence + 1);
        expect(await index().getFolderState(sourceId, 'INBOX')).toMatchObject({ committedThroughUid: 1 });
      }
    } finally {
      other.close();
    }
  });

  it('gives an expired lease to exactly one of many concurrent acquirers', async () => {
    const sourceId = newSourceId('lease');
    const first = (await index().acquireLease(sourceId, 'first', 1_000, T0))!;
    const granted = await Promise.all(
      Array.from({ length: 8 }, (_, k) => index().acquireLease(sourceId, `racer-${k}`, 60_000, T0 + 5_000)),
    );
    const winners = granted.filter((l) => l !== undefined);
    expect(winners).toHaveLength(1);
    expect(winners[0]!.fence).toBe(first.fence + 1);
  });
});

/** A stale lease and its successor's, on a source of its own. */
async function takeover(index: MessageIndex): Promise<{ stale: Lease; fresh: Lease }> {
  const sourceId = newSourceId('fence');
  const stale = (await index.acquireLease(sourceId, 'paused-run', 1_000, T0))!;
  const fresh = (await index.acquireLease(sourceId, 'next-run', 600_000, T0 + 2_000))!;
  expect(fresh.fence).toBe(stale.fence + 1);
  return { stale, fresh };
}

const report = (sourceId: string, outcome: SourceRunReport['outcome']): SourceRunReport => ({
  sourceId,
  outcome,
  fetched: 3,
  fetchedBytes: 300,
  skipped: 0,
  deletedUpstream: 0,
  evicted: 0,
  durationMs: 5,
  notes: [],
  ...(outcome === 'failed' ? { error: { code: 'TIMEOUT', message: 'stale' } } : {}),
});

function failure(sourceId: string, uid: number, attempts: number): MessageFailure {
  const r = record(sourceId, uid);
  return {
    sourceId,
    identity: r.identity,
    upstream: r.upstream,
    attempts,
    error: { code: 'PROTOCOL_ERROR', message: 'short body' },
    firstAt: iso(T0),
    lastAt: iso(T0 + attempts),
    setAside: attempts >= 3,
  };
}

/**
 * Each fenced write: what the successor holds before (`prepare`, under the fresh lease), the write the paused run
 * attempts (`write`, under the stale lease), and what anyone reads afterwards (`read`), which must be unchanged.
 */
const fencedWrites: Array<{
  name: string;
  prepare: (index: MessageIndex, fresh: Lease) => Promise<unknown>;
  write: (index: MessageIndex, stale: Lease, prepared: unknown) => Promise<unknown>;
  read: (index: MessageIndex, sourceId: string, prepared: unknown) => Promise<unknown>;
}> = [
  {
    name: 'saveFolderState',
    prepare: async (index, fresh) => {
      const state: FolderState = { folder: 'INBOX', uidValidity: '7', committedThroughUid: 10, uidNext: 11 };
      await index.saveFolderState(fresh, state);
      return state;
    },
    write: (index, stale) =>
      index.saveFolderState(stale, {
        folder: 'INBOX',
        uidValidity: '7',
        committedThroughUid: 99,
        uidNext: 100,
      }),
    read: (index, sourceId) => index.getFolderState(sourceId, 'INBOX'),
  },
  {
    name: 'commitMessage',
    prepare: async (index, fresh) => index.commitMessage(fresh, record(fresh.sourceId, 1)),
    write: (index, stale) => index.commitMessage(stale, record(stale.sourceId, 2)),
    read: async (index, sourceId) => ({
      usage: await index.inboxUsage(sourceId),
      identities: await index.committedIdentities(sourceId, 'imap#'),
      messages: (await all(index.sourceMessages(sourceId))).length,
      summary: (await index.summary(sourceId)).messages,
    }),
  },
  {
    name: 'commitAlias',
    prepare: async (index, fresh) => {
      const r = record(fresh.sourceId, 1);
      await index.commitMessage(fresh, r);
      return r;
    },
    write: (index, stale, prepared) => {
      const r = prepared as ReturnType<typeof record>;
      return index.commitAlias(
        stale,
        { kind: 'imap', folder: 'INBOX', uidValidity: '8', uid: 1 },
        r.identity,
        r.object.contentSha256,
      );
    },
    read: async (index, sourceId, prepared) => ({
      identities: await index.committedIdentities(sourceId, 'imap#'),
      content: await index.findByContent(
        sourceId,
        (prepared as ReturnType<typeof record>).object.contentSha256,
      ),
    }),
  },
  {
    name: 'recordRun',
    prepare: (index, fresh) => index.recordRun(fresh, report(fresh.sourceId, 'ok'), T0 + 3_000),
    write: (index, stale) => index.recordRun(stale, report(stale.sourceId, 'failed'), T0 + 4_000),
    read: (index, sourceId) => index.summary(sourceId),
  },
  {
    name: 'beginActions',
    prepare: async (index, fresh) => {
      const r = record(fresh.sourceId, 1);
      await index.commitMessage(fresh, r);
      return r;
    },
    write: (index, stale, prepared) =>
      index.beginActions(stale, [audit(prepared as ReturnType<typeof record>, 'delete-upstream')]),
    read: async (index, sourceId) => ({
      pending: await index.pendingActions(sourceId),
      trail: await all(index.auditTrail(sourceId)),
    }),
  },
  {
    name: 'completeActions',
    prepare: async (index, fresh) => {
      const r = record(fresh.sourceId, 1);
      await index.commitMessage(fresh, r);
      const intent = audit(r, 'delete-upstream');
      await index.beginActions(fresh, [intent]);
      return intent;
    },
    write: (index, stale, prepared) =>
      index.completeActions(
        stale,
        [{ record: prepared as ReturnType<typeof audit>, state: 'done', usageAfter: 0 }],
        T0 + 5_000,
      ),
    read: async (index, sourceId) => ({
      pending: await index.pendingActions(sourceId),
      trail: await all(index.auditTrail(sourceId)),
      deleted: (await all(index.sourceMessages(sourceId))).map((m) => m.deletedUpstreamAt),
    }),
  },
  {
    name: 'evict',
    prepare: async (index, fresh) => {
      const r = record(fresh.sourceId, 1);
      await index.commitMessage(fresh, r);
      return r;
    },
    write: (index, stale, prepared) =>
      index.evict(stale, audit(prepared as ReturnType<typeof record>, 'evict'), T0 + 5_000),
    read: async (index, sourceId, prepared) => {
      const r = prepared as ReturnType<typeof record>;
      return {
        usage: await index.inboxUsage(sourceId),
        copy: (await index.lookup(sourceId, [r.identity])).get(r.identity),
        listed: (await index.listInbox({ sourceId, limit: 10 })).items.map((m) => m.identity),
        content: await index.findByContent(sourceId, r.object.contentSha256),
        unreferenced: await index.objectUnreferenced(r.object),
      };
    },
  },
  {
    name: 'recordMessageFailure',
    prepare: async (index, fresh) => {
      const f = failure(fresh.sourceId, 5, 1);
      await index.recordMessageFailure(fresh, f);
      return f;
    },
    write: (index, stale) => index.recordMessageFailure(stale, failure(stale.sourceId, 5, 3)),
    read: (index, sourceId) => index.messageFailures(sourceId),
  },
  {
    name: 'clearMessageFailures',
    prepare: async (index, fresh) => {
      const f = failure(fresh.sourceId, 5, 2);
      await index.recordMessageFailure(fresh, f);
      return f;
    },
    write: (index, stale, prepared) =>
      index.clearMessageFailures(stale, [(prepared as MessageFailure).identity]),
    read: (index, sourceId) => index.messageFailures(sourceId),
  },
];

describe.each(implementations)('every fenced write on $name', (impl) => {
  const store = openFor(impl);

  it.each(fencedWrites.map((w) => [w.name, w] as const))(
    '%s under a lease taken over throws LeaseLostError and writes nothing',
    async (_name, w) => {
      const index = store().index;
      const { stale, fresh } = await takeover(index);
      const prepared = await w.prepare(index, fresh);
      const before = await w.read(index, fresh.sourceId, prepared);

      await expect(w.write(index, stale, prepared)).rejects.toBeInstanceOf(LeaseLostError);

      expect(await w.read(index, fresh.sourceId, prepared)).toEqual(before);
      // The successor's lease is untouched and still works.
      expect(await index.leaseState(fresh.sourceId)).toEqual(fresh);
      await expect(index.renewLease(fresh, 600_000, T0 + 6_000)).resolves.toMatchObject({
        fence: fresh.fence,
      });
    },
  );

  it('the same writes go through under the current lease (the checks above are not vacuous)', async () => {
    const index = store().index;
    for (const w of fencedWrites) {
      const { fresh } = await takeover(index);
      const prepared = await w.prepare(index, fresh);
      const before = await w.read(index, fresh.sourceId, prepared);
      await w.write(index, fresh, prepared);
      expect({ write: w.name, after: await w.read(index, fresh.sourceId, prepared) }).not.toEqual({
        write: w.name,
        after: before,
      });
    }
  });
});
