import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { buildApp } from '../../infra/app';

/** Synthesized once per file; bundling and the CFN validator are off here and on in the CI `cdk synth`. */
const { app, storage } = buildApp(
  new App({ context: { 'aws:cdk:bundling-stacks': [] }, builtinCloudFormationValidation: false }),
);
let nagError: unknown;
try {
  app.synth();
} catch (err) {
  nagError = err;
}
const template = Template.fromStack(storage);

describe('StorageStack', () => {
  it('passes cdk-nag AwsSolutions with every acknowledged finding explained', () => {
    expect(nagError).toBeUndefined();
  });

  it('keeps raw mail private, encrypted, TLS-only and retained', () => {
    const resources = template.toJSON() as { Resources: Record<string, { DeletionPolicy?: string }> };
    const rawMail = resources.Resources.MailStoreRawMail90D1FC57;
    expect(rawMail).toBeDefined();
    expect(rawMail?.DeletionPolicy).toBe('Retain');
    expect(rawMail).toMatchObject({ Properties: { LoggingConfiguration: { LogFilePrefix: 'raw-mail/' } } });
    template.hasResource('AWS::S3::Bucket', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        BucketEncryption: Match.anyValue(),
      }),
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: Match.objectLike({
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      }),
    });
  });

  it('has the inbox table with its three GSIs, TTL and point-in-time recovery, retained', () => {
    template.hasResource('AWS::DynamoDB::GlobalTable', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        KeySchema: [
          { AttributeName: 'PK', KeyType: 'HASH' },
          { AttributeName: 'SK', KeyType: 'RANGE' },
        ],
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        GlobalSecondaryIndexes: Match.arrayWith([Match.objectLike({ IndexName: 'GSI1' })]),
      }),
    });
    const [table] = Object.values(template.findResources('AWS::DynamoDB::GlobalTable'));
    const gsis = (table as { Properties: { GlobalSecondaryIndexes: Array<{ IndexName: string }> } })
      .Properties.GlobalSecondaryIndexes;
    expect(gsis.map((g) => g.IndexName).sort()).toEqual(['GSI1', 'GSI2', 'GSI3']);
  });

  it('expires the attachments the web API extracts for downloads after a day, and nothing else by that rule', () => {
    const rawMail = (
      template.toJSON() as {
        Resources: Record<string, { Properties: { LifecycleConfiguration: { Rules: unknown[] } } }>;
      }
    ).Resources.MailStoreRawMail90D1FC57!;
    expect(rawMail.Properties.LifecycleConfiguration.Rules).toEqual([
      expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: 'Enabled' }),
      {
        Id: 'ExtractedAttachments',
        Prefix: 'attachments/',
        ExpirationInDays: 1,
        NoncurrentVersionExpiration: { NoncurrentDays: 1 },
        Status: 'Enabled',
      },
    ]);
    // The raw messages' prefix is not under it.
    expect('raw/a/b.eml'.startsWith('attachments/')).toBe(false);
  });

  it('pins the logical IDs of stateful resources (renaming one would replace the data)', () => {
    expect(Object.keys(template.findResources('AWS::S3::Bucket')).sort()).toEqual([
      'MailStoreAccessLogs5B64787B',
      'MailStoreRawMail90D1FC57',
    ]);
    expect(Object.keys(template.findResources('AWS::DynamoDB::GlobalTable'))).toEqual([
      'MailStoreIndexD5E30981',
    ]);
  });
});
