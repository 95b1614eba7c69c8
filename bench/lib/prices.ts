/**
 * The prices bench/cost.ts uses: AWS list prices in us-east-1 (N. Virginia), without any free tier, and the
 * always-free allowances beside them. Each with where it was read and what date that page shows. Looked up on
 * 2026-12-04 in stored copies of the pages (no live AWS page could be fetched from here): where the official page's
 * copy carries no date, a dated secondary page that quotes the same figure is named as well. Check the official
 * pages before relying on a figure.
 */

export const PRICES_CHECKED_ON = '2026-12-04';

export interface Price {
  /** Dollars per `unit`. */
  usd: number;
  unit: string;
  source: string;
  /** The date the source shows (or that it shows none). */
  dated: string;
  note?: string;
}

export interface FreeTier {
  amount: number;
  unit: string;
  source: string;
  /** Always free (does not expire), or only in an account's first 12 months / not at all. */
  alwaysFree: boolean;
  note?: string;
}

const LAMBDA_PAGE = 'https://aws.amazon.com/lambda/pricing/';
const SQS_GUIDE = 'https://cloudburn.io/blog/amazon-sqs-pricing';
const CW_PAGE = 'https://aws.amazon.com/cloudwatch/pricing/';
const CW_GUIDE = 'https://cloudburn.io/blog/amazon-cloudwatch-pricing';

export const PRICES = {
  lambdaArmGbSecond: {
    usd: 0.0000133334,
    unit: 'GB-second, arm64 (first 7.5 billion GB-s a month)',
    source: `${LAMBDA_PAGE}; quoted by https://cloudchipr.com/blog/aws-lambda-pricing`,
    dated:
      'official copy undated; cloudchipr "2024"; the same figure in a guide dated 2026-05-11 (git.mcrn.ar lambda_local_runner docs/lambdas-md/lambda-13-cost.md)',
    note: 'Since 2025-08-01 the INIT phase of ZIP functions on managed runtimes is billed like the handler (AWS Compute Blog, "AWS Lambda standardizes billing for INIT Phase", 2025-04-29).',
  },
  lambdaRequest: {
    usd: 0.2 / 1e6,
    unit: 'request',
    source: LAMBDA_PAGE,
    dated: 'official copy undated; same in the 2026-05-11 guide above',
  },
  sqsRequest: {
    usd: 0.4 / 1e6,
    unit: 'request (standard queue; each 64 KB chunk of a payload is one request)',
    source: SQS_GUIDE,
    dated:
      '2026-03-14 ("all prices US East as of March 2026"); the same in https://www.factualminds.com/blog/amazon-sqs-pricing-64kb-rule-fifo-vs-standard/ (2026-06-13)',
  },
  schedulerInvocation: {
    usd: 1.0 / 1e6,
    unit: 'EventBridge Scheduler invocation',
    source: 'https://cloudburn.io/blog/amazon-eventbridge-pricing',
    dated: '2026-03-13',
  },
  dynamoWru: {
    usd: 0.625 / 1e6,
    unit: 'on-demand write request unit',
    source: 'https://airbyte.com/data-engineering-resources/dynamodb-pricing',
    dated:
      '2025-07-21 (after the 50% on-demand cut of 2024-11-01; AWS News Blog post on on-demand updated 2025-01-31)',
    note: 'One guide dated 2026-03-08 (wring.co) still quotes the pre-cut $1.25; with it every DynamoDB write line below doubles.',
  },
  dynamoRru: {
    usd: 0.125 / 1e6,
    unit: 'on-demand read request unit',
    source: 'https://airbyte.com/data-engineering-resources/dynamodb-pricing',
    dated: '2025-07-21',
  },
  dynamoStorageGbMonth: {
    usd: 0.25,
    unit: 'GB-month (Standard table class)',
    source: 'https://aws.amazon.com/dynamodb/pricing/',
    dated: 'official copy undated',
  },
  s3PutRequest: {
    usd: 0.005 / 1000,
    unit: 'PUT, COPY, POST or LIST request (S3 Standard)',
    source:
      'https://aws.amazon.com/s3/pricing/ (stored copy); quoted by https://devnotes.tech/understanding-aws-s3-pricing-a-complete-cost-breakdown-with-examples',
    dated: 'undated copies',
  },
  s3GetRequest: {
    usd: 0.0004 / 1000,
    unit: 'GET, SELECT and other request (S3 Standard)',
    source: 'as above',
    dated: 'undated copies',
  },
  s3StorageGbMonth: {
    usd: 0.023,
    unit: 'GB-month (S3 Standard, first 50 TB)',
    source: 'as above; https://deepeshsoni.com/archives/256',
    dated: 'undated copies',
  },
  logsIngestGb: {
    usd: 0.5,
    unit: 'GB ingested (CloudWatch Logs Standard; Lambda logs are billed from the same $0.50 first tier)',
    source: `${CW_GUIDE}; https://hykell.com/kb/platform-specific-guides/aws-cloudwatch-logs-pricing`,
    dated: '"as of February 2026"',
  },
  logsStorageGbMonth: {
    usd: 0.03,
    unit: 'GB-month archived',
    source: CW_GUIDE,
    dated: '"as of February 2026"',
  },
  customMetricMonth: {
    usd: 0.3,
    unit: 'custom metric a month (first 10,000; prorated by the hour it is sent)',
    source: `${CW_GUIDE}; https://signoz.io/guides/cloudwatch-pricing`,
    dated: 'February 2026 (signoz: updated 2026-02-15)',
  },
  alarmMonth: {
    usd: 0.1,
    unit: 'standard-resolution alarm metric a month',
    source: CW_GUIDE,
    dated: '"as of February 2026"',
  },
  kmsRequest: {
    usd: 0.03 / 10000,
    unit: 'KMS request (symmetric key)',
    source: 'https://aws.amazon.com/kms/pricing/; https://cloudburn.io/blog/aws-kms-pricing',
    dated: 'official copy undated; cloudburn 2026-03-14',
    note: 'AWS managed keys (aws/ssm) cost nothing to keep, but requests to them are charged (the official page, note 1). SSM decrypts a SecureString with KMS on every GetParameter WithDecryption.',
  },
  ssmStandardParameter: {
    usd: 0,
    unit: 'standard parameter and its API calls at standard throughput',
    source:
      'https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html ("Cost: No additional charge")',
    dated: 'undated',
  },
  httpApiRequest: {
    usd: 1.0 / 1e6,
    unit: 'HTTP API request (first 300 million)',
    source: 'https://aws.amazon.com/api-gateway/pricing/',
    dated: 'not re-checked: no request in either scenario',
  },
  cognitoMau: {
    usd: 0,
    unit: 'monthly active user (Essentials, up to 10,000)',
    source: 'https://aws.amazon.com/cognito/pricing/',
    dated: 'not re-checked: no sign-in in either scenario',
  },
} satisfies Record<string, Price>;

export type PriceName = keyof typeof PRICES;

/** The always-free monthly allowances (per account, shared with anything else the account runs). */
export const FREE_TIERS = {
  lambdaGbSeconds: {
    amount: 400_000,
    unit: 'GB-s (x86 and arm64 together)',
    source: LAMBDA_PAGE,
    alwaysFree: true,
  },
  lambdaRequests: { amount: 1_000_000, unit: 'requests', source: LAMBDA_PAGE, alwaysFree: true },
  sqsRequests: { amount: 1_000_000, unit: 'requests', source: SQS_GUIDE, alwaysFree: true },
  schedulerInvocations: {
    amount: 14_000_000,
    unit: 'invocations',
    source: 'https://cloudburn.io/blog/amazon-eventbridge-pricing',
    alwaysFree: true,
  },
  dynamoStorageGb: {
    amount: 25,
    unit: 'GB-month',
    source: 'https://aws.amazon.com/dynamodb/pricing/ ("does not expire")',
    alwaysFree: true,
    note: "The free 25 WCU / 25 RCU are provisioned capacity: they do not apply to an on-demand table's request units.",
  },
  customMetrics: { amount: 10, unit: 'metrics', source: CW_PAGE, alwaysFree: true },
  alarms: { amount: 10, unit: 'standard alarm metrics', source: CW_PAGE, alwaysFree: true },
  logsGb: {
    amount: 5,
    unit: 'GB of ingestion, archive storage and Logs Insights scans together',
    source: CW_PAGE,
    alwaysFree: true,
  },
  kmsRequests: {
    amount: 20_000,
    unit: 'requests (all regions)',
    source: 'https://aws.amazon.com/kms/pricing/',
    alwaysFree: true,
  },
  s3: {
    amount: 0,
    unit: 'S3 has no always-free tier (5 GB and 2,000 PUTs for 12 months in accounts that have it)',
    source: 'https://cloudian.com/blog/5-components-of-aws-s3-storage-pricing/',
    alwaysFree: false,
  },
} satisfies Record<string, FreeTier>;

export type FreeTierName = keyof typeof FREE_TIERS;
