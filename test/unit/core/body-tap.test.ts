import { createHash } from 'node:crypto';
import { BodyTap, contentSha256 } from '../../../functions/core/body-tap';

async function drain(tap: BodyTap, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  async function* src() {
    for (const c of chunks) yield c;
  }
  for await (const c of tap.wrap(src())) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

describe('BodyTap', () => {
  it('passes bytes through unchanged and hashes them exactly', async () => {
    const data = Buffer.from('Subject: x\r\n\r\n\x00\xff body\r\n', 'latin1');
    const tap = new BodyTap(1024);
    const out = await drain(tap, [data.subarray(0, 5), data.subarray(5)]);
    expect(out.equals(data)).toBe(true);
    expect(tap.size).toBe(data.length);
    expect(tap.digests().sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(tap.complete).toBe(true);
    expect(tap.head().equals(data)).toBe(true);
  });

  it('maps NUL to 0x80 in the content hash only, so POP3 and IMAP copies match', async () => {
    const pop3 = Buffer.from('a\x00b', 'latin1');
    const imap = Buffer.from('a\x80b', 'latin1');
    const tap = new BodyTap(10);
    await drain(tap, [pop3]);
    const d = tap.digests();
    expect(d.contentSha256).toBe(contentSha256(imap));
    expect(d.sha256).not.toBe(createHash('sha256').update(imap).digest('hex'));
  });

  it('forks the content hash at the first NUL, in any chunk; without NUL both hashes are one', async () => {
    const chunks = ['Subject: x\r\n', '\r\nfirst ', 'then \x00 and', ' \x00 again\r\n'].map((c) =>
      Buffer.from(c, 'latin1'),
    );
    const whole = Buffer.concat(chunks);
    const tap = new BodyTap(4);
    await drain(tap, chunks);
    expect(tap.digests()).toEqual({
      sha256: createHash('sha256').update(whole).digest('hex'),
      contentSha256: contentSha256(Buffer.from(whole.map((b) => (b === 0 ? 0x80 : b)))),
    });
    const clean = new BodyTap(4);
    await drain(clean, chunks.slice(0, 2));
    const d = clean.digests();
    expect(d.contentSha256).toBe(d.sha256);
  });

  it('keeps only the first keepBytes and says the head is incomplete', async () => {
    const tap = new BodyTap(4);
    await drain(tap, [Buffer.from('abc'), Buffer.from('defgh')]);
    expect(tap.head().toString()).toBe('abcd');
    expect(tap.complete).toBe(false);
    expect(tap.size).toBe(8);
  });

  it('refuses digests before the body was read to its end', () => {
    expect(() => new BodyTap(1).digests()).toThrow(/not read to its end/);
  });
});
