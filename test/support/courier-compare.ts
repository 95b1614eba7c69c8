import fs from 'node:fs';
import path from 'node:path';
import { RawImap, RawPop3, imapSnapshot, pop3Snapshot, type Endpoint } from './courier-lab';

/**
 * One server as the comparison sees it: where it listens (in clear, on loopback, so both are read the same way),
 * how to make a user, and where a user's Maildir is. Mail goes into the Maildir as that server's own delivery
 * agent would write it: `lineEnd` is what a line ends with on disk (Dovecot: as received, CRLF; Courier: LF).
 */
export interface ServerUnderTest {
  name: string;
  imap: Endpoint;
  pop3: Endpoint;
  createUser(options?: { quotaBytes?: number }): { name: string; password: string; maildir: string };
  uid: number;
  gid: number;
  lineEnd: '\r\n' | '\n';
}

type User = ReturnType<ServerUnderTest['createUser']>;

/** Writes one file into `new/` under the given name and modification time, as an MDA would (tmp, then rename). */
function put(server: ServerUnderTest, user: User, name: string, bytes: Buffer, mtime?: Date): void {
  const tmp = path.join(user.maildir, 'tmp', name);
  fs.writeFileSync(tmp, bytes);
  fs.chownSync(tmp, server.uid, server.gid);
  if (mtime) fs.utimesSync(tmp, mtime, mtime);
  fs.renameSync(tmp, path.join(user.maildir, 'new', name));
  // A Maildir++ quota (Courier's) counts what its MDA appends here; Dovecot's harness has no such file.
  const sizeFile = path.join(user.maildir, 'maildirsize');
  if (fs.existsSync(sizeFile)) fs.appendFileSync(sizeFile, `${bytes.length} 1\n`);
}

/** A message whose lines end with `lineEnd` on disk. */
function mail(server: ServerUnderTest, lines: Array<string | Buffer>): Buffer {
  return Buffer.concat(lines.map((l) => Buffer.concat([Buffer.from(l), Buffer.from(server.lineEnd)])));
}

const show = (b: Buffer | undefined) =>
  b === undefined
    ? 'missing'
    : [...b]
        .map((c) =>
          c === 0x0d
            ? 'CR'
            : c === 0x0a
              ? 'LF'
              : c >= 0x20 && c < 0x7f
                ? String.fromCharCode(c)
                : `\\x${c.toString(16).padStart(2, '0')}`,
        )
        .join(' ');

/** The bytes around the first occurrence of `marker` (after it, `after` bytes). */
function around(b: Buffer | undefined, marker: string, after: number): Buffer | undefined {
  if (!b) return undefined;
  const at = b.indexOf(marker);
  return at < 0 ? undefined : b.subarray(at + marker.length, at + marker.length + after);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export type Row = [question: string, answer: string];

/** Measures what a fetcher must know of one server; every answer is read off the wire. */
export async function measure(server: ServerUnderTest): Promise<Row[]> {
  const rows: Row[] = [];

  // Capabilities, UIDL, UIDNEXT, UIDVALIDITY of a folder only ever opened read-only.
  const u1 = server.createUser();
  put(server, u1, '1000000001.plain.test', mail(server, ['Subject: plain', '', 'Hello.']));
  const first = await imapSnapshot(server.imap, u1);
  await sleep(1100); // Courier's UIDVALIDITY is the clock's second
  const second = await imapSnapshot(server.imap, u1);
  const pop = await pop3Snapshot(server.pop3, u1);
  const imapSession = await RawImap.login(server.imap, u1);
  const greeting = imapSession.greeting.replace(/^\* OK /, '');
  await imapSession.logout();
  const popSession = await RawPop3.open(server.pop3);
  const preLoginCapa = (await popSession.multi('CAPA')).body.toString('latin1').split('\r\n').filter(Boolean);
  await popSession.quit();
  rows.push(['IMAP greeting', greeting]);
  rows.push(['IMAP CAPABILITY after login', first.capability.replace(/^\* CAPABILITY /, '')]);
  rows.push(['POP3 CAPA before login', preLoginCapa.join(', ')]);
  rows.push(['POP3 CAPA after login', pop.capa.join(', ')]);
  rows.push(['UIDL of message 1', pop.messages[0]?.uidl ?? 'none']);
  rows.push([
    '[UIDNEXT] in the EXAMINE answer',
    first.uidNextInExamine === undefined
      ? `absent (STATUS says ${first.uidNextInStatus})`
      : `${first.uidNextInExamine}`,
  ]);
  rows.push([
    'UIDVALIDITY of a never-SELECTed folder, two EXAMINE sessions 1 s apart',
    first.uidValidity === second.uidValidity
      ? `stable (${first.uidValidity})`
      : `changes (${first.uidValidity} -> ${second.uidValidity})`,
  ]);

  // Order: file names sort B, C, A; modification times A, B, C (the order of arrival).
  const u2 = server.createUser();
  const t0 = Date.now() / 1000 - 3600;
  put(server, u2, '1000000003.A.test', mail(server, ['Subject: A', '', 'a']), new Date(t0 * 1000));
  put(server, u2, '1000000001.B.test', mail(server, ['Subject: B', '', 'b']), new Date((t0 + 60) * 1000));
  put(server, u2, '1000000002.C.test', mail(server, ['Subject: C', '', 'c']), new Date((t0 + 120) * 1000));
  const subjectOf = (b: Buffer) => /Subject: (\w)/.exec(b.toString('latin1'))?.[1] ?? '?';
  const popOrder = (await pop3Snapshot(server.pop3, u2)).messages.map((m) => subjectOf(m.bytes)).join(' ');
  const imapOrder = (await imapSnapshot(server.imap, u2)).messages.map((m) => subjectOf(m.bytes)).join(' ');
  rows.push([
    'order of 3 new files (names sort B C A, arrival A B C), POP3 first / IMAP UIDs',
    `POP3 ${popOrder} / UIDs ${imapOrder}`,
  ]);

  // NUL, bare LF, bare CR, no final line end, 8-bit headers.
  const u3 = server.createUser();
  const crlfFile = (lines: string[]) => Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1');
  const cases: Array<{ label: string; bytes: Buffer }> = [
    { label: 'nul', bytes: mail(server, ['Subject: nul', '', Buffer.from('before\u0000after', 'latin1')]) },
    { label: 'barelf', bytes: Buffer.from('Subject: barelf\n\none\ntwo\n') },
    { label: 'crlffile', bytes: crlfFile(['Subject: crlffile', '', 'one', 'two']) },
    { label: 'lonecr', bytes: mail(server, ['Subject: lonecr', '', 'alpha\rbeta']) },
    {
      label: 'nofinal',
      bytes: Buffer.concat([mail(server, ['Subject: nofinal', '']), Buffer.from('no line end at the end')]),
    },
    {
      label: 'utf8hdr',
      bytes: mail(server, [Buffer.from('Subject: Gr\u00fc\u00dfe utf8hdr', 'utf8'), '', 'x']),
    },
    {
      label: 'latin1hdr',
      bytes: mail(server, [Buffer.from('Subject: Gr\u00fc\u00dfe latin1hdr', 'latin1'), '', 'x']),
    },
  ];
  cases.forEach((c, i) => put(server, u3, `100000001${i}.${c.label}.test`, c.bytes));
  const imapPlain = await imapSnapshot(server.imap, u3);
  const imapUtf8 = await imapSnapshot(server.imap, u3, { enableUtf8: true }).catch(() => undefined);
  const popPlain = await pop3Snapshot(server.pop3, u3);
  const popUtf8 = await pop3Snapshot(server.pop3, u3, { utf8: true }).catch(() => undefined);
  const find = <T extends { bytes: Buffer }>(list: T[] | undefined, label: string) =>
    list?.find((m) => m.bytes.includes(label));
  const pair = (label: string, marker: string, n: number) =>
    `IMAP: ${show(around(find(imapPlain.messages, label)?.bytes, marker, n))}; POP3: ${show(around(find(popPlain.messages, label)?.bytes, marker, n))}`;
  rows.push(['NUL in a body line (before\\0after), served as', pair('nul', 'before', 6)]);
  rows.push(['bare LF line ends in the file (one LF two LF), served as', pair('barelf', 'one', 5)]);
  rows.push(['CRLF line ends in the file (one CRLF two CRLF), served as', pair('crlffile', 'one', 6)]);
  rows.push(['bare CR inside a line (alpha CR beta), served as', pair('lonecr', 'alpha', 6)]);
  rows.push(['no line end after the last line, served as', pair('nofinal', 'the end', 3)]);

  // Sizes: announced against served, for every message of the set.
  const labelOf = (b: Buffer) => cases.find((c) => b.includes(c.label))?.label ?? '?';
  const sizeNotes = (list: Array<{ size: number; bytes: Buffer }>) => {
    const off = list
      .filter((m) => m.size !== m.bytes.length)
      .map((m) => `${labelOf(m.bytes)} ${m.size} vs ${m.bytes.length}`);
    return off.length === 0 ? 'exact for all' : `differs: ${off.join(', ')}`;
  };
  rows.push(['RFC822.SIZE against the BODY[] served (7 odd messages)', sizeNotes(imapPlain.messages)]);
  rows.push(['LIST size against the RETR served, un-stuffed (same 7)', sizeNotes(popPlain.messages)]);

  for (const label of ['utf8hdr', 'latin1hdr']) {
    // The message as sent, CRLF line ends: what a server should serve.
    const sent = Buffer.from(
      cases
        .find((c) => c.label === label)!
        .bytes.toString('latin1')
        .replace(/\r?\n/g, '\r\n'),
      'latin1',
    );
    const verdict = (m: { bytes: Buffer } | undefined, extra = '') =>
      m === undefined
        ? 'missing'
        : m.bytes.equals(sent)
          ? `the message${extra}`
          : `NOT the message: ${m.bytes.length} bytes, ${/Subject: [^\r]*/.exec(m.bytes.toString('latin1'))?.[0] ?? ''}${extra}`;
    const plainPop = find(popPlain.messages, label);
    rows.push([
      `8-bit ${label === 'utf8hdr' ? 'UTF-8' : 'Latin-1'} Subject, IMAP without / with ENABLE UTF8=ACCEPT`,
      `${verdict(find(imapPlain.messages, label), imapPlain.alerts.length ? ` + ${imapPlain.alerts.join(' ')}` : '')} / ${imapUtf8 ? verdict(find(imapUtf8.messages, label)) : 'ENABLE refused'}`,
    ]);
    rows.push([
      `8-bit ${label === 'utf8hdr' ? 'UTF-8' : 'Latin-1'} Subject, POP3 without / with UTF8`,
      `${verdict(plainPop, plainPop ? ` (LIST ${plainPop.size}, RETR says "${plainPop.status}")` : '')} / ${popUtf8 ? verdict(find(popUtf8.messages, label)) : 'UTF8 refused'}`,
    ]);
  }

  // Quota.
  const u4 = server.createUser({ quotaBytes: 10 * 1024 * 1024 });
  put(server, u4, '1000000001.q.test', mail(server, ['Subject: q', '', 'x'.repeat(20_000)]));
  const q = await RawImap.login(server.imap, u4);
  try {
    const root = await q.command('GETQUOTAROOT INBOX');
    rows.push([
      'GETQUOTAROOT INBOX, 10 MiB limit, one 20 kB message',
      `${root.untagged.map((r) => r.text).join(' ')} ${root.status.replace(/^\S+ /, '')}`.trim(),
    ]);
  } finally {
    await q.logout();
  }
  return rows;
}

/** The rows of several servers as one Markdown table. */
export function table(names: string[], columns: Row[][]): string {
  const escape = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [`| | ${names.join(' | ')} |`, `| --- | ${names.map(() => '---').join(' | ')} |`];
  columns[0]!.forEach(([question], i) => {
    lines.push(`| ${escape(question)} | ${columns.map((c) => escape(c[i]?.[1] ?? '')).join(' | ')} |`);
  });
  return lines.join('\n');
}
