/**
 * One sync against a hostile server, measured: how long it took against its deadline, how much resident memory
 * it added, and how many promise rejections went unhandled. Run in-process (`measuredSync`) or, where memory must
 * be measured apart from the test runner (and the S3 server it hosts), in its own process:
 * `node --import tsx test/support/hostile-child.ts <job.json>`, which prints one `report {...}` line.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Source, SourceRunReport } from '../../functions/core/model';
import { startFakePop3 } from '../unit/pop3/fake-pop3-server';
import { filler, startFakeImap } from './fake-imap-server';
import { MailLab } from './mail-lab';
import { TestTributary } from './tributary';

export interface HostileJob {
  source: Source;
  password: string;
  /** The run's deadline, in ms after it starts. */
  deadlineMs: number;
  timeoutMs: number;
}

export interface Measured {
  report: SourceRunReport;
  elapsedMs: number;
  /** Peak resident memory during the run minus resident memory just before it. */
  rssAddedBytes: number;
  unhandled: number;
}

/** Runs the sync here, sampling RSS every 5 ms; waits a moment after it so late rejections are counted. */
export async function measuredSync(t: TestTributary, job: HostileJob): Promise<Measured> {
  let unhandled = 0;
  const onUnhandled = () => unhandled++;
  process.on('unhandledRejection', onUnhandled);
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sample = () => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss));
  const sampler = setInterval(sample, 5);
  try {
    const started = Date.now();
    const report = await t.sync(job.source, {
      deadline: started + job.deadlineMs,
      timeoutMs: job.timeoutMs,
      leaseTtlMs: 30_000,
    });
    const elapsedMs = Date.now() - started;
    sample();
    await new Promise((resolve) => setTimeout(resolve, 300));
    return { report, elapsedMs, rssAddedBytes: rssPeak - rssBefore, unhandled };
  } finally {
    clearInterval(sampler);
    process.off('unhandledRejection', onUnhandled);
  }
}

/** The same in a process of its own. */
export async function childMeasuredSync(job: HostileJob): Promise<Measured> {
  const file = path.join(os.tmpdir(), `hostile-${job.source.id}.json`);
  fs.writeFileSync(file, JSON.stringify(job));
  try {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', __filename, file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
    // A run that never ends is a finding, not a hang of the test: the child is killed well past its deadline.
    const killer = setTimeout(() => child.kill('SIGKILL'), job.deadlineMs + 15_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearTimeout(killer);
    const line = output.split('\n').find((l) => l.startsWith('report '));
    if (code !== 0 || !line)
      throw new Error(`hostile child exited ${code ?? 'by a signal'}: ${output.slice(-2000)}`);
    return JSON.parse(line.slice('report '.length)) as Measured;
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/**
 * One sync of the same protocol against an honest fake first: the first use of a code path (imapflow's download,
 * the S3 upload, the policies) loads and compiles modules and grows V8's young generation, tens of MB that say
 * nothing about the run measured next. Then a full GC, so the measurement starts from what is really live.
 */
async function warmUp(t: TestTributary, protocol: 'imap' | 'pop3'): Promise<void> {
  const messages = [filler(10_000), filler(2 * 1024 * 1024)];
  const fake =
    protocol === 'imap' ? await startFakeImap({ messages }) : await startFakePop3({ messages, mode: 'bulk' });
  const source: Source = {
    id: `warm-up-${process.pid}-${Date.now()}`,
    protocol,
    host: '127.0.0.1',
    port: fake.port,
    tls: 'none',
    user: 'u',
    folders: protocol === 'imap' ? ['INBOX'] : [],
    pollMinutes: 5,
    enabled: true,
    retention: { mode: 'delete-on-retrieve' },
  };
  t.passwords.set(source.id, 'secret');
  const report = await t.sync(source, { deadline: Date.now() + 30_000, timeoutMs: 5000 });
  await fake.close();
  if (report.outcome !== 'ok') throw new Error(`the warm-up sync failed: ${JSON.stringify(report)}`);
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function main(): Promise<void> {
  const job = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as HostileJob;
  const t = new TestTributary(MailLab.fromEnv());
  t.passwords.set(job.source.id, job.password);
  await warmUp(t, job.source.protocol);
  const measured = await measuredSync(t, job);
  process.stdout.write(`report ${JSON.stringify(measured)}\n`);
  t.close();
  // Sockets a hostile server keeps open must not keep this process alive.
  process.exit(0);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
