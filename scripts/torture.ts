/**
 * `npm run torture`: the fault and hostile-input suite at full strength (TRIBUTARY_TORTURE=1: 200 kills of
 * `keep` syncs, 240 under the deleting policies, 1,000 faulty connections, 300 race rounds, ...), then
 * docs/reliability.md from the `[reliability]` lines the tests print. The `npm test` slices of the same files run
 * in CI with smaller counts.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(__dirname, '..');
const files = [
  'test/integration/sync/kill.test.ts',
  'test/integration/sync/policy-kill.test.ts',
  'test/integration/sync/delete-proof.test.ts',
  'test/integration/sync/courier.test.ts',
  'test/integration/faults',
  'test/integration/hostile',
];

async function main(): Promise<void> {
  const started = new Date();
  const lines: string[] = [];
  const code = await new Promise<number>((resolve) => {
    const child = spawn(
      process.execPath,
      [
        path.join(root, 'node_modules/jest/bin/jest.js'),
        ...files,
        '--selectProjects',
        'integration',
        '--runInBand',
      ],
      {
        cwd: root,
        env: {
          ...process.env,
          TRIBUTARY_TORTURE: '1',
          TRIBUTARY_KILLS: process.env.TRIBUTARY_KILLS ?? '100',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const collect = (chunk: Buffer) => {
      const text = chunk.toString();
      process.stdout.write(text);
      for (const line of text.split('\n')) {
        const at = line.indexOf('[reliability] ');
        if (at >= 0) lines.push(line.slice(at + '[reliability] '.length).trim());
      }
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.on('exit', (c) => resolve(c ?? 1));
  });
  const minutes = ((Date.now() - started.getTime()) / 60_000).toFixed(1);
  const groups = new Map<string, string[]>();
  for (const line of lines) {
    const kind = line.split(' ')[0]!.replace(/:$/, '');
    groups.set(kind, [...(groups.get(kind) ?? []), line]);
  }
  const titles: Record<string, string> = {
    kills: 'Kills: SIGKILL at a random step, then synced to quiescence',
    'policy-kill': 'Kills at each step of the policies’ durable order',
    network: 'Network: cut, reset, stall, trickle, split',
    race: 'Races: 4 syncs of one source started together',
    'race-processes': 'Races across processes: short leases taken over from frozen holders',
    'paused-delete': 'A run paused past its lease right before the command that deletes upstream',
    storage: 'Storage faults at the SDK boundary: 500s, throttling, ambiguous writes',
    delete: 'The proof before a delete: servers that reuse identities',
    courier: 'A second real server: Courier IMAP and POP3',
    identity: 'Identity anomalies',
    hostile: 'Hostile servers (scripted fakes)',
    mime: 'MIME bombs',
  };
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const commit = (() => {
    try {
      const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
        cwd: root,
        encoding: 'utf8',
      }).trim();
      const dirty = execFileSync('git', ['status', '--porcelain', '--', 'functions'], {
        cwd: root,
        encoding: 'utf8',
      });
      return dirty.trim() ? `${head} (with uncommitted changes under functions/)` : head;
    } catch {
      return 'unknown';
    }
  })();
  const doc = [
    '# Reliability',
    '',
    'What the fault and hostile-input suite proves, with the figures of the last `npm run torture`',
    `(${started.toISOString().slice(0, 10)}, commit ${commit}, ${minutes} min, exit ${code}). Every count of lost,`,
    'duplicated and wrongly deleted messages must be 0; a test fails otherwise. `npm test` runs the same files with',
    'smaller counts in CI (30 + 30 kills of `keep` syncs, 60 under the deleting policies (30 each), 15 at the policy',
    'steps, 100 faulty connections, 100 race rounds, 20 s of racing processes, 16 syncs per source under storage faults).',
    '',
    `Machine: ${os.cpus().length} x ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GB, Node ${process.version},`,
    `${os.type()} ${os.release()}. Upstream: Dovecot and Courier (private instances on 127.0.0.1); store: DynamoDB Local + s3rver.`,
    '',
    'Definitions (test/support/reconciler.ts): messages are a multiset of sha256 of the bytes the server serves.',
    '**lost**: left the server without a stored copy; **duplicated**: stored copies beyond the copies that existed;',
    '**wrongly deleted**: gone from the server without a verified stored copy and a completed audit record;',
    '**unfetched**: still upstream and not stored after syncing to quiescence.',
    '',
  ];
  for (const [kind, entries] of groups) {
    doc.push(`## ${titles[kind] ?? kind}`, '');
    for (const e of entries) doc.push(`- ${e}`);
    doc.push('');
  }
  if (!lines.length) doc.push('No figures: the run printed none (see its output).', '');
  fs.writeFileSync(path.join(root, 'docs/reliability.md'), doc.join('\n'));
  console.log(`\nwrote docs/reliability.md (${lines.length} figures); jest exited ${code}`);
  process.exit(code);
}

void main();
