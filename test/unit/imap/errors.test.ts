import { compactUidSet, imapError } from '../../../functions/adapters/imap/imap-session';
import type { Source } from '../../../functions/core/model';

const source: Source = {
  id: 'work',
  protocol: 'imap',
  host: 'imap.example.com',
  port: 993,
  tls: 'implicit',
  user: 'ann',
  folders: ['INBOX'],
  pollMinutes: 5,
  enabled: true,
  retention: { mode: 'keep' },
};

/** Failures a loopback server cannot produce on demand (DNS), and the mapping of every error imapflow raises. */
describe('imapError', () => {
  it.each([
    [
      Object.assign(new Error('getaddrinfo ENOTFOUND imap.example.com'), { code: 'ENOTFOUND' }),
      'HOST_NOT_FOUND',
      false,
      /does not resolve: check the spelling of "host"/,
    ],
    [
      Object.assign(new Error('getaddrinfo EAI_AGAIN'), { code: 'EAI_AGAIN' }),
      'HOST_NOT_FOUND',
      true,
      /does not resolve/,
    ],
    [
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      'CONNECTION_REFUSED',
      true,
      /nothing accepts connections on imap\.example\.com:993/,
    ],
    [
      Object.assign(new Error('Greeting timeout'), { code: 'GREETING_TIMEOUT' }),
      'TIMEOUT',
      true,
      /did not answer in time/,
    ],
    [
      Object.assign(new Error('Command failed'), {
        authenticationFailed: true,
        responseText: 'Authentication failed.',
      }),
      'AUTH_FAILED',
      false,
      /login refused .* for user ann: check the password/,
    ],
    [
      Object.assign(new Error('Server does not support STARTTLS'), { tlsFailed: true }),
      'STARTTLS_UNAVAILABLE',
      false,
      /nothing was sent in clear/,
    ],
    [
      Object.assign(new Error('Hostname/IP does not match'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }),
      'TLS_HOSTNAME_MISMATCH',
      false,
      /not valid for the name imap\.example\.com/,
    ],
    [
      Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' }),
      'TLS_CERT_UNTRUSTED',
      false,
      /caFile/,
    ],
    [
      Object.assign(new Error('Unexpected char'), { code: 'ParserError11' }),
      'NOT_THAT_PROTOCOL',
      false,
      /does not speak IMAP/,
    ],
    [Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'CONNECTION_LOST', true, /lost/],
    // imapflow marks every failure of the STARTTLS step tlsFailed, the handshake's certificate errors too.
    [
      Object.assign(new Error('unable to verify the first certificate'), {
        code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
        tlsFailed: true,
      }),
      'TLS_CERT_UNTRUSTED',
      false,
      /not trusted .*caFile/,
    ],
    [
      Object.assign(new Error("Hostname/IP does not match certificate's altnames"), {
        code: 'ERR_TLS_CERT_ALTNAME_INVALID',
        tlsFailed: true,
      }),
      'TLS_HOSTNAME_MISMATCH',
      false,
      /not valid for the name imap\.example\.com/,
    ],
    [
      Object.assign(new Error('Failed to upgrade connection in required time'), {
        code: 'UPGRADE_TIMEOUT',
        tlsFailed: true,
      }),
      'TIMEOUT',
      true,
      /did not answer in time/,
    ],
    [
      Object.assign(new Error('Server sent data after the STARTTLS response'), {
        code: 'STARTTLS_INJECTION',
        tlsFailed: true,
      }),
      'TLS_FAILED',
      false,
      /nothing was sent in clear|Check "tls"/,
    ],
  ])('maps %s to %s', (err, code, retryable, message) => {
    const mapped = imapError(source, err, 'connect and login');
    expect({ code: mapped.code, retryable: mapped.retryable }).toEqual({ code, retryable });
    expect(mapped.message).toMatch(message);
    expect(mapped.cause).toBe(err);
  });

  it('never repeats the password a server echoed back', () => {
    const err = Object.assign(new Error('LOGIN ann hunter2 failed'), { responseText: 'bad: hunter2' });
    expect(imapError(source, err, 'login', 'hunter2').message).not.toContain('hunter2');
  });

  it("shows a server's words without control characters, and keeps the rest of them (a UTF-8 folder name)", () => {
    const err = Object.assign(new Error('Command failed'), {
      responseText: 'Mailbox "Entwürfe" \x1b[2Jis busy\x07\x85 now',
    });
    const message = imapError(source, err, 'SELECT Entwürfe').message;
    expect(message).toContain('Mailbox "Entwürfe" ?[2Jis busy?? now');
    // eslint-disable-next-line no-control-regex
    expect(message).not.toMatch(/[\x00-\x1f\x7f-\x9f]/);
  });
});

describe('compactUidSet', () => {
  it.each([
    [[1], '1'],
    [[3, 1, 2], '1:3'],
    [[1, 2, 3, 7, 9, 10, 10], '1:3,7,9:10'],
  ])('%j -> %s', (uids, set) => expect(compactUidSet(uids)).toBe(set));
});
