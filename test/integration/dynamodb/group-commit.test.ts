import { randomBytes } from 'node:crypto';
import { DynamoDBClient, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { keys } from '../../../functions/adapters/dynamodb/keys';
import { DynamoMessageIndex } from '../../../functions/adapters/dynamodb/message-index';
import { LeaseLostError, StorageError } from '../../../functions/core/errors';
import { identityKey, type MessageRecord } from '../../../functions/core/model';
import { makeAwsClients } from '../../../functions/shared/aws-clients';
import { messageRecord } from '../../support/records';

/**
 * The DynamoDB index commits the messages of one source that arrive while another commit is in flight in one
 * transaction, and never runs two transactions of one source at once (DynamoDB cancels transactions that touch
 * an item another one is writing, and every commit touches the lease and the counters). Against DynamoDB Local;
 * the conflict itself is injected, since a single local server does not produce it on demand.
 */

const aws = makeAwsClients();
const TableName = process.env.TRIBUTARY_TEST_TABLE!;
const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const clients: DynamoDBClient[] = [];

/** A client on the same server that counts transactions and can cancel the next ones with a conflict. */
function instrumentedIndex() {
  const client = new DynamoDBClient({});
  clients.push(client);
  const documents = DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true },
  });
  const state = {
    transactions: [] as number[],
    inFlight: 0,
    maxInFlight: 0,
    conflictsToInject: 0,
    committed: 0,
    /** Once this many transactions went through, every BatchGet fails. */
    failBatchGetsAfter: Infinity,
  };
  documents.middlewareStack.add(
    (next) => async (args) => {
      const input = args.input as { TransactItems?: unknown[]; RequestItems?: unknown };
      if (input.RequestItems && !input.TransactItems && state.committed >= state.failBatchGetsAfter)
        throw new Error('injected: the registry read failed');
      if (!input.TransactItems) return next(args);
      state.transactions.push(input.TransactItems.length);
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      try {
        if (state.conflictsToInject > 0) {
          state.conflictsToInject--;
          throw new TransactionCanceledException({
            message: 'Transaction cancelled, please refer cancellation reasons for specific reasons',
            $metadata: { httpStatusCode: 400 },
            CancellationReasons: input.TransactItems.map((_, i) =>
              i === input.TransactItems!.length - 1
                ? { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' }
                : { Code: 'None' },
            ),
          });
        }
        // Give concurrent callers time to queue behind this transaction, as a remote table's latency would.
        await new Promise((resolve) => setTimeout(resolve, 5));
        const out = await next(args);
        state.committed++;
        return out;
      } finally {
        state.inFlight--;
      }
    },
    { step: 'initialize', name: 'countTransactions' },
  );
  return { index: new DynamoMessageIndex(documents, TableName), state };
}

afterAll(() => {
  aws.dynamodb.destroy();
  for (const client of clients) client.destroy();
});

function newSource(): string {
  return `group-${randomBytes(5).toString('hex')}`;
}

function message(sourceId: string, uid: number): MessageRecord {
  return messageRecord(sourceId, uid, T0, 1000 + uid);
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function stored(sourceId: string): Promise<{ messages: number; bytes: number; items: number }> {
  const out = await aws.documents.send(
    new QueryCommand({
      TableName,
      KeyConditionExpression: 'PK = :pk',
      ExpressionAttributeValues: { ':pk': keys.sourcePk(sourceId) },
      ConsistentRead: true,
    }),
  );
  const items = out.Items ?? [];
  const stats = items.find((i) => i.SK === keys.statsSk);
  return {
    messages: Number(stats?.messages ?? 0),
    bytes: Number(stats?.bytes ?? 0),
    items: items.filter((i) => i.type === 'message').length,
  };
}

describe('DynamoMessageIndex group commit', () => {
  it('commits concurrent messages in fewer transactions, one at a time, with exact counters', async () => {
    const { index, state } = instrumentedIndex();
    const sourceId = newSource();
    const lease = (await index.acquireLease(sourceId, 'group-test', 60_000, T0))!;
    const uids = range(1, 60);

    const outcomes = await Promise.all(uids.map((uid) => index.commitMessage(lease, message(sourceId, uid))));

    expect(outcomes).toEqual(uids.map(() => 'committed'));
    expect(await stored(sourceId)).toEqual({
      messages: 60,
      bytes: uids.reduce((sum, uid) => sum + 1000 + uid, 0),
      items: 60,
    });
    expect(state.maxInFlight).toBe(1);
    // All 60 are asked for before the first transaction starts: groups of at most 25.
    expect(state.transactions.length).toBeLessThanOrEqual(5);
    expect(Math.max(...state.transactions)).toBeLessThanOrEqual(100);
    console.log(`60 messages committed in ${state.transactions.length} transactions`);
  });

  it('answers "exists" for the messages of a group already committed and commits the others once', async () => {
    const { index } = instrumentedIndex();
    const sourceId = newSource();
    const lease = (await index.acquireLease(sourceId, 'group-test', 60_000, T0))!;
    await Promise.all(range(1, 5).map((uid) => index.commitMessage(lease, message(sourceId, uid))));

    const outcomes = await Promise.all(
      range(1, 10).map((uid) => index.commitMessage(lease, message(sourceId, uid))),
    );

    expect(outcomes).toEqual([...range(1, 5).map(() => 'exists'), ...range(6, 10).map(() => 'committed')]);
    expect(await stored(sourceId)).toMatchObject({ messages: 10, items: 10 });
  });

  it('rejects every message of a lost lease and writes none of them', async () => {
    const { index } = instrumentedIndex();
    const sourceId = newSource();
    const stale = (await index.acquireLease(sourceId, 'first', 1_000, T0))!;
    await index.acquireLease(sourceId, 'second', 60_000, T0 + 5_000);

    const outcomes = await Promise.allSettled(
      range(1, 8).map((uid) => index.commitMessage(stale, message(sourceId, uid))),
    );

    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(LeaseLostError);
    }
    expect(await stored(sourceId)).toEqual({ messages: 0, bytes: 0, items: 0 });
  });

  it("commits the successor's messages queued behind a stale lease's, each under its own fence", async () => {
    const { index } = instrumentedIndex();
    const sourceId = newSource();
    const stale = (await index.acquireLease(sourceId, 'first', 1_000, T0))!;
    const current = (await index.acquireLease(sourceId, 'second', 60_000, T0 + 5_000))!;

    // The stale holder's messages come first in the group, then the successor's.
    const outcomes = await Promise.allSettled([
      ...range(1, 4).map((uid) => index.commitMessage(stale, message(sourceId, uid))),
      ...range(5, 8).map((uid) => index.commitMessage(current, message(sourceId, uid))),
    ]);

    expect(outcomes.slice(0, 4).map((o) => o.status)).toEqual(Array(4).fill('rejected'));
    for (const o of outcomes.slice(0, 4))
      expect((o as PromiseRejectedResult).reason).toBeInstanceOf(LeaseLostError);
    expect(outcomes.slice(4).map((o) => (o.status === 'fulfilled' ? o.value : String(o.reason)))).toEqual(
      Array(4).fill('committed'),
    );
    expect(await stored(sourceId)).toEqual({
      messages: 4,
      bytes: range(5, 8).reduce((n, uid) => n + 1000 + uid, 0),
      items: 4,
    });
  });

  it("never lets a stale run overwrite its successor's run status", async () => {
    const { index } = instrumentedIndex();
    const sourceId = newSource();
    const stale = (await index.acquireLease(sourceId, 'first', 1_000, T0))!;
    const current = (await index.acquireLease(sourceId, 'second', 60_000, T0 + 5_000))!;
    const report = (outcome: 'ok' | 'failed') => ({
      sourceId,
      outcome,
      fetched: outcome === 'ok' ? 3 : 0,
      fetchedBytes: 0,
      skipped: 0,
      deletedUpstream: 0,
      evicted: 0,
      durationMs: 1,
      notes: [],
      ...(outcome === 'failed' ? { error: { code: 'TIMEOUT', message: 'stale' } } : {}),
    });

    await index.recordRun(current, report('ok'), T0 + 6_000);
    await expect(index.recordRun(stale, report('failed'), T0 + 7_000)).rejects.toBeInstanceOf(LeaseLostError);

    const summary = await index.summary(sourceId);
    expect(summary.lastRun?.outcome).toBe('ok');
    expect(summary.consecutiveFailures).toBe(0);
  });

  it("fails only the members not committed yet when a later round's registry read fails", async () => {
    const { index, state } = instrumentedIndex();
    const sourceId = newSource();
    const lease = (await index.acquireLease(sourceId, 'group-test', 60_000, T0))!;
    const first = message(sourceId, 1);
    // Twins: the same bytes in two folders, each with its own object as a sync writes it.
    const twin = message(sourceId, 2);
    const other = message(sourceId, 3);
    const upstream = { ...other.upstream, folder: 'Archive' };
    const copy = {
      ...other,
      upstream,
      identity: identityKey(upstream),
      object: { ...twin.object, key: other.object.key },
    };
    // The three form one group; its first round commits `first` and `twin` (one per content), then the registry
    // read of the second round, for `copy`, fails.
    state.committed = 0;
    state.failBatchGetsAfter = 1;
    const outcomes = await Promise.allSettled([
      index.commitMessage(lease, first),
      index.commitMessage(lease, twin),
      index.commitMessage(lease, copy),
    ]);
    state.failBatchGetsAfter = Infinity;

    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : o.status))).toEqual([
      'committed',
      'committed',
      'rejected',
    ]);
    expect((outcomes[2] as PromiseRejectedResult).reason).toBeInstanceOf(StorageError);
    expect(await stored(sourceId)).toMatchObject({ messages: 2, items: 2 });
  });

  it('tries a transaction cancelled by a conflict again, and fails with a storage error if it persists', async () => {
    const { index, state } = instrumentedIndex();
    const sourceId = newSource();
    const lease = (await index.acquireLease(sourceId, 'group-test', 60_000, T0))!;

    state.conflictsToInject = 2;
    expect(await index.commitMessage(lease, message(sourceId, 1))).toBe('committed');
    state.conflictsToInject = 2;
    await index.saveFolderState(lease, {
      folder: 'INBOX',
      uidValidity: '3',
      committedThroughUid: 1,
      uidNext: 2,
    });
    expect(await index.getFolderState(sourceId, 'INBOX')).toMatchObject({ committedThroughUid: 1 });

    state.conflictsToInject = 100;
    await expect(index.commitMessage(lease, message(sourceId, 2))).rejects.toBeInstanceOf(StorageError);
    await expect(
      index.saveFolderState(lease, { folder: 'INBOX', uidValidity: '3', committedThroughUid: 2, uidNext: 3 }),
    ).rejects.toBeInstanceOf(StorageError);
    state.conflictsToInject = 0;
    expect(await stored(sourceId)).toMatchObject({ messages: 1, items: 1 });
    expect(await index.getFolderState(sourceId, 'INBOX')).toMatchObject({ committedThroughUid: 1 });
  });
});
