import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../../functions/local/processes';
import type { MessagePage } from '../../../functions/web/contract';
import { listeningSockets, processesMentioning, processTree } from '../../support/local-service';
import { MailLab } from '../../support/mail-lab';

/**
 * `tributary serve` as a user runs it: bin/tributary.cjs in a child process, over a config whose store is the
 * harness's DynamoDB Local and s3rver, with one Dovecot source.
 */
const lab = MailLab.fromEnv();
const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'tributary.cjs');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-serve-'));
fs.writeFileSync(path.join(dir, 'ca.pem'), lab.ca);
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Served {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<number | null>;
}

function start(args: string[], env: Record<string, string>): Served {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exit };
}

async function until<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  ms = 30_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The sockets listening on `port` in /proc/net/tcp(6): their local addresses, as the kernel writes them. */
function listeners(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(file)) continue;
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const [addr, p] = (cols[1] ?? '').split(':');
      if (p === hexPort && cols[3] === '0A') out.push(`${file}:${addr}`);
    }
  }
  return out;
}

function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('tributary serve', () => {
  it('serves the API on 127.0.0.1 only behind the start URL cookie, syncs now, refuses a taken port, stops on SIGTERM', async () => {
    const user = lab.createUser('serve');
    lab.deliver(
      user,
      'From: Ann <ann@example.com>\r\nSubject: served by serve\r\nDate: Sat, 03 Jan 2026 10:00:00 +0000\r\nMessage-ID: <serve@test>\r\n\r\nhello\r\n',
    );
    const id = `serve-${Math.random().toString(36).slice(2, 8)}`;
    const config = path.join(dir, `${id}.json`);
    fs.writeFileSync(
      config,
      JSON.stringify({
        store: {
          mode: 'aws',
          table: process.env.TRIBUTARY_TEST_TABLE,
          bucket: process.env.TRIBUTARY_TEST_BUCKET,
        },
        sources: [
          {
            id,
            protocol: 'imap',
            host: '127.0.0.1',
            port: lab.info.ports.imaps,
            tls: 'implicit',
            caFile: 'ca.pem',
            servername: 'localhost',
            user: user.name,
            secret: { env: 'SERVE_TEST_PW' },
          },
        ],
      }),
    );
    const port = await freePort();
    const env = { SERVE_TEST_PW: user.password };
    const served = start(['serve', '--port', String(port), '--config', config], env);
    const url = await until(
      'the start URL',
      () => /http:\/\/127\.0\.0\.1:(\d+)\/\?token=([A-Za-z0-9_-]+)/.exec(served.out())?.[0],
    );
    expect(url).toContain(`:${port}/`);
    const base = `http://127.0.0.1:${port}`;

    // Listening on 127.0.0.1 only: the kernel's table shows one IPv4 loopback socket, and no other address answers.
    expect(listeners(port)).toEqual(['/proc/net/tcp:0100007F']);
    expect(await connects('::1', port)).toBe(false);
    for (const addrs of Object.values(os.networkInterfaces())) {
      for (const a of addrs ?? []) {
        if (!a.internal && a.family === 'IPv4') expect(await connects(a.address, port)).toBe(false);
      }
    }

    // No cookie: 401. The start URL sets it and redirects to the page.
    expect((await fetch(`${base}/api/messages`)).status).toBe(401);
    const opened = await fetch(url, { redirect: 'manual' });
    expect(opened.status).toBe(303);
    expect(opened.headers.get('location')).toBe('/');
    const setCookie = opened.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/HttpOnly/i);
    expect(setCookie).toMatch(/SameSite=Strict/i);
    const cookie = setCookie.split(';')[0]!;
    const api = (p: string, init: RequestInit = {}) =>
      fetch(`${base}${p}`, { ...init, headers: { cookie, ...(init.headers as Record<string, string>) } });
    expect((await api('/api/messages')).status).toBe(200);
    expect((await fetch(`${base}/api/messages`, { headers: { cookie: `${cookie}x` } })).status).toBe(401);
    // Another Host name (DNS rebinding) is refused even with the cookie.
    const rebound = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: '/api/messages', headers: { host: `evil.example:${port}`, cookie } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(rebound).toBe(403);
    // The page's config.
    expect(await (await fetch(`${base}/config.json`)).json()).toEqual({ auth: 'cookie' });

    // Sync now runs the source's sync in the server's process.
    const queued = await api(`/api/sources/${id}/sync`, { method: 'POST', headers: { origin: base } });
    expect(await queued.json()).toEqual({ queued: true });
    const page = await until('the synced message', async () => {
      const p = (await (await api(`/api/messages?source=${id}`)).json()) as MessagePage;
      return p.messages.length > 0 ? p : undefined;
    });
    expect(page.messages.map((m) => m.subject)).toEqual(['served by serve']);

    // A second server on the same port says so and exits.
    const second = start(['serve', '--port', String(port), '--config', config], env);
    expect(await second.exit).toBe(1);
    expect(second.err()).toMatch(new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));

    // SIGTERM: a service's normal stop (status 0), the port released, nothing left running.
    served.child.kill('SIGTERM');
    expect(await served.exit).toBe(0);
    expect(served.err()).toMatch(/tributary serve: stopped/);
    expect(await connects('127.0.0.1', port)).toBe(false);
  }, 120_000);

  it('serves over the local store (the embedded store, no other process) and stops on SIGTERM', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'local-'));
    const config = path.join(folder, 'tributary.config.json');
    fs.writeFileSync(config, JSON.stringify({ store: { mode: 'local', dataDir: 'data' }, sources: [] }));
    const dataDir = path.join(folder, 'data');
    const port = await freePort();
    const served = start(['serve', '--port', String(port), '--config', config], {});
    const url = await until(
      'the start URL',
      () => /http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]+/.exec(served.out())?.[0],
      60_000,
    );
    const opened = await fetch(url, { redirect: 'manual' });
    const cookie = opened.headers.get('set-cookie')!.split(';')[0]!;
    const page = (await (
      await fetch(`http://127.0.0.1:${port}/api/messages`, { headers: { cookie } })
    ).json()) as MessagePage;
    expect(page).toEqual({ messages: [], cursor: null });
    expect(fs.existsSync(path.join(dataDir, 'index.sqlite'))).toBe(true);
    // The store is a file it opens, not servers it starts: no Java, no S3 server in the process tree (esbuild's
    // service process, which builds the page, is the only child), and nothing listening but the page's port.
    const tree = processTree(served.child.pid!);
    const commands = tree.map((pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '));
    expect(commands.filter((c) => /java|s3rver|DynamoDB/i.test(c))).toEqual([]);
    expect(listeningSockets(tree)).toEqual([
      `tcp 0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`,
    ]);
    served.child.kill('SIGTERM');
    expect(await served.exit).toBe(0);
    expect(processesMentioning(dataDir)).toEqual([]);
  }, 120_000);
});
