import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bulkCorpus } from '../../support/corpus';
import { listeningSockets, processTree, startThrottle, until } from '../../support/local-service';
import { MailLab, type TestUser } from '../../support/mail-lab';

/**
 * The CLI with the `local` store, as a user runs it: separate `tributary` processes on one data folder, which
 * they share (the embedded store: SQLite and files; no harness store involved).
 */
const lab = MailLab.fromEnv();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-local-'));
fs.writeFileSync(path.join(root, 'ca.pem'), lab.ca);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
const afterThis = (fn: () => Promise<void>) => cleanups.push(fn);

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

describe('the CLI on a local data folder (the embedded store)', () => {
  it('two syncs of one source started a moment apart, several rounds: one holder at a time, nothing lost, nothing twice, no INTERNAL', async () => {
    const user = lab.createUser('dup');
    const s = setup(user);
    const delivered: string[] = [];
    for (const [round, gapMs] of [0, 150, 700, 2000].entries()) {
      const mails = bulkCorpus(50, 100 + round, { maxBytes: 6_000, attachmentRatio: 0 });
      for (const m of mails) {
        lab.deliver(user, m.raw);
        delivered.push(/^Message-ID: *(\S+)/im.exec(m.raw.toString('latin1'))![1]!);
      }
      const first = tributary(s, ['sync', '--json']);
      await sleep(gapMs);
      const second = tributary(s, ['sync', '--json']);
      const results = await Promise.all([first.done, second.done]);
      for (const r of results) {
        expect(r.out + r.err).not.toMatch(/INTERNAL|unexpected/);
        expect(r.code).toBe(0);
      }
      // Both processes open the one data folder; the source's lease lets one of them run at a time, and the other
      // either finds it busy or finds nothing left to do.
      const reports = results.map(
        (r) => (JSON.parse(r.out) as { sources: Array<{ outcome: string; fetched: number }> }).sources[0]!,
      );
      for (const report of reports) expect(['ok', 'busy']).toContain(report.outcome);
      expect(reports[0]!.fetched + reports[1]!.fetched).toBe(50);
      const { count, ids } = await stored(s);
      expect(count).toBe(delivered.length);
      expect([...ids].sort()).toEqual([...delivered].sort());
    }
    const third = await tributary(s, ['sync']).done;
    expect(third.out).toMatch(new RegExp(`${s.id}: ok, 0 new messages`));
  }, 300_000);

  it('needs no Java and listens on nothing; another command reads the folder while a sync runs', async () => {
    const user = lab.createUser('nojava');
    const mails = bulkCorpus(300, 7, { minBytes: 20_000, maxBytes: 40_000, attachmentRatio: 0 });
    for (const m of mails) lab.deliver(user, m.raw);
    // Through a throttle: the sync lasts long enough to be looked at while it runs.
    const throttle = await startThrottle({ host: '127.0.0.1', port: lab.info.ports.imaps }, 1_000_000);
    afterThis(() => throttle.close());
    const s = setup(user, { port: throttle.port });
    // No PATH: nothing can be started by name (no java, no flock); the CLI runs on the node that runs it.
    s.env.PATH = path.join(root, 'no-such-folder');
    const sync = tributary(s, ['sync']);
    let sockets: string[] | undefined;
    let listed: Awaited<Run['done']> | undefined;
    for (let i = 0; i < 100 && !listed; i++) {
      await sleep(100);
      if (fs.existsSync(path.join(s.dataDir, 'index.sqlite'))) {
        sockets = listeningSockets(processTree(sync.pid));
        listed = await tributary(s, ['sources', 'list']).done;
      }
    }
    const done = await sync.done;
    expect(done.err).toBe('');
    expect(done.code).toBe(0);
    expect(sockets).toEqual([]);
    expect(listed?.code).toBe(0);
    expect(listed?.out).toContain(s.id);
    const { count } = await stored(s);
    expect(count).toBe(mails.length);
  }, 180_000);

  it('a SIGKILLed sync: the next sync takes its lease over at once (its holder is gone) and finishes', async () => {
    const user = lab.createUser('kill');
    const mails = bulkCorpus(400, 11, { minBytes: 20_000, maxBytes: 40_000, attachmentRatio: 0 });
    for (const m of mails) lab.deliver(user, m.raw);
    const throttle = await startThrottle({ host: '127.0.0.1', port: lab.info.ports.imaps }, 1_000_000);
    afterThis(() => throttle.close());
    const s = setup(user, { port: throttle.port });
    const victim = tributary(s, ['sync']);
    await until('the sync to be under way', async () => ((await stored(s)).count > 0 ? true : undefined));
    victim.kill('SIGKILL');
    expect((await victim.done).signal).toBe('SIGKILL');

    const next = await tributary(s, ['sync', '--json']).done;
    expect(next.code).toBe(0);
    const report = (JSON.parse(next.out) as { sources: Array<{ outcome: string; notes: string[] }> })
      .sources[0]!;
    expect(report.outcome).toBe('ok');
    expect(report.notes.join('\n')).toMatch(/took over the lease/);
    const { count, ids } = await stored(s);
    expect(count).toBe(mails.length);
    expect(new Set(ids).size).toBe(mails.length);
    expect(modesUnder(s.dataDir)).toEqual([]);
  }, 180_000);

  it('Ctrl-C stops a sync at a safe point, releases the lease, exits 130; the next sync resumes', async () => {
    const user = lab.createUser('int');
    const mails = bulkCorpus(400, 12, { minBytes: 20_000, maxBytes: 40_000, attachmentRatio: 0 });
    for (const m of mails) lab.deliver(user, m.raw);
    const throttle = await startThrottle({ host: '127.0.0.1', port: lab.info.ports.imaps }, 1_000_000);
    afterThis(() => throttle.close());
    const s = setup(user, { port: throttle.port });
    const run = tributary(s, ['sync']);
    await until('the sync to be under way', async () => ((await stored(s)).count > 0 ? true : undefined));
    run.kill('SIGINT');
    const stopped = await run.done;
    expect(stopped.code).toBe(130);
    expect(stopped.out).toMatch(
      new RegExp(`${s.id}: more, \\d+ new messages? .*\\(stopped by SIGINT at a safe point`),
    );

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

  it('keeps the data folder to its owner: created 0700, files 0600, an open folder tightened and said so', async () => {
    const user = lab.createUser('mode');
    lab.deliver(user, bulkCorpus(1, 3, { maxBytes: 5_000 })[0]!.raw);
    const s = setup(user);
    const umask = process.umask(0o022);
    try {
      const first = await tributary(s, ['sync']).done;
      expect(first.code).toBe(0);
      expect(fs.statSync(s.dataDir).mode & 0o777).toBe(0o700);
      expect(fs.existsSync(path.join(s.dataDir, 'index.sqlite'))).toBe(true);
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
