import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';

/**
 * The one table's shape, shared by the CDK storage stack and the local/test setup so they cannot drift.
 * Base keys PK/SK hold everything read with strong consistency (messages of a source, sync state, leases);
 * the GSIs serve the reader: the merged inbox, one source's inbox, and the sources due for a poll.
 */
export const TABLE = {
  partitionKey: 'PK',
  sortKey: 'SK',
  ttlAttribute: 'expiresAt',
  indexes: {
    inbox: { name: 'GSI1', partitionKey: 'GSI1PK', sortKey: 'GSI1SK' },
    sourceInbox: { name: 'GSI2', partitionKey: 'GSI2PK', sortKey: 'GSI2SK' },
    due: { name: 'GSI3', partitionKey: 'GSI3PK', sortKey: 'GSI3SK' },
  },
} as const;

export function createTableInput(tableName: string): CreateTableCommandInput {
  const indexes = Object.values(TABLE.indexes);
  const attributes = [
    TABLE.partitionKey,
    TABLE.sortKey,
    ...indexes.flatMap((i) => [i.partitionKey, i.sortKey]),
  ];
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: attributes.map((name) => ({ AttributeName: name, AttributeType: 'S' })),
    KeySchema: [
      { AttributeName: TABLE.partitionKey, KeyType: 'HASH' },
      { AttributeName: TABLE.sortKey, KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: indexes.map((i) => ({
      IndexName: i.name,
      KeySchema: [
        { AttributeName: i.partitionKey, KeyType: 'HASH' },
        { AttributeName: i.sortKey, KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'ALL' },
    })),
  };
}
