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

/**
 * The bundled API function as Lambda runs it: GET /api/sources, GET /api/messages, sync now (a message on the queue)
 * and the page's config, with the JWT authorizer's claims for this stack, without them, and with claims of
 * another pool, another client or an expired token.
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

const ISSUER = 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool';
const CLIENT = 'test-page-client';
const WEB_ENV = {
  USER_POOL_ISSUER: ISSUER,
  USER_POOL_CLIENT_ID: CLIENT,
  COGNITO_DOMAIN: 'https://tributary-test.auth.us-east-1.amazoncognito.com',
  REDIRECT_URI: 'https://api.example.com/',
};

/** Claims as API Gateway's JWT authorizer passes them (every value a string) for an access token of this stack. */
function claimsFor(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sub: 'user-1',
    username: 'ann',
    iss: ISSUER,
    client_id: CLIENT,
    token_use: 'access',
    exp: String(Math.floor(Date.now() / 1000) + 600),
    ...extra,
  };
}

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

    const api = await HandlerContainer.start(built, 'api', { ...env, ...WEB_ENV });
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

    for (const wrongClaims of [
      claimsFor({ iss: 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other' }),
      claimsFor({ client_id: 'another-client' }),
      claimsFor({ exp: String(Math.floor(Date.now() / 1000) - 1) }),
    ]) {
      expect((await call(wrongClaims)).statusCode).toBe(401);
    }

    const res = await call(claimsFor());
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

    const unknown = await api.invoke(httpApiEvent('GET', '/api/nothing', claimsFor()), {
      timeoutMs: 10_000,
    });
    expect(unknown.kind === 'result' && (unknown.result as HttpResult).statusCode).toBe(404);

    // The merged inbox: the three messages the sync function stored, newest first; 401 without claims.
    const invoke = async (method: string, path: string, claims?: Record<string, unknown>) => {
      const r = await api.invoke(httpApiEvent(method, path, claims), { timeoutMs: 10_000 });
      if (r.kind !== 'result') throw new Error(`api invocation ${r.kind}`);
      return { ...(r.result as HttpResult), sent: r.sent };
    };
    expect((await invoke('GET', '/api/messages')).statusCode).toBe(401);
    const inbox = await invoke('GET', '/api/messages', claimsFor());
    expect(inbox.statusCode).toBe(200);
    const page = JSON.parse(inbox.body) as { messages: Array<{ subject: string; sources: string[] }> };
    expect(page.messages.map((m) => m.subject).sort()).toEqual(['api 0', 'api 1', 'api 2']);
    expect(page.messages.every((m) => m.sources.join() === good.id)).toBe(true);

    // Sync now: one message on the sync queue, for a registered source only.
    const now = await invoke('POST', `/api/sources/${good.id}/sync`, claimsFor());
    expect(now.statusCode).toBe(200);
    expect(now.sent.map((m) => JSON.parse(m.body) as Record<string, unknown>)).toEqual([
      { sourceId: good.id, reason: 'now', at: expect.any(Number) as number },
    ]);
    expect(now.sent[0]!.queueUrl).toBe(env.QUEUE_URL);
    const none = await invoke('POST', '/api/sources/nobody/sync', claimsFor());
    expect([none.statusCode, none.sent]).toEqual([404, []]);

    // The page's config, without authentication.
    const config = await invoke('GET', '/config.json');
    expect(JSON.parse(config.body)).toEqual({
      auth: 'cognito',
      domain: WEB_ENV.COGNITO_DOMAIN,
      clientId: CLIENT,
      redirectUri: WEB_ENV.REDIRECT_URI,
      scopes: ['openid', 'email'],
    });

    // The page itself, carried pre-built beside the handler as the stack bundles it, without authentication and
    // under its CSP.
    const html = await invoke('GET', '/');
    expect(html.statusCode).toBe(200);
    expect(html.headers['content-type']).toMatch(/text\/html/);
    expect(html.headers['content-security-policy']).toContain("script-src 'self'");
    expect(html.body).toContain('/assets/app.js');
    const script = await invoke('GET', '/assets/app.js');
    expect(script.statusCode).toBe(200);
    expect(script.headers['content-type']).toMatch(/javascript/);
  }, 120_000);
});
