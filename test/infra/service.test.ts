import fs from 'node:fs';
import path from 'node:path';
import { App, type CfnElement, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { buildApp } from '../../infra/app';
import { STACK_OUTPUTS } from '../../functions/shared/deployment';
import { DETAILED_METRICS_VARIABLE } from '../../functions/shared/metric-names';
import type { MailFunction } from '../../infra/constructs/mail-function';
import type { IConstruct } from 'constructs';

/**
 * Synthesized once per app (cdk-nag on, as in app.ts); bundling and the CFN validator are off here and on in the
 * CI `cdk synth`. The default app has no context; the second one sets every context value the service stack reads.
 */
function synth(context: Record<string, unknown> = {}) {
  const built = buildApp(
    new App({
      context: { 'aws:cdk:bundling-stacks': [], ...context },
      builtinCloudFormationValidation: false,
    }),
  );
  let nagError: unknown;
  try {
    built.app.synth();
  } catch (err) {
    nagError = err;
  }
  // Read back what synth wrote rather than Template.fromStack, which would synthesize (and validate) again: a nag
  // finding then fails its own test below, and every other test still runs.
  const file = path.join(built.app.outdir, built.service.templateFile);
  return {
    ...built,
    nagError,
    template: Template.fromJSON(JSON.parse(fs.readFileSync(file, 'utf8')) as object),
  };
}

const { app, service, template, nagError } = synth();
const configured = synth({
  alarmEmail: 'owner@example.com',
  callbackUrls: 'https://mail.example.com/callback, http://localhost:3000/',
  syncConcurrency: '3',
  detailedMetrics: 'true',
});

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };
type Resource = { Type: string; Properties: Record<string, unknown>; DeletionPolicy?: string };
type Policy = { Properties: { Roles: unknown; PolicyDocument: { Statement: Statement[] } } };
const policies = () => Object.entries(template.findResources('AWS::IAM::Policy') as Record<string, Policy>);
const resources = (template.toJSON() as { Resources: Record<string, Resource> }).Resources;

const logicalId = (fn: MailFunction, part: 'function' | 'role' | 'logGroup') =>
  service.getLogicalId(fn[part].node.defaultChild as CfnElement);

/** Every statement of every policy attached to the function's role. */
function statementsOf(fn: MailFunction): Statement[] {
  const role = logicalId(fn, 'role');
  const attached = JSON.stringify([{ Ref: role }]);
  return policies()
    .filter(([, p]) => JSON.stringify(p.Properties.Roles) === attached)
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement);
}
const actionsOf = (fn: MailFunction) =>
  new Set(statementsOf(fn).flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])));
const statementsWith = (fn: MailFunction, action: string) =>
  statementsOf(fn).filter((s) => ([] as string[]).concat(s.Action).includes(action));

/** Every acknowledged finding in the app with its written reason. */
function acknowledgements(root: App): Array<{ path: string; id: string; reason: string }> {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) =>
        Object.entries(m.data as Record<string, string>).map(([id, reason]) => ({
          path: c.node.path,
          id,
          reason,
        })),
      ),
  );
}

describe('ServiceStack', () => {
  describe('cdk-nag', () => {
    it('passes AwsSolutions with no unacknowledged finding', () => {
      expect(nagError).toBeUndefined();
      expect(configured.nagError).toBeUndefined();
    });

    it('acknowledges only the findings listed here, each with a written reason', () => {
      const acks = acknowledgements(app).filter((a) => a.path.startsWith('TributaryService/'));
      for (const ack of acks) expect(ack.reason.length).toBeGreaterThan(80);
      expect(
        acks.map((a) => `${a.path} ${a.id.replace(/\[Resource::(.*)\]$/, '[Resource]')}`).sort(),
      ).toEqual([
        'TributaryService/Alarms AwsSolutions::AwsSolutions-SNS2',
        'TributaryService/Api/Function AwsSolutions::AwsSolutions-L1',
        'TributaryService/Api/Role AwsSolutions::AwsSolutions-IAM5[Resource]',
        'TributaryService/Api/Role AwsSolutions::AwsSolutions-IAM5[Resource]',
        'TributaryService/Dispatch/Function AwsSolutions::AwsSolutions-L1',
        'TributaryService/HttpApi/GET-- AwsSolutions::AwsSolutions-APIG4',
        'TributaryService/HttpApi/GET-- AwsSolutions::AwsSolutions-COG4',
        'TributaryService/HttpApi/GET--assets--{proxy+} AwsSolutions::AwsSolutions-APIG4',
        'TributaryService/HttpApi/GET--assets--{proxy+} AwsSolutions::AwsSolutions-COG4',
        'TributaryService/HttpApi/GET--config.json AwsSolutions::AwsSolutions-APIG4',
        'TributaryService/HttpApi/GET--config.json AwsSolutions::AwsSolutions-COG4',
        'TributaryService/SchedulerRole AwsSolutions::AwsSolutions-IAM5[Resource]',
        'TributaryService/Sync/Function AwsSolutions::AwsSolutions-L1',
        'TributaryService/Sync/Role AwsSolutions::AwsSolutions-IAM5[Resource]',
        'TributaryService/Sync/Role AwsSolutions::AwsSolutions-IAM5[Resource]',
        'TributaryService/Sync/Role AwsSolutions::AwsSolutions-IAM5[Resource]',
        'TributaryService/Users AwsSolutions::AwsSolutions-COG8',
      ]);
    });
  });

  describe('dispatch', () => {
    it('runs the dispatcher every minute, without retries of a missed minute', () => {
      template.resourceCountIs('AWS::Scheduler::Schedule', 1);
      template.hasResourceProperties('AWS::Scheduler::Schedule', {
        ScheduleExpression: 'rate(1 minute)',
        State: 'ENABLED',
        Target: Match.objectLike({
          Arn: { 'Fn::GetAtt': [logicalId(service.dispatch, 'function'), 'Arn'] },
          RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 },
        }),
      });
      template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
        FunctionName: { Ref: logicalId(service.dispatch, 'function') },
        MaximumRetryAttempts: 0,
      });
    });
  });

  describe('sync queue', () => {
    const queueId = service.getLogicalId(service.syncQueue.node.defaultChild as CfnElement);
    const dlqId = service.getLogicalId(service.syncDeadLetters.node.defaultChild as CfnElement);

    it('sends a message to the dead-letter queue after 5 receives', () => {
      expect(resources[queueId]?.Properties.RedrivePolicy).toEqual({
        deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] },
        maxReceiveCount: 5,
      });
      expect(resources[dlqId]?.Properties.MessageRetentionPeriod).toBe(14 * 24 * 3600);
    });

    it('hides a received message at least 6x as long as the sync may run', () => {
      const timeout = resources[logicalId(service.sync, 'function')]?.Properties.Timeout as number;
      const visibility = resources[queueId]?.Properties.VisibilityTimeout as number;
      expect(timeout).toBeGreaterThan(0);
      expect(visibility).toBeGreaterThan(timeout);
      expect(visibility).toBeGreaterThanOrEqual(6 * timeout);
      expect(visibility).toBeLessThanOrEqual(12 * 3600); // the SQS maximum
    });

    it('encrypts both queues and refuses requests without TLS', () => {
      for (const id of [queueId, dlqId]) {
        expect(resources[id]?.Properties.SqsManagedSseEnabled).toBe(true);
        template.hasResourceProperties('AWS::SQS::QueuePolicy', {
          Queues: [{ Ref: id }],
          PolicyDocument: Match.objectLike({
            Statement: Match.arrayWith([
              Match.objectLike({
                Effect: 'Deny',
                Action: 'sqs:*',
                Condition: { Bool: { 'aws:SecureTransport': 'false' } },
              }),
            ]),
          }),
        });
      }
    });

    it('feeds the sync one message at a time, with partial failures reported, at bounded concurrency', () => {
      template.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        EventSourceArn: { 'Fn::GetAtt': [queueId, 'Arn'] },
        FunctionName: { Ref: logicalId(service.sync, 'function') },
        BatchSize: 1,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        ScalingConfig: { MaximumConcurrency: 5 },
      });
      configured.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        ScalingConfig: { MaximumConcurrency: 3 },
      });
    });
  });

  describe('functions', () => {
    const all = () => [service.dispatch, service.sync, service.api];

    it('sends run metrics only when the detailedMetrics context asks (each is a billed custom metric)', () => {
      const variables = (t: Template, fn: MailFunction) =>
        (t.toJSON() as { Resources: Record<string, Resource> }).Resources[logicalId(fn, 'function')]!
          .Properties.Environment as { Variables: Record<string, unknown> };
      for (const fn of [service.dispatch, service.sync]) {
        expect(variables(template, fn).Variables[DETAILED_METRICS_VARIABLE]).toBeUndefined();
        expect(variables(configured.template, fn).Variables[DETAILED_METRICS_VARIABLE]).toBe('true');
      }
    });

    it('runs nodejs22.x on ARM64, bundled with source maps, each with its own log group kept 30 days', () => {
      for (const fn of all()) {
        const props = resources[logicalId(fn, 'function')]!.Properties;
        expect(props).toMatchObject({
          Runtime: 'nodejs22.x',
          Architectures: ['arm64'],
          Handler: 'index.handler',
          LoggingConfig: { LogGroup: { Ref: logicalId(fn, 'logGroup') } },
        });
        const logGroup = resources[logicalId(fn, 'logGroup')]!;
        expect(logGroup.Properties.RetentionInDays).toBe(30);
        expect(logGroup.DeletionPolicy).toBe('Delete');
      }
      expect(Object.keys(template.findResources('AWS::Logs::LogGroup'))).toHaveLength(4); // + API access logs
    });

    it('gives each handler exactly the environment of the contract', () => {
      const env = (fn: MailFunction) =>
        (
          resources[logicalId(fn, 'function')]!.Properties.Environment as {
            Variables: Record<string, unknown>;
          }
        ).Variables;
      const common = [
        'NODE_OPTIONS',
        'POWERTOOLS_METRICS_NAMESPACE',
        'POWERTOOLS_SERVICE_NAME',
        'TABLE_NAME',
      ];
      expect(Object.keys(env(service.dispatch)).sort()).toEqual([...common, 'QUEUE_URL'].sort());
      expect(Object.keys(env(service.sync)).sort()).toEqual(
        [...common, 'BUCKET_NAME', 'QUEUE_URL', 'SECRETS_PREFIX'].sort(),
      );
      expect(Object.keys(env(service.api)).sort()).toEqual(
        [
          ...common,
          'BUCKET_NAME',
          'QUEUE_URL',
          'USER_POOL_ISSUER',
          'USER_POOL_CLIENT_ID',
          'COGNITO_DOMAIN',
          'REDIRECT_URI',
        ].sort(),
      );
      const api = env(service.api);
      const ref = (c: IConstruct) => ({ Ref: service.getLogicalId(c.node.defaultChild as CfnElement) });
      expect(api.USER_POOL_CLIENT_ID).toEqual(ref(service.webClient));
      // The issuer the app checks is the one the JWT authorizer checks: a token's `iss`.
      const [authorizer] = Object.values(
        template.findResources('AWS::ApiGatewayV2::Authorizer'),
      ) as Resource[];
      expect(api.USER_POOL_ISSUER).toEqual(
        (authorizer!.Properties.JwtConfiguration as { Issuer: unknown }).Issuer,
      );
      expect(JSON.stringify(api.USER_POOL_ISSUER)).toContain(JSON.stringify(ref(service.userPool)));
      expect(api.QUEUE_URL).toEqual(ref(service.syncQueue));
      expect(JSON.stringify(api.REDIRECT_URI)).toContain(
        `"Fn::GetAtt":["${service.getLogicalId(service.httpApi.node.defaultChild as CfnElement)}","ApiEndpoint"]`,
      );
      for (const fn of all())
        expect(env(fn)).toMatchObject({
          POWERTOOLS_SERVICE_NAME: 'tributary',
          POWERTOOLS_METRICS_NAMESPACE: 'Tributary',
          NODE_OPTIONS: '--enable-source-maps',
        });
      expect(env(service.sync).SECRETS_PREFIX).toBe('/tributary/TributaryService/sources/');
    });

    it('sizes each function from the measurements', () => {
      const sizing = (fn: MailFunction) => {
        const { MemorySize, Timeout } = resources[logicalId(fn, 'function')]!.Properties;
        return { MemorySize, Timeout };
      };
      expect(sizing(service.sync)).toEqual({ MemorySize: 1769, Timeout: 900 });
      expect(sizing(service.dispatch)).toEqual({ MemorySize: 256, Timeout: 60 });
      expect(sizing(service.api)).toEqual({ MemorySize: 512, Timeout: 10 });
    });

    it("lets the sync re-enqueue its own source past Lambda's 16-hop loop cut-off, and no other function", () => {
      expect(resources[logicalId(service.sync, 'function')]!.Properties.RecursiveLoop).toBe('Allow');
      expect(resources[logicalId(service.dispatch, 'function')]!.Properties.RecursiveLoop).toBe('Terminate');
      expect(resources[logicalId(service.api, 'function')]!.Properties.RecursiveLoop).toBe('Terminate');
    });
  });

  describe('least privilege', () => {
    const s3 = (actions: Set<string>) => [...actions].filter((a) => a.startsWith('s3:')).sort();
    const dynamo = (actions: Set<string>) => [...actions].filter((a) => a.startsWith('dynamodb:')).sort();

    it('uses no AWS managed policy in any role', () => {
      for (const role of Object.values(template.findResources('AWS::IAM::Role')))
        expect((role as Resource).Properties.ManagedPolicyArns).toBeUndefined();
    });

    it("lets only the sync function read and decrypt the sources' passwords, under the stack's prefix", () => {
      const [parameters, ...more] = statementsWith(service.sync, 'ssm:GetParameter');
      expect(more).toHaveLength(0);
      expect(parameters!.Action).toBe('ssm:GetParameter');
      expect(JSON.stringify(parameters!.Resource)).toContain(
        ':parameter/tributary/TributaryService/sources/*',
      );
      const [decrypt] = statementsWith(service.sync, 'kms:Decrypt');
      expect(decrypt!.Condition).toEqual({
        StringEquals: {
          'kms:ViaService': { 'Fn::Join': ['', ['ssm.', { Ref: 'AWS::Region' }, '.amazonaws.com']] },
          'kms:CallerAccount': { Ref: 'AWS::AccountId' },
        },
      });
      // No other policy of the stack names SSM or KMS at all.
      const syncRole = JSON.stringify([{ Ref: logicalId(service.sync, 'role') }]);
      const others = policies().filter(([, p]) => JSON.stringify(p.Properties.Roles) !== syncRole);
      expect(others.length).toBeGreaterThan(0);
      for (const [, policy] of others) expect(JSON.stringify(policy)).not.toMatch(/"(ssm|kms):/);
    });

    it('lets the sync write mail, the table and the queue', () => {
      const actions = actionsOf(service.sync);
      expect(s3(actions)).toEqual([
        's3:AbortMultipartUpload',
        's3:DeleteObject',
        's3:GetObject',
        's3:ListBucket',
        's3:PutObject',
      ]);
      expect(dynamo(actions)).toEqual(
        expect.arrayContaining(['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:ConditionCheckItem']),
      );
      expect(actions).toContain('sqs:SendMessage');
      expect(actions).toContain('sqs:ReceiveMessage');
    });

    it('keeps the dispatcher away from mail: no S3 at all, and table access confined to the source registry', () => {
      const actions = actionsOf(service.dispatch);
      expect(s3(actions)).toEqual([]);
      expect(actions).not.toContain('s3:GetObject');
      expect(dynamo(actions)).toEqual(['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem']);
      const onTable = statementsWith(service.dispatch, 'dynamodb:UpdateItem');
      expect(onTable).toHaveLength(1);
      expect(onTable[0]!.Condition).toEqual({
        'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['SOURCES'] },
      });
      const [onIndex] = statementsOf(service.dispatch).filter(
        (s) => s.Action === 'dynamodb:Query' && !s.Condition,
      );
      expect(JSON.stringify(onIndex!.Resource)).toContain('/index/GSI3');
      expect(actions).toContain('sqs:SendMessage');
      expect(actions).not.toContain('sqs:ReceiveMessage');
    });

    it('lets the API read mail, keep the inbox and write extracted attachments, but delete nothing nor read secrets', () => {
      const actions = actionsOf(service.api);
      expect(s3(actions)).toEqual(['s3:GetObject', 's3:ListBucket', 's3:PutObject']);
      // PutObject under attachments/ only.
      const [put, ...morePuts] = statementsWith(service.api, 's3:PutObject');
      expect(morePuts).toHaveLength(0);
      expect(put!.Action).toBe('s3:PutObject');
      expect(JSON.stringify(put!.Resource)).toMatch(/\/attachments\/\*"/);
      expect(dynamo(actions)).toEqual([
        'dynamodb:BatchGetItem',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
      ]);
      for (const action of ['dynamodb:PutItem', 'dynamodb:UpdateItem']) {
        const [statement, ...more] = statementsWith(service.api, action);
        expect(more).toHaveLength(0);
        expect(statement!.Resource).toEqual({
          'Fn::ImportValue': expect.stringMatching(/MailStoreIndex.*Arn/) as string,
        });
      }
      expect([...actions].filter((a) => /Delete/.test(a))).toEqual([]);
      expect([...actions].filter((a) => /^(ssm|kms):/.test(a))).toEqual([]);
      // Sync now: send to the sync queue, and nothing else of it.
      expect([...actions].filter((a) => a.startsWith('sqs:')).sort()).toEqual([
        'sqs:GetQueueAttributes',
        'sqs:GetQueueUrl',
        'sqs:SendMessage',
      ]);
      const [send] = statementsWith(service.api, 'sqs:SendMessage');
      expect(send!.Resource).toEqual({
        'Fn::GetAtt': [service.getLogicalId(service.syncQueue.node.defaultChild as CfnElement), 'Arn'],
      });
    });

    it('grants no function a Scan or an action wildcard', () => {
      for (const fn of [service.dispatch, service.sync, service.api]) {
        const actions = [...actionsOf(fn)];
        expect(actions).not.toContain('dynamodb:Scan');
        expect(actions.filter((a) => a.includes('*'))).toEqual([]);
      }
    });
  });

  describe('HTTP API', () => {
    const routes = () =>
      Object.values(template.findResources('AWS::ApiGatewayV2::Route') as Record<string, Resource>).map(
        (r) => r.Properties,
      );

    it('puts every /api route behind the Cognito JWT authorizer, and only the page without it', () => {
      const [authorizerId, ...others] = Object.keys(template.findResources('AWS::ApiGatewayV2::Authorizer'));
      expect(others).toHaveLength(0);
      expect(
        routes()
          .map((r) => r.RouteKey)
          .sort(),
      ).toEqual(['ANY /api/{proxy+}', 'GET /', 'GET /assets/{proxy+}', 'GET /config.json']);
      for (const route of routes()) {
        const key = String(route.RouteKey);
        if (key.split(' ')[1]!.startsWith('/api'))
          expect(route).toMatchObject({ AuthorizationType: 'JWT', AuthorizerId: { Ref: authorizerId } });
        else {
          expect(['GET /', 'GET /assets/{proxy+}', 'GET /config.json']).toContain(key);
          expect(route.AuthorizationType).toBe('NONE');
          expect(route.AuthorizerId).toBeUndefined();
        }
      }
      template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
        AuthorizerType: 'JWT',
        IdentitySource: ['$request.header.Authorization'],
        JwtConfiguration: {
          Audience: [{ Ref: service.getLogicalId(service.webClient.node.defaultChild as CfnElement) }],
          Issuer: Match.anyValue(),
        },
      });
    });

    it('routes every path to the api function', () => {
      const integrations = Object.keys(template.findResources('AWS::ApiGatewayV2::Integration'));
      expect(integrations).toHaveLength(1);
      template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
        IntegrationType: 'AWS_PROXY',
        IntegrationUri: { 'Fn::GetAtt': [logicalId(service.api, 'function'), 'Arn'] },
      });
      for (const route of routes())
        expect(route.Target).toEqual({ 'Fn::Join': ['', ['integrations/', { Ref: integrations[0] }]] });
    });

    it("sends Cognito back to the page's own URL, with no dependency cycle in the template", () => {
      const [client] = Object.values(template.findResources('AWS::Cognito::UserPoolClient')) as Resource[];
      const api = service.getLogicalId(service.httpApi.node.defaultChild as CfnElement);
      const callbacks = JSON.stringify(client!.Properties.CallbackURLs);
      expect(callbacks).toContain(`"Fn::GetAtt":["${api}","ApiEndpoint"]`);
      // No cycle: Template.fromJSON (synth above) refuses a template with one ("Template is undeployable, these
      // resources have a dependency cycle"), which is what a callback URL naming the API would cause if the API
      // needed the client (a defaultAuthorizer). The chain CloudFormation follows instead: API, client, authorizer.
      const refs = (id: string) => JSON.stringify(resources[id]!.Properties);
      const clientId = service.getLogicalId(service.webClient.node.defaultChild as CfnElement);
      const [authorizerId] = Object.keys(template.findResources('AWS::ApiGatewayV2::Authorizer'));
      expect(refs(clientId)).toContain(`"${api}"`);
      expect(refs(authorizerId!)).toContain(`"${clientId}"`);
      expect(refs(api)).not.toContain(`"${clientId}"`);
    });

    it('logs access and throttles the stage', () => {
      template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
        StageName: '$default',
        AccessLogSettings: Match.objectLike({ DestinationArn: Match.anyValue() }),
        DefaultRouteSettings: { ThrottlingBurstLimit: 40, ThrottlingRateLimit: 20 },
      });
    });

    it('signs in through a user pool nobody can sign up to, with TOTP MFA required', () => {
      template.hasResourceProperties('AWS::Cognito::UserPool', {
        AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
        MfaConfiguration: 'ON',
        EnabledMfas: ['SOFTWARE_TOKEN_MFA'],
      });
    });

    it("has a web client with no secret on the authorization code flow, back to the page's URL and any others given", () => {
      const client = {
        GenerateSecret: false,
        AllowedOAuthFlows: ['code'],
        AllowedOAuthFlowsUserPoolClient: true,
      };
      const page = {
        'Fn::Join': [
          '',
          [
            {
              'Fn::GetAtt': [
                service.getLogicalId(service.httpApi.node.defaultChild as CfnElement),
                'ApiEndpoint',
              ],
            },
            '/',
          ],
        ],
      };
      template.hasResourceProperties('AWS::Cognito::UserPoolClient', {
        ...client,
        CallbackURLs: [page],
        LogoutURLs: [page],
      });
      configured.template.hasResourceProperties('AWS::Cognito::UserPoolClient', {
        ...client,
        CallbackURLs: [page, 'https://mail.example.com/callback', 'http://localhost:3000/'],
      });
    });
  });

  describe('alarms', () => {
    const topicId = service.getLogicalId(service.alarmTopic.node.defaultChild as CfnElement);
    const alarmOn = (props: Record<string, unknown>) =>
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        ...props,
        AlarmActions: [{ Ref: topicId }],
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });

    it('alarms when the dead-letter queue is not empty', () => {
      alarmOn({
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [
          {
            Name: 'QueueName',
            Value: {
              'Fn::GetAtt': [
                service.getLogicalId(service.syncDeadLetters.node.defaultChild as CfnElement),
                'QueueName',
              ],
            },
          },
        ],
        Threshold: 1,
      });
    });

    it('alarms on sync function errors', () => {
      alarmOn({
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId(service.sync, 'function') } }],
        Threshold: 1,
      });
    });

    it("alarms when a source has failed 3 runs in a row (SyncFailed, the handler's metric)", () => {
      alarmOn({
        Namespace: 'Tributary',
        MetricName: 'SyncFailed',
        Dimensions: [{ Name: 'service', Value: 'tributary' }],
        Statistic: 'Maximum',
        Threshold: 3,
        TreatMissingData: 'notBreaching',
      });
    });

    it('e-mails the alarms only when alarmEmail is given', () => {
      template.resourceCountIs('AWS::SNS::Subscription', 0);
      configured.template.hasResourceProperties('AWS::SNS::Subscription', {
        Protocol: 'email',
        Endpoint: 'owner@example.com',
      });
      template.hasResourceProperties('AWS::SNS::TopicPolicy', {
        PolicyDocument: Match.objectLike({
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        }),
      });
    });
  });

  describe('stack', () => {
    it('holds no state: no bucket, no table, and its log groups go with it', () => {
      template.resourceCountIs('AWS::S3::Bucket', 0);
      template.resourceCountIs('AWS::DynamoDB::GlobalTable', 0);
      template.resourceCountIs('AWS::DynamoDB::Table', 0);
      for (const r of Object.values(resources))
        if (r.Type === 'AWS::Logs::LogGroup') expect(r.DeletionPolicy).toBe('Delete');
    });

    it('outputs what docs/deploy.md needs', () => {
      expect(Object.keys(template.toJSON().Outputs as object).sort()).toEqual([
        'AlarmTopicArn',
        'ApiUrl',
        'BucketName',
        'SecretsPrefix',
        'SignInUrl',
        'SyncDeadLetterQueueUrl',
        'SyncQueueUrl',
        'TableName',
        'UserPoolClientId',
        'UserPoolId',
      ]);
      // The CLI finds a deployed store by these three (functions/shared/deployment.ts).
      for (const name of Object.values(STACK_OUTPUTS))
        expect(Object.keys(template.toJSON().Outputs as object)).toContain(name);
    });
  });
});
