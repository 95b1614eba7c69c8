import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoInbox } from '../adapters/dynamodb/inbox';
import { DynamoMessageIndex } from '../adapters/dynamodb/message-index';
import { PostalMimeParser } from '../adapters/mime';
import { S3RawMailStore } from '../adapters/s3/raw-mail-store';
import { ConfiguredCredentials } from '../adapters/secrets/credentials';
import { SsmCredentials } from '../adapters/secrets/ssm-credentials';
import { DynamoSourceRegistry } from '../adapters/dynamodb/source-registry';
import { ConfigError } from '../core/errors';
import type {
  InboxReader,
  InboxWriter,
  Logger,
  MailConnector,
  MessageIndex,
  RawMailStore,
  SourceRegistry,
} from '../core/ports';
import type { SyncDeps } from '../core/sync';
import { openLocalStore } from '../local/embedded';
import { makeAwsClients } from './aws-clients';
import { makeConnector } from './connector';
import type { Config } from './config';
import { resolveStore, type ResolvedStore } from './deployment';

export interface Runtime {
  deps: SyncDeps;
  index: MessageIndex;
  store: RawMailStore;
  /** The merged inbox as the web page reads and changes it. */
  inbox: InboxReader & InboxWriter;
  connector: MailConnector;
  /** Where the store is: for `aws`, the table and bucket (and the deployment, when the config names a stack). */
  location: ResolvedStore;
  /**
   * The sources this runtime works on: the config's, or for a deployed Tributary the ones registered in its table
   * (each with its SSM parameter as its secret).
   */
  sources: Config['sources'];
  /** A deployed Tributary's source registry and SSM client (the `sources add|update|remove...` commands). */
  registry?: DynamoSourceRegistry;
  ssm?: SSMClient;
  /**
   * Local mode: the schedules of the config's sources (the embedded store's registry), for `tributary serve`'s
   * scheduler: each source's next due time and back-off survive a restart.
   */
  schedules?: SourceRegistry;
  /**
   * Whether no other process can be running a sync on this store, so that a lease found in it was left by a
   * command that died. Never true since local mode's store is shared by processes (issue #16): such a lease is
   * released only when its holder is known to be gone (see the CLI).
   */
  exclusive: boolean;
  /** What opening changed that the user should hear about (the data folder's mode tightened). */
  notes: string[];
  /** The config file this runtime was opened from. */
  configFile: string;
  /**
   * Local mode: takes a source added while running (the first-run page) into `sources` and the credentials, as if
   * it had been in the config file at start.
   */
  addSource?: (source: Config['sources'][number]) => void;
  close(): Promise<void>;
}

export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/**
 * The composition root for one machine (CLI, `tributary serve`) or a test: builds every adapter once from the
 * config. Local mode opens the embedded store under `dataDir` (SQLite and files: functions/local/embedded.ts); the
 * `aws` store talks to a deployed table and bucket.
 */
export async function openRuntime(config: Config, logger: Logger = silentLogger): Promise<Runtime> {
  if (config.store.mode === 'local') {
    const { store: local, notes } = openLocalStore(config.store.dataDir);
    const connector = makeConnector(logger);
    const sources = [...config.sources];
    const secrets = new Map(sources.map((s) => [s.id, s.secret] as const));
    const credentials = new ConfiguredCredentials(secrets);
    const deps: SyncDeps = {
      connector,
      store: local.raw,
      index: local.index,
      parser: new PostalMimeParser(),
      credentials,
      clock: { now: () => Date.now() },
      logger,
    };
    return {
      deps,
      index: local.index,
      store: local.raw,
      inbox: local.inbox,
      connector,
      location: { mode: 'local', dataDir: config.store.dataDir },
      sources,
      schedules: local.registry,
      exclusive: false,
      notes,
      configFile: config.file,
      addSource: (source) => {
        sources.push(source);
        secrets.set(source.id, source.secret);
      },
      close: () => {
        local.close();
        return Promise.resolve();
      },
    };
  }
  return openAwsRuntime(config, logger);
}

async function openAwsRuntime(config: Config, logger: Logger): Promise<Runtime> {
  const location = await resolveStore(config.store);
  if (location.mode !== 'aws') throw new Error('unreachable: only a local store resolves to itself');
  if (location.deployment && config.sources.length)
    throw new ConfigError(
      `${config.file}: a deployed Tributary's sources live in its table, not in the config file: remove "sources" from it, after moving them with "tributary sources import --from FILE" (a copy of this file)`,
    );
  if (location.region) process.env.AWS_REGION = location.region;
  const { table, bucket } = location;
  const clients = makeAwsClients();
  const index = new DynamoMessageIndex(clients.documents, table);
  const store = new S3RawMailStore(clients.s3, bucket);
  const connector = makeConnector(logger);
  const ssm = new SSMClient({});
  const deployment = location.deployment;
  let sources = config.sources;
  let registry: DynamoSourceRegistry | undefined;
  let credentials: SyncDeps['credentials'];
  if (deployment) {
    // The same registry and password adapter as the Lambdas use (one parameter per source under the prefix).
    registry = new DynamoSourceRegistry(clients.documents, table);
    try {
      const entries = await registry.list();
      sources = entries.map((e) => ({
        ...e.source,
        secret: { ssmParameter: `${deployment.secretsPrefix}${e.source.id}` },
      }));
    } catch (err) {
      clients.dynamodb.destroy();
      clients.s3.destroy();
      ssm.destroy();
      throw err;
    }
    credentials = new SsmCredentials(ssm, deployment.secretsPrefix);
  } else {
    credentials = new ConfiguredCredentials(new Map(sources.map((s) => [s.id, s.secret] as const)), ssm);
  }
  const deps: SyncDeps = {
    connector,
    store,
    index,
    parser: new PostalMimeParser(),
    credentials,
    clock: { now: () => Date.now() },
    logger,
  };
  return {
    deps,
    index,
    store,
    inbox: new DynamoInbox(clients.documents, table),
    connector,
    location,
    sources,
    registry,
    ssm,
    exclusive: false,
    notes: [],
    configFile: config.file,
    close: () => {
      clients.dynamodb.destroy();
      clients.s3.destroy();
      ssm.destroy();
      return Promise.resolve();
    },
  };
}
