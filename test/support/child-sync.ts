import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Source } from '../../functions/core/model';
import type { StoreKind } from './tributary';

/**
 * Starts test/support/sync-child.ts for `source` in its own process (for kill and memory tests), on the parent's
 * store when `options.store` names it (an embedded store: the same data folder, as local mode's processes share one). `onLine` sees each
 * line it prints: `committed N` per commit, `lease F`, `checkpoint UID`, `status F AT` (see sync-child.ts) and a
 * final `report {...}`.
 */
export function spawnChildSync(
  source: Source,
  password: string,
  options: {
    leaseMs: number;
    onLine?: (line: string, child: ChildProcess) => void;
    /** `step[:n]`: the child kills itself the n-th time its run reaches that step (see SyncStep). */
    killAt?: string;
    /** A SyncStep: the child prints `stopped <step>` and stops itself (SIGSTOP) there, until sent SIGCONT. */
    stopAt?: string;
    /** The child's clock runs this far ahead (for delete-after-days). */
    clockOffsetMs?: number;
    /** SyncOptions.checkpointEvery of the child's run (IMAP). */
    checkpointEvery?: number;
    /** Each S3 put of the child waits this long first (a slow store). */
    storeDelayMs?: number;
    /** The child waits this long before writing its run status (a slow or paused status write). */
    statusDelayMs?: number;
    /**
     * Run the child with --expose-gc and sample its live memory (V8 heap used + external buffers) right after a full
     * garbage collection every `liveSampleMs`: what the sync keeps, without the garbage RSS also counts.
     */
    liveSampleMs?: number;
    /**
     * The store the child syncs into: the parent's (`t.storeSpec`), so both see the same data. Default: what
     * TRIBUTARY_TEST_STORE and TRIBUTARY_TEST_DATA_DIR say (DynamoDB Local and s3rver unless set).
     */
    store?: { store: StoreKind; dataDir?: string };
  },
): {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>;
} {
  // One file per child: racers of one source start and exit side by side.
  const file = path.join(os.tmpdir(), `child-sync-${source.id}-${randomBytes(4).toString('hex')}.json`);
  fs.writeFileSync(file, JSON.stringify(source));
  const gc = options.liveSampleMs ? ['--expose-gc'] : [];
  const child = spawn(
    process.execPath,
    [...gc, '--import', 'tsx', path.join(__dirname, 'sync-child.ts'), file],
    {
      env: {
        ...process.env,
        TRIBUTARY_CHILD_PASSWORD: password,
        TRIBUTARY_CHILD_LEASE_MS: String(options.leaseMs),
        TRIBUTARY_CHILD_KILL_AT: options.killAt ?? '',
        TRIBUTARY_CHILD_STOP_AT: options.stopAt ?? '',
        TRIBUTARY_CHILD_CLOCK_OFFSET_MS: String(options.clockOffsetMs ?? 0),
        TRIBUTARY_CHILD_CHECKPOINT_EVERY: String(options.checkpointEvery ?? 0),
        TRIBUTARY_CHILD_STORE_DELAY_MS: String(options.storeDelayMs ?? 0),
        TRIBUTARY_CHILD_STATUS_DELAY_MS: String(options.statusDelayMs ?? 0),
        TRIBUTARY_CHILD_LIVE_SAMPLE_MS: String(options.liveSampleMs ?? 0),
        ...(options.store
          ? {
              TRIBUTARY_TEST_STORE: options.store.store,
              TRIBUTARY_TEST_DATA_DIR: options.store.dataDir ?? '',
            }
          : {}),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let output = '';
  let pending = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text;
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) options.onLine?.(line, child);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>(
    (resolve) =>
      child.once('exit', (code, signal) => {
        fs.rmSync(file, { force: true });
        resolve({ code, signal, output });
      }),
  );
  return { child, exited };
}
