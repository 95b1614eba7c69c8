/** The domain model (docs/architecture.md, the model): sources, upstream identities, stored messages, sync state. */

export type Protocol = 'imap' | 'pop3';
export type TlsMode = 'implicit' | 'starttls' | 'none';

export type RetentionPolicy =
  { mode: 'keep' } | { mode: 'delete-on-retrieve' } | { mode: 'delete-after-days'; days: number };

/**
 * Keeps the upstream account under its storage quota (docs/architecture.md, policies): above `maxUsagePercent`, the oldest
 * committed messages are deleted upstream until usage is at or under `targetPercent`. IMAP reads usage and limit
 * from GETQUOTAROOT; POP3 has no quota command, so usage is STAT's octets against the declared `capacityBytes`.
 */
export interface UpstreamQuotaPolicy {
  maxUsagePercent: number;
  targetPercent: number;
  capacityBytes?: number;
}

/**
 * What one source may occupy in the consolidated store. `pause` stops fetching (the rest stays upstream,
 * untouched); `evict-oldest` removes the oldest stored copies that still exist upstream.
 */
export interface InboxQuotaPolicy {
  maxBytes?: number;
  maxMessages?: number;
  onExceed: 'pause' | 'evict-oldest';
}

export interface Source {
  id: string;
  protocol: Protocol;
  host: string;
  port: number;
  tls: TlsMode;
  /** PEM text of extra trusted CAs (from `caFile`), added to the system roots; verification is never off. */
  ca?: string;
  /** Name checked against the server certificate when it differs from `host` (e.g. connecting by IP). */
  servername?: string;
  user: string;
  folders: string[];
  pollMinutes: number;
  enabled: boolean;
  retention: RetentionPolicy;
  upstreamQuota?: UpstreamQuotaPolicy;
  inboxQuota?: InboxQuotaPolicy;
}

/** Whether any policy of the source may delete mail upstream. A source for which this is false is never mutated. */
export function deletesUpstream(source: Pick<Source, 'retention' | 'upstreamQuota'>): boolean {
  return source.retention.mode !== 'keep' || source.upstreamQuota !== undefined;
}

/**
 * Where a message came from, stable across runs: IMAP `folder + UIDVALIDITY + UID`, POP3 the UIDL (or a hash of
 * the `TOP n 0` headers when the server has no UIDL). Message numbers are never identities.
 */
export type UpstreamId =
  | { kind: 'imap'; folder: string; uidValidity: string; uid: number }
  | { kind: 'pop3'; uidl: string }
  | { kind: 'pop3-top'; headerHash: string };

/** `#` separates the parts of an identity key, so a folder name's own `#` (and `%`) are escaped. */
function escapePart(part: string): string {
  return part.replace(/%/g, '%25').replace(/#/g, '%23');
}

/** One string per identity, sortable by UID within a folder (UIDs zero-padded to 10 digits). */
export function identityKey(id: UpstreamId): string {
  switch (id.kind) {
    case 'imap':
      return `${imapFolderPrefix(id.folder, id.uidValidity)}${String(id.uid).padStart(10, '0')}`;
    case 'pop3':
      return `pop3#${id.uidl}`;
    case 'pop3-top':
      return `pop3top#${id.headerHash}`;
  }
}

/** The prefix of every identity key of one IMAP folder, all generations. */
export function imapFolderKeyPrefix(folder: string): string {
  return `imap#${escapePart(folder)}#`;
}

/** The prefix of every identity key of one IMAP folder generation (folder + UIDVALIDITY). */
export function imapFolderPrefix(folder: string, uidValidity: string): string {
  return `${imapFolderKeyPrefix(folder)}${uidValidity}#`;
}

export interface Address {
  name?: string;
  address?: string;
}

export interface AttachmentInfo {
  filename?: string;
  mimeType: string;
  size: number;
}

/** What a reader needs without opening S3. Every field may be missing: broken mail is stored anyway. */
export interface MessageMetadata {
  messageId?: string;
  /** ISO 8601, from the Date header when it parses. */
  date?: string;
  from?: Address;
  to: Address[];
  cc: Address[];
  subject?: string;
  snippet: string;
  hasAttachments: boolean;
  attachments: AttachmentInfo[];
  /** `full`, `headers-only` (too big to parse whole within bounds), or `failed` (stored raw, listed with what was read). */
  parse: 'full' | 'headers-only' | 'failed';
  parseError?: string;
  /** Lists or fields were cut to fit the index; the raw message has everything. */
  truncated?: boolean;
}

/** The bytes as stored: exactly what the server served. */
export interface StoredObject {
  key: string;
  size: number;
  /** sha256 hex of the exact bytes. */
  sha256: string;
  /** sha256 hex with NUL mapped to 0x80, as Dovecot's IMAP serves it: matches the same message across protocols. */
  contentSha256: string;
}

/** One place a message came through: a source and the upstream identity it has there. */
export interface Via {
  sourceId: string;
  identity: string;
}

export interface MessageRecord {
  sourceId: string;
  identity: string;
  upstream: UpstreamId;
  object: StoredObject;
  metadata: MessageMetadata;
  /** ISO 8601: when Tributary committed it. */
  fetchedAt: string;
  /** ISO 8601 used for ordering: the Date header, else the fetch time. */
  sortDate: string;
  seen: boolean;
  flagged: boolean;
  deletedUpstreamAt?: string;
  /**
   * Merged inbox only: every source and identity whose committed item holds these exact bytes (decision 0007),
   * sorted. One entry for a message committed before the registry existed.
   */
  via?: Via[];
}

/** Exactly the fields of a MessageRecord, from a stored item or row that holds more (keys, index attributes). */
export function messageRecordFields(r: MessageRecord): MessageRecord {
  const {
    sourceId,
    identity,
    upstream,
    object,
    metadata,
    fetchedAt,
    sortDate,
    seen,
    flagged,
    deletedUpstreamAt,
  } = r;
  return {
    sourceId,
    identity,
    upstream,
    object,
    metadata,
    fetchedAt,
    sortDate,
    seen,
    flagged,
    ...(deletedUpstreamAt === undefined ? {} : { deletedUpstreamAt }),
  };
}

/** Per IMAP folder: UIDVALIDITY and the highest UID such that every UID at or below it is committed. */
export interface FolderState {
  folder: string;
  uidValidity: string;
  committedThroughUid: number;
  uidNext: number;
  highestModseq?: string;
  /**
   * Bumped when the folder was re-created under the same UIDVALIDITY (UIDNEXT went back): its UIDs were reused,
   * so identities of this generation carry it and cannot collide with the old ones.
   */
  generation?: number;
}

/** What the server says about a folder on SELECT/EXAMINE (or STATUS). UIDVALIDITY is a string, never a number. */
export interface FolderStatus {
  uidValidity: string;
  uidNext: number;
  /**
   * The server sent no UIDNEXT (EXAMINE and STATUS): `uidNext` is the highest UID + 1. Never above the real one, but
   * it goes down when the newest messages are expunged, so going back does not mean the folder was re-created.
   */
  uidNextDerived?: true;
  exists: number;
  highestModseq?: string;
}

/**
 * A message that failed on its own (bytes far from the announced size, a UID the server will not deliver, an answer
 * that is not the announced message), counted across runs. After a few attempts it is set aside: kept upstream,
 * never deleted by a policy (it was never committed), skipped by every run until someone asks to retry it, so the
 * rest of its source syncs on.
 */
export interface MessageFailure {
  sourceId: string;
  identity: string;
  upstream: UpstreamId;
  attempts: number;
  error: { code: string; message: string };
  /** ISO 8601: the first and the latest failed attempt. */
  firstAt: string;
  lastAt: string;
  setAside: boolean;
  /** Asked to try again (`tributary sources retry`): the next run fetches it, even below the IMAP checkpoint. */
  retry?: boolean;
}

/** Failed attempts after which a message is set aside. */
export const SET_ASIDE_AFTER = 3;

export interface SourceRunReport {
  sourceId: string;
  /** `paused`: the inbox quota stopped fetching; the rest stays upstream untouched. */
  outcome: 'ok' | 'more' | 'paused' | 'busy' | 'failed' | 'disabled';
  fetched: number;
  fetchedBytes: number;
  skipped: number;
  /** Messages deleted upstream by a policy in this run (each with its audit record). */
  deletedUpstream: number;
  /** Stored copies evicted by the inbox quota in this run. */
  evicted: number;
  /** Messages of the source set aside (this run or before) and not yet retried: they stay upstream, unfetched. */
  setAside?: number;
  /** Upstream storage usage seen by the quota guard, before and after this run's deletions. */
  upstreamUsage?: { usedBytes: number; limitBytes: number; afterBytes: number };
  durationMs: number;
  error?: { code: string; message: string };
  notes: string[];
}

/** The policy behind a destructive action. */
export type PolicyName = 'delete-on-retrieve' | 'delete-after-days' | 'upstream-quota' | 'inbox-quota';

/**
 * One destructive action, written as an `intent` BEFORE it happens and completed after it: a crash in between
 * leaves an intent the next run resolves, never an unrecorded delete.
 */
export interface AuditRecord {
  /** Sortable by time: `<ISO time>#<sequence>`. */
  id: string;
  sourceId: string;
  action: 'delete-upstream' | 'evict';
  policy: PolicyName;
  /** Why, in words: "committed 12 days ago (delete-after-days 7)". */
  why: string;
  /** The upstream identity acted on (delete) or whose stored copy was evicted. */
  identity: string;
  /** The stored message it maps to, and that copy's object as verified. */
  target: string;
  object: { key: string; size: number; sha256: string };
  at: string;
  state: 'intent' | 'done' | 'not-applied';
  completedAt?: string;
  /** Usage before and after the batch this action belongs to: upstream bytes (delete) or inbox bytes (evict). */
  usageBefore?: number;
  usageAfter?: number;
  note?: string;
}
