import { DynamoSourceRegistry } from '../../../functions/adapters/dynamodb/source-registry';
import { Random } from '../../support/corpus';
import { MailLab } from '../../support/mail-lab';
import { Reconciler } from '../../support/reconciler';
import type { TestTributary } from '../../support/tributary';
import type { buildHandlers } from '../../support/handler-lambda';
import {
  expireLease,
  HandlerContainer,
  sqsEvent,
  TEST_SECRETS_PREFIX,
  setUpHandlers,
  tearDownHandlers,
} from '../../support/handler-lambda';

/**
 * A delete-on-retrieve POP3 source synced by the bundled sync function under invocations killed at random moments
 * (Lambda's timeout, or the sandbox dying), each killed message delivered again as SQS would: nothing may be lost,
 * duplicated or deleted upstream without its stored copy and audit record.
 */
const lab = MailLab.fromEnv();
let built: Awaited<ReturnType<typeof buildHandlers>>;
let env: Record<string, string>;
let t: TestTributary;
const live: HandlerContainer[] = [];

beforeAll(async () => {
  ({ built, env, t } = await setUpHandlers(lab));
}, 60_000);

afterAll(() => tearDownHandlers({ built, t }, live));

function message(n: number, size: number): string {
  const line = `kill ${n} `.padEnd(76, 'k');
  return [
    `From: sender${n}@example.com`,
    `To: rcpt@example.com`,
    `Subject: kill ${n}`,
    `Message-ID: <kill-${n}-${process.pid}@example.com>`,
    '',
    ...Array.from({ length: Math.ceil(size / 78) }, () => line),
    '',
  ].join('\r\n');
}

describe('sync handler, delete-on-retrieve, invocations cut', () => {
  it('loses, duplicates and wrongly deletes nothing', async () => {
    const user = lab.createUser('dkill');
    const count = 800;
    const random = new Random(Number(process.env.TRIBUTARY_SEED ?? 1414));
    for (let i = 0; i < count; i++) lab.deliver(user, message(i, 1_000 + random.int(0, 12_000)));
    const reconciler = await new Reconciler(lab, user).start();
    const source = t.source(user, 'pop3', 'implicit', { retention: { mode: 'delete-on-retrieve' } });
    const registry = new DynamoSourceRegistry(t.clients.documents, env.TABLE_NAME!);
    await registry.put(source, Date.now());
    const parameters = { [`${TEST_SECRETS_PREFIX}${source.id}`]: user.password };

    let container: HandlerContainer | undefined;
    const queue = [JSON.stringify({ sourceId: source.id, reason: 'due', at: Date.now() })];
    let kills = 0;
    let completed = 0;
    let invocations = 0;
    /** What each invocation did, for the log: `cut@ms`, or the run's outcome, fetched and deleted counts. */
    const trace: string[] = [];
    while (queue.length > 0 && invocations < 40) {
      invocations++;
      if (!container?.alive) {
        // A new sandbox: cold start.
        container = await HandlerContainer.start(built, 'sync', env, parameters);
        live.push(container);
      }
      const body = queue[0]!;
      // The first invocations are cut at a random moment (the whole import takes longer than the latest cut here:
      // the cuts land in the login, the fetch, the verification and the deletes); the rest run to their deadline.
      // The uncut budget is long enough for the delete phase of the whole maildrop (see the report: a POP3 delete
      // phase longer than one invocation's budget never completes, since DELEs only apply at QUIT).
      const cut = invocations <= 8 ? random.int(100, 4_000) : undefined;
      const seen = container.records().length;
      const r = await container.invoke(sqsEvent([body]), {
        timeoutMs: 20_000,
        ...(cut === undefined ? {} : { cutAfterMs: cut }),
      });
      if (r.kind === 'killed') {
        kills++;
        trace.push(`cut@${r.ms}`);
        // SQS delivers it again after the visibility timeout, longer than the lease TTL.
        await expireLease(t, source.id);
        continue;
      }
      const done = container
        .records()
        .slice(seen)
        .find((l) => l.message === 'sync finished');
      trace.push(
        `${String(done?.outcome)}:${String(done?.fetched)}/${String(done?.deletedUpstream)}` +
          (Array.isArray(done?.notes) ? ` (${done.notes.join('; ')})` : ''),
      );
      expect(r.kind).toBe('result');
      if (r.kind !== 'result') break;
      expect(r.result).toEqual({ batchItemFailures: [] });
      completed++;
      queue.shift();
      for (const m of r.sent) queue.push(m.body);
    }
    const result = await reconciler.finish(t, source.id);
    process.stderr.write(
      `[reliability] handlers delete-on-retrieve: ${invocations} invocations, ${kills} killed, ${completed} completed; ` +
        `lost ${result.lost}, duplicated ${result.duplicated}, wrongly deleted ${result.wronglyDeleted}\n` +
        `  ${trace.join(' ')}\n`,
    );
    expect(queue).toEqual([]);
    expect(kills).toBeGreaterThanOrEqual(3);
    expect(result).toMatchObject({
      lost: 0,
      duplicated: 0,
      wronglyDeleted: 0,
      corrupt: 0,
      unfetched: 0,
      stored: count,
      // delete-on-retrieve: everything stored is gone upstream, each with its audit record.
      upstream: 0,
    });
    expect(await t.index.pendingActions(source.id)).toEqual([]);
    expect((await registry.get(source.id))!.schedule.lastOutcome).toBe('ok');
  }, 600_000);
});
