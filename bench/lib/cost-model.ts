import { FREE_TIERS, PRICES } from './prices';

/**
 * The arithmetic of docs/cost.md, apart from the measuring (bench/cost.ts) so that it can be tested on its own
 * (test/unit/bench/cost-model.test.ts). Nothing here reads a clock, a file or the network: measured figures and
 * stated assumptions in, dollars out.
 */

/** Lambda gives one full vCPU at 1,769 MB and CPU in proportion below it. */
export const MB_PER_VCPU = 1769;
/** Bytes in the GB of AWS's data prices (CloudWatch Logs, S3, DynamoDB storage): 2^30. */
export const GB = 2 ** 30;

/** What one invocation does, as measured (per-message figures of the import use the same shape). */
export interface InvocationProfile {
  /** The function's own CPU time (user + system), ms, on this machine. */
  cpuMs: number;
  /** Time the function waits on AWS services and the mail server, ms (modelled, see Assumptions). */
  waitMs: number;
  /** DynamoDB on-demand units, AWS's minimums applied. */
  wru: number;
  rru: number;
  /** S3 requests of the PUT/COPY/POST/LIST class, and of the GET/other class. */
  s3Put: number;
  s3Get: number;
  /** Bytes and lines the function writes to its log (Lambda's own START/END/REPORT not included). */
  logBytes: number;
  logEvents: number;
}

export interface Assumptions {
  hoursPerMonth: number;
  /** Lambda's START, END and REPORT lines of each invocation, in bytes and events. */
  lambdaLogBytesPerInvocation: number;
  lambdaLogEventsPerInvocation: number;
  /** CloudWatch Logs bills each event's bytes plus this much metadata. */
  logEventOverheadBytes: number;
  /** Archived log bytes = this many months of ingestion (the log groups keep 30 days; stored uncompressed: an upper bound). */
  logRetentionMonths: number;
  /** The SQS event source mapping's pollers on an empty queue, and the wait of each long poll. */
  esmPollers: number;
  longPollSeconds: number;
  /** A Lambda execution environment lives this long before Lambda replaces it (a new cold start). */
  environmentLifetimeHours: number;
}

export const DEFAULT_ASSUMPTIONS: Assumptions = {
  hoursPerMonth: 730,
  lambdaLogBytesPerInvocation: 350,
  lambdaLogEventsPerInvocation: 3,
  logEventOverheadBytes: 26,
  logRetentionMonths: 1,
  esmPollers: 5,
  longPollSeconds: 20,
  environmentLifetimeHours: 1,
};

export function vcpuShare(memoryMb: number): number {
  return Math.min(1, memoryMb / MB_PER_VCPU);
}

/** Billed duration of an invocation: own CPU at the memory's vCPU share, plus waits; rounded up to the ms. */
export function lambdaDurationMs(
  profile: Pick<InvocationProfile, 'cpuMs' | 'waitMs'>,
  memoryMb: number,
): number {
  return Math.ceil(profile.cpuMs / vcpuShare(memoryMb) + profile.waitMs);
}

export function gbSeconds(durationMs: number, memoryMb: number): number {
  return (durationMs / 1000) * (memoryMb / 1024);
}

/** Log bytes CloudWatch ingests for `invocations` invocations of `profile` (Lambda's own lines and metadata added). */
export function logIngestBytes(
  profile: Pick<InvocationProfile, 'logBytes' | 'logEvents'>,
  invocations: number,
  a: Assumptions,
): number {
  const own = profile.logBytes + profile.logEvents * a.logEventOverheadBytes;
  const lambda = a.lambdaLogBytesPerInvocation + a.lambdaLogEventsPerInvocation * a.logEventOverheadBytes;
  return invocations * (own + lambda);
}

export interface LineItem {
  service: string;
  item: string;
  /** What is used, in words (quantities with their units). */
  usage: string;
  /** List price, no free tier. */
  usd: number;
  /** With the always-free tiers applied (the scenario alone in the account). */
  usdFree: number;
}

function item(service: string, name: string, usage: string, usd: number, usdFree = usd): LineItem {
  return { service, item: name, usage, usd, usdFree };
}

const over = (used: number, free: number) => Math.max(0, used - free);
const n = (x: number) => Math.round(x).toLocaleString('en');

export function total(items: LineItem[]): { usd: number; usdFree: number } {
  return items.reduce((t, i) => ({ usd: t.usd + i.usd, usdFree: t.usdFree + i.usdFree }), {
    usd: 0,
    usdFree: 0,
  });
}

// ---- (a) idle sources ---------------------------------------------------------------------------------------------

export interface IdleInput {
  sources: number;
  pollMinutes: number;
  syncMemoryMb: number;
  dispatchMemoryMb: number;
  /** One sync invocation polling a source with nothing new (warm container). */
  syncPoll: InvocationProfile;
  /** One dispatcher run with no source due, and what each due source adds to a run. */
  dispatchBase: InvocationProfile;
  dispatchPerDue: InvocationProfile;
  /** Cold init (load + first call) of each function, ms: billed for every new environment. */
  syncInitMs: number;
  dispatchInitMs: number;
  /** Distinct custom metrics (name + dimensions) the functions emit while idle. */
  customMetrics: number;
  alarms: number;
  /** Bytes of the table's items for the sources (registry, status, lease...), indexes included. */
  tableBytes: number;
}

export interface IdleUsage {
  minutes: number;
  syncInvocations: number;
  dispatchInvocations: number;
  duePerMinute: number;
  syncDurationMs: number;
  dispatchDurationMs: number;
  syncEnvironments: number;
  syncColdStarts: number;
  dispatchColdStarts: number;
  gbSeconds: number;
  lambdaRequests: number;
  sqs: { pollerReceives: number; messageReceives: number; deletes: number; sends: number; total: number };
  wru: number;
  rru: number;
  s3Put: number;
  s3Get: number;
  kmsDecrypts: number;
  logIngestBytes: number;
  logStoredBytes: number;
}

export function idleUsage(input: IdleInput, a: Assumptions = DEFAULT_ASSUMPTIONS): IdleUsage {
  const minutes = a.hoursPerMonth * 60;
  const syncInvocations = input.sources * (60 / input.pollMinutes) * a.hoursPerMonth;
  const dispatchInvocations = minutes;
  const duePerMinute = syncInvocations / minutes;
  const dispatchRun: InvocationProfile = {
    cpuMs: input.dispatchBase.cpuMs + duePerMinute * input.dispatchPerDue.cpuMs,
    waitMs: input.dispatchBase.waitMs + duePerMinute * input.dispatchPerDue.waitMs,
    wru: input.dispatchBase.wru + duePerMinute * input.dispatchPerDue.wru,
    rru: input.dispatchBase.rru + duePerMinute * input.dispatchPerDue.rru,
    s3Put: 0,
    s3Get: 0,
    logBytes: input.dispatchBase.logBytes + duePerMinute * input.dispatchPerDue.logBytes,
    logEvents: input.dispatchBase.logEvents + duePerMinute * input.dispatchPerDue.logEvents,
  };
  const syncDurationMs = lambdaDurationMs(input.syncPoll, input.syncMemoryMb);
  const dispatchDurationMs = lambdaDurationMs(dispatchRun, input.dispatchMemoryMb);
  // The sources due in one minute arrive together: as many sync environments as that, one at least.
  const syncEnvironments = Math.max(1, Math.ceil(duePerMinute));
  const lifetimes = a.hoursPerMonth / a.environmentLifetimeHours;
  const syncColdStarts = syncEnvironments * lifetimes;
  const dispatchColdStarts = lifetimes;
  const gb =
    syncInvocations * gbSeconds(syncDurationMs, input.syncMemoryMb) +
    syncColdStarts * gbSeconds(input.syncInitMs, input.syncMemoryMb) +
    dispatchInvocations * gbSeconds(dispatchDurationMs, input.dispatchMemoryMb) +
    dispatchColdStarts * gbSeconds(input.dispatchInitMs, input.dispatchMemoryMb);
  // SQS: the pollers' long polls around the clock, one receive that ends a poll early per message, its delete,
  // and the dispatcher's SendMessageBatch in every minute with a source due (10 entries a batch).
  const pollerReceives = a.esmPollers * (60 / a.longPollSeconds) * minutes;
  const sends = duePerMinute >= 1 ? minutes * Math.ceil(duePerMinute / 10) : syncInvocations;
  const sqs = {
    pollerReceives,
    messageReceives: syncInvocations,
    deletes: syncInvocations,
    sends,
    total: pollerReceives + 2 * syncInvocations + sends,
  };
  // Each new sync environment reads (and KMS decrypts) the password of each source it syncs, once.
  const perEnvironment = syncInvocations / syncColdStarts;
  const kmsDecrypts = syncColdStarts * Math.min(input.sources, perEnvironment);
  const ingest =
    logIngestBytes(input.syncPoll, syncInvocations, a) + logIngestBytes(dispatchRun, dispatchInvocations, a);
  return {
    minutes,
    syncInvocations,
    dispatchInvocations,
    duePerMinute,
    syncDurationMs,
    dispatchDurationMs,
    syncEnvironments,
    syncColdStarts,
    dispatchColdStarts,
    gbSeconds: gb,
    lambdaRequests: syncInvocations + dispatchInvocations,
    sqs,
    wru: syncInvocations * input.syncPoll.wru + dispatchInvocations * dispatchRun.wru,
    rru: syncInvocations * input.syncPoll.rru + dispatchInvocations * dispatchRun.rru,
    s3Put: syncInvocations * input.syncPoll.s3Put,
    s3Get: syncInvocations * input.syncPoll.s3Get,
    kmsDecrypts,
    logIngestBytes: ingest,
    logStoredBytes: ingest * a.logRetentionMonths,
  };
}

/** Log ingestion first, then archive, out of the 5 GB CloudWatch gives free for both. */
function logsItems(ingestBytes: number, storedBytes: number): LineItem[] {
  const p = PRICES;
  const freeBytes = FREE_TIERS.logsGb.amount * GB;
  const ingestFree = Math.min(ingestBytes, freeBytes);
  const storedFree = Math.min(storedBytes, freeBytes - ingestFree);
  return [
    item(
      'CloudWatch',
      'Logs ingestion',
      `${(ingestBytes / 2 ** 20).toFixed(1)} MB`,
      (ingestBytes / GB) * p.logsIngestGb.usd,
      (over(ingestBytes, ingestFree) / GB) * p.logsIngestGb.usd,
    ),
    item(
      'CloudWatch',
      'Logs storage (30 days kept)',
      `${(storedBytes / 2 ** 20).toFixed(1)} MB-month`,
      (storedBytes / GB) * p.logsStorageGbMonth.usd,
      (over(storedBytes, storedFree) / GB) * p.logsStorageGbMonth.usd,
    ),
  ];
}

export function idleCost(
  input: IdleInput,
  a: Assumptions = DEFAULT_ASSUMPTIONS,
): { usage: IdleUsage; items: LineItem[] } {
  const u = idleUsage(input, a);
  const p = PRICES;
  const f = FREE_TIERS;
  const items: LineItem[] = [
    item(
      'Lambda',
      'Compute (arm64)',
      `${n(u.gbSeconds)} GB-s (sync ${n(u.syncInvocations)} x ${u.syncDurationMs} ms at ${input.syncMemoryMb} MB, dispatch ${n(u.dispatchInvocations)} x ${u.dispatchDurationMs} ms at ${input.dispatchMemoryMb} MB, ${n(u.syncColdStarts + u.dispatchColdStarts)} cold inits)`,
      u.gbSeconds * p.lambdaArmGbSecond.usd,
      over(u.gbSeconds, f.lambdaGbSeconds.amount) * p.lambdaArmGbSecond.usd,
    ),
    item(
      'Lambda',
      'Requests',
      `${n(u.lambdaRequests)}`,
      u.lambdaRequests * p.lambdaRequest.usd,
      over(u.lambdaRequests, f.lambdaRequests.amount) * p.lambdaRequest.usd,
    ),
    item(
      'SQS',
      'Requests',
      `${n(u.sqs.total)} (pollers' empty receives ${n(u.sqs.pollerReceives)}, receives ${n(u.sqs.messageReceives)}, deletes ${n(u.sqs.deletes)}, sends ${n(u.sqs.sends)})`,
      u.sqs.total * p.sqsRequest.usd,
      over(u.sqs.total, f.sqsRequests.amount) * p.sqsRequest.usd,
    ),
    item(
      'EventBridge Scheduler',
      'Invocations',
      `${n(u.dispatchInvocations)}`,
      u.dispatchInvocations * p.schedulerInvocation.usd,
      over(u.dispatchInvocations, f.schedulerInvocations.amount) * p.schedulerInvocation.usd,
    ),
    item('DynamoDB', 'Write request units', `${n(u.wru)}`, u.wru * p.dynamoWru.usd),
    item('DynamoDB', 'Read request units', `${n(u.rru)}`, u.rru * p.dynamoRru.usd),
    item(
      'DynamoDB',
      "Storage (the sources' items)",
      `${(input.tableBytes / 1024).toFixed(0)} KB`,
      (input.tableBytes / GB) * p.dynamoStorageGbMonth.usd,
      over(input.tableBytes / GB, f.dynamoStorageGb.amount) * p.dynamoStorageGbMonth.usd,
    ),
    item(
      'S3',
      'Requests',
      `${n(u.s3Put)} PUT-class, ${n(u.s3Get)} GET-class`,
      u.s3Put * p.s3PutRequest.usd + u.s3Get * p.s3GetRequest.usd,
    ),
    ...logsItems(u.logIngestBytes, u.logStoredBytes),
    item(
      'CloudWatch',
      'Custom metrics',
      `${input.customMetrics}`,
      input.customMetrics * p.customMetricMonth.usd,
      over(input.customMetrics, f.customMetrics.amount) * p.customMetricMonth.usd,
    ),
    item(
      'CloudWatch',
      'Alarms (fixed)',
      `${input.alarms}`,
      input.alarms * p.alarmMonth.usd,
      over(input.alarms, f.alarms.amount) * p.alarmMonth.usd,
    ),
    item(
      'KMS',
      'Decrypts of the SSM passwords',
      `${n(u.kmsDecrypts)} (each new sync environment reads each source's password once)`,
      u.kmsDecrypts * p.kmsRequest.usd,
      over(u.kmsDecrypts, f.kmsRequests.amount) * p.kmsRequest.usd,
    ),
    item('SSM', 'GetParameter (standard)', `${n(u.kmsDecrypts)}`, 0),
    item(
      'API Gateway + Cognito',
      'HTTP API requests, sign-ins',
      '0 (nobody reads the inbox in this scenario)',
      0,
    ),
  ];
  return { usage: u, items };
}

// ---- (b) an import ------------------------------------------------------------------------------------------------

export interface ImportInput {
  messages: number;
  messageBytes: number;
  syncMemoryMb: number;
  /** Per message, as measured over a whole import. */
  perMessage: InvocationProfile & { sqsRequests: number; storedS3Bytes: number; storedTableBytes: number };
  /** What one sync invocation costs besides its messages (the same work as an idle poll). */
  perInvocation: InvocationProfile;
  /** How fast the mail server sends: the import cannot go faster (see Assumptions). */
  upstreamBytesPerSecond: number;
  /** What the handler may use of one invocation before it stops, checkpointed, and re-enqueues its source. */
  budgetMs: number;
}

export interface ImportUsage {
  cpuBoundMs: number;
  transferBoundMs: number;
  durationMs: number;
  invocations: number;
  gbSeconds: number;
  sqsRequests: number;
  wru: number;
  rru: number;
  s3Put: number;
  s3Get: number;
  logIngestBytes: number;
  storedS3Bytes: number;
  storedTableBytes: number;
}

export function importUsage(input: ImportInput, a: Assumptions = DEFAULT_ASSUMPTIONS): ImportUsage {
  const m = input.messages;
  const pm = input.perMessage;
  // The engine fetches, hashes and stores in a pipeline: the import is as slow as the slower of its CPU and the
  // server's sending, plus each invocation's own start and end.
  const cpuBoundMs = (m * pm.cpuMs) / vcpuShare(input.syncMemoryMb) + m * pm.waitMs;
  const transferBoundMs = ((m * input.messageBytes) / input.upstreamBytesPerSecond) * 1000;
  const work = Math.max(cpuBoundMs, transferBoundMs);
  const invocations = Math.max(1, Math.ceil(work / input.budgetMs));
  const durationMs = work + invocations * lambdaDurationMs(input.perInvocation, input.syncMemoryMb);
  // Every invocation but the last sends its source back to the queue; each is received and deleted.
  const sqsRequests = m * pm.sqsRequests + (invocations - 1) + 2 * invocations;
  const perMessageLog = m * (pm.logBytes + pm.logEvents * a.logEventOverheadBytes);
  return {
    cpuBoundMs,
    transferBoundMs,
    durationMs,
    invocations,
    gbSeconds: gbSeconds(durationMs, input.syncMemoryMb),
    sqsRequests,
    wru: m * pm.wru + invocations * input.perInvocation.wru,
    rru: m * pm.rru + invocations * input.perInvocation.rru,
    s3Put: m * pm.s3Put + invocations * input.perInvocation.s3Put,
    s3Get: m * pm.s3Get + invocations * input.perInvocation.s3Get,
    logIngestBytes: perMessageLog + logIngestBytes(input.perInvocation, invocations, a),
    storedS3Bytes: m * pm.storedS3Bytes,
    storedTableBytes: m * pm.storedTableBytes,
  };
}

/**
 * The import's one-off cost (free tiers: what the month's idle polling leaves of them is not known here, so the free
 * column assumes the import alone in the account) and the monthly storage of what it stored.
 */
export function importCost(
  input: ImportInput,
  a: Assumptions = DEFAULT_ASSUMPTIONS,
): { usage: ImportUsage; items: LineItem[]; storage: LineItem[] } {
  const u = importUsage(input, a);
  const p = PRICES;
  const f = FREE_TIERS;
  const items: LineItem[] = [
    item(
      'Lambda',
      'Compute (arm64)',
      `${n(u.gbSeconds)} GB-s (${(u.durationMs / 1000).toFixed(0)} s at ${input.syncMemoryMb} MB over ${u.invocations} invocation(s))`,
      u.gbSeconds * p.lambdaArmGbSecond.usd,
      over(u.gbSeconds, f.lambdaGbSeconds.amount) * p.lambdaArmGbSecond.usd,
    ),
    item('Lambda', 'Requests', `${u.invocations}`, u.invocations * p.lambdaRequest.usd, 0),
    item('SQS', 'Requests', `${n(u.sqsRequests)}`, u.sqsRequests * p.sqsRequest.usd, 0),
    item('DynamoDB', 'Write request units', `${n(u.wru)}`, u.wru * p.dynamoWru.usd),
    item('DynamoDB', 'Read request units', `${n(u.rru)}`, u.rru * p.dynamoRru.usd),
    item(
      'S3',
      'Requests',
      `${n(u.s3Put)} PUT-class, ${n(u.s3Get)} GET-class`,
      u.s3Put * p.s3PutRequest.usd + u.s3Get * p.s3GetRequest.usd,
    ),
    ...logsItems(u.logIngestBytes, u.logIngestBytes * a.logRetentionMonths),
  ];
  const storage: LineItem[] = [
    item(
      'S3',
      'Storage of the raw mail',
      `${(u.storedS3Bytes / GB).toFixed(3)} GB`,
      (u.storedS3Bytes / GB) * p.s3StorageGbMonth.usd,
    ),
    item(
      'DynamoDB',
      'Storage of the index',
      `${(u.storedTableBytes / GB).toFixed(3)} GB`,
      (u.storedTableBytes / GB) * p.dynamoStorageGbMonth.usd,
      over(u.storedTableBytes / GB, f.dynamoStorageGb.amount) * p.dynamoStorageGbMonth.usd,
    ),
  ];
  return { usage: u, items, storage };
}
