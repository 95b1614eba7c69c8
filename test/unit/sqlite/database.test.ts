import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DATABASE_FILE, SCHEMA_VERSION, openDatabase } from '../../../functions/adapters/sqlite/database';
import { openEmbeddedStore } from '../../../functions/adapters/sqlite/embedded-store';
import { StorageError } from '../../../functions/core/errors';
import { messageRecord } from '../../support/records';
import { dataDir, mode } from './helpers';

/** The embedded store's database file: schema version, pragmas, modes, and waiting out another process's lock. */

const T0 = Date.parse('2026-03-01T10:00:00.000Z');

describe('the database file', () => {
  it('is created 0600 with its log, at the current schema version, in WAL mode with full fsync', async () => {
    const dir = dataDir();
    const store = openEmbeddedStore(dir);
    try {
      const lease = await store.index.acquireLease('modes', 'test', 60_000, T0);
      expect(await store.index.commitMessage(lease!, messageRecord('modes', 1, T0))).toBe('committed');
      const file = path.join(dir, DATABASE_FILE);
      expect(mode(file)).toBe(0o600);
      // SQLite gives the log the database file's mode: the mail's index is never readable by others.
      expect(mode(`${file}-wal`)).toBe(0o600);
      const db = store.database.db;
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(2); // FULL
      expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    } finally {
      store.close();
    }
  });

  it('tightens a database file left open to others', () => {
    const dir = dataDir();
    fs.writeFileSync(path.join(dir, DATABASE_FILE), '', { mode: 0o644 });
    fs.chmodSync(path.join(dir, DATABASE_FILE), 0o644);
    openDatabase(dir).close();
    expect(mode(path.join(dir, DATABASE_FILE))).toBe(0o600);
  });

  it('opens an existing database again without migrating it twice, and keeps its data', async () => {
    const dir = dataDir();
    const first = openEmbeddedStore(dir);
    const lease = await first.index.acquireLease('again', 'test', 60_000, T0);
    await first.index.commitMessage(lease!, messageRecord('again', 1, T0));
    first.close();
    const second = openEmbeddedStore(dir);
    try {
      expect(second.database.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(await second.index.inboxUsage('again')).toEqual({ messages: 1, bytes: 100 });
    } finally {
      second.close();
    }
  });

  it('refuses a database written by a newer schema version, changing nothing', () => {
    const dir = dataDir();
    openDatabase(dir).close();
    const raw = new Database(path.join(dir, DATABASE_FILE));
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => openDatabase(dir)).toThrow(StorageError);
    expect(() => openDatabase(dir)).toThrow(/newer than this Tributary knows/);
    const check = new Database(path.join(dir, DATABASE_FILE));
    expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION + 1);
    check.close();
  });
});

describe('another process holding the write lock', () => {
  /** A second connection that takes the write lock and keeps it, as another process mid-transaction would. */
  function blocker(dir: string) {
    const db = new Database(path.join(dir, DATABASE_FILE));
    db.exec('BEGIN IMMEDIATE');
    return {
      release: () => {
        db.exec('COMMIT');
        db.close();
      },
    };
  }

  it('is waited out with asynchronous retries: the event loop runs meanwhile and the write then succeeds', async () => {
    const dir = dataDir();
    const store = openEmbeddedStore(dir, { busyTimeoutMs: 20, busyAttempts: 20 });
    try {
      const lock = blocker(dir);
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 5);
      const releasing = setTimeout(() => lock.release(), 150);
      const started = Date.now();
      const lease = await store.index
        .acquireLease('busy', 'test', 60_000, T0)
        .finally(() => clearInterval(ticker));
      clearTimeout(releasing);
      expect(lease?.fence).toBe(1);
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      // Timers ran while the write waited: it slept between attempts instead of blocking.
      expect(ticks).toBeGreaterThan(5);
    } finally {
      store.close();
    }
  });

  it('fails as a StorageError after a bounded number of attempts, writing nothing', async () => {
    const dir = dataDir();
    const store = openEmbeddedStore(dir, { busyTimeoutMs: 10, busyAttempts: 3 });
    const lock = blocker(dir);
    try {
      const error = await store.index.acquireLease('stuck', 'test', 60_000, T0).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StorageError);
      expect((error as Error).message).toMatch(/locked by another process/);
    } finally {
      lock.release();
    }
    try {
      expect(await store.index.leaseState('stuck')).toBeUndefined();
    } finally {
      store.close();
    }
  });
});
