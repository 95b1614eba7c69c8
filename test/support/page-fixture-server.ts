/**
 * A stand-in for the web app, for developing and testing the page without Dovecot or the store: serves
 * `buildPageAssets()` with `pageHeaders()` and answers the contract's routes (functions/web/contract.ts) from
 * fixture JSON held in memory. Auth is faked as `tributary serve` does it: `/start?token=` sets an HttpOnly,
 * SameSite=Strict cookie; every `/api/*` route answers 401 without it; POST/DELETE from another origin get 403.
 * Binds 127.0.0.1 only.
 *
 * `startServe` runs the real thing instead: `tributary serve` in this process, over a config file, the way the
 * browser tests use it once mail has been synced from the test Dovecot.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type {
  ApiError,
  DownloadLink,
  LocalSetup,
  MessagePage,
  MessageSummary,
  MessageView,
  NewSourceInput,
  PageConfig,
  SetupResult,
  SourceStatus,
  SyncProgressView,
} from '../../functions/web/contract';
import { describeIssues, parseNewSource, scrubResult } from '../../functions/web/setup';
import { buildPageAssets, pageHeaders, type PageAssets } from '../../functions/web/page-assets';
import { main, type Io } from '../../functions/cli/main';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ensureTable } from '../../functions/local/emulators';

export interface FixtureMessage {
  view: MessageView;
  /** Bytes of attachment n (by index), for downloads and cid: images. */
  parts?: Map<number, Buffer>;
  raw?: Buffer;
}

export interface FixtureData {
  messages: FixtureMessage[];
  sources: SourceStatus[];
}

export interface FixtureOptions {
  /**
   * `cookie` (default): as `tributary serve`. `cognito`: as the API Lambda behind the JWT authorizer, `/api/*`
   * needs `Authorization: Bearer <one of accessTokens>`; `/config.json` names `domain` (the test answers for it).
   */
  auth?:
    { mode: 'cookie' } | { mode: 'cognito'; domain: string; clientId: string; accessTokens: Set<string> };
  /** A search examines at most this many messages per request, then answers short with a cursor (as the API). */
  searchExamines?: number;
  /**
   * As `tributary serve` with a LocalSetup: `/config.json` says `setup: true` and `POST /api/setup/test` and
   * `POST /api/sources` check the body as the app does (functions/web/setup.ts), then ask this.
   */
  setup?: LocalSetup;
  /** Syncs running now, put on their sources in `GET /api/sources` as the app does. */
  progress?: () => SyncProgressView[];
}

export interface PageFixtureServer {
  origin: string;
  /** Opening it sets the session cookie and redirects to the page. */
  startUrl: string;
  /** Every request the server saw: `METHOD path`. */
  log: string[];
  /** The bodies of the POSTs with one, as received. */
  bodies: string[];
  data: FixtureData;
  close(): Promise<void>;
}

const COOKIE = 'tributary_session';
let cachedAssets: Promise<PageAssets> | undefined;

function summaryOf(v: MessageView): MessageSummary {
  const { id, date, from, subject, snippet, unread, hasAttachments, size, sources } = v;
  return { id, date, from, subject, snippet, unread, hasAttachments, size, sources };
}

export async function startPageFixtureServer(
  data: FixtureData,
  options: FixtureOptions = {},
): Promise<PageFixtureServer> {
  const auth = options.auth ?? { mode: 'cookie' };
  cachedAssets ??= buildPageAssets();
  const assets = await cachedAssets;
  const token = randomBytes(18).toString('base64url');
  const session = randomBytes(18).toString('base64url');
  const downloads = new Map<string, { body: Buffer; filename: string }>();
  const log: string[] = [];
  const bodies: string[] = [];
  let origin = '';

  const send = (
    res: http.ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Cache-Control': 'no-store',
      ...headers,
    });
    res.end(JSON.stringify(body));
  };
  const error = (res: http.ServerResponse, status: number, code: string, message: string) =>
    send(res, status, { error: { code, message } } satisfies ApiError);
  const find = (id: string) => data.messages.find((m) => m.view.id === id);
  const link = (body: Buffer, filename: string): DownloadLink => {
    const key = randomBytes(12).toString('base64url');
    downloads.set(key, { body, filename });
    return {
      url: `${origin}/download/${key}`,
      expiresAt: new Date(Date.now() + 300_000).toISOString(),
      filename,
    };
  };

  const server = http.createServer((req, res) => {
    if (req.method === 'POST' && (req.headers['content-length'] || req.headers['transfer-encoding'])) {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        bodies.push(body);
        handle(req, res, body);
      });
      return;
    }
    handle(req, res, '');
  });
  const handle = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => {
    const url = new URL(req.url ?? '/', origin);
    const method = req.method ?? 'GET';
    log.push(`${method} ${url.pathname}`);
    const path = url.pathname;

    if (method === 'GET' && path === '/start') {
      if (url.searchParams.get('token') !== token) return error(res, 401, 'UNAUTHENTICATED', 'wrong token');
      res.writeHead(302, {
        'Set-Cookie': `${COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/`,
        Location: '/',
        'Cache-Control': 'no-store',
      });
      return res.end();
    }
    if (method === 'GET' && path === '/config.json') {
      const config: PageConfig =
        auth.mode === 'cookie'
          ? { auth: 'cookie', ...(options.setup ? { setup: true } : {}) }
          : {
              auth: 'cognito',
              domain: auth.domain,
              clientId: auth.clientId,
              redirectUri: `${origin}/`,
              scopes: ['openid', 'email'],
            };
      return send(res, 200, config);
    }
    const asset = method === 'GET' ? assets.get(path) : undefined;
    if (asset) {
      res.writeHead(200, { ...pageHeaders(), 'Content-Type': asset.contentType });
      return res.end(asset.body);
    }
    if (method === 'GET' && path.startsWith('/download/')) {
      const d = downloads.get(path.slice('/download/'.length));
      if (!d) return error(res, 404, 'NOT_FOUND', 'no such download');
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Disposition': `attachment; filename="${d.filename.replace(/[^\w.-]/g, '_')}"`,
        'X-Content-Type-Options': 'nosniff',
      });
      return res.end(d.body);
    }
    if (!path.startsWith('/api/')) return error(res, 404, 'NOT_FOUND', 'no such page');

    const cookies = Object.fromEntries(
      (req.headers.cookie ?? '')
        .split(/;\s*/)
        .map((c) => [c.slice(0, c.indexOf('=')), c.slice(c.indexOf('=') + 1)]),
    );
    if (auth.mode === 'cookie' && cookies[COOKIE] !== session)
      return error(res, 401, 'UNAUTHENTICATED', 'Open the start URL again.');
    if (auth.mode === 'cognito') {
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!bearer || !auth.accessTokens.has(bearer))
        return error(res, 401, 'UNAUTHENTICATED', 'Sign in again.');
    }
    if (method !== 'GET' && req.headers.origin !== origin)
      return error(res, 403, 'CROSS_SITE', 'cross-site request refused');

    const parts = path.split('/').slice(2).map(decodeURIComponent); // after /api/
    if (method === 'GET' && path === '/api/messages') {
      const source = url.searchParams.get('source');
      const unread = url.searchParams.get('unread') === '1';
      const q = (url.searchParams.get('q') ?? '').toLowerCase();
      const limit = Math.min(100, Math.max(1, Number(url.searchParams.get('limit') ?? 50) || 50));
      const offset = Number(url.searchParams.get('cursor') ?? 0) || 0;
      const all = data.messages
        .map((m) => m.view)
        .filter((v) => !source || v.sources.includes(source))
        .filter((v) => !unread || v.unread)
        .filter(
          (v) =>
            !q ||
            `${v.from?.name ?? ''} ${v.from?.address ?? ''} ${v.subject ?? ''}`.toLowerCase().includes(q),
        )
        .sort((a, b) => b.date.localeCompare(a.date) || a.id.localeCompare(b.id));
      if (q && options.searchExamines) {
        // Examine a bounded window of the unfiltered list: a short (even empty) page with a cursor.
        const everything = data.messages.map((m) => m.view).sort((a, b) => b.date.localeCompare(a.date));
        const window = everything.slice(offset, offset + options.searchExamines);
        const matches = window.filter((v) => all.includes(v)).slice(0, limit);
        const next = offset + options.searchExamines;
        return send(res, 200, {
          messages: matches.map(summaryOf),
          cursor: next < everything.length ? String(next) : null,
        } satisfies MessagePage);
      }
      const page = all.slice(offset, offset + limit);
      const body: MessagePage = {
        messages: page.map(summaryOf),
        cursor: offset + limit < all.length ? String(offset + limit) : null,
      };
      return send(res, 200, body);
    }
    if (method === 'GET' && path === '/api/sources') {
      const running = new Map((options.progress?.() ?? []).map((p) => [p.sourceId, p]));
      const sources = data.sources.map((s) => {
        const p = running.get(s.id);
        return p ? { ...s, progress: p } : s;
      });
      return send(res, 200, { sources });
    }
    if (options.setup && method === 'POST' && (path === '/api/setup/test' || path === '/api/sources')) {
      if (!/^application\/json\b/i.test(req.headers['content-type'] ?? ''))
        return error(res, 415, 'UNSUPPORTED_MEDIA_TYPE', 'send the source as JSON');
      let raw: unknown;
      try {
        raw = JSON.parse(body);
      } catch {
        return error(res, 400, 'BAD_REQUEST', 'the body is not valid JSON');
      }
      const parsed = parseNewSource(raw);
      if (!parsed.ok) {
        const message = describeIssues(parsed.issues);
        return send(res, 400, {
          error: { code: 'BAD_REQUEST', message, field: parsed.issues[0]!.field, issues: parsed.issues },
        } satisfies ApiError);
      }
      const setup = options.setup;
      const input = parsed.input;
      void (path === '/api/setup/test' ? setup.test(input) : setup.add(input)).then(
        (result) => send(res, 200, scrubResult(result, input.password)),
        (err: Error) =>
          send(res, 200, scrubResult({ ok: false, code: 'INTERNAL', message: err.message }, input.password)),
      );
      return;
    }
    if (method === 'POST' && parts[0] === 'sources' && parts[2] === 'sync' && parts.length === 3) {
      if (!data.sources.some((s) => s.id === parts[1])) return error(res, 404, 'NOT_FOUND', 'no such source');
      return send(res, 200, { queued: true });
    }
    if (parts[0] === 'messages' && parts[1] !== undefined) {
      const m = find(parts[1]);
      if (!m) return error(res, 404, 'NOT_FOUND', 'no such message');
      if (method === 'GET' && parts.length === 2) return send(res, 200, m.view);
      if (method === 'DELETE' && parts.length === 2) {
        data.messages = data.messages.filter((x) => x !== m);
        return send(res, 200, { deleted: true });
      }
      if (method === 'POST' && parts.length === 3 && (parts[2] === 'read' || parts[2] === 'unread')) {
        m.view.unread = parts[2] === 'unread';
        return send(res, 200, { unread: m.view.unread });
      }
      if (method === 'GET' && parts.length === 3 && parts[2] === 'raw')
        return send(res, 200, link(m.raw ?? Buffer.from('From: x\r\n\r\n'), `${m.view.id}.eml`));
      if (method === 'GET' && parts.length === 4 && parts[2] === 'attachments') {
        const n = Number(parts[3]);
        const a = m.view.attachments.find((x) => x.n === n);
        const bytes = m.parts?.get(n);
        if (!a || !bytes) return error(res, 404, 'NOT_FOUND', 'no such attachment');
        return send(res, 200, link(bytes, a.filename ?? `attachment-${n}`));
      }
      if (method === 'GET' && parts.length === 4 && parts[2] === 'inline') {
        const cid = (parts[3] ?? '').toLowerCase();
        const a = m.view.attachments.find((x) => x.contentId?.toLowerCase() === cid);
        const bytes = a ? m.parts?.get(a.n) : undefined;
        if (!a || !bytes || !/^image\/(png|gif|jpeg|webp)$/.test(a.contentType))
          return error(res, 404, 'NOT_FOUND', 'no such inline image');
        res.writeHead(200, {
          'Content-Type': a.contentType,
          'X-Content-Type-Options': 'nosniff',
          'Cache-Control': 'private, max-age=300',
        });
        return res.end(bytes);
      }
    }
    return error(res, 404, 'NOT_FOUND', 'no such route');
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    startUrl: `${origin}/start?token=${token}`,
    log,
    bodies,
    data,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A small inbox for trying the page: two sources (one failing), an HTML message, a plain one, an attachment. */
export function sampleFixture(now = Date.now()): FixtureData {
  const at = (minutesAgo: number) => new Date(now - minutesAgo * 60_000).toISOString();
  const base = (id: string, minutesAgo: number, over: Partial<MessageView>): MessageView => ({
    id,
    date: at(minutesAgo),
    from: { name: 'Ada Lovelace', address: 'ada@example.org' },
    subject: `Message ${id}`,
    snippet: 'Hello there',
    unread: false,
    hasAttachments: false,
    size: 1234,
    sources: ['work-imap'],
    messageId: `<${id}@example.org>`,
    to: [{ address: 'me@example.org' }],
    cc: [],
    replyTo: [],
    via: [{ sourceId: 'work-imap', identity: `imap#INBOX#1#${id}` }],
    text: null,
    html: null,
    attachments: [],
    parse: 'full',
    ...over,
  });
  const pdf = Buffer.from('%PDF-1.4 fixture attachment bytes\n');
  const png = Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
    'base64',
  );
  const messages: FixtureMessage[] = [
    {
      view: base('m-html', 5, {
        subject: 'Quarterly report',
        snippet: 'The numbers are in, see the chart below',
        unread: true,
        hasAttachments: true,
        html:
          '<style>h1{color:#2f6fdd}</style><h1>Quarterly report</h1><p>The numbers are <b>in</b>.</p>' +
          '<p><img src="cid:chart@x" alt="chart" width="40" height="40"></p>' +
          '<p><a href="https://example.org/report">Full report</a></p>',
        text: 'The numbers are in.',
        attachments: [
          {
            n: 0,
            filename: 'chart.png',
            contentType: 'image/png',
            size: png.length,
            contentId: 'chart@x',
            inline: true,
          },
          {
            n: 1,
            filename: 'report.pdf',
            contentType: 'application/pdf',
            size: pdf.length,
            contentId: null,
            inline: false,
          },
        ],
      }),
      parts: new Map([
        [0, png],
        [1, pdf],
      ]),
    },
    {
      view: base('m-plain', 60, {
        from: { name: 'Grace Hopper', address: 'grace@example.net' },
        subject: 'Plain text with a link',
        snippet: 'See https://example.net/docs for details',
        unread: true,
        sources: ['home-pop'],
        text: 'Hi,\n\nSee https://example.net/docs for details.\n<script>alert(1)</script> stays text.\n',
      }),
    },
    ...Array.from({ length: 8 }, (_, i) => ({
      view: base(`m-${i}`, 120 + i * 600, {
        from: { name: `Sender ${i}`, address: `s${i}@example.com` },
        subject: `Newsletter ${i}`,
        snippet: `Issue ${i} of the newsletter`,
        sources: i % 2 ? ['home-pop'] : ['work-imap'],
        text: `Newsletter ${i}`,
      }),
    })),
  ];
  const source = (id: string, over: Partial<SourceStatus>): SourceStatus => ({
    id,
    protocol: 'imap',
    host: '127.0.0.1',
    port: 993,
    user: 'me',
    folders: ['INBOX'],
    enabled: true,
    pollMinutes: 5,
    lastRun: { at: at(3), outcome: 'ok', fetched: 3 },
    error: null,
    consecutiveFailures: 0,
    stored: { messages: 5, bytes: 12345 },
    quota: { upstream: null, inbox: null },
    recentActions: [],
    schedule: null,
    ...over,
  });
  return {
    messages,
    sources: [
      source('work-imap', {
        quota: {
          upstream: { usedBytes: 800_000, limitBytes: 1_000_000, afterBytes: 600_000, usedPercent: 80 },
          inbox: {
            messages: 5,
            bytes: 12345,
            maxMessages: 100,
            maxBytes: null,
            messagesPercent: 5,
            bytesPercent: null,
            onExceed: 'evict-oldest',
          },
        },
        recentActions: [
          {
            at: at(30),
            action: 'evict',
            identity: 'imap#INBOX#1#7',
            reason: 'inbox over 100 messages',
            subject: 'Old news',
          },
        ],
      }),
      source('home-pop', {
        protocol: 'pop3',
        port: 995,
        lastRun: {
          at: at(2),
          outcome: 'failed',
          error: { code: 'AUTH_FAILED', message: 'The server refused the password.' },
        },
        error: {
          code: 'AUTH_FAILED',
          message: 'The server refused the password for me. Check the password.',
        },
        consecutiveFailures: 2,
      }),
    ],
  };
}

/** The one password `fakeSetup` accepts. */
export const FAKE_PASSWORD = 'open sesame 42';

/**
 * A LocalSetup that talks to no server: the password FAKE_PASSWORD logs in (and answers the lines `sources test`
 * prints), any other is refused as a server would; `add` puts a never-run source into `data.sources`.
 */
export function fakeSetup(
  data: FixtureData,
): LocalSetup & { calls: Array<{ what: string; input: NewSourceInput }> } {
  const calls: Array<{ what: string; input: NewSourceInput }> = [];
  const check = (input: NewSourceInput): SetupResult => {
    const id = input.id ?? `${input.user}-${input.host}`.toLowerCase().replace(/[^a-z0-9-]+/g, '-');
    const port = input.port ?? (input.protocol === 'imap' ? 993 : 995);
    if (input.password !== FAKE_PASSWORD)
      return {
        ok: false,
        code: 'AUTH_FAILED',
        message: `The server ${input.host} refused the login for ${input.user}: check the user name and password.`,
        field: 'password',
      };
    return {
      ok: true,
      sourceId: id,
      lines: [
        `${id}: ${input.protocol} ${input.host}:${port} (${input.tls})`,
        '  TLS: TLSv1.3 TLS_AES_256_GCM_SHA384, certificate CN=localhost issued by CN=Test CA, valid to Jan 1 2030',
        `  login: ok as ${input.user}`,
        '  capabilities: IDLE yes, UIDPLUS yes, CONDSTORE yes, QUOTA yes, MOVE yes, QRESYNC no',
        '  folders on the server: INBOX, Archive, Sent',
        '  INBOX: 42 messages (UIDVALIDITY 1, UIDNEXT 43)',
      ],
    };
  };
  return {
    calls,
    test(input) {
      calls.push({ what: 'test', input });
      return Promise.resolve(check(input));
    },
    add(input) {
      calls.push({ what: 'add', input });
      const result = check(input);
      if (!result.ok) return Promise.resolve(result);
      if (data.sources.some((s) => s.id === result.sourceId))
        return Promise.resolve({
          ok: false,
          code: 'SOURCE_EXISTS',
          message: `${result.sourceId} exists`,
          field: 'id',
        });
      data.sources.push({
        id: result.sourceId,
        protocol: input.protocol,
        host: input.host,
        port: input.port ?? (input.protocol === 'imap' ? 993 : 995),
        user: input.user,
        folders: input.folders ?? [],
        enabled: true,
        pollMinutes: input.pollMinutes ?? 5,
        lastRun: null,
        error: null,
        consecutiveFailures: 0,
        stored: { messages: 0, bytes: 0 },
        quota: { upstream: null, inbox: null },
        recentActions: [],
        schedule: null,
        retention: input.retention ?? { mode: 'keep' },
      });
      return Promise.resolve(result);
    },
  };
}

// ------------------------------------------------------------------------------------------- the real server

export interface ServeHandle {
  origin: string;
  /** The start URL `tributary serve` printed (it carries the token). */
  startUrl: string;
  output(): string;
  stop(): Promise<void>;
}

/** Runs `tributary serve --config <file> --port 0` in this process until `stop()`. */
export async function startServe(configFile: string, timeoutMs = 30_000): Promise<ServeHandle> {
  const abort = new AbortController();
  let out = '';
  const io: Io = { out: (t) => (out += t), err: (t) => (out += t), isTty: false };
  let exited: number | undefined;
  const done = main(['serve', '--config', configFile, '--port', '0'], io, abort.signal).then((code) => {
    exited = code;
    return code;
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = /(http:\/\/127\.0\.0\.1:\d+)\/\?token=[\w-]+/.exec(out);
    if (m) {
      return {
        origin: m[1]!,
        startUrl: m[0],
        output: () => out,
        stop: async () => {
          abort.abort('test done');
          await done;
        },
      };
    }
    if (exited !== undefined) throw new Error(`tributary serve exited with ${exited}: ${out}`);
    if (Date.now() > deadline) {
      abort.abort('timeout');
      throw new Error(`tributary serve printed no start URL in ${timeoutMs} ms: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A table of its own in the harness's DynamoDB Local, so the merged inbox holds only this test's mail. */
export async function freshTable(prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  const client = new DynamoDBClient({});
  try {
    await ensureTable(client, name);
  } finally {
    client.destroy();
  }
  return name;
}

/** Runs a `tributary` command in this process. */
export async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = { out: (t) => (out += t), err: (t) => (err += t), isTty: false };
  const code = await main(args, io);
  return { code, out, err };
}
