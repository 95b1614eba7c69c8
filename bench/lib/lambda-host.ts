import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { build, type BuildOptions } from 'esbuild';
import type { SQSEvent } from 'aws-lambda';

/**
 * The Lambda handlers for the benchmarks (bench/lambda.ts, bench/cost.ts), bundled and run as Lambda runs them.
 * Adapted from test/support/handler-lambda.ts (which the tests keep as it is): the same child-process container,
 * plus what the benchmarks measure per invocation: the child's own CPU time, the bytes and lines it writes to
 * stdout/stderr (what CloudWatch Logs ingests), and the SSM and SQS calls its mocks answered.
 */

export type HandlerName = 'dispatch' | 'sync' | 'api';
export const HANDLER_NAMES: readonly HandlerName[] = ['dispatch', 'sync', 'api'];

const ROOT = path.resolve(__dirname, '../..');
/** aws-sdk-client-mock replaces `send` on the class it imports: these stay outside the mocked bundles. */
const MOCKED = ['@aws-sdk/client-sqs', '@aws-sdk/client-ssm'];
export const BENCH_QUEUE_URL = 'https://sqs.us-east-1.amazonaws.com/123456789012/tributary-sync';
/** The API function's sign-in settings (a user pool and app client of no real stack): it refuses to start without. */
export const BENCH_WEB_ENV = {
  USER_POOL_ISSUER: 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_BenchPool',
  USER_POOL_CLIENT_ID: 'bench-page-client',
  COGNITO_DOMAIN: 'https://tributary-bench.auth.us-east-1.amazoncognito.com',
  REDIRECT_URI: 'https://api.example.com/',
};

export const BENCH_SECRETS_PREFIX = '/tributary/bench/sources/';

/**
 * esbuild options equal to what infra/constructs/mail-function.ts asks of NodejsFunction: platform node, target
 * node22, CommonJS (NodejsFunction's default format), everything bundled (bundleAwsSDK: true), minified, a source
 * map without the sources' text.
 */
export function stackBuildOptions(name: HandlerName, outfile: string, external: string[] = []): BuildOptions {
  return {
    entryPoints: [path.join(ROOT, 'functions/handlers', `${name}.ts`)],
    outfile,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    bundle: true,
    minify: true,
    sourcemap: true,
    sourcesContent: false,
    external,
    logLevel: 'error',
  };
}

/**
 * Builds the three handlers into `dir/<variant>/<name>/index.js`. `deployed`: exactly the stack's bundle (sizes, cold
 * init). `mocked`: the same with SSM and SQS left out, resolved from node_modules so the runner's mocks apply.
 */
export async function buildBundles(
  dir: string,
  variant: 'deployed' | 'mocked',
): Promise<Record<HandlerName, string>> {
  const out = {} as Record<HandlerName, string>;
  await Promise.all(
    HANDLER_NAMES.map(async (name) => {
      const outfile = path.join(dir, variant, name, 'index.js');
      await build(stackBuildOptions(name, outfile, variant === 'mocked' ? MOCKED : []));
      out[name] = outfile;
    }),
  );
  return out;
}

export interface BundleSize {
  jsBytes: number;
  mapBytes: number;
  /** gzip (level 6) of index.js plus index.js.map: roughly the deployment zip Lambda stores. */
  gzipBytes: number;
}

export function bundleSize(file: string): BundleSize {
  const js = fs.readFileSync(file);
  const map = fs.existsSync(`${file}.map`) ? fs.readFileSync(`${file}.map`) : Buffer.alloc(0);
  return {
    jsBytes: js.length,
    mapBytes: map.length,
    gzipBytes: gzipSync(js).length + (map.length ? gzipSync(map).length : 0),
  };
}

/** What Lambda puts in every function's environment (besides the stack's own variables). */
export function lambdaEnv(name: HandlerName, memoryMb: number): Record<string, string> {
  return {
    AWS_LAMBDA_FUNCTION_NAME: `tributary-${name}`,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(memoryMb),
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/tributary-${name}`,
    AWS_LAMBDA_LOG_STREAM_NAME: '2026/12/04/[$LATEST]0123456789abcdef0123456789abcdef',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x',
    // The MailFunction construct's own.
    POWERTOOLS_SERVICE_NAME: 'tributary',
    POWERTOOLS_METRICS_NAMESPACE: 'Tributary',
    NODE_OPTIONS: '--enable-source-maps',
  };
}

/** A Lambda context as the runtime builds it; the remaining time runs out at `deadline` (epoch ms). */
export const CONTEXT_JS = String.raw`
function lambdaContext(name, memoryMb, deadline) {
  return {
    awsRequestId: require('node:crypto').randomUUID(),
    functionName: 'tributary-' + name,
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:tributary-' + name,
    memoryLimitInMB: String(memoryMb),
    logGroupName: '/aws/lambda/tributary-' + name,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME || 'bench',
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done() {}, fail() {}, succeed() {},
  };
}
/** The runtime sets the trace header of each invocation (tracing off: Sampled=0); Powertools logs its root. */
function setTraceHeader() {
  const c = require('node:crypto');
  process.env._X_AMZN_TRACE_ID = 'Root=1-' + Math.floor(Date.now() / 1000).toString(16) + '-' +
    c.randomBytes(12).toString('hex') + ';Parent=' + c.randomBytes(8).toString('hex') + ';Sampled=0;Lineage=1:0a1b2c3d:0';
}
`;

/** The child: mocks SSM and SQS, counts its own output, loads the bundle, runs one invocation per message. */
const RUNNER = String.raw`
'use strict';
${CONTEXT_JS}
const { mockClient } = require('aws-sdk-client-mock');
const { SQSClient, SendMessageCommand, SendMessageBatchCommand } = require('@aws-sdk/client-sqs');
const { SSMClient, GetParameterCommand } = require('@aws-sdk/client-ssm');
const { randomUUID } = require('node:crypto');

let parameters = {};
let sent = [];
const zero = () => ({ ssmGetParameter: 0, sqsSendMessage: 0, sqsSendMessageBatch: 0, sqsEntries: 0 });
let calls = zero();
mockClient(SSMClient).on(GetParameterCommand).callsFake((input) => {
  calls.ssmGetParameter++;
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
  calls.sqsSendMessage++;
  calls.sqsEntries++;
  sent.push({ body: input.MessageBody, delaySeconds: input.DelaySeconds || 0 });
  return { MessageId: randomUUID() };
});
sqs.on(SendMessageBatchCommand).callsFake((input) => {
  calls.sqsSendMessageBatch++;
  calls.sqsEntries += input.Entries.length;
  for (const e of input.Entries) sent.push({ body: e.MessageBody, delaySeconds: e.DelaySeconds || 0 });
  return { Successful: input.Entries.map((e) => ({ Id: e.Id, MessageId: randomUUID(), MD5OfMessageBody: '' })), Failed: [] };
});

// What the function writes is its CloudWatch log: counted here, per invocation, then passed on.
let out = { bytes: 0, lines: 0 };
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream);
  stream.write = (chunk, ...rest) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    out.bytes += Buffer.byteLength(text);
    for (const ch of text) if (ch === '\n') out.lines++;
    return write(chunk, ...rest);
  };
}

let mod;
process.on('message', async (m) => {
  if (m.type === 'init') {
    parameters = m.parameters;
    const t0 = process.hrtime.bigint();
    try {
      mod = require(m.bundle);
      process.send({ type: 'ready', loadMs: Number(process.hrtime.bigint() - t0) / 1e6 });
    } catch (err) {
      process.send({ type: 'init-error', message: String(err && err.message) });
    }
    return;
  }
  if (m.type === 'invoke') {
    sent = [];
    calls = zero();
    out = { bytes: 0, lines: 0 };
    setTraceHeader();
    const context = lambdaContext(m.name, m.memoryMb, Date.now() + m.timeoutMs);
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const finish = (type, extra) => {
      const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
      const cpu = process.cpuUsage(cpu0);
      // Let the last writes reach the pipe before the parent reads the counts.
      setImmediate(() => process.send({ type, ...extra, sent, calls, wallMs, cpuMs: (cpu.user + cpu.system) / 1000, logBytes: out.bytes, logLines: out.lines }));
    };
    try {
      const result = await mod.handler(m.event, context);
      finish('result', { result: result === undefined ? null : result });
    } catch (err) {
      finish('error', { message: String(err && err.message) });
    }
  }
});
`;

export interface SentMessage {
  body: string;
  delaySeconds: number;
}

export interface MockedCalls {
  ssmGetParameter: number;
  sqsSendMessage: number;
  sqsSendMessageBatch: number;
  sqsEntries: number;
}

export interface HostInvocation {
  kind: 'result' | 'error';
  result?: unknown;
  message?: string;
  sent: SentMessage[];
  calls: MockedCalls;
  /** In the child, from the handler call to its answer. */
  wallMs: number;
  /** The child's user + system CPU over the invocation (all its threads). */
  cpuMs: number;
  /** What the invocation wrote to stdout and stderr. */
  logBytes: number;
  logLines: number;
}

/** One warm Lambda container: a child process with the (mocked) bundle loaded. */
export class LambdaHost {
  readonly lines: string[] = [];
  loadMs = 0;
  private exited = false;

  private constructor(
    readonly name: HandlerName,
    private readonly child: ChildProcess,
    readonly memoryMb: number,
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

  /** Writes the runner next to the bundles (once per folder). */
  static runnerIn(dir: string): string {
    const file = path.join(dir, 'runner.cjs');
    if (!fs.existsSync(file)) fs.writeFileSync(file, RUNNER);
    return file;
  }

  static async start(options: {
    dir: string;
    bundle: string;
    name: HandlerName;
    memoryMb: number;
    env: Record<string, string>;
    parameters?: Record<string, string>;
  }): Promise<LambdaHost> {
    const child = fork(LambdaHost.runnerIn(options.dir), [], {
      env: {
        ...process.env,
        ...options.env,
        ...lambdaEnv(options.name, options.memoryMb),
        NODE_PATH: path.join(ROOT, 'node_modules'),
      },
      silent: true,
      execArgv: [],
    });
    const host = new LambdaHost(options.name, child, options.memoryMb);
    await new Promise<void>((resolve, reject) => {
      child.once('message', (m: { type: string; message?: string; loadMs?: number }) => {
        if (m.type !== 'ready') return reject(new Error(`${options.name} did not load: ${m.message}`));
        host.loadMs = m.loadMs ?? 0;
        resolve();
      });
      child.once('exit', (code) =>
        reject(new Error(`${options.name} exited (${code}) while loading:\n${host.lines.join('\n')}`)),
      );
      child.send({ type: 'init', bundle: options.bundle, parameters: options.parameters ?? {} });
    });
    return host;
  }

  invoke(event: unknown, timeoutMs: number): Promise<HostInvocation> {
    if (this.exited) return Promise.reject(new Error(`${this.name} is not running`));
    return new Promise<HostInvocation>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`${this.name} ran past its ${timeoutMs} ms`));
      }, timeoutMs + 5_000);
      const onMessage = (m: Omit<HostInvocation, 'kind'> & { type: string }) => {
        if (m.type !== 'result' && m.type !== 'error') return;
        clearTimeout(timer);
        this.child.off('message', onMessage);
        const { type, ...rest } = m;
        resolve({ ...rest, kind: type === 'result' ? 'result' : 'error' });
      };
      this.child.on('message', onMessage);
      this.child.send({ type: 'invoke', name: this.name, memoryMb: this.memoryMb, event, timeoutMs });
    });
  }

  /** Log lines that are JSON (Powertools records and embedded-metric blobs). */
  records(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.lines) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON
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

/** An API Gateway HTTP API (payload 2.0) request with the JWT authorizer's claims. */
export function httpApiEvent(method: string, rawPath: string, claims: Record<string, unknown>): unknown {
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
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '192.0.2.1', userAgent: 'bench' },
      requestId: randomUUID(),
      routeKey: `${method} ${rawPath}`,
      stage: '$default',
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
      authorizer: { jwt: { claims, scopes: null } },
    },
    isBase64Encoded: false,
  };
}

/** What EventBridge Scheduler's LambdaInvoke target sends when the schedule gives no input. */
export const SCHEDULER_EVENT = {};

/** The event of a first call with nothing to do, per handler (cold init). */
export function idleEvent(name: HandlerName): unknown {
  switch (name) {
    case 'dispatch':
      return SCHEDULER_EVENT;
    case 'sync':
      return sqsEvent([]);
    case 'api':
      return httpApiEvent('GET', '/api/sources', {
        sub: 'bench-user',
        email: 'bench@example.com',
        iss: BENCH_WEB_ENV.USER_POOL_ISSUER,
        client_id: BENCH_WEB_ENV.USER_POOL_CLIENT_ID,
        token_use: 'access',
        exp: String(Math.floor(Date.now() / 1000) + 3600),
      });
  }
}
