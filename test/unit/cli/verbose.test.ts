import type { Source } from '../../../functions/core/model';
import type { Credentials, ImapSession, MailConnector, Pop3Session } from '../../../functions/core/ports';
import { UpstreamError } from '../../../functions/core/errors';
import {
  summarize,
  tracedConnector,
  tracedCredentials,
  tracedPort,
  VerboseLogger,
} from '../../../functions/cli/verbose';

const PASSWORD = 'correct horse battery staple';
const src = (protocol: 'imap' | 'pop3'): Source =>
  ({
    id: 'work',
    protocol,
    host: 'mail.example.com',
    port: protocol === 'imap' ? 993 : 995,
    tls: 'implicit',
    user: 'ann@example.com',
    folders: ['INBOX'],
  }) as Source;

function logger() {
  let text = '';
  const log = new VerboseLogger(
    (t) => (text += t),
    () => new Date('2026-01-02T03:04:05.678Z'),
  );
  return { log, text: () => text };
}

describe('--verbose: the upstream conversation and the store steps, never a password', () => {
  it('IMAP: the LOGIN line masks the password; each command and its answer are logged', async () => {
    const { log, text } = logger();
    const session: Partial<ImapSession> = {
      capabilities: new Set(['IMAP4REV1', 'UIDPLUS']),
      openFolder: async () => ({ exists: 3, uidValidity: '7', uidNext: 4 }),
      listUids: async () => [
        { uid: 1, size: 10 },
        { uid: 2, size: 20 },
      ],
      close: async () => undefined,
    };
    const connector: MailConnector = { openImap: async () => session as ImapSession, openPop3: jest.fn() };
    const traced = tracedConnector(connector, log);
    const s = await traced.openImap(src('imap'), PASSWORD, { timeoutMs: 1000 });
    await s.openFolder('INBOX');
    await s.listUids(1, { internalDate: true });
    await s.close();
    const out = text();
    expect(out).toContain('imap mail.example.com:993 > LOGIN "ann@example.com" ****');
    expect(out).toContain('imap mail.example.com:993 < logged in');
    expect(out).toContain('CAPABILITY IMAP4REV1 UIDPLUS');
    expect(out).toContain('> EXAMINE "INBOX"');
    expect(out).toMatch(/< openFolder: \{exists=3 uidValidity="7" uidNext=4\}/);
    expect(out).toContain('> UID FETCH 1:* (UID RFC822.SIZE INTERNALDATE)');
    expect(out).toContain('< listUids: [2]');
    expect(out).toContain('> LOGOUT');
    expect(out).toMatch(/^03:04:05\.678 debug /);
    expect(out).not.toContain(PASSWORD);
  });

  it('POP3: USER then PASS ****; a server error that echoes the password is blanked out', async () => {
    const { log, text } = logger();
    const session: Partial<Pop3Session> = {
      capabilities: ['UIDL', 'TOP'],
      stat: async () => ({ count: 1, octets: 99 }),
      retrieve: async () =>
        Promise.reject(new UpstreamError('PROTOCOL_ERROR', `server said: -ERR bad ${PASSWORD}`, false)),
    };
    const connector: MailConnector = { openImap: jest.fn(), openPop3: async () => session as Pop3Session };
    const s = await tracedConnector(connector, log).openPop3(src('pop3'), PASSWORD, { timeoutMs: 1000 });
    await s.stat();
    await expect(s.retrieve([1], async () => undefined)).rejects.toThrow(PASSWORD);
    const out = text();
    expect(out).toContain('pop3 mail.example.com:995 > USER ann@example.com');
    expect(out).toContain('pop3 mail.example.com:995 > PASS ****');
    expect(out).toContain('> STAT');
    expect(out).toContain('< stat: {count=1 octets=99}');
    expect(out).toContain('! retrieve: [PROTOCOL_ERROR] server said: -ERR bad ***');
    expect(out).not.toContain(PASSWORD);
  });

  it('a refused login is logged with its error, without the password', async () => {
    const { log, text } = logger();
    const connector: MailConnector = {
      openImap: async () => Promise.reject(new UpstreamError('AUTH_FAILED', `refused (${PASSWORD})`, false)),
      openPop3: jest.fn(),
    };
    await expect(
      tracedConnector(connector, log).openImap(src('imap'), PASSWORD, { timeoutMs: 1 }),
    ).rejects.toThrow();
    expect(text()).toContain('! login: [AUTH_FAILED] refused (***)');
    expect(text()).not.toContain(PASSWORD);
  });

  it('credentials: the password read is never logged, even by a later line', async () => {
    const { log, text } = logger();
    const creds: Credentials = { password: async () => PASSWORD };
    expect(await tracedCredentials(creds, log).password(src('imap'))).toBe(PASSWORD);
    log.debug(`something that quotes ${PASSWORD}`);
    expect(text()).toContain('credentials: the password of work read');
    expect(text()).not.toContain(PASSWORD);
  });

  it('store steps: each call and its answer, bytes and lists as counts', async () => {
    const { log, text } = logger();
    const store = {
      async head(key: string) {
        return key ? { size: 12, sha256: 'ab' } : undefined;
      },
      async put(_key: string, _body: unknown) {
        return undefined;
      },
    };
    const traced = tracedPort(store, log, 'store');
    await traced.head('raw/work/1.eml');
    await traced.put('raw/work/1.eml', Buffer.from('secret mail body'));
    expect(text()).toContain('store: head("raw/work/1.eml")');
    expect(text()).toContain('store: head -> {size=12 sha256="ab"}');
    expect(text()).toContain('store: put("raw/work/1.eml", <16 bytes>)');
    expect(text()).not.toContain('secret mail body');
  });

  it('one line per entry: a line end in a value cannot forge a line', () => {
    const { log, text } = logger();
    log.debug('server says a\r\n03:00:00.000 debug forged', { text: 'b\r\nc' });
    expect(text().split('\n').filter(Boolean)).toHaveLength(1);
    expect(summarize(new Map([[1, 2]]))).toBe('Map(1)');
  });
});
