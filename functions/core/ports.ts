import type { InboxUsage, StoredCopy } from './policies';
import type { SourceSchedule } from './schedule';
import type {
  AuditRecord,
  FolderState,
  FolderStatus,
  MessageFailure,
  MessageMetadata,
  MessageRecord,
  Source,
  SourceRunReport,
  UpstreamId,
} from './model';

/** A message body as it arrives: chunks of the exact bytes. The consumer drains it before asking for the next. */
export type Bytes = AsyncIterable<Uint8Array>;

export interface TlsInfo {
  protocol: string;
  cipher: string;
  /** Certificate subject CN and the issuer CN, for `sources test`. */
  subject: string;
  issuer: string;
  validTo: string;
}

/**
 * An IMAP connection, logged in. Read-only by contract: folders are opened with EXAMINE and bodies fetched with
 * BODY.PEEK, so a sync never changes a flag upstream.
 */
export interface ImapSession {
  readonly capabilities: ReadonlySet<string>;
  readonly tls?: TlsInfo;
  listFolders(): Promise<string[]>;
  /**
   * UIDVALIDITY, UIDNEXT and message count by STATUS, the folder left closed: a poll's first question. Undefined
   * when the server cannot answer all three that way (the caller then opens the folder). Optional: a session
   * without it is always opened.
   */
  peekFolder?(folder: string): Promise<FolderStatus | undefined>;
  /** EXAMINE the folder; throws UpstreamError FOLDER_NOT_FOUND when it does not exist. */
  openFolder(folder: string): Promise<FolderStatus>;
  /**
   * UID and RFC822.SIZE of every message in the open folder with UID >= fromUid, ascending; with
   * `internalDate`, also INTERNALDATE (epoch ms), the arrival order the policies use.
   */
  listUids(
    fromUid: number,
    options?: { internalDate?: boolean },
  ): Promise<Array<{ uid: number; size: number; internalDate?: number }>>;
  /** Which of these UIDs the open folder holds now (UID SEARCH). */
  present(uids: number[]): Promise<Set<number>>;
  /**
   * The only mutation of an IMAP session: SELECTs `folder` read-write, checks that its UIDVALIDITY is still
   * `uidValidity`, then UID STORE +FLAGS.SILENT (\Deleted) and UID EXPUNGE (UIDPLUS) of exactly `uids`, and returns
   * the UIDs confirmed gone. Throws CAPABILITY_MISSING without UIDPLUS: a plain EXPUNGE would also remove
   * messages the user marked \Deleted. Afterwards the folder is open read-write. `mayDelete` is called right before
   * each UID STORE and each UID EXPUNGE is written (some servers expunge at the STORE): when it throws, the
   * connection is dropped without that command and its error is thrown (a \Deleted already stored stays for the
   * next run's clearDeleted, which the intents still pending ask for).
   */
  deleteUids(
    folder: string,
    uidValidity: string,
    uids: number[],
    mayDelete?: (next: 'store' | 'expunge') => void,
  ): Promise<Set<number>>;
  /**
   * Removes \\Deleted from exactly these UIDs (SELECT read-write, same UIDVALIDITY check): undoes the flag a delete
   * cut between its UID STORE and its UID EXPUNGE left behind.
   */
  clearDeleted(folder: string, uidValidity: string, uids: number[]): Promise<void>;
  /**
   * Streams the exact bytes (BODY.PEEK[]) of each UID, ascending, one at a time; `size` (from listUids) chooses
   * between a pipelined FETCH and a chunked stream. UIDs that no longer exist (expunged meanwhile) are simply
   * not delivered.
   */
  fetchBodies(
    messages: Array<{ uid: number; size: number }>,
    onMessage: (uid: number, size: number, body: Bytes) => Promise<void>,
  ): Promise<void>;
  /**
   * The header block (BODY.PEEK[HEADER]) of each UID of `folder`, which is opened read-only first unless it is the
   * open folder; throws when its UIDVALIDITY is no longer `uidValidity`. UIDs the folder no longer holds are absent
   * from the map. The proof, right before a delete, that the upstream message is the stored one.
   */
  headerBlocks(folder: string, uidValidity: string, uids: number[]): Promise<Map<number, Buffer>>;
  /** Storage usage of the open folder's quota root (RFC 9208), when the server has QUOTA. */
  quota(): Promise<{ usedBytes: number; limitBytes: number } | undefined>;
  close(): Promise<void>;
  /** Drops the connection at once (no LOGOUT): every command in flight fails. For the run's hard deadline. */
  abort(): void;
}

export interface Pop3Listing {
  /** Message number in this session only: never an identity. */
  number: number;
  /** UIDL, when the server supports it. */
  uidl?: string;
  size: number;
}

/** A POP3 session, authenticated (TRANSACTION state). DELE only takes effect at QUIT. */
export interface Pop3Session {
  /** CAPA answer, upper-cased keywords with their arguments ('UIDL', 'PIPELINING', 'EXPIRE 0'); [] without CAPA. */
  readonly capabilities: string[];
  readonly tls?: TlsInfo;
  stat(): Promise<{ count: number; octets: number }>;
  /** UIDL (when supported) merged with LIST, in message-number order. */
  list(): Promise<Pop3Listing[]>;
  /** The header block of a message (`TOP n 0`), dot-unstuffed, exact bytes. */
  topHeaders(number: number): Promise<Buffer>;
  /**
   * The header block (`TOP n 0`, exact bytes, dot-unstuffed) of each message, pipelined when the server has
   * PIPELINING; a message the server refuses (deleted meanwhile) is absent from the map. Throws CAPABILITY_MISSING
   * when the server has no TOP. The proof, right before a DELE, that the upstream message is the stored one.
   */
  headerBlocks(numbers: number[]): Promise<Map<number, Buffer>>;
  /** RETR each message (pipelined when the server has PIPELINING): exact bytes, dot-unstuffed. */
  retrieve(numbers: number[], onMessage: (number: number, body: Bytes) => Promise<void>): Promise<void>;
  dele(number: number): Promise<void>;
  /**
   * Ends the session with QUIT: the server applies the DELEs. `mayQuit` is called right before QUIT is written:
   * when it throws, the connection is dropped without QUIT (the server applies nothing) and its error is thrown.
   */
  quit(mayQuit?: () => void): Promise<void>;
  /** Drops the connection without QUIT: the server applies nothing. */
  abort(): void;
}

/**
 * Messages up to this size are read whole (over IMAP, many in one pipelined FETCH) and stored while the next ones
 * download; bigger ones are streamed from the connection to S3 (IMAP: in partial FETCHes of a few MB, one round trip
 * each). Fetching a message the sync holds in memory anyway in chunks would save no memory and only add round trips
 * (in the benchmark, the IMAP sync at 20 ms RTT took 40.1 s with 2 MB chunks above 1 MB, 30.0 s with this).
 */
export const DEFAULT_WHOLE_MESSAGE_BYTES = 16 * 1024 * 1024;

export interface ConnectOptions {
  /** Milliseconds for connect, greeting and each read; below the Lambda budget. */
  timeoutMs: number;
  /** IMAP: see DEFAULT_WHOLE_MESSAGE_BYTES (the default). POP3 has one RETR per message whatever its size. */
  wholeMessageBytes?: number;
}

/** Opens upstream sessions. Errors are UpstreamError with a code (AUTH_FAILED, TLS_*, HOST_NOT_FOUND, ...). */
export interface MailConnector {
  openImap(source: Source, password: string, options: ConnectOptions): Promise<ImapSession>;
  openPop3(source: Source, password: string, options: ConnectOptions): Promise<Pop3Session>;
}

/** Raw message bytes, stored once at a deterministic key. */
export interface RawMailStore {
  /** Writes the bytes at `key`, overwriting: a retry after a crash replaces its own orphan. */
  put(key: string, body: Bytes, info: { sha256?: string; size?: number }): Promise<void>;
  get(key: string): Promise<Bytes>;
  /** Size (and recorded sha256) of the object, or undefined when absent. */
  head(key: string): Promise<{ size: number; sha256?: string } | undefined>;
  delete(key: string): Promise<void>;
}

/** Reads the fields a reader needs. Must never throw: broken mail yields `parse: 'failed'` with what was read. */
export interface MetadataParser {
  /** `complete` is false when `raw` is only the head of a message too big to parse whole. */
  parse(raw: Uint8Array, complete: boolean): Promise<MessageMetadata>;
}

/** What commitMessage did: see there. */
export type CommitOutcome = 'committed' | 'shared' | 'exists';

export interface Lease {
  sourceId: string;
  holder: string;
  /** Grows by one at every acquisition; every state write checks it, so a paused holder cannot overwrite its successor. */
  fence: number;
  expiresAt: number;
}

/*
 * The index, as narrow ports (one reason to change each). The engine asks for the ones it uses; an adapter (DynamoDB,
 * the embedded SQLite store) implements all of them, and `MessageIndex` names the whole set.
 */

/** The source's lease: one holder at a time, with a fencing number every state write checks. */
export interface SourceLeases {
  /** Takes the source's lease if free or expired; undefined when another run holds it. */
  acquireLease(sourceId: string, holder: string, ttlMs: number, now: number): Promise<Lease | undefined>;
  /** Extends our lease; throws LeaseLostError when it was taken over. */
  renewLease(lease: Lease, ttlMs: number, now: number): Promise<Lease>;
  releaseLease(lease: Lease): Promise<void>;
}

/** IMAP folder checkpoints (UIDVALIDITY, the UID committed through). */
export interface FolderCheckpoints {
  getFolderState(sourceId: string, folder: string): Promise<FolderState | undefined>;
  /** Writes the checkpoint only while `lease` is still ours. */
  saveFolderState(lease: Lease, state: FolderState): Promise<void>;
}

/** Which upstream identities are committed, and the commit itself (message, content entry, registry, counters). */
export interface MessageCommits {
  /**
   * Identity keys committed for the source that start with `prefix` (strongly consistent),
   * optionally only those sorting at or after `from`.
   */
  committedIdentities(sourceId: string, prefix: string, from?: string): Promise<Set<string>>;
  /** Committed identities (messages and aliases) whose content hash is `contentSha256`. */
  findByContent(
    sourceId: string,
    contentSha256: string,
  ): Promise<Array<{ identity: string; target: string }>>;
  /**
   * Commits the message item, its content-hash entry, its reference in the content registry and the source counters
   * in one transaction, conditional on the identity being new and the lease still ours. 'exists' when it was already
   * committed (a retry). 'shared' when the same bytes were registered already by a committed item: this one was
   * committed pointing at that object, and the caller deletes the object it wrote at `record.object.key` (after this
   * commit, so a crash leaves an orphan, never a missing object). 'committed': its own object holds the bytes.
   */
  commitMessage(lease: Lease, record: MessageRecord): Promise<CommitOutcome>;
  /** Records that a new upstream identity is a message already stored (matched by content after a UIDVALIDITY change). */
  commitAlias(
    lease: Lease,
    upstream: UpstreamId,
    target: string,
    contentSha256: string,
  ): Promise<'committed' | 'exists'>;
  /**
   * The committed copy behind each identity (strongly consistent): the message item itself, or an
   * alias's target. Identities with no committed item are absent from the map.
   */
  lookup(sourceId: string, identities: string[]): Promise<Map<string, StoredCopy>>;
}

/** The outcome of each run, for the status pages and the back-off. */
export interface RunStatusLog {
  /** The run's status; only while `lease` is still ours (LeaseLostError otherwise: the successor's stays). */
  recordRun(lease: Lease, report: SourceRunReport, now: number): Promise<void>;
}

/** The audit trail: intents written before an action, completed after it (the durability contract's rule 3). */
export interface ActionJournal {
  /** Writes audit records as `intent`, with a pending marker each, while `lease` is ours. Before the action. */
  beginActions(lease: Lease, records: AuditRecord[]): Promise<void>;
  /**
   * Completes intents: the audit record's state, completedAt and usageAfter; for an upstream delete that was
   * done, the message item's deletedUpstreamAt. Removes the pending markers. After the action.
   */
  completeActions(
    lease: Lease,
    outcomes: Array<{
      record: AuditRecord;
      state: 'done' | 'not-applied';
      usageAfter?: number;
      note?: string;
    }>,
    now: number,
  ): Promise<void>;
  /** Intents not yet completed: left by a run that stopped between an action and its completion. */
  pendingActions(sourceId: string): Promise<AuditRecord[]>;
  /** The audit trail of a source, oldest first, from `since` (ISO 8601) on. */
  auditTrail(sourceId: string, since?: string): AsyncIterable<AuditRecord>;
}

/** What a source occupies in the store, and giving a stored copy up (the inbox cap). */
export interface StoredCopies {
  /** What the source occupies in the store (the counters committed with every message). */
  inboxUsage(sourceId: string): Promise<InboxUsage>;
  /**
   * Turns a stored message into an evicted tombstone (out of the inbox, counters down, identity kept so it is not
   * fetched again); 'already' when it was evicted before. The object is deleted by the caller afterwards.
   */
  evict(lease: Lease, record: AuditRecord, now: number): Promise<'evicted' | 'already'>;
  /**
   * Whether no committed item references this object any more (strongly consistent): after an eviction, the object
   * may be deleted only then, since other sources' items may share the bytes (decision 0007).
   */
  objectUnreferenced(object: { key: string; sha256: string }): Promise<boolean>;
}

/** Messages that failed on their own: attempts, set aside, asked to be retried. */
export interface FailureRecords {
  /** The messages of a source that failed on their own, set aside or still being retried (strongly consistent). */
  messageFailures(sourceId: string): Promise<MessageFailure[]>;
  /** Writes one message's failure record (attempts, reason, set aside or not) while `lease` is ours. */
  recordMessageFailure(lease: Lease, failure: MessageFailure): Promise<void>;
  /** Forgets failure records (the message was committed at last, or is gone upstream) while `lease` is ours. */
  clearMessageFailures(lease: Lease, identities: string[]): Promise<void>;
  /**
   * Asks the next run to try set-aside messages again (all of the source's, or these identities): attempts start
   * over. Not fenced: it only marks records, and a run that meanwhile fails the message again just counts again.
   * Returns how many were marked.
   */
  retryMessages(sourceId: string, identities?: string[]): Promise<number>;
}

/** The stored messages, for the CLI's listings and export. */
export interface SourceMessages {
  /** Newest first; with `sourceId`, one source's own messages, else the merged inbox. */
  listInbox(options: {
    sourceId?: string;
    limit: number;
    cursor?: string;
  }): Promise<{ items: MessageRecord[]; cursor?: string }>;
  /** Every message of a source (not aliases), in identity order. */
  sourceMessages(sourceId: string): AsyncIterable<MessageRecord>;
}

/** A source's counters and last run, as the status pages show them. */
export interface SourceSummary {
  sourceId: string;
  messages: number;
  bytes: number;
  lastRun?: {
    at: string;
    outcome: string;
    fetched: number;
    deletedUpstream?: number;
    evicted?: number;
    upstreamUsage?: SourceRunReport['upstreamUsage'];
    notes?: string[];
    error?: { code: string; message: string };
  };
  consecutiveFailures: number;
}

/** Read-only status of a source, for people: counters, last run, the lease as stored. */
export interface SourceStatus {
  summary(sourceId: string): Promise<SourceSummary>;
  /** The source's lease as stored (holder, fence, until when), or undefined if never taken. */
  leaseState(sourceId: string): Promise<Lease | undefined>;
}

/** Every index port: what an index adapter implements. */
export type MessageIndex = SourceLeases &
  FolderCheckpoints &
  MessageCommits &
  RunStatusLog &
  ActionJournal &
  StoredCopies &
  FailureRecords &
  SourceMessages &
  SourceStatus;

export interface Credentials {
  /** The upstream password for a source; throws SECRET_MISSING naming where it looked. */
  password(source: Source): Promise<string>;
}

export interface Clock {
  now(): number;
}

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** A source as the registry holds it: its settings and when it is polled next. */
export interface RegisteredSource {
  source: Source;
  schedule: SourceSchedule;
  /** Grows by one at every write of the entry: a schedule write names the revision it read. */
  revision: number;
}

/**
 * The sources of the `aws` store, kept in the table (the CLI's config file plays this part on one machine). Narrow:
 * what the dispatcher, the sync function and the API need. Passwords are not here (Credentials).
 */
export interface SourceRegistry {
  get(sourceId: string): Promise<RegisteredSource | undefined>;
  list(): Promise<RegisteredSource[]>;
  /** Adds a source (due at once) or replaces its settings (its schedule stays). */
  put(source: Source, now: number): Promise<void>;
  /** Forgets the source's settings and schedule; its stored mail, status and audit trail stay. */
  remove(sourceId: string): Promise<void>;
  /** Enabled sources whose next due time is at or before `now`, soonest first (an index read: may lag a write). */
  due(now: number, limit: number): Promise<RegisteredSource[]>;
  /**
   * Writes the schedule if the entry is still at `revision` (and still exists): false when it changed meanwhile,
   * so two writers cannot both act on what they read.
   */
  setSchedule(sourceId: string, schedule: SourceSchedule, revision: number): Promise<boolean>;
}

/** What the merged inbox list can be narrowed to (issue #15). */
export interface InboxQuery {
  /** Only messages that came through this source. */
  sourceId?: string;
  /** Only unread messages. */
  unread?: boolean;
  /** Case-insensitive substring of the sender's name or address, or of the subject. */
  q?: string;
  /** From a previous page; opaque. */
  cursor?: string;
  limit: number;
}

/** One message of the merged inbox as a reader sees it: an opaque id, the merged record, the read state. */
export interface InboxEntry {
  /** Opaque; addresses this inbox entry only (never another kind of item). */
  id: string;
  /** The merged record: `via` lists every place the bytes came through. */
  record: MessageRecord;
  unread: boolean;
}

/**
 * The merged inbox for a reader (the web API): newest first across sources, one entry per stored content. Narrow
 * on purpose: the reader never needs leases, checkpoints or commits.
 */
export interface InboxReader {
  /**
   * A page, newest first. A filtered page may hold fewer than `limit` entries and still return a cursor: the
   * filters that cannot be answered by an index stop after a bounded number of entries examined.
   */
  list(query: InboxQuery): Promise<{ entries: InboxEntry[]; cursor?: string }>;
  /** The entry, or undefined for an id from nowhere, a forged one, or a message removed from the inbox. */
  get(id: string): Promise<InboxEntry | undefined>;
}

/** Changes a reader makes to the merged inbox: read state and removal. Never upstream, never the stored bytes. */
export interface InboxWriter {
  /** False when there is no such entry in the inbox. */
  setUnread(id: string, unread: boolean, now: number): Promise<boolean>;
  /**
   * Takes the entry out of the inbox (every source's view included) and records who and when. The upstream
   * identities stay committed, so the message is never fetched again; the stored bytes and the sources' counters
   * stay as they are (the copy is still stored, exportable, and counted by the inbox quota until evicted).
   * False when there is no such entry in the inbox.
   */
  removeFromInbox(id: string, by: string, now: number): Promise<boolean>;
}
