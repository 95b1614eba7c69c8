import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { TributaryError } from '../../core/errors';
import type { MessageRecord } from '../../core/model';
import type { SourceMessages } from '../../core/ports';
import type { IndexTable } from './fencing';
import { keys } from './keys';
import { toMergedRecord, toRecord } from './records';
import { TABLE } from './table';

/** The stored messages for the CLI: inbox pages (merged or one source's) and a source's messages in order. */
export class DynamoSourceMessages implements SourceMessages {
  constructor(private readonly table: IndexTable) {}

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
    const out = await this.table.db.send(
      new QueryCommand({
        TableName: this.table.tableName,
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
    for await (const item of this.table.query({
      KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
      ExpressionAttributeValues: { ':pk': keys.sourcePk(sourceId), ':p': keys.messagePrefix },
    })) {
      if (item.type === 'message') yield toRecord(item);
    }
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
