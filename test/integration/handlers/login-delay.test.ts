import { DynamoSourceRegistry } from '../../../functions/adapters/dynamodb/source-registry';
import type { Source } from '../../../functions/core/model';
import { startFakePop3, type FakeServer } from '../../unit/pop3/fake-pop3-server';
import { MailLab } from '../../support/mail-lab';
import type { TestTributary } from '../../support/tributary';
import type { buildHandlers } from '../../support/handler-lambda';
import {
  HandlerContainer,
  sqsEvent,
  TEST_SECRETS_PREFIX,
  setUpHandlers,
  tearDownHandlers,
  type Invocation,
} from '../../support/handler-lambda';

/**
 * POP3 LOGIN-DELAY (RFC 2449) through the bundled sync function: the next run is not due, nor re-enqueued, before
 * the server allows a login. Dovecot does not announce it, so the scripted POP3 server does (on loopback, no TLS).
 */
const lab = MailLab.fromEnv();
let built: Awaited<ReturnType<typeof buildHandlers>>;
let env: Record<string, string>;
let t: TestTributary;
let registry: DynamoSourceRegistry;
const servers: FakeServer[] = [];
const live: HandlerContainer[] = [];

beforeAll(async () => {
  ({ built, env, t } = await setUpHandlers(lab));
  registry = new DynamoSourceRegistry(t.clients.documents, env.TABLE_NAME!);
}, 60_000);

afterAll(() => tearDownHandlers({ built, t }, [...live, ...servers]));

const messages = Array.from({ length: 4 }, (_, i) =>
  Buffer.from(
    `From: a@example.com\r\nSubject: delay ${i}\r\nMessage-ID: <delay-${i}@x>\r\n\r\nbody ${i}\r\n`,
  ),
);

async function run(
  loginDelay: number,
  stallRetr: boolean,
  timeoutMs: number,
): Promise<{ source: Source; started: number; r: Invocation }> {
  const server = await startFakePop3({
    messages,
    password: 'pop-secret',
    mode: 'bulk',
    capabilities: ['USER', 'UIDL', 'TOP', `LOGIN-DELAY ${loginDelay}`],
    // The second message never comes: the run stops at its deadline with more to do.
    ...(stallRetr
      ? { override: (c: string) => (c.startsWith('RETR 2') ? ('stall' as const) : undefined) }
      : {}),
  });
  servers.push(server);
  const source: Source = {
    id: `delay-${loginDelay}-${Math.random().toString(16).slice(2, 10)}`,
    protocol: 'pop3',
    host: '127.0.0.1',
    port: server.port,
    tls: 'none',
    user: 'someone',
    folders: [],
    pollMinutes: 5,
    enabled: true,
    retention: { mode: 'keep' },
  };
  await registry.put(source, Date.now());
  const sync = await HandlerContainer.start(built, 'sync', env, {
    [`${TEST_SECRETS_PREFIX}${source.id}`]: 'pop-secret',
  });
  live.push(sync);
  const started = Date.now();
  const r = await sync.invoke(
    sqsEvent([JSON.stringify({ sourceId: source.id, reason: 'due', at: started })]),
    {
      timeoutMs,
    },
  );
  expect(r.kind).toBe('result');
  return { source, started, r };
}

describe('sync handler and POP3 LOGIN-DELAY', () => {
  it('is not due again before the login delay, when it is longer than the interval', async () => {
    const { source, started } = await run(1200, false, 20_000);
    const schedule = (await registry.get(source.id))!.schedule;
    expect(schedule.lastOutcome).toBe('ok');
    expect(schedule.nextDueAt).toBeGreaterThanOrEqual(started + 1200_000 - 1000);
  });

  it('re-enqueues a run with more to do after the login delay (an SQS delay)', async () => {
    const { r } = await run(300, true, 2_500);
    const sent = r.kind === 'result' ? r.sent : [];
    expect(sent).toHaveLength(1);
    expect(sent[0]!.delaySeconds).toBe(300);
    expect(JSON.parse(sent[0]!.body)).toMatchObject({ reason: 'more' });
  });

  it('leaves a login delay longer than SQS can delay to the dispatcher', async () => {
    const { source, started, r } = await run(1200, true, 2_500);
    expect(r.kind === 'result' && r.sent).toEqual([]);
    const schedule = (await registry.get(source.id))!.schedule;
    expect(schedule.lastOutcome).toBe('more');
    expect(schedule.nextDueAt).toBeGreaterThanOrEqual(started + 1200_000 - 1000);
    expect(schedule.nextDueAt).toBeLessThan(started + 1200_000 + 5_000);
  });
});
