import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { bulkCorpus } from '../../support/corpus';
import { MailLab, type TestUser } from '../../support/mail-lab';

/**
 * The CLI with the `local` store, as a user runs it: separate `tributary` processes, each starting DynamoDB Local
 * and s3rver on one data folder (no harness store involved).
 */
const lab = MailLab.fromEnv();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-local-'));
fs.writeFileSync(path.join(root, 'ca.pem'), lab.ca);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'tributary.cjs');
const uniq = () => Math.random().toString(36).slice(2, 8);

interface Setup {
  config: string;
  dataDir: string;
  id: string;
  env: Record<string, string>;
  password: string;
}

/** A config with the local store in its own data folder and one IMAP source; the password in the environment. */
function setup(user: TestUser, extra: Record<string, unknown> = {}): Setup {
  const id = `loc-${uniq()}`;
  const dir = path.join(root, id);
  fs.mkdirSync(dir);
  const dataDir = path.join(dir, 'data');
  const env = `PW_${id.replace(/-/g, '_').toUpperCase()}`;
  const config = path.join(dir, 'tributary.config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      store: { mode: 'local', dataDir: 'data' },
      sources: [
        {
          id,
          protocol: 'imap',
          host: '127.0.0.1',
          port: lab.info.ports.imaps,
          tls: 'implicit',
          caFile: path.relative(dir, path.join(root, 'ca.pem')),
          servername: 'localhost',
          user: user.name,
          secret: { env },
          ...extra,
        },
      ],
    }),
  );
  return { config, dataDir, id, env: { [env]: user.password }, password: user.password };
}

interface Run {
  pid: number;
  kill: (signal: NodeJS.Signals) => void;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>;
}

function tributary(s: Setup, args: string[]): Run {
  const child = spawn(process.execPath, [BIN, ...args, '--config', s.config], {
    env: { ...process.env, ...s.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
  child.stderr.setEncoding('utf8').on('data', (t: string) => (err += t));
  return {
    pid: child.pid!,
    kill: (signal) => child.kill(signal),
    done: new Promise((resolve) =>
      child.once('close', (code, signal) => resolve({ code, signal, out, err })),
    ),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every process whose command line mentions the folder (DynamoDB Local's -dbPath, s3rver's -d, flock's lock). */
function processesOn(dataDir: string): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(dataDir)) found.push(`${pid} ${cmd}`);
    } catch {
      // gone
    }
  }
  return found;
}

async function noneLeft(dataDir: string, withinMs: number): Promise<string[]> {
  const until = Date.now() + withinMs;
  for (;;) {
    const left = processesOn(dataDir);
    if (!left.length || Date.now() > until) return left;
    await sleep(200);
  }
}

/** Waits until DynamoDB Local answers on the folder; returns the pids of the processes working on it. */
async function serving(dataDir: string, withinMs = 30_000): Promise<number[]> {
  const until = Date.now() + withinMs;
  for (;;) {
    if (Date.now() > until) throw new Error(`no DynamoDB Local on ${dataDir}`);
    try {
      const on = processesOn(dataDir);
      const java = on.find((p) => p.includes('DynamoDBLocal.jar'))!;
      const args = java.split(' ');
      const port = Number(args[args.indexOf('-port') + 1]);
      const up = await new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
      if (up) return on.map((p) => Number(p.split(' ')[0]));
    } catch {
      // not yet
    }
    await sleep(100);
  }
}

/** What the store holds, read by another command: message count and Message-IDs. */
async function stored(s: Setup): Promise<{ count: number; ids: string[] }> {
  const list = await tributary(s, ['sources', 'list', '--json']).done;
  expect(list.code).toBe(0);
  const count = (JSON.parse(list.out) as { sources: Array<{ inbox: { messages: number } }> }).sources[0]!
    .inbox.messages;
  const inbox = await tributary(s, ['inbox', '--json', '--limit', '1000']).done;
  const ids = (JSON.parse(inbox.out) as { messages: Array<{ messageId: string }> }).messages.map(
    (m) => m.messageId,
  );
  return { count, ids };
}

function modesUnder(dir: string): string[] {
  const loose: string[] = [];
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    if (st.mode & 0o077) loose.push(`${(st.mode & 0o777).toString(8)} ${p}`);
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
  };
  walk(dir);
  return loose;
}

describe('the CLI on a local data folder', () => {
  it('two syncs of one source started a moment apart, several rounds: nothing lost, nothing twice, no INTERNAL', async () => {
    const user = lab.createUser('dup');
    const s = setup(user);
    const delivered: string[] = [];
    for (const [round, gapMs] of [0, 700, 2000].entries()) {
      const mails = bulkCorpus(50, 100 + round, { maxBytes: 6_000, attachmentRatio: 0 });
      for (const m of mails) {
        lab.deliver(user, m.raw);
        delivered.push(/^Message-ID: *(\S+)/im.exec(m.raw.toString('latin1'))![1]!);
      }
      const first = tributary(s, ['sync']);
      await sleep(gapMs);
      const second = tributary(s, ['sync']);
      const results = await Promise.all([first.done, second.done]);
      for (const r of results) expect(r.out + r.err).not.toMatch(/INTERNAL|FAILED|unexpected/);
      const { count, ids } = await stored(s);
      expect(count).toBe(delivered.length);
      expect([...ids].sort()).toEqual([...delivered].sort());
      // The second waited for the folder, then found its share (usually nothing) to do: neither was busy.
      for (const r of results) {
        expect(r.code).toBe(0);
        expect(r.out).toMatch(new RegExp(`${s.id}: ok, \\d+ new message`));
      }
      const fetched = results.map((r) => Number(/ok, (\d+) new message/.exec(r.out)![1]));
      expect(fetched[0]! + fetched[1]!).toBe(50);
    }
    // A later sync finds nothing left behind the checkpoint.
    const third = await tributary(s, ['sync']).done;
    expect(third.out).toMatch(new RegExp(`${s.id}: ok, 0 new messages`));
    expect(await noneLeft(s.dataDir, 1000)).toEqual([]);
  }, 300_000);

  it('a second command waits for the folder, or says who has it and exits 75', async () => {
    const user = lab.createUser('busy');
    const mails = bulkCorpus(300, 7, { minBytes: 20_000, maxBytes: 40_000, attachmentRatio: 0 });
    for (const m of mails) lab.deliver(user, m.raw);
    const s = setup(user);
    const first = tributary(s, ['sync']);
    await serving(s.dataDir);
    const [refused, waited] = await Promise.all([
      tributary(s, ['sources', 'list', '--wait', '0']).done,
      tributary(s, ['sources', 'list', '--wait', '60']).done,
    ]);
    expect(refused.code).toBe(75);
    expect(refused.err).toContain(`busy: ${s.dataDir} is in use by pid ${first.pid} (tributary sync`);
    expect(waited.err).toContain(`waiting for ${s.dataDir}: in use by pid ${first.pid} (tributary sync`);
    expect(waited.code).toBe(0);
    expect((await first.done).code).toBe(0);
  }, 120_000);

  it('a SIGKILLed sync leaves no server behind, and the next sync takes over and finishes', async () => {
    const user = lab.createUser('kill');
    const mails = bulkCorpus(400, 11, { minBytes: 20_000, maxBytes: 40_000, attachmentRatio: 0 });
    for (const m of mails) lab.deliver(user, m.raw);
    const s = setup(user);
    const victim = tributary(s, ['sync']);
    const servers = await serving(s.dataDir);

    // The servers get what they need to run, not the CLI's environment (its passwords, its AWS settings).
    const leaks = servers.flatMap((pid) => {
      const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      return environ
        .filter((v) => v.includes(s.password) || /^(PW_|AWS_)/.test(v))
        .map((v) => `${pid}: ${v.split('=')[0]}`);
    });

    await sleep(1500); // syncing by now
    victim.kill('SIGKILL');
    expect((await victim.done).signal).toBe('SIGKILL');
    expect(await noneLeft(s.dataDir, 10_000)).toEqual([]);

    const next = await tributary(s, ['sync']).done;
    expect(next.err).toBe('');
    expect(next.code).toBe(0);
    expect(next.out).toMatch(new RegExp(`${s.id}: ok, \\d+ new messages`));
    expect(await noneLeft(s.dataDir, 1000)).toEqual([]);
    const { count, ids } = await stored(s);
    expect(count).toBe(mails.length);
    expect(new Set(ids).size).toBe(mails.length);
    expect(modesUnder(s.dataDir)).toEqual([]);
    expect(leaks).toEqual([]);
  }, 180_000);

  it('servers that outlived their command and supervisor are killed by the next command, which then runs', async () => {
    const s = setup(lab.createUser('orph'));
    const victim = tributary(s, ['sources', 'list']);
    await serving(s.dataDir);
    const owner = JSON.parse(fs.readFileSync(path.join(s.dataDir, 'owner.json'), 'utf8')) as {
      servers: Record<string, { pid: number }>;
    };
    victim.kill('SIGKILL');
    process.kill(owner.servers.supervisor!.pid, 'SIGKILL');
    await victim.done;
    await sleep(300);
    expect(processesOn(s.dataDir).some((p) => p.includes('DynamoDBLocal.jar'))).toBe(true); // orphaned, lock held

    const next = await tributary(s, ['sources', 'list']).done;
    expect(next.code).toBe(0);
    expect(next.err).toMatch(
      new RegExp(`note: pid ${victim.pid} died without stopping its servers; killed dynamodb \\(pid \\d+\\)`),
    );
    expect(await noneLeft(s.dataDir, 1000)).toEqual([]);
  }, 120_000);

  it('Ctrl-C stops a sync at a safe point, releases the lease and the servers, exits 130', async () => {
    const user = lab.createUser('int');
    const mails = bulkCorpus(400, 12, { minBytes: 20_000, maxBytes: 40_000, attachmentRatio: 0 });
    for (const m of mails) lab.deliver(user, m.raw);
    const s = setup(user);
    const run = tributary(s, ['sync']);
    await serving(s.dataDir);
    await sleep(1500);
    run.kill('SIGINT');
    const stopped = await run.done;
    expect(stopped.code).toBe(130);
    expect(stopped.out).toMatch(
      new RegExp(`${s.id}: ok, \\d+ new messages? .*\\(stopped by SIGINT at a safe point`),
    );
    expect(await noneLeft(s.dataDir, 1000)).toEqual([]);

    const next = await tributary(s, ['sync', '--json']).done;
    expect(next.code).toBe(0);
    const report = (JSON.parse(next.out) as { sources: Array<{ outcome: string; notes: string[] }> })
      .sources[0]!;
    expect(report.outcome).toBe('ok');
    expect(report.notes.join('\n')).not.toMatch(/took over the lease/); // it was released, not left
    const { count, ids } = await stored(s);
    expect(count).toBe(mails.length);
    expect(new Set(ids).size).toBe(mails.length);
  }, 180_000);

  it('keeps the data folder to its owner: created 0700, an open one tightened and said so', async () => {
    const user = lab.createUser('mode');
    lab.deliver(user, bulkCorpus(1, 3, { maxBytes: 5_000 })[0]!.raw);
    const s = setup(user);
    const umask = process.umask(0o022);
    try {
      const first = await tributary(s, ['sync']).done;
      expect(first.code).toBe(0);
      expect(fs.statSync(s.dataDir).mode & 0o777).toBe(0o700);
      expect(modesUnder(s.dataDir)).toEqual([]);
      fs.chmodSync(s.dataDir, 0o755);
      const again = await tributary(s, ['sources', 'list']).done;
      expect(again.code).toBe(0);
      expect(again.err).toContain(
        `note: ${s.dataDir} was open to other users (mode 0755); it holds your mail, so it is now 0700`,
      );
      expect(fs.statSync(s.dataDir).mode & 0o777).toBe(0o700);
    } finally {
      process.umask(umask);
    }
  }, 120_000);
});
