import type { Source } from '../../../functions/core/model';
import type { ImapSession, MailConnector, Pop3Session } from '../../../functions/core/ports';
import { checkSource } from '../../../functions/cli/source-check';

const tls = {
  protocol: 'TLSv1.3',
  cipher: 'TLS_AES_256_GCM_SHA384',
  subject: 'mail.example.com',
  issuer: 'Example CA',
  validTo: 'Dec 31 2030',
};

function source(extra: Partial<Source>): Source {
  return {
    id: 'work',
    protocol: 'imap',
    host: 'mail.example.com',
    port: 993,
    tls: 'implicit',
    user: 'ann',
    folders: ['INBOX', 'Archive'],
    pollMinutes: 5,
    enabled: true,
    retention: { mode: 'keep' },
    ...extra,
  };
}

describe('checkSource: the probe of "sources test" and the web page\'s "test connection"', () => {
  it("IMAP: TLS, login, capabilities, folders, each folder's count and the quota, closed at the end", async () => {
    const close = jest.fn(async () => undefined);
    const imap: Partial<ImapSession> = {
      capabilities: new Set(['IMAP4REV1', 'UIDPLUS', 'QUOTA', 'IDLE']),
      tls,
      listFolders: async () => ['INBOX', 'Archive', 'Sent'],
      openFolder: async (f) => ({ exists: f === 'INBOX' ? 3 : 7, uidValidity: '42', uidNext: 8 }),
      quota: async () => ({ usedBytes: 1024 * 1024, limitBytes: 4 * 1024 * 1024 }),
      close,
    };
    const connector: MailConnector = {
      openImap: jest.fn(async () => imap as ImapSession),
      openPop3: jest.fn(),
    };
    const { report, lines } = await checkSource(source({}), 'pw', connector);
    expect(connector.openImap).toHaveBeenCalledWith(expect.objectContaining({ id: 'work' }), 'pw', {
      timeoutMs: 20_000,
    });
    expect(report).toMatchObject({
      id: 'work',
      protocol: 'imap',
      server: 'mail.example.com:993',
      tlsMode: 'implicit',
      tls,
      capabilities: { UIDPLUS: true, QUOTA: true, IDLE: true, CONDSTORE: false },
      folders: ['INBOX', 'Archive', 'Sent'],
      messages: { INBOX: 3, Archive: 7 },
      quota: { usedBytes: 1024 * 1024, limitBytes: 4 * 1024 * 1024 },
    });
    expect(lines).toEqual([
      'work: imap mail.example.com:993 (implicit)',
      '  TLS: TLSv1.3 TLS_AES_256_GCM_SHA384, certificate mail.example.com issued by Example CA, valid to Dec 31 2030',
      '  login: ok as ann',
      '  capabilities: IDLE yes, UIDPLUS yes, CONDSTORE no, QUOTA yes, MOVE no, QRESYNC no',
      '  folders on the server: INBOX, Archive, Sent',
      '  INBOX: 3 messages (UIDVALIDITY 42, UIDNEXT 8)',
      '  Archive: 7 messages (UIDVALIDITY 42, UIDNEXT 8)',
      '  quota: 1.0 MB of 4.0 MB (25.0%)',
    ]);
    expect(close).toHaveBeenCalled();
  });

  it('POP3: capabilities, maildrop and the declared capacity; QUIT at the end', async () => {
    const quit = jest.fn(async () => undefined);
    const pop: Partial<Pop3Session> = {
      capabilities: ['UIDL', 'TOP', 'EXPIRE 0', 'SASL PLAIN'],
      tls: undefined,
      stat: async () => ({ count: 2, octets: 512 * 1024 }),
      quit,
      abort: jest.fn(),
    };
    const connector: MailConnector = { openImap: jest.fn(), openPop3: async () => pop as Pop3Session };
    const s = source({
      protocol: 'pop3',
      host: '127.0.0.1',
      port: 110,
      tls: 'none',
      folders: [],
      upstreamQuota: { maxUsagePercent: 90, targetPercent: 75, capacityBytes: 1024 * 1024 },
    });
    const { report, lines } = await checkSource(s, 'pw', connector);
    expect(report).toMatchObject({
      capabilities: { UIDL: true, TOP: true, EXPIRE: true, PIPELINING: false },
      messages: 2,
      octets: 512 * 1024,
      quota: null,
    });
    expect(lines).toContain('  TLS: none (loopback only)');
    expect(lines).toContain('  maildrop: 2 messages, 512.0 KB');
    expect(lines[lines.length - 1]).toBe(
      '  quota: POP3 reports no quota; the quota guard measures 512.0 KB against the declared capacityBytes 1.0 MB (50.0%)',
    );
    expect(quit).toHaveBeenCalled();
  });

  it("a failed login throws the connector's error", async () => {
    const refused = new Error('IMAP login refused');
    const connector: MailConnector = { openImap: async () => Promise.reject(refused), openPop3: jest.fn() };
    await expect(checkSource(source({}), 'pw', connector)).rejects.toBe(refused);
  });
});
