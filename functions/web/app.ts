import { Hono, type Context } from 'hono';
import { describeError, TributaryError } from '../core/errors';
import type { AuditRecord, MessageFailure, Source } from '../core/model';
import type { InboxReader, InboxWriter, Logger, RawMailStore } from '../core/ports';
import type { SourceSchedule } from '../core/schedule';
import type { SourceSummary } from '../core/ports';
import { onlyHosts, refuseCrossSite, type Authenticator, type WebVariables } from './auth';
import type {
  LocalSetup,
  MessagePage,
  NewSourceInput,
  PageConfig,
  SetupResult,
  SourceStatus,
  SyncProgressView,
} from './contract';
import { downloadHeaders, safeFilename, type DownloadLinks, type LocalDownloadLinks } from './downloads';
import { attachmentBytes, inlineImage, readMessage, summaryOf } from './message-view';
import type { PageAssets } from './page-assets';
import { MAX_SETUP_BODY, describeIssues, parseNewSource, scrubResult, withoutSecret } from './setup';

/**
 * The web app (issue #15): every route of functions/web/contract.ts, the page's static assets and its config, one
 * Hono app for the API Lambda (functions/handlers/api.ts) and for `tributary serve` (functions/cli/serve.ts). What
 * differs between the two is injected: the authenticator, the download links, how the sources are listed and how
 * "sync now" is carried out; on one machine also adding a source (`setup`) and the progress of running syncs.
 */

/** What the sources route reads besides the list of sources: run status, counters, failures, audit. */
export interface SourceStatusReader {
  summary(sourceId: string): Promise<SourceSummary>;
  messageFailures(sourceId: string): Promise<MessageFailure[]>;
  auditTrail(sourceId: string, since?: string): AsyncIterable<AuditRecord>;
}

/** The sources to show: the deployed registry's (with schedules), or a config file's (no schedule). */
export interface SourceList {
  list(): Promise<Array<{ source: Source; schedule?: SourceSchedule }>>;
}

export interface WebAppDeps {
  auth: Authenticator;
  inbox: InboxReader & InboxWriter;
  store: RawMailStore;
  downloads: DownloadLinks;
  /** One machine: the signed same-origin download links, served by `/api/download/:token`. */
  localDownloads?: LocalDownloadLinks;
  sources: SourceList;
  status: SourceStatusReader;
  /** Sync now: false when there is no such source. */
  syncNow(sourceId: string): Promise<boolean>;
  pageConfig: PageConfig;
  /** The page (functions/web/page-assets.ts); absent: `/` says the page is not built. */
  page?: { assets: PageAssets; headers: Record<string, string> };
  /** One machine: the Host names the server answers to (DNS rebinding). */
  hosts?: string[];
  logger: Logger;
  now?: () => number;
  /**
   * One machine: adding a source from the page (`POST /api/setup/test`, `POST /api/sources`, and `setup: true` in
   * `/config.json`). Absent (AWS): those routes answer 404.
   */
  setup?: LocalSetup;
  /** One machine: the syncs running now, shown as `progress` on their source in `GET /api/sources`. */
  progress?: () => SyncProgressView[];
}

type AppEnv = { Variables: WebVariables };

/** Recent destructive actions listed per source, and how far back they are looked for. */
const RECENT_ACTIONS = 20;
const RECENT_ACTIONS_DAYS = 90;
const MAX_Q_CHARS = 200;

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

function percent(used: number, limit: number | undefined): number | null {
  return limit ? Math.round((used / limit) * 1000) / 10 : null;
}

function apiError(c: Context, status: 400 | 404 | 415, code: string, message: string): Response {
  return c.json({ error: { code, message } }, status);
}

/**
 * The JSON body of a setup route, checked: the input, or the 400/415 to answer. Nothing of the body is ever quoted
 * back (it holds a password).
 */
async function newSourceBody(c: Context): Promise<{ input: NewSourceInput } | { response: Response }> {
  const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json')
    return {
      response: apiError(
        c,
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        'send the source as JSON (Content-Type: application/json)',
      ),
    };
  const text = await c.req.text();
  if (text.length > MAX_SETUP_BODY)
    return {
      response: apiError(c, 400, 'BAD_REQUEST', `the body is too large (at most ${MAX_SETUP_BODY} bytes)`),
    };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { response: apiError(c, 400, 'BAD_REQUEST', 'the body is not valid JSON') };
  }
  const parsed = parseNewSource(raw);
  if (!parsed.ok) {
    const first = parsed.issues[0]!;
    return {
      response: c.json(
        {
          error: {
            code: 'BAD_REQUEST',
            message: describeIssues(parsed.issues),
            field: first.field,
            issues: parsed.issues,
          },
        },
        400,
      ),
    };
  }
  return { input: parsed.input };
}

async function recentActions(
  status: SourceStatusReader,
  sourceId: string,
  now: number,
): Promise<SourceStatus['recentActions']> {
  const since = new Date(now - RECENT_ACTIONS_DAYS * 24 * 3600 * 1000).toISOString();
  const recent: AuditRecord[] = [];
  for await (const record of status.auditTrail(sourceId, since)) {
    recent.push(record);
    if (recent.length > RECENT_ACTIONS) recent.shift();
  }
  return recent.reverse().map((r) => ({
    at: r.completedAt ?? r.at,
    action: r.action,
    identity: r.identity,
    reason: r.why,
    subject: null,
    state: r.state,
    policy: r.policy,
  }));
}

/** One source as GET /api/sources shows it: settings (no secret), last run, counts, quotas, set-aside, schedule. */
async function sourceStatus(
  entry: { source: Source; schedule?: SourceSchedule },
  status: SourceStatusReader,
  now: number,
): Promise<SourceStatus> {
  const { source, schedule } = entry;
  const [summary, failures, actions] = await Promise.all([
    status.summary(source.id),
    status.messageFailures(source.id),
    recentActions(status, source.id, now),
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
    recentActions: actions,
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
    schedule: schedule
      ? {
          nextDueAt: iso(schedule.nextDueAt),
          backoffUntil: iso(schedule.backoffUntil),
          failures: schedule.failures,
          lastOutcome: schedule.lastOutcome ?? null,
          dispatchedAt: iso(schedule.dispatchedAt),
        }
      : null,
  };
}

export function makeWebApp(deps: WebAppDeps): Hono<AppEnv> {
  const log = deps.logger;
  const now = deps.now ?? Date.now;
  const app = new Hono<AppEnv>();

  if (deps.hosts) app.use('*', onlyHosts(deps.hosts));

  // The page and its config: no authentication (nothing secret; the API calls it makes are authenticated).
  app.get('/config.json', (c) => {
    c.header('Cache-Control', 'no-store');
    const config: PageConfig =
      deps.setup && deps.pageConfig.auth === 'cookie' ? { ...deps.pageConfig, setup: true } : deps.pageConfig;
    return c.json(config);
  });
  const serveAsset = (c: Context, path: string) => {
    const asset = deps.page?.assets.get(path);
    if (!asset) {
      return path === '/'
        ? c.text('Tributary: the page is not built into this server.', 404)
        : c.text('not found', 404);
    }
    for (const [name, value] of Object.entries(deps.page?.headers ?? {})) c.header(name, value);
    c.header('Content-Type', asset.contentType);
    return c.body(new Uint8Array(asset.body));
  };
  if (deps.auth.start) app.get('/', deps.auth.start);
  app.get('/', (c) => serveAsset(c, '/'));
  app.get('/index.html', (c) => serveAsset(c, '/index.html'));
  app.get('/assets/*', (c) => serveAsset(c, c.req.path));

  app.use('/api/*', deps.auth.api);
  app.use('/api/*', refuseCrossSite);
  app.use('/api/*', async (c, next) => {
    await next();
    if (!c.res.headers.has('Cache-Control')) c.header('Cache-Control', 'no-store');
  });

  app.get('/api/messages', async (c) => {
    const limitText = c.req.query('limit');
    const limit = limitText === undefined ? 50 : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100)
      return apiError(c, 400, 'BAD_REQUEST', 'limit must be a whole number from 1 to 100');
    const q = c.req.query('q')?.trim();
    if (q !== undefined && q.length > MAX_Q_CHARS)
      return apiError(c, 400, 'BAD_REQUEST', `q must be at most ${MAX_Q_CHARS} characters`);
    const unread = c.req.query('unread');
    const source = c.req.query('source') || undefined;
    const page = await deps.inbox.list({
      limit,
      ...(source ? { sourceId: source } : {}),
      ...(unread === '1' || unread === 'true' ? { unread: true } : {}),
      ...(q ? { q } : {}),
      ...(c.req.query('cursor') ? { cursor: c.req.query('cursor') } : {}),
    });
    const body: MessagePage = { messages: page.entries.map(summaryOf), cursor: page.cursor ?? null };
    return c.json(body);
  });

  const entryOr404 = async (c: Context) => {
    const entry = await deps.inbox.get(c.req.param('id') ?? '');
    return entry;
  };
  const noMessage = (c: Context) => apiError(c, 404, 'NOT_FOUND', 'no such message in the inbox');

  app.get('/api/messages/:id', async (c) => {
    const entry = await entryOr404(c);
    if (!entry) return noMessage(c);
    const { view } = await readMessage(deps.store, entry);
    return c.json(view);
  });

  app.get('/api/messages/:id/raw', async (c) => {
    const entry = await entryOr404(c);
    if (!entry) return noMessage(c);
    const name = `${safeFilename(entry.record.metadata.subject, 'message').slice(0, 120)}.eml`;
    return c.json(await deps.downloads.raw(entry, name));
  });

  app.get('/api/messages/:id/attachments/:n', async (c) => {
    const entry = await entryOr404(c);
    if (!entry) return noMessage(c);
    const n = Number(c.req.param('n'));
    if (!/^\d{1,4}$/.test(c.req.param('n'))) return apiError(c, 404, 'NOT_FOUND', 'no such attachment');
    const parsed = await readMessage(deps.store, entry);
    const view = parsed.view.attachments[n];
    const bytes = attachmentBytes(parsed, n);
    if (!view || !bytes) return apiError(c, 404, 'NOT_FOUND', 'no such attachment');
    const name = safeFilename(view.filename, `attachment-${n}`);
    return c.json(await deps.downloads.attachment(entry, n, name, () => Promise.resolve(bytes)));
  });

  app.get('/api/messages/:id/inline/:cid', async (c) => {
    const entry = await entryOr404(c);
    if (!entry) return noMessage(c);
    const image = inlineImage(await readMessage(deps.store, entry), c.req.param('cid'));
    if (!image) return apiError(c, 404, 'NOT_FOUND', 'no such inline image');
    c.header('Content-Type', image.type);
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Content-Security-Policy', "default-src 'none'; sandbox");
    c.header('Cache-Control', 'private, max-age=300');
    return c.body(new Uint8Array(image.bytes));
  });

  for (const state of ['read', 'unread'] as const) {
    app.post(`/api/messages/:id/${state}`, async (c) => {
      const unread = state === 'unread';
      if (!(await deps.inbox.setUnread(c.req.param('id'), unread, now()))) return noMessage(c);
      return c.json({ unread });
    });
  }

  app.delete('/api/messages/:id', async (c) => {
    if (!(await deps.inbox.removeFromInbox(c.req.param('id'), c.get('user'), now()))) return noMessage(c);
    return c.json({ deleted: true });
  });

  app.get('/api/sources', async (c) => {
    const entries = await deps.sources.list();
    const at = now();
    const sources = await Promise.all(entries.map((e) => sourceStatus(e, deps.status, at)));
    sources.sort((a, b) => a.id.localeCompare(b.id));
    const running = new Map((deps.progress?.() ?? []).map((p) => [p.sourceId, p]));
    for (const s of sources) {
      const p = running.get(s.id);
      if (p) s.progress = p;
    }
    return c.json({ sources });
  });

  const setup = deps.setup;
  if (setup) {
    /** Runs a check or an add: a thrown error becomes `ok: false`; the password is out of the answer and the log. */
    const run = async (c: Context, what: 'test' | 'add'): Promise<Response> => {
      const body = await newSourceBody(c);
      if ('response' in body) return body.response;
      const { input } = body;
      let result: SetupResult;
      try {
        result = await (what === 'test' ? setup.test(input) : setup.add(input));
      } catch (err) {
        const e = describeError(err);
        result = { ok: false, code: e.code, message: e.message };
      }
      const answer = scrubResult(result, input.password);
      if (answer.ok)
        log.info(what === 'add' ? 'source added' : 'source tested', { sourceId: answer.sourceId });
      // A test that fails is the page doing its job (info); an add that fails is worth a warning.
      else
        log[what === 'add' ? 'warn' : 'info'](
          what === 'add' ? 'adding a source failed' : 'testing a source failed',
          {
            code: answer.code,
            error: answer.message,
            host: withoutSecret(input.host, input.password),
          },
        );
      return c.json(answer);
    };
    app.post('/api/setup/test', (c) => run(c, 'test'));
    app.post('/api/sources', (c) => run(c, 'add'));
  }

  app.post('/api/sources/:id/sync', async (c) => {
    if (!(await deps.syncNow(c.req.param('id')))) return apiError(c, 404, 'NOT_FOUND', 'no such source');
    return c.json({ queued: true });
  });

  const local = deps.localDownloads;
  if (local) {
    app.get('/api/download/:token', async (c) => {
      const grant = local.verify(c.req.param('token'));
      if (!grant) return apiError(c, 404, 'NOT_FOUND', 'this download link is not valid or has expired');
      const entry = await deps.inbox.get(grant.id);
      if (!entry) return noMessage(c);
      const headers = downloadHeaders(grant.filename);
      if (grant.n === undefined) {
        const body = await deps.store.get(entry.record.object.key);
        const stream = new ReadableStream<Uint8Array>({
          async start(controller) {
            try {
              for await (const chunk of body) controller.enqueue(new Uint8Array(chunk));
              controller.close();
            } catch (err) {
              controller.error(err);
            }
          },
        });
        return new Response(stream, {
          headers: { ...headers, 'Content-Length': String(entry.record.object.size) },
        });
      }
      const bytes = attachmentBytes(await readMessage(deps.store, entry), grant.n);
      if (!bytes) return apiError(c, 404, 'NOT_FOUND', 'no such attachment');
      return new Response(new Uint8Array(bytes), {
        headers: { ...headers, 'Content-Length': String(bytes.length) },
      });
    });
  }

  app.notFound((c) =>
    c.json({ error: { code: 'NOT_FOUND', message: `no route ${c.req.method} ${c.req.path}` } }, 404),
  );
  app.onError((err, c) => {
    if (err instanceof TributaryError && err.code === 'CONFIG_INVALID') {
      return c.json({ error: { code: 'BAD_REQUEST', message: err.message } }, 400);
    }
    const e = describeError(err);
    log.error('request failed', { method: c.req.method, path: c.req.path, code: e.code, error: e.message });
    // The details stay in the log: a caller learns only that it failed and whether to try again.
    return c.json({ error: { code: e.code, message: 'the request failed; try again later' } }, 500);
  });
  return app;
}
