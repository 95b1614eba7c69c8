import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { MailStore } from './constructs/mail-store';

/** Stateful resources apart from the stateless service (docs/contributing.md, infrastructure): the service receives the store by reference. */
export class StorageStack extends Stack {
  readonly store: MailStore;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    this.store = new MailStore(this, 'MailStore');
    new CfnOutput(this, 'BucketName', { value: this.store.bucket.bucketName });
    new CfnOutput(this, 'TableName', { value: this.store.table.tableName });
  }
}
