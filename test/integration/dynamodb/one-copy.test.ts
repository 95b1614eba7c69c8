import { createHash, randomBytes } from 'node:crypto';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { keys } from '../../../functions/adapters/dynamodb/keys';
import { DynamoMessageIndex } from '../../../functions/adapters/dynamodb/message-index';
import { identityKey, type AuditRecord, type MessageRecord } from '../../../functions/core/model';
import type { Lease } from '../../../functions/core/ports';
import { makeAwsClients } from '../../../functions/shared/aws-clients';
import { messageRecord } from '../../support/records';

/**
 * The content registry (decision 0007) against DynamoDB Local, step by step: what each step leaves behind when the
 * run stops right after it. Objects are not written here; `object.key` says which object an item relies on.
 */

const aws = makeAwsClients();
const TableName = process.env.TRIBUTARY_TEST_TABLE!;
const index = new DynamoMessageIndex(aws.documents, TableName);
const T0 = Date.parse('2026-11-26T10:00:00.000Z');

afterAll(() => aws.dynamodb.destroy());

async function lease(): Promise<Lease> {
  const sourceId = `copy-${randomBytes(5).toString('hex')}`;
  const taken = await index.acquireLease(sourceId, 'one-copy-test', 60_000, T0);
  expect(taken).toBeDefined();
  return taken!;
}

/** Bytes of `content` (a name unique to the test) as source `sourceId` would commit them under INBOX UID `uid`. */
function record(sourceId: string, uid: number, content: string): MessageRecord {
  const base = messageRecord(sourceId, uid, T0, 1000);
  const sha = createHash('sha256').update(content).digest('hex');
  return { ...base, object: { ...base.object, sha256: sha, contentSha256: sha } };
}

async function registry(sha256: string) {
  const { Item } = await aws.documents.send(
    new GetCommand({
      TableName,
      Key: { PK: keys.registryPk(sha256), SK: keys.registrySk },
      ConsistentRead: true,
    }),
  );
  return (
    Item && { refs: Number(Item.refs), objectKey: Item.objectKey, via: [...(Item.via as Set<string>)].sort() }
  );
}

async function item(sourceId: string, identity: string) {
  const { Item } = await aws.documents.send(
    new GetCommand({
      TableName,
      Key: { PK: keys.sourcePk(sourceId), SK: keys.messageSk(identity) },
      ConsistentRead: true,
    }),
  );
  return Item;
}

function evictRecord(r: MessageRecord, key: string): AuditRecord {
  return {
    id: `${new Date(T0).toISOString()}#000001#${randomBytes(3).toString('hex')}`,
    sourceId: r.sourceId,
    action: 'evict',
    policy: 'inbox-quota',
    why: 'test',
    identity: r.identity,
    target: r.identity,
    object: { key, size: r.object.size, sha256: r.object.sha256 },
    at: new Date(T0).toISOString(),
    state: 'intent',
  };
}

describe('the content registry, step by step', () => {
  it('commits a second copy of registered bytes pointing at the registered object, once, whatever the retries', async () => {
    const content = `same-${randomBytes(6).toString('hex')}`;
    const [a, b] = [await lease(), await lease()];
    const ra = record(a.sourceId, 1, content);
    const rb = record(b.sourceId, 1, content);
    expect(await index.commitMessage(a, ra)).toBe('committed');
    // B wrote its own object, then committed: 'shared' tells it to delete that object. A run killed before the
    // delete leaves only an orphan: B's item relies on A's object, which the registry keeps.
    expect(await index.commitMessage(b, rb)).toBe('shared');
    expect(((await item(b.sourceId, rb.identity))?.object as { key: string }).key).toBe(ra.object.key);
    expect(await registry(ra.object.sha256)).toEqual({
      refs: 2,
      objectKey: ra.object.key,
      via: [keys.via(a.sourceId, ra.identity), keys.via(b.sourceId, rb.identity)].sort(),
    });
    // The next run commits the same message again: nothing more is counted or referenced.
    expect(await index.commitMessage(b, rb)).toBe('exists');
    expect((await registry(ra.object.sha256))?.refs).toBe(2);
    expect(await index.inboxUsage(b.sourceId)).toEqual({ messages: 1, bytes: 1000 });
    expect(await index.objectUnreferenced({ key: ra.object.key, sha256: ra.object.sha256 })).toBe(false);
    expect(await index.objectUnreferenced({ key: rb.object.key, sha256: rb.object.sha256 })).toBe(true);
  });

  it('commits a group whose messages take different branches, twins of one group included', async () => {
    const [a, b] = [await lease(), await lease()];
    const known = `known-${randomBytes(6).toString('hex')}`;
    const twin = `twin-${randomBytes(6).toString('hex')}`;
    const alone = `alone-${randomBytes(6).toString('hex')}`;
    const ra = record(a.sourceId, 1, known);
    expect(await index.commitMessage(a, ra)).toBe('committed');
    const group = [record(b.sourceId, 1, known), record(b.sourceId, 2, twin), record(b.sourceId, 3, twin)];
    group.push(record(b.sourceId, 4, alone));
    const outcomes = await Promise.all(group.map((r) => index.commitMessage(b, r)));

    expect(outcomes).toEqual(['shared', 'committed', 'shared', 'committed']);
    expect((await registry(ra.object.sha256))?.refs).toBe(2);
    expect(await registry(group[1]!.object.sha256)).toMatchObject({
      refs: 2,
      objectKey: group[1]!.object.key,
    });
    expect(((await item(b.sourceId, group[2]!.identity))?.object as { key: string }).key).toBe(
      group[1]!.object.key,
    );
    expect(await index.inboxUsage(b.sourceId)).toEqual({ messages: 4, bytes: 4000 });
  });

  it('keeps the bytes until the last reference is evicted, and a cut eviction is finished the same way', async () => {
    const content = `evict-${randomBytes(6).toString('hex')}`;
    const [a, b, c] = [await lease(), await lease(), await lease()];
    const ra = record(a.sourceId, 1, content);
    const rb = record(b.sourceId, 1, content);
    expect(await index.commitMessage(a, ra)).toBe('committed');
    expect(await index.commitMessage(b, rb)).toBe('shared');
    const object = { key: ra.object.key, sha256: ra.object.sha256 };

    // A's own copy goes first: B still references the object, which must stay.
    expect(await index.evict(a, evictRecord(ra, ra.object.key), T0)).toBe('evicted');
    expect(await registry(ra.object.sha256)).toEqual({
      refs: 1,
      objectKey: ra.object.key,
      via: [keys.via(b.sourceId, rb.identity)],
    });
    expect(await index.objectUnreferenced(object)).toBe(false);
    // A run cut after the tombstone evicts again: 'already', and the registry is not released twice.
    expect(await index.evict(a, evictRecord(ra, ra.object.key), T0)).toBe('already');
    expect((await registry(ra.object.sha256))?.refs).toBe(1);

    // The last reference: the registry (and with it the merged inbox entry) goes, the object may be deleted.
    expect(await index.evict(b, evictRecord(rb, ra.object.key), T0)).toBe('evicted');
    expect(await registry(ra.object.sha256)).toBeUndefined();
    // Before that delete, the same bytes arrive through a third source: they register anew under C's own
    // object, so deleting the released one (as the cut run's successor does) takes nothing C relies on.
    const rc = record(c.sourceId, 1, content);
    expect(await index.commitMessage(c, rc)).toBe('committed');
    expect(await registry(rc.object.sha256)).toMatchObject({ refs: 1, objectKey: rc.object.key });
    expect(await index.objectUnreferenced(object)).toBe(true);
    expect(await index.objectUnreferenced({ key: rc.object.key, sha256: rc.object.sha256 })).toBe(false);
  });

  it('lists one merged entry per content with every place it came through, and old items as they were', async () => {
    const content = `merged-${randomBytes(6).toString('hex')}`;
    const [a, b] = [await lease(), await lease()];
    // Dated after everything else in the table, so they head the merged inbox.
    const top = (r: MessageRecord, at: string): MessageRecord => ({ ...r, sortDate: at });
    const ra = top(record(a.sourceId, 1, content), '2099-01-02T00:00:00.000Z');
    const archived = identityKey({ kind: 'imap', folder: 'Archive', uidValidity: '7', uid: 1 });
    const ra2 = { ...top(record(a.sourceId, 1, content), '2099-01-02T00:00:00.000Z'), identity: archived };
    const rb = top(record(b.sourceId, 1, content), '2099-01-02T00:00:00.000Z');
    for (const [l, r] of [
      [a, ra],
      [a, ra2],
      [b, rb],
    ] as const)
      await index.commitMessage(l, r);
    // The merged inbox is shared with every other test of the run (the contract suites date theirs far later):
    // read it page by page until past this test's date, rather than only its top.
    const mine: MessageRecord[] = [];
    let cursor: string | undefined;
    do {
      const page = await index.listInbox({ limit: 100, ...(cursor ? { cursor } : {}) });
      mine.push(...page.items.filter((m) => m.object.sha256 === ra.object.sha256));
      cursor = page.items.some((m) => m.sortDate < ra.sortDate) ? undefined : page.cursor;
    } while (cursor);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.via).toEqual(
      [
        { sourceId: a.sourceId, identity: ra.identity },
        { sourceId: a.sourceId, identity: archived },
        { sourceId: b.sourceId, identity: rb.identity },
      ].sort((x, y) => (keys.via(x.sourceId, x.identity) < keys.via(y.sourceId, y.identity) ? -1 : 1)),
    );
    // Each source's own inbox still lists its own items.
    expect((await index.listInbox({ sourceId: a.sourceId, limit: 10 })).items).toHaveLength(2);
    expect((await index.listInbox({ sourceId: b.sourceId, limit: 10 })).items).toHaveLength(1);
  });
});
