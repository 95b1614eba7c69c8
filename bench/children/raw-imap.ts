/**
 * The raw IMAP ceiling: a bare TLS socket that logs in, EXAMINEs INBOX and sends one
 * `UID FETCH 1:* (BODY.PEEK[])`, counting the literal bytes and dropping them. What no fetcher can beat.
 * Environment: BENCH_HOST, BENCH_PORT, BENCH_USER, BENCH_PASS, BENCH_CA (file), BENCH_OUT (result JSON).
 */
import fs from 'node:fs';
import tls from 'node:tls';

const env = (name: string) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const socket = tls.connect({
  host: env('BENCH_HOST'),
  port: Number(env('BENCH_PORT')),
  servername: 'localhost',
  ca: fs.readFileSync(env('BENCH_CA')),
});
let buffer: Buffer = Buffer.alloc(0);
let literal = 0;
let messages = 0;
let bytes = 0;
let waiting: { tag: string; done: (line: string) => void } | undefined;

socket.on('data', (chunk: Buffer) => {
  buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
  let pos = 0;
  for (;;) {
    if (literal > 0) {
      const take = Math.min(literal, buffer.length - pos);
      literal -= take;
      bytes += take;
      pos += take;
      if (literal > 0) break;
      continue;
    }
    const eol = buffer.indexOf('\r\n', pos);
    if (eol < 0) break;
    const line = buffer.toString('latin1', pos, eol);
    pos = eol + 2;
    const m = /\{(\d+)\}$/.exec(line);
    if (m) {
      literal = Number(m[1]);
      messages++;
    } else if (waiting && line.startsWith(`${waiting.tag} `)) {
      const w = waiting;
      waiting = undefined;
      w.done(line);
    } else if (!waiting && line.startsWith('* OK')) {
      greeted();
    }
  }
  buffer = buffer.subarray(pos);
});

let greeted: () => void = () => undefined;
const command = (tag: string, text: string) =>
  new Promise<string>((resolve, reject) => {
    waiting = {
      tag,
      done: (line) => (line.startsWith(`${tag} OK`) ? resolve(line) : reject(new Error(line))),
    };
    socket.write(`${tag} ${text}\r\n`);
  });

let finished = false;
socket.on('close', () => {
  if (finished) return;
  console.error('the connection closed before the fetch ended');
  process.exit(1);
});
socket.on('error', (err) => {
  console.error(err);
  process.exit(1);
});

async function main(): Promise<void> {
  await new Promise<void>((resolve) => (greeted = resolve));
  greeted = () => undefined;
  await command('a', `LOGIN "${env('BENCH_USER')}" "${env('BENCH_PASS')}"`);
  await command('b', 'EXAMINE INBOX');
  messages = 0;
  bytes = 0;
  await command('c', 'UID FETCH 1:* (BODY.PEEK[])');
  await command('d', 'LOGOUT');
  finished = true;
  socket.end();
  fs.writeFileSync(env('BENCH_OUT'), JSON.stringify({ messages, bytes }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
