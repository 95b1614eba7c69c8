import { setTimeout as sleep } from 'node:timers/promises';
import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  QueryCommand,
  TransactWriteCommand,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { LeaseLostError, StorageError, TributaryError } from '../../core/errors';
import type { Lease } from '../../core/ports';
import { chunks } from '../common/chunks';
import { keys } from './keys';
import type { KeyedSerialQueue } from './write-queue';

export type Item = Record<string, unknown>;
export type TransactItems = NonNullable<TransactWriteCommandInput['TransactItems']>;

/** DynamoDB's limits: 100 keys per BatchGetItem, 100 items per TransactWriteItems (the lease check is one). */
export const BATCH_GET_MAX = 100;
export const TRANSACT_MAX = 100;
/** Concurrent BatchGet calls of one lookup, and how often unprocessed keys are asked for again. */
export const BATCH_GET_PARALLEL = 4;
export const BATCH_GET_RETRIES = 8;
/** A registry that changed between its read and the commit (another source at work on the same bytes) is read again this often. */
export const REGISTRY_RETRIES = 10;
/** A transaction cancelled by a conflict with another one on the same item is tried again this often. */
export const CONFLICT_RETRIES = 6;

/** The content registry was not as read when a transaction changing it ran: read it again and retry. */
export class RegistryChanged extends Error {}

/** A write cancelled only because another transaction held one of its items (and nothing else failed). */
export function isConflict(err: unknown): boolean {
  if (err instanceof TransactionCanceledException) {
    const reasons = err.CancellationReasons ?? [];
    return (
      reasons.some((r) => r.Code === 'TransactionConflict') &&
      reasons.every((r) => !r.Code || r.Code === 'None' || r.Code === 'TransactionConflict')
    );
  }
  return (err as { name?: string } | undefined)?.name === 'TransactionConflictException';
}

export function conflictDelayMs(attempt: number): number {
  return Math.min(1000, 20 * 2 ** attempt) * (0.5 + Math.random() / 2);
}

/**
 * The table as every index part uses it: the fenced transactions (each checks the lease's fencing number, one at a
 * time per source through the index's one queue), and the strongly consistent reads of the base table.
 */
export class IndexTable {
  /** The client every part sends through, its failures as StorageErrors (see storageFailures). */
  readonly db: DynamoDBDocumentClient;

  constructor(
    db: DynamoDBDocumentClient,
    readonly tableName: string,
    /** Every fenced write of a source, one at a time (they all touch its lease item). Shared by all parts. */
    readonly queue: KeyedSerialQueue,
  ) {
    this.db = storageFailures(db);
  }

  leaseCheck(lease: Lease) {
    return {
      ConditionCheck: {
        TableName: this.tableName,
        Key: { PK: keys.sourcePk(lease.sourceId), SK: keys.leaseSk },
        ConditionExpression: 'holder = :h AND fence = :f',
        ExpressionAttributeValues: { ':h': lease.holder, ':f': lease.fence },
      },
    };
  }

  /** Runs a transaction whose first item is conditional on novelty and whose last is the lease check. */
  transact(lease: Lease, items: TransactItems): Promise<'committed' | 'exists'> {
    return this.fenced(lease, items, true);
  }

  /** Runs a transaction whose last item is the lease check; any other failed condition is a StorageError. */
  async write(lease: Lease, items: TransactItems): Promise<void> {
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
    if (err instanceof TributaryError) return err;
    return new StorageError(`DynamoDB write failed: ${(err as Error).message}`, { cause: err });
  }

  /** Strongly consistent BatchGet of one source's items by sort key; a map from sort key to item. */
  async getMany(sourceId: string, sortKeys: string[], fields: string[]): Promise<Map<string, Item>> {
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

  async *query(input: Omit<QueryCommandInput, 'TableName'>): AsyncIterable<Item> {
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

/**
 * Errors that pass storageFailures unchanged: the answers the parts interpret (a refused condition, a cancelled or
 * conflicting transaction), and our own mistakes (a request DynamoDB calls malformed, a value the SDK cannot
 * marshal: a TypeError or the like), which are bugs and stay INTERNAL.
 */
function passesUnchanged(err: unknown): boolean {
  const name = (err as { name?: string } | undefined)?.name;
  return (
    err instanceof TributaryError ||
    err instanceof ConditionalCheckFailedException ||
    err instanceof TransactionCanceledException ||
    name === 'TransactionConflictException' ||
    name === 'ValidationException' ||
    err instanceof TypeError ||
    err instanceof RangeError
  );
}

/**
 * The client with every failure DynamoDB or the network reports (after the SDK's own retries: a 500, throttling, a
 * timeout, a reset, a missing table or permission) turned into a StorageError with the error's name, so a run
 * status says STORAGE_FAILED (typed, retryable) whichever part's call failed, rather than INTERNAL.
 */
export function storageFailures(db: DynamoDBDocumentClient): DynamoDBDocumentClient {
  const send = db.send.bind(db) as (...args: unknown[]) => Promise<unknown>;
  const guarded = async (...args: unknown[]): Promise<unknown> => {
    try {
      return await send(...args);
    } catch (err) {
      if (passesUnchanged(err)) throw err;
      const { name, message } = err as Error;
      throw new StorageError(`DynamoDB failed (${name}): ${message}`, { cause: err });
    }
  };
  return new Proxy(db, {
    get: (target, property, receiver) =>
      property === 'send' ? guarded : (Reflect.get(target, property, receiver) as unknown),
  });
}

/** A failed read of the table is a StorageError (typed, retryable) in the run status, not an INTERNAL one. */
export async function readOrFail<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (err instanceof TributaryError) throw err;
    throw new StorageError(`DynamoDB ${what} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** The sort key a transaction item writes, to name it in an error. */
function sortKeyOf(item: TransactItems[number] | undefined): string {
  const key = item?.Put?.Item ?? item?.Update?.Key ?? item?.Delete?.Key ?? item?.ConditionCheck?.Key;
  return String(key?.SK);
}
