import fs from 'node:fs';
import path from 'node:path';
import { QueryCommand, ScanCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoInbox, contentId } from '../adapters/dynamodb/inbox';
import { DynamoMessageIndex } from '../adapters/dynamodb/message-index';
import { keys } from '../adapters/dynamodb/keys';
import { toRecord } from '../adapters/dynamodb/records';
import { S3RawMailStore } from '../adapters/s3/raw-mail-store';
import { openEmbeddedStore, type EmbeddedStore } from '../adapters/sqlite/embedded-store';
import { ConfigError } from '../core/errors';
import type { AuditRecord, FolderState, MessageRecord, UpstreamId } from '../core/model';
import type { Lease } from '../core/ports';
import { collect } from '../core/pipeline';
import { startLocalAws, type LocalAws } from '../local/emulators';
import { embeddedIndexFile, legacyIndexFile, migrationMarker } from '../local/embedded';
import { makeAwsClients } from '../shared/aws-clients';
import type { Config } from '../shared/config';
import type { Io } from './main';

/**
 * `tributary migrate --from local-aws` (issue #16): moves a data folder that an earlier version kept in DynamoDB
 * Local and the S3 server into the embedded store (SQLite and files) in the same folder. One way, once, and safe to
 * run again: it starts the old servers on the old files (Java is needed this one time), copies every stored message
 * byte-exact (each checked against its sha256), and replays the index through the embedded store's own ports, so the
 * new index holds what the engine itself would have written: the messages and their identities (so nothing is
 * fetched again), the aliases, the IMAP checkpoints, the failure records, the audit trail in order (evictions
 * happen again as they happened: counters and the one-copy registry come out right), intents not yet completed
 * (the next run reconciles them), and each inbox entry's read or removed state. Nothing upstream is touched and the
 * old files stay until the user removes them. A marker file keeps the half-migrated store closed until a run of
 * this command completes.
 */

const LEGACY_TABLE = 'tributary';
const LEGACY_BUCKET = 'tributary-raw';
const HOLDER = 'tributary-migrate';
const LEASE_MS = 10 * 60 * 1000;

type Item = Record<string, unknown>;

interface SourceCounts {
  sourceId: string;
  messages: number;
  aliases: number;
  evicted: number;
  bytes: number;
  folders: number;
  failures: number;
  audit: number;
  pending: number;
}

async function* queryAll(db: DynamoDBDocumentClient, pk: string, prefix: string): AsyncIterable<Item> {
  let start: Item | undefined;
  do {
    const out = await db.send(
      new QueryCommand({
        TableName: LEGACY_TABLE,
        KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
        ExpressionAttributeValues: { ':pk': pk, ':p': prefix },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    for (const item of out.Items ?? []) yield item;
    start = out.LastEvaluatedKey;
  } while (start);
}

async function* scanAll(db: DynamoDBDocumentClient, sortKeyPrefix: string): AsyncIterable<Item> {
  let start: Item | undefined;
  do {
    const out = await db.send(
      new ScanCommand({
        TableName: LEGACY_TABLE,
        FilterExpression: 'begins_with(SK, :p)',
        ExpressionAttributeValues: { ':p': sortKeyPrefix },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }),
    );
    for (const item of out.Items ?? []) yield item;
    start = out.LastEvaluatedKey;
  } while (start);
}

/** Every source the old store knows: those with counters (they committed something) and the config's. */
async function legacySources(db: DynamoDBDocumentClient, config: Config): Promise<string[]> {
  const ids = new Set(config.sources.map((s) => s.id));
  for await (const item of scanAll(db, keys.statsSk)) {
    if (item.SK === keys.statsSk) ids.add(String(item.PK).slice('SRC#'.length));
  }
  return [...ids].sort();
}

class Migration {
  private readonly old: DynamoMessageIndex;
  private readonly oldInbox: DynamoInbox;
  private readonly oldRaw: S3RawMailStore;

  constructor(
    private readonly db: DynamoDBDocumentClient,
    clients: ReturnType<typeof makeAwsClients>,
    private readonly store: EmbeddedStore,
  ) {
    this.old = new DynamoMessageIndex(db, LEGACY_TABLE);
    this.oldInbox = new DynamoInbox(db, LEGACY_TABLE);
    this.oldRaw = new S3RawMailStore(clients.s3, LEGACY_BUCKET);
  }

  /** Copies the object unless the new store holds it already with the same size and sha256 (a rerun). */
  private async copyObject(object: MessageRecord['object']): Promise<void> {
    const have = await this.store.raw.head(object.key);
    if (have && have.size === object.size && (have.sha256 === undefined || have.sha256 === object.sha256))
      return;
    const bytes = await collect(await this.oldRaw.get(object.key));
    // The file store checks size and sha256 as it writes: a corrupt old object stops the migration here.
    await this.store.raw.put(
      object.key,
      (async function* () {
        yield bytes;
      })(),
      {
        sha256: object.sha256,
        size: object.size,
      },
    );
  }

  async source(sourceId: string): Promise<SourceCounts> {
    const counts: SourceCounts = {
      sourceId,
      messages: 0,
      aliases: 0,
      evicted: 0,
      bytes: 0,
      folders: 0,
      failures: 0,
      audit: 0,
      pending: 0,
    };
    const now = Date.now();
    const lease = await this.store.index.acquireLease(sourceId, HOLDER, LEASE_MS, now);
    if (!lease)
      throw new ConfigError(
        `source ${sourceId} is being synced in the new store right now: stop "tributary serve" and any sync, then migrate again`,
      );
    try {
      await this.items(sourceId, lease, counts);
      for await (const item of queryAll(this.db, keys.sourcePk(sourceId), 'STATE#imap#')) {
        const { PK: _pk, SK: _sk, type: _type, ...state } = item;
        await this.store.index.saveFolderState(lease, state as unknown as FolderState);
        counts.folders++;
      }
      for (const failure of await this.old.messageFailures(sourceId)) {
        await this.store.index.recordMessageFailure(lease, failure);
        counts.failures++;
      }
      await this.audit(sourceId, lease, counts);
      await this.store.index.releaseLease(lease);
    } catch (err) {
      await this.store.index.releaseLease(lease).catch(() => undefined);
      throw err;
    }
    return counts;
  }

  /** Messages (and tombstones, as stored messages first: the audit replay evicts them) then aliases. */
  private async items(sourceId: string, lease: Lease, counts: SourceCounts): Promise<void> {
    const aliases: Item[] = [];
    const contents = new Map<string, string>();
    for await (const item of queryAll(this.db, keys.sourcePk(sourceId), keys.messagePrefix)) {
      if (item.type === 'alias') {
        aliases.push(item);
        continue;
      }
      if (item.type !== 'message' && item.type !== 'evicted') continue;
      const record = toRecord(item);
      contents.set(record.identity, record.object.contentSha256);
      if (item.type === 'message') {
        await this.copyObject(record.object);
        counts.messages++;
        counts.bytes += record.object.size;
      } else {
        counts.evicted++;
      }
      await this.store.index.commitMessage(lease, record);
    }
    for (const alias of aliases) {
      const target = String(alias.target);
      const contentSha256 = contents.get(target);
      if (!contentSha256) continue; // an alias to nothing the old store held: nothing to point at
      await this.store.index.commitAlias(lease, alias.upstream as UpstreamId, target, contentSha256);
      counts.aliases++;
    }
  }

  /**
   * The audit trail in order: each completed action begun and completed again with its own times (an eviction
   * evicts again here), then the intents still pending begun as they were. Tombstones the trail does not explain
   * (none should exist) are evicted at the end so the new index holds no more than the old one.
   */
  private async audit(sourceId: string, lease: Lease, counts: SourceCounts): Promise<void> {
    const pending = await this.old.pendingActions(sourceId);
    const pendingIds = new Set(pending.map((r) => r.id));
    const done = new Set((await collectAll(this.store.index.auditTrail(sourceId))).map((r) => r.id));
    for await (const record of this.old.auditTrail(sourceId)) {
      if (pendingIds.has(record.id) || done.has(record.id) || record.state === 'intent') continue;
      const completedAt = record.completedAt ? Date.parse(record.completedAt) : Date.parse(record.at);
      await this.store.index.beginActions(lease, [record]);
      if (record.action === 'evict' && record.state === 'done') {
        await this.store.index.evict(lease, record, completedAt);
      }
      await this.store.index.completeActions(
        lease,
        [
          {
            record,
            state: record.state,
            ...(record.usageAfter === undefined ? {} : { usageAfter: record.usageAfter }),
            ...(record.note === undefined ? {} : { note: record.note }),
          },
        ],
        completedAt,
      );
      counts.audit++;
    }
    const stillStored = await this.store.index.lookup(sourceId, await this.tombstones(sourceId));
    for (const [identity, copy] of stillStored) {
      if (copy.state !== 'stored') continue;
      const record: AuditRecord = {
        id: `${new Date().toISOString()}#migrate-${identity}`,
        sourceId,
        action: 'evict',
        policy: 'inbox-quota',
        why: 'evicted before the migration (no audit record of it)',
        identity,
        target: identity,
        object: { key: copy.key, size: copy.size, sha256: copy.sha256 },
        at: new Date().toISOString(),
        state: 'done',
      };
      await this.store.index.evict(lease, record, Date.now());
    }
    if (pending.length) {
      await this.store.index.beginActions(lease, pending);
      counts.pending = pending.length;
    }
  }

  private async tombstones(sourceId: string): Promise<string[]> {
    const out: string[] = [];
    for await (const item of queryAll(this.db, keys.sourcePk(sourceId), keys.messagePrefix)) {
      if (item.type === 'evicted') out.push(String(item.identity));
    }
    return out;
  }

  /** Read and removed state of every merged inbox entry. */
  async inboxStates(): Promise<{ read: number; removed: number }> {
    let read = 0;
    let removed = 0;
    for await (const item of scanAll(this.db, keys.registrySk)) {
      if (item.SK !== keys.registrySk || item.type !== 'content') continue;
      const id = contentId(String(item.sha256));
      const before = await this.oldInbox.get(id);
      if (!before) {
        if (await this.store.inbox.removeFromInbox(id, 'before the migration', Date.now())) removed++;
      } else if (!before.unread) {
        if (await this.store.inbox.setUnread(id, false, Date.now())) read++;
      }
    }
    return { read, removed };
  }
}

async function collectAll<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

export async function runMigrate(
  config: Config,
  values: { from?: string; json?: boolean },
  io: Io,
): Promise<number> {
  if (values.from !== 'local-aws')
    throw new ConfigError(
      'migrate needs --from local-aws (the only store an earlier version kept on one machine)',
    );
  if (config.store.mode !== 'local')
    throw new ConfigError(`${config.file}: migrate moves a local data folder; this config's store is "aws"`);
  const dataDir = config.store.dataDir;
  if (!fs.existsSync(legacyIndexFile(dataDir)))
    throw new ConfigError(
      `${dataDir} holds no store of an earlier version (no ${path.relative(dataDir, legacyIndexFile(dataDir))}): nothing to migrate`,
    );
  const marker = migrationMarker(dataDir);
  if (fs.existsSync(embeddedIndexFile(dataDir)) && !fs.existsSync(marker))
    throw new ConfigError(
      `${dataDir} was migrated already (${path.basename(embeddedIndexFile(dataDir))} is there): nothing to do`,
    );
  fs.writeFileSync(
    marker,
    JSON.stringify({ from: 'local-aws', startedAt: new Date().toISOString() }) + '\n',
    {
      mode: 0o600,
    },
  );
  // Progress for the person waiting, on stderr whatever the output format (stdout carries the result).
  const say = (line: string) => io.err(`${line}\n`);
  say("starting the earlier version's servers on the old files (DynamoDB Local needs Java this one time)...");
  let legacy: LocalAws | undefined;
  let store: EmbeddedStore | undefined;
  let clients: ReturnType<typeof makeAwsClients> | undefined;
  try {
    legacy = await startLocalAws({
      dataDir,
      bucket: LEGACY_BUCKET,
      s3Dir: path.join(dataDir, 's3'),
      purpose: 'migrate',
    });
    // The SDK reads the servers' endpoints and credentials from the environment.
    Object.assign(process.env, legacy.env);
    clients = makeAwsClients();
    store = openEmbeddedStore(dataDir);
    const migration = new Migration(clients.documents, clients, store);
    const sources: SourceCounts[] = [];
    for (const id of await legacySources(clients.documents, config)) {
      say(`${id}: copying...`);
      const counts = await migration.source(id);
      sources.push(counts);
      say(
        `${id}: ${counts.messages} messages (${(counts.bytes / 1024 / 1024).toFixed(1)} MB, each checked by sha256), ${counts.aliases} aliases, ${counts.evicted} evicted, ${counts.folders} folder checkpoints, ${counts.audit} audit records, ${counts.pending} pending, ${counts.failures} failure records`,
      );
      const summary = await store.index.summary(id);
      if (summary.messages !== counts.messages)
        throw new Error(
          `${id}: the new store counts ${summary.messages} messages, the old one ${counts.messages}: stopped (the old files are untouched; run migrate again after reporting this)`,
        );
    }
    const inbox = await migration.inboxStates();
    fs.rmSync(marker);
    const result = { migrated: true, dataDir, sources, inbox };
    if (values.json) io.out(JSON.stringify(result, null, 2) + '\n');
    else
      io.out(
        `migrated ${sources.length} source(s) into the embedded store in ${dataDir} (${inbox.read} entries read, ${inbox.removed} removed from the inbox, as before).\n` +
          `Java is no longer needed. The old files (${path.join(dataDir, 'dynamodb')}, ${path.join(dataDir, 's3')}) are no longer read: remove them when you are satisfied.\n`,
      );
    return 0;
  } finally {
    store?.close();
    clients?.dynamodb.destroy();
    clients?.s3.destroy();
    await legacy?.stop();
  }
}
