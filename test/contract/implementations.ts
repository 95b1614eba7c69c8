import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { DynamoInbox } from '../../functions/adapters/dynamodb/inbox';
import { DynamoMessageIndex } from '../../functions/adapters/dynamodb/message-index';
import { DynamoSourceRegistry } from '../../functions/adapters/dynamodb/source-registry';
import { S3RawMailStore } from '../../functions/adapters/s3/raw-mail-store';
import { MAIL_FOLDER, openEmbeddedStore } from '../../functions/adapters/sqlite/embedded-store';
import { identityKey, type AuditRecord, type MessageRecord } from '../../functions/core/model';
import type {
  Bytes,
  InboxReader,
  InboxWriter,
  MessageIndex,
  RawMailStore,
  SourceRegistry,
} from '../../functions/core/ports';
import { makeAwsClients } from '../../functions/shared/aws-clients';

/**
 * Every implementation of the store's ports, for the contract suites (test/contract/*.test.ts: one suite per port,
 * `describe.each(implementations)`) and for TestTributary (test/support/tributary.ts), which runs the sync-level
 * suites on either store. An implementation opens a store: the index, the merged inbox, the source registry and the
 * raw message store, which share their data (a message committed through `index` is in `inbox`).
 */
export interface OpenedStore {
  index: MessageIndex;
  inbox: InboxReader & InboxWriter;
  registry: SourceRegistry;
  raw: RawMailStore;
  /** The raw object keys under `prefix`, sorted: what the store holds, for counting orphans. */
  objectKeys(prefix: string): Promise<string[]>;
  /**
   * Another handle on the same data, as another process opens it (new clients on the same table and bucket; a new
   * connection to the same data folder). The caller closes it, before this one.
   */
  sibling(): OpenedStore;
  close(): void;
}

export type StoreKind = 'dynamodb' | 'embedded';

export interface Implementation {
  name: string;
  kind: StoreKind;
  open(): Promise<OpenedStore>;
}

/**
 * The AWS pair as the harness runs it: DynamoDB Local's shared test table and the s3rver bucket (the global setup
 * sets TRIBUTARY_TEST_TABLE, TRIBUTARY_TEST_BUCKET and the endpoints). Shared by every test of the run, so tests
 * use source ids and contents of their own.
 */
export function openDynamoStore(table = process.env.TRIBUTARY_TEST_TABLE!): OpenedStore & {
  clients: ReturnType<typeof makeAwsClients>;
  table: string;
  bucket: string;
} {
  const clients = makeAwsClients();
  const bucket = process.env.TRIBUTARY_TEST_BUCKET!;
  return {
    clients,
    table,
    bucket,
    index: new DynamoMessageIndex(clients.documents, table),
    inbox: new DynamoInbox(clients.documents, table),
    registry: new DynamoSourceRegistry(clients.documents, table),
    raw: new S3RawMailStore(clients.s3, bucket),
    async objectKeys(prefix) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const out = await clients.s3.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
        );
        keys.push(...(out.Contents ?? []).map((o) => o.Key!));
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
      return keys.sort();
    },
    sibling: () => openDynamoStore(table),
    close: () => {
      clients.dynamodb.destroy();
      clients.s3.destroy();
    },
  };
}

/** A new empty folder for an embedded store, under the harness's scratch folder when there is one. */
export function newDataDir(): string {
  const parent = process.env.TRIBUTARY_TEST_SCRATCH ?? os.tmpdir();
  return fs.mkdtempSync(path.join(fs.existsSync(parent) ? parent : os.tmpdir(), 'embedded-'));
}

/**
 * The embedded store of local mode on `dataDir` (index.sqlite and mail/ in it). `owned`: the folder is this store's
 * alone and goes when it closes.
 */
export function openEmbeddedTestStore(dataDir: string, owned: boolean): OpenedStore & { dataDir: string } {
  const embedded = openEmbeddedStore(dataDir);
  return {
    dataDir,
    index: embedded.index,
    inbox: embedded.inbox,
    registry: embedded.registry,
    raw: embedded.raw,
    objectKeys: async (prefix) => listFiles(path.join(dataDir, MAIL_FOLDER), prefix),
    sibling: () => openEmbeddedTestStore(dataDir, false),
    close: () => {
      embedded.close();
      if (owned) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The keys of the files under `root` that start with `prefix`: every file but the store's own (a put's temporary
 * file, a dot file; a sha256 sidecar), as S3 lists objects but not unfinished uploads.
 */
function listFiles(root: string, prefix: string): string[] {
  const keys: string[] = [];
  const visit = (dir: string, key: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const k = key ? `${key}/${e.name}` : e.name;
      if (e.isDirectory()) visit(path.join(dir, e.name), k);
      else if (!e.name.endsWith('.sha256') && k.startsWith(prefix)) keys.push(k);
    }
  };
  visit(root, '');
  return keys.sort();
}

export const dynamodb: Implementation = {
  name: 'dynamodb+s3',
  kind: 'dynamodb',
  open: async () => openDynamoStore(),
};

export const embedded: Implementation = {
  name: 'embedded',
  kind: 'embedded',
  open: async () => openEmbeddedTestStore(newDataDir(), true),
};

export const implementations: Implementation[] = [dynamodb, embedded];

// ---- what the suites share -----------------------------------------------------------------------------------

export const T0 = Date.parse('2026-11-26T10:00:00.000Z');
export const HOUR = 3_600_000;
export const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * ISO dates far in the future and of this caller only (`at(0)` oldest, then one minute apart): messages dated so
 * head the merged inbox of a store other tests share.
 */
export function farFuture(): (minute: number) => string {
  const base =
    Date.UTC(3000 + Math.floor(Math.random() * 5000), 0, 1) + Math.floor(Math.random() * 300) * 86_400_000;
  return (minute) => iso(base + minute * 60_000);
}

/** A source id of its own (a slug, as the config schema wants), so tests never meet in a shared table. */
export function newSourceId(prefix = 'c'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** Content of its own: a sha256 no other test commits. */
export function newSha(): string {
  return createHash('sha256').update(randomBytes(16)).digest('hex');
}

/**
 * A message record as the sync commits it: INBOX UID `uid` (UIDVALIDITY 7), `size` bytes whose sha256 is `sha`
 * (new content unless given), committed at T0 + uid s, dated `sortDate` (default: uid hours before T0).
 */
export function record(
  sourceId: string,
  uid: number,
  options: {
    sha?: string;
    size?: number;
    sortDate?: string;
    subject?: string;
    from?: { name?: string; address?: string };
    folder?: string;
    uidValidity?: string;
  } = {},
): MessageRecord {
  const upstream = {
    kind: 'imap',
    folder: options.folder ?? 'INBOX',
    uidValidity: options.uidValidity ?? '7',
    uid,
  } as const;
  const identity = identityKey(upstream);
  const sha = options.sha ?? newSha();
  return {
    sourceId,
    identity,
    upstream,
    object: {
      key: `raw/${sourceId}/${createHash('sha256').update(identity).digest('hex').slice(0, 40)}.eml`,
      size: options.size ?? 100 * uid,
      sha256: sha,
      contentSha256: sha,
    },
    metadata: {
      subject: options.subject ?? `message ${uid}`,
      ...(options.from ? { from: options.from } : {}),
      to: [],
      cc: [],
      snippet: '',
      hasAttachments: false,
      attachments: [],
      parse: 'full',
    },
    fetchedAt: iso(T0 + uid * 1000),
    sortDate: options.sortDate ?? iso(T0 - uid * HOUR),
    seen: false,
    flagged: false,
  };
}

/** An audit record of `action` on `target`'s stored copy, at `at`, the `seq`-th of that instant. */
export function audit(
  target: MessageRecord,
  action: AuditRecord['action'],
  at = T0,
  seq = 1,
  extra: Partial<AuditRecord> = {},
): AuditRecord {
  return {
    id: `${iso(at)}#${String(seq).padStart(4, '0')}`,
    sourceId: target.sourceId,
    action,
    policy: action === 'evict' ? 'inbox-quota' : 'delete-on-retrieve',
    why: action === 'evict' ? 'inbox quota: oldest copy still upstream' : 'committed to the store',
    identity: target.identity,
    target: target.identity,
    object: { key: target.object.key, size: target.object.size, sha256: target.object.sha256 },
    at: iso(at),
    state: 'intent',
    ...extra,
  };
}

export async function all<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

export async function readAll(body: Bytes): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

/** `bytes` as a body in chunks of `chunk` bytes (odd sizes: no chunk boundary lines up with anything). */
export async function* bodyOf(bytes: Buffer, chunk = 64 * 1024 + 17): Bytes {
  for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk);
}

/**
 * The store for the tests of one `describe` block of an implementation: opened before them, closed after them.
 * Read `store()` inside a test.
 */
export function openFor(impl: Implementation): () => OpenedStore {
  let opened: OpenedStore | undefined;
  beforeAll(async () => {
    opened = await impl.open();
  });
  afterAll(() => opened?.close());
  return () => {
    if (!opened) throw new Error(`the ${impl.name} store is not open`);
    return opened;
  };
}
