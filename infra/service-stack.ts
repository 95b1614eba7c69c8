import {
  Aws,
  type CfnElement,
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  Validations,
  type StackProps,
} from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpUserPoolAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct, IConstruct } from 'constructs';
import type { MailStore } from './constructs/mail-store';
import {
  MailFunction,
  POWERTOOLS_METRICS_NAMESPACE,
  POWERTOOLS_SERVICE_NAME,
} from './constructs/mail-function';
import { SourceSecrets } from './constructs/source-secrets';
import { DETAILED_METRICS_VARIABLE, SYNC_FAILED_METRIC } from '../functions/shared/metric-names';

/**
 * Sizes and limits, each with the measurement or rule behind it (docs/benchmarks.md; docs/deploy.md explains the
 * cost). Lambda gives CPU in proportion to memory: 1,769 MB is one full vCPU.
 */
export const SIZING = {
  sync: {
    // A 2,000-message sync peaks near 300 MB RSS (294-303 MB), and it is CPU-bound: 22.9 s of CPU in a 29 s
    // run, 27 ms of CPU per MB of mail. At 1,769 MB it has one whole vCPU: a first sync runs about 1.7x faster
    // than at 1,024 MB (0.58 vCPU) for the same GB-seconds, since the duration shrinks as the memory grows. A
    // no-op poll (mostly network waits, 0.2-1 s) costs 1.7x more GB-seconds than at 1,024 MB, which is still a
    // few cents a month for a source polled every 5 minutes. Above 1,769 MB a second vCPU would sit idle: the
    // sync runs on one thread.
    memorySize: 1769,
    // Lambda's maximum: a first sync of a large mailbox does as much as it can per invocation. The handler stops
    // at its own budget before this, checkpointed, and re-enqueues its source for the rest.
    timeout: Duration.minutes(15),
  },
  dispatch: {
    // One query of the due-sources index and a few SendMessageBatch calls; 256 MB leaves room above the ~100 MB
    // that node and a loaded bundle take (docs/benchmarks.md: `tributary --help`, 96 MB).
    memorySize: 256,
    // The schedule's period: a run can never overlap the next minute's.
    timeout: Duration.minutes(1),
  },
  api: {
    // Inbox pages take under 20 ms in-process (p95 over 100,000 messages); 512 MB is for a shorter cold start
    // (loading the bundle is CPU-bound), not for the work.
    memorySize: 512,
    // Far above a page read (tens of ms) and its SDK retries; far below API Gateway's 30 s integration limit.
    timeout: Duration.seconds(10),
  },
} as const;

/** AWS's advice for a Lambda event source: the queue's visibility timeout at six times the function timeout. */
export const SYNC_VISIBILITY_FACTOR = 6;
/** Receives of one message before it goes to the dead-letter queue. */
export const SYNC_MAX_RECEIVE_COUNT = 5;

/**
 * How cdk-nag names the raw-mail objects (`<bucket ARN>/*`) in a policy of this stack: the bucket comes from the
 * storage stack, so its ARN is an import of that stack's export. The export's name follows from the bucket's
 * logical ID, which test/infra/storage.test.ts pins; if it ever changes, the nag test fails and names the new one.
 */
const RAW_MAIL_OBJECTS = 'TributaryStorage:ExportsOutputFnGetAttMailStoreRawMail90D1FC57Arn17CBFED5/*';
const RAW_MAIL_OBJECTS_REASON =
  'Every object of the one raw-mail bucket: keys are per message (content hashes), created by the sync as mail ' +
  'arrives, so they cannot be listed. The actions are named one by one (no s3:*Object* wildcard), and the ' +
  'wildcard reaches no other bucket.';

function acknowledgeWildcard(scope: IConstruct, resource: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `AwsSolutions::AwsSolutions-IAM5[Resource::${resource}]`, reason });
}

export interface ServiceStackProps extends StackProps {
  /** The retained store of the storage stack, received by reference. */
  readonly store: MailStore;
  /**
   * Where alarms are e-mailed (an SNS e-mail subscription, confirmed from the first message).
   * @default - no subscription: alarms go to the topic only
   */
  readonly alarmEmail?: string;
  /**
   * Where else Cognito may send the browser back after sign-in and sign-out, besides the page's own URL (the HTTP
   * API's), which is always allowed.
   * @default - the page's URL only
   */
  readonly callbackUrls?: string[];
  /**
   * At most this many syncs at once (the event source mapping's maximum concurrency, 2 to 1,000).
   * @default 5
   */
  readonly syncConcurrency?: number;
  /**
   * Also send each run's figures (runs, messages, bytes, duration, upstream deletions) as CloudWatch metrics:
   * five more custom metrics at $0.30 a month each (docs/cost.md). Without it only failures are metrics.
   * @default false
   */
  readonly detailedMetrics?: boolean;
  /**
   * The alarm fires when one source has failed this many runs in a row.
   * @default 3
   */
  readonly failingRunsBeforeAlarm?: number;
  /**
   * The SSM path of the sources' passwords.
   * @default `/tributary/<this stack's name>/sources/`
   */
  readonly secretsPrefix?: string;
}

/**
 * The stateless half of Tributary: the functions, the schedule, the sync queue, the HTTP API with its user pool,
 * and the alarms. Deleting it loses no mail: the store lives in the storage stack (RETAIN).
 */
export class ServiceStack extends Stack {
  readonly dispatch: MailFunction;
  readonly sync: MailFunction;
  readonly api: MailFunction;
  readonly syncQueue: sqs.Queue;
  readonly syncDeadLetters: sqs.Queue;
  readonly secrets: SourceSecrets;
  readonly userPool: cognito.UserPool;
  readonly webClient: cognito.UserPoolClient;
  readonly httpApi: apigwv2.HttpApi;
  readonly alarmTopic: sns.Topic;

  constructor(scope: Construct, id: string, props: ServiceStackProps) {
    super(scope, id, props);
    const { store } = props;
    this.secrets = new SourceSecrets(this, 'SourceSecrets', {
      prefix: props.secretsPrefix ?? `/tributary/${this.stackName}/sources/`,
    });
    const tableEnv = { TABLE_NAME: store.table.tableName };

    // --- The sync queue: one message per due source ---------------------------------------------------------------
    this.syncDeadLetters = new sqs.Queue(this, 'SyncDeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // The longest SQS keeps anything: time to read what failed before it is gone.
      retentionPeriod: Duration.days(14),
    });
    this.syncQueue = new sqs.Queue(this, 'SyncQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // 6 x 15 min = 90 min. AWS's rule for Lambda event sources: a message stays hidden while Lambda retries a
      // throttled invocation, so it is not received again (and counted towards the DLQ) meanwhile. The cost of a
      // long hide is only that a crashed run's message comes back late, and it costs no freshness: the
      // dispatcher's claim on the source runs out after 15 minutes and it sends the source again, and the
      // source's lease keeps two runs apart.
      visibilityTimeout: Duration.seconds(SIZING.sync.timeout.toSeconds() * SYNC_VISIBILITY_FACTOR),
      // A message older than a day is stale: the dispatcher will have sent a fresh one.
      retentionPeriod: Duration.days(1),
      deadLetterQueue: { queue: this.syncDeadLetters, maxReceiveCount: SYNC_MAX_RECEIVE_COUNT },
    });

    // --- Functions -------------------------------------------------------------------------------------------------
    const metricsEnv: Record<string, string> = props.detailedMetrics
      ? { [DETAILED_METRICS_VARIABLE]: 'true' }
      : {};
    this.dispatch = new MailFunction(this, 'Dispatch', {
      handler: 'dispatch',
      description: 'Tributary: every minute, one SQS message per source due for a poll',
      ...SIZING.dispatch,
      environment: { ...tableEnv, ...metricsEnv, QUEUE_URL: this.syncQueue.queueUrl },
    });
    store.grantClaimSources(this.dispatch);
    this.syncQueue.grantSendMessages(this.dispatch);
    // Lambda's own retries of an asynchronous invocation would overlap the next minute's run, which does the same.
    this.dispatch.function.configureAsyncInvoke({ retryAttempts: 0, maxEventAge: Duration.minutes(1) });

    this.sync = new MailFunction(this, 'Sync', {
      handler: 'sync',
      description: 'Tributary: syncs one source per SQS message into the store',
      ...SIZING.sync,
      environment: {
        ...tableEnv,
        ...metricsEnv,
        BUCKET_NAME: store.bucket.bucketName,
        SECRETS_PREFIX: this.secrets.prefix,
        QUEUE_URL: this.syncQueue.queueUrl,
      },
      // The sync re-enqueues its own source when its budget ends with mail still to fetch (a first sync of a large
      // mailbox). Lambda would cut such a chain after 16 hops and drop the message; the chain ends by itself when
      // the source is caught up, and maxConcurrency bounds what it can cost meanwhile.
      recursiveLoop: lambda.RecursiveLoop.ALLOW,
    });
    store.grantReadWriteMail(this.sync);
    this.secrets.grantRead(this.sync);
    acknowledgeWildcard(this.sync.role, RAW_MAIL_OBJECTS, RAW_MAIL_OBJECTS_REASON);
    acknowledgeWildcard(
      this.sync.role,
      `arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter${this.secrets.prefix}*`,
      'One SecureString per source, named after the source; sources are added after deployment (docs/deploy.md), so ' +
        "their names cannot be listed here. The wildcard is confined to this stack's prefix, and only the sync " +
        'function has it.',
    );
    acknowledgeWildcard(
      this.sync.role,
      'arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*',
      'The SecureStrings are encrypted with the AWS managed key alias/aws/ssm, whose key id differs in every ' +
        'account and region and cannot be named in the template; kms:ViaService (SSM in this region) and ' +
        'kms:CallerAccount confine the decrypt to parameters SSM reads for this account.',
    );
    this.syncQueue.grantSendMessages(this.sync);
    this.sync.function.addEventSource(
      new SqsEventSource(this.syncQueue, {
        batchSize: 1,
        reportBatchItemFailures: true,
        // Not reserved concurrency: that would throttle received messages (each throttle counts a receive towards
        // the DLQ) and cannot be set at all in a new account whose whole limit is 10.
        maxConcurrency: props.syncConcurrency ?? 5,
      }),
    );

    this.api = new MailFunction(this, 'Api', {
      handler: 'api',
      description: 'Tributary: the HTTP API and the web page',
      ...SIZING.api,
      pageAssets: true,
      // The sign-in settings (user pool, client, domain, the page's URL) are added below, once they exist.
      environment: {
        ...tableEnv,
        BUCKET_NAME: store.bucket.bucketName,
        QUEUE_URL: this.syncQueue.queueUrl,
      },
    });
    store.grantReadMailAndKeepInbox(this.api);
    acknowledgeWildcard(this.api.role, RAW_MAIL_OBJECTS, RAW_MAIL_OBJECTS_REASON);
    acknowledgeWildcard(
      this.api.role,
      'TributaryStorage:ExportsOutputFnGetAttMailStoreRawMail90D1FC57Arn17CBFED5/attachments/*',
      'Attachments the API extracts from a message for a presigned download, one object per message content and ' +
        'attachment index (attachments/<sha256>/<n>), so they cannot be listed; PutObject only, confined to that ' +
        'prefix, which a lifecycle rule empties after a day.',
    );
    // Sync now: a message on the sync queue, as the dispatcher sends.
    this.syncQueue.grantSendMessages(this.api);

    // --- Dispatch every minute -------------------------------------------------------------------------------------
    // Our own role rather than the target's shared default: only this account's schedules may assume it.
    const schedulerRole = new iam.Role(this, 'SchedulerRole', {
      description: 'Tributary: EventBridge Scheduler invoking the dispatcher',
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
      }),
    });
    acknowledgeWildcard(
      schedulerRole,
      `<${this.getLogicalId(this.dispatch.function.node.defaultChild as CfnElement)}.Arn>:*`,
      'Written by the Scheduler target (lambda.grantInvoke), which covers the versions and aliases of the dispatch ' +
        'function (ARN:*) as well as the function; there are none, and the wildcard reaches no other function.',
    );
    new scheduler.Schedule(this, 'DispatchSchedule', {
      description: 'Tributary: run the dispatcher every minute',
      schedule: scheduler.ScheduleExpression.rate(Duration.minutes(1)),
      // A missed minute is not worth retrying: the next one does the same work.
      target: new schedulerTargets.LambdaInvoke(this.dispatch.function, {
        role: schedulerRole,
        retryAttempts: 0,
        maxEventAge: Duration.minutes(1),
      }),
    });

    // --- Sign-in and the HTTP API ----------------------------------------------------------------------------------
    this.userPool = new cognito.UserPool(this, 'Users', {
      // Users are created by the owner (docs/deploy.md): nobody signs up to read someone's mail.
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      autoVerify: { email: true },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      passwordPolicy: {
        minLength: 12,
        requireLowercase: true,
        requireUppercase: true,
        requireDigits: true,
        requireSymbols: true,
        tempPasswordValidity: Duration.days(3),
      },
      // Everyone's whole mail is behind this sign-in: an authenticator app is required (managed login walks the user
      // through it at the first sign-in). No SMS: it costs money and is the weaker factor.
      mfa: cognito.Mfa.REQUIRED,
      mfaSecondFactor: { otp: true, sms: false },
      // Essentials, not Plus: see the acknowledgement below.
      featurePlan: cognito.FeaturePlan.ESSENTIALS,
      // Stateless like the rest of this stack: users are re-created with one command (docs/deploy.md).
      removalPolicy: RemovalPolicy.DESTROY,
    });
    Validations.of(this.userPool).acknowledge({
      id: 'AwsSolutions::AwsSolutions-COG8',
      reason:
        "The Plus plan's threat protection scores risky sign-ins of self-registered users; here users are created " +
        'by the owner, self sign-up is off and an authenticator app (TOTP) is required for every sign-in. Plus ' +
        'is charged for every monthly active user, where Essentials is free at this size.',
    });
    // The HTTP API first, without an authorizer: the web client's callback URL is the API's own URL (the page is
    // served there), and the JWT authorizer needs the client. Api <- Client <- Authorizer <- Routes is a chain, not a
    // cycle: CloudFormation creates the API, then the client with the API's endpoint, then the authorizer and the
    // routes (a defaultAuthorizer would need the client before the API exists).
    const accessLogs = new logs.LogGroup(this, 'ApiAccessLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.httpApi = new apigwv2.HttpApi(this, 'HttpApi', {
      description: 'Tributary: the web page and its API',
      createDefaultStage: false,
    });
    const pageUrl = `${this.httpApi.apiEndpoint}/`;
    const callbackUrls = [pageUrl, ...(props.callbackUrls ?? [])];
    this.webClient = this.userPool.addClient('WebClient', {
      // A page in a browser keeps no secret: authorization code with PKCE (the page sends the code challenge).
      generateSecret: false,
      authFlows: { userSrp: true },
      oAuth: {
        flows: { authorizationCodeGrant: true },
        scopes: [cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
        callbackUrls,
        logoutUrls: callbackUrls,
      },
      supportedIdentityProviders: [cognito.UserPoolClientIdentityProvider.COGNITO],
      preventUserExistenceErrors: true,
      accessTokenValidity: Duration.hours(1),
      idTokenValidity: Duration.hours(1),
      refreshTokenValidity: Duration.days(30),
    });
    // Managed login needs a domain; the prefix is unique per deployment (stack name and account).
    const domain = this.userPool.addDomain('Domain', {
      cognitoDomain: { domainPrefix: `${this.stackName.toLowerCase()}-${Aws.ACCOUNT_ID}` },
    });
    // What the app checks in every token's claims (besides API Gateway), and what the page signs in with.
    // A token's `iss`, spelled as the JWT authorizer spells it (ProviderURL lacks the scheme).
    this.api.function.addEnvironment(
      'USER_POOL_ISSUER',
      `https://cognito-idp.${Aws.REGION}.amazonaws.com/${this.userPool.userPoolId}`,
    );
    this.api.function.addEnvironment('USER_POOL_CLIENT_ID', this.webClient.userPoolClientId);
    this.api.function.addEnvironment('COGNITO_DOMAIN', domain.baseUrl());
    this.api.function.addEnvironment('REDIRECT_URI', pageUrl);

    const stage = this.httpApi.addStage('DefaultStage', {
      stageName: '$default',
      autoDeploy: true,
      // A ceiling on what a stolen token or a runaway page can cost; one person reading mail is far below it.
      throttle: { rateLimit: 20, burstLimit: 40 },
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(accessLogs),
        format: apigateway.AccessLogFormat.jsonWithStandardFields(),
      },
    });
    const integration = new HttpLambdaIntegration('ApiIntegration', this.api.function);
    // Every API route, whatever its method, behind the Cognito JWT authorizer.
    this.httpApi.addRoutes({
      path: '/api/{proxy+}',
      methods: [apigwv2.HttpMethod.ANY],
      integration,
      authorizer: new HttpUserPoolAuthorizer('Cognito', this.userPool, {
        userPoolClients: [this.webClient],
      }),
    });
    // The page itself: static files and its sign-in settings, nothing secret, read before anyone has a token.
    const open = new apigwv2.HttpNoneAuthorizer();
    for (const path of ['/', '/assets/{proxy+}', '/config.json']) {
      const [route] = this.httpApi.addRoutes({
        path,
        methods: [apigwv2.HttpMethod.GET],
        integration,
        authorizer: open,
      });
      Validations.of(route!).acknowledge(
        {
          id: 'AwsSolutions::AwsSolutions-APIG4',
          reason:
            'The web page (its HTML, script, stylesheet) and /config.json (the user pool domain and client id the ' +
            'page signs in with) must load before the user has a token; they hold no mail and no secret. Every ' +
            '/api route is behind the Cognito JWT authorizer.',
        },
        {
          id: 'AwsSolutions::AwsSolutions-COG4',
          reason:
            'The web page and its sign-in settings are public by design (the page is what signs the user in with ' +
            'Cognito); no mail is behind this route. Every /api route uses the Cognito user pool authorizer.',
        },
      );
    }

    // --- Alarms ----------------------------------------------------------------------------------------------------
    this.alarmTopic = new sns.Topic(this, 'Alarms', { displayName: 'Tributary alarms', enforceSSL: true });
    Validations.of(this.alarmTopic).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SNS2',
      reason:
        'Alarm notifications carry alarm names and metric values, never mail. CloudWatch cannot publish to a topic ' +
        'encrypted with the AWS managed key, and a customer managed key costs $1/month, more than an idle ' +
        'deployment of the rest.',
    });
    if (props.alarmEmail)
      this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    const notify = new cwActions.SnsAction(this.alarmTopic);
    const alarm = (id: string, alarmProps: cloudwatch.AlarmProps) => {
      const a = new cloudwatch.Alarm(this, id, {
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...alarmProps,
      });
      a.addAlarmAction(notify);
      a.addOkAction(notify);
      return a;
    };
    alarm('DeadLettersAlarm', {
      alarmDescription: 'Tributary: a sync message failed 5 times and is in the dead-letter queue',
      metric: this.syncDeadLetters.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(5),
        statistic: cloudwatch.Stats.MAXIMUM,
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
    });
    alarm('SyncErrorsAlarm', {
      alarmDescription: 'Tributary: the sync function failed or timed out',
      metric: this.sync.function.metricErrors({
        period: Duration.minutes(5),
        statistic: cloudwatch.Stats.SUM,
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
    });
    alarm('DispatchErrorsAlarm', {
      alarmDescription:
        'Tributary: the dispatcher failed in each of the last three 5-minute periods: sources are not being polled',
      metric: this.dispatch.function.metricErrors({
        period: Duration.minutes(5),
        statistic: cloudwatch.Stats.SUM,
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
    });
    const failingRuns = props.failingRunsBeforeAlarm ?? 3;
    alarm('SourceFailingAlarm', {
      alarmDescription: `Tributary: a source has failed ${failingRuns} runs in a row (its error is in the sync logs and in "tributary sources list")`,
      // The sync handler emits SyncFailed once per failed source run, its value the source's consecutive failures
      // after that run (1, 2, 3, ...). The maximum over any of the last 4 quarter hours: the alarm stays on while a
      // source polled at least hourly keeps failing, instead of flapping between polls.
      metric: new cloudwatch.Metric({
        namespace: POWERTOOLS_METRICS_NAMESPACE,
        metricName: SYNC_FAILED_METRIC,
        dimensionsMap: { service: POWERTOOLS_SERVICE_NAME },
        statistic: cloudwatch.Stats.MAXIMUM,
        period: Duration.minutes(15),
      }),
      threshold: failingRuns,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 4,
      datapointsToAlarm: 1,
    });

    // --- What docs/deploy.md needs ---------------------------------------------------------------------------------
    const output = (name: string, value: string, description: string) =>
      new CfnOutput(this, name, { value, description });
    output('UserPoolId', this.userPool.userPoolId, 'aws cognito-idp admin-create-user --user-pool-id <this>');
    output('UserPoolClientId', this.webClient.userPoolClientId, 'the web page app client (no secret)');
    output('SignInUrl', domain.baseUrl(), 'Cognito managed login for this pool');
    output('ApiUrl', stage.url, 'the web page; its /api routes need a Cognito token');
    output('SyncQueueUrl', this.syncQueue.queueUrl, 'one message per source to sync');
    output('SyncDeadLetterQueueUrl', this.syncDeadLetters.queueUrl, 'sync messages that failed 5 times');
    output('TableName', store.table.tableName, 'the inbox index (storage stack, retained)');
    output('BucketName', store.bucket.bucketName, 'raw mail (storage stack, retained)');
    output(
      'SecretsPrefix',
      this.secrets.prefix,
      'aws ssm put-parameter --type SecureString --name <this><id>',
    );
    output('AlarmTopicArn', this.alarmTopic.topicArn, 'subscribe here to receive the alarms');
  }
}
