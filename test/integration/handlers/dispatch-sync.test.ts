import { DynamoSourceRegistry } from '../../../functions/adapters/dynamodb/source-registry';
import type { Source } from '../../../functions/core/model';
import { DISPATCH_CLAIM_MS } from '../../../functions/core/schedule';
import { DETAILED_METRICS_VARIABLE } from '../../../functions/shared/metric-names';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { Reconciler } from '../../support/reconciler';
import type { TestTributary } from '../../support/tributary';
import type { buildHandlers } from '../../support/handler-lambda';
import {
  HandlerContainer,
  sqsEvent,
  TEST_QUEUE_URL,
  TEST_SECRETS_PREFIX,
  setUpHandlers,
  tearDownHandlers,
  type Invocation,
} from '../../support/handler-lambda';

/**
 * The dispatcher and the sync function as Lambda runs them (bundled, in a child process), against Dovecot, DynamoDB
 * Local and s3rver; the messages the dispatcher sends are the sync function's events.
 */
const lab = MailLab.fromEnv();
let built: Awaited<ReturnType<typeof buildHandlers>>;
let env: Record<string, string>;
let t: TestTributary;
let registry: DynamoSourceRegistry;
const containers: HandlerContainer[] = [];
/** The SSM parameters the mock answers: source id -> password. */
const parameters: Record<string, string> = {};

function message(m: { body: string }): string {
  return m.body;
}

async function container(
  name: 'dispatch' | 'sync',
  extraEnv: Record<string, string> = {},
): Promise<HandlerContainer> {
  const c = await HandlerContainer.start(built, name, { ...env, ...extraEnv }, parameters);
  containers.push(c);
  return c;
}

function register(user: TestUser, overrides: Partial<Source> = {}, password = user.password): Source {
  const source = t.source(user, 'imap', 'implicit', overrides);
  parameters[`${TEST_SECRETS_PREFIX}${source.id}`] = password;
  return source;
}

function bodyText(n: number, size: number): string {
  const line = `line ${n} `.padEnd(76, 'x');
  const lines = Math.ceil(size / 78);
  return [
    `From: sender${n}@example.com`,
    `To: rcpt@example.com`,
    `Subject: import ${n}`,
    `Message-ID: <import-${n}-${process.pid}@example.com>`,
    `Date: Thu, 1 Jan 2026 00:00:00 +0000`,
    '',
    ...Array.from({ length: lines }, () => line),
    '',
  ].join('\r\n');
}

/** Outcomes of `sync finished` log lines written since `from`. */
function outcomes(c: HandlerContainer, from = 0): string[] {
  return c
    .records()
    .slice(from)
    .filter((r) => r.message === 'sync finished')
    .map((r) => String(r.outcome));
}

beforeAll(async () => {
  ({ built, env, t } = await setUpHandlers(lab));
  registry = new DynamoSourceRegistry(t.clients.documents, env.TABLE_NAME!);
}, 60_000);

afterAll(() => tearDownHandlers({ built, t }, containers));

describe('dispatch handler', () => {
  it('sends exactly the due sources: not disabled, not backing off, not due later', async () => {
    const user = lab.createUser('disp');
    const now = Date.now();
    const due = register(user);
    const dueLongAgo = register(user);
    const disabled = register(user, { enabled: false });
    const backingOff = register(user);
    const later = register(user);
    for (const s of [due, dueLongAgo, disabled, backingOff, later]) await registry.put(s, now - 60_000);
    const set = async (id: string, schedule: Parameters<typeof registry.setSchedule>[1]) => {
      const entry = (await registry.get(id))!;
      expect(await registry.setSchedule(id, schedule, entry.revision)).toBe(true);
    };
    await set(dueLongAgo.id, { nextDueAt: now - 86_400_000, failures: 0 });
    // Failed twice: its interval has passed but its back-off has not.
    await set(backingOff.id, {
      nextDueAt: now - 1000,
      failures: 2,
      backoffUntil: now + 120_000,
      lastOutcome: 'failed',
    });
    await set(later.id, { nextDueAt: now + 120_000, failures: 0, lastOutcome: 'ok' });

    const dispatch = await container('dispatch');
    const first = await dispatch.invoke({ source: 'aws.scheduler' }, { timeoutMs: 30_000 });
    expect(first.kind).toBe('result');
    const sent = (first as Extract<Invocation, { kind: 'result' }>).sent;
    expect(sent.every((m) => m.queueUrl === TEST_QUEUE_URL)).toBe(true);
    const ids = sent.map((m) => (JSON.parse(m.body) as { sourceId: string }).sourceId).sort();
    expect(ids).toEqual([due.id, dueLongAgo.id].sort());
    for (const m of sent) expect(JSON.parse(m.body)).toMatchObject({ reason: 'due' });

    // Claimed: not due again until the run writes its schedule or the claim runs out.
    const claimed = (await registry.get(due.id))!.schedule;
    expect(claimed.dispatchedAt).toBeGreaterThanOrEqual(now);
    expect(claimed.nextDueAt).toBeGreaterThanOrEqual(now + DISPATCH_CLAIM_MS);
    const second = await dispatch.invoke({}, { timeoutMs: 30_000 });
    expect(second.kind === 'result' && second.sent).toEqual([]);
  });
});

describe('sync handler', () => {
  it('finishes a first import larger than one invocation over several, re-enqueued, every message once', async () => {
    const user = lab.createUser('imp');
    const count = 1_000;
    for (let i = 0; i < count; i++) lab.deliver(user, bodyText(i, 6_000 + (i % 7) * 3_000));
    const reconciler = await new Reconciler(lab, user).start();
    const source = register(user);
    await registry.put(source, Date.now() - 1000);

    const dispatch = await container('dispatch');
    // The stack's `detailedMetrics` context: the run metrics are sent (checked at the end).
    const sync = await container('sync', { [DETAILED_METRICS_VARIABLE]: 'true' });
    const d = await dispatch.invoke({}, { timeoutMs: 30_000 });
    const queue = d.kind === 'result' ? d.sent.filter((m) => m.body.includes(source.id)) : [];
    expect(queue).toHaveLength(1);

    let invocations = 0;
    const budgets: number[] = [];
    while (queue.length > 0) {
      const next = queue.shift()!;
      expect(invocations++).toBeLessThan(40);
      // A short invocation: 1.5 s, of which the handler keeps a fifth for what follows the run.
      const r = await sync.invoke(sqsEvent([message(next)]), { timeoutMs: 1_500 });
      expect(r.kind).toBe('result');
      if (r.kind !== 'result') break;
      budgets.push(r.ms);
      expect(r.result).toEqual({ batchItemFailures: [] });
      for (const m of r.sent) {
        expect(JSON.parse(m.body)).toMatchObject({ sourceId: source.id, reason: 'more' });
        queue.push(m);
      }
      expect(r.sent.length).toBeLessThanOrEqual(1);
    }
    const runs = outcomes(sync);
    expect(runs.length).toBeGreaterThanOrEqual(3);
    expect(runs.slice(0, -1).every((o) => o === 'more')).toBe(true);
    expect(runs[runs.length - 1]).toBe('ok');
    // Each invocation stopped by itself, before Lambda's timeout.
    expect(Math.max(...budgets)).toBeLessThan(1_500);

    const result = await reconciler.finish(t, source.id);
    expect(result).toMatchObject({ lost: 0, duplicated: 0, corrupt: 0, unfetched: 0, stored: count });
    // One warm container read the password once.
    const last = await sync.invoke(sqsEvent([]), { timeoutMs: 1000 });
    expect(last.kind === 'result' && last.ssmCalls).toBe(1);

    // Done: due again after the source's interval, not claimed, not backing off.
    const schedule = (await registry.get(source.id))!.schedule;
    expect(schedule).toMatchObject({ failures: 0, lastOutcome: 'ok' });
    expect(schedule.backoffUntil).toBeUndefined();
    expect(schedule.nextDueAt).toBeGreaterThan(Date.now() + (source.pollMinutes - 1) * 60_000);

    // Every line written while the source was handled names it; the password is on none.
    const lines = sync.records().filter((r) => typeof r.level === 'string');
    expect(lines.length).toBeGreaterThan(0);
    for (const r of lines) expect(r.sourceId).toBe(source.id);
    expect(sync.lines.join('\n')).not.toContain(user.password);
    // Metrics: one embedded-metric blob per run, the source a property of it but never a dimension (each
    // dimension value is a billed custom metric: docs/cost.md).
    const blobs = sync.records().filter((r) => r._aws !== undefined && r.sourceId === source.id);
    expect(blobs.some((b) => typeof b.messages === 'number' && typeof b.bytes === 'number')).toBe(true);
    for (const b of sync.records().filter((r) => r._aws !== undefined))
      expect(JSON.stringify((b._aws as { CloudWatchMetrics: unknown }).CloudWatchMetrics)).not.toContain(
        'sourceId',
      );
  }, 180_000);

  it('backs off a source whose password is wrong (AUTH_FAILED) while another keeps syncing', async () => {
    const bad = lab.createUser('bad');
    const good = lab.createUser('good');
    for (let i = 0; i < 5; i++) {
      lab.deliver(bad, bodyText(i, 500));
      lab.deliver(good, bodyText(i, 500));
    }
    const wrong = register(bad, {}, 'not-the-password');
    const right = register(good);
    const now = Date.now();
    await registry.put(wrong, now - 1000);
    await registry.put(right, now - 1000);
    const sync = await container('sync');
    const from = sync.records().length;
    for (const s of [wrong, right]) {
      const r = await sync.invoke(sqsEvent([JSON.stringify({ sourceId: s.id, reason: 'due', at: now })]), {
        timeoutMs: 20_000,
      });
      // A failed run is a handled message: the back-off, not the queue, decides when it is tried again.
      expect(r.kind === 'result' && r.result).toEqual({ batchItemFailures: [] });
    }
    expect(outcomes(sync, from)).toEqual(['failed', 'ok']);

    const failed = (await registry.get(wrong.id))!.schedule;
    expect(failed).toMatchObject({ failures: 1, lastOutcome: 'failed', lastErrorCode: 'AUTH_FAILED' });
    expect(failed.backoffUntil).toBeGreaterThan(Date.now());
    const status = await t.index.summary(wrong.id);
    expect(status.lastRun?.error?.code).toBe('AUTH_FAILED');
    expect(status.consecutiveFailures).toBe(1);
    expect((await t.stored(right.id)).length).toBe(5);
    expect((await t.index.summary(right.id)).lastRun?.outcome).toBe('ok');

    // A second failure doubles the wait.
    await sync.invoke(sqsEvent([JSON.stringify({ sourceId: wrong.id, reason: 'due', at: now })]), {
      timeoutMs: 20_000,
    });
    const twice = (await registry.get(wrong.id))!.schedule;
    expect(twice.failures).toBe(2);
    // By default no run metric is sent (each would be a billed custom metric: docs/cost.md), only the problems.
    const blobs = sync
      .records()
      .slice(from)
      .filter((r) => r._aws !== undefined);
    expect(blobs.filter((r) => r.runs !== undefined || r.messages !== undefined)).toEqual([]);
    // The "failing N runs in a row" alarm's metric: one per failed run, its value the failures so far.
    const failedRuns = sync
      .records()
      .slice(from)
      .filter((r) => r._aws !== undefined && r.SyncFailed !== undefined);
    expect(failedRuns.map((r) => [r.sourceId, r.SyncFailed])).toEqual([
      [wrong.id, 1],
      [wrong.id, 2],
    ]);
    expect(twice.backoffUntil! - Date.now()).toBeGreaterThan(60_000);
    // Neither is sent by the dispatcher now: one is backing off, the other is not due for its interval.
    const dispatch = await container('dispatch');
    const d = await dispatch.invoke({}, { timeoutMs: 30_000 });
    const ids = d.kind === 'result' ? d.sent.map((m) => m.body) : [];
    expect(ids.filter((b) => b.includes(wrong.id) || b.includes(right.id))).toEqual([]);
    expect(sync.lines.join('\n')).not.toContain(good.password);
  }, 120_000);

  it('gives one sync and one busy for two deliveries of the same message at once', async () => {
    const user = lab.createUser('dup');
    for (let i = 0; i < 60; i++) lab.deliver(user, bodyText(i, 4000));
    const reconciler = await new Reconciler(lab, user).start();
    const source = register(user);
    await registry.put(source, Date.now() - 1000);
    const [a, b] = await Promise.all([container('sync'), container('sync')]);
    const body = JSON.stringify({ sourceId: source.id, reason: 'due', at: Date.now() });
    const before = (await registry.get(source.id))!;
    const results = await Promise.all([a, b].map((c) => c.invoke(sqsEvent([body]), { timeoutMs: 30_000 })));
    for (const r of results) expect(r.kind === 'result' && r.result).toEqual({ batchItemFailures: [] });
    expect([...outcomes(a), ...outcomes(b)].sort()).toEqual(['busy', 'ok']);
    expect(await reconciler.finish(t, source.id)).toMatchObject({
      lost: 0,
      duplicated: 0,
      unfetched: 0,
      stored: 60,
    });
    // The busy one wrote nothing: one schedule write (the run's) since the message was sent.
    const after = (await registry.get(source.id))!;
    expect(after.revision).toBe(before.revision + 1);
    expect(after.schedule.lastOutcome).toBe('ok');
  }, 120_000);
});
