import fs from 'node:fs';
import path from 'node:path';
import { openEmbeddedStore } from '../../functions/adapters/sqlite/embedded-store';
import type { FreshStore, Lab } from '../lib/lab';
import type { Contender, Upstream } from '../lib/types';

const SOURCE_ID = 'bench';

function tributaryVersion(detail: string): Promise<string> {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  return Promise.resolve(`tributary ${pkg.version} (node ${process.version}${detail})`);
}

/** The config file of a contender's run: its store and the one source on the bench's Dovecot. */
function writeConfig(file: string, store: object, upstream: Upstream, protocol: 'imap' | 'pop3'): void {
  const source = {
    id: SOURCE_ID,
    protocol,
    host: upstream.host,
    port: protocol === 'imap' ? upstream.imapsPort : upstream.pop3sPort,
    tls: 'implicit',
    caFile: upstream.caFile,
    servername: upstream.servername,
    user: upstream.user,
    secret: { env: 'BENCH_TRIBUTARY_PASSWORD' },
  };
  fs.writeFileSync(file, JSON.stringify({ store, sources: [source] }, null, 2));
}

/**
 * Tributary itself, with full durability: every message streamed into an S3 object (s3rver) and committed as a
 * DynamoDB item with its counters (DynamoDB Local), the checkpoint saved, the lease taken and released. Run as
 * the CLI's esbuild bundle (`tributary sync --json`), one source, `retention: keep`.
 */
export function tributaryContender(
  lab: Lab,
  protocol: 'imap' | 'pop3',
  options: {
    nodeFlags?: string[];
    /** Reach DynamoDB and S3 through these endpoints (the bench's delaying proxies) instead of the stand-ins'. */
    storeEndpoints?: { dynamodb: string; s3: string; label: string };
  } = {},
): Contender {
  const stores = new Map<string, FreshStore>();
  const configFile = (workDir: string) => path.join(workDir, 'tributary.config.json');
  const nodeFlags = options.nodeFlags ?? [];
  const endpoints = options.storeEndpoints;
  return {
    name: `Tributary ${protocol.toUpperCase()}${endpoints ? ` (${endpoints.label})` : ''}`,
    protocol,
    unavailable: async () => undefined,
    version: () => tributaryVersion(''),
    async reset(_upstream, workDir) {
      await stores.get(workDir)?.drop();
      stores.set(workDir, await lab.freshStore(`${protocol}-${path.basename(workDir)}`));
    },
    async command(upstream: Upstream, workDir: string) {
      const store = stores.get(workDir);
      if (!store) throw new Error('reset() first');
      writeConfig(
        configFile(workDir),
        { mode: 'aws', table: store.table, bucket: store.bucket, region: 'us-east-1' },
        upstream,
        protocol,
      );
      const command = lab.tributary(['sync', '--json', '--config', configFile(workDir)], {
        ...store.env,
        ...(endpoints
          ? { AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb, AWS_ENDPOINT_URL_S3: endpoints.s3 }
          : {}),
        BENCH_TRIBUTARY_PASSWORD: upstream.password,
      });
      command.args.unshift(...nodeFlags);
      return command;
    },
    async delivered(workDir) {
      const store = stores.get(workDir);
      if (!store) return { messages: 0, bytes: 0 };
      return lab.messageIndex(store.table).inboxUsage(SOURCE_ID);
    },
  };
}

/**
 * Local mode (issue #16): the same CLI bundle on the embedded store (SQLite index, message files fsynced and renamed
 * into place, synchronous=FULL), as `npm start` and `tributary sync` run on one machine. Beside mbsync and mpop,
 * which also write local files: the local-mode row of the performance targets.
 */
export function tributaryLocalContender(
  lab: Lab,
  protocol: 'imap' | 'pop3',
  nodeFlags: string[] = [],
): Contender {
  const dataDir = (workDir: string) => path.join(workDir, 'data');
  const configFile = (workDir: string) => path.join(workDir, 'tributary.config.json');
  return {
    name: `Tributary local ${protocol.toUpperCase()}`,
    protocol,
    unavailable: async () => undefined,
    version: () => tributaryVersion(', embedded store'),
    reset(_upstream, workDir) {
      fs.rmSync(dataDir(workDir), { recursive: true, force: true });
      return Promise.resolve();
    },
    command(upstream: Upstream, workDir: string) {
      writeConfig(configFile(workDir), { mode: 'local', dataDir: dataDir(workDir) }, upstream, protocol);
      const command = lab.tributary(['sync', '--json', '--config', configFile(workDir)], {
        BENCH_TRIBUTARY_PASSWORD: upstream.password,
      });
      command.args.unshift(...nodeFlags);
      return Promise.resolve(command);
    },
    async delivered(workDir) {
      if (!fs.existsSync(path.join(dataDir(workDir), 'index.sqlite'))) return { messages: 0, bytes: 0 };
      const store = openEmbeddedStore(dataDir(workDir));
      try {
        return await store.index.inboxUsage(SOURCE_ID);
      } finally {
        store.close();
      }
    },
  };
}
