import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { keys } from '../../functions/adapters/dynamodb/keys';
import { TABLE } from '../../functions/adapters/dynamodb/table';
import { ATTACHMENTS_PREFIX } from '../../functions/web/downloads';

/** Item reads, including those of a TransactGetItems. */
const TABLE_READ = ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query'];
/** Item writes, including those of a TransactWriteItems (its condition checks need ConditionCheckItem). */
const TABLE_WRITE = [
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:ConditionCheckItem',
];

/**
 * The consolidated inbox's state: raw messages in S3, metadata, sync state, leases and audit in one DynamoDB
 * table. Stateful, so RETAIN: deleting the stack must never delete anyone's mail.
 */
export class MailStore extends Construct {
  readonly bucket: s3.Bucket;
  readonly table: dynamodb.TableV2;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ expiration: Duration.days(365) }],
    });
    Validations.of(accessLogs).acknowledge({
      id: 'AwsSolutions::AwsSolutions-S1',
      reason: 'This is the access-log bucket of the raw-mail bucket; logging it into itself would loop.',
    });
    this.bucket = new s3.Bucket(this, 'RawMail', {
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'raw-mail/',
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        // Re-uploads after a crash overwrite the same key; old versions are only a safety net.
        {
          noncurrentVersionExpiration: Duration.days(30),
          abortIncompleteMultipartUploadAfter: Duration.days(2),
        },
        // Attachments the web API extracted for a presigned download: a cache, made again on demand.
        {
          id: 'ExtractedAttachments',
          prefix: ATTACHMENTS_PREFIX,
          expiration: Duration.days(1),
          noncurrentVersionExpiration: Duration.days(1),
        },
      ],
    });
    const key = (name: string) => ({ name, type: dynamodb.AttributeType.STRING });
    this.table = new dynamodb.TableV2(this, 'Index', {
      partitionKey: key(TABLE.partitionKey),
      sortKey: key(TABLE.sortKey),
      billing: dynamodb.Billing.onDemand(),
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TABLE.ttlAttribute,
      removalPolicy: RemovalPolicy.RETAIN,
      globalSecondaryIndexes: Object.values(TABLE.indexes).map((i) => ({
        indexName: i.name,
        partitionKey: key(i.partitionKey),
        sortKey: key(i.sortKey),
      })),
    });
  }

  /** The table and each of its indexes by name (no `index/*`): a new index in TABLE is covered when it exists. */
  private tableArns(): { table: string; indexes: string[] } {
    const table = this.table.tableArn;
    return { table, indexes: Object.values(TABLE.indexes).map((i) => `${table}/index/${i.name}`) };
  }

  /**
   * Objects, and the bucket itself for s3:ListBucket only: without it S3 answers a HeadObject of a missing key
   * with 403 instead of 404, and the adapter reads 404 as "not stored".
   */
  private grantObjects(grantee: iam.IGrantable, actions: string[]): void {
    iam.Grant.addToPrincipal({ grantee, actions, resourceArns: [this.bucket.arnForObjects('*')] });
    iam.Grant.addToPrincipal({ grantee, actions: ['s3:ListBucket'], resourceArns: [this.bucket.bucketArn] });
  }

  private grantTable(grantee: iam.IGrantable, actions: string[]): void {
    const arns = this.tableArns();
    iam.Grant.addToPrincipal({ grantee, actions, resourceArns: [arns.table] });
    iam.Grant.addToPrincipal({ grantee, actions: ['dynamodb:Query'], resourceArns: arns.indexes });
  }

  /**
   * The sync: write raw objects (PutObject, multipart uploads and their abort) and read them back (the check
   * before an upstream delete), delete its own duplicate of registered bytes and evicted copies (decision 0007),
   * and read and write the table (commits in transactions, leases, checkpoints, audit, the schedule). Explicit
   * actions rather than `s3:*Object*`-style wildcards; no Scan (the code never scans).
   */
  grantReadWriteMail(grantee: iam.IGrantable): void {
    this.grantObjects(grantee, [
      's3:GetObject',
      's3:PutObject',
      's3:DeleteObject',
      's3:AbortMultipartUpload',
    ]);
    this.grantTable(grantee, [...TABLE_READ, ...TABLE_WRITE]);
  }

  /**
   * The dispatcher: find the sources that are due (a query of the due index) and claim each one it sends (a
   * conditional update of the source's registry entry). Nothing else: no message's metadata (its keys are confined
   * to the registry partition by `dynamodb:LeadingKeys`) and no message's bytes (no S3 access at all).
   */
  grantClaimSources(grantee: iam.IGrantable): void {
    const arns = this.tableArns();
    const dueIndex = `${arns.table}/index/${TABLE.indexes.due.name}`;
    iam.Grant.addToPrincipal({ grantee, actions: ['dynamodb:Query'], resourceArns: [dueIndex] });
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem'],
      resourceArns: [arns.table],
      conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [keys.registryPartition] } },
    });
  }

  /**
   * A reader of the table and the raw objects (a message's bytes, presigned URLs). Nothing is written.
   */
  grantReadMail(grantee: iam.IGrantable): void {
    this.grantObjects(grantee, ['s3:GetObject']);
    this.grantTable(grantee, TABLE_READ);
  }

  /**
   * The web API (issue #15): read mail (messages, and presigned URLs, which are signed with this grant), keep the
   * inbox (read state and removal: UpdateItem on merged entries and message items, PutItem of the removal's audit
   * record, in one TransactWriteItems), and write the attachments it extracts for a download under
   * `attachments/` only. No DeleteItem, no DeleteObject: nothing a reader does removes stored mail.
   */
  grantReadMailAndKeepInbox(grantee: iam.IGrantable): void {
    this.grantObjects(grantee, ['s3:GetObject']);
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['s3:PutObject'],
      resourceArns: [this.bucket.arnForObjects(`${ATTACHMENTS_PREFIX}*`)],
    });
    this.grantTable(grantee, [...TABLE_READ, 'dynamodb:UpdateItem', 'dynamodb:PutItem']);
  }
}
