import tls from 'node:tls';
import { MailLab } from '../../support/mail-lab';

const lab = MailLab.fromEnv();

/** A deliberately tiny POP3 conversation over a TLS socket: proves the harness, not the product's client. */
async function pop3(user: { name: string; password: string }, commands: string[]): Promise<string> {
  const socket = tls.connect({
    host: lab.info.host,
    port: lab.info.ports.pop3s,
    ca: lab.ca,
    servername: lab.info.servername,
  });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const script = [`USER ${user.name}`, `PASS ${user.password}`, ...commands, 'QUIT']
    .map((c) => `${c}\r\n`)
    .join('');
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => socket.write(script));
    socket.once('error', reject);
    socket.once('close', () => resolve());
  });
  return Buffer.concat(chunks).toString('latin1');
}

describe('the harness Dovecot over POP3S', () => {
  it('answers STAT, UIDL and RETR for mail delivered into the Maildir', async () => {
    const user = lab.createUser();
    const body = 'Line one\r\n.starts with a dot\r\n';
    const msg = `Subject: pop\r\nMessage-ID: <pop@example.test>\r\n\r\n${body}`;
    lab.deliver(user, msg);
    const status = await lab.status(user);
    const out = await pop3(user, ['STAT', 'UIDL', 'RETR 1']);
    expect(out).toMatch(/^\+OK/);
    expect(out).toContain(`+OK 1 ${Buffer.byteLength(msg)}\r\n`);
    // Dovecot's default UIDL format: UID then UIDVALIDITY, 8 lower-case hex digits each (notes: pitfall 2).
    expect(out).toContain(`1 00000001${Number(status.uidValidity).toString(16).padStart(8, '0')}\r\n`);
    // Dot-stuffed on the wire.
    expect(out).toContain('\r\n..starts with a dot\r\n.\r\n');
  });

  it('refuses a wrong password', async () => {
    const user = lab.createUser();
    const out = await pop3({ name: user.name, password: 'wrong' }, ['STAT']);
    expect(out).toMatch(/-ERR \[AUTH\] Authentication failed/);
  });
});
