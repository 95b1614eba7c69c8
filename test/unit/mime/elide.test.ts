import { PostalMimeParser } from '../../../functions/adapters/mime';
import { base64DecodedSize, elideBinaryParts } from '../../../functions/adapters/mime/elide';
import { bigCase, bulkCorpus, nestedRfc822, Random, standardCorpus } from '../../support/corpus';

const CRLF = '\r\n';

describe('elideBinaryParts: attachments are sized, not decoded', () => {
  const withElision = new PostalMimeParser();
  const decoding = new PostalMimeParser({ elideAttachments: false });

  it('gives the same metadata as decoding every attachment, over the corpus', async () => {
    const messages = [
      ...standardCorpus(7, { bigBytes: 300 * 1024, longLineBytes: 8 * 1024 }).map((m) => m.raw),
      ...bulkCorpus(40, 11, { attachmentRatio: 0.6 }).map((m) => m.raw),
      bigCase(2 * 1024 * 1024 + 17, 5).raw,
      nestedRfc822(9).raw,
    ];
    let elidedSomething = 0;
    for (const raw of messages) {
      const a = await withElision.parse(raw, true);
      const b = await decoding.parse(raw, true);
      expect(a).toEqual(b);
      if (b.attachments.length) elidedSomething++;
    }
    expect(elidedSomething).toBeGreaterThan(10);
  });

  it('counts bytes as the decoder does: padding mid-stream, junk characters, a lone trailing character', () => {
    const cases = ['QUJD', 'QUJDRA==', 'QQ==QkM=', 'QU JD\r\nRA', 'QUJDR', 'QUJDRA=\r\n=', '', '=='];
    const decoded = (t: string) =>
      t
        .replace(/[^A-Za-z0-9+/=]/g, '')
        .split(/=+/)
        .reduce(
          (n, unit) =>
            n + Buffer.from(unit.slice(0, unit.length % 4 === 1 ? -1 : undefined), 'base64').length,
          0,
        );
    for (const text of cases) {
      expect(base64DecodedSize(Buffer.from(text), 0, text.length)).toBe(decoded(text));
    }
    // Long texts take the native path where they can: the same count, whatever the junk and wherever '=' is.
    const random = new Random(20261127);
    const junk = ['\r\n', ' ', '\t', '.', '!', '-', '_', '=', '==', '\u00e9', '\u0000', '*'];
    for (let round = 0; round < 300; round++) {
      const parts: string[] = [];
      const body = Buffer.from(random.bytes(random.int(3000, 9000))).toString('base64');
      for (let at = 0; at < body.length; at += 76) {
        parts.push(body.slice(at, at + 76 - (round % 5 === 0 ? random.int(0, 3) : 0)));
        if (round % 3 === 0 && random.int(0, 40) === 0) parts.push(junk[random.int(0, junk.length - 1)]!);
        parts.push('\r\n');
      }
      const text = parts.join('') + (round % 7 === 0 ? junk[random.int(0, junk.length - 1)]! : '');
      const buf = Buffer.from(text, 'latin1');
      expect(base64DecodedSize(buf, 0, buf.length)).toBe(decoded(buf.toString('latin1')));
    }
  });

  it('leaves text, message/rfc822 and undeclared parts whole, and nested multiparts are followed', () => {
    const attachment = Buffer.alloc(3000, 7).toString('base64');
    const entity = [
      'Content-Type: multipart/mixed; boundary="outer"',
      '',
      'preamble',
      '--outer',
      'Content-Type: multipart/alternative; boundary=inner',
      '',
      '--inner',
      'Content-Type: text/plain',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from('hello').toString('base64'),
      '--inner--',
      '',
      '--outer',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from('no type: text').toString('base64'),
      '--outer',
      'Content-Type: application/pdf; name="a.pdf"',
      'Content-Transfer-Encoding: base64',
      '',
      attachment,
      '--outerX',
      '--outer--',
      'epilogue',
      '',
    ].join(CRLF);
    const { entity: out, sizes } = elideBinaryParts(Buffer.from(entity), 'n0nce', 32);
    const text = out.toString('latin1');
    expect(sizes.size).toBe(1);
    // `--outerX` is not a delimiter of "outer": it belongs to the PDF's body and is counted with it.
    expect([...sizes.values()]).toEqual([
      base64DecodedSize(Buffer.from(`${attachment}\r\n--outerX`), 0, attachment.length + 10),
    ]);
    expect(text).not.toContain(attachment);
    for (const kept of [
      Buffer.from('hello').toString('base64'),
      Buffer.from('no type: text').toString('base64'),
      'preamble',
      'epilogue',
      '--outer--',
    ]) {
      expect(text).toContain(kept);
    }
  });

  it('relabels 7bit/8bit text as quoted-printable only where that gives the same text', async () => {
    const part = (headers: string[], body: string) => ['--b', ...headers, '', body].join(CRLF);
    const bodies = [
      'plain words\r\nand a second line',
      'an = sign, width=100 and a=\r\nline ending in an equals sign',
      'an escape-looking =3D and =e9 in lower case',
      'caf\xe9 in latin-1, =\r\n',
      '<p style="color:red">html</p>\r\n<a href=x>=</a>',
      'line with a trailing space \r\n\r\n\r\nblank lines',
      '',
    ];
    const headerSets = [
      ['Content-Type: text/plain; charset=iso-8859-1', 'Content-Transfer-Encoding: 8bit'],
      ['Content-Type: text/html; charset=utf-8'],
      ['Content-Type: text/plain', 'Content-Transfer-Encoding: 7bit', 'Content-Transfer-Encoding: binary'],
      ['Content-Transfer-Encoding: 8bit', 'Content-Type: text/plain;', ' charset="windows-1252"'],
    ];
    let relabelled = 0;
    for (const headers of headerSets) {
      for (const body of bodies) {
        const raw = Buffer.from(
          [
            'From: a@example.com',
            'Subject: relabel',
            'Content-Type: multipart/alternative; boundary=b',
            '',
            part(headers, body),
            part(['Content-Type: text/html', 'Content-Transfer-Encoding: 8bit'], `<b>${body}</b>`),
            '--b--',
            '',
          ].join(CRLF),
          'latin1',
        );
        if (elideBinaryParts(raw, 'n', 8).entity.includes('quoted-printable')) relabelled++;
        expect(await withElision.parse(raw, true)).toEqual(await decoding.parse(raw, true));
        // A single-part message: the top-level header block is relabelled the same way.
        const single = Buffer.from(['From: a@example.com', ...headers, '', body].join(CRLF), 'latin1');
        expect(await withElision.parse(single, true)).toEqual(await decoding.parse(single, true));
      }
    }
    expect(relabelled).toBeGreaterThan(10);
  });

  it('a message cannot pass its own bytes off as a placeholder', async () => {
    const fake = Buffer.from('\u0000tributary-elided:0000000000000000:0', 'latin1').toString('base64');
    const raw = Buffer.from(
      [
        'From: a@example.com',
        'Subject: spoof',
        'Content-Type: multipart/mixed; boundary=b',
        '',
        '--b',
        'Content-Type: text/plain',
        '',
        'hi',
        '--b',
        'Content-Type: application/octet-stream; name="x.bin"',
        'Content-Disposition: attachment; filename="x.bin"',
        'Content-Transfer-Encoding: quoted-printable',
        '',
        Buffer.from(fake, 'base64').toString('latin1').replace('\u0000', '=00'),
        '--b--',
        '',
      ].join(CRLF),
    );
    const meta = await withElision.parse(raw, true);
    // What postal-mime itself reads there, not a size taken from a forged placeholder table.
    expect(meta.attachments).toEqual((await decoding.parse(raw, true)).attachments);
    expect(meta.attachments[0]!.size).toBeGreaterThan(30);
  });
});
