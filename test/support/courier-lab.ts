import net from 'node:net';
import tls from 'node:tls';
import fs from 'node:fs';
import { addCourierUser, deliverToCourier, type CourierInfo, type CourierUser } from './courier';
import type { UpstreamReader } from './reconciler';
import { sha256 } from './upstream';

/** Where to reach one listener of a server. `none` logs in in clear: loopback only. */
export interface Endpoint {
  host: string;
  port: number;
  tls: 'implicit' | 'none';
  ca?: Buffer;
  servername?: string;
}

/**
 * Helpers over the private Courier started by the global setup, like MailLab for Dovecot: every test makes its
 * own users, so tests never see each other's mail.
 */
export class CourierLab {
  constructor(readonly info: CourierInfo) {}

  /** The lab, or why there is none (the global setup could not start Courier: not root). */
  static fromEnv(): CourierLab | { unavailable: string } {
    const raw = process.env.TRIBUTARY_TEST_COURIER;
    if (!raw)
      throw new Error(
        'TRIBUTARY_TEST_COURIER is not set: run the tests through jest (its global setup starts Courier)',
      );
    const parsed = JSON.parse(raw) as CourierInfo | { unavailable: string };
    return 'unavailable' in parsed ? parsed : new CourierLab(parsed);
  }

  get ca(): Buffer {
    return fs.readFileSync(this.info.caFile);
  }

  createUser(prefix = 'c', options: { password?: string; quotaBytes?: number } = {}): CourierUser {
    return addCourierUser(this.info, prefix, options);
  }

  /** Into the Maildir with LF line ends, as Courier's delivery agents store mail (see deliverToCourier). */
  deliver(
    user: CourierUser,
    message: Buffer | string,
    options: { folder?: string; verbatim?: boolean } = {},
  ) {
    return deliverToCourier(this.info, user, message, options);
  }

  endpoint(protocol: 'imap' | 'pop3', mode: 'implicit' | 'none'): Endpoint {
    const p = this.info.ports;
    const port =
      protocol === 'imap' ? (mode === 'implicit' ? p.imaps : p.imap) : mode === 'implicit' ? p.pop3s : p.pop3;
    return { host: this.info.host, port, tls: mode, ca: this.ca, servername: this.info.servername };
  }
}

/** A socket whose bytes are read by explicit request only: the protocol clients below are deliberately tiny. */
class Wire {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake?.();
    });
    const fail = (err: Error) => {
      this.failure = err;
      this.wake?.();
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static async open(ep: Endpoint): Promise<Wire> {
    const socket =
      ep.tls === 'implicit'
        ? tls.connect({ host: ep.host, port: ep.port, ca: ep.ca, servername: ep.servername })
        : net.connect(ep.port, ep.host);
    await new Promise<void>((resolve, reject) => {
      socket.once(ep.tls === 'implicit' ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    socket.setTimeout(30000, () => socket.destroy(new Error('no answer within 30 s')));
    return new Wire(socket);
  }

  write(text: string): void {
    this.socket.write(Buffer.from(text, 'latin1'));
  }

  /** Waits until `end(buf)` finds the end of an answer (an index), then takes those bytes. */
  async take(end: (buf: Buffer) => number): Promise<Buffer> {
    for (;;) {
      const at = end(this.buf);
      if (at >= 0) {
        const out = this.buf.subarray(0, at);
        this.buf = this.buf.subarray(at);
        return out;
      }
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

const CRLF = Buffer.from('\r\n');

/** One IMAP response: its text (latin1) with each literal left as `{n}`, and the literals' bytes. */
export interface ImapResponse {
  text: string;
  literals: Buffer[];
}

/** The end of the next complete IMAP response in `buf` (literals included), or -1. */
function imapResponseEnd(buf: Buffer): number {
  let pos = 0;
  for (;;) {
    const eol = buf.indexOf(CRLF, pos);
    if (eol < 0) return -1;
    const literal = /\{(\d+)\+?\}$/.exec(buf.subarray(Math.max(pos, eol - 20), eol).toString('latin1'));
    if (!literal) return eol + 2;
    pos = eol + 2 + Number(literal[1]);
    if (pos > buf.length) return -1;
  }
}

function parseImapResponse(raw: Buffer): ImapResponse {
  const literals: Buffer[] = [];
  let text = '';
  let pos = 0;
  for (;;) {
    const eol = raw.indexOf(CRLF, pos);
    const line = raw.subarray(pos, eol).toString('latin1');
    text += line;
    const literal = /\{(\d+)\+?\}$/.exec(line);
    if (!literal) return { text, literals };
    const n = Number(literal[1]);
    literals.push(raw.subarray(eol + 2, eol + 2 + n));
    pos = eol + 2 + n;
  }
}

/** A logged-in IMAP session that speaks only what it is told (no ENABLE unless asked). */
export class RawImap {
  private tag = 0;
  greeting = '';
  private constructor(private readonly wire: Wire) {}

  static async login(ep: Endpoint, user: { name: string; password: string }): Promise<RawImap> {
    const session = new RawImap(await Wire.open(ep));
    session.greeting = parseImapResponse(await session.wire.take(imapResponseEnd)).text;
    const login = await session.command(`LOGIN "${user.name}" "${user.password}"`);
    if (!/^\S+ OK/.test(login.status)) throw new Error(`IMAP LOGIN refused: ${login.status}`);
    return session;
  }

  /** Sends one command; answers its untagged responses and the tagged status line. */
  async command(text: string): Promise<{ untagged: ImapResponse[]; status: string }> {
    const tag = `t${++this.tag}`;
    this.wire.write(`${tag} ${text}\r\n`);
    const untagged: ImapResponse[] = [];
    for (;;) {
      const response = parseImapResponse(await this.wire.take(imapResponseEnd));
      if (response.text.startsWith(`${tag} `)) return { untagged, status: response.text };
      untagged.push(response);
    }
  }

  async logout(): Promise<void> {
    await this.command('LOGOUT').catch(() => undefined);
    this.wire.close();
  }
}

export interface ImapServed {
  uid: number;
  /** RFC822.SIZE as announced. */
  size: number;
  bytes: Buffer;
}

export interface ImapSnapshot {
  capability: string;
  uidValidity: string;
  /** [UIDNEXT n] in the EXAMINE answer, or undefined when the server leaves it out. */
  uidNextInExamine: number | undefined;
  uidNextInStatus: number | undefined;
  /** Untagged OK [ALERT] texts seen while fetching. */
  alerts: string[];
  messages: ImapServed[];
}

/** What the server serves in one folder over IMAP (EXAMINE, BODY.PEEK[]: reading it changes nothing). */
export async function imapSnapshot(
  ep: Endpoint,
  user: { name: string; password: string },
  options: { enableUtf8?: boolean; folder?: string } = {},
): Promise<ImapSnapshot> {
  const folder = options.folder ?? 'INBOX';
  const imap = await RawImap.login(ep, user);
  try {
    const capability = (await imap.command('CAPABILITY')).untagged.map((r) => r.text).join(' ');
    if (options.enableUtf8) {
      const enabled = await imap.command('ENABLE UTF8=ACCEPT');
      if (!/^\S+ OK/.test(enabled.status)) throw new Error(`ENABLE UTF8=ACCEPT refused: ${enabled.status}`);
    }
    const examine = await imap.command(`EXAMINE "${folder}"`);
    const code = (name: string) =>
      examine.untagged.map((r) => new RegExp(`\\[${name} (\\d+)\\]`).exec(r.text)?.[1]).find(Boolean);
    const status = await imap.command(`STATUS "${folder}" (UIDNEXT)`);
    const statusNext = status.untagged.map((r) => /UIDNEXT (\d+)/.exec(r.text)?.[1]).find(Boolean);
    const fetched = await imap.command('UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])');
    const messages: ImapServed[] = [];
    const alerts: string[] = [];
    for (const r of fetched.untagged) {
      if (/^\* OK \[ALERT\]/.test(r.text)) alerts.push(r.text);
      if (!/^\* \d+ FETCH /.test(r.text) || r.literals.length !== 1) continue;
      messages.push({
        uid: Number(/UID (\d+)/.exec(r.text)?.[1]),
        size: Number(/RFC822\.SIZE (\d+)/.exec(r.text)?.[1]),
        bytes: r.literals[0]!,
      });
    }
    const uidValidity = code('UIDVALIDITY');
    if (!uidValidity) throw new Error(`no UIDVALIDITY in the EXAMINE answer: ${JSON.stringify(examine)}`);
    return {
      capability,
      uidValidity,
      uidNextInExamine: code('UIDNEXT') === undefined ? undefined : Number(code('UIDNEXT')),
      uidNextInStatus: statusNext === undefined ? undefined : Number(statusNext),
      alerts,
      messages: messages.sort((a, b) => a.uid - b.uid),
    };
  } finally {
    await imap.logout();
  }
}

/** Undoes dot-stuffing: a line that starts with '..' loses one dot. */
function unstuff(b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(b.length);
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    const lineStart = i === 0 || (b[i - 1] === 0x0a && b[i - 2] === 0x0d);
    if (lineStart && b[i] === 0x2e && b[i + 1] === 0x2e) continue;
    out[n++] = b[i]!;
  }
  return out.subarray(0, n);
}

/** A POP3 session that speaks only what it is told (no UTF8 unless asked). */
export class RawPop3 {
  greeting = '';
  private constructor(private readonly wire: Wire) {}

  static async open(ep: Endpoint): Promise<RawPop3> {
    const session = new RawPop3(await Wire.open(ep));
    session.greeting = (await session.line()).trim();
    return session;
  }

  private async line(): Promise<string> {
    return (await this.wire.take((b) => (b.indexOf(CRLF) < 0 ? -1 : b.indexOf(CRLF) + 2))).toString('latin1');
  }

  /** A one-line command: its status line. */
  async command(text: string): Promise<string> {
    this.wire.write(`${text}\r\n`);
    return (await this.line()).trimEnd();
  }

  /** A multi-line command: its status line and, after +OK, the un-stuffed body (its last CRLF kept). */
  async multi(text: string): Promise<{ status: string; body: Buffer }> {
    const status = await this.command(text);
    if (!status.startsWith('+OK')) return { status, body: Buffer.alloc(0) };
    const raw = await this.wire.take((b) => {
      if (b.subarray(0, 3).toString('latin1') === '.\r\n') return 3;
      const at = b.indexOf('\r\n.\r\n');
      return at < 0 ? -1 : at + 5;
    });
    return { status, body: unstuff(raw.subarray(0, raw.length - 3)) };
  }

  async login(user: { name: string; password: string }): Promise<void> {
    const u = await this.command(`USER ${user.name}`);
    const p = await this.command(`PASS ${user.password}`);
    if (!u.startsWith('+OK') || !p.startsWith('+OK')) throw new Error(`POP3 login refused: ${u} / ${p}`);
  }

  async quit(): Promise<void> {
    await this.command('QUIT').catch(() => undefined);
    this.wire.close();
  }
}

export interface Pop3Served {
  n: number;
  uidl: string;
  /** LIST's size. */
  size: number;
  /** RETR's status line, whose octet count may differ from LIST's. */
  status: string;
  bytes: Buffer;
}

export interface Pop3Snapshot {
  capa: string[];
  stat: string;
  messages: Pop3Served[];
}

/** The maildrop as POP3 serves it; `utf8` sends UTF8 (RFC 6856) first. Ends with QUIT and no DELE. */
export async function pop3Snapshot(
  ep: Endpoint,
  user: { name: string; password: string },
  options: { utf8?: boolean } = {},
): Promise<Pop3Snapshot> {
  const pop = await RawPop3.open(ep);
  try {
    if (options.utf8) {
      const ok = await pop.command('UTF8');
      if (!ok.startsWith('+OK')) throw new Error(`UTF8 refused: ${ok}`);
    }
    await pop.login(user);
    const capa = (await pop.multi('CAPA')).body.toString('latin1').split('\r\n').filter(Boolean);
    const stat = await pop.command('STAT');
    const rows = (text: Buffer) =>
      text
        .toString('latin1')
        .split('\r\n')
        .filter(Boolean)
        .map((l) => l.split(' ') as [string, string]);
    const uidls = rows((await pop.multi('UIDL')).body);
    const sizes = new Map(rows((await pop.multi('LIST')).body));
    const messages: Pop3Served[] = [];
    for (const [n, uidl] of uidls) {
      const retr = await pop.multi(`RETR ${n}`);
      messages.push({
        n: Number(n),
        uidl,
        size: Number(sizes.get(n)),
        status: retr.status,
        bytes: retr.body,
      });
    }
    return { capa, stat, messages };
  } finally {
    await pop.quit();
  }
}

/**
 * What Courier holds, for a Reconciler (`new Reconciler(courierUpstream(lab, user, via))`), read over the
 * source's protocol (POP3 adds a CRLF to a message that lacks a final one), having asked for UTF8 (IMAP ENABLE
 * UTF8=ACCEPT, POP3 UTF8), so a message is its bytes, never a notice Courier generates for a client that did not
 * ask.
 */
export function courierUpstream(lab: CourierLab, user: CourierUser, via: 'imap' | 'pop3'): UpstreamReader {
  return async () => {
    const messages =
      via === 'imap'
        ? (await imapSnapshot(lab.endpoint('imap', 'implicit'), user, { enableUtf8: true })).messages
        : (await pop3Snapshot(lab.endpoint('pop3', 'implicit'), user, { utf8: true })).messages;
    return messages.map((m) => sha256(m.bytes));
  };
}
