/**
 * A sync in its own process, for kill tests: `node --import tsx test/support/sync-child.ts <source.json>`.
 * The password comes from TRIBUTARY_CHILD_PASSWORD; it prints one line per committed message so the parent
 * can kill it at a chosen point of the work. The store is the one TRIBUTARY_TEST_STORE and TRIBUTARY_TEST_DATA_DIR
 * name (child-sync.ts sets them to the parent's): DynamoDB Local and s3rver, or the embedded store's data folder.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { MailLab } from './mail-lab';
import { storeKindFromEnv, TestTributary } from './tributary';
import type { Source } from '../../functions/core/model';
import type { MessageIndex, RawMailStore } from '../../functions/core/ports';

async function run(): Promise<void> {
  const source = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as Source;
  const t = new TestTributary(MailLab.fromEnv(), { store: storeKindFromEnv() });
  t.passwords.set(source.id, process.env.TRIBUTARY_CHILD_PASSWORD!);
  // TRIBUTARY_CHILD_CLOCK_OFFSET_MS: the run believes it is this much later (delete-after-days under kills).
  const offset = Number(process.env.TRIBUTARY_CHILD_CLOCK_OFFSET_MS ?? 0);
  t.deps.clock = { now: () => Date.now() + offset };
  let last = 0;
  // Memory while syncing, apart from what loading the code cost: sampled every 10 ms from here on.
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 10);
  // TRIBUTARY_CHILD_LIVE_SAMPLE_MS (with --expose-gc): live memory, heap used + external, right after a full GC.
  const liveEvery = Number(process.env.TRIBUTARY_CHILD_LIVE_SAMPLE_MS ?? 0);
  const gc = (globalThis as { gc?: () => void }).gc;
  const live = () => {
    gc?.();
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  const liveBefore = liveEvery && gc ? live() : 0;
  let livePeak = liveBefore;
  const liveSampler =
    liveEvery && gc ? setInterval(() => (livePeak = Math.max(livePeak, live())), liveEvery) : undefined;
  // TRIBUTARY_CHILD_KILL_AT=step[:n]: die by SIGKILL the n-th time (default 1st) the run reaches `step`: a SyncStep,
  // or around the n-th checkpoint save: `checkpoint-before` (not sent), `checkpoint-inflight` (sent, no answer yet),
  // `checkpoint-after` (saved).
  const [killStep, killNth] = (process.env.TRIBUTARY_CHILD_KILL_AT ?? '').split(':');
  const die = () => process.kill(process.pid, 'SIGKILL');
  let reached = 0;
  instrument(t, {
    killAt: killStep?.startsWith('checkpoint-') ? { step: killStep, nth: Number(killNth ?? 1) } : undefined,
    die,
    storeDelayMs: Number(process.env.TRIBUTARY_CHILD_STORE_DELAY_MS ?? 0),
    statusDelayMs: Number(process.env.TRIBUTARY_CHILD_STATUS_DELAY_MS ?? 0),
  });
  // TRIBUTARY_CHILD_STOP_AT=step: at the first time the run reaches `step`, print `stopped <step>` and stop this
  // process (SIGSTOP) right there, as a long pause would; the parent lets it go on with SIGCONT.
  const stopStep = process.env.TRIBUTARY_CHILD_STOP_AT ?? '';
  let stopped = false;
  const checkpointEvery = Number(process.env.TRIBUTARY_CHILD_CHECKPOINT_EVERY ?? 0);
  const report = await t.sync(source, {
    deadline: Date.now() + offset + 120_000,
    leaseTtlMs: Number(process.env.TRIBUTARY_CHILD_LEASE_MS ?? 2000),
    ...(checkpointEvery > 0 ? { checkpointEvery } : {}),
    onStep: (step) => {
      if (step === killStep && ++reached >= Number(killNth ?? 1)) die();
      if (step === stopStep && !stopped) {
        stopped = true;
        // A pipe is written synchronously on Linux: the line is out before the process stops.
        process.stdout.write(`stopped ${step}\n`);
        process.kill(process.pid, 'SIGSTOP');
      }
    },
    onProgress: (p) => {
      if (p.fetched !== last) {
        last = p.fetched;
        process.stdout.write(`committed ${p.fetched}\n`);
      }
    },
  });
  clearInterval(sampler);
  clearInterval(liveSampler);
  rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  // maxRSS is in KiB: the peak resident memory of this whole process, code loading included.
  const memory = {
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    rssBefore,
    rssPeak,
    liveBefore,
    livePeak,
  };
  process.stdout.write(`report ${JSON.stringify({ ...report, ...memory })}\n`);
  t.close();
}

/**
 * What the parent of a fault test needs to see or slow down, around the real index and store: `lease <fence>` when
 * the lease is taken, `checkpoint <uid>` when a checkpoint is saved, `status <fence> <at>` right before the run
 * status is written; kills around a checkpoint save; a slower S3 put and a slower status write.
 */
function instrument(
  t: TestTributary,
  options: {
    killAt?: { step: string; nth: number };
    die: () => void;
    storeDelayMs: number;
    statusDelayMs: number;
  },
): void {
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const real = t.deps.index;
  const index: MessageIndex = Object.create(real) as MessageIndex;
  let fence = 0;
  let saves = 0;
  index.acquireLease = async (...args) => {
    const lease = await real.acquireLease(...args);
    if (lease) {
      fence = lease.fence;
      say(`lease ${lease.fence}`);
    }
    return lease;
  };
  index.saveFolderState = async (lease, state) => {
    const kill = options.killAt && ++saves >= options.killAt.nth ? options.killAt.step : undefined;
    if (kill === 'checkpoint-before') options.die();
    const saving = real.saveFolderState(lease, state);
    if (kill === 'checkpoint-inflight') setTimeout(options.die, saves % 3);
    await saving;
    say(`checkpoint ${state.committedThroughUid}`);
    if (kill === 'checkpoint-after') options.die();
  };
  index.recordRun = async (...args) => {
    // The last argument is the time the status is written at (its lastRun.at): it names this run's status.
    say(`status ${fence} ${Number(args[args.length - 1])}`);
    if (options.statusDelayMs) await sleep(options.statusDelayMs);
    return real.recordRun(...args);
  };
  t.deps.index = index;
  if (options.storeDelayMs) {
    const store: RawMailStore = Object.create(t.deps.store) as RawMailStore;
    store.put = async (...args) => {
      await sleep(options.storeDelayMs);
      return t.store.put(...args);
    };
    t.deps.store = store;
  }
}

run().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
