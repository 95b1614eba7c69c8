import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../../functions/local/processes';
import type { MessageSummary } from '../../../functions/web/contract';
import { bulkCorpus } from '../../support/corpus';
import {
  BIN,
  listeningSockets,
  processesMentioning,
  processTree,
  ServeClient,
  startChild,
  startThrottle,
  startUrl,
  until,
  type Child,
} from '../../support/local-service';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { serverState } from '../../support/upstream';

/**
 * `npm start` end to end (issue #16): the whole service as one process on the embedded store, with one IMAP source
 * (kept upstream) and one POP3 source (delete-on-retrieve) on the test Dovecot. Stopped by SIGTERM in the middle of
 * a sync, started again: every message once, the POP3 maildrop emptied only of stored mail, new mail arriving, only
 * 127.0.0.1 listening, nothing left running.
 */
const lab = MailLab.fromEnv();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-start-'));
const children: Child[] = [];
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  // The whole tree (npm, its shell, node): killing npm alone would leave the service running.
  for (const c of children) {
    if (c.child.exitCode !== null || c.child.signalCode !== null) continue;
    for (const pid of processTree(c.child.pid!).reverse()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  for (const close of closers) await close();
  fs.rmSync(root, { recursive: true, force: true });
});

function messageId(raw: Buffer): string {
  return /^Message-ID: *(\S+)/im.exec(raw.toString('latin1'))![1]!;
}

function deliver(user: TestUser, count: number, seed: number): string[] {
  return bulkCorpus(count, seed, { minBytes: 6_000, maxBytes: 12_000, attachmentRatio: 0 }).map((m) => {
    lab.deliver(user, m.raw);
    return messageId(m.raw);
  });
}

function writeSecret(dir: string, name: string, password: string): string {
  const secrets = path.join(dir, '.secrets');
  fs.mkdirSync(secrets, { recursive: true, mode: 0o700 });
  const file = path.join(secrets, name);
  fs.writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return path.relative(dir, file);
}

/** What the API lists, by source: the Message-IDs are not in summaries, so subjects (unique per bulk message). */
function subjectsOf(messages: MessageSummary[], source: string): string[] {
  return messages.filter((m) => m.sources.includes(source)).map((m) => m.subject ?? '');
}

describe('npm start', () => {
  it('syncs an IMAP and a POP3 source on its own schedule; SIGTERM mid-sync, restart: nothing lost or twice, only 127.0.0.1', async () => {
    const imapUser = lab.createUser('start-imap');
    const popUser = lab.createUser('start-pop');
    const imapIds = deliver(imapUser, 160, 1601);
    const popIds = deliver(popUser, 40, 1602);
    // The IMAP server's bytes come through a throttle, so its first sync lasts long enough to be stopped midway.
    const throttle = await startThrottle({ host: '127.0.0.1', port: lab.info.ports.imaps }, 150_000);
    closers.push(() => throttle.close());
    const dir = fs.mkdtempSync(path.join(root, 'svc-'));
    fs.writeFileSync(path.join(dir, 'ca.pem'), lab.ca);
    const config = path.join(dir, 'tributary.config.json');
    fs.writeFileSync(
      config,
      JSON.stringify({
        store: { mode: 'local', dataDir: 'data' },
        sources: [
          {
            id: 'work',
            protocol: 'imap',
            host: '127.0.0.1',
            port: throttle.port,
            tls: 'implicit',
            caFile: 'ca.pem',
            servername: lab.info.servername,
            user: imapUser.name,
            secret: { file: writeSecret(dir, 'work', imapUser.password) },
            pollMinutes: 1,
          },
          {
            id: 'home',
            protocol: 'pop3',
            host: '127.0.0.1',
            port: lab.info.ports.pop3s,
            tls: 'implicit',
            caFile: 'ca.pem',
            servername: lab.info.servername,
            user: popUser.name,
            secret: { file: writeSecret(dir, 'home', popUser.password) },
            retention: { mode: 'delete-on-retrieve' },
            pollMinutes: 1,
          },
        ],
      }),
    );
    const port = await freePort();
    const npmStart = () => {
      const c = startChild('npm', ['start', '--silent', '--', '--port', String(port), '--config', config]);
      children.push(c);
      return c;
    };

    // First start: ready, and the scheduler starts both sources at once (they are due: never run).
    const first = npmStart();
    const api = await ServeClient.open(await until('the start URL', () => startUrl(first.out())));
    expect(first.out()).toMatch(/ready on 127\.0\.0\.1/);
    const midway = await until(
      'the IMAP sync to be under way',
      async () => {
        const n = subjectsOf(await api.messages('work'), 'work').length;
        return n > 0 && n < imapIds.length ? n : undefined;
      },
      90_000,
      200,
    );
    expect(midway).toBeLessThan(imapIds.length);

    // While it syncs, everything the process tree listens on is 127.0.0.1 (the `ss -ltnp` view).
    const tree = processTree(first.child.pid!);
    const listening = listeningSockets(tree);
    expect(listening.length).toBeGreaterThan(0);
    for (const socket of listening) expect(socket).toMatch(/^tcp 0100007F:/);

    // SIGTERM in the middle: it stops at a safe point and exits 0.
    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(0);
    expect(first.err()).toMatch(/tributary serve: stopped/);
    await expect(fetch(`${api.base}/config.json`)).rejects.toThrow();

    // Start again: it resumes, and both sources end complete.
    const second = npmStart();
    const api2 = await ServeClient.open(await until('the start URL', () => startUrl(second.out())));
    const all = await until(
      'every message of both sources',
      async () => {
        const m = await api2.messages();
        return subjectsOf(m, 'work').length === imapIds.length &&
          subjectsOf(m, 'home').length === popIds.length
          ? m
          : undefined;
      },
      180_000,
      500,
    );
    // Each message once: 200 distinct entries, none twice in the merged inbox.
    expect(all).toHaveLength(imapIds.length + popIds.length);
    expect(new Set(all.map((m) => m.subject)).size).toBe(all.length);
    // The IMAP source keeps its mail upstream; the POP3 one was emptied of what was stored, and of nothing else.
    expect((await serverState(lab, imapUser)).messages).toHaveLength(imapIds.length);
    await until('the POP3 maildrop emptied', async () => {
      const left =
        fs.readdirSync(path.join(popUser.maildir, 'cur')).length +
        fs.readdirSync(path.join(popUser.maildir, 'new')).length;
      return left === 0 ? true : undefined;
    });

    // New mail arrives: sync now (the interval is a minute) brings it.
    const [late] = deliver(popUser, 1, 1603);
    expect(late).toBeDefined();
    await api2.post('/api/sources/home/sync');
    await until('the new message', async () =>
      subjectsOf(await api2.messages('home'), 'home').length === popIds.length + 1 ? true : undefined,
    );

    second.child.kill('SIGTERM');
    expect(await second.exit).toBe(0);
    // Nothing of it is left running (npm, the shell, node).
    expect(
      await until('no process left', () => (processesMentioning(dir).length ? undefined : true), 10_000),
    ).toBe(true);
  }, 420_000);

  it('with no config: creates one, opens on the first-run form, and says so; a taken port is a clear error', async () => {
    const dir = fs.mkdtempSync(path.join(root, 'fresh-'));
    const config = path.join(dir, 'tributary.config.json');
    const port = await freePort();
    const served = startChild(process.execPath, [BIN, 'serve', '--port', String(port), '--config', config]);
    children.push(served);
    const api = await ServeClient.open(await until('the start URL', () => startUrl(served.out())));
    expect(served.out()).toMatch(/No mail account yet/);
    expect(JSON.parse(fs.readFileSync(config, 'utf8'))).toEqual({
      store: { mode: 'local', dataDir: '.tributary' },
      sources: [],
    });
    expect(fs.statSync(config).mode & 0o777).toBe(0o600);
    expect((await api.get<{ sources: unknown[] }>('/api/sources')).sources).toEqual([]);
    expect(fs.statSync(path.join(dir, '.tributary')).mode & 0o777).toBe(0o700);

    // The form's "add": a wrong password saves nothing; the right one saves the source (password in a 0600 file,
    // not in the config) and its mail arrives.
    const user = lab.createUser('first-run');
    const ids = deliver(user, 3, 1604);
    const form = {
      protocol: 'imap',
      host: '127.0.0.1',
      port: lab.info.ports.imap,
      tls: 'none',
      user: user.name,
      password: 'not-the-password',
    };
    const refused = await api.post<{ ok: boolean; code?: string }>('/api/sources', form);
    expect(refused).toMatchObject({ ok: false, code: 'AUTH_FAILED' });
    expect((JSON.parse(fs.readFileSync(config, 'utf8')) as { sources: unknown[] }).sources).toEqual([]);
    const added = await api.post<{ ok: boolean; sourceId: string; lines: string[] }>('/api/sources', {
      ...form,
      password: user.password,
    });
    expect(added.ok).toBe(true);
    expect(added.lines.join('\n')).toMatch(/login: ok/);
    const saved = JSON.parse(fs.readFileSync(config, 'utf8')) as { sources: Array<Record<string, unknown>> };
    expect(saved.sources).toHaveLength(1);
    expect(JSON.stringify(saved)).not.toContain(user.password);
    const secret = path.resolve(dir, (saved.sources[0]!.secret as { file: string }).file);
    expect(fs.readFileSync(secret, 'utf8').trim()).toBe(user.password);
    expect(fs.statSync(secret).mode & 0o777).toBe(0o600);
    await until('the mail of the added source', async () =>
      (await api.messages(added.sourceId)).length === ids.length ? true : undefined,
    );

    const second = startChild(process.execPath, [BIN, 'serve', '--port', String(port), '--config', config]);
    children.push(second);
    expect(await second.exit).toBe(1);
    expect(second.err()).toMatch(new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));

    served.child.kill('SIGINT');
    expect(await served.exit).toBe(0);
  }, 120_000);
});
