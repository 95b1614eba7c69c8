import { setTimeout as sleep } from 'node:timers/promises';
import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { LeaseLostError, StorageError, TributaryError } from '../../core/errors';
import type {
  Address,
  AuditRecord,
  FolderState,
  MessageFailure,
  MessageMetadata,
  MessageRecord,
  SourceRunReport,
  StoredObject,
  UpstreamId,
} from '../../core/model';
import { identityKey } from '../../core/model';
import type { InboxUsage, StoredCopy } from '../../core/policies';
import type { CommitOutcome, Lease, MessageIndex, SourceSummary } from '../../core/ports';

export type { SourceSummary } from '../../core/ports';
import { keys } from './keys';
import { TABLE } from './table';
import { GroupCommitter, KeyedSerialQueue } from './write-queue';

type Item = Record<string, unknown>;
type TransactItems = NonNullable<TransactWriteCommandInput['TransactItems']>;

/** DynamoDB's limits: 100 keys per BatchGetItem, 100 items per TransactWriteItems (the lease check is one). */
const BATCH_GET_MAX = 100;
const TRANSACT_MAX = 100;
/** Concurrent BatchGet calls of one lookup, and how often unprocessed keys are asked for again. */
const BATCH_GET_PARALLEL = 4;
const BATCH_GET_RETRIES = 8;
/**
 * Messages of one source committed in one transaction: three items each, plus the counters and the lease check, well
 * under 100 items; with metadata capped at 64 KB and written at most twice a message (its item, a new registry
 * entry), under the 4 MB a transaction may carry.
 */
const COMMIT_GROUP_MAX = 25;
/** Transaction items of one message: its item, its content-hash entry, its content registry reference. */
const MESSAGE_ITEMS = 3;
/** A registry that changed between its read and the commit (another source at work on the same bytes) is read again this often. */
const REGISTRY_RETRIES = 10;
/** A transaction cancelled by a conflict with another one on the same item is tried again this often. */
const CONFLICT_RETRIES = 6;

interface PendingCommit {
  lease: Lease;
  record: MessageRecord;
}

/** The content registry was not as read when a transaction changing it ran: read it again and retry. */
class RegistryChanged extends Error {}

/** A write cancelled only because another transaction held one of its items (and nothing else failed). */
function isConflict(err: unknown): boolean {
  if (err instanceof TransactionCanceledException) {
    const reasons = err.CancellationReasons ?? [];
    return (
      reasons.some((r) => r.Code === 'TransactionConflict') &&
      reasons.every((r) => !r.Code || r.Code === 'None' || r.Code === 'TransactionConflict')
    );
  }
  return (err as { name?: string } | undefined)?.name === 'TransactionConflictException';
}

function conflictDelayMs(attempt: number): number {
  return Math.min(1000, 20 * 2 ** attempt) * (0.5 + Math.random() / 2);
}

/**
 * MessageIndex on DynamoDB. Every read that decides a write (dedupe, lease, checkpoint) is a strongly
 * consistent read of the base table; GSIs only serve the reader. Every write that changes state carries a
 * ConditionCheck on the lease's fencing number.
 */
export class DynamoMessageIndex implements MessageIndex {
  /** Every fenced write of a source, one at a time (they all touch its lease item). */
  private readonly queue = new KeyedSerialQueue();
  private readonly commits = new GroupCommitter<PendingCommit, CommitOutcome>(
    this.queue,
    COMMIT_GROUP_MAX,
    (entries) => this.commitGroup(entries),
  );

  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async acquireLease(
    sourceId: string,
    holder: string,
    ttlMs: number,
    now: number,
  ): Promise<Lease | undefined> {
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { PK: keys.sourcePk(sourceId), SK: keys.leaseSk },
          UpdateExpression: 'SET holder = :h, leaseUntil = :until ADD fence :one',
          ConditionExpression: 'attribute_not_exists(PK) OR leaseUntil < :now',
          ExpressionAttributeValues: { ':h': holder, ':until': now + ttlMs, ':one': 1, ':now': now },
          ReturnValues: 'ALL_NEW',
        }),
      );
      const a = out.Attributes ?? {};
      return { sourceId, holder, fence: Number(a.fence), expiresAt: Number(a.leaseUntil) };
    } catch (err) {
      // A conflict means another holder's transaction is checking the lease right now: it is held.
      if (err instanceof ConditionalCheckFailedException || isConflict(err)) return undefined;
      throw new StorageError(`could not take the lease of source ${sourceId}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  renewLease(lease: Lease, ttlMs: number, now: number): Promise<Lease> {
    return this.queue.run(lease.sourceId, () => this.renew(lease, ttlMs, now));
  }

  private async renew(lease: Lease, ttlMs: number, now: number): Promise<Lease> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { PK: keys.sourcePk(lease.sourceId), SK: keys.leaseSk },
          UpdateExpression: 'SET leaseUntil = :until',
          ConditionExpression: 'holder = :h AND fence = :f',
          ExpressionAttributeValues: { ':h': lease.holder, ':f': lease.fence, ':until': now + ttlMs },
        }),
      );
      return { ...lease, expiresAt: now + ttlMs };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw new LeaseLostError(lease.sourceId);
      throw err;
    }
  }

  releaseLease(lease: Lease): Promise<void> {
    return this.queue.run(lease.sourceId, () => this.release(lease));
  }

  private async release(lease: Lease): Promise<void> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { PK: keys.sourcePk(lease.sourceId), SK: keys.leaseSk },
          UpdateExpression: 'SET leaseUntil = :zero',
          ConditionExpression: 'holder = :h AND fence = :f',
          ExpressionAttributeValues: { ':h': lease.holder, ':f': lease.fence, ':zero': 0 },
        }),
      );
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    }
  }

  private leaseCheck(lease: Lease) {
    return {
      ConditionCheck: {
        TableName: this.tableName,
        Key: { PK: keys.sourcePk(lease.sourceId), SK: keys.leaseSk },
        ConditionExpression: 'holder = :h AND fence = :f',
        ExpressionAttributeValues: { ':h': lease.holder, ':f': lease.fence },
      },
    };
  }

  async getFolderState(sourceId: string, folder: string): Promise<FolderState | undefined> {
    const { Item } = await readOrFail('get', () =>
      this.db.send(
        new GetCommand({
          TableName: this.tableName,
          Key: { PK: keys.sourcePk(sourceId), SK: keys.folderStateSk(folder) },
          ConsistentRead: true,
        }),
      ),
    );
    if (!Item) return undefined;
    return {
      folder,
      uidValidity: String(Item.uidValidity),
      committedThroughUid: Number(Item.committedThroughUid),
      uidNext: Number(Item.uidNext),
      highestModseq: Item.highestModseq as string | undefined,
      ...(Item.generation ? { generation: Number(Item.generation) } : {}),
    };
  }

  async saveFolderState(lease: Lease, state: FolderState): Promise<void> {
    await this.transact(lease, [
      {
        Put: {
          TableName: this.tableName,
          Item: {
            PK: keys.sourcePk(lease.sourceId),
            SK: keys.folderStateSk(state.folder),
            type: 'folder-state',
            ...state,
          },
        },
      },
      this.leaseCheck(lease),
    ]);
  }

  async committedIdentities(sourceId: string, prefix: string, from?: string): Promise<Set<string>> {
    const found = new Set<string>();
    const start = keys.messageSk(from && from > prefix ? from : prefix);
    for await (const item of this.query({
      KeyConditionExpression: 'PK = :pk AND SK BETWEEN :a AND :b',
      ExpressionAttributeValues: {
        ':pk': keys.sourcePk(sourceId),
        ':a': start,
        ':b': `${keys.messageSk(prefix)}\uffff`,
      },
      ProjectionExpression: 'SK',
    })) {
      found.add(String(item.SK).slice(keys.messagePrefix.length));
    }
    return found;
  }

  async findByContent(
    sourceId: string,
    contentSha256: string,
  ): Promise<Array<{ identity: string; target: string }>> {
    const prefix = keys.contentPrefix(contentSha256);
    const out: Array<{ identity: string; target: string }> = [];
    for await (const item of this.query({
      KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
      ExpressionAttributeValues: { ':pk': keys.sourcePk(sourceId), ':p': prefix },
    })) {
      out.push({ identity: String(item.SK).slice(prefix.length), target: String(item.target) });
    }
    return out;
  }

  /**
   * Messages of one source that are committed while another commit of that source is in flight wait for it and
   * then commit together, in one transaction (see commitGroup); the caller sees its own message's outcome.
   */
  commitMessage(lease: Lease, record: MessageRecord): Promise<CommitOutcome> {
    return this.commits.add(lease.sourceId, { lease, record });
  }

  /**
   * One transaction for up to COMMIT_GROUP_MAX messages of one lease: each message's item (conditional on its
   * identity being new), content-hash entry and content registry reference, the counters raised by their sum, the
   * lease check. A message found already committed drops out and the rest are tried again, so the counters count
   * each message once.
   */
  private async commitGroup(entries: PendingCommit[]): Promise<Array<CommitOutcome | Error>> {
    const outcomes = new Array<CommitOutcome | Error>(entries.length);
    // Entries of one source under different leases (a stale holder and its successor in the same process) are
    // never mixed: each lease's entries go in transactions of their own, each checking its own fence.
    const byLease = new Map<string, number[]>();
    entries.forEach((e, i) => {
      const at = `${e.lease.fence}\u0000${e.lease.holder}`;
      byLease.set(at, [...(byLease.get(at) ?? []), i]);
    });
    for (const members of byLease.values()) {
      await this.commitLeaseGroup(entries, members, outcomes);
    }
    return outcomes;
  }

  /**
   * One lease's entries of a group (`live`, indexes into `entries`), committed together; fills `outcomes`. Each
   * round commits at most one message per content (DynamoDB refuses two operations on one item in a transaction, and
   * the second twin must see the first's registration); a registry found changed at commit time (another source
   * registered or released the same bytes meanwhile) is read again and its message tried in the other branch.
   */
  private async commitLeaseGroup(
    entries: PendingCommit[],
    live: number[],
    outcomes: Array<CommitOutcome | Error>,
  ): Promise<void> {
    const lease = entries[live[0]!]!.lease;
    for (let conflicts = 0, refusals = 0; live.length > 0;) {
      const round: number[] = [];
      const contents = new Set<string>();
      for (const i of live) {
        const sha256 = entries[i]!.record.object.sha256;
        if (contents.has(sha256)) continue;
        contents.add(sha256);
        round.push(i);
      }
      const registries = await this.registries([...contents]);
      const plans = round.map((i) => {
        const record = entries[i]!.record;
        return this.messageItems(record, registries.get(record.object.sha256));
      });
      const records = round.map((i) => entries[i]!.record);
      const items: TransactItems = [
        ...plans.flatMap((p) => p.items),
        {
          Update: {
            TableName: this.tableName,
            Key: { PK: keys.sourcePk(lease.sourceId), SK: keys.statsSk },
            UpdateExpression: 'ADD messages :n, bytes :size',
            ExpressionAttributeValues: {
              ':n': records.length,
              ':size': records.reduce((sum, r) => sum + r.object.size, 0),
            },
          },
        },
        this.leaseCheck(lease),
      ];
      try {
        await this.db.send(new TransactWriteCommand({ TransactItems: items }));
        round.forEach((i, k) => (outcomes[i] = plans[k]!.outcome));
        live = live.filter((i) => !round.includes(i));
        continue;
      } catch (err) {
        const reasons = err instanceof TransactionCanceledException ? (err.CancellationReasons ?? []) : [];
        const failed = (k: number) => reasons[k]?.Code === 'ConditionalCheckFailed';
        if (failed(items.length - 1)) {
          for (const i of live) outcomes[i] = new LeaseLostError(lease.sourceId);
          return;
        }
        const exists = round.filter((_, k) => failed(MESSAGE_ITEMS * k));
        if (exists.length > 0) {
          for (const i of exists) outcomes[i] = 'exists';
          live = live.filter((i) => !exists.includes(i));
          continue;
        }
        if (round.some((_, k) => failed(MESSAGE_ITEMS * k + 2)) && refusals++ < REGISTRY_RETRIES) continue;
        if (isConflict(err) && conflicts < CONFLICT_RETRIES) {
          await sleep(conflictDelayMs(conflicts++));
          continue;
        }
        const error = new StorageError(
          `DynamoDB could not commit ${live.length} message(s) of source ${lease.sourceId}: ${(err as Error).message}`,
          { cause: err },
        );
        for (const i of live) outcomes[i] = error;
        return;
      }
    }
  }

  /** The content registry items of these sha256s, strongly consistent, by sha256. */
  private async registries(sha256s: string[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>();
    let pending: Item[] = sha256s.map((sha256) => ({ PK: keys.registryPk(sha256), SK: keys.registrySk }));
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > BATCH_GET_RETRIES) {
        throw new StorageError(
          `DynamoDB kept ${pending.length} content registry keys unprocessed: the table is throttled`,
        );
      }
      if (attempt > 0) await sleep(Math.min(1000, 25 * 2 ** attempt));
      const out = await this.db.send(
        new BatchGetCommand({
          RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } },
        }),
      );
      for (const item of out.Responses?.[this.tableName] ?? []) found.set(String(item.sha256), item);
      pending = out.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
    }
    return found;
  }

  private async registry(sha256: string): Promise<Item | undefined> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { PK: keys.registryPk(sha256), SK: keys.registrySk },
        ConsistentRead: true,
      }),
    );
    return Item;
  }

  /**
   * A message's item (conditional on its identity being new), its content-hash entry, and its reference in the
   * content registry (decision 0007). Bytes registered with refs > 0: the item points at the registered object
   * (conditional on the registry still holding that object), 'shared'. Otherwise the message becomes the first
   * reference with its own object, and the registry carries the merged inbox entry, 'committed'.
   */
  private messageItems(
    record: MessageRecord,
    registry: Item | undefined,
  ): { items: TransactItems; outcome: 'committed' | 'shared' } {
    const pk = keys.sourcePk(record.sourceId);
    const inboxSk = keys.inboxSk(record.sortDate, record.sourceId, record.identity);
    const registryKey = { PK: keys.registryPk(record.object.sha256), SK: keys.registrySk };
    const metadata = fitMetadata(record.metadata);
    const via = new Set([keys.via(record.sourceId, record.identity)]);
    const registered = registry && Number(registry.refs) > 0 ? String(registry.objectKey) : undefined;
    const object = registered === undefined ? record.object : { ...record.object, key: registered };
    const reference: TransactItems[number] =
      registered === undefined
        ? {
            Put: {
              TableName: this.tableName,
              Item: {
                // What the merged inbox lists: the first reference's fields, under its inbox sort key.
                ...record,
                metadata,
                ...registryKey,
                type: 'content',
                sha256: record.object.sha256,
                objectKey: record.object.key,
                refs: 1,
                via,
                [TABLE.indexes.inbox.partitionKey]: keys.inboxPk,
                [TABLE.indexes.inbox.sortKey]: inboxSk,
                // A new merged entry is unread: in the sparse unread partition (adapters/dynamodb/inbox.ts).
                [TABLE.indexes.sourceInbox.partitionKey]: keys.unreadPk,
                [TABLE.indexes.sourceInbox.sortKey]: inboxSk,
              },
              ConditionExpression: 'attribute_not_exists(PK) OR refs <= :zero',
              ExpressionAttributeValues: { ':zero': 0 },
            },
          }
        : {
            Update: {
              TableName: this.tableName,
              Key: registryKey,
              UpdateExpression: 'ADD refs :one, via :via',
              // Still referenced, and by the same object: else it may be released (and deleted) meanwhile.
              ConditionExpression: 'refs > :zero AND objectKey = :key',
              ExpressionAttributeValues: { ':one': 1, ':zero': 0, ':via': via, ':key': registered },
            },
          };
    return {
      // The item's own object is kept when the registry names it already (a retry of the same message).
      outcome: registered === undefined || registered === record.object.key ? 'committed' : 'shared',
      items: [
        {
          Put: {
            TableName: this.tableName,
            Item: {
              PK: pk,
              SK: keys.messageSk(record.identity),
              type: 'message',
              ...record,
              object,
              metadata,
              // Counted in the registry: an eviction gives its reference back. Items from before have no flag.
              registered: true,
              // The merged inbox lists the registry item; the source's own inbox lists this one.
              [TABLE.indexes.sourceInbox.partitionKey]: pk,
              [TABLE.indexes.sourceInbox.sortKey]: inboxSk,
            },
            ConditionExpression: 'attribute_not_exists(PK)',
          },
        },
        {
          Put: {
            TableName: this.tableName,
            Item: {
              PK: pk,
              SK: keys.contentSk(record.object.contentSha256, record.identity),
              target: record.identity,
            },
          },
        },
        reference,
      ],
    };
  }

  async commitAlias(
    lease: Lease,
    upstream: UpstreamId,
    target: string,
    contentSha256: string,
  ): Promise<'committed' | 'exists'> {
    const pk = keys.sourcePk(lease.sourceId);
    const identity = identityKey(upstream);
    return this.transact(lease, [
      {
        Put: {
          TableName: this.tableName,
          Item: { PK: pk, SK: keys.messageSk(identity), type: 'alias', identity, upstream, target },
          ConditionExpression: 'attribute_not_exists(PK)',
        },
      },
      {
        Put: {
          TableName: this.tableName,
          Item: { PK: pk, SK: keys.contentSk(contentSha256, identity), target },
        },
      },
      this.leaseCheck(lease),
    ]);
  }

  /** Runs a transaction whose first item is conditional on novelty and whose last is the lease check. */
  private transact(lease: Lease, items: TransactItems): Promise<'committed' | 'exists'> {
    return this.fenced(lease, items, true);
  }

  /** Runs a transaction whose last item is the lease check; any other failed condition is a StorageError. */
  private async write(lease: Lease, items: TransactItems): Promise<void> {
    await this.fenced(lease, items, false);
  }

  private async fenced(
    lease: Lease,
    items: TransactItems,
    firstIsNovelty: boolean,
  ): Promise<'committed' | 'exists'> {
    return this.queue.run(lease.sourceId, async () => {
      for (let conflicts = 0; ; conflicts++) {
        try {
          await this.db.send(new TransactWriteCommand({ TransactItems: items }));
          return 'committed';
        } catch (err) {
          const outcome = this.fencedFailure(lease, items, firstIsNovelty, err);
          if (outcome === 'exists') return outcome;
          if (outcome === 'conflict' && conflicts < CONFLICT_RETRIES) {
            await sleep(conflictDelayMs(conflicts));
            continue;
          }
          throw outcome === 'conflict'
            ? new StorageError(`DynamoDB write failed: ${(err as Error).message}`, { cause: err })
            : outcome;
        }
      }
    });
  }

  /** What a failed fenced write means: 'exists', 'conflict' (worth another try) or the error to throw. */
  private fencedFailure(
    lease: Lease,
    items: TransactItems,
    firstIsNovelty: boolean,
    err: unknown,
  ): 'exists' | 'conflict' | Error {
    if (err instanceof TransactionCanceledException) {
      const reasons = err.CancellationReasons ?? [];
      if (reasons[reasons.length - 1]?.Code === 'ConditionalCheckFailed')
        return new LeaseLostError(lease.sourceId);
      if (firstIsNovelty && reasons[0]?.Code === 'ConditionalCheckFailed') return 'exists';
      const failed = reasons.findIndex((r) => r.Code === 'ConditionalCheckFailed');
      if (failed >= 0) {
        return new StorageError(
          `DynamoDB write refused for source ${lease.sourceId}: the item ${sortKeyOf(items[failed])} is not in the expected state`,
          { cause: err },
        );
      }
    }
    if (isConflict(err)) return 'conflict';
    return new StorageError(`DynamoDB write failed: ${(err as Error).message}`, { cause: err });
  }

  async lookup(sourceId: string, identities: string[]): Promise<Map<string, StoredCopy>> {
    const items = await this.getMany(sourceId, identities.map(keys.messageSk), COPY_FIELDS);
    const targets = [...items.values()]
      .filter((item) => item.type === 'alias')
      .map((item) => keys.messageSk(String(item.target)))
      .filter((sk) => !items.has(sk));
    if (targets.length > 0) {
      for (const [sk, item] of await this.getMany(sourceId, targets, COPY_FIELDS)) items.set(sk, item);
    }
    const found = new Map<string, StoredCopy>();
    for (const identity of identities) {
      const item = items.get(keys.messageSk(identity));
      // One level only: an alias always names the message item that holds the copy (commitAlias).
      const holder = item?.type === 'alias' ? items.get(keys.messageSk(String(item.target))) : item;
      const copy = holder && toStoredCopy(holder);
      if (copy) found.set(identity, copy);
    }
    return found;
  }

  async inboxUsage(sourceId: string): Promise<InboxUsage> {
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { PK: keys.sourcePk(sourceId), SK: keys.statsSk },
        ConsistentRead: true,
      }),
    );
    return { messages: Number(Item?.messages ?? 0), bytes: Number(Item?.bytes ?? 0) };
  }

  async beginActions(lease: Lease, records: AuditRecord[]): Promise<void> {
    const pk = keys.sourcePk(lease.sourceId);
    // Up to three items a record (intent, pending marker, the check of its stored item), plus the lease check.
    for (const batch of chunks(records, Math.floor((TRANSACT_MAX - 1) / 3))) {
      const checked = new Set<string>();
      await this.write(lease, [
        ...batch.flatMap((record): TransactItems => {
          const intent: AuditRecord = { ...record, state: 'intent' };
          const items: TransactItems = [
            {
              Put: {
                TableName: this.tableName,
                Item: { ...intent, PK: pk, SK: keys.auditSk(record.id), type: 'audit' },
                // A retry rewrites its own intent; a completed record is never reopened.
                ConditionExpression: 'attribute_not_exists(PK) OR #state = :intent',
                ExpressionAttributeNames: { '#state': 'state' },
                ExpressionAttributeValues: { ':intent': 'intent' },
              },
            },
            {
              Put: {
                TableName: this.tableName,
                Item: { PK: pk, SK: keys.pendingSk(record.id), type: 'pending', record: intent },
              },
            },
          ];
          // Section 4 rule 1, at the last moment: an upstream delete is begun only while the message item
          // exists, is a stored message (not evicted) and records the sha256 the object was just checked against.
          if (record.action === 'delete-upstream' && !checked.has(record.target)) {
            checked.add(record.target);
            items.push({
              ConditionCheck: {
                TableName: this.tableName,
                Key: { PK: pk, SK: keys.messageSk(record.target) },
                ConditionExpression: '#type = :message AND #object.#sha = :sha',
                ExpressionAttributeNames: { '#type': 'type', '#object': 'object', '#sha': 'sha256' },
                ExpressionAttributeValues: { ':message': 'message', ':sha': record.object.sha256 },
              },
            });
          }
          return items;
        }),
        this.leaseCheck(lease),
      ]);
    }
  }

  async completeActions(
    lease: Lease,
    outcomes: Array<{
      record: AuditRecord;
      state: 'done' | 'not-applied';
      usageAfter?: number;
      note?: string;
    }>,
    now: number,
  ): Promise<void> {
    if (outcomes.length === 0) return;
    const pk = keys.sourcePk(lease.sourceId);
    const at = new Date(now).toISOString();
    const deletedUpstream = (o: (typeof outcomes)[number]) =>
      o.record.action === 'delete-upstream' && o.state === 'done';
    // Read first: a failed condition would cancel the audit's completion with it.
    const targets = outcomes.filter(deletedUpstream).map((o) => keys.messageSk(o.record.target));
    const messages =
      targets.length > 0
        ? await this.getMany(lease.sourceId, targets, ['deletedUpstreamAt'])
        : new Map<string, Item>();
    const marked = new Set<string>();
    // Up to three items an outcome, plus the lease check.
    for (const batch of chunks(outcomes, Math.floor((TRANSACT_MAX - 1) / 3))) {
      const items: TransactItems = [];
      for (const outcome of batch) {
        const { record, state, usageAfter, note } = outcome;
        const set = ['#state = :state', '#completedAt = :at'];
        const names: Record<string, string> = { '#state': 'state', '#completedAt': 'completedAt' };
        const values: Record<string, string | number> = { ':state': state, ':at': at };
        if (usageAfter !== undefined) {
          set.push('#usageAfter = :usageAfter');
          names['#usageAfter'] = 'usageAfter';
          values[':usageAfter'] = usageAfter;
        }
        if (note !== undefined) {
          set.push('#note = :note');
          names['#note'] = 'note';
          values[':note'] = note;
        }
        items.push(
          {
            Update: {
              TableName: this.tableName,
              Key: { PK: pk, SK: keys.auditSk(record.id) },
              UpdateExpression: `SET ${set.join(', ')}`,
              ConditionExpression: 'attribute_exists(PK)',
              ExpressionAttributeNames: names,
              ExpressionAttributeValues: values,
            },
          },
          { Delete: { TableName: this.tableName, Key: { PK: pk, SK: keys.pendingSk(record.id) } } },
        );
        const sk = keys.messageSk(record.target);
        const message = messages.get(sk);
        if (
          deletedUpstream(outcome) &&
          message &&
          message.deletedUpstreamAt === undefined &&
          !marked.has(sk)
        ) {
          marked.add(sk);
          items.push({
            Update: {
              TableName: this.tableName,
              Key: { PK: pk, SK: sk },
              UpdateExpression: 'SET deletedUpstreamAt = :at',
              ConditionExpression: 'attribute_exists(PK)',
              ExpressionAttributeValues: { ':at': at },
            },
          });
        }
      }
      items.push(this.leaseCheck(lease));
      await this.write(lease, items);
    }
  }

  async evict(lease: Lease, record: AuditRecord, now: number): Promise<'evicted' | 'already'> {
    for (let refusals = 0; ; refusals++) {
      try {
        return await this.evictOnce(lease, record, now);
      } catch (err) {
        // The registry changed between its read and the tombstone (another source committed or evicted the same
        // bytes): read it again. The tombstone was not written, the transaction being all-or-nothing.
        if (!(err instanceof RegistryChanged) || refusals >= REGISTRY_RETRIES) throw err;
      }
    }
  }

  private async evictOnce(lease: Lease, record: AuditRecord, now: number): Promise<'evicted' | 'already'> {
    const pk = keys.sourcePk(lease.sourceId);
    const key = { PK: pk, SK: keys.messageSk(record.target) };
    const { Item: item } = await this.db.send(
      new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }),
    );
    if (!item) {
      throw new StorageError(`cannot evict ${record.target} of source ${lease.sourceId}: no such message`);
    }
    if (item.type === 'evicted') return 'already';
    if (item.type !== 'message') {
      throw new StorageError(
        `cannot evict ${record.target} of source ${lease.sourceId}: it is ${String(item.type)}, not a stored copy`,
      );
    }
    const object = item.object as StoredObject;
    // Its content entries (its own, and those of aliases to it) go too: a rematch must not find a copy that is gone.
    const entries = new Set([record.target]);
    for (const entry of await this.findByContent(lease.sourceId, object.contentSha256)) {
      if (entry.target === record.target) entries.add(entry.identity);
    }
    const release = item.registered
      ? await this.releaseItem(object.sha256, keys.via(lease.sourceId, record.target))
      : undefined;
    const { inbox, sourceInbox } = TABLE.indexes;
    const items: TransactItems = [
      {
        Update: {
          TableName: this.tableName,
          Key: key,
          // Without its GSI keys the tombstone leaves both inboxes; the item stays, so the identity stays known.
          UpdateExpression: 'SET #type = :evicted, evictedAt = :at REMOVE #ip, #is, #sp, #ss',
          ConditionExpression: '#type = :message',
          ExpressionAttributeNames: {
            '#type': 'type',
            '#ip': inbox.partitionKey,
            '#is': inbox.sortKey,
            '#sp': sourceInbox.partitionKey,
            '#ss': sourceInbox.sortKey,
          },
          ExpressionAttributeValues: {
            ':evicted': 'evicted',
            ':message': 'message',
            ':at': new Date(now).toISOString(),
          },
        },
      },
      ...[...entries].map((identity) => ({
        Delete: {
          TableName: this.tableName,
          Key: { PK: pk, SK: keys.contentSk(object.contentSha256, identity) },
        },
      })),
      {
        Update: {
          TableName: this.tableName,
          Key: { PK: pk, SK: keys.statsSk },
          UpdateExpression: 'ADD messages :minusOne, bytes :minusSize',
          ExpressionAttributeValues: { ':minusOne': -1, ':minusSize': -Number(object.size) },
        },
      },
      ...(release ? [release] : []),
      this.leaseCheck(lease),
    ];
    try {
      const outcome = await this.transact(lease, items);
      return outcome === 'exists' ? 'already' : 'evicted';
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      const reasons = cause instanceof TransactionCanceledException ? (cause.CancellationReasons ?? []) : [];
      if (release && reasons[items.length - 2]?.Code === 'ConditionalCheckFailed')
        throw new RegistryChanged();
      throw err;
    }
  }

  /**
   * Gives a registered item's reference back, conditional on the registry being as read: the last reference deletes
   * the registry item, and with it the merged inbox entry; otherwise refs go down by one and the item leaves `via`.
   * Undefined when the registry does not list the item (nothing to give back).
   */
  private async releaseItem(sha256: string, via: string): Promise<TransactItems[number] | undefined> {
    const registry = await this.registry(sha256);
    const listed = registry?.via instanceof Set && (registry.via as Set<string>).has(via);
    if (!registry || !listed) return undefined;
    const refs = Number(registry.refs);
    const Key = { PK: keys.registryPk(sha256), SK: keys.registrySk };
    return refs <= 1
      ? {
          Delete: {
            TableName: this.tableName,
            Key,
            ConditionExpression: 'refs = :refs',
            ExpressionAttributeValues: { ':refs': refs },
          },
        }
      : {
          Update: {
            TableName: this.tableName,
            Key,
            UpdateExpression: 'ADD refs :minusOne DELETE via :via',
            ConditionExpression: 'refs = :refs',
            ExpressionAttributeValues: { ':minusOne': -1, ':via': new Set([via]), ':refs': refs },
          },
        };
  }

  async objectUnreferenced(object: { key: string; sha256: string }): Promise<boolean> {
    const registry = await this.registry(object.sha256);
    // Registered again since (refs > 0) means under the key of the item that registered it, never a released one:
    // only an object the registry still names is referenced. Items from before the registry reference their own.
    return !(registry && Number(registry.refs) > 0 && registry.objectKey === object.key);
  }

  async messageFailures(sourceId: string): Promise<MessageFailure[]> {
    const out: MessageFailure[] = [];
    for await (const item of this.query({
      KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
      ExpressionAttributeValues: { ':pk': keys.sourcePk(sourceId), ':p': keys.failurePrefix },
    })) {
      const { PK: _pk, SK: _sk, type: _type, ...failure } = item;
      out.push(failure as unknown as MessageFailure);
    }
    return out;
  }

  async recordMessageFailure(lease: Lease, failure: MessageFailure): Promise<void> {
    await this.write(lease, [
      {
        Put: {
          TableName: this.tableName,
          Item: {
            ...failure,
            PK: keys.sourcePk(lease.sourceId),
            SK: keys.failureSk(failure.identity),
            type: 'failure',
          },
        },
      },
      this.leaseCheck(lease),
    ]);
  }

  async clearMessageFailures(lease: Lease, identities: string[]): Promise<void> {
    for (const batch of chunks([...new Set(identities)], TRANSACT_MAX - 1)) {
      await this.write(lease, [
        ...batch.map((identity) => ({
          Delete: {
            TableName: this.tableName,
            Key: { PK: keys.sourcePk(lease.sourceId), SK: keys.failureSk(identity) },
          },
        })),
        this.leaseCheck(lease),
      ]);
    }
  }

  async retryMessages(sourceId: string, identities?: string[]): Promise<number> {
    const failures = await this.messageFailures(sourceId);
    const chosen = identities ? new Set(identities) : undefined;
    let marked = 0;
    for (const f of failures) {
      if (chosen && !chosen.has(f.identity)) continue;
      try {
        await this.db.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: { PK: keys.sourcePk(sourceId), SK: keys.failureSk(f.identity) },
            UpdateExpression: 'SET attempts = :zero, setAside = :no, retry = :yes',
            ConditionExpression: 'attribute_exists(PK)',
            ExpressionAttributeValues: { ':zero': 0, ':no': false, ':yes': true },
          }),
        );
        marked++;
      } catch (err) {
        // Committed or gone meanwhile: the record was removed by a run, nothing is left to retry.
        if (!(err instanceof ConditionalCheckFailedException)) throw err;
      }
    }
    return marked;
  }

  async pendingActions(sourceId: string): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    for await (const item of this.query({
      KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
      ExpressionAttributeValues: { ':pk': keys.sourcePk(sourceId), ':p': keys.pendingPrefix },
    })) {
      out.push(item.record as AuditRecord);
    }
    return out;
  }

  async *auditTrail(sourceId: string, since?: string): AsyncIterable<AuditRecord> {
    for await (const item of this.query({
      KeyConditionExpression: 'PK = :pk AND SK BETWEEN :a AND :b',
      ExpressionAttributeValues: {
        ':pk': keys.sourcePk(sourceId),
        ':a': keys.auditSk(since ?? ''),
        ':b': `${keys.auditPrefix}\uffff`,
      },
    })) {
      const { PK: _pk, SK: _sk, type: _type, ...record } = item;
      yield record as unknown as AuditRecord;
    }
  }

  /** Strongly consistent BatchGet of one source's items by sort key; a map from sort key to item. */
  private async getMany(sourceId: string, sortKeys: string[], fields: string[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>();
    const batches = chunks([...new Set(sortKeys)], BATCH_GET_MAX);
    const names = Object.fromEntries(['SK', ...fields].map((f, i) => [`#f${i}`, f]));
    for (let i = 0; i < batches.length; i += BATCH_GET_PARALLEL) {
      await Promise.all(
        batches.slice(i, i + BATCH_GET_PARALLEL).map(async (batch) => {
          let pending: Item[] = batch.map((SK) => ({ PK: keys.sourcePk(sourceId), SK }));
          for (let attempt = 0; pending.length > 0; attempt++) {
            if (attempt > BATCH_GET_RETRIES) {
              throw new StorageError(
                `DynamoDB kept ${pending.length} keys of source ${sourceId} unprocessed: the table is throttled`,
              );
            }
            if (attempt > 0) await sleep(Math.min(1000, 25 * 2 ** attempt));
            const out = await readOrFail('batch-get', () =>
              this.db.send(
                new BatchGetCommand({
                  RequestItems: {
                    [this.tableName]: {
                      Keys: pending,
                      ConsistentRead: true,
                      ProjectionExpression: Object.keys(names).join(', '),
                      ExpressionAttributeNames: names,
                    },
                  },
                }),
              ),
            );
            for (const item of out.Responses?.[this.tableName] ?? []) found.set(String(item.SK), item);
            pending = out.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
          }
        }),
      );
    }
    return found;
  }

  /** Fenced like every state write of a run: a run that paused past its lease cannot overwrite its successor's. */
  async recordRun(lease: Lease, report: SourceRunReport, now: number): Promise<void> {
    const failed = report.outcome === 'failed';
    await this.write(lease, [
      {
        Update: {
          TableName: this.tableName,
          Key: { PK: keys.sourcePk(report.sourceId), SK: keys.statusSk },
          UpdateExpression: failed
            ? 'SET lastRun = :run, lastError = :err ADD consecutiveFailures :one'
            : 'SET lastRun = :run, consecutiveFailures = :zero REMOVE lastError',
          ExpressionAttributeValues: {
            ':run': {
              at: new Date(now).toISOString(),
              outcome: report.outcome,
              fetched: report.fetched,
              fetchedBytes: report.fetchedBytes,
              deletedUpstream: report.deletedUpstream,
              evicted: report.evicted,
              ...(report.upstreamUsage ? { upstreamUsage: report.upstreamUsage } : {}),
              durationMs: report.durationMs,
              notes: report.notes,
              ...(report.error ? { error: report.error } : {}),
            },
            ...(failed ? { ':err': report.error, ':one': 1 } : { ':zero': 0 }),
          },
        },
      },
      this.leaseCheck(lease),
    ]);
  }

  async summary(sourceId: string): Promise<SourceSummary> {
    const pk = keys.sourcePk(sourceId);
    const [stats, status] = await Promise.all(
      [keys.statsSk, keys.statusSk].map((SK) =>
        this.db.send(
          new GetCommand({ TableName: this.tableName, Key: { PK: pk, SK }, ConsistentRead: true }),
        ),
      ),
    );
    const s = status?.Item ?? {};
    return {
      sourceId,
      messages: Number(stats?.Item?.messages ?? 0),
      bytes: Number(stats?.Item?.bytes ?? 0),
      lastRun: s.lastRun as SourceSummary['lastRun'],
      consecutiveFailures: Number(s.consecutiveFailures ?? 0),
    };
  }

  /** Read-only, for messages: the source's lease as stored (holder, fence, until when), or undefined if never taken. */
  async leaseState(sourceId: string): Promise<Lease | undefined> {
    const out = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { PK: keys.sourcePk(sourceId), SK: keys.leaseSk },
        ConsistentRead: true,
      }),
    );
    const item = out.Item;
    if (!item) return undefined;
    return {
      sourceId,
      holder: String(item.holder),
      fence: Number(item.fence),
      expiresAt: Number(item.leaseUntil),
    };
  }

  /**
   * Newest first. The cursor is the last item's index sort key (unique: date, source and identity), read back as a
   * key condition (`sort key < cursor`) rather than as ExclusiveStartKey: the same page either way, but DynamoDB
   * Local walks past every item above an ExclusiveStartKey (a page 100,000 messages down took 4 times as long).
   * A cursor of the older form (the LastEvaluatedKey itself) still works.
   */
  async listInbox(options: {
    sourceId?: string;
    limit: number;
    cursor?: string;
  }): Promise<{ items: MessageRecord[]; cursor?: string }> {
    const index = options.sourceId ? TABLE.indexes.sourceInbox : TABLE.indexes.inbox;
    const before = options.cursor === undefined ? undefined : inboxCursorKey(options.cursor, index.sortKey);
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: index.name,
        KeyConditionExpression: `${index.partitionKey} = :p${before === undefined ? '' : ` AND ${index.sortKey} < :before`}`,
        ExpressionAttributeValues: {
          ':p': options.sourceId ? keys.sourcePk(options.sourceId) : keys.inboxPk,
          ...(before === undefined ? {} : { ':before': before }),
        },
        ScanIndexForward: false,
        Limit: options.limit,
      }),
    );
    const items = out.Items ?? [];
    const last = items[items.length - 1]?.[index.sortKey] as unknown;
    return {
      items: items.map((item) => (options.sourceId ? toRecord(item) : toMergedRecord(item))),
      cursor:
        out.LastEvaluatedKey && typeof last === 'string'
          ? Buffer.from(JSON.stringify({ before: last })).toString('base64url')
          : undefined,
    };
  }

  async *sourceMessages(sourceId: string): AsyncIterable<MessageRecord> {
    for await (const item of this.query({
      KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
      ExpressionAttributeValues: { ':pk': keys.sourcePk(sourceId), ':p': keys.messagePrefix },
    })) {
      if (item.type === 'message') yield toRecord(item);
    }
  }

  private async *query(input: Omit<QueryCommandInput, 'TableName'>): AsyncIterable<Item> {
    let start: Item | undefined;
    do {
      const out = await readOrFail('query', () =>
        this.db.send(
          new QueryCommand({
            ...input,
            TableName: this.tableName,
            ConsistentRead: true,
            ExclusiveStartKey: start,
          }),
        ),
      );
      for (const item of out.Items ?? []) yield item;
      start = out.LastEvaluatedKey;
    } while (start);
  }
}

/** A failed read of the table is a StorageError (typed, retryable) in the run status, not an INTERNAL one. */
async function readOrFail<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof TributaryError) throw err;
    throw new StorageError(`DynamoDB ${what} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** The sort key an inbox cursor points below; a cursor that is not one of ours is a usage error, not a crash. */
function inboxCursorKey(cursor: string, sortKey: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString());
  } catch {
    parsed = undefined;
  }
  const fields = (parsed ?? {}) as Record<string, unknown>;
  const key = fields.before ?? fields[sortKey];
  if (typeof key !== 'string' || !key) {
    throw new TributaryError(
      'CONFIG_INVALID',
      'the inbox cursor is not valid: use the cursor a page returned',
      false,
    );
  }
  return key;
}

/** Metadata must leave the item well under DynamoDB's 400 KB: a message no item can hold would block its source. */
const METADATA_BUDGET_BYTES = 64 * 1024;

/** Trims address and attachment lists (then long strings) until the metadata fits; the raw message keeps it all. */
export function fitMetadata(metadata: MessageMetadata, budget = METADATA_BUDGET_BYTES): MessageMetadata {
  const size = (m: MessageMetadata) => Buffer.byteLength(JSON.stringify(m));
  if (size(metadata) <= budget) return metadata;
  const cut = (s: string | undefined, n: number) => (s && s.length > n ? s.slice(0, n) : s);
  const shortAddress = (a: Address) => ({ name: cut(a.name, 64), address: cut(a.address, 128) });
  let m: MessageMetadata = {
    ...metadata,
    to: metadata.to.slice(0, 10).map(shortAddress),
    cc: metadata.cc.slice(0, 10).map(shortAddress),
    attachments: metadata.attachments
      .slice(0, 20)
      .map((a) => ({ ...a, filename: cut(a.filename, 128), mimeType: cut(a.mimeType, 128)! })),
    from: metadata.from && shortAddress(metadata.from),
    subject: cut(metadata.subject, 512),
    messageId: cut(metadata.messageId, 512),
    parseError: cut(metadata.parseError, 512),
    truncated: true,
  };
  if (size(m) > budget) m = { ...m, to: [], cc: [], attachments: [], snippet: cut(m.snippet, 200) ?? '' };
  return m;
}

/** What lookup reads of a message item. */
const COPY_FIELDS = ['type', 'target', 'object', 'fetchedAt', 'deletedUpstreamAt'];

/** The copy a message item or its tombstone holds; undefined for anything else. */
function toStoredCopy(item: Item): StoredCopy | undefined {
  if (item.type !== 'message' && item.type !== 'evicted') return undefined;
  const object = item.object as StoredObject;
  const deletedUpstreamAt = item.deletedUpstreamAt as string | undefined;
  return {
    identity: String(item.SK).slice(keys.messagePrefix.length),
    key: object.key,
    size: Number(object.size),
    sha256: object.sha256,
    fetchedAt: String(item.fetchedAt),
    state: item.type === 'message' ? 'stored' : 'evicted',
    ...(deletedUpstreamAt !== undefined ? { deletedUpstreamAt } : {}),
  };
}

function chunks<T>(list: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/** The sort key a transaction item writes, to name it in an error. */
function sortKeyOf(item: TransactItems[number] | undefined): string {
  const key = item?.Put?.Item ?? item?.Update?.Key ?? item?.Delete?.Key ?? item?.ConditionCheck?.Key;
  return String(key?.SK);
}

/**
 * A merged inbox entry: a content registry item with every place its bytes came through, or a message item
 * committed before the registry existed (one place). The entry is named after a place that still holds it.
 */
export function toMergedRecord(item: Item): MessageRecord {
  const record = toRecord(item);
  if (item.type !== 'content')
    return { ...record, via: [{ sourceId: record.sourceId, identity: record.identity }] };
  const via = [...((item.via as Set<string> | undefined) ?? [])].sort().map((entry) => {
    const at = entry.indexOf('#');
    return { sourceId: entry.slice(0, at), identity: entry.slice(at + 1) };
  });
  const named = via.some((v) => v.sourceId === record.sourceId && v.identity === record.identity);
  return { ...record, ...(named || !via[0] ? {} : via[0]), via };
}

function toRecord(item: Item): MessageRecord {
  const {
    sourceId,
    identity,
    upstream,
    object,
    metadata,
    fetchedAt,
    sortDate,
    seen,
    flagged,
    deletedUpstreamAt,
  } = item as unknown as MessageRecord;
  return {
    sourceId,
    identity,
    upstream,
    object,
    metadata,
    fetchedAt,
    sortDate,
    seen,
    flagged,
    deletedUpstreamAt,
  };
}
