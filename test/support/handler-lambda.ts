import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { build, stop as stopEsbuild } from 'esbuild';
import type { SQSEvent } from 'aws-lambda';
import { keys } from '../../functions/adapters/dynamodb/keys';
import { ensureTable } from '../../functions/local/emulators';
import type { MailLab } from './mail-lab';
import { TestTributary } from './tributary';
import { PAGE_ASSETS_DIR, writePageAssets } from '../../functions/web/page-assets';

/**
 * The Lambda handlers as Lambda runs them: each entry bundled by esbuild with the options of the service stack's
 * MailFunction construct (platform node, target node22, CJS, bundled, minified, source maps), loaded by plain Node in
 * a child process (one child = one warm container), invoked with a Lambda-shaped event and a context whose remaining
 * time runs out, and killed at its timeout as Lambda would. DynamoDB and S3 are the harness's DynamoDB Local and
 * s3rver (the SDK's endpoint variables); SSM and SQS, which have no local stand-in, are aws-sdk-client-mock stubs
 * installed in the child before the bundle loads.
 *
 * The one difference from the deployed bundle: @aws-sdk/client-ssm and @aws-sdk/client-sqs are left out of it and
 * resolved from node_modules (NODE_PATH), because aws-sdk-client-mock replaces `send` on the client class it
 * imports, and a copy bundled inside the handler would be another class.
 */

export type HandlerName = 'dispatch' | 'sync' | 'api';

const ROOT = path.resolve(__dirname, '../..');
const MOCKED = ['@aws-sdk/client-sqs', '@aws-sdk/client-ssm'];
export const TEST_QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/tributary-sync';
export const TEST_SECRETS_PREFIX = '/tributary/test/sources/';

/** The child: mocks SSM and SQS, loads the bundle, and runs one invocation per message from the parent. */
const RUNNER = String.raw`
'use strict';
const { mockClient } = require('aws-sdk-client-mock');
const { SQSClient, SendMessageCommand, SendMessageBatchCommand } = require('@aws-sdk/client-sqs');
const { SSMClient, GetParameterCommand } = require('@aws-sdk/client-ssm');
const { randomUUID } = require('node:crypto');

let parameters = {};
let sent = [];
let ssmCalls = 0;
mockClient(SSMClient).on(GetParameterCommand).callsFake((input) => {
  ssmCalls++;
  const value = parameters[input.Name];
  if (value === undefined) {
    const err = new Error('Parameter ' + input.Name + ' not found.');
    err.name = 'ParameterNotFound';
    throw err;
  }
  return { Parameter: { Name: input.Name, Type: 'SecureString', Value: value } };
});
const sqs = mockClient(SQSClient);
sqs.on(SendMessageCommand).callsFake((input) => {
  sent.push({ queueUrl: input.QueueUrl, body: input.MessageBody, delaySeconds: input.DelaySeconds || 0 });
  return { MessageId: randomUUID() };
});
sqs.on(SendMessageBatchCommand).callsFake((input) => {
  for (const e of input.Entries) sent.push({ queueUrl: input.QueueUrl, body: e.MessageBody, delaySeconds: e.DelaySeconds || 0 });
  return { Successful: input.Entries.map((e) => ({ Id: e.Id, MessageId: randomUUID(), MD5OfMessageBody: '' })), Failed: [] };
});

let mod;
process.on('message', async (m) => {
  if (m.type === 'init') {
    parameters = m.parameters;
    try {
      mod = require(m.bundle);
      process.send({ type: 'ready' });
    } catch (err) {
      process.send({ type: 'init-error', message: String(err && err.message) });
    }
    return;
  }
  if (m.type === 'invoke') {
    sent = [];
    const deadline = Date.now() + m.timeoutMs;
    const context = {
      awsRequestId: m.requestId,
      functionName: 'tributary-' + m.name,
      functionVersion: '$LATEST',
      invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:tributary-' + m.name,
      memoryLimitInMB: '256',
      logGroupName: '/aws/lambda/tributary-' + m.name,
      logStreamName: 'test',
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      done() {}, fail() {}, succeed() {},
    };
    try {
      const result = await mod.handler(m.event, context);
      process.send({ type: 'result', result: result === undefined ? null : result, sent, ssmCalls });
    } catch (err) {
      process.send({ type: 'error', message: String(err && err.message), sent, ssmCalls });
    }
  }
});
`;

/** Builds the three handler bundles into a temp dir (with the runner next to them). */
export async function buildHandlers(): Promise<{
  dir: string;
  bundle: (name: HandlerName) => string;
  remove: () => void;
}> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-handlers-'));
  await Promise.all(
    (['dispatch', 'sync', 'api'] as const).map((name) =>
      build({
        entryPoints: [path.join(ROOT, 'functions/handlers', `${name}.ts`)],
        outfile: path.join(dir, name, 'index.js'),
        platform: 'node',
        target: 'node22',
        format: 'cjs',
        bundle: true,
        minify: true,
        sourcemap: true,
        sourcesContent: false,
        external: MOCKED,
        logLevel: 'error',
      }),
    ),
  );
  // The API function carries the page pre-built beside its handler, as the stack's bundling writes it.
  await writePageAssets(path.join(dir, 'api', PAGE_ASSETS_DIR));
  // esbuild's service process would outlive the test file otherwise; the next build starts another.
  await stopEsbuild();
  fs.writeFileSync(path.join(dir, 'runner.cjs'), RUNNER);
  return {
    dir,
    bundle: (name) => path.join(dir, name, 'index.js'),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

export interface SentMessage {
  queueUrl: string;
  body: string;
  delaySeconds: number;
}

export type Invocation =
  | { kind: 'result'; result: unknown; sent: SentMessage[]; ssmCalls: number; ms: number }
  | { kind: 'error'; message: string; sent: SentMessage[]; ms: number }
  /** Killed by its timeout (Lambda's) or by the test (`cutAfterMs`). */
  | { kind: 'killed'; ms: number };

/** One warm Lambda container: a child process with the bundle loaded. */
export class HandlerContainer {
  /** Every line the function wrote to stdout and stderr (its CloudWatch log). */
  readonly lines: string[] = [];
  private exited = false;

  private constructor(
    readonly name: HandlerName,
    private readonly child: ChildProcess,
  ) {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      this.lines.push(...parts.filter((l) => l.length > 0));
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', () => {
      this.exited = true;
    });
  }

  static async start(
    build: { dir: string; bundle: (name: HandlerName) => string },
    name: HandlerName,
    env: Record<string, string>,
    parameters: Record<string, string> = {},
  ): Promise<HandlerContainer> {
    const child = fork(path.join(build.dir, 'runner.cjs'), [], {
      env: {
        ...process.env,
        ...env,
        NODE_PATH: path.join(ROOT, 'node_modules'),
        NODE_OPTIONS: '--enable-source-maps',
      },
      silent: true,
      execArgv: [],
    });
    // A container a failing test forgot to stop must not keep jest from exiting.
    child.unref();
    child.channel?.unref();
    for (const pipe of [child.stdout, child.stderr]) (pipe as { unref?: () => void } | null)?.unref?.();
    const container = new HandlerContainer(name, child);
    const loaded = new Promise<void>((resolve, reject) => {
      child.once('message', (m: { type: string; message?: string }) =>
        m.type === 'ready' ? resolve() : reject(new Error(`${name} did not load: ${m.message}`)),
      );
      child.once('exit', (code) =>
        reject(new Error(`${name} exited (${code}) while loading:\n${container.lines.join('\n')}`)),
      );
      child.send({ type: 'init', bundle: build.bundle(name), parameters });
    });
    try {
      await loaded;
    } catch (err) {
      // A function that failed its init is gone, as Lambda discards the sandbox.
      await container.stop();
      throw err;
    }
    return container;
  }

  get alive(): boolean {
    return !this.exited;
  }

  /**
   * Invokes the handler; the context's remaining time starts at `timeoutMs` and the child is SIGKILLed when it
   * runs out (Lambda's timeout), or earlier at `cutAfterMs`.
   */
  invoke(event: unknown, options: { timeoutMs: number; cutAfterMs?: number }): Promise<Invocation> {
    const started = Date.now();
    return new Promise<Invocation>((resolve) => {
      const killAt = Math.min(options.timeoutMs, options.cutAfterMs ?? Infinity);
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
      }, killAt);
      const onMessage = (m: {
        type: string;
        result?: unknown;
        message?: string;
        sent: SentMessage[];
        ssmCalls: number;
      }) => {
        if (m.type !== 'result' && m.type !== 'error') return;
        clearTimeout(timer);
        this.child.off('exit', onExit);
        this.child.off('message', onMessage);
        const ms = Date.now() - started;
        resolve(
          m.type === 'result'
            ? { kind: 'result', result: m.result, sent: m.sent, ssmCalls: m.ssmCalls, ms }
            : { kind: 'error', message: m.message ?? '', sent: m.sent, ms },
        );
      };
      const onExit = () => {
        clearTimeout(timer);
        this.child.off('message', onMessage);
        resolve({ kind: 'killed', ms: Date.now() - started });
      };
      this.child.on('message', onMessage);
      this.child.once('exit', onExit);
      this.child.send({
        type: 'invoke',
        name: this.name,
        requestId: randomUUID(),
        event,
        timeoutMs: options.timeoutMs,
      });
    });
  }

  /** Log lines that are Powertools JSON records. */
  records(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.lines) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON: kept in `lines`
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await gone;
  }
}

/** An SQS event of one record per body, as the event source mapping delivers it. */
export function sqsEvent(bodies: string[]): SQSEvent {
  return {
    Records: bodies.map((body) => ({
      messageId: randomUUID(),
      receiptHandle: randomBytes(16).toString('hex'),
      body,
      attributes: {
        ApproximateReceiveCount: '1',
        SentTimestamp: String(Date.now()),
        SenderId: 'AROAEXAMPLE',
        ApproximateFirstReceiveTimestamp: String(Date.now()),
      },
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:tributary-sync',
      awsRegion: 'us-east-1',
    })),
  };
}

/** An API Gateway HTTP API (payload 2.0) request; `claims` as the JWT authorizer puts them, or none. */
export function httpApiEvent(method: string, rawPath: string, claims?: Record<string, unknown>): unknown {
  return {
    version: '2.0',
    routeKey: `${method} ${rawPath}`,
    rawPath,
    rawQueryString: '',
    headers: { host: 'api.example.com', accept: 'application/json' },
    requestContext: {
      accountId: '123456789012',
      apiId: 'api',
      domainName: 'api.example.com',
      domainPrefix: 'api',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '192.0.2.1', userAgent: 'jest' },
      requestId: randomUUID(),
      routeKey: `${method} ${rawPath}`,
      stage: '$default',
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
      ...(claims ? { authorizer: { jwt: { claims, scopes: null } } } : {}),
    },
    isBase64Encoded: false,
  };
}

/** A table of its own (the dispatcher reads every source of its table) and its environment for the functions. */
export async function handlerTable(): Promise<{ table: string; env: Record<string, string> }> {
  const table = `tributary-handlers-${randomBytes(4).toString('hex')}`;
  const client = new DynamoDBClient({});
  try {
    await ensureTable(client, table);
  } finally {
    client.destroy();
  }
  return {
    table,
    env: {
      TABLE_NAME: table,
      BUCKET_NAME: process.env.TRIBUTARY_TEST_BUCKET!,
      QUEUE_URL: TEST_QUEUE_URL,
      SECRETS_PREFIX: TEST_SECRETS_PREFIX,
      POWERTOOLS_SERVICE_NAME: 'tributary',
      POWERTOOLS_METRICS_NAMESPACE: 'Tributary',
      // The API function's sign-in settings (a user pool and app client of no real stack).
      USER_POOL_ISSUER: 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool',
      USER_POOL_CLIENT_ID: 'test-page-client',
      COGNITO_DOMAIN: 'https://tributary-test.auth.us-east-1.amazoncognito.com',
      REDIRECT_URI: 'https://api.example.com/',
    },
  };
}

/** TestTributary (sources, reads for the reconciler) on another table of the harness's DynamoDB Local. */
export function tributaryOn(lab: MailLab, table: string): TestTributary {
  const saved = process.env.TRIBUTARY_TEST_TABLE;
  process.env.TRIBUTARY_TEST_TABLE = table;
  try {
    return new TestTributary(lab);
  } finally {
    process.env.TRIBUTARY_TEST_TABLE = saved;
  }
}

/**
 * What SQS does with a message whose invocation was killed: it comes back after the visibility timeout, which the
 * stack sets longer than the lease TTL, so by then the dead run's lease has expired. Here time is not waited out:
 * the lease is expired directly.
 */
export async function expireLease(t: TestTributary, sourceId: string): Promise<void> {
  await t.clients.documents
    .send(
      new UpdateCommand({
        TableName: t.table,
        Key: { PK: keys.sourcePk(sourceId), SK: keys.leaseSk },
        UpdateExpression: 'SET leaseUntil = :zero',
        ConditionExpression: 'attribute_exists(PK)',
        ExpressionAttributeValues: { ':zero': 0 },
      }),
    )
    .catch((err: unknown) => {
      if ((err as { name?: string }).name !== 'ConditionalCheckFailedException') throw err;
    });
}

/** What a handler test file sets up once: the bundles, a table of its own, and Tributary on that table. */
export interface HandlerLab {
  built: Awaited<ReturnType<typeof buildHandlers>>;
  env: Record<string, string>;
  t: TestTributary;
}

export async function setUpHandlers(lab: MailLab): Promise<HandlerLab> {
  const built = await buildHandlers();
  const { env } = await handlerTable();
  return { built, env, t: tributaryOn(lab, env.TABLE_NAME!) };
}

/** Stops the containers a file started (and anything else it closes), then its clients and bundles. */
export async function tearDownHandlers(
  handlers: Partial<HandlerLab>,
  closing: Array<{ stop(): Promise<void> } | { close(): Promise<void> }>,
): Promise<void> {
  await Promise.all(closing.map((c) => ('stop' in c ? c.stop() : c.close())));
  handlers.t?.close();
  handlers.built?.remove();
}
