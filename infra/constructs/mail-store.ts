import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { TABLE } from '../../functions/adapters/dynamodb/table';

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

  /** What a sync needs: write raw objects, read them back to verify, read/write the table. */
  grantWriteMessages(grantee: iam.IGrantable): void {
    this.bucket.grantReadWrite(grantee);
    this.table.grantReadWriteData(grantee);
  }

  /** What the reader API needs: read objects (presigned URLs) and the table, and mark/delete in the inbox. */
  grantReadMessages(grantee: iam.IGrantable): void {
    this.bucket.grantRead(grantee);
    this.table.grantReadWriteData(grantee);
  }
}
