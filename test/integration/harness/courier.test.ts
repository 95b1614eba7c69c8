import { measure, table, type Row, type ServerUnderTest } from '../../support/courier-compare';
import { CourierLab, RawPop3, imapSnapshot, pop3Snapshot, type Endpoint } from '../../support/courier-lab';
import { MailLab, imapsClient } from '../../support/mail-lab';

const found = CourierLab.fromEnv();
const lab = found instanceof CourierLab ? found : undefined;
if (!lab) process.stderr.write(`[courier] skipped: ${(found as { unavailable: string }).unavailable}\n`);
const describeCourier = lab ? describe : describe.skip;

function message(subject: string, body = 'Hello from the Courier harness.\r\n'): Buffer {
  return Buffer.from(
    `From: Ann <ann@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.test>\r\nDate: Thu, 26 Nov 2026 09:00:00 +0000\r\n\r\n${body}`,
  );
}

describeCourier('the harness Courier', () => {
  const c = lab!;

  it('logs in over IMAPS with the harness CA, and refuses a wrong password over IMAP and POP3', async () => {
    const user = c.createUser();
    const client = imapsClient(c, user);
    await client.connect();
    try {
      expect((await client.list()).map((m) => m.path)).toContain('INBOX');
      expect(client.capabilities.has('UIDPLUS')).toBe(true);
    } finally {
      await client.logout();
    }
    const wrong = imapsClient(c, { name: user.name, password: 'not-the-password' });
    // Courier answers a failed login after 5 s: both at once.
    const wrongPop3 = async () => {
      const pop = await RawPop3.open(c.endpoint('pop3', 'none'));
      try {
        expect(await pop.command(`USER ${user.name}`)).toMatch(/^\+OK/);
        expect(await pop.command('PASS wrong')).toMatch(/^-ERR/);
      } finally {
        await pop.quit();
      }
    };
    await Promise.all([
      expect(wrong.connect()).rejects.toMatchObject({ authenticationFailed: true }),
      wrongPop3(),
    ]);
  });

  it('serves a delivered message over plain IMAP and IMAPS byte for byte, CRLF restored from the LF Maildir', async () => {
    const user = c.createUser();
    const raw = message('imap-roundtrip', 'Line one\r\n.starts with a dot\r\n');
    c.deliver(user, raw);
    for (const mode of ['none', 'implicit'] as const) {
      const served = await imapSnapshot(c.endpoint('imap', mode), user);
      expect(served.messages).toHaveLength(1);
      expect(served.messages[0]!.uid).toBe(1);
      expect(served.messages[0]!.bytes.equals(raw)).toBe(true);
      expect(served.messages[0]!.size).toBe(raw.length);
    }
  });

  it('answers STAT, UIDL, LIST and RETR over plain POP3 and POP3S, un-stuffed bytes equal to the delivered ones', async () => {
    const user = c.createUser();
    const raw = message('pop3-roundtrip', 'Line one\r\n.starts with a dot\r\n..two dots\r\n');
    c.deliver(user, raw);
    for (const mode of ['none', 'implicit'] as const) {
      const served = await pop3Snapshot(c.endpoint('pop3', mode), user);
      expect(served.stat).toBe(`+OK 1 ${raw.length}`);
      expect(served.messages).toHaveLength(1);
      // Courier's UIDL is the IMAP UID and the folder's UIDVALIDITY.
      expect(served.messages[0]!.uidl).toMatch(/^UID1-\d+$/);
      expect(served.messages[0]!.size).toBe(raw.length);
      expect(served.messages[0]!.bytes.equals(raw)).toBe(true);
    }
  });

  it('keeps users apart: a message delivered to one is not served to another', async () => {
    const a = c.createUser();
    const b = c.createUser();
    c.deliver(a, message('only-for-a'));
    expect((await imapSnapshot(c.endpoint('imap', 'none'), a)).messages).toHaveLength(1);
    expect((await imapSnapshot(c.endpoint('imap', 'none'), b)).messages).toHaveLength(0);
  });
});

describeCourier('Dovecot and Courier, measured the same way (the table of docs/servers.md)', () => {
  it('prints what a fetcher must know of each, and holds the facts the adapters rely on', async () => {
    const dovecot = MailLab.fromEnv();
    const c = lab!;
    const plain = (port: number): Endpoint => ({ host: '127.0.0.1', port, tls: 'none' });
    const servers: ServerUnderTest[] = [
      {
        name: 'Dovecot',
        imap: plain(dovecot.info.ports.imap),
        pop3: plain(dovecot.info.ports.pop3),
        createUser: (options) => dovecot.createUser('cmp', options),
        uid: dovecot.info.uid,
        gid: dovecot.info.gid,
        lineEnd: '\r\n',
      },
      {
        name: `Courier`,
        imap: plain(c.info.ports.imap),
        pop3: plain(c.info.ports.pop3),
        createUser: (options) => c.createUser('cmp', options),
        uid: c.info.uid,
        gid: c.info.gid,
        lineEnd: '\n',
      },
    ];
    const columns = await Promise.all(servers.map((s) => measure(s)));
    process.stdout.write(
      `\nCourier-IMAP ${c.info.version.imap}, Courier POP3 ${c.info.version.pop3}\n${table(
        servers.map((s) => s.name),
        columns,
      )}\n`,
    );
    const answer = (column: Row[], question: RegExp) => column.find(([q]) => question.test(q))?.[1];
    const [d, k] = columns as [Row[], Row[]];
    expect(answer(d, /UIDNEXT/)).toMatch(/^\d+$/);
    expect(answer(k, /UIDNEXT/)).toMatch(/^absent/);
    expect(answer(d, /UIDVALIDITY/)).toMatch(/^stable/);
    expect(answer(k, /UIDVALIDITY/)).toMatch(/^changes/);
    expect(answer(k, /UTF-8 Subject, POP3/)).toMatch(/^NOT the message.* \/ the message$/);
    expect(answer(d, /UTF-8 Subject, POP3/)).toMatch(/^the message/);
  });
});
