import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { LeaseLostError, StorageError } from '../../core/errors';
import type {
  Address,
  FolderState,
  MessageMetadata,
  MessageRecord,
  SourceRunReport,
  UpstreamId,
} from '../../core/model';
import { identityKey } from '../../core/model';
import type { Lease, MessageIndex } from '../../core/ports';
import { keys } from './keys';
import { TABLE } from './table';

type Item = Record<string, unknown>;

export interface SourceSummary {
  sourceId: string;
  messages: number;
  bytes: number;
  lastRun?: { at: string; outcome: string; fetched: number; error?: { code: string; message: string } };
  consecutiveFailures: number;
}

/**
 * MessageIndex on DynamoDB. Every read that decides a write (dedupe, lease, checkpoint) is a strongly
 * consistent read of the base table; GSIs only serve the reader. Every write that changes state carries a
 * ConditionCheck on the lease's fencing number.
 */
export class DynamoMessageIndex implements MessageIndex {
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
      if (err instanceof ConditionalCheckFailedException) return undefined;
      throw new StorageError(`could not take the lease of source ${sourceId}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async renewLease(lease: Lease, ttlMs: number, now: number): Promise<Lease> {
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

  async releaseLease(lease: Lease): Promise<void> {
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
    const { Item } = await this.db.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { PK: keys.sourcePk(sourceId), SK: keys.folderStateSk(folder) },
        ConsistentRead: true,
      }),
    );
    if (!Item) return undefined;
    return {
      folder,
      uidValidity: String(Item.uidValidity),
      committedThroughUid: Number(Item.committedThroughUid),
      uidNext: Number(Item.uidNext),
      highestModseq: Item.highestModseq as string | undefined,
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

  async commitMessage(lease: Lease, record: MessageRecord): Promise<'committed' | 'exists'> {
    const pk = keys.sourcePk(record.sourceId);
    const inboxSk = keys.inboxSk(record.sortDate, record.sourceId, record.identity);
    return this.transact(lease, [
      {
        Put: {
          TableName: this.tableName,
          Item: {
            PK: pk,
            SK: keys.messageSk(record.identity),
            type: 'message',
            ...record,
            metadata: fitMetadata(record.metadata),
            [TABLE.indexes.inbox.partitionKey]: keys.inboxPk,
            [TABLE.indexes.inbox.sortKey]: inboxSk,
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
      {
        Update: {
          TableName: this.tableName,
          Key: { PK: pk, SK: keys.statsSk },
          UpdateExpression: 'ADD messages :one, bytes :size',
          ExpressionAttributeValues: { ':one': 1, ':size': record.object.size },
        },
      },
      this.leaseCheck(lease),
    ]);
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
  private async transact(
    lease: Lease,
    items: NonNullable<ConstructorParameters<typeof TransactWriteCommand>[0]['TransactItems']>,
  ): Promise<'committed' | 'exists'> {
    try {
      await this.db.send(new TransactWriteCommand({ TransactItems: items }));
      return 'committed';
    } catch (err) {
      if (err instanceof TransactionCanceledException) {
        const reasons = err.CancellationReasons ?? [];
        if (reasons[reasons.length - 1]?.Code === 'ConditionalCheckFailed')
          throw new LeaseLostError(lease.sourceId);
        if (reasons[0]?.Code === 'ConditionalCheckFailed') return 'exists';
      }
      throw new StorageError(`DynamoDB write failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async recordRun(report: SourceRunReport, now: number): Promise<void> {
    const failed = report.outcome === 'failed';
    await this.db.send(
      new UpdateCommand({
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
            durationMs: report.durationMs,
            notes: report.notes,
            ...(report.error ? { error: report.error } : {}),
          },
          ...(failed ? { ':err': report.error, ':one': 1 } : { ':zero': 0 }),
        },
      }),
    );
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

  async listInbox(options: {
    sourceId?: string;
    limit: number;
    cursor?: string;
  }): Promise<{ items: MessageRecord[]; cursor?: string }> {
    const index = options.sourceId ? TABLE.indexes.sourceInbox : TABLE.indexes.inbox;
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: index.name,
        KeyConditionExpression: `${index.partitionKey} = :p`,
        ExpressionAttributeValues: {
          ':p': options.sourceId ? keys.sourcePk(options.sourceId) : keys.inboxPk,
        },
        ScanIndexForward: false,
        Limit: options.limit,
        ExclusiveStartKey: options.cursor
          ? (JSON.parse(Buffer.from(options.cursor, 'base64url').toString()) as Item)
          : undefined,
      }),
    );
    return {
      items: (out.Items ?? []).map(toRecord),
      cursor: out.LastEvaluatedKey
        ? Buffer.from(JSON.stringify(out.LastEvaluatedKey)).toString('base64url')
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
      const out = await this.db.send(
        new QueryCommand({
          ...input,
          TableName: this.tableName,
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of out.Items ?? []) yield item;
      start = out.LastEvaluatedKey;
    } while (start);
  }
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
