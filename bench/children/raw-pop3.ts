/**
 * The raw POP3 ceiling: a bare TLS socket that logs in and pipelines `RETR 1` .. `RETR n` in one write, counting
 * message bytes (without the terminator) and dropping them.
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
const lines: Array<(line: string) => void> = [];
let retrieving = 0;
let inMessage = false;
let messages = 0;
let bytes = 0;
let allDone: () => void = () => undefined;

socket.on('data', (chunk: Buffer) => {
  buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
  let pos = 0;
  for (;;) {
    if (inMessage) {
      // The message ends at CRLF "." CRLF; its first line may be the terminator itself (an empty message).
      const end = buffer.indexOf('\r\n.\r\n', Math.max(0, pos - 2));
      if (end < 0) {
        const keep = Math.max(pos, buffer.length - 4);
        bytes += keep - pos;
        pos = keep;
        break;
      }
      bytes += end + 2 - pos;
      pos = end + 5;
      inMessage = false;
      messages++;
      if (messages === retrieving) allDone();
      continue;
    }
    const eol = buffer.indexOf('\r\n', pos);
    if (eol < 0) break;
    const line = buffer.toString('latin1', pos, eol);
    pos = eol + 2;
    if (retrieving > 0) {
      if (!line.startsWith('+OK')) throw new Error(`RETR failed: ${line}`);
      inMessage = true;
      pos -= 2; // the CRLF before the first line counts for the terminator search
      bytes -= 2;
    } else {
      lines.shift()?.(line);
    }
  }
  buffer = buffer.subarray(pos);
});

const command = (text: string) =>
  new Promise<string>((resolve, reject) => {
    lines.push((line) => (line.startsWith('+OK') ? resolve(line) : reject(new Error(line))));
    if (text) socket.write(`${text}\r\n`);
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
  await command(''); // greeting
  await command(`USER ${env('BENCH_USER')}`);
  await command(`PASS ${env('BENCH_PASS')}`);
  const stat = await command('STAT');
  const count = Number(stat.split(' ')[1]);
  const done = new Promise<void>((resolve) => (allDone = resolve));
  retrieving = count;
  let all = '';
  for (let i = 1; i <= count; i++) all += `RETR ${i}\r\n`;
  socket.write(all);
  if (count > 0) await done;
  retrieving = 0;
  await command('QUIT');
  finished = true;
  socket.end();
  fs.writeFileSync(env('BENCH_OUT'), JSON.stringify({ messages, bytes }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
