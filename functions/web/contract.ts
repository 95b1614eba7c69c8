/**
 * The web API's contract (issue #15): the JSON the page reads, the same whether the app is served by the API
 * Lambda (behind the HTTP API's Cognito JWT authorizer) or by `tributary serve` on one machine (127.0.0.1, a token
 * cookie). Both sides import these types; the routes are listed here so the page and the app cannot drift.
 *
 * Every `/api/*` route needs an authenticated user; a state-changing one (POST, DELETE) also refuses cross-site
 * requests. Errors are `ApiError` with an HTTP status: 400 bad input, 401 not signed in, 403 cross-site,
 * 404 no such message/source/attachment (an id from nowhere or forged), 500 with a message that says to try again.
 *
 *   GET    /api/messages?source=ID&unread=1&q=TEXT&cursor=C&limit=N   -> MessagePage (newest first across sources;
 *                                                                       q matches sender and subject; limit 1-100,
 *                                                                       default 50)
 *   GET    /api/messages/:id                                          -> MessageView
 *   GET    /api/messages/:id/raw                                      -> DownloadLink (the .eml)
 *   GET    /api/messages/:id/attachments/:n                           -> DownloadLink (attachment n of MessageView)
 *   POST   /api/messages/:id/read, /api/messages/:id/unread           -> { unread: boolean }
 *   DELETE /api/messages/:id                                          -> { deleted: true } (from the inbox only)
 *   GET    /api/sources                                               -> { sources: SourceStatus[] }
 *   POST   /api/sources/:id/sync                                      -> { queued: true } (sync now)
 *   GET    /api/messages/:id/inline/:cid                              -> the bytes of an inline (cid:) image, served
 *                                                                       with the image's type when it is a raster
 *                                                                       image (png, gif, jpeg, webp), else 404
 *
 * One machine only (`tributary serve` gives the app a `LocalSetup`; elsewhere these answer 404), a JSON body
 * (`Content-Type: application/json`, a `NewSourceInput`; 400 names the field at fault, 415 another type):
 *
 *   POST   /api/setup/test                                            -> SetupResult (logs in as `sources test` does;
 *                                                                       saves nothing)
 *   POST   /api/sources                                               -> SetupResult (checks, then adds the source)
 *
 * The password goes in and never comes back: no answer, log line or error carries it.
 *
 * A download is a link, not the bytes: in AWS a presigned S3 URL valid a few minutes, on one machine a same-origin
 * URL carrying a short-lived signed token. Following it answers `Content-Disposition: attachment`,
 * `X-Content-Type-Options: nosniff` and `Content-Type: application/octet-stream`: nothing downloaded can render
 * as a page of this origin.
 */

export interface ApiError {
  error: {
    code: string;
    message: string;
    /** A 400 on a JSON body: the first field at fault (`host`, `retention.days`), and every problem found. */
    field?: string;
    issues?: Array<{ field: string; message: string }>;
  };
}

export interface Address {
  name?: string;
  address?: string;
}

export interface MessageSummary {
  /** Opaque; stable for the message (one id per stored content, whatever the sources it came through). */
  id: string;
  /** ISO 8601: the Date header, else when it was fetched. */
  date: string;
  from: Address | null;
  subject: string | null;
  snippet: string;
  unread: boolean;
  hasAttachments: boolean;
  size: number;
  /** The sources it came through (one, or several for the same message reaching several accounts). */
  sources: string[];
}

export interface MessagePage {
  messages: MessageSummary[];
  /**
   * Pass back as `cursor` for the next page; null at the end. A filtered page (`q`, or `unread` with `source`) may
   * hold fewer than `limit` messages, even none, and still have a cursor: the search stopped after a bounded number
   * of messages examined; ask for the next page to go on.
   */
  cursor: string | null;
}

export interface AttachmentView {
  /** Its index, for `/attachments/:n`. */
  n: number;
  filename: string | null;
  contentType: string;
  size: number;
  /** Content-ID without angle brackets, for `cid:` references in the HTML. */
  contentId: string | null;
  /** `Content-Disposition: inline`, or referenced by the HTML through its cid. */
  inline: boolean;
}

export interface MessageView extends MessageSummary {
  messageId: string | null;
  to: Address[];
  cc: Address[];
  replyTo: Address[];
  /** Where it came through: each source and its upstream identity (folder/UID or UIDL). */
  via: Array<{ sourceId: string; identity: string }>;
  /** The text/plain body (decoded), or null. */
  text: string | null;
  /**
   * The text/html body as the sender wrote it, NOT sanitized: the page sanitizes it (DOMPurify) and shows it in a
   * sandboxed frame. Never insert it into a page as it is.
   */
  html: string | null;
  attachments: AttachmentView[];
  /** `full`; or `headers-only` / `failed` when the message could not be parsed whole (the raw download has all). */
  parse: 'full' | 'headers-only' | 'failed';
}

export interface DownloadLink {
  url: string;
  /** ISO 8601. */
  expiresAt: string;
  filename: string;
}

export interface SourceStatus {
  id: string;
  protocol: 'imap' | 'pop3';
  host: string;
  port: number;
  user: string;
  folders: string[];
  enabled: boolean;
  pollMinutes: number;
  lastRun: {
    at: string;
    outcome: string;
    fetched?: number;
    deletedUpstream?: number;
    evicted?: number;
    error?: { code: string; message: string };
  } | null;
  /** The last run's typed error with advice in words, or null. */
  error: { code: string; message: string } | null;
  consecutiveFailures: number;
  stored: { messages: number; bytes: number };
  quota: {
    upstream: {
      usedBytes: number;
      limitBytes: number;
      afterBytes: number;
      usedPercent: number | null;
      /** The upstream quota policy, when the source has one. */
      policy?: unknown;
    } | null;
    inbox: {
      messages: number;
      bytes: number;
      maxMessages: number | null;
      maxBytes: number | null;
      messagesPercent: number | null;
      bytesPercent: number | null;
      onExceed: 'pause' | 'evict-oldest';
    } | null;
  };
  /** Recent destructive actions (upstream deletes, evictions), newest first, at most 20. */
  recentActions: Array<{
    at: string;
    action: string;
    identity: string;
    reason: string;
    subject: string | null;
    /** `intent` (not yet finished), `done` or `not-applied`. */
    state?: string;
    /** The policy that acted. */
    policy?: string;
  }>;
  schedule: {
    nextDueAt: string | null;
    backoffUntil: string | null;
    failures: number;
    lastOutcome?: string | null;
    dispatchedAt?: string | null;
  } | null;
  /** The retention policy (`{mode: 'keep'}`, ...). */
  retention?: unknown;
  /** Messages set aside after failing on their own: kept upstream, not fetched until retried. */
  setAside?: Array<{
    identity: string;
    attempts: number;
    error: { code: string; message: string };
    firstAt: string;
    lastAt: string;
    retryRequested: boolean;
  }>;
  /** Present while a sync of the source runs (one machine): how far it has got. */
  progress?: SyncProgressView;
}

/** A sync under way (one machine): what it has fetched so far, and what it expects when it knows. */
export interface SyncProgressView {
  sourceId: string;
  /** Epoch ms. */
  startedAt: number;
  fetched: number;
  fetchedBytes: number;
  /** Messages the run plans to fetch, once it has listed them. */
  planned?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
}

/**
 * A source to add from the page (one machine): what the CLI's config file holds for a source, with the password
 * itself (the server keeps it in a secrets file of its own, never in the config). Defaults: `port` from the
 * protocol and TLS (993/143 IMAP, 995/110 POP3), `folders` `["INBOX"]` (IMAP only), `retention` keep, `id` made
 * from the user and host.
 */
export interface NewSourceInput {
  id?: string;
  protocol: 'imap' | 'pop3';
  host: string;
  port?: number;
  /** `none` only for a loopback host (127.0.0.1, localhost): it sends the password in clear. */
  tls: 'implicit' | 'starttls' | 'none';
  user: string;
  password: string;
  folders?: string[];
  retention?: { mode: 'keep' } | { mode: 'delete-on-retrieve' } | { mode: 'delete-after-days'; days: number };
  pollMinutes?: number;
}

/**
 * What a connection test or an add answered: on success the lines `tributary sources test` prints (TLS, login,
 * capabilities, folders, message count); on failure the typed error's code and message, and the field at fault
 * when one is (`password` for a refused login, `host` for a name that does not resolve, `id` for one in use).
 */
export type SetupResult =
  | { ok: true; sourceId: string; lines: string[] }
  | { ok: false; code: string; message: string; field?: string };

/** Adding a source on one machine (functions/cli/serve.ts): injected into the web app, absent in AWS. */
export interface LocalSetup {
  /** Logs in and looks around, as `tributary sources test` does; saves nothing. */
  test(input: NewSourceInput): Promise<SetupResult>;
  /** Checks the same way, then writes the source to the config and its password to the secrets file. */
  add(input: NewSourceInput): Promise<SetupResult>;
}

/**
 * `GET /config.json` (no authentication: it holds nothing secret): how the page signs in. In AWS, Cognito's
 * authorization code flow with PKCE against the user pool's domain, then `Authorization: Bearer <access token>` on
 * every API call; on one machine, the HttpOnly session cookie `tributary serve` set when the start URL was opened.
 */
export type PageConfig =
  | {
      auth: 'cognito';
      /** e.g. https://tributary-123.auth.eu-west-1.amazoncognito.com */
      domain: string;
      clientId: string;
      /** Where Cognito sends the browser back: the page's own URL. */
      redirectUri: string;
      scopes: string[];
    }
  | {
      auth: 'cookie';
      /** One machine with a `LocalSetup`: the page may add sources (`POST /api/setup/test`, `POST /api/sources`). */
      setup?: boolean;
    };
