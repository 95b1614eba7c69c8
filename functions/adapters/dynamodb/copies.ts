import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { StorageError } from '../../core/errors';
import type { AuditRecord, StoredObject } from '../../core/model';
import type { InboxUsage } from '../../core/policies';
import type { Lease, MessageCommits, StoredCopies } from '../../core/ports';
import { REGISTRY_RETRIES, RegistryChanged, type IndexTable, type Item, type TransactItems } from './fencing';
import { keys } from './keys';
import { TABLE } from './table';

/** What a source occupies, eviction (a tombstone, counters down) and the release of its registry reference. */
export class DynamoStoredCopies implements StoredCopies {
  constructor(
    private readonly table: IndexTable,
    /** An evicted message's content entries (its own and its aliases') go with it. */
    private readonly commits: Pick<MessageCommits, 'findByContent'>,
  ) {}

  async inboxUsage(sourceId: string): Promise<InboxUsage> {
    const { Item } = await this.table.db.send(
      new GetCommand({
        TableName: this.table.tableName,
        Key: { PK: keys.sourcePk(sourceId), SK: keys.statsSk },
        ConsistentRead: true,
      }),
    );
    return { messages: Number(Item?.messages ?? 0), bytes: Number(Item?.bytes ?? 0) };
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
    const { Item: item } = await this.table.db.send(
      new GetCommand({ TableName: this.table.tableName, Key: key, ConsistentRead: true }),
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
    for (const entry of await this.commits.findByContent(lease.sourceId, object.contentSha256)) {
      if (entry.target === record.target) entries.add(entry.identity);
    }
    const release = item.registered
      ? await this.releaseItem(object.sha256, keys.via(lease.sourceId, record.target))
      : undefined;
    const { inbox, sourceInbox } = TABLE.indexes;
    const items: TransactItems = [
      {
        Update: {
          TableName: this.table.tableName,
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
          TableName: this.table.tableName,
          Key: { PK: pk, SK: keys.contentSk(object.contentSha256, identity) },
        },
      })),
      {
        Update: {
          TableName: this.table.tableName,
          Key: { PK: pk, SK: keys.statsSk },
          UpdateExpression: 'ADD messages :minusOne, bytes :minusSize',
          ExpressionAttributeValues: { ':minusOne': -1, ':minusSize': -Number(object.size) },
        },
      },
      ...(release ? [release] : []),
      this.table.leaseCheck(lease),
    ];
    try {
      const outcome = await this.table.transact(lease, items);
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
            TableName: this.table.tableName,
            Key,
            ConditionExpression: 'refs = :refs',
            ExpressionAttributeValues: { ':refs': refs },
          },
        }
      : {
          Update: {
            TableName: this.table.tableName,
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

  private async registry(sha256: string): Promise<Item | undefined> {
    const { Item } = await this.table.db.send(
      new GetCommand({
        TableName: this.table.tableName,
        Key: { PK: keys.registryPk(sha256), SK: keys.registrySk },
        ConsistentRead: true,
      }),
    );
    return Item;
  }
}
