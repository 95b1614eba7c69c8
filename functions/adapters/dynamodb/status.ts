import { lastRunOf } from '../common/run-status';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import type { SourceRunReport } from '../../core/model';
import type { Lease, RunStatusLog, SourceStatus, SourceSummary } from '../../core/ports';
import type { IndexTable } from './fencing';
import { keys } from './keys';

/** The source's status item: each run's outcome written (fenced), and read back with the counters and the lease. */
export class DynamoSourceStatus implements RunStatusLog, SourceStatus {
  constructor(private readonly table: IndexTable) {}

  /** Fenced like every state write of a run: a run that paused past its lease cannot overwrite its successor's. */
  async recordRun(lease: Lease, report: SourceRunReport, now: number): Promise<void> {
    const failed = report.outcome === 'failed';
    await this.table.write(lease, [
      {
        Update: {
          TableName: this.table.tableName,
          Key: { PK: keys.sourcePk(report.sourceId), SK: keys.statusSk },
          UpdateExpression: failed
            ? 'SET lastRun = :run, lastError = :err ADD consecutiveFailures :one'
            : 'SET lastRun = :run, consecutiveFailures = :zero REMOVE lastError',
          ExpressionAttributeValues: {
            ':run': lastRunOf(report, now),
            ...(failed ? { ':err': report.error, ':one': 1 } : { ':zero': 0 }),
          },
        },
      },
      this.table.leaseCheck(lease),
    ]);
  }

  async summary(sourceId: string): Promise<SourceSummary> {
    const pk = keys.sourcePk(sourceId);
    const [stats, status] = await Promise.all(
      [keys.statsSk, keys.statusSk].map((SK) =>
        this.table.db.send(
          new GetCommand({ TableName: this.table.tableName, Key: { PK: pk, SK }, ConsistentRead: true }),
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
    const out = await this.table.db.send(
      new GetCommand({
        TableName: this.table.tableName,
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
}
