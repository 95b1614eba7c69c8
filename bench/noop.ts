import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { bulkCorpus } from '../test/support/corpus';
import type { Lab } from './lib/lab';
import { measure } from './lib/measure';

/**
 * The no-op poll on the wire (performance issue, target 4): `tributary sync` of a mailbox it has already synced,
 * over the bench Dovecot's plain ports (TLS off on loopback, so the commands can be read) through a tap that records
 * what the client sends and when the server answered. A round trip after the login is a client turn (the client
 * speaking after the server spoke) that follows the turn completing the login; the closing LOGOUT or QUIT is not
 * counted (nothing waits on its answer but the connection's end).
 */

export const NOOP_TARGETS = { imap: 2, pop3: 1 } as const;

export interface NoopFigures {
  protocol: 'imap' | 'pop3';
  /** Round trips after the login, the closing LOGOUT/QUIT not counted. */
  roundTrips: number;
  /** The commands of each client turn after the login, e.g. [["STATUS"], ["LOGOUT"]]. */
  turns: string[][];
  target: number;
  meetsTarget: boolean;
}

interface Tap {
  port: number;
  /** Client turns: the command names of each (a pipelined batch is one turn). */
  turns(): string[][];
  reset(): void;
  close(): Promise<void>;
}

async function startTap(target: { host: string; port: number }): Promise<Tap> {
  let turns: string[] = [];
  let serverSpoke = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (chunk: Buffer) => {
      if (serverSpoke || !turns.length) turns.push('');
      serverSpoke = false;
      turns[turns.length - 1] += chunk.toString('latin1');
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      serverSpoke = true;
      client.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    turns: () => turns.map((text) => text.split('\r\n').filter(Boolean)),
    reset: () => {
      turns = [];
      serverSpoke = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The command name of a line: IMAP drops the tag; a line that is no command (a SASL response) gives ''. */
function commandOf(protocol: 'imap' | 'pop3', line: string): string {
  const m = protocol === 'imap' ? /^\S+ ([A-Za-z]+)/.exec(line) : /^([A-Za-z]+)(?: |$)/.exec(line);
  return m ? m[1]!.toUpperCase() : '';
}

/** The turns after the one that completes the login (AUTHENTICATE without an initial response: the next turn). */
export function afterLogin(protocol: 'imap' | 'pop3', turns: string[][]): string[][] {
  const named = turns.map((lines) => lines.map((line) => commandOf(protocol, line)));
  const loginNames = protocol === 'imap' ? ['LOGIN', 'AUTHENTICATE'] : ['PASS', 'AUTH', 'APOP'];
  let last = -1;
  named.forEach((names, i) => {
    if (names.some((n) => loginNames.includes(n))) last = i;
  });
  if (last < 0) throw new Error(`no login seen in the ${protocol} session: ${JSON.stringify(named)}`);
  const loginLine = turns[last]!.find((line) => loginNames.includes(commandOf(protocol, line)))!;
  // "A AUTHENTICATE PLAIN" (IMAP) or "AUTH PLAIN" (POP3) without the response: the server asks "+", the client's
  // next turn carries the credentials and still belongs to the login.
  const words = loginLine.trim().split(/\s+/);
  const awaitsContinuation =
    (protocol === 'imap' && words[1]?.toUpperCase() === 'AUTHENTICATE' && words.length === 3) ||
    (protocol === 'pop3' && words[0]?.toUpperCase() === 'AUTH' && words.length === 2);
  return named.slice(last + (awaitsContinuation ? 2 : 1));
}

export async function benchNoop(lab: Lab, protocol: 'imap' | 'pop3'): Promise<NoopFigures> {
  const user = lab.mail.createUser(`noop${protocol}`);
  for (const m of bulkCorpus(20, 17, { maxBytes: 20_000 })) lab.mail.deliver(user, m.raw);
  const store = await lab.freshStore(`noop-${protocol}`);
  const tap = await startTap({
    host: lab.dovecot.noTlsHost,
    port: protocol === 'imap' ? lab.dovecot.ports.imap : lab.dovecot.ports.pop3,
  });
  const dir = path.join(lab.dir, 'work', `noop-${protocol}`);
  fs.mkdirSync(dir, { recursive: true });
  const config = path.join(dir, 'tributary.config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      store: { mode: 'aws', table: store.table, bucket: store.bucket, region: 'us-east-1' },
      sources: [
        {
          id: 'noop',
          protocol,
          host: '127.0.0.1',
          port: tap.port,
          tls: 'none',
          user: user.name,
          secret: { env: 'BENCH_TRIBUTARY_PASSWORD' },
        },
      ],
    }),
  );
  const sync = async () => {
    const run = await measure(
      lab.tributary(['sync', '--json', '--config', config], {
        ...store.env,
        BENCH_TRIBUTARY_PASSWORD: user.password,
      }),
    );
    if (run.exitCode !== 0)
      throw new Error(`no-op poll (${protocol}): sync exit ${run.exitCode}: ${run.stderr}`);
  };
  try {
    await sync(); // the first poll fetches the 20 messages
    tap.reset();
    await sync(); // nothing new
    const after = afterLogin(protocol, tap.turns());
    const closing = protocol === 'imap' ? 'LOGOUT' : 'QUIT';
    const counted = after.filter((names) => !(names.length === 1 && names[0] === closing));
    const target = NOOP_TARGETS[protocol];
    return {
      protocol,
      roundTrips: counted.length,
      turns: after,
      target,
      meetsTarget: counted.length <= target,
    };
  } finally {
    await tap.close();
    await store.drop();
  }
}
