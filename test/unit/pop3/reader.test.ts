import { UpstreamError } from '../../../functions/core/errors';
import { Pop3Reader, type ReaderHooks } from '../../../functions/adapters/pop3/reader';
import { DotUnstuffer } from '../../../functions/adapters/pop3/unstuff';

/** Dot-stuffs a message the way RFC 1939 says a server must, written independently of the reader under test. */
function wireBody(message: Buffer): Buffer {
  const out: Buffer[] = [];
  let lineStart = 0;
  const stuffLine = (line: Buffer) =>
    out.push(line[0] === 0x2e ? Buffer.concat([Buffer.from('.'), line]) : line);
  for (let i = 0; i + 1 < message.length; i++) {
    if (message[i] === 0x0d && message[i + 1] === 0x0a) {
      stuffLine(message.subarray(lineStart, i + 2));
      lineStart = i + 2;
      i++;
    }
  }
  if (lineStart < message.length) throw new Error('test messages end with CRLF, as a POP3 message does');
  out.push(Buffer.from('.\r\n'));
  return Buffer.concat(out);
}

function retrResponse(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`+OK ${message.length} octets\r\n`), wireBody(message)]);
}

function noHooks(): ReaderHooks & { paused: number; resumed: number; waits: number } {
  const h = {
    paused: 0,
    resumed: 0,
    waits: 0,
    waiting: (on: boolean) => {
      if (on) h.waits++;
    },
    pause: () => {
      h.paused++;
    },
    resume: () => {
      h.resumed++;
    },
  };
  return h;
}

/** Every byte value, NUL included, inside CRLF-terminated lines. */
const allBytes = Buffer.from(
  Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 0x0a && b !== 0x0d),
);

const MESSAGES: Record<string, Buffer> = {
  dots: Buffer.from(
    'Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n...\r\nmiddle . dot\r\n.\r\n.\r\n\r\n.\r\nlast line\r\n',
    'latin1',
  ),
  endsWithDotLine: Buffer.from('Subject: end\r\n\r\nbody\r\n.\r\n', 'latin1'),
  startsWithDot: Buffer.from('.leading\r\n..two\r\n', 'latin1'),
  onlyDot: Buffer.from('.\r\n'),
  empty: Buffer.alloc(0),
  eightBit: Buffer.concat([
    Buffer.from('Subject: =?iso-8859-1?q?caf=E9?=\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n'),
    Buffer.from('caf\xe9 na\xefve \xff\xfe\x80\x81 nul:\x00: end\r\n', 'latin1'),
    allBytes,
    Buffer.from('\r\n'),
  ]),
  bareCrLf: Buffer.from('a\rb\nc\r\r\n\n.x\r\n.\r.\r\n\r.\r\n', 'latin1'),
  dotCrNotTerminator: Buffer.from('head\r\n.\rnot the end\r\n..\r\r\n', 'latin1'),
};

async function readRetr(reader: Pop3Reader): Promise<{ ok: boolean; body?: Buffer }> {
  const status = await reader.readStatus();
  if (!status.ok) return { ok: false };
  const parts: Buffer[] = [];
  for await (const part of reader.body()) parts.push(Buffer.from(part));
  return { ok: true, body: Buffer.concat(parts) };
}

/** Feeds `chunks` one per macrotask, as a socket would, while the reader reads. */
function feedSlowly(reader: Pop3Reader, chunks: Buffer[], then?: Error): void {
  let i = 0;
  const step = () => {
    if (i < chunks.length) {
      reader.feed(chunks[i++]!);
      setImmediate(step);
    } else if (then) reader.end(then);
  };
  setImmediate(step);
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const c of cuts) {
    out.push(Buffer.from(buf.subarray(from, c)));
    from = c;
  }
  out.push(Buffer.from(buf.subarray(from)));
  return out;
}

function bytes(buf: Buffer): Buffer[] {
  return Array.from(buf, (b) => Buffer.from([b]));
}

describe('DotUnstuffer', () => {
  it.each(Object.entries(MESSAGES))(
    'recovers the %s message from its stuffed form in one chunk',
    (_name, msg) => {
      const wire = Buffer.concat([wireBody(msg), Buffer.from('NEXT')]);
      const parts: Buffer[] = [];
      const end = new DotUnstuffer().push(wire, (p) => parts.push(Buffer.from(p)));
      expect(Buffer.concat(parts).equals(msg)).toBe(true);
      expect(wire.subarray(end).toString()).toBe('NEXT');
    },
  );

  it('turns ".." into "." and a line that is only ".." into "."', () => {
    const parts: Buffer[] = [];
    new DotUnstuffer().push(Buffer.from('..x\r\n..\r\n.\r\n'), (p) => parts.push(Buffer.from(p)));
    expect(Buffer.concat(parts).toString()).toBe('.x\r\n.\r\n');
  });

  it('keeps a single leading dot that the server forgot to stuff', () => {
    const parts: Buffer[] = [];
    new DotUnstuffer().push(Buffer.from('.x\r\n.\r\n'), (p) => parts.push(Buffer.from(p)));
    expect(Buffer.concat(parts).toString()).toBe('.x\r\n');
  });
});

describe('Pop3Reader', () => {
  // Three pipelined answers back to back: a message with every awkward line, a -ERR, then 8-bit bytes.
  const first = MESSAGES.dots!;
  const third = MESSAGES.eightBit!;
  const stream = Buffer.concat([
    retrResponse(first),
    Buffer.from('-ERR Message is deleted.\r\n'),
    retrResponse(third),
    Buffer.from('+OK Logging out.\r\n'),
  ]);

  async function readAllThree(reader: Pop3Reader) {
    const a = await readRetr(reader);
    const b = await readRetr(reader);
    const c = await readRetr(reader);
    const bye = await reader.readStatus();
    return { a, b, c, bye };
  }

  function expectAllThree(r: Awaited<ReturnType<typeof readAllThree>>) {
    expect(r.a.ok).toBe(true);
    expect(r.a.body!.equals(first)).toBe(true);
    expect(r.b).toEqual({ ok: false });
    expect(r.c.ok).toBe(true);
    expect(r.c.body!.equals(third)).toBe(true);
    expect(r.bye).toMatchObject({ ok: true, text: 'Logging out.' });
  }

  it('reads pipelined answers that arrive in one chunk', async () => {
    const reader = new Pop3Reader('test:110', noHooks());
    reader.feed(Buffer.from(stream));
    expectAllThree(await readAllThree(reader));
    expect(reader.buffered).toBe(0);
  });

  it('reads the same answers split at every possible byte boundary', async () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const reader = new Pop3Reader('test:110', noHooks());
      for (const chunk of splitAt(stream, [cut])) reader.feed(chunk);
      const r = await readAllThree(reader);
      try {
        expectAllThree(r);
      } catch (err) {
        throw new Error(`split at byte ${cut}: ${String(err)}`, { cause: err });
      }
    }
  });

  it('reads them when every byte arrives on its own, while it is waiting', async () => {
    const hooks = noHooks();
    const reader = new Pop3Reader('test:110', hooks);
    feedSlowly(reader, bytes(stream));
    expectAllThree(await readAllThree(reader));
    expect(hooks.waits).toBeGreaterThan(100); // it really waited for the server, byte after byte
  });

  it.each(Object.entries(MESSAGES))('reads the %s message split at every boundary', async (_name, msg) => {
    const wire = Buffer.concat([retrResponse(msg), Buffer.from('+OK next\r\n')]);
    for (let cut = 1; cut < wire.length; cut++) {
      for (const cut2 of [cut + 1, cut + 2, wire.length - 1]) {
        const reader = new Pop3Reader('test:110', noHooks());
        const cuts = cut2 > cut && cut2 < wire.length ? [cut, cut2] : [cut];
        for (const chunk of splitAt(wire, cuts)) reader.feed(chunk);
        const r = await readRetr(reader);
        expect({ cuts, same: r.body!.equals(msg) }).toEqual({ cuts, same: true });
        expect((await reader.readStatus()).text).toBe('next');
      }
    }
  });

  it('finds a terminator split as "\\r\\n." then "\\r\\n"', async () => {
    const reader = new Pop3Reader('test:110', noHooks());
    feedSlowly(reader, [Buffer.from('+OK\r\nline\r\n.'), Buffer.from('\r\n+OK after\r\n')]);
    const r = await readRetr(reader);
    expect(r.body!.toString()).toBe('line\r\n');
    expect((await reader.readStatus()).text).toBe('after');
  });

  it('fails, rather than returning a shorter message, when the connection ends before the terminator', async () => {
    const lost = new UpstreamError('CONNECTION_LOST', 'closed', true);
    for (const cutShort of [
      '+OK\r\nline\r\n',
      '+OK\r\nline\r\n.',
      '+OK\r\nline\r\n.\r',
      '+OK\r\nhalf a li',
    ]) {
      const reader = new Pop3Reader('test:110', noHooks());
      feedSlowly(reader, bytes(Buffer.from(cutShort)), lost);
      const status = await reader.readStatus();
      expect(status.ok).toBe(true);
      const got: Buffer[] = [];
      await expect(
        (async () => {
          for await (const part of reader.body()) got.push(Buffer.from(part));
        })(),
      ).rejects.toBe(lost);
    }
  });

  it('fails on a status line that is neither +OK nor -ERR', async () => {
    const reader = new Pop3Reader('pop.example:110', noHooks());
    reader.feed(Buffer.from('* OK IMAP4rev1 ready\r\n'));
    await expect(reader.readStatus()).rejects.toMatchObject({
      code: 'PROTOCOL_ERROR',
      message: expect.stringContaining('pop.example:110 sent a line that is neither +OK nor -ERR'),
    });
  });

  it('refuses a status line longer than its limit instead of buffering it', async () => {
    const reader = new Pop3Reader('test:110', noHooks(), { maxLineBytes: 1000 });
    feedSlowly(
      reader,
      Array.from({ length: 10 }, () => Buffer.alloc(500, 0x41)),
    );
    await expect(reader.readLine()).rejects.toMatchObject({ code: 'PROTOCOL_ERROR' });
  });

  it('pauses its input above the high-water mark and resumes as the consumer reads', async () => {
    const hooks = noHooks();
    const reader = new Pop3Reader('test:110', hooks, { highWaterMark: 1000 });
    const msg = Buffer.from('x'.repeat(98) + '\r\n');
    const big = Buffer.concat(Array.from({ length: 50 }, () => msg));
    const wire = retrResponse(big);
    for (let i = 0; i < wire.length; i += 100) reader.feed(wire.subarray(i, i + 100));
    expect(hooks.paused).toBe(1);
    expect(hooks.resumed).toBe(0);
    const r = await readRetr(reader);
    expect(r.body!.equals(big)).toBe(true);
    expect(hooks.resumed).toBe(1);
  });

  it('does not read ahead while the body consumer is busy', async () => {
    const reader = new Pop3Reader('test:110', noHooks());
    reader.feed(retrResponse(Buffer.from('a\r\n')));
    reader.feed(Buffer.from('+OK next\r\n'));
    await reader.readStatus();
    const body = reader.body();
    expect(reader.buffered).toBeGreaterThan(0);
    const before = reader.buffered;
    await new Promise((r) => setImmediate(r));
    expect(reader.buffered).toBe(before); // nothing consumed until the body is read
    await body.drain();
    expect(body.complete).toBe(true);
    expect((await reader.readStatus()).text).toBe('next');
  });
});
