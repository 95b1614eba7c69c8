import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { MessageFailure } from '../../core/model';
import type { FailureRecords, Lease } from '../../core/ports';
import { chunks } from '../common/chunks';
import { TRANSACT_MAX, type IndexTable } from './fencing';
import { keys } from './keys';

/** Failure records of single messages: written and cleared fenced, marked for retry by people (not fenced). */
export class DynamoFailureRecords implements FailureRecords {
  constructor(private readonly table: IndexTable) {}

  async messageFailures(sourceId: string): Promise<MessageFailure[]> {
    const out: MessageFailure[] = [];
    for await (const item of this.table.query({
      KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
      ExpressionAttributeValues: { ':pk': keys.sourcePk(sourceId), ':p': keys.failurePrefix },
    })) {
      const { PK: _pk, SK: _sk, type: _type, ...failure } = item;
      out.push(failure as unknown as MessageFailure);
    }
    return out;
  }

  async recordMessageFailure(lease: Lease, failure: MessageFailure): Promise<void> {
    await this.table.write(lease, [
      {
        Put: {
          TableName: this.table.tableName,
          Item: {
            ...failure,
            PK: keys.sourcePk(lease.sourceId),
            SK: keys.failureSk(failure.identity),
            type: 'failure',
          },
        },
      },
      this.table.leaseCheck(lease),
    ]);
  }

  async clearMessageFailures(lease: Lease, identities: string[]): Promise<void> {
    for (const batch of chunks([...new Set(identities)], TRANSACT_MAX - 1)) {
      await this.table.write(lease, [
        ...batch.map((identity) => ({
          Delete: {
            TableName: this.table.tableName,
            Key: { PK: keys.sourcePk(lease.sourceId), SK: keys.failureSk(identity) },
          },
        })),
        this.table.leaseCheck(lease),
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
        await this.table.db.send(
          new UpdateCommand({
            TableName: this.table.tableName,
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
}
