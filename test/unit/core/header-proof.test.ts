import { HeaderCollector, headerBlockOf, headerDigest } from '../../../functions/core/header-proof';

const b = (s: string) => Buffer.from(s, 'latin1');

describe('headerDigest', () => {
  it('matches a whole message with its TOP n 0 / BODY[HEADER] answer, blank line or not', () => {
    const message = b('Subject: x\r\nFrom: a@b\r\n\r\nbody\r\n');
    const digest = headerDigest(message);
    expect(headerDigest(b('Subject: x\r\nFrom: a@b\r\n\r\n'))).toBe(digest);
    expect(headerDigest(b('Subject: x\r\nFrom: a@b\r\n'))).toBe(digest);
    expect(headerDigest(b('Subject: x\r\nFrom: a@b'))).toBe(digest);
  });

  it('tells apart headers that differ in one byte, and bodies do not count', () => {
    expect(headerDigest(b('Subject: x\r\n\r\nA'))).toBe(headerDigest(b('Subject: x\r\n\r\nB')));
    expect(headerDigest(b('Subject: x\r\n\r\n'))).not.toBe(headerDigest(b('Subject: y\r\n\r\n')));
    expect(headerDigest(b('A: 1\r\nB: 2\r\n\r\n'))).not.toBe(headerDigest(b('A: 1\nB: 2\n\n')));
  });

  it('reads NUL as 0x80, as one server serves it over IMAP and raw over POP3', () => {
    expect(headerDigest(b('X-A: \u0000\r\n\r\n'))).toBe(headerDigest(b('X-A: \u0080\r\n\r\n')));
  });

  it('finds the end of the header with bare LF line ends and with none at all', () => {
    expect(headerBlockOf(b('A: 1\nB: 2\n\nbody')).toString()).toBe('A: 1\nB: 2\n');
    expect(headerBlockOf(b('\r\nbody')).length).toBe(0);
    expect(headerBlockOf(b('A: 1\r\nB: 2')).toString()).toBe('A: 1\r\nB: 2');
  });
});

describe('HeaderCollector', () => {
  it('gives the digest of the header block whatever the chunking, the empty line split across chunks', () => {
    const message = b('Subject: split\r\nFrom: a@b\r\n\r\nbody\r\n');
    const whole = headerDigest(message);
    for (let cut = 1; cut < message.length; cut++) {
      const c = new HeaderCollector();
      c.add(message.subarray(0, cut));
      c.add(message.subarray(cut));
      expect(c.digest()).toBe(whole);
    }
  });

  it('stops keeping bytes at its limit', () => {
    const c = new HeaderCollector(10);
    c.add(b('X-Long: 0123456789abcdef'));
    expect(c.digest()).toBe(headerDigest(b('X-Long: 01')));
  });
});
