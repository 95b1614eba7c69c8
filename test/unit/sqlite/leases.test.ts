import { openEmbeddedStore, type EmbeddedStore } from '../../../functions/adapters/sqlite/embedded-store';
import { LeaseLostError } from '../../../functions/core/errors';
import type { AuditRecord, MessageRecord } from '../../../functions/core/model';
import { messageRecord } from '../../support/records';
import { dataDir } from './helpers';

/**
 * Two stores on one data folder: two connections, as `npm start` and a CLI `sync` would hold. Whatever one
 * connection commits, the other's lease check sees, so a paused holder can never write over its successor.
 */

const T0 = Date.parse('2026-03-01T10:00:00.000Z');

let dir: string;
let one: EmbeddedStore;
let two: EmbeddedStore;

beforeEach(() => {
  dir = dataDir();
  one = openEmbeddedStore(dir);
  two = openEmbeddedStore(dir);
});

afterEach(() => {
  one.close();
  two.close();
});

function evictRecord(r: MessageRecord): AuditRecord {
  return {
    id: `${new Date(T0).toISOString()}#000001`,
    sourceId: r.sourceId,
    action: 'evict',
    policy: 'inbox-quota',
    why: 'test',
    identity: r.identity,
    target: r.identity,
    object: { key: r.object.key, size: r.object.size, sha256: r.object.sha256 },
    at: new Date(T0).toISOString(),
    state: 'intent',
  };
}

describe('the lease across two connections', () => {
  it('goes to exactly one of two racers, and to the other only once it has expired, with a higher fence', async () => {
    const taken = await Promise.all([
      one.index.acquireLease('race', 'one', 60_000, T0),
      two.index.acquireLease('race', 'two', 60_000, T0),
    ]);
    expect(taken.filter((l) => l !== undefined)).toHaveLength(1);
    const winner = taken.find((l) => l !== undefined)!;
    expect(winner.fence).toBe(1);
    // Still held at its last millisecond, free after it.
    expect(await one.index.acquireLease('race', 'late', 60_000, T0 + 60_000)).toBeUndefined();
    const next = await two.index.acquireLease('race', 'late', 60_000, T0 + 60_001);
    expect(next).toEqual({ sourceId: 'race', holder: 'late', fence: 2, expiresAt: T0 + 120_001 });
    expect(await one.index.leaseState('race')).toEqual(next);
  });

  it('refuses every write of a holder whose lease the other connection took over, and writes none of it', async () => {
    const stale = (await one.index.acquireLease('stale', 'paused', 1_000, T0))!;
    const fresh = (await two.index.acquireLease('stale', 'next', 60_000, T0 + 5_000))!;
    expect(fresh.fence).toBe(stale.fence + 1);
    const mine = messageRecord('stale', 1, T0);
    expect(await two.index.commitMessage(fresh, mine)).toBe('committed');

    // A group of commits under the stale lease: all refused, none written, the counters untouched.
    const refused = await Promise.allSettled(
      [2, 3, 4].map((uid) => one.index.commitMessage(stale, messageRecord('stale', uid, T0))),
    );
    for (const r of refused) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(LeaseLostError);
    }
    await expect(
      one.index.saveFolderState(stale, {
        folder: 'INBOX',
        uidValidity: '7',
        committedThroughUid: 4,
        uidNext: 5,
      }),
    ).rejects.toBeInstanceOf(LeaseLostError);
    await expect(
      one.index.recordRun(
        stale,
        {
          sourceId: 'stale',
          outcome: 'failed',
          fetched: 0,
          fetchedBytes: 0,
          skipped: 0,
          deletedUpstream: 0,
          evicted: 0,
          durationMs: 1,
          notes: [],
          error: { code: 'TIMEOUT', message: 'late' },
        },
        T0 + 6_000,
      ),
    ).rejects.toBeInstanceOf(LeaseLostError);
    await expect(one.index.evict(stale, evictRecord(mine), T0 + 6_000)).rejects.toBeInstanceOf(
      LeaseLostError,
    );
    await expect(one.index.beginActions(stale, [evictRecord(mine)])).rejects.toBeInstanceOf(LeaseLostError);
    await expect(one.index.renewLease(stale, 60_000, T0 + 6_000)).rejects.toBeInstanceOf(LeaseLostError);
    // Releasing a lease that is no longer ours leaves the successor's alone.
    await one.index.releaseLease(stale);

    expect(await two.index.leaseState('stale')).toEqual(fresh);
    expect(await two.index.inboxUsage('stale')).toEqual({ messages: 1, bytes: 100 });
    expect(await two.index.committedIdentities('stale', 'imap#')).toEqual(new Set([mine.identity]));
    expect(await two.index.getFolderState('stale', 'INBOX')).toBeUndefined();
    expect(await two.index.summary('stale')).toMatchObject({ lastRun: undefined, consecutiveFailures: 0 });
    expect(await two.index.pendingActions('stale')).toEqual([]);
    expect((await two.index.lookup('stale', [mine.identity])).get(mine.identity)?.state).toBe('stored');
  });

  it("commits the successor's messages queued in the same turn as a stale holder's, each under its own fence", async () => {
    const stale = (await one.index.acquireLease('mixed', 'paused', 1_000, T0))!;
    const fresh = (await one.index.acquireLease('mixed', 'next', 60_000, T0 + 5_000))!;
    const outcomes = await Promise.allSettled([
      one.index.commitMessage(stale, messageRecord('mixed', 1, T0)),
      one.index.commitMessage(fresh, messageRecord('mixed', 2, T0)),
      one.index.commitMessage(stale, messageRecord('mixed', 3, T0)),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'fulfilled', 'rejected']);
    expect(await two.index.committedIdentities('mixed', '')).toEqual(
      new Set([messageRecord('mixed', 2, T0).identity]),
    );
  });
});
