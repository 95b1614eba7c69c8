import {
  DEFAULT_ASSUMPTIONS,
  gbSeconds,
  idleCost,
  importCost,
  lambdaDurationMs,
  total,
  vcpuShare,
  type IdleInput,
  type ImportInput,
  type InvocationProfile,
  type LineItem,
} from '../../../bench/lib/cost-model';

/** The arithmetic of docs/cost.md (bench/lib/cost-model.ts) on inputs whose dollars are worked out by hand. */

const none: InvocationProfile = {
  cpuMs: 0,
  waitMs: 0,
  wru: 0,
  rru: 0,
  s3Put: 0,
  s3Get: 0,
  logBytes: 0,
  logEvents: 0,
};

function line(items: LineItem[], service: string, item: string): LineItem {
  const found = items.find((i) => i.service === service && i.item.startsWith(item));
  if (!found) throw new Error(`no line ${service} ${item}`);
  return found;
}

describe('Lambda duration and GB-seconds', () => {
  it('divides the CPU time by the vCPU share of the memory and adds the waits, rounded up to the ms', () => {
    expect(vcpuShare(1769)).toBe(1);
    expect(vcpuShare(3008)).toBe(1);
    expect(vcpuShare(512)).toBeCloseTo(512 / 1769, 12);
    expect(lambdaDurationMs({ cpuMs: 100, waitMs: 50 }, 1769)).toBe(150);
    // 100 / (512 / 1769) = 345.51 -> + 50 -> 396
    expect(lambdaDurationMs({ cpuMs: 100, waitMs: 50 }, 512)).toBe(396);
    expect(gbSeconds(1000, 1024)).toBe(1);
    expect(gbSeconds(500, 256)).toBe(0.125);
  });
});

describe('10 idle sources', () => {
  // One second of waiting per sync poll at 1,024 MB (1 GB-s), one per dispatcher run at 128 MB (0.125 GB-s).
  const input: IdleInput = {
    sources: 10,
    pollMinutes: 5,
    syncMemoryMb: 1024,
    dispatchMemoryMb: 128,
    syncPoll: { ...none, waitMs: 1000, wru: 7, rru: 5, logBytes: 1000, logEvents: 4 },
    dispatchBase: { ...none, waitMs: 1000, rru: 0.5, logBytes: 500, logEvents: 2 },
    dispatchPerDue: { ...none, wru: 3 },
    syncInitMs: 0,
    dispatchInitMs: 0,
    customMetrics: 6,
    alarms: 4,
    tableBytes: 0,
  };
  const { usage, items } = idleCost(input, DEFAULT_ASSUMPTIONS);

  it('counts the month: 87,600 polls, 43,800 dispatcher runs, 2 due a minute', () => {
    expect(usage.syncInvocations).toBe(87_600);
    expect(usage.dispatchInvocations).toBe(43_800);
    expect(usage.duePerMinute).toBe(2);
    expect(usage.syncColdStarts).toBe(1_460);
    expect(usage.dispatchColdStarts).toBe(730);
  });

  it('prices each line at list prices', () => {
    // 87,600 x 1 GB-s + 43,800 x 0.125 GB-s = 93,075 GB-s
    expect(usage.gbSeconds).toBeCloseTo(93_075, 6);
    expect(line(items, 'Lambda', 'Compute').usd).toBeCloseTo(93_075 * 0.0000133334, 9);
    expect(line(items, 'Lambda', 'Requests').usd).toBeCloseTo(131_400 * 0.2e-6, 9);
    // 5 pollers x 3 a minute x 43,800 minutes + a receive and a delete per poll + a send a minute
    expect(usage.sqs.total).toBe(657_000 + 2 * 87_600 + 43_800);
    expect(line(items, 'SQS', 'Requests').usd).toBeCloseTo(876_000 * 0.4e-6, 9);
    expect(line(items, 'EventBridge Scheduler', 'Invocations').usd).toBeCloseTo(0.0438, 9);
    // 87,600 x 7 + 43,800 x (2 due x 3); 87,600 x 5 + 43,800 x 0.5
    expect(usage.wru).toBe(876_000);
    expect(line(items, 'DynamoDB', 'Write').usd).toBeCloseTo(0.5475, 9);
    expect(usage.rru).toBe(459_900);
    expect(line(items, 'DynamoDB', 'Read').usd).toBeCloseTo(0.0574875, 9);
    // Sync: 1,000 B + 4 x 26 + Lambda's 350 B + 3 x 26 = 1,532 B; dispatch: 500 + 52 + 428 = 980 B
    const logBytes = 87_600 * 1_532 + 43_800 * 980;
    expect(usage.logIngestBytes).toBe(logBytes);
    expect(line(items, 'CloudWatch', 'Logs ingestion').usd).toBeCloseTo((logBytes / 2 ** 30) * 0.5, 9);
    expect(line(items, 'CloudWatch', 'Logs storage').usd).toBeCloseTo((logBytes / 2 ** 30) * 0.03, 9);
    expect(line(items, 'CloudWatch', 'Custom metrics').usd).toBeCloseTo(1.8, 9);
    expect(line(items, 'CloudWatch', 'Alarms').usd).toBeCloseTo(0.4, 9);
    // 1,460 new sync environments, each sees all 10 sources (60 polls each): 14,600 decrypts
    expect(usage.kmsDecrypts).toBe(14_600);
    expect(line(items, 'KMS', 'Decrypts').usd).toBeCloseTo(14_600 * 3e-6, 9);
    expect(line(items, 'S3', 'Requests').usd).toBe(0);
  });

  it('adds up, and leaves only the DynamoDB request units with the always-free tiers', () => {
    const expected =
      93_075 * 0.0000133334 +
      131_400 * 0.2e-6 +
      876_000 * 0.4e-6 +
      0.0438 +
      0.5475 +
      0.0574875 +
      ((87_600 * 1_532 + 43_800 * 980) / 2 ** 30) * 0.53 +
      1.8 +
      0.4 +
      14_600 * 3e-6;
    const t = total(items);
    expect(t.usd).toBeCloseTo(expected, 8);
    expect(t.usdFree).toBeCloseTo(0.5475 + 0.0574875, 9);
  });

  it('bills the free tiers only above their allowance', () => {
    const busy = idleCost({ ...input, customMetrics: 12, alarms: 11 }, DEFAULT_ASSUMPTIONS).items;
    expect(line(busy, 'CloudWatch', 'Custom metrics').usdFree).toBeCloseTo(2 * 0.3, 9);
    expect(line(busy, 'CloudWatch', 'Alarms').usdFree).toBeCloseTo(0.1, 9);
  });

  it('polls less often: fewer sync invocations and sends, the same dispatcher runs', () => {
    const hourly = idleCost({ ...input, pollMinutes: 60 }, DEFAULT_ASSUMPTIONS).usage;
    expect(hourly.syncInvocations).toBe(7_300);
    expect(hourly.dispatchInvocations).toBe(43_800);
    // Fewer than one source due a minute: at most one SendMessageBatch per poll.
    expect(hourly.sqs.sends).toBe(7_300);
    expect(hourly.syncEnvironments).toBe(1);
  });
});

describe('an import', () => {
  const input: ImportInput = {
    messages: 10_000,
    messageBytes: 51_200,
    syncMemoryMb: 1769,
    perMessage: {
      ...none,
      cpuMs: 10,
      wru: 12,
      rru: 1,
      s3Put: 1,
      sqsRequests: 0,
      storedS3Bytes: 51_200,
      storedTableBytes: 5_000,
    },
    perInvocation: { ...none, waitMs: 500, wru: 9, rru: 5, logBytes: 1000, logEvents: 4 },
    upstreamBytesPerSecond: 5 * 2 ** 20,
    budgetMs: 890_000,
  };

  it('runs at the slower of CPU and transfer, in as many invocations as the budget needs', () => {
    const { usage, items, storage } = importCost(input, DEFAULT_ASSUMPTIONS);
    // CPU: 10,000 x 10 ms = 100 s at 1 vCPU; transfer: 512,000,000 B at 5 MiB/s = 97.66 s
    expect(usage.cpuBoundMs).toBe(100_000);
    expect(usage.transferBoundMs).toBeCloseTo(97_656.25, 6);
    expect(usage.invocations).toBe(1);
    expect(usage.durationMs).toBe(100_500);
    const gbs = 100.5 * (1769 / 1024);
    expect(line(items, 'Lambda', 'Compute').usd).toBeCloseTo(gbs * 0.0000133334, 12);
    expect(usage.wru).toBe(120_009);
    expect(line(items, 'DynamoDB', 'Write').usd).toBeCloseTo(120_009 * 0.625e-6, 12);
    expect(line(items, 'DynamoDB', 'Read').usd).toBeCloseTo(10_005 * 0.125e-6, 12);
    expect(line(items, 'S3', 'Requests').usd).toBeCloseTo(0.05, 12);
    // One invocation, received and deleted; nothing sent back to the queue.
    expect(usage.sqsRequests).toBe(2);
    expect(total(items).usd).toBeCloseTo(
      gbs * 0.0000133334 +
        0.2e-6 +
        2 * 0.4e-6 +
        120_009 * 0.625e-6 +
        10_005 * 0.125e-6 +
        0.05 +
        ((1000 + 4 * 26 + 350 + 3 * 26) / 2 ** 30) * 0.53,
      12,
    );
    expect(line(storage, 'S3', 'Storage').usd).toBeCloseTo((512_000_000 / 2 ** 30) * 0.023, 12);
    expect(line(storage, 'DynamoDB', 'Storage').usd).toBeCloseTo((50_000_000 / 2 ** 30) * 0.25, 12);
    expect(line(storage, 'DynamoDB', 'Storage').usdFree).toBe(0);
  });

  it('re-enqueues the source after every invocation but the last', () => {
    const { usage } = importCost({ ...input, budgetMs: 30_000 }, DEFAULT_ASSUMPTIONS);
    expect(usage.invocations).toBe(4);
    expect(usage.durationMs).toBe(100_000 + 4 * 500);
    expect(usage.sqsRequests).toBe(3 + 2 * 4);
  });

  it('is bound by the transfer when the server is slow', () => {
    const { usage } = importCost({ ...input, upstreamBytesPerSecond: 2 ** 20 }, DEFAULT_ASSUMPTIONS);
    expect(usage.durationMs).toBeCloseTo(488_281.25 + 500, 6);
  });
});
