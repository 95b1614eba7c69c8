import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { build } from 'esbuild';
import { DynamoMessageIndex } from '../../functions/adapters/dynamodb/message-index';
import { ensureTable, startLocalAws, type LocalAws } from '../../functions/local/emulators';
import { startDovecot, type DovecotInfo } from '../../test/support/dovecot';
import { MailLab } from '../../test/support/mail-lab';
import type { Command } from './types';

const run = promisify(execFile);

/** An empty DynamoDB table and S3 bucket for one contender run, and the environment the CLI needs for them. */
export interface FreshStore {
  table: string;
  bucket: string;
  env: Record<string, string>;
  drop(): Promise<void>;
}

/** Everything the benchmark runs against, started once: Dovecot, DynamoDB Local (in memory), s3rver. */
export interface Lab {
  dir: string;
  dovecot: DovecotInfo;
  mail: MailLab;
  aws: LocalAws;
  doveadm(args: string[]): Promise<void>;
  /** The tributary CLI from an esbuild bundle run by node, as the Lambda runs its bundle (no tsx at run time). */
  tributary(args: string[], env?: Record<string, string>): Command;
  freshStore(name: string): Promise<FreshStore>;
  /** Tributary's own MessageIndex over a table of the lab's DynamoDB Local. */
  messageIndex(table: string): DynamoMessageIndex;
  stop(): Promise<void>;
}

/**
 * Bundles a script with esbuild (what a Lambda deployment does), so that start-up is not TypeScript compilation.
 * `footer` runs after the module (the CLI's `main`).
 */
export async function bundle(entry: string, outfile: string, footer?: string): Promise<string> {
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    outfile,
    // A native module: loaded from the project's node_modules at run time (NODE_PATH), never bundled.
    external: ['better-sqlite3'],
    logLevel: 'error',
    // A .map beside the bundle (no comment in it: node does not load it), for `npm run bench -- --profile`.
    sourcemap: 'external',
    ...(footer ? { footer: { js: footer } } : {}),
  });
  return outfile;
}

const CLI_FOOTER =
  'module.exports.main(process.argv.slice(2)).then((c) => process.exit(c), (e) => { console.error(e); process.exit(1); });';

export async function startLab(): Promise<Lab> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-bench-'));
  fs.chmodSync(dir, 0o755); // Dovecot's unprivileged processes read the users file and Maildirs under it
  const [dovecot, aws, cli] = await Promise.all([
    startDovecot(path.join(dir, 'dovecot')),
    startLocalAws({ bucket: 'tributary-bench-unused', s3Dir: path.join(dir, 's3') }),
    bundle(
      path.join(__dirname, '..', '..', 'functions', 'cli', 'main.ts'),
      path.join(dir, 'build', 'tributary.cjs'),
      CLI_FOOTER,
    ),
  ]);
  const sdk = {
    region: aws.env.AWS_REGION,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  };
  const ddb = new DynamoDBClient({ ...sdk, endpoint: aws.dynamodbEndpoint });
  const s3 = new S3Client({ ...sdk, endpoint: aws.s3Endpoint, forcePathStyle: true });
  let stores = 0;
  return {
    dir,
    dovecot: dovecot.info,
    mail: new MailLab(dovecot.info),
    aws,
    async doveadm(args) {
      await run('doveadm', ['-c', dovecot.info.configFile, ...args]);
    },
    tributary(args, env = {}) {
      return {
        cmd: process.execPath,
        args: [cli, ...args],
        env: {
          ...aws.env,
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
          NODE_PATH: path.join(__dirname, '..', '..', 'node_modules'),
          ...env,
        },
      };
    },
    messageIndex(table) {
      return new DynamoMessageIndex(DynamoDBDocumentClient.from(ddb), table);
    },
    async freshStore(name) {
      const slug = `${name.toLowerCase().replace(/[^a-z0-9]+/g, '-')}-${++stores}`;
      const table = `bench-${slug}`;
      const bucket = `bench-${slug}`;
      await ensureTable(ddb, table);
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
      return {
        table,
        bucket,
        env: { ...aws.env },
        async drop() {
          await ddb.send(new DeleteTableCommand({ TableName: table }));
          for (;;) {
            const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 }));
            const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
            if (!keys.length) break;
            await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
          }
          await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
        },
      };
    },
    async stop() {
      ddb.destroy();
      s3.destroy();
      await Promise.all([dovecot.stop(), aws.stop()]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
