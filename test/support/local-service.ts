import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { MessagePage, MessageSummary } from '../../functions/web/contract';

/** Running `npm start` / `tributary serve` / the CLI in child processes, as a user does, for the local-mode tests. */

export const REPO = path.join(__dirname, '..', '..');
export const BIN = path.join(REPO, 'bin', 'tributary.cjs');

export interface Child {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<number | null>;
}

export function startChild(
  command: string,
  args: string[],
  env: Record<string, string> = {},
  cwd = REPO,
): Child {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exit };
}

export async function until<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  ms = 60_000,
  every = 100,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** The API of a running `tributary serve`, signed in through its start URL. */
export class ServeClient {
  private constructor(
    readonly base: string,
    private readonly cookie: string,
  ) {}

  static async open(startUrl: string): Promise<ServeClient> {
    const opened = await fetch(startUrl, { redirect: 'manual' });
    const cookie = opened.headers.get('set-cookie');
    if (!cookie) throw new Error(`no session cookie from ${startUrl} (${opened.status})`);
    return new ServeClient(new URL(startUrl).origin, cookie.split(';')[0]!);
  }

  async get<T>(p: string): Promise<T> {
    const res = await fetch(`${this.base}${p}`, { headers: { cookie: this.cookie } });
    if (!res.ok) throw new Error(`GET ${p}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  async post<T>(p: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.base}${p}`, {
      method: 'POST',
      headers: { cookie: this.cookie, origin: this.base, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return (await res.json()) as T;
  }

  /** Every message of the inbox (or of one source), all pages. */
  async messages(source?: string): Promise<MessageSummary[]> {
    const all: MessageSummary[] = [];
    let cursor: string | null = null;
    do {
      const query = new URLSearchParams({ limit: '100' });
      if (source) query.set('source', source);
      if (cursor) query.set('cursor', cursor);
      const page: MessagePage = await this.get<MessagePage>(`/api/messages?${query.toString()}`);
      all.push(...page.messages);
      cursor = page.cursor;
    } while (cursor);
    return all;
  }
}

/** The start URL a `tributary serve` printed, once it is ready. */
export function startUrl(output: string): string | undefined {
  return /http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]+/.exec(output)?.[0];
}

/** The pids of a process and all its descendants (from /proc's parent links). */
export function processTree(root: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(fields[1]));
    } catch {
      // gone meanwhile
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, parent] of parents) if (parent === tree[i] && !tree.includes(pid)) tree.push(pid);
  }
  return tree.filter((pid) => fs.existsSync(`/proc/${pid}`));
}

/**
 * Every listening TCP socket the processes own, as `address:port` in the kernel's hex notation (`0100007F` is
 * 127.0.0.1): the `ss -ltnp` view, read from /proc (socket inodes of each process's descriptors matched against
 * /proc/net/tcp and tcp6 entries in state 0A, LISTEN).
 */
export function listeningSockets(pids: number[]): string[] {
  const inodes = new Set<string>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
  }
  const found: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(file)) continue;
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && inodes.has(cols[9] ?? '')) found.push(`${path.basename(file)} ${cols[1]}`);
    }
  }
  return found;
}

/** Processes whose command line or working folder mention `marker` (a test's temp folder): what is left behind. */
export function processesMentioning(marker: string): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    if (Number(pid) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(marker)) found.push(`${pid} ${cmd}`);
    } catch {
      // gone
    }
  }
  return found;
}

/**
 * A TCP proxy that passes the server's bytes at `bytesPerSecond` at most (the client's at once): a sync through it
 * takes long enough to be stopped in the middle.
 */
export async function startThrottle(
  target: { host: string; port: number },
  bytesPerSecond: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    sockets.add(client).add(upstream);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream);
    const slice = Math.max(1, Math.floor(bytesPerSecond / 20));
    const queue: Buffer[] = [];
    let ended = false;
    const timer = setInterval(() => {
      let budget = slice;
      while (budget > 0 && queue.length) {
        const head = queue[0]!;
        const part = head.subarray(0, budget);
        client.write(part);
        budget -= part.length;
        if (part.length === head.length) queue.shift();
        else queue[0] = head.subarray(part.length);
      }
      if (!queue.length && ended) {
        clearInterval(timer);
        client.end();
      }
    }, 50);
    upstream.on('data', (chunk: Buffer) => queue.push(chunk));
    upstream.on('end', () => (ended = true));
    client.on('close', () => {
      clearInterval(timer);
      upstream.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
