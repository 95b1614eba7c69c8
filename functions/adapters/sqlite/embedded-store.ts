import path from 'node:path';
import { FileRawMailStore } from '../files/raw-mail-store';
import { openDatabase, type DatabaseOptions, type SqliteDatabase } from './database';
import { SqliteInbox } from './inbox';
import { SqliteMessageIndex } from './message-index';
import { SqliteSourceRegistry } from './source-registry';

/**
 * The local mode's store: the index ports, the inbox and the source registry on one SQLite connection
 * (`<dataDir>/index.sqlite`), raw messages as files under `<dataDir>/mail`. For one machine only: better-sqlite3 is
 * a native module, so nothing a Lambda handler imports may import this file (the bundles stay free of it).
 */
export interface EmbeddedStore {
  index: SqliteMessageIndex;
  inbox: SqliteInbox;
  registry: SqliteSourceRegistry;
  raw: FileRawMailStore;
  /** The database, for tests and maintenance (backup, integrity check). */
  database: SqliteDatabase;
  close(): void;
}

export const MAIL_FOLDER = 'mail';

/** Opens the store of a data folder the caller prepared (0700: functions/local/data-dir.ts). */
export function openEmbeddedStore(dataDir: string, options: DatabaseOptions = {}): EmbeddedStore {
  const database = openDatabase(dataDir, options);
  return {
    index: new SqliteMessageIndex(database),
    inbox: new SqliteInbox(database),
    registry: new SqliteSourceRegistry(database),
    raw: new FileRawMailStore(path.join(dataDir, MAIL_FOLDER)),
    database,
    close: () => database.close(),
  };
}
