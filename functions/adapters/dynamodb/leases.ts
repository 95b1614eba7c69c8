import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LeaseLostError, StorageError } from '../../core/errors';
import type { Lease, SourceLeases } from '../../core/ports';
import { isConflict, type IndexTable } from './fencing';
import { keys } from './keys';

/** The source's lease item: taken while free or expired, renewed and released only by its holder and fence. */
export class DynamoSourceLeases implements SourceLeases {
  constructor(private readonly table: IndexTable) {}

  async acquireLease(
    sourceId: string,
    holder: string,
    ttlMs: number,
    now: number,
  ): Promise<Lease | undefined> {
    try {
      const out = await this.table.db.send(
        new UpdateCommand({
          TableName: this.table.tableName,
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
    return this.table.queue.run(lease.sourceId, () => this.renew(lease, ttlMs, now));
  }

  private async renew(lease: Lease, ttlMs: number, now: number): Promise<Lease> {
    try {
      await this.table.db.send(
        new UpdateCommand({
          TableName: this.table.tableName,
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
    return this.table.queue.run(lease.sourceId, () => this.release(lease));
  }

  private async release(lease: Lease): Promise<void> {
    try {
      await this.table.db.send(
        new UpdateCommand({
          TableName: this.table.tableName,
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
}
