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
 * A download is a link, not the bytes: in AWS a presigned S3 URL valid a few minutes, on one machine a same-origin
 * URL carrying a short-lived signed token. Following it answers `Content-Disposition: attachment`,
 * `X-Content-Type-Options: nosniff` and `Content-Type: application/octet-stream`: nothing downloaded can render
 * as a page of this origin.
 */

export interface ApiError {
  error: { code: string; message: string };
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
  | { auth: 'cookie' };
