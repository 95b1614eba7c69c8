import fs from 'node:fs';
import path from 'node:path';
import { openEmbeddedStore, type EmbeddedStore } from '../adapters/sqlite/embedded-store';
import { ConfigError } from '../core/errors';
import { prepareDataDir, type DataDirNotes } from './data-dir';

/**
 * Local mode's store (issue #16): the index in one SQLite file and the raw messages as files, both under the data
 * folder. Unlike the DynamoDB Local + S3 server pair it replaces, it needs no Java, starts in milliseconds, listens
 * on nothing, and several processes may use one folder at once (`npm start` and a CLI `sync`): SQLite's file locks
 * keep each transaction whole and the sources' leases keep one run per source, as in AWS.
 */

/** Where DynamoDB Local (`-sharedDb`) kept the index of a data folder made by an earlier version. */
export function legacyIndexFile(dataDir: string): string {
  return path.join(dataDir, 'dynamodb', 'shared-local-instance.db');
}

export function embeddedIndexFile(dataDir: string): string {
  return path.join(dataDir, 'index.sqlite');
}

/** Present while `tributary migrate` runs (and after one that did not finish): the new index is not complete. */
export function migrationMarker(dataDir: string): string {
  return path.join(dataDir, 'migrating.json');
}

/** A data folder an earlier version wrote (DynamoDB Local and the S3 server) and nothing has migrated yet. */
export function holdsLegacyStore(dataDir: string): boolean {
  return fs.existsSync(legacyIndexFile(dataDir)) && !fs.existsSync(embeddedIndexFile(dataDir));
}

export interface OpenedLocalStore {
  store: EmbeddedStore;
  notes: DataDirNotes;
}

/**
 * Opens the data folder's embedded store, creating the folder (0700) on first use. A folder that still holds an
 * earlier version's store is refused with the command that moves it: opening an empty index beside it would make
 * every message look new, and a delete-on-retrieve source would then fetch (and delete upstream) mail the old
 * store already holds... only once, but the user would see two inboxes.
 */
export function openLocalStore(dataDir: string): OpenedLocalStore {
  if (holdsLegacyStore(dataDir))
    throw new ConfigError(
      `store.dataDir: ${dataDir} holds the store of an earlier version (DynamoDB Local and an S3 server, which needed Java): ` +
        `move it once with "tributary migrate --from local-aws" (nothing upstream is touched; the old files stay until you remove them)`,
    );
  if (fs.existsSync(migrationMarker(dataDir)))
    throw new ConfigError(
      `store.dataDir: ${dataDir} is being migrated, or a migration did not finish: run "tributary migrate --from local-aws" (again) and wait for it to end`,
    );
  const notes = prepareDataDir(dataDir, ['mail']);
  return { store: openEmbeddedStore(dataDir), notes };
}
