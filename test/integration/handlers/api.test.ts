import { DynamoSourceRegistry } from '../../../functions/adapters/dynamodb/source-registry';
import { MailLab } from '../../support/mail-lab';
import type { TestTributary } from '../../support/tributary';
import type { buildHandlers } from '../../support/handler-lambda';
import {
  HandlerContainer,
  httpApiEvent,
  sqsEvent,
  TEST_SECRETS_PREFIX,
  setUpHandlers,
  tearDownHandlers,
} from '../../support/handler-lambda';

/** GET /api/sources through the bundled API function, with and without the JWT authorizer's claims. */
const lab = MailLab.fromEnv();
let built: Awaited<ReturnType<typeof buildHandlers>>;
let env: Record<string, string>;
let t: TestTributary;
const live: HandlerContainer[] = [];

beforeAll(async () => {
  ({ built, env, t } = await setUpHandlers(lab));
}, 60_000);

afterAll(() => tearDownHandlers({ built, t }, live));

interface HttpResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

describe('api handler', () => {
  it('answers 401 without claims, and each source status with them', async () => {
    const ok = lab.createUser('apiok');
    const bad = lab.createUser('apibad');
    for (let i = 0; i < 3; i++)
      lab.deliver(
        ok,
        `From: a@example.com\r\nSubject: api ${i}\r\nMessage-ID: <api-${i}@x>\r\n\r\nhello ${i}\r\n`,
      );
    const good = t.source(ok, 'imap', 'implicit', {
      inboxQuota: { maxMessages: 10, onExceed: 'pause' },
    });
    const wrong = t.source(bad, 'pop3', 'implicit');
    const registry = new DynamoSourceRegistry(t.clients.documents, env.TABLE_NAME!);
    await registry.put(good, Date.now());
    await registry.put(wrong, Date.now());
    // Real runs through the sync function give the status something to show.
    const sync = await HandlerContainer.start(built, 'sync', env, {
      [`${TEST_SECRETS_PREFIX}${good.id}`]: ok.password,
      [`${TEST_SECRETS_PREFIX}${wrong.id}`]: 'wrong-password',
    });
    live.push(sync);
    for (const s of [good, wrong]) {
      const r = await sync.invoke(
        sqsEvent([JSON.stringify({ sourceId: s.id, reason: 'due', at: Date.now() })]),
        {
          timeoutMs: 20_000,
        },
      );
      expect(r.kind).toBe('result');
    }
    // A message set aside on the good source (as three failed runs leave it).
    const lease = (await t.index.acquireLease(good.id, 'test', 10_000, Date.now()))!;
    await t.index.recordMessageFailure(lease, {
      sourceId: good.id,
      identity: 'imap#INBOX#1#0000000099',
      upstream: { kind: 'imap', folder: 'INBOX', uidValidity: '1', uid: 99 },
      attempts: 3,
      error: { code: 'PROTOCOL_ERROR', message: 'the body was far from its announced size' },
      firstAt: new Date().toISOString(),
      lastAt: new Date().toISOString(),
      setAside: true,
    });
    await t.index.releaseLease(lease);

    const api = await HandlerContainer.start(built, 'api', env);
    live.push(api);
    const call = async (claims?: Record<string, unknown>): Promise<HttpResult> => {
      const r = await api.invoke(httpApiEvent('GET', '/api/sources', claims), { timeoutMs: 10_000 });
      if (r.kind !== 'result') throw new Error(`api invocation ${r.kind}`);
      return r.result as HttpResult;
    };

    const anonymous = await call();
    expect(anonymous.statusCode).toBe(401);
    expect(JSON.parse(anonymous.body)).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
    expect(anonymous.body).not.toContain(good.id);
    expect((await call({})).statusCode).toBe(401);

    const res = await call({ sub: 'user-1', email: 'ann@example.com', iss: 'https://issuer.example' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/json/);
    const { sources } = JSON.parse(res.body) as { sources: Array<Record<string, unknown>> };
    expect(sources.map((s) => s.id)).toEqual([good.id, wrong.id].sort());
    const g = sources.find((s) => s.id === good.id)!;
    expect(g).toMatchObject({
      enabled: true,
      error: null,
      consecutiveFailures: 0,
      stored: { messages: 3 },
      lastRun: { outcome: 'ok', fetched: 3 },
      quota: { inbox: { messages: 3, maxMessages: 10, messagesPercent: 30 } },
      setAside: [{ identity: 'imap#INBOX#1#0000000099', attempts: 3, error: { code: 'PROTOCOL_ERROR' } }],
      schedule: { failures: 0, lastOutcome: 'ok', backoffUntil: null },
    });
    expect(Date.parse(String((g.schedule as { nextDueAt: string }).nextDueAt))).toBeGreaterThan(Date.now());
    expect((g.stored as { bytes: number }).bytes).toBeGreaterThan(0);
    const w = sources.find((s) => s.id === wrong.id)!;
    expect(w).toMatchObject({
      error: { code: 'AUTH_FAILED' },
      consecutiveFailures: 1,
      lastRun: { outcome: 'failed' },
      schedule: { failures: 1, lastOutcome: 'failed' },
      setAside: [],
    });
    expect(Date.parse(String((w.schedule as { backoffUntil: string }).backoffUntil))).toBeGreaterThan(
      Date.now(),
    );
    // No secret in the answer.
    expect(res.body).not.toContain(ok.password);
    expect(res.body).not.toContain('wrong-password');

    const unknown = await api.invoke(httpApiEvent('GET', '/api/nothing', { sub: 'user-1' }), {
      timeoutMs: 10_000,
    });
    expect(unknown.kind === 'result' && (unknown.result as HttpResult).statusCode).toBe(404);
  }, 120_000);
});
