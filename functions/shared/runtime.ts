import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoMessageIndex } from '../adapters/dynamodb/message-index';
import { PostalMimeParser } from '../adapters/mime';
import { S3RawMailStore } from '../adapters/s3/raw-mail-store';
import { ConfiguredCredentials } from '../adapters/secrets/credentials';
import { SsmCredentials } from '../adapters/secrets/ssm-credentials';
import { DynamoSourceRegistry } from '../adapters/dynamodb/source-registry';
import { ConfigError } from '../core/errors';
import type { Logger, MailConnector } from '../core/ports';
import type { SyncDeps } from '../core/sync';
import { ensureTable, startLocalAws, type LocalAws, type LocalAwsOptions } from '../local/emulators';
import { makeAwsClients } from './aws-clients';
import { makeConnector } from './connector';
import type { Config } from './config';
import { resolveStore, type ResolvedStore } from './deployment';

export const LOCAL_TABLE = 'tributary';
export const LOCAL_BUCKET = 'tributary-raw';

export interface Runtime {
  deps: SyncDeps;
  index: DynamoMessageIndex;
  store: S3RawMailStore;
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
   * Local mode: this process owns the data folder (its lock) and the only servers on it, so no other sync can be
   * running on this store, and a lease found in it was left by a command that died.
   */
  exclusive: boolean;
  /** What opening changed that the user should hear about (the data folder's mode tightened). */
  notes: string[];
  close(): Promise<void>;
}

/** How local mode waits for a data folder another command owns, and what it records about this one. */
export type RuntimeOptions = Pick<LocalAwsOptions, 'waitMs' | 'onWait' | 'onNote' | 'purpose' | 'signal'>;

export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/**
 * The composition root for one machine (CLI) or a test: builds every adapter once from the config. In local mode
 * it starts DynamoDB Local and the S3 server with their data under `dataDir`, and stops them on close().
 */
export async function openRuntime(
  config: Config,
  logger: Logger = silentLogger,
  options: RuntimeOptions = {},
): Promise<Runtime> {
  let local: LocalAws | undefined;
  let table: string;
  let bucket: string;
  const location = await resolveStore(config.store);
  if (location.mode === 'aws' && location.deployment && config.sources.length)
    throw new ConfigError(
      `${config.file}: a deployed Tributary's sources live in its table, not in the config file: remove "sources" from it, after moving them with "tributary sources import --from FILE" (a copy of this file)`,
    );
  if (config.store.mode === 'local') {
    local = await startLocalAws({
      ...options,
      dataDir: config.store.dataDir,
      bucket: LOCAL_BUCKET,
      s3Dir: `${config.store.dataDir}/s3`,
    });
    Object.assign(process.env, local.env);
    table = LOCAL_TABLE;
    bucket = LOCAL_BUCKET;
  } else if (location.mode === 'aws') {
    if (location.region) process.env.AWS_REGION = location.region;
    table = location.table;
    bucket = location.bucket;
  } else {
    throw new Error('unreachable: a local store resolves to itself');
  }
  const clients = makeAwsClients();
  if (local) {
    try {
      await ensureTable(clients.dynamodb, table);
    } catch (err) {
      clients.dynamodb.destroy();
      clients.s3.destroy();
      await local.stop();
      throw err;
    }
  }
  const index = new DynamoMessageIndex(clients.documents, table);
  const store = new S3RawMailStore(clients.s3, bucket);
  const connector = makeConnector(logger);
  const ssm = config.store.mode === 'aws' ? new SSMClient({}) : undefined;
  const deployment = location.mode === 'aws' ? location.deployment : undefined;
  let sources = config.sources;
  let registry: DynamoSourceRegistry | undefined;
  let credentials: SyncDeps['credentials'];
  if (deployment && ssm) {
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
    connector,
    location,
    sources,
    registry,
    ssm,
    exclusive: Boolean(local),
    notes: local?.notes ?? [],
    close: async () => {
      clients.dynamodb.destroy();
      clients.s3.destroy();
      ssm?.destroy();
      await local?.stop();
    },
  };
}
