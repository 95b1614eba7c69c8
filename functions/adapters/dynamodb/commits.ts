import { setTimeout as sleep } from 'node:timers/promises';
import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { BatchGetCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { LeaseLostError, StorageError, TributaryError } from '../../core/errors';
import type { MessageRecord, UpstreamId } from '../../core/model';
import { identityKey } from '../../core/model';
import type { StoredCopy } from '../../core/policies';
import type { CommitOutcome, Lease, MessageCommits } from '../../core/ports';
import {
  BATCH_GET_RETRIES,
  conflictDelayMs,
  CONFLICT_RETRIES,
  isConflict,
  REGISTRY_RETRIES,
  type IndexTable,
  type Item,
  type TransactItems,
} from './fencing';
import { keys } from './keys';
import { COPY_FIELDS, fitMetadata, toStoredCopy } from './records';
import { TABLE } from './table';
import { GroupCommitter } from './write-queue';

/**
 * Messages of one source committed in one transaction: three items each, plus the counters and the lease check, well
 * under 100 items; with metadata capped at 64 KB and written at most twice a message (its item, a new registry
 * entry), under the 4 MB a transaction may carry.
 */
const COMMIT_GROUP_MAX = 25;
/** Transaction items of one message: its item, its content-hash entry, its content registry reference. */
const MESSAGE_ITEMS = 3;

interface PendingCommit {
  lease: Lease;
  record: MessageRecord;
  /**
   * The content registry items of this message's bytes, read while the group before it committed (undefined when
   * that read failed: it is read again). Possibly stale by the time it is used: the transaction's conditions on
   * the registry catch that, and the message is tried again with a fresh read.
   */
  registry?: Promise<Map<string, Item> | undefined>;
}

/**
 * The commit of messages (item, content-hash entry, content registry reference, counters: one transaction, grouped
 * per source) and of aliases, and the reads that decide them: which identities are committed, by content, by copy.
 */
export class DynamoMessageCommits implements MessageCommits {
  private readonly commits: GroupCommitter<PendingCommit, CommitOutcome>;

  constructor(private readonly table: IndexTable) {
    // On the index's one queue: a group commit waits for the source's other fenced writes, and they for it.
    this.commits = new GroupCommitter<PendingCommit, CommitOutcome>(
      table.queue,
      COMMIT_GROUP_MAX,
      (entries, upcoming) => this.commitGroup(entries, upcoming),
    );
  }

  async committedIdentities(sourceId: string, prefix: string, from?: string): Promise<Set<string>> {
    const found = new Set<string>();
    const start = keys.messageSk(from && from > prefix ? from : prefix);
    for await (const item of this.table.query({
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
    for await (const item of this.table.query({
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
  private async commitGroup(
    entries: PendingCommit[],
    upcoming: () => PendingCommit[],
  ): Promise<Array<CommitOutcome | Error>> {
    const outcomes = new Array<CommitOutcome | Error>(entries.length);
    // Entries of one source under different leases (a stale holder and its successor in the same process) are
    // never mixed: each lease's entries go in transactions of their own, each checking its own fence.
    const byLease = new Map<string, number[]>();
    entries.forEach((e, i) => {
      const at = `${e.lease.fence}\u0000${e.lease.holder}`;
      byLease.set(at, [...(byLease.get(at) ?? []), i]);
    });
    for (const members of byLease.values()) {
      await this.commitLeaseGroup(entries, members, outcomes, upcoming);
    }
    return outcomes;
  }

  /**
   * Starts one read of the registry items of the entries that will commit next and have none under way, so that
   * it overlaps this group's transaction instead of adding a round trip before theirs. Never fails: a failed read
   * leaves `undefined`, and the entry's group reads again.
   */
  private prefetchRegistries(next: PendingCommit[]): void {
    const need = next.filter((e) => !e.registry);
    if (!need.length) return;
    const read = this.registries([...new Set(need.map((e) => e.record.object.sha256))]).catch(
      () => undefined,
    );
    for (const e of need) e.registry = read;
  }

  /** The registry items read ahead for all of `group`, or undefined when any of them has none. */
  private async prefetched(group: PendingCommit[]): Promise<Map<string, Item> | undefined> {
    if (group.some((e) => e.registry === undefined)) return undefined;
    const merged = new Map<string, Item>();
    for (const read of await Promise.all(group.map((e) => e.registry!))) {
      if (!read) return undefined;
      for (const [sha256, item] of read) merged.set(sha256, item);
    }
    return merged;
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
    upcoming: () => PendingCommit[],
  ): Promise<void> {
    const lease = entries[live[0]!]!.lease;
    let readAhead = true;
    for (let conflicts = 0, refusals = 0; live.length > 0;) {
      const round: number[] = [];
      const contents = new Set<string>();
      for (const i of live) {
        const sha256 = entries[i]!.record.object.sha256;
        if (contents.has(sha256)) continue;
        contents.add(sha256);
        round.push(i);
      }
      // The first round takes the registry items read ahead while the previous group committed; a later round
      // (after a refusal or a conflict) reads them again.
      const ahead = readAhead ? await this.prefetched(round.map((i) => entries[i]!)) : undefined;
      const usedAhead = ahead !== undefined;
      readAhead = false;
      let registries: Map<string, Item>;
      try {
        registries = ahead ?? (await this.registries([...contents]));
      } catch (err) {
        // Only the entries not committed yet fail: a later round's read must not take an earlier round's
        // committed members down with it (their caller would count them failed, and a 'shared' one's own object
        // would be left behind).
        const error =
          err instanceof TributaryError
            ? err
            : new StorageError(
                `DynamoDB could not read the content registry for ${live.length} message(s) of source ${lease.sourceId}: ${(err as Error).message}`,
                { cause: err },
              );
        for (const i of live) outcomes[i] = error;
        return;
      }
      const plans = round.map((i) => {
        const record = entries[i]!.record;
        return this.messageItems(record, registries.get(record.object.sha256));
      });
      const records = round.map((i) => entries[i]!.record);
      const items: TransactItems = [
        ...plans.flatMap((p) => p.items),
        {
          Update: {
            TableName: this.table.tableName,
            Key: { PK: keys.sourcePk(lease.sourceId), SK: keys.statsSk },
            UpdateExpression: 'ADD messages :n, bytes :size',
            ExpressionAttributeValues: {
              ':n': records.length,
              ':size': records.reduce((sum, r) => sum + r.object.size, 0),
            },
          },
        },
        this.table.leaseCheck(lease),
      ];
      try {
        const sent = this.table.db.send(new TransactWriteCommand({ TransactItems: items }));
        this.prefetchRegistries(upcoming());
        await sent;
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
        // A registry read ahead may be stale (a twin committed by the group before): that refusal is not counted.
        if (
          round.some((_, k) => failed(MESSAGE_ITEMS * k + 2)) &&
          (usedAhead || refusals++ < REGISTRY_RETRIES)
        )
          continue;
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
      const out = await this.table.db.send(
        new BatchGetCommand({
          RequestItems: { [this.table.tableName]: { Keys: pending, ConsistentRead: true } },
        }),
      );
      for (const item of out.Responses?.[this.table.tableName] ?? []) found.set(String(item.sha256), item);
      pending = out.UnprocessedKeys?.[this.table.tableName]?.Keys ?? [];
    }
    return found;
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
              TableName: this.table.tableName,
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
              TableName: this.table.tableName,
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
            TableName: this.table.tableName,
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
            TableName: this.table.tableName,
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
    return this.table.transact(lease, [
      {
        Put: {
          TableName: this.table.tableName,
          Item: { PK: pk, SK: keys.messageSk(identity), type: 'alias', identity, upstream, target },
          ConditionExpression: 'attribute_not_exists(PK)',
        },
      },
      {
        Put: {
          TableName: this.table.tableName,
          Item: { PK: pk, SK: keys.contentSk(contentSha256, identity), target },
        },
      },
      this.table.leaseCheck(lease),
    ]);
  }

  async lookup(sourceId: string, identities: string[]): Promise<Map<string, StoredCopy>> {
    const items = await this.table.getMany(sourceId, identities.map(keys.messageSk), COPY_FIELDS);
    const targets = [...items.values()]
      .filter((item) => item.type === 'alias')
      .map((item) => keys.messageSk(String(item.target)))
      .filter((sk) => !items.has(sk));
    if (targets.length > 0) {
      for (const [sk, item] of await this.table.getMany(sourceId, targets, COPY_FIELDS)) items.set(sk, item);
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
}
