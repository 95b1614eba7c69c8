import { randomBytes } from 'node:crypto';
import { PostalMimeParser } from '../../functions/adapters/mime';
import type { Source } from '../../functions/core/model';
import type {
  Bytes,
  Credentials,
  InboxReader,
  InboxWriter,
  MessageIndex,
  RawMailStore,
  SourceRegistry,
} from '../../functions/core/ports';
import { syncSource, type SyncDeps, type SyncOptions } from '../../functions/core/sync';
import type { SourceRunReport } from '../../functions/core/model';
import { makeAwsClients, type AwsClients } from '../../functions/shared/aws-clients';
import { makeConnector } from '../../functions/shared/connector';
import { silentLogger } from '../../functions/shared/runtime';
import {
  newDataDir,
  openDynamoStore,
  openEmbeddedTestStore,
  type OpenedStore,
  type StoreKind,
} from '../contract/implementations';
import type { MailLab, TestUser } from './mail-lab';

export type { StoreKind } from '../contract/implementations';

/** The store kinds the sync-level suites run on (describe.each). */
export const STORE_KINDS: readonly StoreKind[] = ['dynamodb', 'embedded'];

/** TRIBUTARY_TEST_STORE: `dynamodb` (DynamoDB Local and s3rver, the default) or `embedded` (SQLite and files). */
export function storeKindFromEnv(env: NodeJS.ProcessEnv = process.env): StoreKind {
  const kind = env.TRIBUTARY_TEST_STORE || 'dynamodb';
  if (kind !== 'dynamodb' && kind !== 'embedded')
    throw new Error(`TRIBUTARY_TEST_STORE must be dynamodb or embedded, not ${kind}`);
  return kind;
}

export interface TestTributaryOptions {
  /** Default: TRIBUTARY_TEST_STORE, else `dynamodb`. */
  store?: StoreKind;
  /**
   * The embedded store's data folder, to share one with another TestTributary or a child process (`t.dataDir`).
   * Default: TRIBUTARY_TEST_DATA_DIR, else a new folder of this instance's own, removed by close().
   */
  dataDir?: string;
}

/**
 * Tributary wired to a store of the harness, as the CLI would be, with passwords in memory: DynamoDB Local and the
 * S3 server (`dynamodb`, the default), or the embedded store of local mode on a data folder (`embedded`).
 * `clients`, `table` and `bucket` are the AWS harness's whatever the store; only a `dynamodb` store uses them.
 */
export class TestTributary {
  readonly kind: StoreKind;
  /** The embedded store's data folder (undefined for `dynamodb`). */
  readonly dataDir?: string;
  readonly clients: AwsClients;
  readonly table = process.env.TRIBUTARY_TEST_TABLE!;
  readonly bucket = process.env.TRIBUTARY_TEST_BUCKET!;
  readonly index: MessageIndex;
  readonly store: RawMailStore;
  readonly inbox: InboxReader & InboxWriter;
  readonly registry: SourceRegistry;
  private readonly opened: OpenedStore;
  readonly passwords = new Map<string, string>();
  readonly credentials: Credentials = {
    password: (source) => {
      const p = this.passwords.get(source.id);
      return p === undefined
        ? Promise.reject(new Error(`no test password for ${source.id}`))
        : Promise.resolve(p);
    },
  };
  readonly deps: SyncDeps;

  constructor(
    readonly lab: MailLab,
    options: TestTributaryOptions = {},
  ) {
    this.kind = options.store ?? storeKindFromEnv();
    if (this.kind === 'dynamodb') {
      const dynamo = openDynamoStore(this.table);
      this.clients = dynamo.clients;
      this.opened = dynamo;
    } else {
      this.clients = makeAwsClients();
      const given = options.dataDir ?? (process.env.TRIBUTARY_TEST_DATA_DIR || undefined);
      const embedded = openEmbeddedTestStore(given ?? newDataDir(), given === undefined);
      this.dataDir = embedded.dataDir;
      this.opened = embedded;
    }
    this.index = this.opened.index;
    this.store = this.opened.raw;
    this.inbox = this.opened.inbox;
    this.registry = this.opened.registry;
    this.deps = {
      connector: makeConnector(),
      store: this.store,
      index: this.index,
      parser: new PostalMimeParser(),
      credentials: this.credentials,
      clock: { now: () => Date.now() },
      logger: silentLogger,
    };
  }

  /** What a child process needs to open this same store (test/support/child-sync.ts). */
  get storeSpec(): { store: StoreKind; dataDir?: string } {
    return { store: this.kind, ...(this.dataDir === undefined ? {} : { dataDir: this.dataDir }) };
  }

  source(
    user: TestUser,
    protocol: 'imap' | 'pop3',
    tls: Source['tls'] = 'implicit',
    overrides: Partial<Source> = {},
  ): Source {
    const id = `${protocol}-${tls}-${randomBytes(5).toString('hex')}`;
    this.passwords.set(id, user.password);
    const ports = this.lab.info.ports;
    const port =
      protocol === 'imap'
        ? tls === 'implicit'
          ? ports.imaps
          : ports.imap
        : tls === 'implicit'
          ? ports.pop3s
          : ports.pop3;
    return {
      id,
      protocol,
      host: this.lab.info.host,
      port,
      tls,
      ca: this.lab.ca.toString(),
      servername: this.lab.info.servername,
      user: user.name,
      folders: protocol === 'imap' ? ['INBOX'] : [],
      pollMinutes: 5,
      enabled: true,
      retention: { mode: 'keep' },
      ...overrides,
    };
  }

  /** A source for a scripted server (a fake) on loopback: no TLS, no CA, user `user`, password `secret`. */
  fakeSource(protocol: 'imap' | 'pop3', port: number, overrides: Partial<Source> = {}): Source {
    return {
      ...this.source({ name: 'user', password: 'secret', home: '', maildir: '' }, protocol, 'none'),
      port,
      ca: undefined,
      ...overrides,
    };
  }

  sync(source: Source, options: Partial<SyncOptions> = {}): Promise<SourceRunReport> {
    return syncSource(this.deps, source, { deadline: Date.now() + 120_000, leaseTtlMs: 30_000, ...options });
  }

  async stored(sourceId: string) {
    const out = [];
    for await (const m of this.index.sourceMessages(sourceId)) out.push(m);
    return out;
  }

  async bytes(key: string): Promise<Buffer> {
    return readAll(await this.store.get(key));
  }

  /** Every raw object key under `prefix` (`raw/<source id>/`), sorted: for counting orphans, whatever the store. */
  objectKeys(prefix: string): Promise<string[]> {
    return this.opened.objectKeys(prefix);
  }

  close(): void {
    this.opened.close();
    if (this.kind !== 'dynamodb') {
      this.clients.dynamodb.destroy();
      this.clients.s3.destroy();
    }
  }
}

export async function readAll(body: Bytes): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}
