import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { StorageError, TributaryError } from '../../core/errors';

/**
 * The embedded store's database: one SQLite file, `<dataDir>/index.sqlite`, shared by every process that works on
 * the data folder (`npm start` and a CLI `sync` side by side). SQLite's file locks serialise the writers; the
 * source leases (checked inside each write transaction) keep two runs of one source apart, as on DynamoDB.
 *
 * Durability (docs/decisions/0001-durability-contract.md): WAL with synchronous=FULL, so a transaction that
 * returned is on disk and survives a power cut; fullfsync where the platform has it (macOS: a plain fsync only
 * reaches the drive's cache).
 */

export const DATABASE_FILE = 'index.sqlite';

export interface DatabaseOptions {
  /**
   * How long one statement waits, blocking, for another process's lock before it fails with SQLITE_BUSY. Kept
   * short: better-sqlite3 is synchronous, so this wait blocks the event loop; longer waits are `write`'s retries,
   * which sleep asynchronously between attempts.
   */
  busyTimeoutMs?: number;
  /** Attempts of a transaction that keeps finding the database locked, before a StorageError. */
  busyAttempts?: number;
}

const DEFAULT_BUSY_TIMEOUT_MS = 250;
/** With the back-off below, about 15 s of another process holding the write lock before a run gives up. */
const DEFAULT_BUSY_ATTEMPTS = 20;

/**
 * Forward-only migrations; migration i brings the schema from user_version i to i + 1. Never edit one that has
 * shipped: append another. The comments in the SQL are the schema's documentation.
 */
const MIGRATIONS: string[] = [
  `
  -- A source's lease: one holder at a time; fence grows at every acquisition and every fenced write checks it.
  CREATE TABLE leases (
    source_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fence INTEGER NOT NULL,
    lease_until INTEGER NOT NULL
  ) STRICT;

  -- IMAP checkpoints, per source and folder.
  CREATE TABLE folder_states (
    source_id TEXT NOT NULL,
    folder TEXT NOT NULL,
    uid_validity TEXT NOT NULL,
    committed_through_uid INTEGER NOT NULL,
    uid_next INTEGER NOT NULL,
    highest_modseq TEXT,
    generation INTEGER,
    PRIMARY KEY (source_id, folder)
  ) STRICT;

  -- Every committed upstream identity of a source. 'message': a stored copy; 'evicted': its tombstone (the
  -- identity stays known, so it is never fetched again); 'alias': another identity of a stored message (target).
  -- record: the MessageRecord as committed (its object names the stored key, shared or its own); the columns
  -- beside it are what queries and constraints need.
  CREATE TABLE messages (
    source_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'alias', 'evicted')),
    upstream TEXT NOT NULL,
    target TEXT,
    record TEXT,
    object_key TEXT,
    size INTEGER,
    sha256 TEXT,
    content_sha256 TEXT,
    fetched_at TEXT,
    -- keys.inboxSk: sortDate#sourceId#identity, newest first when read descending.
    inbox_key TEXT,
    -- In its source's own inbox (a stored message whose merged entry was not removed).
    listed INTEGER NOT NULL DEFAULT 0 CHECK (listed IN (0, 1)),
    deleted_upstream_at TEXT,
    evicted_at TEXT,
    PRIMARY KEY (source_id, identity),
    CHECK ((kind = 'alias') = (target IS NOT NULL)),
    CHECK (kind = 'alias' OR (record IS NOT NULL AND object_key IS NOT NULL AND size IS NOT NULL
      AND sha256 IS NOT NULL AND content_sha256 IS NOT NULL AND fetched_at IS NOT NULL AND inbox_key IS NOT NULL)),
    CHECK (listed = 0 OR kind = 'message')
  ) STRICT;
  CREATE INDEX messages_source_inbox ON messages (source_id, inbox_key) WHERE listed = 1;
  CREATE INDEX messages_source_content ON messages (source_id, sha256, inbox_key) WHERE listed = 1;

  -- Per source: which identities hold content with this contentSha256 (NUL-normalised), for the rematch after a
  -- UIDVALIDITY change or a UIDL reset. An eviction removes the entries of the copy and of its aliases.
  CREATE TABLE content_entries (
    source_id TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    identity TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (source_id, content_sha256, identity),
    FOREIGN KEY (source_id, identity) REFERENCES messages (source_id, identity)
  ) STRICT;

  -- The content registry (decision 0007): one row per exact sha256 of stored bytes, across sources, while at least
  -- one stored message references it (the last eviction deletes the row). record: the first reference's
  -- MessageRecord, which is the merged inbox entry; listed = 0 once a reader removed it from the inbox. The three
  -- lower-cased search columns answer the inbox's q filter.
  CREATE TABLE contents (
    sha256 TEXT PRIMARY KEY,
    object_key TEXT NOT NULL,
    record TEXT NOT NULL,
    inbox_key TEXT NOT NULL,
    listed INTEGER NOT NULL DEFAULT 1 CHECK (listed IN (0, 1)),
    unread INTEGER NOT NULL DEFAULT 1 CHECK (unread IN (0, 1)),
    read_at TEXT,
    removed_at TEXT,
    removed_by TEXT,
    search_from_name TEXT NOT NULL,
    search_from_address TEXT NOT NULL,
    search_subject TEXT NOT NULL
  ) STRICT;
  CREATE INDEX contents_inbox ON contents (inbox_key) WHERE listed = 1;
  CREATE INDEX contents_unread ON contents (inbox_key) WHERE listed = 1 AND unread = 1;

  -- The references to a registry row: every place (source, identity) its bytes came through. refs = the count.
  CREATE TABLE content_via (
    sha256 TEXT NOT NULL REFERENCES contents (sha256) ON DELETE CASCADE,
    source_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    PRIMARY KEY (sha256, source_id, identity),
    FOREIGN KEY (source_id, identity) REFERENCES messages (source_id, identity)
  ) STRICT;
  CREATE INDEX content_via_source ON content_via (source_id, sha256);

  -- A reader's removal of a merged entry: who, when, what. Kept when the registry row goes.
  CREATE TABLE inbox_removals (
    sha256 TEXT NOT NULL,
    at TEXT NOT NULL,
    id TEXT NOT NULL,
    removed_by TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (sha256, at, id)
  ) STRICT;

  -- A source's counters, changed in the same transaction as its messages.
  CREATE TABLE source_stats (
    source_id TEXT PRIMARY KEY,
    messages INTEGER NOT NULL,
    bytes INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE run_status (
    source_id TEXT PRIMARY KEY,
    last_run TEXT NOT NULL,
    last_error TEXT,
    consecutive_failures INTEGER NOT NULL
  ) STRICT;

  -- The audit trail (the durability contract's rule 3): ids start with their ISO time, so id order is time order.
  CREATE TABLE audit (
    source_id TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('intent', 'done', 'not-applied')),
    record TEXT NOT NULL,
    PRIMARY KEY (source_id, id)
  ) STRICT;

  -- Intents not yet completed.
  CREATE TABLE pending_actions (
    source_id TEXT NOT NULL,
    id TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (source_id, id),
    FOREIGN KEY (source_id, id) REFERENCES audit (source_id, id)
  ) STRICT;

  -- Messages that failed on their own (MessageFailure as JSON).
  CREATE TABLE failures (
    source_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (source_id, identity)
  ) STRICT;

  -- The source registry: settings, schedule and revision; due_at = max(nextDueAt, backoffUntil).
  CREATE TABLE sources (
    source_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    schedule TEXT NOT NULL,
    revision INTEGER NOT NULL,
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    due_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX sources_due ON sources (due_at, source_id) WHERE enabled = 1;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * One connection to the data folder's database, with the transaction and retry discipline every adapter of the
 * embedded store uses. Statements are prepared once and cached.
 */
export class SqliteDatabase {
  private readonly statements = new Map<string, Database.Statement>();
  private readonly busyAttempts: number;

  constructor(
    readonly db: Database.Database,
    readonly file: string,
    options: DatabaseOptions = {},
  ) {
    this.busyAttempts = Math.max(1, options.busyAttempts ?? DEFAULT_BUSY_ATTEMPTS);
  }

  prepare(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** The first row, typed by the caller (the row shape is the SELECT's). */
  get<T>(sql: string, ...params: unknown[]): T | undefined {
    return this.prepare(sql).get(...params) as T | undefined;
  }

  all<T>(sql: string, ...params: unknown[]): T[] {
    return this.prepare(sql).all(...params) as T[];
  }

  run(sql: string, ...params: unknown[]): Database.RunResult {
    return this.prepare(sql).run(...params);
  }

  /**
   * Runs `body` in one BEGIN IMMEDIATE transaction: the write lock is taken before the first read, so what the
   * body reads (a lease, a registry row) cannot change under it, whichever process writes next. `body` may run
   * several times (the database was locked): it must not change anything outside the database.
   */
  write<T>(what: string, body: () => T): Promise<T> {
    const transaction = this.db.transaction(body);
    return this.retryBusy(what, () => transaction.immediate());
  }

  /** A read (one statement or several that need no snapshot), retried like a write when the file is locked. */
  read<T>(what: string, body: () => T): Promise<T> {
    return this.retryBusy(what, body);
  }

  /**
   * Retries SQLITE_BUSY (another process holds the lock longer than the busy timeout) a bounded number of times,
   * sleeping between attempts so the event loop runs meanwhile; any other failure, and the last busy one, is a
   * StorageError. Errors of our own (LeaseLostError, a refused state) pass through as they are.
   */
  async retryBusy<T>(what: string, body: () => T): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return body();
      } catch (err) {
        if (err instanceof TributaryError) throw err;
        if (isBusy(err) && attempt < this.busyAttempts) {
          await sleep(Math.min(1000, 25 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2));
          continue;
        }
        throw new StorageError(
          `the local index could not ${what}${isBusy(err) ? ' (the database stayed locked by another process)' : ''}: ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
  }

  close(): void {
    this.statements.clear();
    if (this.db.open) this.db.close();
  }
}

export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'));
}

/**
 * Opens (creating it 0600) the database of a data folder the caller prepared (0700), sets the pragmas and brings
 * the schema to SCHEMA_VERSION. Refuses a database written by a newer version: its schema may mean more than
 * this code knows, and writing to it could break what the newer version relies on.
 */
export function openDatabase(dataDir: string, options: DatabaseOptions = {}): SqliteDatabase {
  const file = path.join(dataDir, DATABASE_FILE);
  // SQLite creates a missing file with the umask's mode, and its -wal and -shm files with the database file's
  // mode: creating it 0600 first makes all three this user's only.
  fs.closeSync(fs.openSync(file, 'a', 0o600));
  fs.chmodSync(file, 0o600);
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
  } catch (err) {
    throw new StorageError(`could not open the local index ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const handle = new SqliteDatabase(db, file, options);
  try {
    // Opening is synchronous (at start-up only): a folder another process is migrating or writing is waited for
    // here, in short blocking sleeps, a bounded number of times.
    for (let attempt = 1; ; attempt++) {
      try {
        configure(db);
        migrate(db, file);
        break;
      } catch (err) {
        if (!isBusy(err) || attempt >= (options.busyAttempts ?? DEFAULT_BUSY_ATTEMPTS)) throw err;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50 * attempt);
      }
    }
  } catch (err) {
    handle.close();
    if (err instanceof TributaryError) throw err;
    throw new StorageError(`could not prepare the local index ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return handle;
}

function configure(db: Database.Database): void {
  // Persistent in the file; a no-op when it is WAL already (the usual case, so no exclusive lock is needed).
  const mode = db.pragma('journal_mode = WAL', { simple: true }) as string;
  if (String(mode).toLowerCase() !== 'wal') {
    throw new StorageError(`the local index could not switch to WAL mode (it is in ${mode} mode)`);
  }
  // FULL in WAL mode: each commit fsyncs the log, so a committed message survives a power cut (rule 1).
  db.pragma('synchronous = FULL');
  db.pragma('fullfsync = ON');
  db.pragma('checkpoint_fullfsync = ON');
  db.pragma('foreign_keys = ON');
  // The schema uses no functions from outside; nothing in the file should be able to call ours.
  db.pragma('trusted_schema = OFF');
}

function migrate(db: Database.Database, file: string): void {
  const version = () => Number(db.pragma('user_version', { simple: true }));
  if (version() === SCHEMA_VERSION) return;
  if (version() > SCHEMA_VERSION) {
    throw new StorageError(
      `the local index ${file} has schema version ${version()}, newer than this Tributary knows (${SCHEMA_VERSION}): run the newer version, or restore a backup made before the upgrade`,
    );
  }
  // Each step in its own immediate transaction that reads the version again: two processes opening a fresh
  // folder at once apply each migration once.
  for (;;) {
    const done = db
      .transaction(() => {
        const at = version();
        if (at >= SCHEMA_VERSION) return true;
        db.exec(MIGRATIONS[at]!);
        db.pragma(`user_version = ${at + 1}`);
        return false;
      })
      .immediate();
    if (done) return;
  }
}
