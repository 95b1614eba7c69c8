import { createHash, randomBytes } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { DynamoInbox, contentId } from '../../../functions/adapters/dynamodb/inbox';
import { keys } from '../../../functions/adapters/dynamodb/keys';
import type { Source } from '../../../functions/core/model';
import { makeWebApp, type WebAppDeps } from '../../../functions/web/app';
import { claimsAuthenticator, tokenAuthenticator, type Authenticator } from '../../../functions/web/auth';
import type {
  ApiError,
  DownloadLink,
  LocalSetup,
  MessagePage,
  MessageSummary,
  MessageView,
  NewSourceInput,
  SetupResult,
  SourceStatus,
  SyncProgressView,
} from '../../../functions/web/contract';
import { LocalDownloadLinks, S3DownloadLinks, attachmentKey } from '../../../functions/web/downloads';
import { ensureTable } from '../../../functions/local/emulators';
import { silentLogger } from '../../../functions/shared/runtime';
import { MailLab, type TestUser } from '../../support/mail-lab';
import type { TestTributary } from '../../support/tributary';
import { tributaryOn } from '../../support/handler-lambda';

/**
 * The web API (issue #15) against DynamoDB Local and s3rver, over mail that Dovecot serves and the real sync engine
 * fetched through two sources (IMAP and POP3), on a table of its own (the merged inbox is table-wide).
 */
const lab = MailLab.fromEnv();
let t: TestTributary;
let a: Source;
let b: Source;
let userA: TestUser;

const ORIGIN = 'http://127.0.0.1:8025';
const ISSUER = 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool';
const CLIENT = 'page-client-id';

// A 1x1 PNG, and an SVG that must never be served as an inline image.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
  'base64',
);
const SVG = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>');
const PDF = Buffer.from('%PDF-1.4\n% not really a pdf \u00e9\n', 'latin1');

function plain(from: string, subject: string, date: string, body: string, id: string): string {
  return `From: ${from}\r\nTo: me@example.com\r\nSubject: ${subject}\r\nDate: ${date}\r\nMessage-ID: <${id}@test>\r\n\r\n${body}\r\n`;
}

const b64 = (buf: Buffer) => buf.toString('base64').replace(/(.{76})/g, '$1\r\n');
const RICH = [
  'From: Dana Ruiz <dana@example.com>',
  'To: me@example.com',
  'Reply-To: Dana <reply@example.com>',
  'Subject: Photos and the contract',
  'Date: Sat, 03 Jan 2026 10:00:00 +0000',
  'Message-ID: <rich@test>',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="mixed"',
  '',
  '--mixed',
  'Content-Type: multipart/related; boundary="rel"',
  '',
  '--rel',
  'Content-Type: text/html; charset=utf-8',
  '',
  '<p>Look: <img src="cid:pic1@x"> and <img src="cid:vec@x"></p>',
  '--rel',
  'Content-Type: image/png',
  'Content-Transfer-Encoding: base64',
  'Content-ID: <pic1@x>',
  'Content-Disposition: inline; filename="pic.png"',
  '',
  b64(PNG),
  '--rel',
  'Content-Type: image/svg+xml',
  'Content-Transfer-Encoding: base64',
  'Content-ID: <vec@x>',
  'Content-Disposition: inline; filename="vec.svg"',
  '',
  b64(SVG),
  '--rel--',
  '--mixed',
  'Content-Type: application/pdf',
  'Content-Transfer-Encoding: base64',
  "Content-Disposition: attachment; filename*=UTF-8''contr%C3%A4t.pdf",
  '',
  b64(PDF),
  '--mixed--',
  '',
].join('\r\n');

const SHARED = plain(
  'Eva Novak <eva@example.com>',
  'To both of you',
  'Sun, 04 Jan 2026 10:00:00 +0000',
  'both',
  'shared',
);

// Newest first: b2 (06), a3 (05), shared (04), rich (03), b1 (02), a1 (01).
const SUBJECTS = [
  'Weekend plans',
  'Hello',
  'To both of you',
  'Photos and the contract',
  'Invoice 42',
  'Quarterly report',
];

let local: ReturnType<typeof tokenAuthenticator>;
let localDownloads: LocalDownloadLinks;
let syncRequests: string[];
let cookie: string;

function deps(auth: Authenticator, overrides: Partial<WebAppDeps> = {}): WebAppDeps {
  return {
    auth,
    inbox: new DynamoInbox(t.clients.documents, t.table),
    store: t.store,
    downloads: localDownloads,
    localDownloads,
    sources: { list: () => Promise.resolve([a, b].map((source) => ({ source }))) },
    status: t.index,
    syncNow: (id) => {
      if (id !== a.id && id !== b.id) return Promise.resolve(false);
      syncRequests.push(id);
      return Promise.resolve(true);
    },
    pageConfig: { auth: 'cookie' },
    logger: silentLogger,
    ...overrides,
  };
}

let app: ReturnType<typeof makeWebApp>;

function call(path: string, init: RequestInit & { cookie?: string | null } = {}) {
  const headers = new Headers(init.headers);
  const c = init.cookie === undefined ? cookie : init.cookie;
  if (c) headers.set('cookie', c);
  return app.request(`${ORIGIN}${path}`, { ...init, headers });
}

async function json<T>(res: Response | Promise<Response>): Promise<T> {
  const r = await res;
  expect(r.status).toBe(200);
  return (await r.json()) as T;
}

const list = (query = '') => json<MessagePage>(call(`/api/messages${query}`));
const subjects = (page: MessagePage) => page.messages.map((m) => m.subject);

async function all(query: string): Promise<MessageSummary[]> {
  const out: MessageSummary[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 50; i++) {
    const sep = query ? '&' : '?';
    const page: MessagePage = await list(
      `${query}${cursor ? `${sep}cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    out.push(...page.messages);
    cursor = page.cursor;
    if (!cursor) return out;
  }
  throw new Error('no end');
}

const idOf = async (subject: string) => (await all('')).find((m) => m.subject === subject)!.id;

beforeAll(async () => {
  const table = `tributary-web-${Math.random().toString(36).slice(2, 10)}`;
  const client = new DynamoDBClient({});
  await ensureTable(client, table);
  client.destroy();
  t = tributaryOn(lab, table);
  userA = lab.createUser('weba');
  const userB = lab.createUser('webb');
  lab.deliver(
    userA,
    plain('Ann Lee <ann@example.com>', 'Quarterly report', 'Thu, 01 Jan 2026 10:00:00 +0000', 'q', 'a1'),
  );
  lab.deliver(userA, RICH);
  lab.deliver(userA, SHARED);
  lab.deliver(userA, plain('Bob <BOB@Example.ORG>', 'Hello', 'Mon, 05 Jan 2026 10:00:00 +0000', 'hi', 'a3'));
  lab.deliver(
    userB,
    plain('Finance <billing@shop.example>', 'Invoice 42', 'Fri, 02 Jan 2026 10:00:00 +0000', 'pay', 'b1'),
  );
  lab.deliver(userB, SHARED);
  lab.deliver(
    userB,
    plain('Carol <carol@example.net>', 'Weekend plans', 'Tue, 06 Jan 2026 10:00:00 +0000', 'w', 'b2'),
  );
  a = t.source(userA, 'imap');
  b = t.source(userB, 'pop3');
  expect((await t.sync(a)).outcome).toBe('ok');
  expect((await t.sync(b)).outcome).toBe('ok');
  local = tokenAuthenticator();
  localDownloads = new LocalDownloadLinks();
  syncRequests = [];
  app = makeWebApp(deps(local));
  const start = await app.request(`${ORIGIN}/?token=${local.token}`);
  expect(start.status).toBe(303);
  expect(start.headers.get('location')).toBe('/');
  const set = start.headers.get('set-cookie')!;
  expect(set).toMatch(/HttpOnly/);
  expect(set).toMatch(/SameSite=Strict/);
  expect(set).toMatch(/Path=\//);
  cookie = set.split(';')[0]!;
}, 120_000);

afterAll(() => t?.close());

/** Every API route, with a method and a path that would succeed if authenticated. */
function routes(id: string, sourceId: string): Array<[string, string]> {
  return [
    ['GET', '/api/messages'],
    ['GET', `/api/messages/${id}`],
    ['GET', `/api/messages/${id}/raw`],
    ['GET', `/api/messages/${id}/attachments/0`],
    ['GET', `/api/messages/${id}/inline/pic1@x`],
    ['POST', `/api/messages/${id}/read`],
    ['POST', `/api/messages/${id}/unread`],
    ['DELETE', `/api/messages/${id}`],
    ['GET', '/api/sources'],
    ['POST', `/api/sources/${sourceId}/sync`],
  ];
}

describe('web API: authentication', () => {
  it('answers 401 on every route without the session cookie or with a wrong one (local)', async () => {
    const id = await idOf('Photos and the contract');
    for (const [method, path] of routes(id, a.id)) {
      for (const c of [null, 'tributary_session=forged', `${cookie}x`]) {
        const res = await call(path, { method, cookie: c });
        expect([method, path, c, res.status]).toEqual([method, path, c, 401]);
      }
    }
    // A wrong start token sets nothing.
    const wrong = await app.request(`${ORIGIN}/?token=${local.token}x`);
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
    // Nothing was changed or queued by the refused calls.
    expect(syncRequests).toEqual([]);
    expect((await all('')).length).toBe(6);
  });

  it('answers 401 on every route without claims, for another pool, another client or an expired token (AWS)', async () => {
    const aws = makeWebApp(deps(claimsAuthenticator({ issuer: ISSUER, clientId: CLIENT })));
    const id = await idOf('Photos and the contract');
    const now = Math.floor(Date.now() / 1000);
    const good = { sub: 'u-1', iss: ISSUER, client_id: CLIENT, exp: String(now + 600), token_use: 'access' };
    const bad: Array<Record<string, unknown> | undefined> = [
      undefined,
      {},
      { ...good, iss: 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other' },
      { ...good, client_id: 'another-client' },
      { ...good, exp: String(now - 5) },
    ];
    const send = (method: string, path: string, claims: Record<string, unknown> | undefined) =>
      aws.request(
        `${ORIGIN}${path}`,
        { method },
        claims ? { requestContext: { authorizer: { jwt: { claims } } } } : {},
      );
    for (const [method, path] of routes(id, a.id)) {
      for (const claims of bad) {
        const res = await send(method, path, claims);
        expect([method, path, claims, res.status]).toEqual([method, path, claims, 401]);
      }
    }
    const ok = await send('GET', '/api/messages?limit=1', good);
    expect(ok.status).toBe(200);
    // An id token names the client in `aud`.
    const { client_id: _c, ...idToken } = good;
    expect((await send('GET', '/api/messages?limit=1', { ...idToken, aud: CLIENT })).status).toBe(200);
    expect(syncRequests).toEqual([]);
  });

  it('serves /config.json without authentication', async () => {
    expect(await json(call('/config.json', { cookie: null }))).toEqual({ auth: 'cookie' });
  });
});

describe('web API: the merged inbox', () => {
  it('lists newest first across sources, one entry for the message both received, following cursors', async () => {
    const first = await list('?limit=4');
    expect(subjects(first)).toEqual(SUBJECTS.slice(0, 4));
    expect(first.cursor).not.toBeNull();
    const second = await list(`?limit=4&cursor=${first.cursor}`);
    expect(subjects(second)).toEqual(SUBJECTS.slice(4));
    expect(second.cursor).toBeNull();
    const paged = await all('?limit=1');
    expect(paged.map((m) => m.subject)).toEqual(SUBJECTS);
    const shared = paged.find((m) => m.subject === 'To both of you')!;
    expect(shared.sources.sort()).toEqual([a.id, b.id].sort());
    expect(paged.find((m) => m.subject === 'Hello')!.sources).toEqual([a.id]);
    expect(paged.every((m) => m.unread)).toBe(true);
    expect(paged.find((m) => m.subject === 'Photos and the contract')!.hasAttachments).toBe(true);
  });

  it('filters by source, with cursors', async () => {
    expect((await all(`?source=${a.id}&limit=1`)).map((m) => m.subject)).toEqual([
      'Hello',
      'To both of you',
      'Photos and the contract',
      'Quarterly report',
    ]);
    expect((await all(`?source=${b.id}&limit=2`)).map((m) => m.subject)).toEqual([
      'Weekend plans',
      'To both of you',
      'Invoice 42',
    ]);
    expect((await list('?source=nobody-here')).messages).toEqual([]);
  });

  it('matches q against the sender name and address and the subject, ignoring case', async () => {
    expect(subjects(await list('?q=ann%20LEE'))).toEqual(['Quarterly report']);
    expect(subjects(await list('?q=example.org'))).toEqual(['Hello']);
    expect(subjects(await list('?q=INVOICE'))).toEqual(['Invoice 42']);
    expect(subjects(await list(`?q=o&source=${b.id}`))).toEqual([
      'Weekend plans',
      'To both of you',
      'Invoice 42',
    ]);
    expect(subjects(await list('?q=nothing-like-this'))).toEqual([]);
  });

  it('rejects a bad limit or cursor with 400', async () => {
    expect((await call('/api/messages?limit=0')).status).toBe(400);
    expect((await call('/api/messages?limit=101')).status).toBe(400);
    expect((await call('/api/messages?cursor=not-a-cursor')).status).toBe(400);
  });

  it('marks read and unread, and filters unread (also within a source)', async () => {
    const id = await idOf('Hello');
    expect(await json(call(`/api/messages/${id}/read`, { method: 'POST' }))).toEqual({ unread: false });
    expect((await all('')).find((m) => m.id === id)!.unread).toBe(false);
    expect((await all('?unread=1&limit=2')).map((m) => m.subject)).toEqual(
      SUBJECTS.filter((s) => s !== 'Hello'),
    );
    expect((await all(`?unread=1&source=${a.id}`)).map((m) => m.subject)).toEqual([
      'To both of you',
      'Photos and the contract',
      'Quarterly report',
    ]);
    expect((await json<MessageView>(call(`/api/messages/${id}`))).unread).toBe(false);
    expect(await json(call(`/api/messages/${id}/unread`, { method: 'POST' }))).toEqual({ unread: true });
    expect((await all('?unread=1')).map((m) => m.subject)).toEqual(SUBJECTS);
  });
});

describe('web API: ids', () => {
  it('answers 404 for an id from nowhere or forged, on every message route, even one aimed at a lease or a checkpoint', async () => {
    const real = await idOf('Hello');
    const b64 = (s: string) => Buffer.from(s).toString('base64url');
    const forged = [
      'nothing',
      `c${'0'.repeat(64)}`,
      `c${createHash('sha256').update('x').digest('hex')}`,
      `${real}0`,
      real.toUpperCase(),
      `l${b64(`${a.id}\0LEASE`)}`,
      `l${b64(`${a.id}\0../LEASE`)}`,
      `l${b64(`${a.id}\0imap#INBOX`)}`,
      `l${b64(`${a.id}\0${'STATE#imap#INBOX'}`)}`,
      `l${b64('SRC#x\0LEASE')}`,
      // A real message item of the source (registered: it is listed through its merged entry, not by itself).
      `l${b64(`${a.id}\0${(await t.stored(a.id))[0]!.identity}`)}`,
      encodeURIComponent(`CONTENT#${'a'.repeat(64)}`),
    ];
    for (const id of forged) {
      for (const [method, path] of routes(id, a.id).filter(([, p]) => p.includes('/messages/'))) {
        const res = await call(path, { method });
        expect([id, method, path, res.status]).toEqual([id, method, path, 404]);
      }
    }
    // The lease and checkpoint items were not touched by any of it.
    const items = await t.clients.documents.send(
      new QueryCommand({
        TableName: t.table,
        KeyConditionExpression: 'PK = :pk',
        ExpressionAttributeValues: { ':pk': keys.sourcePk(a.id) },
      }),
    );
    for (const item of items.Items ?? []) {
      expect(item.removedAt).toBeUndefined();
      expect(item.unread).toBeUndefined();
      expect(item.readAt).toBeUndefined();
    }
  });
});

describe('web API: reading a message', () => {
  it('shows headers, text, the unsanitized HTML, attachments and the sources', async () => {
    const id = await idOf('Photos and the contract');
    const view = await json<MessageView>(call(`/api/messages/${id}`));
    expect(view).toMatchObject({
      id,
      subject: 'Photos and the contract',
      from: { name: 'Dana Ruiz', address: 'dana@example.com' },
      to: [{ address: 'me@example.com' }],
      replyTo: [{ name: 'Dana', address: 'reply@example.com' }],
      messageId: '<rich@test>',
      parse: 'full',
      via: [{ sourceId: a.id }],
    });
    expect(view.html).toContain('<img src="cid:pic1@x">');
    expect(view.attachments).toEqual([
      {
        n: 0,
        filename: 'pic.png',
        contentType: 'image/png',
        size: PNG.length,
        contentId: 'pic1@x',
        inline: true,
      },
      {
        n: 1,
        filename: 'vec.svg',
        contentType: 'image/svg+xml',
        size: SVG.length,
        contentId: 'vec@x',
        inline: true,
      },
      {
        n: 2,
        filename: 'conträt.pdf',
        contentType: 'application/pdf',
        size: PDF.length,
        contentId: null,
        inline: false,
      },
    ]);
    const shared = await json<MessageView>(call(`/api/messages/${await idOf('To both of you')}`));
    expect(shared.text).toContain('both');
    expect(shared.via.map((v) => v.sourceId).sort()).toEqual([a.id, b.id].sort());
  });

  it('serves a cid: image only when it is a raster image', async () => {
    const id = await idOf('Photos and the contract');
    const png = await call(`/api/messages/${id}/inline/pic1@x`);
    expect(png.status).toBe(200);
    expect(png.headers.get('content-type')).toBe('image/png');
    expect(png.headers.get('x-content-type-options')).toBe('nosniff');
    expect(Buffer.from(await png.arrayBuffer())).toEqual(PNG);
    expect((await call(`/api/messages/${id}/inline/vec@x`)).status).toBe(404);
    expect((await call(`/api/messages/${id}/inline/nope@x`)).status).toBe(404);
  });

  it('downloads the raw message byte for byte as an attachment, through a signed same-origin link', async () => {
    const id = await idOf('Photos and the contract');
    const link = await json<DownloadLink>(call(`/api/messages/${id}/raw`));
    expect(link.url).toMatch(/^\/api\/download\//);
    expect(Date.parse(link.expiresAt)).toBeGreaterThan(Date.now());
    const res = await call(link.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-disposition')).toMatch(
      /^attachment; filename="Photos and the contract.eml"; filename\*=UTF-8''Photos%20and%20the%20contract.eml$/,
    );
    const stored = (await t.stored(a.id)).find((m) => m.metadata.subject === 'Photos and the contract')!;
    expect(Buffer.from(await res.arrayBuffer())).toEqual(await t.bytes(stored.object.key));
    // The link needs the session too, and a tampered one is refused.
    expect((await call(link.url, { cookie: null })).status).toBe(401);
    const tampered = link.url.replace(/\.([^.]*)$/, (_, mac: string) => `.${mac.slice(0, -2)}AA`);
    expect((await call(tampered)).status).toBe(404);
  });

  it('downloads an attachment by index with the attachment headers and its exact bytes', async () => {
    const id = await idOf('Photos and the contract');
    const link = await json<DownloadLink>(call(`/api/messages/${id}/attachments/2`));
    expect(link.filename).toBe('conträt.pdf');
    const res = await call(link.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-disposition')).toBe(
      `attachment; filename="contr_t.pdf"; filename*=UTF-8''contr%C3%A4t.pdf`,
    );
    expect(Buffer.from(await res.arrayBuffer())).toEqual(PDF);
    expect((await call(`/api/messages/${id}/attachments/3`)).status).toBe(404);
    expect((await call(`/api/messages/${id}/attachments/-1`)).status).toBe(404);
  });

  it('gives presigned S3 URLs in AWS mode that fetch the exact bytes with the attachment headers', async () => {
    const presigning = new S3DownloadLinks(t.clients.s3, t.bucket, t.store);
    const aws = makeWebApp(deps(local, { downloads: presigning, localDownloads: undefined }));
    const id = await idOf('Photos and the contract');
    const ask = (path: string) => aws.request(`${ORIGIN}${path}`, { headers: { cookie } });
    const raw = (await (await ask(`/api/messages/${id}/raw`)).json()) as DownloadLink;
    expect(raw.url).toMatch(/X-Amz-Signature=/);
    expect(raw.url).toMatch(/X-Amz-Expires=300/);
    const res = await fetch(raw.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    expect(res.headers.get('content-disposition')).toMatch(
      /^attachment; filename="Photos and the contract.eml"/,
    );
    const stored = (await t.stored(a.id)).find((m) => m.metadata.subject === 'Photos and the contract')!;
    expect(Buffer.from(await res.arrayBuffer())).toEqual(await t.bytes(stored.object.key));
    // The headers come from the URL's query, which SigV4 signs whole (s3rver does not check V4 signatures, so
    // that part is S3's: here the parameters are checked to be in the signed URL).
    const query = new URL(raw.url).searchParams;
    expect(query.get('response-content-type')).toBe('application/octet-stream');
    expect(query.get('response-content-disposition')).toMatch(/^attachment; /);
    expect(query.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');

    const att = (await (await ask(`/api/messages/${id}/attachments/2`)).json()) as DownloadLink;
    expect(att.url).toContain(encodeURI(attachmentKey(stored.object.sha256, 2)));
    const got = await fetch(att.url);
    expect(got.status).toBe(200);
    expect(got.headers.get('content-disposition')).toBe(
      `attachment; filename="contr_t.pdf"; filename*=UTF-8''contr%C3%A4t.pdf`,
    );
    expect(Buffer.from(await got.arrayBuffer())).toEqual(PDF);
    expect(await t.bytes(attachmentKey(stored.object.sha256, 2))).toEqual(PDF);
    // There is no local download route in AWS mode.
    expect((await ask('/api/download/x.y')).status).toBe(404);
  });
});

describe('web API: state changes', () => {
  it('refuses cross-site POST and DELETE with 403, and accepts the page own origin', async () => {
    const id = await idOf('Invoice 42');
    const attempts: Array<Record<string, string>> = [
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'https://evil.example' },
      { origin: 'http://127.0.0.1:9999' },
      { origin: 'null' },
    ];
    for (const headers of attempts) {
      for (const [method, path] of [
        ['POST', `/api/messages/${id}/read`],
        ['DELETE', `/api/messages/${id}`],
        ['POST', `/api/sources/${a.id}/sync`],
      ] as const) {
        const res = await call(path, { method, headers });
        expect([headers, method, res.status]).toEqual([headers, method, 403]);
      }
    }
    expect((await all('')).find((m) => m.id === id)!.unread).toBe(true);
    expect(syncRequests).toEqual([]);
    const same = { origin: ORIGIN, 'sec-fetch-site': 'same-origin' };
    expect(await json(call(`/api/sources/${a.id}/sync`, { method: 'POST', headers: same }))).toEqual({
      queued: true,
    });
    expect(syncRequests).toEqual([a.id]);
    expect((await call('/api/sources/nobody/sync', { method: 'POST', headers: same })).status).toBe(404);
    syncRequests.length = 0;
  });

  it('deletes from the inbox only: gone from every view, not brought back by a sync, upstream untouched, audited', async () => {
    const id = await idOf('Quarterly report');
    const usageBefore = await t.index.inboxUsage(a.id);
    expect(await json(call(`/api/messages/${id}`, { method: 'DELETE' }))).toEqual({ deleted: true });
    const gone = () => expect(SUBJECTS.filter((s) => s !== 'Quarterly report'));
    gone().toEqual((await all('')).map((m) => m.subject));
    expect((await all(`?source=${a.id}`)).map((m) => m.subject)).not.toContain('Quarterly report');
    expect((await all('?unread=1')).map((m) => m.subject)).not.toContain('Quarterly report');
    expect((await call(`/api/messages/${id}`)).status).toBe(404);
    expect((await call(`/api/messages/${id}`, { method: 'DELETE' })).status).toBe(404);
    expect((await call(`/api/messages/${id}/read`, { method: 'POST' })).status).toBe(404);

    const again = await t.sync(a);
    expect(again).toMatchObject({ outcome: 'ok', fetched: 0, deletedUpstream: 0 });
    gone().toEqual((await all('')).map((m) => m.subject));
    // Upstream still holds all four; the stored copy and the counters are unchanged.
    const client = await lab.imap(userA);
    try {
      const status = await client.status('INBOX', { messages: true });
      expect(status && status.messages).toBe(4);
    } finally {
      await client.logout();
    }
    expect(await t.index.inboxUsage(a.id)).toEqual(usageBefore);
    const stored = (await t.stored(a.id)).find((m) => m.metadata.subject === 'Quarterly report')!;
    expect((await t.bytes(stored.object.key)).length).toBe(stored.object.size);
    // Who and when.
    const audit = await t.clients.documents.send(
      new QueryCommand({
        TableName: t.table,
        KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
        ExpressionAttributeValues: { ':pk': keys.registryPk(stored.object.sha256), ':p': 'REMOVED#' },
      }),
    );
    expect(audit.Items).toHaveLength(1);
    expect(audit.Items![0]).toMatchObject({
      id,
      by: 'local',
      subject: 'Quarterly report',
      via: [{ sourceId: a.id }],
    });
    expect(id).toBe(contentId(stored.object.sha256));
    // Out of the unread partition itself, not only filtered out of the answers.
    const unread = await t.clients.documents.send(
      new QueryCommand({
        TableName: t.table,
        IndexName: 'GSI2',
        KeyConditionExpression: 'GSI2PK = :u',
        ExpressionAttributeValues: { ':u': keys.unreadPk },
      }),
    );
    expect(unread.Items!.map((i) => String(i.sha256))).not.toContain(stored.object.sha256);
    expect(unread.Items).toHaveLength(5);
  });

  it('lists each source with its status and recent actions', async () => {
    const { sources } = await json<{ sources: SourceStatus[] }>(call('/api/sources'));
    expect(sources.map((s) => s.id)).toEqual([a.id, b.id].sort());
    const sa = sources.find((s) => s.id === a.id)!;
    expect(sa).toMatchObject({
      protocol: 'imap',
      stored: { messages: 4 },
      error: null,
      recentActions: [],
      schedule: null,
    });
    expect(sa.lastRun).toMatchObject({ outcome: 'ok' });
  });
});

describe('web API: adding a source and sync progress (one machine)', () => {
  const PASSWORD = 'S3cret "pass" \\ wörd';
  const good: NewSourceInput = {
    protocol: 'imap',
    host: 'imap.example.com',
    tls: 'implicit',
    user: 'ann',
    password: PASSWORD,
  };
  const same = { origin: ORIGIN, 'sec-fetch-site': 'same-origin', 'content-type': 'application/json' };

  /** A LocalSetup that records its calls and answers `answer` (or throws it). */
  function fakeSetup(answer: (input: NewSourceInput) => SetupResult | Error) {
    const calls: Array<{ what: string; input: NewSourceInput }> = [];
    const reply = (what: string, input: NewSourceInput) => {
      calls.push({ what, input });
      const a = answer(input);
      return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
    };
    const setup: LocalSetup = { test: (i) => reply('test', i), add: (i) => reply('add', i) };
    return { setup, calls };
  }

  /** Everything the app logged, as text. */
  function capture() {
    const lines: string[] = [];
    const at = (level: string) => (message: string, fields?: Record<string, unknown>) =>
      lines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
    return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
  }

  const ok = (input: NewSourceInput): SetupResult => ({
    ok: true,
    sourceId: input.id ?? 'ann-imap',
    lines: [`ann-imap: imap ${input.host}:993 (implicit)`, '  login: ok as ann', '  INBOX: 3 messages'],
  });

  function post(target: ReturnType<typeof makeWebApp>, path: string, body: unknown, headers = same) {
    return target.request(`${ORIGIN}${path}`, {
      method: 'POST',
      headers: { ...headers, cookie },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  }

  it('answers 404 on the setup routes without a setup capability, and /config.json says so', async () => {
    for (const path of ['/api/setup/test', '/api/sources']) {
      const res = await post(app, path, good);
      expect([path, res.status]).toEqual([path, 404]);
      expect(await res.text()).not.toContain(PASSWORD);
    }
    expect(await json(call('/config.json', { cookie: null }))).toEqual({ auth: 'cookie' });
    const { setup } = fakeSetup(ok);
    const local2 = makeWebApp(deps(local, { setup }));
    const config = await local2.request(`${ORIGIN}/config.json`);
    expect(await config.json()).toEqual({ auth: 'cookie', setup: true });
    // Never in AWS, whatever is injected: the page signs in with Cognito there.
    const aws = makeWebApp(
      deps(claimsAuthenticator({ issuer: ISSUER, clientId: CLIENT }), {
        setup,
        pageConfig: {
          auth: 'cognito',
          domain: 'https://d',
          clientId: CLIENT,
          redirectUri: 'https://p/',
          scopes: [],
        },
      }),
    );
    expect(await (await aws.request(`${ORIGIN}/config.json`)).json()).not.toHaveProperty('setup');
  });

  it('tests and adds a source through the injected setup, and answers its lines', async () => {
    const { setup, calls } = fakeSetup(ok);
    const target = makeWebApp(deps(local, { setup }));
    const tested = await post(target, '/api/setup/test', { ...good, host: '  imap.example.com ' });
    expect(tested.status).toBe(200);
    expect(await tested.json()).toEqual(ok(good));
    const added = await post(target, '/api/sources', {
      ...good,
      id: 'work-mail',
      port: 1993,
      folders: ['INBOX', 'Archive'],
      retention: { mode: 'delete-after-days', days: 30 },
      pollMinutes: 10,
    });
    expect(await added.json()).toMatchObject({ ok: true, sourceId: 'work-mail' });
    expect(calls).toEqual([
      { what: 'test', input: good },
      {
        what: 'add',
        input: {
          ...good,
          id: 'work-mail',
          port: 1993,
          folders: ['INBOX', 'Archive'],
          retention: { mode: 'delete-after-days', days: 30 },
          pollMinutes: 10,
        },
      },
    ]);
    // A refused login is an answer, not a failure of the request.
    const refused = makeWebApp(
      deps(local, {
        setup: fakeSetup(() => ({
          ok: false,
          code: 'AUTH_FAILED',
          message: 'login refused',
          field: 'password',
        })).setup,
      }),
    );
    const no = await post(refused, '/api/setup/test', good);
    expect(no.status).toBe(200);
    expect(await no.json()).toEqual({
      ok: false,
      code: 'AUTH_FAILED',
      message: 'login refused',
      field: 'password',
    });
  });

  it('refuses a bad body with 400 naming each field at fault, and never calls the setup', async () => {
    const { setup, calls } = fakeSetup(ok);
    const target = makeWebApp(deps(local, { setup }));
    const { protocol: _p, ...noProtocol } = good;
    const { host: _h, ...noHost } = good;
    const { password: _w, ...noPassword } = good;
    const cases: Array<[unknown, string, RegExp]> = [
      [noHost, 'host', /is required: the server name/],
      [{ ...good, host: '' }, 'host', /is required/],
      [{ ...good, host: 'imaps://imap.example.com:993' }, 'host', /host name or an IP address alone/],
      [noProtocol, 'protocol', /must be "imap" or "pop3"/],
      [{ ...good, protocol: 'smtp' }, 'protocol', /must be "imap" or "pop3"/],
      [{ ...good, port: 70000 }, 'port', /from 1 to 65535/],
      [{ ...good, port: '993' }, 'port', /whole number/],
      [{ ...good, tls: 'ssl' }, 'tls', /"implicit", "starttls" or "none"/],
      [{ ...good, tls: 'none' }, 'tls', /only allowed for 127\.0\.0\.1 or localhost/],
      [{ ...good, user: '' }, 'user', /is required: the login name/],
      [noPassword, 'password', /is required: the password/],
      [{ ...good, password: 'a\r\nb' }, 'password', /on one line/],
      [{ ...good, folders: [] }, 'folders', /at least one folder/],
      [{ ...good, protocol: 'pop3', folders: ['INBOX'] }, 'folders', /POP3 has no folders/],
      [{ ...good, retention: { mode: 'delete-after-days', days: 0 } }, 'retention.days', /at least 1 day/],
      [{ ...good, retention: { mode: 'forever' } }, 'retention', /"keep"/],
      [{ ...good, pollMinutes: 0 }, 'pollMinutes', /from 1 to 1440/],
      [{ ...good, id: 'Work Mail' }, 'id', /must be a slug/],
      [{ ...good, secret: { env: 'X' } }, 'secret', /is not a field of a source/],
      [[good], 'body', /must be a JSON object/],
    ];
    for (const [body, field, message] of cases) {
      const res = await post(target, '/api/setup/test', body);
      const text = await res.text();
      expect([field, res.status]).toEqual([field, 400]);
      expect(text).not.toContain(PASSWORD);
      const { error } = JSON.parse(text) as ApiError;
      expect([field, error.code, error.field]).toEqual([field, 'BAD_REQUEST', field]);
      expect(error.issues?.find((i) => i.field === field)?.message).toMatch(message);
      expect(error.message).toContain(field);
    }
    // Several problems at once: each one, in order.
    const many = await post(target, '/api/sources', { ...good, host: '', port: 0, user: '' });
    expect(((await many.json()) as ApiError).error.issues?.map((i) => i.field)).toEqual([
      'host',
      'port',
      'user',
    ]);
    // Not JSON, or not said to be JSON.
    const broken = await post(target, '/api/sources', `{"password": "${PASSWORD}"`);
    expect(broken.status).toBe(400);
    expect(await broken.text()).not.toContain(PASSWORD);
    const form = await post(target, '/api/sources', `password=${PASSWORD}`, {
      ...same,
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(form.status).toBe(415);
    expect((await post(target, '/api/sources', 'x'.repeat(20_000))).status).toBe(400);
    // tls "none" is fine for this machine.
    for (const host of ['127.0.0.1', 'localhost'])
      expect((await post(target, '/api/setup/test', { ...good, host, tls: 'none' })).status).toBe(200);
    expect(calls.map((c) => c.input.host)).toEqual(['127.0.0.1', 'localhost']);
  });

  it('refuses cross-site and unauthenticated calls before anything runs', async () => {
    const { setup, calls } = fakeSetup(ok);
    const target = makeWebApp(deps(local, { setup }));
    const attempts: Array<Record<string, string>> = [
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'https://evil.example' },
      { origin: 'null' },
    ];
    for (const path of ['/api/setup/test', '/api/sources']) {
      for (const headers of attempts) {
        const res = await post(target, path, good, {
          ...headers,
          'content-type': 'application/json',
        } as typeof same);
        expect([path, headers, res.status]).toEqual([path, headers, 403]);
      }
      const anonymous = await target.request(`${ORIGIN}${path}`, {
        method: 'POST',
        headers: same,
        body: JSON.stringify(good),
      });
      expect(anonymous.status).toBe(401);
    }
    expect(calls).toEqual([]);
  });

  it('never puts the password in an answer or a log line, even when the setup does', async () => {
    const echoes: Array<(input: NewSourceInput) => SetupResult | Error> = [
      (i) => ({
        ok: false,
        code: 'AUTH_FAILED',
        message: `LOGIN ${i.user} ${i.password} refused`,
        field: 'password',
      }),
      (i) => ({ ok: true, sourceId: 'ann', lines: [`login: ok with ${i.password}`, JSON.stringify(i)] }),
      (i) => new Error(`connect failed: ${JSON.stringify(i)}`),
      (i) => ({ ok: false, code: i.password, message: i.password }),
    ];
    for (const echo of echoes) {
      const { lines, logger } = capture();
      const target = makeWebApp(deps(local, { setup: fakeSetup(echo).setup, logger }));
      for (const path of ['/api/setup/test', '/api/sources']) {
        const res = await post(target, path, good);
        expect(res.status).toBe(200);
        const text = await res.text();
        expect(text).not.toContain(PASSWORD);
        expect(text).not.toContain(JSON.stringify(PASSWORD).slice(1, -1));
        expect(text).toContain('[password]');
      }
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) {
        expect(line).not.toContain(PASSWORD);
        expect(line).not.toContain(JSON.stringify(PASSWORD).slice(1, -1));
      }
    }
  });

  it('carries the progress of a running sync on its source', async () => {
    const running: SyncProgressView = {
      sourceId: a.id,
      startedAt: Date.now() - 5000,
      fetched: 120,
      fetchedBytes: 3_500_000,
      planned: 400,
      bytesPerSecond: 700_000,
      etaSeconds: 14,
    };
    let now: SyncProgressView[] = [running, { ...running, sourceId: 'not-a-source' }];
    const target = makeWebApp(deps(local, { progress: () => now }));
    const read = async () =>
      (
        (await (await target.request(`${ORIGIN}/api/sources`, { headers: { cookie } })).json()) as {
          sources: SourceStatus[];
        }
      ).sources;
    const during = await read();
    expect(during.find((s) => s.id === a.id)!.progress).toEqual(running);
    expect(during.find((s) => s.id === b.id)).not.toHaveProperty('progress');
    expect(during.map((s) => s.id)).toEqual([a.id, b.id].sort());
    now = [];
    expect((await read()).every((s) => s.progress === undefined)).toBe(true);
    // Without a progress source (AWS), never.
    const { sources } = await json<{ sources: SourceStatus[] }>(call('/api/sources'));
    expect(sources.some((s) => 'progress' in s)).toBe(false);
  });
});

describe('web API: bounds', () => {
  it('shows a message over the parse limit from its metadata (headers-only) and still downloads it whole', async () => {
    const table = `tributary-web-big-${Math.random().toString(36).slice(2, 10)}`;
    const client = new DynamoDBClient({});
    await ensureTable(client, table);
    client.destroy();
    const big = tributaryOn(lab, table);
    try {
      const user = lab.createUser('webbig');
      const body = randomBytes(9 * 1024 * 1024)
        .toString('base64')
        .replace(/(.{76})/g, '$1\r\n');
      lab.deliver(
        user,
        `From: Big <big@example.com>\r\nSubject: a very big one\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n${body}\r\n`,
      );
      const source = big.source(user, 'imap');
      expect((await big.sync(source)).outcome).toBe('ok');
      const bigApp = makeWebApp({
        ...deps(local),
        inbox: new DynamoInbox(big.clients.documents, big.table),
        store: big.store,
      });
      const ask = (path: string) => bigApp.request(`${ORIGIN}${path}`, { headers: { cookie } });
      const [summary] = ((await (await ask('/api/messages')).json()) as MessagePage).messages;
      expect(summary!.size).toBeGreaterThan(9 * 1024 * 1024);
      const view = (await (await ask(`/api/messages/${summary!.id}`)).json()) as MessageView;
      expect(view).toMatchObject({
        subject: 'a very big one',
        parse: 'headers-only',
        text: null,
        html: null,
      });
      const link = (await (await ask(`/api/messages/${summary!.id}/raw`)).json()) as DownloadLink;
      const raw = Buffer.from(await (await ask(link.url)).arrayBuffer());
      const [stored] = await big.stored(source.id);
      expect(raw).toEqual(await big.bytes(stored!.object.key));
    } finally {
      big.close();
    }
  }, 120_000);
});
