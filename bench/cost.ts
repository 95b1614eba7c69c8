/**
 * `npm run cost`: what Tributary costs on AWS, computed from measurements (issue #14, docs/cost.md).
 *
 * The handlers' bundles run as Lambda runs them (bench/lib/lambda-host.ts: one child process per warm container,
 * SSM and SQS mocked, the rest against this machine's Dovecot, DynamoDB Local and s3rver). Every DynamoDB and S3
 * request goes through a counting proxy (bench/lib/aws-counter.ts), every mail connection through a proxy that
 * counts connections and round trips (bench/lib/mail-counter.ts); the child reports its own CPU time and the bytes
 * it logs. Measured: an idle poll of an IMAP and of a POP3 source, the dispatcher's run over 10 sources with 0 and
 * 2 due, an import of a few hundred 50 KB messages (IMAP and POP3), and the cold init of the functions. The
 * arithmetic is bench/lib/cost-model.ts; the prices, with their sources and dates, bench/lib/prices.ts.
 *
 * Options (after `npm run cost --`): --polls N (idle polls measured per protocol, default 7), --import-messages N
 * (default 300), --out FILE (default docs/cost.md; `-` prints only), --bench-figures FILE (default
 * docs/benchmarks.json, written by `npm run bench`: its imports are priced in a section of their own; a missing file
 * leaves a line saying so).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { format, resolveConfig } from 'prettier';
import { DynamoDBClient, GetItemCommand, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoSourceRegistry } from '../functions/adapters/dynamodb/source-registry';
import { TABLE } from '../functions/adapters/dynamodb/table';
import type { Protocol, Source } from '../functions/core/model';
import { syncDeadline } from '../functions/core/schedule';
import { SIZING } from '../infra/service-stack';
import type { TestUser } from '../test/support/mail-lab';
import { coldInit, median } from './lambda';
import { lambdaImportEstimate, readBenchFigures, type BenchFigures } from './lib/bench-figures';
import {
  startDynamoCounter,
  startS3Counter,
  type DynamoCall,
  type DynamoCounter,
  type S3Call,
} from './lib/aws-counter';
import {
  DEFAULT_ASSUMPTIONS,
  idleCost,
  importCost,
  gbSeconds,
  lambdaDurationMs,
  total,
  vcpuShare,
  type Assumptions,
  type IdleInput,
  type ImportInput,
  type InvocationProfile,
  type LineItem,
} from './lib/cost-model';
import { itemBytes, storedBytes } from './lib/dynamo-size';
import { startLab, type Lab } from './lib/lab';
import {
  BENCH_QUEUE_URL,
  BENCH_SECRETS_PREFIX,
  buildBundles,
  LambdaHost,
  SCHEDULER_EVENT,
  sqsEvent,
  type HandlerName,
  type HostInvocation,
  type MockedCalls,
} from './lib/lambda-host';
import { startMailCounter, type MailCounter } from './lib/mail-counter';
import { FREE_TIERS, PRICES, PRICES_CHECKED_ON } from './lib/prices';
import { commitOf, machine } from './lib/run-info';

function costCommit(): string {
  const c = commitOf();
  return c ? `${c.head}${c.dirty ? ' (with uncommitted changes)' : ''}` : 'unknown';
}

// ---- targets and stated assumptions -------------------------------------------------------------------------------

/** Issue #14: 10 idle sources polled every 5 minutes at most $0.30 a month; importing 10,000 x 50 KB at most $0.10. */
export const IDLE_TARGET_USD = 0.3;
export const IMPORT_TARGET_USD = 0.1;
const SOURCES = 10;
const POLL_MINUTES = 5;
const IMPORT_MESSAGES = 10_000;
const MESSAGE_BYTES = 50 * 1024;
const ALARMS = 4;
/** Messages in the mailbox of an idle source (imported by a first invocation before the idle polls). */
const IDLE_MAILBOX = 20;

/**
 * What a request costs in waiting on AWS (not measurable here: the stand-ins answer over loopback). Typical
 * in-region latencies of the services from a Lambda function, and the round trip to a mail server elsewhere on the
 * internet; every mail round trip the proxy counted (TLS handshake and login included) and the TCP connect wait
 * this long.
 */
const WAITS = {
  dynamodbMs: 6,
  s3PutMs: 25,
  s3GetMs: 12,
  sqsMs: 10,
  ssmMs: 15,
  mailRoundTripMs: 30,
};
/** The mail server's sending rate during an import (the import is as slow as this or its CPU, whichever is slower). */
const UPSTREAM_BYTES_PER_SECOND = 5 * 2 ** 20;

/** The table's global secondary indexes (each projects every attribute). */
const INDEX_KEYS = Object.values(TABLE.indexes).map((i) => [i.partitionKey, i.sortKey] as [string, string]);

// ---- measuring ----------------------------------------------------------------------------------------------------

interface Sample {
  wallMs: number;
  cpuMs: number;
  logBytes: number;
  logLines: number;
  dynamo: DynamoCall[];
  s3: S3Call[];
  calls: MockedCalls;
  /** Mail round trips (the client speaking after the server), and connections opened. */
  turns: number;
  connections: number;
}

const S3_FREE = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);
const S3_PUT_CLASS = new Set([
  'PutObject',
  'CopyObject',
  'CreateMultipartUpload',
  'UploadPart',
  'CompleteMultipartUpload',
  'ListObjectsV2',
  'ListObjects',
  'POST',
]);

function s3Classes(calls: S3Call[]): { put: number; get: number } {
  let put = 0;
  let get = 0;
  for (const c of calls) {
    if (S3_FREE.has(c.kind)) continue;
    if (S3_PUT_CLASS.has(c.kind)) put++;
    else get++;
  }
  return { put, get };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** Modelled waits of one sample on AWS (see WAITS). */
function waitsOf(s: Sample, mailRoundTripMs = WAITS.mailRoundTripMs): number {
  const s3 = s3Classes(s.s3);
  const sqs = s.calls.sqsSendMessage + s.calls.sqsSendMessageBatch;
  return (
    s.dynamo.length * WAITS.dynamodbMs +
    s3.put * WAITS.s3PutMs +
    s3.get * WAITS.s3GetMs +
    sqs * WAITS.sqsMs +
    s.calls.ssmGetParameter * WAITS.ssmMs +
    (s.turns + s.connections) * mailRoundTripMs
  );
}

interface Profiled extends InvocationProfile {
  /** WRU were its transactions plain writes. */
  plainWru: number;
  wallMs: number;
  turns: number;
  dynamoRequests: number;
  s3Requests: number;
  sqsRequests: number;
  ssmCalls: number;
}

/** Medians over samples (the requests are the same in each; CPU and time vary). */
function profileOf(samples: Sample[], mailRoundTripMs = WAITS.mailRoundTripMs): Profiled {
  const m = (f: (s: Sample) => number) => median(samples.map(f));
  return {
    cpuMs: m((s) => s.cpuMs),
    waitMs: m((s) => waitsOf(s, mailRoundTripMs)),
    wru: m((s) => sum(s.dynamo.map((c) => c.billedWru))),
    rru: m((s) => sum(s.dynamo.map((c) => c.billedRru))),
    plainWru: m((s) => sum(s.dynamo.map((c) => c.plainWru))),
    s3Put: m((s) => s3Classes(s.s3).put),
    s3Get: m((s) => s3Classes(s.s3).get),
    logBytes: m((s) => s.logBytes),
    logEvents: m((s) => s.logLines),
    wallMs: m((s) => s.wallMs),
    turns: m((s) => s.turns),
    dynamoRequests: m((s) => s.dynamo.length),
    s3Requests: m((s) => s.s3.length),
    sqsRequests: m((s) => s.calls.sqsSendMessage + s.calls.sqsSendMessageBatch),
    ssmCalls: m((s) => s.calls.ssmGetParameter),
  };
}

/** One invocation's DynamoDB requests, grouped: operation, what it touched, units. */
interface OpRow {
  op: string;
  count: number;
  wru: number;
  rru: number;
}

/** `batched`: requests that differ only in how many items they carry (` x15`) are one row (` xN`). */
function opsOf(calls: DynamoCall[], batched = false): OpRow[] {
  const rows = new Map<string, OpRow>();
  for (const c of calls) {
    const what = batched ? c.what.replace(/ x\d+/g, ' xN') : c.what;
    const label =
      `${c.op} ${what}` + (c.consistent ? ' (strongly consistent)' : '') + (c.error ? ` -> ${c.error}` : '');
    const row = rows.get(label) ?? { op: label, count: 0, wru: 0, rru: 0 };
    row.count++;
    row.wru += c.billedWru;
    row.rru += c.billedRru;
    rows.set(label, row);
  }
  return [...rows.values()];
}

interface Rig {
  lab: Lab;
  dir: string;
  bundles: Record<HandlerName, string>;
  dynamo: DynamoCounter;
  s3: Awaited<ReturnType<typeof startS3Counter>>;
  mail: { imap: MailCounter; pop3: MailCounter };
  documents: DynamoDBDocumentClient;
  raw: DynamoDBClient;
  env: (table: string, bucket: string) => Record<string, string>;
  parameters: Record<string, string>;
  hosts: LambdaHost[];
}

function turnsOf(rig: Rig): number {
  return rig.mail.imap.turns + rig.mail.pop3.turns;
}

function connectionsOf(rig: Rig): number {
  return rig.mail.imap.connections + rig.mail.pop3.connections;
}

async function invokeMeasured(
  rig: Rig,
  host: LambdaHost,
  event: unknown,
  timeoutMs: number,
): Promise<{ inv: HostInvocation; sample: Sample }> {
  await rig.dynamo.take();
  rig.s3.take();
  const turns0 = turnsOf(rig);
  const conns0 = connectionsOf(rig);
  const inv = await host.invoke(event, timeoutMs);
  // The proxies log an exchange when its answer has been relayed: give the last one a moment.
  await new Promise((r) => setTimeout(r, 20));
  if (inv.kind !== 'result') throw new Error(`${host.name} failed: ${inv.message}`);
  return {
    inv,
    sample: {
      wallMs: inv.wallMs,
      cpuMs: inv.cpuMs,
      logBytes: inv.logBytes,
      logLines: inv.logLines,
      dynamo: await rig.dynamo.take(),
      s3: rig.s3.take(),
      calls: inv.calls,
      turns: turnsOf(rig) - turns0,
      connections: connectionsOf(rig) - conns0,
    },
  };
}

function bodyText(n: number, size: number, tag: string): string {
  const line = `line ${n} `.padEnd(76, 'x');
  const head = [
    `From: sender${n}@example.com`,
    'To: rcpt@example.com',
    `Subject: ${tag} ${n}`,
    `Message-ID: <${tag}-${n}-${randomBytes(4).toString('hex')}@example.com>`,
    'Date: Thu, 1 Jan 2026 00:00:00 +0000',
    '',
  ].join('\r\n');
  const lines = Math.max(1, Math.floor((size - head.length - 2) / 78));
  return `${head}\r\n${Array.from({ length: lines }, () => line).join('\r\n')}\r\n`;
}

/** A source as a user would register it: no CA of its own (the lab's CA is trusted through NODE_EXTRA_CA_CERTS). */
function sourceFor(rig: Rig, protocol: Protocol, user: TestUser): Source {
  return {
    id: `${protocol}-cost-${randomBytes(4).toString('hex')}`,
    protocol,
    host: '127.0.0.1',
    port: protocol === 'imap' ? rig.mail.imap.port : rig.mail.pop3.port,
    tls: 'implicit',
    user: user.name,
    folders: protocol === 'imap' ? ['INBOX'] : [],
    pollMinutes: POLL_MINUTES,
    enabled: true,
    retention: { mode: 'keep' },
  };
}

async function startHost(rig: Rig, name: HandlerName, table: string, bucket: string): Promise<LambdaHost> {
  const host = await LambdaHost.start({
    dir: rig.dir,
    bundle: rig.bundles[name],
    name,
    memoryMb: SIZING[name].memorySize,
    env: rig.env(table, bucket),
    parameters: rig.parameters,
  });
  rig.hosts.push(host);
  return host;
}

function syncMessage(sourceId: string): string {
  return JSON.stringify({ sourceId, reason: 'due', at: Date.now() });
}

function outcomes(host: LambdaHost, from: number): Array<Record<string, unknown>> {
  return host
    .records()
    .slice(from)
    .filter((r) => r.message === 'sync finished');
}

/** Every item of a table and its storage bytes (indexes included). */
/** Items of one kind (key prefixes): how many, their mean size, and the indexes that hold them. */
interface ItemKind {
  kind: string;
  count: number;
  meanBytes: number;
  indexes: string[];
}

const prefix = (v: AttributeValue | undefined) => {
  const s = v?.S ?? '?';
  const hash = s.indexOf('#');
  return hash < 0 ? s : s.slice(0, hash + 1);
};

/** Storage bytes of a table's items passing `filter` (indexes included), their keys, and their kinds. */
async function tableBytes(
  rig: Rig,
  table: string,
  filter?: (item: Record<string, AttributeValue>) => boolean,
) {
  let bytes = 0;
  let items = 0;
  const keys = new Set<string>();
  const kinds = new Map<string, { count: number; bytes: number; indexes: Set<string> }>();
  let start: Record<string, AttributeValue> | undefined;
  do {
    const page = await rig.raw.send(new ScanCommand({ TableName: table, ExclusiveStartKey: start }));
    for (const item of page.Items ?? []) {
      if (filter && !filter(item)) continue;
      bytes += storedBytes(item, INDEX_KEYS);
      items++;
      keys.add(`${item.PK?.S}|${item.SK?.S}`);
      const kind = `${prefix(item.PK)}·${prefix(item.SK)}`;
      const k = kinds.get(kind) ?? { count: 0, bytes: 0, indexes: new Set<string>() };
      k.count++;
      k.bytes += itemBytes(item);
      for (const i of Object.values(TABLE.indexes))
        if (item[i.partitionKey] && item[i.sortKey]) k.indexes.add(i.name);
      kinds.set(kind, k);
    }
    start = page.LastEvaluatedKey;
  } while (start);
  const kindList: ItemKind[] = [...kinds].map(([kind, k]) => ({
    kind,
    count: k.count,
    meanBytes: k.bytes / k.count,
    indexes: [...k.indexes].sort(),
  }));
  return { bytes, items, keys, kinds: kindList };
}

interface IdlePollFigures {
  protocol: Protocol;
  /** The first invocation of a fresh container (cold: the password read from SSM), its import of the mailbox. */
  first: Sample;
  samples: Sample[];
  profile: Profiled;
  ops: OpRow[];
  /** Bytes of the source's own items (registry entry, status, stats, lease, checkpoints), indexes included. */
  sourceTableBytes: number;
}

async function measureIdlePolls(
  rig: Rig,
  protocol: Protocol,
  table: string,
  bucket: string,
  polls: number,
): Promise<IdlePollFigures> {
  const user = rig.lab.mail.createUser(`idle${protocol}`);
  for (let i = 0; i < IDLE_MAILBOX; i++) rig.lab.mail.deliver(user, bodyText(i, 4_000, 'idle'));
  await rig.lab.doveadm(['index', '-u', user.name, 'INBOX']);
  const source = sourceFor(rig, protocol, user);
  rig.parameters[`${BENCH_SECRETS_PREFIX}${source.id}`] = user.password;
  await new DynamoSourceRegistry(rig.documents, table).put(source, Date.now() - 1000);
  const host = await startHost(rig, 'sync', table, bucket);
  const timeoutMs = SIZING.sync.timeout.toMilliseconds();
  const { sample: first } = await invokeMeasured(rig, host, sqsEvent([syncMessage(source.id)]), timeoutMs);
  const firstOutcome = outcomes(host, 0)[0];
  if (firstOutcome?.outcome !== 'ok' || firstOutcome.fetched !== IDLE_MAILBOX)
    throw new Error(
      `${protocol}: the first sync did not import the mailbox: ${JSON.stringify(firstOutcome)}`,
    );
  const samples: Sample[] = [];
  for (let i = 0; i < polls; i++) {
    const from = host.records().length;
    const { sample } = await invokeMeasured(rig, host, sqsEvent([syncMessage(source.id)]), timeoutMs);
    const done = outcomes(host, from)[0];
    if (done?.outcome !== 'ok' || done.fetched !== 0)
      throw new Error(`${protocol}: an idle poll was not idle: ${JSON.stringify(done)}`);
    samples.push(sample);
  }
  const mine = (item: Record<string, AttributeValue>) => {
    const pk = item.PK?.S ?? '';
    const sk = item.SK?.S ?? '';
    if (pk === `SRC#${source.id}`) return !/^(MSG|SHA|FAIL|AUDIT|PENDING)#/.test(sk);
    return pk === 'SOURCES' && sk === `SOURCE#${source.id}`;
  };
  const ownItems = await tableBytes(rig, table, mine);
  return {
    protocol,
    first,
    samples,
    profile: profileOf(samples),
    ops: opsOf(samples[samples.length - 1]!.dynamo),
    sourceTableBytes: ownItems.bytes,
  };
}

interface DispatchFigures {
  zero: Sample[];
  two: Sample[];
  base: Profiled;
  perDue: InvocationProfile;
  opsTwo: OpRow[];
  sent: number;
}

async function measureDispatch(rig: Rig, runs: number): Promise<DispatchFigures> {
  const store = await rig.lab.freshStore('cost-dispatch');
  const registry = new DynamoSourceRegistry(rig.documents, store.table);
  const user = rig.lab.mail.createUser('dispatch');
  const ids: string[] = [];
  for (let i = 0; i < SOURCES; i++) {
    const source = sourceFor(rig, i % 2 ? 'pop3' : 'imap', user);
    await registry.put(source, Date.now());
    ids.push(source.id);
  }
  const setDue = async (id: string, at: number) => {
    const entry = (await registry.get(id))!;
    if (!(await registry.setSchedule(id, { nextDueAt: at, failures: 0, lastOutcome: 'ok' }, entry.revision)))
      throw new Error(`could not set the schedule of ${id}`);
  };
  const later = Date.now() + 3_600_000;
  for (const id of ids) await setDue(id, later);
  const host = await startHost(rig, 'dispatch', store.table, store.bucket);
  // One unmeasured run: the container's first (cold) invocation is counted with the cold inits.
  await host.invoke(SCHEDULER_EVENT, 60_000);
  const zero: Sample[] = [];
  const two: Sample[] = [];
  let sent = 0;
  for (let i = 0; i < runs; i++) {
    const { inv, sample } = await invokeMeasured(rig, host, SCHEDULER_EVENT, 60_000);
    if ((inv.result as { dispatched: string[] }).dispatched.length !== 0)
      throw new Error('dispatched with none due');
    zero.push(sample);
    const due = [ids[(2 * i) % SOURCES]!, ids[(2 * i + 1) % SOURCES]!];
    for (const id of due) await setDue(id, Date.now() - 1000);
    const r = await invokeMeasured(rig, host, SCHEDULER_EVENT, 60_000);
    const dispatched = (r.inv.result as { dispatched: string[] }).dispatched;
    if (dispatched.length !== 2) throw new Error(`dispatched ${dispatched.length} of 2 due`);
    sent += r.inv.sent.length;
    two.push(r.sample);
    // Back to not due (the claim would run out in 15 minutes).
    for (const id of due) await setDue(id, later);
  }
  const base = profileOf(zero);
  const withTwo = profileOf(two);
  const half = (a: number, b: number) => Math.max(0, (a - b) / 2);
  return {
    zero,
    two,
    base,
    perDue: {
      cpuMs: half(withTwo.cpuMs, base.cpuMs),
      // The SendMessageBatch is counted by the model (one per minute with a source due), not per source.
      waitMs: half(withTwo.waitMs - WAITS.sqsMs, base.waitMs),
      wru: half(withTwo.wru, base.wru),
      rru: half(withTwo.rru, base.rru),
      s3Put: 0,
      s3Get: 0,
      logBytes: half(withTwo.logBytes, base.logBytes),
      logEvents: half(withTwo.logEvents, base.logEvents),
    },
    opsTwo: opsOf(two[two.length - 1]!.dynamo),
    sent,
  };
}

interface ImportFigures {
  protocol: Protocol;
  messages: number;
  messageBytes: number;
  invocations: number;
  totals: Sample;
  /** Per message, the per-invocation overhead (an idle poll each) taken out. */
  perMessage: ImportInput['perMessage'];
  wallMs: number;
  storedObjects: number;
  ops: OpRow[];
  /** The items the import added, by kind. */
  kinds: ItemKind[];
  /** DynamoDB write units per message if its commits were plain writes (no transaction). */
  plainWruPerMessage: number;
}

async function measureImport(
  rig: Rig,
  protocol: Protocol,
  count: number,
  table: string,
  bucket: string,
  idle: Profiled,
): Promise<ImportFigures> {
  const user = rig.lab.mail.createUser(`import${protocol}`);
  let messageBytes = 0;
  for (let i = 0; i < count; i++) {
    const body = bodyText(i, MESSAGE_BYTES, `import-${protocol}`);
    messageBytes += Buffer.byteLength(body);
    rig.lab.mail.deliver(user, body);
  }
  await rig.lab.doveadm(['index', '-u', user.name, 'INBOX']);
  const source = sourceFor(rig, protocol, user);
  rig.parameters[`${BENCH_SECRETS_PREFIX}${source.id}`] = user.password;
  await new DynamoSourceRegistry(rig.documents, table).put(source, Date.now() - 1000);
  const before = await tableBytes(rig, table);
  const host = await startHost(rig, 'sync', table, bucket);
  const queue = [syncMessage(source.id)];
  const all: Sample[] = [];
  const started = Date.now();
  while (queue.length) {
    if (all.length > 50) throw new Error(`${protocol}: the import did not finish in 50 invocations`);
    const { inv, sample } = await invokeMeasured(
      rig,
      host,
      sqsEvent([queue.shift()!]),
      SIZING.sync.timeout.toMilliseconds(),
    );
    all.push(sample);
    for (const m of inv.sent) queue.push(m.body);
  }
  const wallMs = Date.now() - started;
  const runs = outcomes(host, 0);
  const fetched = sum(runs.map((r) => Number(r.fetched ?? 0)));
  if (fetched !== count || runs[runs.length - 1]?.outcome !== 'ok')
    throw new Error(`${protocol}: imported ${fetched} of ${count}: ${JSON.stringify(runs)}`);
  const after = await tableBytes(rig, table, (item) => !before.keys.has(`${item.PK?.S}|${item.SK?.S}`));
  const totals: Sample = {
    wallMs: sum(all.map((s) => s.wallMs)),
    cpuMs: sum(all.map((s) => s.cpuMs)),
    logBytes: sum(all.map((s) => s.logBytes)),
    logLines: sum(all.map((s) => s.logLines)),
    dynamo: all.flatMap((s) => s.dynamo),
    s3: all.flatMap((s) => s.s3),
    calls: {
      ssmGetParameter: sum(all.map((s) => s.calls.ssmGetParameter)),
      sqsSendMessage: sum(all.map((s) => s.calls.sqsSendMessage)),
      sqsSendMessageBatch: sum(all.map((s) => s.calls.sqsSendMessageBatch)),
      sqsEntries: sum(all.map((s) => s.calls.sqsEntries)),
    },
    turns: sum(all.map((s) => s.turns)),
    connections: sum(all.map((s) => s.connections)),
  };
  const k = all.length;
  const per = (x: number, overhead: number) => Math.max(0, x - k * overhead) / count;
  const s3 = s3Classes(totals.s3);
  const uploaded = totals.s3
    .filter((c) => c.kind === 'PutObject' || c.kind === 'UploadPart')
    .reduce((n, c) => n + c.bytesIn, 0);
  return {
    protocol,
    messages: count,
    messageBytes: messageBytes / count,
    invocations: k,
    totals,
    perMessage: {
      cpuMs: per(totals.cpuMs, idle.cpuMs),
      // Overlapped by the pipeline: the import's time is the slower of CPU and transfer (cost-model.ts).
      waitMs: 0,
      wru: per(sum(totals.dynamo.map((c) => c.billedWru)), idle.wru),
      rru: per(sum(totals.dynamo.map((c) => c.billedRru)), idle.rru),
      s3Put: per(s3.put, idle.s3Put),
      s3Get: per(s3.get, idle.s3Get),
      logBytes: per(totals.logBytes, idle.logBytes),
      logEvents: per(totals.logLines, idle.logEvents),
      sqsRequests: 0,
      storedS3Bytes: uploaded / count,
      storedTableBytes: after.bytes / count,
    },
    wallMs,
    storedObjects: totals.s3.filter((c) => c.kind === 'PutObject' || c.kind === 'CompleteMultipartUpload')
      .length,
    ops: opsOf(totals.dynamo, true),
    kinds: after.kinds,
    plainWruPerMessage: per(sum(totals.dynamo.map((c) => c.plainWru)), idle.plainWru),
  };
}

/** Distinct custom metrics (namespace, name, dimension values) in the embedded-metric blobs of `hosts`. */
function customMetrics(hosts: LambdaHost[]): string[] {
  const seen = new Set<string>();
  for (const h of hosts) {
    for (const r of h.records()) {
      const aws = r._aws as
        | {
            CloudWatchMetrics?: Array<{
              Namespace: string;
              Dimensions: string[][];
              Metrics: Array<{ Name: string }>;
            }>;
          }
        | undefined;
      for (const d of aws?.CloudWatchMetrics ?? []) {
        for (const dims of d.Dimensions.length ? d.Dimensions : [[]]) {
          const values = dims.map((k) => `${k}=${String(r[k])}`).join(',');
          for (const m of d.Metrics) seen.add(`${d.Namespace} ${m.Name} {${values}}`);
        }
      }
    }
  }
  return [...seen].sort();
}

// ---- the report ---------------------------------------------------------------------------------------------------

const usd = (x: number) =>
  x === 0 ? '$0' : x < 0.0001 ? `$${x.toExponential(1)}` : `$${x.toFixed(x < 0.01 ? 4 : 3)}`;
const int = (x: number) => Math.round(x).toLocaleString('en');
const f1 = (x: number) => x.toFixed(1);
const f0 = (x: number) => x.toFixed(0);

function itemsTable(items: LineItem[], totalLabel: string): string {
  const t = total(items);
  return [
    '| service | item | usage | list price | with always-free tiers |',
    '| --- | --- | --- | --- | --- |',
    ...items.map((i) => `| ${i.service} | ${i.item} | ${i.usage} | ${usd(i.usd)} | ${usd(i.usdFree)} |`),
    `| **${totalLabel}** | | | **${usd(t.usd)}** | **${usd(t.usdFree)}** |`,
  ].join('\n');
}

function opsTable(ops: OpRow[], scale = 1): string {
  const x = (v: number) => String(Math.round(v * scale * 10) / 10);
  return [
    '| DynamoDB request (key prefixes; ids left out) | count | WRU | RRU |',
    '| --- | --- | --- | --- |',
    ...ops.map((o) => `| ${o.op} | ${x(o.count)} | ${x(o.wru)} | ${x(o.rru)} |`),
    `| **total** | **${x(sum(ops.map((o) => o.count)))}** | **${x(sum(ops.map((o) => o.wru)))}** | **${x(sum(ops.map((o) => o.rru)))}** |`,
  ].join('\n');
}

function dominant(items: LineItem[], n = 3): string {
  const t = total(items).usd;
  return [...items]
    .sort((a, b) => b.usd - a.usd)
    .slice(0, n)
    .map((i) => `${i.service} ${i.item.toLowerCase()} ${usd(i.usd)} (${f0((100 * i.usd) / t)}%)`)
    .join(', ');
}

interface Measured {
  idle: Record<Protocol, IdlePollFigures>;
  dispatch: DispatchFigures;
  imports: Record<Protocol, ImportFigures>;
  syncInitMs: number;
  dispatchInitMs: number;
  metrics: string[];
  importMetrics: string[];
}

function idleInputOf(
  m: Measured,
  overrides: Partial<IdleInput> = {},
  mailRoundTripMs = WAITS.mailRoundTripMs,
): IdleInput {
  const sync = profileOf(m.idle.imap.samples, mailRoundTripMs);
  return {
    sources: SOURCES,
    pollMinutes: POLL_MINUTES,
    syncMemoryMb: SIZING.sync.memorySize,
    dispatchMemoryMb: SIZING.dispatch.memorySize,
    syncPoll: sync,
    dispatchBase: m.dispatch.base,
    dispatchPerDue: m.dispatch.perDue,
    syncInitMs: m.syncInitMs,
    dispatchInitMs: m.dispatchInitMs,
    customMetrics: m.metrics.length,
    alarms: ALARMS,
    tableBytes: SOURCES * m.idle.imap.sourceTableBytes,
    ...overrides,
  };
}

function importInputOf(
  m: Measured,
  protocol: Protocol = 'imap',
  overrides: Partial<ImportInput> = {},
): ImportInput {
  return {
    messages: IMPORT_MESSAGES,
    messageBytes: MESSAGE_BYTES,
    syncMemoryMb: SIZING.sync.memorySize,
    perMessage: m.imports[protocol].perMessage,
    perInvocation: m.idle[protocol].profile,
    upstreamBytesPerSecond: UPSTREAM_BYTES_PER_SECOND,
    budgetMs: syncDeadline(0, SIZING.sync.timeout.toMilliseconds()),
    ...overrides,
  };
}

/** Where the figures of `npm run bench` were looked for, and what was found (undefined: no such file). */
interface BenchInput {
  file: string;
  figures: BenchFigures | undefined;
}

const usdSig = (x: number) => (x === 0 ? '$0' : `$${x.toPrecision(2)}`);
const PROTOCOL_NAME: Record<Protocol, string> = { imap: 'IMAP', pop3: 'POP3' };

/**
 * The imports of `npm run bench` (docs/benchmarks.json), priced as Lambda compute at the stack's sync memory, and
 * set against the model of (b). A missing file is a line saying so.
 */
function benchImportsSection(m: Measured, bench: BenchInput, a: Assumptions): string {
  const title = '## Imports as `npm run bench` measured them';
  const f = bench.figures;
  if (!f)
    return [
      title,
      '',
      `No figures: \`${bench.file}\` does not exist (run \`npm run bench\` to measure the imports of its corpora and fill this section).`,
    ].join('\n');
  if (!f.imports.length)
    return [title, '', `\`${bench.file}\` lists no import (run \`npm run bench\`).`].join('\n');
  const mb = SIZING.sync.memorySize;
  const price = PRICES.lambdaArmGbSecond.usd;
  const rows = f.imports.map((r) => ({ r, e: lambdaImportEstimate(r, mb) }));
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const table = [
    `| corpus | protocol | own CPU per 1,000 messages | duration per 1,000 on Lambda (${int(mb)} MB) | GB-s per 1,000 | Lambda compute per 1,000 | compute for 10,000 such messages |`,
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(({ r, e }) => {
      const bound =
        e.bound === 'cpu'
          ? `CPU at ${vcpuShare(mb).toFixed(2)} vCPU`
          : e.storeLatency
            ? 'wall, store delayed 20 ms'
            : 'wall, store not delayed';
      return `| ${r.corpus} | ${PROTOCOL_NAME[r.protocol]} | ${secs((r.ownCpuMs * 1000) / r.messages)} | ${secs(e.durationPer1000Ms)} (${bound}) | ${f1(e.gbSecondsPer1000)} | ${usdSig(e.gbSecondsPer1000 * price)} | ${usdSig(10 * e.gbSecondsPer1000 * price)} |`;
    }),
  ].join('\n');
  // The file's own GB-s were computed at its memory size by the same function: say so if they disagree.
  const stale = f.imports.filter(
    (r) =>
      Math.abs(lambdaImportEstimate(r, f.lambdaMemoryMb).gbSecondsPer1000 - r.gbSecondsPer1000) >
      0.01 * r.gbSecondsPer1000 + 1e-9,
  );
  const notes = [
    f.lambdaMemoryMb !== mb
      ? ` The bench took the sync function at ${int(f.lambdaMemoryMb)} MB; the stack now sets ${int(mb)} MB, which the table uses.`
      : '',
    stale.length
      ? ` The file's own GB-s per 1,000 for ${stale.map((r) => `${r.corpus} ${PROTOCOL_NAME[r.protocol]}`).join(', ')} differ from this arithmetic (bench/lib/bench-figures.ts changed since the run?).`
      : '',
  ].join('');
  // (b)'s model of each protocol: its CPU per message was measured on 50 KB messages, its duration is set by that
  // CPU or by the mail server's assumed sending rate, whichever is slower.
  const model = (protocol: Protocol) => {
    const { usage } = importCost(importInputOf(m, protocol), a);
    return {
      cpuMs: m.imports[protocol].perMessage.cpuMs,
      msPerMb: m.imports[protocol].perMessage.cpuMs / (m.imports[protocol].messageBytes / 2 ** 20),
      gbs: (usage.gbSeconds * 1000) / IMPORT_MESSAGES,
      transferBound: usage.transferBoundMs > usage.cpuBoundMs,
    };
  };
  const models = { imap: model('imap'), pop3: model('pop3') };
  const rate = `the ${f0(UPSTREAM_BYTES_PER_SECOND / 2 ** 20)} MB/s it assumes of the mail server`;
  const modelBound =
    models.imap.transferBound === models.pop3.transferBound
      ? `both set by ${models.imap.transferBound ? rate : 'their CPU'}`
      : `IMAP set by ${models.imap.transferBound ? rate : 'its CPU'}, POP3 by ${models.pop3.transferBound ? rate : 'its CPU'}`;
  const x = (v: number) => `${v.toFixed(2)}x`;
  const ratios = rows
    .map(({ r, e }, k) => {
      const mo = models[r.protocol];
      const perMessage = r.ownCpuMs / r.messages;
      const perMb = r.ownCpuMs / (r.bytes / 2 ** 20);
      const figures = [e.gbSecondsPer1000 / mo.gbs, perMessage / mo.cpuMs, perMb / mo.msPerMb].map(x);
      const [gbs, cpu, perMbRatio] = k
        ? figures
        : [`${figures[0]} those GB-s`, `${figures[1]} that CPU per message`, `${figures[2]} per MB of mail`];
      return `${gbs}, ${cpu} and ${perMbRatio} (${r.corpus} ${PROTOCOL_NAME[r.protocol]}, ${int(r.bytes / r.messages / 1024)} KB a message)`;
    })
    .join('; ');
  return [
    title,
    '',
    `From \`${bench.file}\`, written by \`npm run bench\` on ${new Date(f.generated).toISOString().slice(0, 16).replace('T', ' ')} UTC at commit ${f.commit} (${f.machine}): full syncs of its corpora into an empty store, medians of its runs. Own CPU is Tributary's process (user + system, store not delayed). The duration on Lambda is the larger of the sync's in-process time with every S3 and DynamoDB request delayed 20 ms (in-region latency; without the delay where that was not measured) and its own CPU at the memory's vCPU share (${vcpuShare(mb).toFixed(2)} vCPU at ${int(mb)} MB); the mail server is on the bench's machine and sends as fast as it can. Lambda compute only, arm64 at $${price} per GB-s, free tier not applied: the requests and storage of an import are in (b).${notes}`,
    '',
    table,
    '',
    `Against (b), whose import of 10,000 messages of ${f0(m.imports.imap.messageBytes / 1024)} KB comes to ${f1(models.imap.gbs)} GB-s per 1,000 over IMAP and ${f1(models.pop3.gbs)} over POP3 (${modelBound}) from a CPU per message measured here of ${f1(models.imap.cpuMs)} ms and ${f1(models.pop3.cpuMs)} ms, the bench's imports take ${ratios}.`,
  ].join('\n');
}

function report(
  m: Measured,
  meta: { started: Date; seconds: number; command: string },
  bench: BenchInput,
): string {
  const a: Assumptions = DEFAULT_ASSUMPTIONS;
  const idle = idleCost(idleInputOf(m), a);
  const idleTotal = total(idle.items);
  const imp = importCost(importInputOf(m), a);
  const impTotal = total(imp.items);
  const impStorage = total(imp.storage);
  const impPop3 = total(importCost(importInputOf(m, 'pop3'), a).items);
  const u = idle.usage;
  const i = m.idle.imap.profile;
  const p = m.idle.pop3.profile;
  const alarmsUsd = ALARMS * PRICES.alarmMonth.usd;
  const idleMet = idleTotal.usd <= IDLE_TARGET_USD;
  const impMet = impTotal.usd <= IMPORT_TARGET_USD;

  // What-ifs, each from the same measurements with one thing changed (none of them is made in the code).
  const whatIf = (label: string, input: IdleInput, assumptions: Assumptions = a) => {
    const c = idleCost(input, assumptions);
    return { label, items: c.items, ...total(c.items) };
  };
  const statusWru = sum(
    m.idle.imap.ops.filter((o) => o.op.startsWith('TransactWriteItems')).map((o) => o.wru),
  );
  const lean: Partial<IdleInput> = {
    customMetrics: 0,
    syncMemoryMb: 512,
    syncPoll: { ...i, wru: i.wru - statusWru },
  };
  const twoPollers = whatIf(
    'the event source mapping without `maxConcurrency` (Lambda may then poll the idle queue with 2 pollers, not 5)',
    idleInputOf(m),
    { ...a, esmPollers: 2 },
  );
  const noIdleMetrics = whatIf(
    'no custom metric from a run that fetched, deleted and failed nothing',
    idleInputOf(m, { customMetrics: 0 }),
  );
  const noStatus = whatIf(
    `an idle poll without its run-status transaction (${statusWru} WRU)`,
    idleInputOf(m, { syncPoll: lean.syncPoll! }),
  );
  const lowMem = whatIf('the sync function at 512 MB', idleInputOf(m, { syncMemoryMb: 512 }));
  const together = m.metrics.length ? 'the four together' : 'the three together';
  const allFour = whatIf(together, idleInputOf(m, lean), { ...a, esmPollers: 2 });
  const allFourNoAlarms = whatIf(
    `${together}, and no alarm (the fixed $0.40)`,
    idleInputOf(m, { ...lean, alarms: 0 }),
    { ...a, esmPollers: 2 },
  );
  const writes = m.idle.imap.ops.filter((o) => o.wru > 0);
  // A POP3 poll reads the ids of every message of the source that is still on the server, whole items.
  const msgQuery = m.idle.pop3.ops.find((o) => o.op.startsWith('Query table MSG#'));
  const pop3RruPerThousand = msgQuery ? (msgQuery.rru / IDLE_MAILBOX) * 1000 : 0;
  const pop3UsdPerThousand = pop3RruPerThousand * 12 * a.hoursPerMonth * PRICES.dynamoRru.usd;

  const sens = (label: string, inputs: Array<[string, IdleInput]>) =>
    [
      `| ${label} | sync duration (modelled) | GB-s a month | list price | with free tiers |`,
      '| --- | --- | --- | --- | --- |',
      ...inputs.map(([name, input]) => {
        const c = idleCost(input, a);
        const t = total(c.items);
        return `| ${name} | ${c.usage.syncDurationMs} ms | ${int(c.usage.gbSeconds)} | ${usd(t.usd)} | ${usd(t.usdFree)} |`;
      }),
    ].join('\n');
  const memorySens = sens(
    'sync memory',
    [512, 1024, 1769].map((mb) => [
      `${mb} MB (${f1(vcpuShare(mb))} vCPU)`,
      idleInputOf(m, { syncMemoryMb: mb }),
    ]),
  );
  const pollSens = sens(
    'poll every',
    [5, 15, 60].map((min) => [`${min} minutes`, idleInputOf(m, { pollMinutes: min })]),
  );
  const rttSens = sens(
    'mail round trip',
    [10, 30, 100].map((rtt) => [`${rtt} ms`, idleInputOf(m, {}, rtt)]),
  );
  const importSens = [
    '| upstream rate | sync memory | duration | invocations | GB-s | list price |',
    '| --- | --- | --- | --- | --- | --- |',
    ...[2, 5, 20].flatMap((mbs) =>
      [1024, 1769].map((mb) => {
        const c = importCost(
          importInputOf(m, 'imap', { upstreamBytesPerSecond: mbs * 2 ** 20, syncMemoryMb: mb }),
          a,
        );
        return `| ${mbs} MB/s | ${mb} MB | ${f0(c.usage.durationMs / 1000)} s | ${c.usage.invocations} | ${int(c.usage.gbSeconds)} | ${usd(total(c.items).usd)} |`;
      }),
    ),
  ].join('\n');

  const pm = m.imports.imap.perMessage;
  const pmPop = m.imports.pop3.perMessage;
  const d = m.dispatch;

  const targets = [
    '| target | measured | met |',
    '| --- | --- | --- |',
    `| 10 idle sources polled every 5 minutes <= $${IDLE_TARGET_USD.toFixed(2)} a month (list prices, no free tier) | ${usd(idleTotal.usd)} a month (${usd(idleTotal.usdFree)} with the always-free tiers; ${usd(idleTotal.usd - alarmsUsd)} without the 4 alarms, a fixed cost) | ${idleMet ? 'met' : `**missed** by ${usd(idleTotal.usd - IDLE_TARGET_USD)} (${f1(idleTotal.usd / IDLE_TARGET_USD)}x)`} |`,
    `| Importing 10,000 messages of 50 KB <= $${IMPORT_TARGET_USD.toFixed(2)} (one-off) | ${usd(impTotal.usd)} (${usd(impTotal.usdFree)} with free tiers), then ${usd(impStorage.usd)} a month to keep the mail | ${impMet ? 'met' : `**missed** by ${usd(impTotal.usd - IMPORT_TARGET_USD)}`} |`,
  ].join('\n');

  const findings = [
    `- SQS is mostly Lambda's own polling of the empty queue: ${int(u.sqs.pollerReceives)} of ${int(u.sqs.total)} requests (${usd(u.sqs.pollerReceives * PRICES.sqsRequest.usd)}). Lambda long-polls an SQS event source whatever the traffic; it scales an idle mapping down to 2 concurrent pollers, but not when the mapping has a maximum concurrency, and the stack sets \`maxConcurrency: 5\` (reserved concurrency, the other way to bound the syncs, was rejected in infra/service-stack.ts because throttled receives count towards the DLQ). That choice costs ${usd(idleTotal.usd - twoPollers.usd)} a month.`,
    m.metrics.length
      ? `- Custom metrics: ${m.metrics.length} distinct metrics are sent while idle (${m.metrics.map((x) => `\`${x.split(' ')[1]}\``).join(', ')}), $0.30 each for every month in which they are sent (prorated by the hour): ${usd(m.metrics.length * PRICES.customMetricMonth.usd)}, within the 10 free ones otherwise. On an idle run \`messages\`, \`bytes\` and \`deletedUpstream\` are 0, and \`runs\`, \`duration\` and \`dispatched\` repeat what Lambda's free AWS/Lambda metrics (invocations, duration) and the log lines already say; the alarms need none of them (SourceFailingAlarm watches \`SyncFailed\`, sent only on a failed run).`
      : `- Custom metrics: none is sent while idle. The run metrics (runs, messages, bytes, duration, upstream deletions, dispatched) are opt-in (the stack's \`detailedMetrics\` context: ${usd(6 * PRICES.customMetricMonth.usd)} a month for the six); \`SyncFailed\` and \`dispatchFailed\` are sent only when a run or a send fails, $0.30 for a month in which that happens.`,
    `- DynamoDB: an idle IMAP poll makes ${i.dynamoRequests} requests, ${i.wru} WRU and ${i.rru} RRU (table below), and the dispatcher's claim of the source ${f1(d.perDue.wru)} WRU more: ${f1(i.wru + d.perDue.wru)} WRU a poll. The writes: ${writes.map((o) => `${o.op} x${o.count} (${o.wru} WRU)`).join('; ')}. The schedule writes (the dispatcher's claim and the run's next due time) cost 3 WRU each because they move the item's due-index key (a delete and a put in GSI3 besides the table write); the run status is a transaction: its update counts twice and the condition check on the lease is billed as a write of 2 units, ${statusWru} WRU for a status update. A poll that found nothing could skip the status transaction (its last-run time is in the schedule it writes anyway) and fold the lease release into the schedule write; the reads (the registry entry twice, strongly consistent; the failures and pending-actions queries, 1 RRU each even when empty) are cheap.`,
    `- POP3: an idle poll also reads the id of every message of the source still on the server (a strongly consistent Query of its MSG# items; a ProjectionExpression does not reduce read units): ${msgQuery ? msgQuery.rru : 0} RRU for the ${IDLE_MAILBOX} messages here, about ${f0(pop3RruPerThousand)} RRU per 1,000 messages kept upstream per poll, ${usd(pop3UsdPerThousand)} a month per 1,000 messages at 5-minute polling (a POP3 source keeping 10,000 messages on the server: ${usd(10 * pop3UsdPerThousand)} a month in reads alone). An IMAP poll reads one checkpoint item instead.`,
    `- Lambda: an idle poll is mostly waiting (${f0(i.waitMs)} of its ${u.syncDurationMs} ms modelled: ${i.turns} mail round trips and ${i.dynamoRequests} DynamoDB requests, one after the other), billed at 1,769 MB: ${f1((SIZING.sync.memorySize / 1024) * (u.syncDurationMs / 1000))} GB-s a poll. At 512 MB the same poll costs ${f1(gbSeconds(lambdaDurationMs(i, 512), 512))} GB-s; a first import costs the same GB-s at any size up to 1,769 MB (it is CPU-bound and gets proportionally more time), only slower, and the largest syncs measured peak near 300 MB (docs/benchmarks.md).`,
    `- Alarms: ${ALARMS} standard alarms are a fixed ${usd(alarmsUsd)}, more than the $0.30 target by themselves, within the 10 free alarms otherwise.`,
  ].join('\n');

  const idleVerdict = [
    idleMet
      ? `The idle target is met: ${usd(idleTotal.usd)} a month at list prices against $${IDLE_TARGET_USD.toFixed(2)}.`
      : `The idle target is **missed** by ${usd(idleTotal.usd - IDLE_TARGET_USD)}: ${usd(idleTotal.usd)} a month at list prices against $${IDLE_TARGET_USD.toFixed(2)}. Most of it: ${dominant(idle.items)}. With the always-free tiers (the deployment alone in its account) it is ${usd(idleTotal.usdFree)}, all of it DynamoDB request units (on-demand tables get no free units).`,
    '',
    'What changes would do, each recomputed from the same measurements (none is made in the code):',
    '',
    '| change | list price a month | with free tiers |',
    '| --- | --- | --- |',
    `| as measured | ${usd(idleTotal.usd)} | ${usd(idleTotal.usdFree)} |`,
    ...[
      twoPollers,
      ...(m.metrics.length ? [noIdleMetrics] : []),
      noStatus,
      lowMem,
      allFour,
      allFourNoAlarms,
    ].map((w) => `| ${w.label} | ${usd(w.usd)} | ${usd(w.usdFree)} |`),
    '',
    `Even ${together} leave ${usd(allFour.usd)}${allFour.usd > IDLE_TARGET_USD ? ` (${dominant(allFour.items)})` : ''}: ${allFourNoAlarms.usd <= IDLE_TARGET_USD ? 'the target is reachable only without the alarms' : 'the target is out of reach at list prices without further changes to what a poll does'}. The findings behind the table:`,
    '',
    findings,
  ].join('\n');

  // The import: what its commits would cost as plain writes, and with every item under 1 KB.
  const im = m.imports.imap;
  const plainImport = total(
    importCost(importInputOf(m, 'imap', { perMessage: { ...pm, wru: im.plainWruPerMessage } }), a).items,
  );
  const kindRows = im.kinds
    .filter((k) => k.count >= im.messages / 2)
    .map((k) => {
      const perMessage = k.count / im.messages;
      const units = Math.ceil(k.meanBytes / 1024);
      return { ...k, perMessage, units, wru: perMessage * units * (2 + k.indexes.length) };
    });
  const oversize = kindRows.filter((k) => k.units > 1);
  const savedBySize = sum(oversize.map((k) => k.perMessage * (k.units - 1) * (2 + k.indexes.length)));
  const smallImport = total(
    importCost(importInputOf(m, 'imap', { perMessage: { ...pm, wru: pm.wru - savedBySize } }), a).items,
  );
  const kindsTable = [
    '| item written per message (key prefixes) | per message | mean size | in indexes | WRU per message in a commit transaction |',
    '| --- | --- | --- | --- | --- |',
    ...kindRows.map(
      (k) =>
        `| ${k.kind} | ${f1(k.perMessage)} | ${int(k.meanBytes)} B (${k.units} KB unit${k.units > 1 ? 's' : ''}) | ${k.indexes.join(', ') || '-'} | ${f1(k.wru)} |`,
    ),
  ].join('\n');
  const importVerdict = [
    impMet
      ? `The import target is met: ${usd(impTotal.usd)} for 10,000 messages of 50 KB (${f0((100 * impTotal.usd) / IMPORT_TARGET_USD)}% of the $${IMPORT_TARGET_USD.toFixed(2)}); most of it ${dominant(imp.items, 2)}.`
      : `The import target is **missed** by ${usd(impTotal.usd - IMPORT_TARGET_USD)}: ${usd(impTotal.usd)} for 10,000 messages of 50 KB against $${IMPORT_TARGET_USD.toFixed(2)}; most of it ${dominant(imp.items, 2)}.`,
    `Keeping the mail then costs ${usd(impStorage.usd)} a month (S3 ${usd(imp.storage[0]!.usd)}, DynamoDB ${usd(imp.storage[1]!.usd)}, the latter free within 25 GB).`,
    '',
    `- S3: one PutObject per message (by design: one object per message), $0.005 per 1,000: ${usd(imp.items.find((x) => x.service === 'S3')!.usd)} of any 10,000-message import, half the target by itself.`,
    `- DynamoDB: ${f1(pm.wru)} WRU per message. Messages are committed in transactions (${f1(im.messages / Math.max(1, sum(im.ops.filter((o) => o.op.startsWith('TransactWriteItems Put SRC#·MSG#')).map((o) => o.count))))} messages a transaction on average, with the source's counters and a check of the lease): a transaction bills each write twice and the lease check as a write. As plain writes the same items would be ${f1(im.plainWruPerMessage)} WRU per message, and the import ${usd(plainImport.usd)}. ${oversize.length ? `Items over 1 KB cost a unit per started KB, in the table and again in each index that holds them (${oversize.map((k) => `${k.kind} ${int(k.meanBytes)} B`).join(', ')}): under 1 KB each, the import would be ${usd(smallImport.usd)}.` : 'Every item is under 1 KB.'}`,
  ].join('\n');

  const pricesTable = [
    '| price | us-east-1 list | source | date it shows |',
    '| --- | --- | --- | --- |',
    ...Object.entries(PRICES).map(
      ([name, pr]) =>
        `| ${name} | $${pr.usd < 0.001 ? pr.usd.toExponential(4) : pr.usd} per ${pr.unit} | ${pr.source} | ${pr.dated} |`,
    ),
    '',
    ...Object.values(PRICES)
      .filter((pr) => 'note' in pr)
      .map((pr) => `- ${(pr as { note: string }).note}`),
    '',
    '| always-free tier | amount a month | source |',
    '| --- | --- | --- |',
    ...Object.entries(FREE_TIERS).map(
      ([name, ft]) =>
        `| ${name} | ${ft.amount.toLocaleString('en')} ${ft.unit}${ft.alwaysFree ? '' : ' (not always free)'} | ${ft.source}${'note' in ft ? `. ${(ft as { note: string }).note}` : ''} |`,
    ),
  ].join('\n');

  const sampleRow = (label: string, pr: Profiled, mem: number) =>
    `| ${label} | ${f0(pr.wallMs)} | ${f0(pr.cpuMs)} | ${pr.turns} | ${pr.dynamoRequests} | ${pr.wru} / ${pr.rru} | ${pr.s3Requests} | ${pr.sqsRequests} | ${pr.ssmCalls} | ${int(pr.logBytes)} B, ${pr.logEvents} lines | ${f0(pr.waitMs)} | ${lambdaDurationMs(pr, mem)} |`;

  return [
    '# What Tributary costs on AWS',
    '',
    `Generated by \`${meta.command}\` (bench/cost.ts) on ${meta.started.toISOString().slice(0, 16).replace('T', ' ')} UTC in ${f0(meta.seconds)} s, at commit ${costCommit()}.`,
    `Machine: ${machine()}. Prices: us-east-1 list prices looked up on ${PRICES_CHECKED_ON} (table at the end, each with its source and the date it shows). Do not edit by hand: \`npm run cost\` rewrites this file from its measurements.`,
    '',
    '## Targets',
    '',
    targets,
    '',
    idleVerdict,
    '',
    importVerdict,
    '',
    '## Method',
    '',
    "- The three handlers are bundled with the stack's esbuild options (bench/lib/lambda-host.ts) and run as Lambda runs them: one child `node` process per warm container, invoked with Lambda-shaped events and context, Lambda's environment variables and a trace header per invocation (Powertools logs it). SSM and SQS, which have no stand-in here, are aws-sdk-client-mock stubs that count the calls; DynamoDB and S3 are DynamoDB Local and s3rver, mail is Dovecot (IMAPS, POP3S), all on this machine.",
    "- Every DynamoDB and S3 request passes through a counting proxy (bench/lib/aws-counter.ts). For single-item requests and queries DynamoDB Local computes the consumed capacity from the item sizes (1 KB per WRU, 4 KB per RRU, half for eventually consistent reads, index writes included: a delete and a put when an index key changes); AWS's minimums are applied where it reports 0 (a read that finds nothing, a failed conditional write). For transactions and batch reads DynamoDB Local's figures are wrong (a transaction of two puts and a condition check comes back as 2 units), so the proxy computes them as AWS bills them: each transactional write twice the units of its item, each ConditionCheck 2 WRU (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html; measured against AWS in https://martinhicks.dev/articles/what-a-conditional-dynamodb-transaction-costs), the index copies at the plain rate (an assumption), updated items' sizes read back; a batch read per item, a missing key at the minimum. Mail connections pass through a proxy that counts connections and round trips (the client speaking after the server, TLS handshake and login included).",
    "- The child reports its own CPU time (user + system) for each invocation and the bytes and lines it wrote to stdout/stderr: the function's CloudWatch log. Lambda's own START/END/REPORT lines are added as an assumption.",
    `- Idle poll: a source whose 20 messages were imported by a first invocation, then ${m.idle.imap.samples.length} polls with nothing new, in the same warm container; medians. Dispatcher: 10 registered sources, runs with none due and with 2 due (the average with 10 sources every 5 minutes), ${d.zero.length} of each. Import: ${m.imports.imap.messages} generated messages of ${f0(m.imports.imap.messageBytes / 1024)} KB per protocol, synced by the handler over as many invocations as it takes (15-minute invocations: one), per message with each invocation's idle-poll overhead taken out, then scaled to 10,000.`,
    "- Lambda duration on AWS cannot be measured here. Modelled: own CPU time / the vCPU share of the memory (1,769 MB = 1 vCPU; this machine's core is taken as equal to a Graviton core) + waits (a latency per request and per mail round trip, below). The import: the slower of its CPU time and the mail server's sending at 5 MB/s (sensitivity below). Cold inits (billed since August 2025) are measured as in `npm run bench` (bench/lambda.ts).",
    '',
    '## (a) 10 idle IMAP sources polled every 5 minutes, for a month',
    '',
    `${int(u.syncInvocations)} sync invocations (10 x 12 an hour x 730 hours), ${int(u.dispatchInvocations)} dispatcher runs (one a minute, ${f1(u.duePerMinute)} sources due in each), ${int(u.syncColdStarts)} + ${int(u.dispatchColdStarts)} cold starts (assumed: ${u.syncEnvironments} sync environment(s) and one dispatcher environment, each replaced every ${a.environmentLifetimeHours} h; measured cold init ${f0(m.syncInitMs)} ms sync, ${f0(m.dispatchInitMs)} ms dispatch).`,
    '',
    itemsTable(idle.items, 'a month'),
    '',
    'One invocation, as measured (medians; wall and CPU on this machine over loopback; waits and duration modelled for AWS):',
    '',
    '| invocation | wall ms here | CPU ms | mail round trips | DynamoDB requests | WRU / RRU | S3 requests | SQS requests | SSM calls | log written | waits on AWS ms | billed ms on AWS |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    sampleRow('idle IMAP poll (sync, 1,769 MB)', i, SIZING.sync.memorySize),
    sampleRow('idle POP3 poll (sync, 1,769 MB)', p, SIZING.sync.memorySize),
    sampleRow('dispatcher, none due (256 MB)', d.base, SIZING.dispatch.memorySize),
    sampleRow('dispatcher, 2 due (256 MB)', profileOf(d.two), SIZING.dispatch.memorySize),
    '',
    `The first invocation of a fresh sync container (the first sync of the source, 20 messages) read the password from SSM once (${m.idle.imap.first.calls.ssmGetParameter} GetParameter, one KMS decrypt on AWS); the polls after it read none. The dispatcher with 2 due sent them in ${d.two.length ? f0(profileOf(d.two).sqsRequests) : '-'} SendMessageBatch.`,
    '',
    'The DynamoDB requests of one idle IMAP poll:',
    '',
    opsTable(m.idle.imap.ops),
    '',
    'Of one idle POP3 poll:',
    '',
    opsTable(m.idle.pop3.ops),
    '',
    'Of one dispatcher run with 2 due:',
    '',
    opsTable(d.opsTwo),
    '',
    `Custom metrics seen while idle (each a billed metric): ${m.metrics.map((x) => `\`${x}\``).join(', ')}. On a failed run the sync adds \`SyncFailed\`, and the dispatcher \`dispatchFailed\` when the queue refuses a send: $0.30 each in a month they appear.`,
    '',
    '## (b) Importing 10,000 messages of 50 KB',
    '',
    `Measured per message (IMAP; POP3 in brackets): ${f1(pm.cpuMs)} ms CPU [${f1(pmPop.cpuMs)}], ${f1(pm.wru)} WRU [${f1(pmPop.wru)}], ${f1(pm.rru)} RRU [${f1(pmPop.rru)}], ${f1(pm.s3Put)} S3 PUT-class [${f1(pmPop.s3Put)}] and ${f1(pm.s3Get)} GET-class [${f1(pmPop.s3Get)}] requests, ${int(pm.storedS3Bytes)} B stored in S3 [${int(pmPop.storedS3Bytes)}], ${int(pm.storedTableBytes)} B in DynamoDB with its indexes [${int(pmPop.storedTableBytes)}], ${int(pm.logBytes)} B of log [${int(pmPop.logBytes)}]. The ${m.imports.imap.messages} messages took ${f1(m.imports.imap.wallMs / 1000)} s here [${f1(m.imports.pop3.wallMs / 1000)} s] in ${m.imports.imap.invocations} invocation(s) [${m.imports.pop3.invocations}].`,
    '',
    `Scaled to 10,000 messages: ${f0(imp.usage.cpuBoundMs / 1000)} s of CPU at 1 vCPU against ${f0(imp.usage.transferBoundMs / 1000)} s of transfer at 5 MB/s: ${f0(imp.usage.durationMs / 1000)} s in ${imp.usage.invocations} invocation(s).`,
    '',
    itemsTable(imp.items, 'one-off'),
    '',
    `The same import over POP3: ${usd(impPop3.usd)}.`,
    '',
    `The DynamoDB requests of the IMAP import, per 1,000 messages (the invocation's own requests included):`,
    '',
    opsTable(m.imports.imap.ops, 1000 / m.imports.imap.messages),
    '',
    'The items a message adds (IMAP import):',
    '',
    kindsTable,
    '',
    `The generated messages have short headers (a subject like \`import-imap 12\`, one sender, one recipient). Real mail's longer subjects, names and recipient lists make these items larger: each KB an item starts costs a unit more in the table and in each index that holds it (twice in a transaction). Here the message item (SRC#·MSG#) is ${int(im.kinds.find((k) => k.kind === 'SRC#·MSG#')?.meanBytes ?? 0)} B.`,
    '',
    'Then every month, for keeping it:',
    '',
    itemsTable(imp.storage, 'a month'),
    '',
    benchImportsSection(m, bench, a),
    '',
    '## Sensitivity',
    '',
    'The idle scenario with one thing changed (everything else as measured):',
    '',
    memorySens,
    '',
    pollSens,
    '',
    rttSens,
    '',
    "The import, by the mail server's sending rate and the sync memory:",
    '',
    importSens,
    '',
    '## Assumptions',
    '',
    `- A month is ${a.hoursPerMonth} hours (${int(a.hoursPerMonth * 60)} dispatcher runs). Prices are list prices without free tier unless a column says otherwise; the free column applies each always-free tier to the scenario alone in the account.`,
    `- Waits on AWS per request: DynamoDB ${WAITS.dynamodbMs} ms, S3 PUT ${WAITS.s3PutMs} ms, S3 GET/HEAD ${WAITS.s3GetMs} ms, SQS ${WAITS.sqsMs} ms, SSM ${WAITS.ssmMs} ms; a mail round trip ${WAITS.mailRoundTripMs} ms (a provider in the same region would be less, one across an ocean 80-150 ms: see the sensitivity). Requests of a run are sequential, so waits add up.`,
    "- CPU: the measured user + system time of the function's process, as if a Graviton vCPU were as fast as one core of this machine; Lambda gives memory / 1,769 MB of a vCPU (one full vCPU at 1,769 MB and above; the sync uses one thread).",
    `- The import runs at the slower of its CPU and the server's sending (${f0(UPSTREAM_BYTES_PER_SECOND / 2 ** 20)} MB/s assumed); DynamoDB and S3 waits overlap the transfer (the engine pipelines fetch and store).`,
    `- Logs: what the function writes, plus Lambda's START/END/REPORT lines (${a.lambdaLogBytesPerInvocation} bytes in ${a.lambdaLogEventsPerInvocation} events an invocation), plus ${a.logEventOverheadBytes} bytes of metadata per event; kept 30 days (the log groups' retention), stored uncompressed (an upper bound: CloudWatch bills archived bytes compressed).`,
    `- SQS: Lambda's event source mapping long-polls the queue with ${a.esmPollers} pollers (its documented starting point; the idle scale-down to 2 is not available with a maximum concurrency, which the stack sets), each ReceiveMessage waiting ${a.longPollSeconds} s (the long-poll maximum; Lambda's exact wait is not documented): ${int(a.esmPollers * (60 / a.longPollSeconds))} empty receives a minute. Each message adds a receive and a delete; the dispatcher sends one SendMessageBatch in a minute with sources due. Sources: the Lambda developer guide, "Configuring scaling behavior for SQS event source mappings" (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html: "Lambda uses long polling to poll a queue until it becomes active ... can optimize to as few as 2 concurrent batches to reduce the SQS calls and corresponding costs. However, this optimization is not available when you enable the maximum concurrency setting"), and AWS Knowledge Center "Why are my Amazon SQS charges higher than expected?" (https://aws.amazon.com/premiumsupport/knowledge-center/sqs-high-charges/, last updated 2021-07-23: a queue with a Lambda trigger has empty receives and their charges even when unused).`,
    `- Cold starts: Lambda does not document how long an environment lives; assumed replaced every ${a.environmentLifetimeHours} h, with as many sync environments as sources due in a minute. Each new sync environment reads the password of each source it syncs from SSM once (a KMS decrypt of the AWS managed key, charged per request); each cold start bills its init (load + first call, measured here).`,
    "- DynamoDB storage: each item's size as DynamoDB counts it, plus 100 bytes, again in each index that has its keys (the indexes project all attributes). Idle: the sources' own items (registry entry, status, counters, lease, checkpoints); the mail already stored is the import's.",
    '- Not counted: data transfer (Lambda to S3/DynamoDB in one region is free; mail coming in from the internet is free), the API and Cognito (nobody reads in these scenarios: the HTTP API is $1.00 per million requests, Cognito Essentials free up to 10,000 monthly users), the SNS topic (no alarm fires), CloudTrail, and S3 versions (an import overwrites nothing).',
    '',
    '## Prices',
    '',
    pricesTable,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      polls: { type: 'string', default: '7' },
      'import-messages': { type: 'string', default: '300' },
      out: { type: 'string', default: path.join('docs', 'cost.md') },
      'bench-figures': { type: 'string', default: path.join('docs', 'benchmarks.json') },
    },
  });
  // Read before measuring: a file that is there but not valid stops the run at once, naming the file.
  const bench: BenchInput = {
    file: values['bench-figures'],
    figures: readBenchFigures(values['bench-figures']),
  };
  const polls = Number(values.polls);
  const importMessages = Number(values['import-messages']);
  const started = new Date();
  console.log('[cost] starting the lab (Dovecot, DynamoDB Local, s3rver) and building the bundles');
  const lab = await startLab();
  const closing: Array<() => Promise<void>> = [];
  const hosts: LambdaHost[] = [];
  try {
    const sdk = {
      region: lab.aws.env.AWS_REGION,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      endpoint: lab.aws.dynamodbEndpoint,
    };
    const raw = new DynamoDBClient(sdk);
    closing.push(async () => raw.destroy());
    const dynamo = await startDynamoCounter(lab.aws.dynamodbEndpoint, {
      indexKeys: INDEX_KEYS,
      lookup: async (table, key) =>
        (await raw.send(new GetItemCommand({ TableName: table, Key: key, ConsistentRead: true }))).Item,
    });
    const s3 = await startS3Counter(lab.aws.s3Endpoint);
    closing.push(dynamo.close, s3.close);
    const imap = await startMailCounter({ host: '127.0.0.1', port: lab.dovecot.ports.imaps });
    const pop3 = await startMailCounter({ host: '127.0.0.1', port: lab.dovecot.ports.pop3s });
    closing.push(imap.close, pop3.close);
    const dir = path.join(lab.dir, 'cost');
    const [bundles, deployed] = await Promise.all([
      buildBundles(dir, 'mocked'),
      buildBundles(dir, 'deployed'),
    ]);
    const rig: Rig = {
      lab,
      dir,
      bundles,
      dynamo,
      s3,
      mail: { imap, pop3 },
      documents: DynamoDBDocumentClient.from(raw, { marshallOptions: { removeUndefinedValues: true } }),
      raw,
      env: (table, bucket) => ({
        ...lab.aws.env,
        AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
        AWS_ENDPOINT_URL_S3: s3.endpoint,
        TABLE_NAME: table,
        BUCKET_NAME: bucket,
        QUEUE_URL: BENCH_QUEUE_URL,
        SECRETS_PREFIX: BENCH_SECRETS_PREFIX,
        NODE_EXTRA_CA_CERTS: lab.dovecot.caFile,
      }),
      parameters: {},
      hosts,
    };
    // Cold inits first, while nothing else runs (the stand-ins are busy for a while after an import).
    console.log('[cost] cold inits');
    const cold = await lab.freshStore('cost-cold');
    const coldEnv = {
      ...lab.aws.env,
      TABLE_NAME: cold.table,
      BUCKET_NAME: cold.bucket,
      QUEUE_URL: BENCH_QUEUE_URL,
      SECRETS_PREFIX: BENCH_SECRETS_PREFIX,
    };
    const coldRuns = async (name: HandlerName) => {
      await coldInit(dir, deployed[name], name, coldEnv);
      const runs = [];
      for (let k = 0; k < 5; k++) runs.push((await coldInit(dir, deployed[name], name, coldEnv)).initMs);
      return median(runs);
    };
    const syncInitMs = await coldRuns('sync');
    const dispatchInitMs = await coldRuns('dispatch');
    console.log(`[cost] cold init: sync ${f0(syncInitMs)} ms, dispatch ${f0(dispatchInitMs)} ms`);

    const store = await lab.freshStore('cost');
    console.log('[cost] idle polls');
    const idleImap = await measureIdlePolls(rig, 'imap', store.table, store.bucket, polls);
    const idlePop3 = await measureIdlePolls(rig, 'pop3', store.table, store.bucket, polls);
    for (const f of [idleImap, idlePop3])
      console.log(
        `[cost] idle ${f.protocol} poll: cpu ${f0(f.profile.cpuMs)} ms, wall here ${f0(f.profile.wallMs)} ms, ${f.profile.dynamoRequests} DynamoDB requests (${f.profile.wru} WRU, ${f.profile.rru} RRU), ${f.profile.s3Requests} S3, ${f.profile.turns} mail round trips, log ${f0(f.profile.logBytes)} B`,
      );
    console.log('[cost] dispatcher');
    const dispatch = await measureDispatch(rig, Math.max(3, Math.ceil(polls / 2)));
    console.log(
      `[cost] dispatcher: none due ${f0(dispatch.base.cpuMs)} ms cpu, ${dispatch.base.wru} WRU ${dispatch.base.rru} RRU; per due source +${f1(dispatch.perDue.wru)} WRU +${f1(dispatch.perDue.rru)} RRU`,
    );
    // Metrics of the idle month: what the idle polls and the dispatcher emitted (the first syncs emit the same names).
    const metrics = customMetrics(hosts);
    console.log(`[cost] import of ${importMessages} messages of 50 KB per protocol`);
    const importImap = await measureImport(
      rig,
      'imap',
      importMessages,
      store.table,
      store.bucket,
      idleImap.profile,
    );
    const importPop3 = await measureImport(
      rig,
      'pop3',
      importMessages,
      store.table,
      store.bucket,
      idlePop3.profile,
    );
    for (const f of [importImap, importPop3])
      console.log(
        `[cost] import ${f.protocol}: ${f.messages} messages in ${f1(f.wallMs / 1000)} s, ${f.invocations} invocation(s); per message ${f1(f.perMessage.cpuMs)} ms cpu, ${f1(f.perMessage.wru)} WRU, ${f1(f.perMessage.rru)} RRU, ${f1(f.perMessage.s3Put)} S3 PUT, ${f0(f.perMessage.logBytes)} B log`,
      );
    const importMetrics = customMetrics(hosts);
    const measured: Measured = {
      idle: { imap: idleImap, pop3: idlePop3 },
      dispatch,
      imports: { imap: importImap, pop3: importPop3 },
      syncInitMs,
      dispatchInitMs,
      metrics,
      importMetrics,
    };
    const seconds = (Date.now() - started.getTime()) / 1000;
    const command = `npm run cost${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
    const text = report(measured, { started, seconds, command }, bench);
    const summary = text.slice(text.indexOf('## Targets'), text.indexOf('## Method'));
    console.log(`\n${summary}`);
    if (values.out !== '-') {
      fs.mkdirSync(path.dirname(values.out), { recursive: true });
      // Formatted as `npm run lint` checks it (prettier --check .), so the generated file passes as written.
      const options = (await resolveConfig(values.out)) ?? {};
      fs.writeFileSync(values.out, await format(text, { ...options, parser: 'markdown' }));
      console.log(`[cost] written to ${values.out} (${f0(seconds)} s)`);
    } else {
      console.log(text.slice(text.indexOf('## Method')));
    }
  } finally {
    await Promise.all(hosts.map((h) => h.stop()));
    for (const close of closing.reverse()) await close().catch(() => undefined);
    await lab.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
