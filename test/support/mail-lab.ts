import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ImapFlow, type ImapFlowOptions } from 'imapflow';
import type { DovecotInfo } from './dovecot';

const run = promisify(execFile);

export interface TestUser {
  name: string;
  password: string;
  home: string;
  maildir: string;
}

let counter = 0;

/**
 * An imapflow client of `user` over IMAPS to a harness server (MailLab's Dovecot, CourierLab's Courier), trusting
 * the harness CA; not connected yet. `options` adds to or overrides the defaults.
 */
export function imapsClient(
  lab: { info: { host: string; servername: string; ports: { imaps: number } }; ca: Buffer },
  user: { name: string; password: string },
  options: Partial<ImapFlowOptions> = {},
): ImapFlow {
  return new ImapFlow({
    host: lab.info.host,
    port: lab.info.ports.imaps,
    secure: true,
    servername: lab.info.servername,
    tls: { ca: lab.ca, servername: lab.info.servername },
    auth: { user: user.name, pass: user.password },
    logger: false,
    connectionTimeout: 10000,
    ...options,
  });
}

/**
 * Helpers over the private Dovecot started by the global setup: every test makes its own users, so tests
 * never see each other's mail.
 */
export class MailLab {
  constructor(readonly info: DovecotInfo) {}

  static fromEnv(): MailLab {
    const raw = process.env.TRIBUTARY_TEST_DOVECOT;
    if (!raw)
      throw new Error(
        'TRIBUTARY_TEST_DOVECOT is not set: run the tests through jest (its global setup starts Dovecot)',
      );
    return new MailLab(JSON.parse(raw) as DovecotInfo);
  }

  get ca(): Buffer {
    return fs.readFileSync(this.info.caFile);
  }

  /** A fresh user with its own Maildir; `quotaBytes` sets a per-user storage limit for the quota plugin. */
  createUser(prefix = 'u', options: { quotaBytes?: number; password?: string } = {}): TestUser {
    const name = `${prefix}${process.pid}x${++counter}${randomBytes(3).toString('hex')}`;
    const password = options.password ?? `pw-${randomBytes(6).toString('hex')}`;
    const home = path.join(this.info.dataDir, name);
    const maildir = path.join(home, 'Maildir');
    for (const sub of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(maildir, sub), { recursive: true });
    this.chownTree(home);
    const extra =
      options.quotaBytes === undefined ? '' : `userdb_quota_rule=*:storage=${options.quotaBytes}B`;
    // passwd-file columns: user:password:uid:gid:gecos:home:shell:extra (notes: pitfall 4)
    fs.writeFileSync(
      path.join(this.info.usersDir, name),
      `${name}:{PLAIN}${password}:${this.info.uid}:${this.info.gid}::${home}::${extra}\n`,
      { mode: 0o644 },
    );
    return { name, password, home, maildir };
  }

  private chownTree(p: string): void {
    if (process.getuid?.() !== 0) return;
    try {
      fs.chownSync(p, this.info.uid, this.info.gid);
      if (fs.statSync(p).isDirectory()) for (const e of fs.readdirSync(p)) this.chownTree(path.join(p, e));
    } catch (err) {
      // Dovecot may be renaming its own temporary files (dovecot-uidlist.tmp) in the same tree right now.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /**
   * Delivers a message straight into the Maildir (as an MDA would), bypassing IMAP and the quota check.
   * `folder` is a Maildir++ folder name such as `.Archive`, or '' for INBOX.
   */
  deliver(user: TestUser, message: Buffer | string, folder = ''): string {
    const dir = path.join(user.maildir, folder);
    for (const sub of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    const now = process.hrtime.bigint();
    const base = `${Math.floor(Date.now() / 1000)}.M${now % 1000000n}P${process.pid}Q${++counter}.tributary-test`;
    const tmp = path.join(dir, 'tmp', base);
    fs.writeFileSync(tmp, message);
    this.chownTree(dir);
    const final = path.join(dir, 'new', base);
    fs.renameSync(tmp, final);
    return final;
  }

  /**
   * Delivers many messages as `deliver` does, owning the tree to the mail user once at the end rather than after
   * each message (which walks the whole Maildir every time: 10,000 messages took minutes). Returns their sizes.
   */
  deliverMany(user: TestUser, messages: Iterable<Buffer>, folder = ''): number[] {
    const dir = path.join(user.maildir, folder);
    for (const sub of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
    const sizes: number[] = [];
    const written: string[] = [];
    for (const message of messages) {
      const now = process.hrtime.bigint();
      const base = `${Math.floor(Date.now() / 1000)}.M${now % 1000000n}P${process.pid}Q${++counter}.tributary-test`;
      fs.writeFileSync(path.join(dir, 'tmp', base), message);
      written.push(base);
      sizes.push(message.length);
    }
    this.chownTree(dir);
    for (const base of written) fs.renameSync(path.join(dir, 'tmp', base), path.join(dir, 'new', base));
    return sizes;
  }

  /** An imapflow client logged in as `user` over IMAPS, trusting the harness CA. */
  async imap(user: TestUser): Promise<ImapFlow> {
    const client = imapsClient(this, user, { greetingTimeout: 10000, socketTimeout: 30000 });
    await client.connect();
    return client;
  }

  /** APPENDs messages over IMAP (counts against quota, like real delivery through a server). */
  async append(
    user: TestUser,
    messages: Array<Buffer | string>,
    mailbox = 'INBOX',
    flags: string[] = [],
  ): Promise<void> {
    const client = await this.imap(user);
    try {
      for (const m of messages) await client.append(mailbox, m, flags);
    } finally {
      await client.logout();
    }
  }

  async doveadm(...args: string[]): Promise<string> {
    const { stdout } = await run('doveadm', ['-c', this.info.configFile, ...args]);
    return stdout;
  }

  /** Storage usage and limit in bytes as Dovecot's quota plugin sees them. */
  async quota(user: TestUser): Promise<{ usedBytes: number; limitBytes: number | undefined }> {
    const out = await this.doveadm('-f', 'tab', 'quota', 'get', '-u', user.name);
    const row = out
      .trim()
      .split('\n')
      .map((l) => l.split('\t'))
      .find((cols) => cols[1] === 'STORAGE');
    if (!row) throw new Error(`no STORAGE row in doveadm quota output: ${out}`);
    const limit = row[3] === '-' ? undefined : Number(row[3]) * 1024;
    return { usedBytes: Number(row[2]) * 1024, limitBytes: limit };
  }

  /** Recounts usage after mail was delivered straight into the Maildir. */
  async recalcQuota(user: TestUser): Promise<void> {
    await this.doveadm('quota', 'recalc', '-u', user.name);
  }

  /** Sets a mailbox's UIDVALIDITY (as a server does when it rebuilds a mailbox): every UID becomes void. */
  async setUidValidity(user: TestUser, uidValidity: number, mailbox = 'INBOX'): Promise<void> {
    await this.doveadm('mailbox', 'update', '-u', user.name, '--uid-validity', String(uidValidity), mailbox);
  }

  async status(
    user: TestUser,
    mailbox = 'INBOX',
  ): Promise<{ messages: number; uidValidity: string; uidNext: number }> {
    const out = await this.doveadm(
      '-f',
      'tab',
      'mailbox',
      'status',
      '-u',
      user.name,
      'messages uidvalidity uidnext',
      mailbox,
    );
    const [header, values] = out
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    const field = (name: string) => values?.[header?.indexOf(name) ?? -1] ?? '';
    return {
      messages: Number(field('messages')),
      uidValidity: field('uidvalidity'),
      uidNext: Number(field('uidnext')),
    };
  }
}
