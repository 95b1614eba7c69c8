import type { Context } from 'aws-lambda';
import { Hono, type MiddlewareHandler } from 'hono';
import { handle } from 'hono/aws-lambda';
import { DynamoMessageIndex, type SourceSummary } from '../adapters/dynamodb/message-index';
import { DynamoSourceRegistry } from '../adapters/dynamodb/source-registry';
import { describeError } from '../core/errors';
import type { MessageFailure } from '../core/model';
import type { RegisteredSource, SourceRegistry } from '../core/ports';
import { makeAwsClients } from '../shared/aws-clients';
import { parseEnv } from '../shared/env';
import { makeObservability, type Observability } from '../shared/observability';

/**
 * The API function (issue #14): a Hono app, the same in Lambda (API Gateway HTTP API, payload 2.0, through
 * `hono/aws-lambda`) and in Node. API Gateway's JWT authorizer verifies the token; the app still refuses any request
 * that reaches it without the authorizer's claims (a route added without the authorizer, a test invocation), 401.
 */

/** What the status route reads besides the registry: the run status, counters and failures of each source. */
export interface SourceStatusReader {
  summary(sourceId: string): Promise<SourceSummary>;
  messageFailures(sourceId: string): Promise<MessageFailure[]>;
}

export interface ApiDeps {
  registry: SourceRegistry;
  status: SourceStatusReader;
  obs: Observability;
}

/** What `hono/aws-lambda` passes as the app's bindings; absent (or something else) under Node. */
interface Bindings {
  requestContext?: { authorizer?: { jwt?: { claims?: Record<string, unknown> } } };
}
interface Variables {
  subject: string;
}
type AppEnv = { Bindings: Bindings; Variables: Variables };

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

function percent(used: number, limit: number | undefined): number | null {
  return limit ? Math.round((used / limit) * 1000) / 10 : null;
}

/** Defence in depth: no verified claims from the authorizer, no answer. */
const requireClaims: MiddlewareHandler<AppEnv> = async (c, next) => {
  const claims = c.env?.requestContext?.authorizer?.jwt?.claims;
  if (!claims || typeof claims !== 'object' || Object.keys(claims).length === 0) {
    return c.json(
      { error: { code: 'UNAUTHENTICATED', message: 'this API needs a signed-in user (a bearer token)' } },
      401,
    );
  }
  const sub = claims.sub;
  c.set('subject', typeof sub === 'string' ? sub : '');
  await next();
};

/** One source as GET /api/sources shows it: settings (no secret), last run, counts, quotas, set-aside, schedule. */
async function sourceStatus(entry: RegisteredSource, status: SourceStatusReader) {
  const { source, schedule } = entry;
  const [summary, failures] = await Promise.all([
    status.summary(source.id),
    status.messageFailures(source.id),
  ]);
  const run = summary.lastRun;
  const upstream = run?.upstreamUsage;
  const inboxQuota = source.inboxQuota;
  return {
    id: source.id,
    protocol: source.protocol,
    host: source.host,
    port: source.port,
    user: source.user,
    folders: source.folders,
    enabled: source.enabled,
    pollMinutes: source.pollMinutes,
    retention: source.retention,
    lastRun: run ?? null,
    /** The typed error of the last run, when it failed. */
    error: run?.error ?? null,
    consecutiveFailures: summary.consecutiveFailures,
    stored: { messages: summary.messages, bytes: summary.bytes },
    quota: {
      upstream: upstream
        ? {
            usedBytes: upstream.usedBytes,
            limitBytes: upstream.limitBytes,
            afterBytes: upstream.afterBytes,
            usedPercent: percent(upstream.afterBytes, upstream.limitBytes),
            policy: source.upstreamQuota ?? null,
          }
        : null,
      inbox: inboxQuota
        ? {
            messages: summary.messages,
            bytes: summary.bytes,
            maxMessages: inboxQuota.maxMessages ?? null,
            maxBytes: inboxQuota.maxBytes ?? null,
            messagesPercent: percent(summary.messages, inboxQuota.maxMessages),
            bytesPercent: percent(summary.bytes, inboxQuota.maxBytes),
            onExceed: inboxQuota.onExceed,
          }
        : null,
    },
    setAside: failures
      .filter((f) => f.setAside)
      .map((f) => ({
        identity: f.identity,
        attempts: f.attempts,
        error: f.error,
        firstAt: f.firstAt,
        lastAt: f.lastAt,
        retryRequested: f.retry ?? false,
      })),
    schedule: {
      nextDueAt: iso(schedule.nextDueAt),
      backoffUntil: iso(schedule.backoffUntil),
      failures: schedule.failures,
      lastOutcome: schedule.lastOutcome ?? null,
      dispatchedAt: iso(schedule.dispatchedAt),
    },
  };
}

export function makeApp(deps: ApiDeps): Hono<AppEnv> {
  const log = deps.obs.logger;
  const app = new Hono<AppEnv>();
  app.use('/api/*', requireClaims);
  app.get('/api/sources', async (c) => {
    const entries = await deps.registry.list();
    const sources = await Promise.all(entries.map((e) => sourceStatus(e, deps.status)));
    sources.sort((a, b) => a.id.localeCompare(b.id));
    return c.json({ sources });
  });
  app.notFound((c) =>
    c.json({ error: { code: 'NOT_FOUND', message: `no route ${c.req.method} ${c.req.path}` } }, 404),
  );
  app.onError((err, c) => {
    const e = describeError(err);
    log.error('request failed', { method: c.req.method, path: c.req.path, code: e.code, error: e.message });
    // The details stay in the log: a caller learns only that it failed and whether to try again.
    return c.json({ error: { code: e.code, message: 'the request failed; try again later' } }, 500);
  });
  return app;
}

type LambdaHandler = ReturnType<typeof handle>;

export function makeHandler(deps: ApiDeps): LambdaHandler {
  const app = makeApp(deps);
  const inner = handle(app);
  return async (event, context) => {
    // hono's LambdaContext is the same object Lambda passes (aws-lambda's Context).
    if (context) deps.obs.invocation(context as unknown as Context);
    try {
      return await inner(event, context);
    } finally {
      deps.obs.flush();
    }
  };
}

/** The composition root: adapters built once per container from the environment. */
function fromEnv(): ApiDeps {
  const env = parseEnv('api');
  const clients = makeAwsClients();
  return {
    registry: new DynamoSourceRegistry(clients.documents, env.TABLE_NAME),
    status: new DynamoMessageIndex(clients.documents, env.TABLE_NAME),
    obs: makeObservability(),
  };
}

export const handler = makeHandler(fromEnv());
