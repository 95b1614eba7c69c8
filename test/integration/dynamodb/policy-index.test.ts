import { randomBytes } from 'node:crypto';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { keys } from '../../../functions/adapters/dynamodb/keys';
import { DynamoMessageIndex } from '../../../functions/adapters/dynamodb/message-index';
import { TABLE } from '../../../functions/adapters/dynamodb/table';
import { LeaseLostError, StorageError } from '../../../functions/core/errors';
import { identityKey, type AuditRecord, type MessageRecord } from '../../../functions/core/model';
import type { StoredCopy } from '../../../functions/core/policies';
import type { Lease } from '../../../functions/core/ports';
import { makeAwsClients } from '../../../functions/shared/aws-clients';
import { messageRecord } from '../../support/records';

const aws = makeAwsClients();
const TableName = process.env.TRIBUTARY_TEST_TABLE!;
const index = new DynamoMessageIndex(aws.documents, TableName);
const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

afterAll(() => {
  aws.dynamodb.destroy();
});

function newSource(): string {
  return `policy-${randomBytes(5).toString('hex')}`;
}

async function takeLease(sourceId: string): Promise<Lease> {
  const lease = await index.acquireLease(sourceId, 'policy-test', 60_000, T0);
  expect(lease).toBeDefined();
  return lease!;
}

function message(sourceId: string, uid: number, size = 100 * uid): MessageRecord {
  return messageRecord(sourceId, uid, T0, size);
}

async function commit(lease: Lease, uid: number): Promise<MessageRecord> {
  const record = message(lease.sourceId, uid);
  expect(await index.commitMessage(lease, record)).toBe('committed');
  return record;
}

/** A new-generation UID (UIDVALIDITY 8) recorded as an alias of `target`. */
async function alias(lease: Lease, uid: number, target: MessageRecord): Promise<string> {
  const upstream = { kind: 'imap', folder: 'INBOX', uidValidity: '8', uid } as const;
  expect(await index.commitAlias(lease, upstream, target.identity, target.object.contentSha256)).toBe(
    'committed',
  );
  return identityKey(upstream);
}

function audit(
  target: MessageRecord,
  action: AuditRecord['action'],
  at: number,
  seq = 1,
  extra: Partial<AuditRecord> = {},
): AuditRecord {
  return {
    id: `${iso(at)}#${String(seq).padStart(4, '0')}`,
    sourceId: target.sourceId,
    action,
    policy: action === 'evict' ? 'inbox-quota' : 'delete-on-retrieve',
    why: action === 'evict' ? 'inbox quota: oldest copy still upstream' : 'committed to the store',
    identity: target.identity,
    target: target.identity,
    object: { key: target.object.key, size: target.object.size, sha256: target.object.sha256 },
    at: iso(at),
    state: 'intent',
    ...extra,
  };
}

function copyOf(m: MessageRecord, state: StoredCopy['state']): StoredCopy {
  return {
    identity: m.identity,
    key: m.object.key,
    size: m.object.size,
    sha256: m.object.sha256,
    fetchedAt: m.fetchedAt,
    state,
  };
}

async function all<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** Whether the merged inbox (GSI1) holds this message. */
async function inMergedInbox(m: MessageRecord): Promise<boolean> {
  const { inbox } = TABLE.indexes;
  const out = await aws.documents.send(
    new QueryCommand({
      TableName,
      IndexName: inbox.name,
      KeyConditionExpression: `${inbox.partitionKey} = :p AND ${inbox.sortKey} = :s`,
      ExpressionAttributeValues: {
        ':p': keys.inboxPk,
        ':s': keys.inboxSk(m.sortDate, m.sourceId, m.identity),
      },
    }),
  );
  return (out.Items ?? []).length === 1;
}

describe('DynamoMessageIndex lookup and inboxUsage', () => {
  it('maps messages and aliases to the copy they hold, tombstones to evicted, unknown identities to nothing', async () => {
    const lease = await takeLease(newSource());
    const m1 = await commit(lease, 1);
    const m2 = await commit(lease, 2);
    const a1 = await alias(lease, 11, m1);
    const a2 = await alias(lease, 12, m2);
    expect(await index.evict(lease, audit(m2, 'evict', T0), T0)).toBe('evicted');
    const unknown = identityKey({ kind: 'imap', folder: 'INBOX', uidValidity: '7', uid: 99 });

    const found = await index.lookup(lease.sourceId, [m1.identity, a1, m2.identity, a2, unknown]);

    expect([...found.keys()].sort()).toEqual([m1.identity, m2.identity, a1, a2].sort());
    expect(found.get(m1.identity)).toStrictEqual(copyOf(m1, 'stored'));
    expect(found.get(a1)).toStrictEqual(copyOf(m1, 'stored'));
    expect(found.get(m2.identity)).toStrictEqual(copyOf(m2, 'evicted'));
    expect(found.get(a2)).toStrictEqual(copyOf(m2, 'evicted'));
  });

  it('answers for more than 100 identities, duplicates and unknown ones included', async () => {
    const lease = await takeLease(newSource());
    const uids = Array.from({ length: 130 }, (_, i) => i + 1);
    const records = uids.map((uid) => message(lease.sourceId, uid));
    for (let i = 0; i < records.length; i += 10) {
      await Promise.all(records.slice(i, i + 10).map((r) => index.commitMessage(lease, r)));
    }
    const unknown = [201, 202, 203].map((uid) => message(lease.sourceId, uid).identity);
    const asked = [
      ...records.map((r) => r.identity),
      ...unknown,
      records[0]!.identity,
      records[129]!.identity,
    ];

    const found = await index.lookup(lease.sourceId, asked);

    expect(found.size).toBe(130);
    for (const r of records) expect(found.get(r.identity)).toStrictEqual(copyOf(r, 'stored'));
    for (const identity of unknown) expect(found.has(identity)).toBe(false);
  });

  it('reads the source counters, zero for a source without messages', async () => {
    const lease = await takeLease(newSource());
    expect(await index.inboxUsage(lease.sourceId)).toEqual({ messages: 0, bytes: 0 });

    await commit(lease, 1);
    await commit(lease, 3);
    expect(await index.commitMessage(lease, message(lease.sourceId, 3))).toBe('exists');

    expect(await index.inboxUsage(lease.sourceId)).toEqual({ messages: 2, bytes: 400 });
  });
});

describe('DynamoMessageIndex audit records', () => {
  it('lists begun intents as pending, then completes them and marks only the done upstream delete', async () => {
    const lease = await takeLease(newSource());
    const m1 = await commit(lease, 1);
    const m2 = await commit(lease, 2);
    const m3 = await commit(lease, 3);
    const r1 = audit(m1, 'delete-upstream', T0, 1, { usageBefore: 900 });
    const r2 = audit(m2, 'delete-upstream', T0, 2);
    const r3 = audit(m3, 'evict', T0, 3);

    await index.beginActions(lease, [r1, r2, r3]);

    expect(await index.pendingActions(lease.sourceId)).toStrictEqual([r1, r2, r3]);
    expect(await all(index.auditTrail(lease.sourceId))).toStrictEqual([r1, r2, r3]);

    const t1 = T0 + 5000;
    await index.completeActions(
      lease,
      [
        { record: r1, state: 'done', usageAfter: 800 },
        { record: r2, state: 'not-applied', note: 'already gone upstream' },
        { record: r3, state: 'done', usageAfter: 500 },
      ],
      t1,
    );

    expect(await index.pendingActions(lease.sourceId)).toStrictEqual([]);
    expect(await all(index.auditTrail(lease.sourceId))).toStrictEqual([
      { ...r1, state: 'done', completedAt: iso(t1), usageAfter: 800 },
      { ...r2, state: 'not-applied', completedAt: iso(t1), note: 'already gone upstream' },
      { ...r3, state: 'done', completedAt: iso(t1), usageAfter: 500 },
    ]);
    const deleted = new Map(
      (await all(index.sourceMessages(lease.sourceId))).map((m) => [m.identity, m.deletedUpstreamAt]),
    );
    expect(deleted).toEqual(
      new Map([
        [m1.identity, iso(t1)],
        [m2.identity, undefined],
        [m3.identity, undefined],
      ]),
    );
    expect((await index.lookup(lease.sourceId, [m1.identity])).get(m1.identity)?.deletedUpstreamAt).toBe(
      iso(t1),
    );

    // A retried completion keeps the first deletion time.
    await index.completeActions(lease, [{ record: r1, state: 'done', usageAfter: 800 }], t1 + 1000);
    const again = (await all(index.sourceMessages(lease.sourceId))).find((m) => m.identity === m1.identity);
    expect(again?.deletedUpstreamAt).toBe(iso(t1));
  });

  it('refuses to begin an upstream delete whose item is missing, evicted or records another sha256, writing nothing', async () => {
    const lease = await takeLease(newSource());
    const m1 = await commit(lease, 1);
    const m2 = await commit(lease, 2);
    const ok = audit(m1, 'delete-upstream', T0, 1);
    const missing = audit(message(lease.sourceId, 9), 'delete-upstream', T0, 2);
    const otherSha = {
      ...audit(m2, 'delete-upstream', T0, 3),
      object: { ...ok.object, sha256: 'f'.repeat(64) },
    };
    expect(await index.evict(lease, audit(m2, 'evict', T0, 4), T0)).toBe('evicted');
    const evicted = audit(m2, 'delete-upstream', T0, 5);
    for (const bad of [missing, otherSha, evicted]) {
      await expect(index.beginActions(lease, [ok, bad])).rejects.toThrow(StorageError);
    }
    expect(await index.pendingActions(lease.sourceId)).toStrictEqual([]);
    expect(await all(index.auditTrail(lease.sourceId))).toStrictEqual([]);
    await index.beginActions(lease, [ok]);
    expect(await index.pendingActions(lease.sourceId)).toStrictEqual([ok]);
  });

  it('refuses to complete a record that was never begun, and writes none of its batch', async () => {
    const lease = await takeLease(newSource());
    const m1 = await commit(lease, 1);
    const m2 = await commit(lease, 2);
    const begun = audit(m1, 'delete-upstream', T0, 1);
    const never = audit(m2, 'delete-upstream', T0, 2);
    await index.beginActions(lease, [begun]);

    await expect(
      index.completeActions(
        lease,
        [
          { record: begun, state: 'done' },
          { record: never, state: 'done' },
        ],
        T0 + 1000,
      ),
    ).rejects.toBeInstanceOf(StorageError);

    expect(await all(index.auditTrail(lease.sourceId))).toStrictEqual([begun]);
    expect(await index.pendingActions(lease.sourceId)).toStrictEqual([begun]);
    expect((await all(index.sourceMessages(lease.sourceId))).map((m) => m.deletedUpstreamAt)).toEqual([
      undefined,
      undefined,
    ]);
  });

  it('begins and completes more records than one transaction holds', async () => {
    const lease = await takeLease(newSource());
    const m1 = await commit(lease, 1);
    const records = Array.from({ length: 120 }, (_, i) => audit(m1, 'evict', T0, i + 1));

    await index.beginActions(lease, records);
    expect((await index.pendingActions(lease.sourceId)).map((r) => r.id)).toEqual(records.map((r) => r.id));

    await index.completeActions(
      lease,
      records.map((record) => ({ record, state: 'not-applied' as const })),
      T0 + 1000,
    );

    expect(await index.pendingActions(lease.sourceId)).toHaveLength(0);
    const trail = await all(index.auditTrail(lease.sourceId));
    expect(trail).toHaveLength(120);
    expect(new Set(trail.map((r) => r.state))).toEqual(new Set(['not-applied']));
  });

  it('gives the trail oldest first, from `since` on', async () => {
    const lease = await takeLease(newSource());
    const m1 = await commit(lease, 1);
    const early = audit(m1, 'delete-upstream', T0, 1);
    const middle = audit(m1, 'delete-upstream', T0 + HOUR, 1);
    const late = audit(m1, 'delete-upstream', T0 + 2 * HOUR, 1);
    await index.beginActions(lease, [late, early]);
    await index.beginActions(lease, [middle]);

    expect((await all(index.auditTrail(lease.sourceId))).map((r) => r.id)).toEqual([
      early.id,
      middle.id,
      late.id,
    ]);
    expect((await all(index.auditTrail(lease.sourceId, iso(T0 + HOUR)))).map((r) => r.id)).toEqual([
      middle.id,
      late.id,
    ]);
    expect(await all(index.auditTrail(lease.sourceId, iso(T0 + 3 * HOUR)))).toEqual([]);
  });
});

describe('DynamoMessageIndex evict', () => {
  it('turns the message into a tombstone: out of both inboxes, counters down, identity still committed', async () => {
    const lease = await takeLease(newSource());
    const m1 = await commit(lease, 1);
    const m2 = await commit(lease, 2);
    const a1 = await alias(lease, 11, m1);
    expect(await inMergedInbox(m1)).toBe(true);

    expect(await index.evict(lease, audit(m1, 'evict', T0), T0 + 1000)).toBe('evicted');

    expect(await inMergedInbox(m1)).toBe(false);
    expect(await inMergedInbox(m2)).toBe(true);
    const listed = await index.listInbox({ sourceId: lease.sourceId, limit: 10 });
    expect(listed.items.map((m) => m.identity)).toEqual([m2.identity]);
    expect((await all(index.sourceMessages(lease.sourceId))).map((m) => m.identity)).toEqual([m2.identity]);
    expect(await index.inboxUsage(lease.sourceId)).toEqual({ messages: 1, bytes: 200 });
    expect(await index.committedIdentities(lease.sourceId, 'imap#')).toEqual(
      new Set([m1.identity, m2.identity, a1]),
    );
    const found = await index.lookup(lease.sourceId, [m1.identity, a1]);
    expect(found.get(m1.identity)).toStrictEqual(copyOf(m1, 'evicted'));
    expect(found.get(a1)).toStrictEqual(copyOf(m1, 'evicted'));
    // Neither the copy nor its alias is found by content any more: a rematch cannot point at a copy that is gone.
    expect(await index.findByContent(lease.sourceId, m1.object.contentSha256)).toEqual([]);
    expect(await index.findByContent(lease.sourceId, m2.object.contentSha256)).toEqual([
      { identity: m2.identity, target: m2.identity },
    ]);

    expect(await index.evict(lease, audit(m1, 'evict', T0, 2), T0 + 2000)).toBe('already');
    expect(await index.inboxUsage(lease.sourceId)).toEqual({ messages: 1, bytes: 200 });
  });

  it('refuses to evict a message the source does not have', async () => {
    const lease = await takeLease(newSource());
    await commit(lease, 1);
    await expect(
      index.evict(lease, audit(message(lease.sourceId, 5), 'evict', T0), T0),
    ).rejects.toBeInstanceOf(StorageError);
    expect(await index.inboxUsage(lease.sourceId)).toEqual({ messages: 1, bytes: 100 });
  });
});

describe('DynamoMessageIndex with a stale lease', () => {
  it('writes nothing from beginActions, completeActions or evict and throws LeaseLostError', async () => {
    const sourceId = newSource();
    const stale = await index.acquireLease(sourceId, 'paused-run', 1, T0);
    const fresh = await index.acquireLease(sourceId, 'next-run', 60_000, T0 + 10);
    expect(stale).toBeDefined();
    expect(fresh?.fence).toBe(stale!.fence + 1);
    const m1 = await commit(fresh!, 1);
    const r1 = audit(m1, 'delete-upstream', T0, 1);
    const r2 = audit(m1, 'evict', T0, 2);

    await expect(index.beginActions(stale!, [r1])).rejects.toBeInstanceOf(LeaseLostError);
    expect(await index.pendingActions(sourceId)).toEqual([]);
    expect(await all(index.auditTrail(sourceId))).toEqual([]);

    await index.beginActions(fresh!, [r1]);
    await expect(
      index.completeActions(stale!, [{ record: r1, state: 'done', usageAfter: 0 }], T0 + 1000),
    ).rejects.toBeInstanceOf(LeaseLostError);
    expect(await index.pendingActions(sourceId)).toStrictEqual([r1]);
    expect(await all(index.auditTrail(sourceId))).toStrictEqual([r1]);
    expect((await all(index.sourceMessages(sourceId)))[0]?.deletedUpstreamAt).toBeUndefined();

    await expect(index.evict(stale!, r2, T0 + 2000)).rejects.toBeInstanceOf(LeaseLostError);
    expect(await index.inboxUsage(sourceId)).toEqual({ messages: 1, bytes: 100 });
    expect((await index.lookup(sourceId, [m1.identity])).get(m1.identity)?.state).toBe('stored');
    expect(await inMergedInbox(m1)).toBe(true);
    expect(await index.findByContent(sourceId, m1.object.contentSha256)).toHaveLength(1);
  });
});
