import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import { StorageError, TributaryError } from '../../core/errors';
import type { Source } from '../../core/model';
import type { RegisteredSource, SourceRegistry } from '../../core/ports';
import { initialSchedule, type SourceSchedule } from '../../core/schedule';
import { keys } from './keys';
import { TABLE } from './table';

type Item = Record<string, unknown>;

/** The due index sorts by the later of the next due time and the back-off: a source backing off is not due. */
function dueAt(schedule: SourceSchedule): number {
  return Math.max(schedule.nextDueAt, schedule.backoffUntil ?? 0);
}

function toEntry(item: Item): RegisteredSource {
  return {
    source: item.source as Source,
    schedule: item.schedule as SourceSchedule,
    revision: Number(item.revision ?? 0),
  };
}

async function orFail<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof TributaryError) throw err;
    throw new StorageError(`source registry: ${what} failed: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * SourceRegistry on the one table (decision 0003): an entry per source in the registry partition, holding its
 * settings, its schedule and a revision. Enabled entries carry the GSI3 (due) keys; a disabled one drops its
 * partition key there, so the dispatcher's query never sees it. Reads that decide a write are strongly consistent;
 * `due` reads the index, and the dispatcher's write names the revision it read, so a stale read only costs a minute.
 */
export class DynamoSourceRegistry implements SourceRegistry {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  private key(sourceId: string) {
    return { PK: keys.registryPartition, SK: keys.sourceEntrySk(sourceId) };
  }

  async get(sourceId: string): Promise<RegisteredSource | undefined> {
    const out = await orFail('get', () =>
      this.db.send(
        new GetCommand({ TableName: this.tableName, Key: this.key(sourceId), ConsistentRead: true }),
      ),
    );
    return out.Item ? toEntry(out.Item) : undefined;
  }

  async list(): Promise<RegisteredSource[]> {
    const entries: RegisteredSource[] = [];
    let start: Item | undefined;
    do {
      const out = await orFail('list', () =>
        this.db.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
            ExpressionAttributeValues: { ':pk': keys.registryPartition, ':p': keys.sourceEntryPrefix },
            ConsistentRead: true,
            ExclusiveStartKey: start,
          }),
        ),
      );
      for (const item of out.Items ?? []) entries.push(toEntry(item));
      start = out.LastEvaluatedKey;
    } while (start);
    return entries;
  }

  async put(source: Source, now: number): Promise<void> {
    const schedule = initialSchedule(now);
    try {
      await this.db.send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            ...this.key(source.id),
            type: 'source',
            source,
            schedule,
            revision: 1,
            ...(source.enabled ? { [TABLE.indexes.due.partitionKey]: keys.duePk } : {}),
            [TABLE.indexes.due.sortKey]: keys.dueSk(dueAt(schedule), source.id),
          },
          ConditionExpression: 'attribute_not_exists(PK)',
        }),
      );
      return;
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException))
        throw new StorageError(`source registry: put failed: ${(err as Error).message}`, { cause: err });
    }
    // Already registered: new settings, same schedule (changing a source does not reset its back-off).
    const due = TABLE.indexes.due.partitionKey;
    await orFail('put', () =>
      this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: this.key(source.id),
          UpdateExpression: source.enabled
            ? 'SET #source = :s, #due = :due ADD #rev :one'
            : 'SET #source = :s REMOVE #due ADD #rev :one',
          ConditionExpression: 'attribute_exists(PK)',
          ExpressionAttributeNames: { '#source': 'source', '#due': due, '#rev': 'revision' },
          ExpressionAttributeValues: {
            ':s': source,
            ':one': 1,
            ...(source.enabled ? { ':due': keys.duePk } : {}),
          },
        }),
      ),
    );
  }

  async remove(sourceId: string): Promise<void> {
    await orFail('remove', () =>
      this.db.send(new DeleteCommand({ TableName: this.tableName, Key: this.key(sourceId) })),
    );
  }

  async due(now: number, limit: number): Promise<RegisteredSource[]> {
    const index = TABLE.indexes.due;
    const entries: RegisteredSource[] = [];
    let start: Item | undefined;
    do {
      const out = await orFail('due', () =>
        this.db.send(
          new QueryCommand({
            TableName: this.tableName,
            IndexName: index.name,
            KeyConditionExpression: '#pk = :pk AND #sk <= :upTo',
            ExpressionAttributeNames: { '#pk': index.partitionKey, '#sk': index.sortKey },
            ExpressionAttributeValues: { ':pk': keys.duePk, ':upTo': keys.dueUpTo(now) },
            Limit: limit - entries.length,
            ExclusiveStartKey: start,
          }),
        ),
      );
      for (const item of out.Items ?? []) entries.push(toEntry(item));
      start = out.LastEvaluatedKey;
    } while (start && entries.length < limit);
    return entries;
  }

  async setSchedule(sourceId: string, schedule: SourceSchedule, revision: number): Promise<boolean> {
    try {
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: this.key(sourceId),
          UpdateExpression: 'SET #schedule = :s, #dueSk = :sk, #rev = :next',
          ConditionExpression: 'attribute_exists(PK) AND #rev = :rev',
          ExpressionAttributeNames: {
            '#schedule': 'schedule',
            '#dueSk': TABLE.indexes.due.sortKey,
            '#rev': 'revision',
          },
          ExpressionAttributeValues: {
            ':s': schedule,
            ':sk': keys.dueSk(dueAt(schedule), sourceId),
            ':rev': revision,
            ':next': revision + 1,
          },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw new StorageError(`source registry: schedule write failed: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}
