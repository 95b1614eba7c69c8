/**
 * A sync in its own process, for kill tests: `node --import tsx test/support/sync-child.ts <source.json>`.
 * The password comes from TRIBUTARY_CHILD_PASSWORD; it prints one line per committed message so the parent
 * can kill it at a chosen point of the work.
 */
import fs from 'node:fs';
import { MailLab } from './mail-lab';
import { TestTributary } from './tributary';
import type { Source } from '../../functions/core/model';

async function run(): Promise<void> {
  const source = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as Source;
  const t = new TestTributary(MailLab.fromEnv());
  t.passwords.set(source.id, process.env.TRIBUTARY_CHILD_PASSWORD!);
  // TRIBUTARY_CHILD_CLOCK_OFFSET_MS: the run believes it is this much later (delete-after-days under kills).
  const offset = Number(process.env.TRIBUTARY_CHILD_CLOCK_OFFSET_MS ?? 0);
  t.deps.clock = { now: () => Date.now() + offset };
  let last = 0;
  // Memory while syncing, apart from what loading the code cost: sampled every 10 ms from here on.
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 10);
  // TRIBUTARY_CHILD_KILL_AT=step[:n]: die by SIGKILL the n-th time (default 1st) the run reaches `step`.
  const [killStep, killNth] = (process.env.TRIBUTARY_CHILD_KILL_AT ?? '').split(':');
  let reached = 0;
  const report = await t.sync(source, {
    deadline: Date.now() + offset + 120_000,
    leaseTtlMs: Number(process.env.TRIBUTARY_CHILD_LEASE_MS ?? 2000),
    onStep: (step) => {
      if (step === killStep && ++reached >= Number(killNth ?? 1)) process.kill(process.pid, 'SIGKILL');
    },
    onProgress: (p) => {
      if (p.fetched !== last) {
        last = p.fetched;
        process.stdout.write(`committed ${p.fetched}\n`);
      }
    },
  });
  clearInterval(sampler);
  rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  // maxRSS is in KiB: the peak resident memory of this whole process, code loading included.
  const memory = { maxRssBytes: process.resourceUsage().maxRSS * 1024, rssBefore, rssPeak };
  process.stdout.write(`report ${JSON.stringify({ ...report, ...memory })}\n`);
  t.close();
}

run().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
