/**
 * The imapflow ceiling: the IMAP library Tributary uses, fetching every message's BODY.PEEK[] of INBOX and
 * storing nothing. Environment: BENCH_HOST, BENCH_PORT, BENCH_USER, BENCH_PASS, BENCH_CA, BENCH_OUT.
 */
import fs from 'node:fs';
import { ImapFlow } from 'imapflow';

const env = (name: string) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

async function main(): Promise<void> {
  const client = new ImapFlow({
    host: env('BENCH_HOST'),
    port: Number(env('BENCH_PORT')),
    secure: true,
    servername: 'localhost',
    tls: { ca: fs.readFileSync(env('BENCH_CA')), servername: 'localhost' },
    auth: { user: env('BENCH_USER'), pass: env('BENCH_PASS') },
    logger: false,
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 120_000,
  });
  await client.connect();
  await client.mailboxOpen('INBOX', { readOnly: true });
  let messages = 0;
  let bytes = 0;
  for await (const message of client.fetch('1:*', { uid: true, source: true }, { uid: true })) {
    messages++;
    bytes += message.source?.length ?? 0;
  }
  await client.logout();
  fs.writeFileSync(env('BENCH_OUT'), JSON.stringify({ messages, bytes }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
