import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ensurePeerTools, findTool, type PeerTool } from '../lib/install';
import type { Contender, Upstream } from '../lib/types';

/**
 * The established fetchers the benchmark runs beside Tributary: mbsync (IMAP), mpop (POP3), fetchmail and getmail6
 * (both protocols). mbsync, mpop and getmail6 deliver into a Maildir (`<workDir>/Maildir`), fetchmail into a BSMTP
 * batch file (see fetchmail below), all on the local disk. Each is configured as its manual recommends for a
 * "leave mail on the server, fetch only what is new" setup, over implicit TLS with the server certificate verified
 * against the bench CA (never "accept any certificate").
 *
 * Common choices, so that no peer is handicapped by its configuration:
 * - Config files are generated in the work directory on every `command()` call (the ports differ between the
 *   loopback and the latency runs); the password lives only there, in files of mode 0600.
 * - No forced flush where the tool lets us choose (mbsync `FSync no`, which it documents as reasonably safe on
 *   data=ordered file systems): Tributary's local S3 server does not fsync either. Where it cannot be chosen it is
 *   part of the tool's cost: mpop fsyncs each delivered message, getmail6 fsyncs twice per message (the message
 *   and its child's report), fetchmail once per run (seen with `strace -c -e trace=fsync`).
 * - No header added on delivery where the tool lets us choose (mpop `received_header off`, getmail
 *   `received = false` + `delivered_to = false`, fetchmail `set invisible`): every copy holds the server's bytes.
 * - Certificate names (notes, pitfall 6): the certificate is for DNS:localhost and IP:127.0.0.1; tools that match
 *   only DNS names are told the name `localhost` (mbsync by connecting to `localhost`, which resolves to 127.0.0.1
 *   here; the others by their override option while connecting to the upstream's address).
 */

const run = promisify(execFile);

const MAILDIR = 'Maildir';

/** The unprivileged account getmail6 runs as: it refuses to deliver as root. */
const GETMAIL_USER = 'nobody';
const GETMAIL_GROUP = 'nogroup';

function maildir(workDir: string): string {
  return path.join(workDir, MAILDIR);
}

/** Writes a file only its owner can read (configs that hold the password). */
function writePrivate(file: string, text: string): void {
  fs.writeFileSync(file, text, { mode: 0o600 });
  fs.chmodSync(file, 0o600); // an existing file keeps its mode through writeFileSync
}

/** Empties the work directory (Maildir and every state file) and recreates an empty Maildir. */
function emptyWorkDir(workDir: string): void {
  fs.mkdirSync(workDir, { recursive: true });
  for (const entry of fs.readdirSync(workDir))
    fs.rmSync(path.join(workDir, entry), { recursive: true, force: true });
  for (const sub of ['cur', 'new', 'tmp'])
    fs.mkdirSync(path.join(maildir(workDir), sub), { recursive: true });
}

/** Messages (files in new/ and cur/) and their total bytes in the work directory's Maildir. */
async function countMaildir(workDir: string): Promise<{ messages: number; bytes: number }> {
  let messages = 0;
  let bytes = 0;
  for (const sub of ['new', 'cur']) {
    const dir = path.join(maildir(workDir), sub);
    let names: string[];
    try {
      names = await fs.promises.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const stat = await fs.promises.stat(path.join(dir, name));
      if (!stat.isFile()) continue;
      messages++;
      bytes += stat.size;
    }
  }
  return { messages, bytes };
}

/** A config-file string value in double quotes (fetchmail and mbsync syntax: backslash escapes). */
function quoted(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** First line of `cmd args` (stdout, else stderr) that matches, or the first line. */
async function versionLine(cmd: string, args: string[], match?: RegExp): Promise<string> {
  let out: string;
  try {
    const r = await run(cmd, args, { env: { ...process.env, LC_ALL: 'C' } });
    out = `${r.stdout}\n${r.stderr}`;
  } catch (err) {
    // fetchmail --version exits non-zero when it has no run control file; its banner is still printed.
    const e = err as { stdout?: string; stderr?: string; message?: string };
    out = `${e.stdout ?? ''}\n${e.stderr ?? ''}`;
    if (!out.trim()) return `unknown (${e.message ?? String(err)})`;
  }
  const lines = out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return (match ? lines.find((l) => match.test(l)) : undefined) ?? lines[0] ?? 'unknown';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Marks every message of the upstream INBOX unread (what fetchmail's IMAP mode treats as "new"). */
async function resetSeen(upstream: Upstream): Promise<void> {
  await upstream.doveadm(['flags', 'remove', '-u', upstream.user, '\\Seen', 'mailbox', 'INBOX', 'ALL']);
}

async function toolUnavailable(tool: PeerTool): Promise<string | undefined> {
  const status = await ensurePeerTools();
  return status[tool];
}

// --- mbsync (isync) -------------------------------------------------------------------------------------------

/**
 * mbsync, IMAP to Maildir. `Sync Pull New`: only new far-side messages are copied to the near side; nothing is
 * written to the server (no flag propagation, `Expunge None`, `Create Near` only). Its sync state (UIDVALIDITY and
 * UID maps) goes to `<workDir>/state/`. `FSync no` (see above). Over TLS it is pipelined by default
 * (`PipelineDepth` unlimited). Re-poll: mbsync sleeps up to 1 s when its Maildir changed within the current
 * second (notes, pitfall 8), so `beforeRun('repoll')` waits 1.1 s outside the timing.
 */
function mbsync(): Contender {
  return {
    name: 'mbsync',
    protocol: 'imap',
    unavailable: () => toolUnavailable('mbsync'),
    version: () => versionLine('mbsync', ['--version']),
    async reset(_upstream, workDir) {
      emptyWorkDir(workDir);
    },
    async beforeRun(_upstream, _workDir, kind) {
      if (kind === 'repoll') await sleep(1100);
    },
    async command(upstream, workDir) {
      // mbsync 1.4 matches only DNS names in the certificate (notes, pitfall 6): connect to `localhost`, which
      // resolves to 127.0.0.1 (the latency proxy listens there too).
      const host = upstream.host === '127.0.0.1' ? 'localhost' : upstream.host;
      fs.mkdirSync(path.join(workDir, 'state'), { recursive: true });
      const config = path.join(workDir, 'mbsyncrc');
      // Sections must be separated by blank lines (notes, pitfall 18).
      writePrivate(
        config,
        [
          'FSync no',
          '',
          'IMAPAccount bench',
          `Host ${host}`,
          `Port ${upstream.imapsPort}`,
          `User ${quoted(upstream.user)}`,
          `Pass ${quoted(upstream.password)}`,
          'SSLType IMAPS',
          'SystemCertificates no',
          `CertificateFile ${quoted(upstream.caFile)}`,
          '',
          'IMAPStore far',
          'Account bench',
          '',
          'MaildirStore near',
          `Path ${quoted(`${workDir}/`)}`,
          `Inbox ${quoted(maildir(workDir))}`,
          '',
          'Channel inbox',
          'Far :far:',
          'Near :near:',
          'Patterns INBOX',
          'Sync Pull New',
          'Create Near',
          'Expunge None',
          `SyncState ${quoted(`${path.join(workDir, 'state')}/`)}`,
          '',
        ].join('\n'),
      );
      return { cmd: 'mbsync', args: ['-c', config, 'inbox'], cwd: workDir };
    },
    delivered: countMaildir,
  };
}

// --- mpop -----------------------------------------------------------------------------------------------------

/**
 * mpop, POP3 to Maildir: implicit TLS (`tls on`, `tls_starttls off`), the bench CA as the only trust anchor,
 * `tls_host_override localhost` for the name check, UIDLs kept in the work directory, `keep on` + `only_new on`
 * (the default) so a re-poll downloads nothing, POP3 PIPELINING as the server offers it (`pipelining auto`, the
 * default).
 */
function mpop(): Contender {
  return {
    name: 'mpop',
    protocol: 'pop3',
    unavailable: () => toolUnavailable('mpop'),
    version: () => versionLine('mpop', ['--version']),
    async reset(_upstream, workDir) {
      emptyWorkDir(workDir);
    },
    async command(upstream, workDir) {
      const config = path.join(workDir, 'mpoprc');
      writePrivate(
        config,
        [
          'defaults',
          '',
          'account bench',
          `host ${upstream.host}`,
          `port ${upstream.pop3sPort}`,
          `user ${quoted(upstream.user)}`,
          `password ${quoted(upstream.password)}`,
          'tls on',
          'tls_starttls off',
          `tls_trust_file ${quoted(upstream.caFile)}`,
          `tls_host_override ${upstream.servername}`,
          `uidls_file ${quoted(path.join(workDir, 'mpop-uidls'))}`,
          'keep on',
          'only_new on',
          'received_header off',
          `delivery maildir ${quoted(maildir(workDir))}`,
          '',
        ].join('\n'),
      );
      return { cmd: 'mpop', args: ['--quiet', `--file=${config}`, 'bench'], cwd: workDir };
    },
    delivered: countMaildir,
  };
}

// --- fetchmail ------------------------------------------------------------------------------------------------

const BSMTP_FILE = 'fetchmail.bsmtp';

/**
 * Messages in a BSMTP batch file (complete `DATA` ... `.` blocks) and their bytes once un-stuffed (a leading dot
 * removed from lines that start with two), CRLF line ends counted as they are in the file. Read in chunks: the
 * file holds the whole corpus.
 */
async function countBsmtp(file: string): Promise<{ messages: number; bytes: number }> {
  let messages = 0;
  let bytes = 0;
  let inData = false;
  let messageBytes = 0;
  let carry: Buffer = Buffer.alloc(0);
  const onLine = (line: Buffer) => {
    // line includes its LF; its content is without the CR LF
    let end = line.length;
    if (end > 0 && line[end - 1] === 0x0a) end--;
    if (end > 0 && line[end - 1] === 0x0d) end--;
    const content = line.subarray(0, end);
    if (!inData) {
      if (content.toString('latin1').toUpperCase() === 'DATA') {
        inData = true;
        messageBytes = 0;
      }
      return;
    }
    if (content.length === 1 && content[0] === 0x2e) {
      inData = false;
      messages++;
      bytes += messageBytes;
      return;
    }
    messageBytes += content[0] === 0x2e ? line.length - 1 : line.length;
  };
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { messages: 0, bytes: 0 };
    throw err;
  }
  try {
    const chunk = Buffer.alloc(1024 * 1024);
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      const data = carry.length
        ? Buffer.concat([carry, chunk.subarray(0, bytesRead)])
        : chunk.subarray(0, bytesRead);
      let start = 0;
      for (let lf = data.indexOf(0x0a, start); lf !== -1; lf = data.indexOf(0x0a, start)) {
        onLine(data.subarray(start, lf + 1));
        start = lf + 1;
      }
      carry = Buffer.from(data.subarray(start)); // a copy: `chunk` is reused by the next read
    }
    // An unterminated last line can only belong to a message cut short: it is not counted.
  } finally {
    await handle.close();
  }
  return { messages, bytes };
}

/**
 * fetchmail over IMAPS or POP3S, `keep`, no `fetchall`: it fetches what it considers new. POP3: client-side UIDL
 * tracking (`uidl`, ids in `<workDir>/fetchids`); with `keep` + `uidl` it downloads with TOP, not RETR
 * (fetchmail(1)), so unlike mpop and getmail it leaves \Seen alone on Dovecot. IMAP: fetchmail's "new" is the
 * server's \Seen flag (notes, pitfall 9), which it sets itself; POP3 runs of other clients mark mail \Seen too, so
 * `beforeRun('full')` removes \Seen from the whole INBOX (outside the timing) so that a full run fetches everything.
 *
 * Delivery: fetchmail has no Maildir or mbox writer of its own; it hands each message to an MTA over SMTP/LMTP,
 * to an MDA (a command run through /bin/sh once per message), or appends it to a BSMTP batch file (`bsmtp`). An
 * MTA (or procmail/maildrop as MDA) would add a mail server's work to every message, and even the smallest MDA
 * (`sh -c 'exec cat > Maildir/new/<unique>'`: one fork + exec per message, no fsync) measured 5 to 10 times the
 * cost of the fetch itself on this machine, where process creation is expensive (1,000 messages of 3-9 KB over
 * TLS on loopback: MDA 9.7-17.6 s wall and 3.5 s CPU, BSMTP 0.9-3.7 s wall and 0.45 s CPU): the table would
 * measure process spawning, not fetching. So fetchmail appends to `<workDir>/fetchmail.bsmtp`, written by
 * fetchmail itself with no helper process and no fsync: every message lands on the local disk in full (CRLF,
 * dot-stuffed between `DATA` and `.`), the cheapest local delivery fetchmail has, i.e. its best case.
 * `delivered()` counts the complete `DATA` ... `.` blocks and their un-stuffed bytes.
 *
 * Exit codes (fetchmail(1), EXIT CODES): 0 = mail retrieved, 1 = no new mail (normal on a re-poll), anything else
 * is a failure. The command runs fetchmail under `sh -c` that maps 1 to 0 and passes every other code on.
 */
function fetchmail(protocol: 'imap' | 'pop3'): Contender {
  return {
    name: protocol === 'imap' ? 'fetchmail IMAP' : 'fetchmail POP3',
    protocol,
    unavailable: () => toolUnavailable('fetchmail'),
    version: () => versionLine('fetchmail', ['--version'], /fetchmail release/i),
    async reset(_upstream, workDir) {
      emptyWorkDir(workDir);
    },
    async beforeRun(upstream, _workDir, kind) {
      if (protocol === 'imap' && kind === 'full') await resetSeen(upstream);
    },
    async command(upstream, workDir) {
      const config = path.join(workDir, 'fetchmailrc');
      const port = protocol === 'imap' ? upstream.imapsPort : upstream.pop3sPort;
      writePrivate(
        config,
        [
          'set no syslog',
          'set no bouncemail',
          'set invisible',
          `poll ${quoted(upstream.host)} with proto ${protocol === 'imap' ? 'IMAP' : 'POP3'} service ${port}`,
          '    auth password',
          '    timeout 60',
          ...(protocol === 'pop3' ? ['    uidl'] : []),
          `  user ${quoted(upstream.user)} there with password ${quoted(upstream.password)}`,
          `    ssl sslcertck sslcertfile ${quoted(upstream.caFile)} sslcommonname ${quoted(upstream.servername)}`,
          '    keep',
          '    no fetchall',
          `    bsmtp ${quoted(path.join(workDir, BSMTP_FILE))}`,
          '',
        ].join('\n'),
      );
      const args = [
        '--silent',
        '--nodetach',
        '--fetchmailrc',
        config,
        '--idfile',
        path.join(workDir, 'fetchids'),
        '--pidfile',
        path.join(workDir, 'fetchmail.pid'),
      ];
      return {
        cmd: '/bin/sh',
        args: ['-c', 'fetchmail "$@"; c=$?; [ "$c" -eq 1 ] && exit 0; exit "$c"', 'fetchmail', ...args],
        // FETCHMAILHOME keeps anything else fetchmail writes (lock, ids) in the work directory.
        env: { FETCHMAILHOME: workDir },
        cwd: workDir,
      };
    },
    delivered: (workDir) => countBsmtp(path.join(workDir, BSMTP_FILE)),
  };
}

// --- getmail6 -------------------------------------------------------------------------------------------------

/**
 * Makes `dir` and the directories above it, up to the temporary directory, searchable (o+x) so the unprivileged
 * getmail can reach its work dir. Nothing at or above the temporary directory is changed: when one of those is
 * closed to others, getmail cannot run here, and the error says so.
 */
function makeReachable(dir: string): void {
  const top = path.resolve(os.tmpdir());
  let current = path.resolve(dir);
  for (;;) {
    const stat = fs.statSync(current);
    const mine = current !== top && current.startsWith(`${top}${path.sep}`);
    if ((stat.mode & 0o001) === 0) {
      if (!mine) {
        throw new Error(
          `getmail runs as nobody and cannot reach ${dir}: ${current} is not searchable by others (set TMPDIR to a directory that is)`,
        );
      }
      fs.chmodSync(current, (stat.mode & 0o7777) | 0o001);
    }
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
  }
}

function chownTree(p: string, uid: number, gid: number): void {
  fs.chownSync(p, uid, gid);
  if (fs.lstatSync(p).isDirectory()) for (const e of fs.readdirSync(p)) chownTree(path.join(p, e), uid, gid);
}

async function getmailIds(): Promise<{ uid: number; gid: number }> {
  const [{ stdout: uid }, { stdout: gid }] = await Promise.all([
    run('id', ['-u', GETMAIL_USER]),
    run('getent', ['group', GETMAIL_GROUP]),
  ]);
  return { uid: Number(uid.trim()), gid: Number(gid.split(':')[2]) };
}

/**
 * getmail6 over IMAPS or POP3S into a Maildir, `read_all = false` + `delete = false`: it remembers what it
 * fetched (IMAP UIDs / POP3 UIDLs) in its `oldmail-*` file in `--getmaildir` (the work directory), so a re-poll
 * fetches nothing. getmail6 refuses to deliver as root, so it runs as `nobody` (setpriv, which execs getmail: no
 * extra process in the timing), with the work directory owned by that user (and the directories above it made
 * searchable, o+x); the CA file is copied into the work directory so `nobody` can read it.
 *
 * Known getmail6 6.18.11 bug (notes, pitfall 5; upstream issues #52, #226, #245): it forks the Maildir delivery
 * child (one per message) before installing its SIGCHLD handler and before waiting; when the child exits first,
 * getmail waits for the socket timeout and aborts with "waiting child pid N timed out" (exit 127) without saving
 * its oldmail state, so the next run delivers the same messages again. On this machine it hits one delivery in a
 * few hundred, so most runs of a large corpus fail. Not worked around here (that would mean patching getmail):
 * such a run exits non-zero with too few messages and the runner reports it as failed. The retriever `timeout` is
 * lowered from 180 s to 15 s so a lost child costs 15 s, not 3 minutes (15 s is far above any single socket wait
 * or delivery of these runs, even at 20 ms RTT). Exit codes: 0 = success (also with nothing new), else failure.
 */
function getmail(protocol: 'imap' | 'pop3'): Contender {
  return {
    name: protocol === 'imap' ? 'getmail IMAP' : 'getmail POP3',
    protocol,
    async unavailable() {
      const reason = await toolUnavailable('getmail');
      if (reason) return reason;
      if (process.getuid?.() !== 0) return 'getmail is run as nobody through setpriv, which needs root';
      if (!findTool('setpriv'))
        return 'setpriv (util-linux) is missing: getmail6 cannot be run as an unprivileged user';
      try {
        await getmailIds();
      } catch {
        return `no user ${GETMAIL_USER} / group ${GETMAIL_GROUP} to run getmail6 as (it refuses to deliver as root)`;
      }
      return undefined;
    },
    version: () => versionLine('getmail', ['--version']),
    async reset(_upstream, workDir) {
      emptyWorkDir(workDir);
      makeReachable(workDir);
      const { uid, gid } = await getmailIds();
      chownTree(workDir, uid, gid);
    },
    async command(upstream, workDir) {
      const { uid, gid } = await getmailIds();
      const ca = path.join(workDir, 'ca.pem');
      fs.copyFileSync(upstream.caFile, ca);
      fs.chmodSync(ca, 0o644);
      const rcfile = 'getmailrc';
      const config = path.join(workDir, rcfile);
      writePrivate(
        config,
        [
          '[retriever]',
          `type = ${protocol === 'imap' ? 'SimpleIMAPSSLRetriever' : 'SimplePOP3SSLRetriever'}`,
          `server = ${upstream.host}`,
          `port = ${protocol === 'imap' ? upstream.imapsPort : upstream.pop3sPort}`,
          `username = ${upstream.user}`,
          `password = ${upstream.password}`,
          `ca_certs = ${ca}`,
          `ssl_cert_hostname = ${upstream.servername}`,
          'timeout = 15',
          ...(protocol === 'imap' ? ['mailboxes = ("INBOX",)'] : []),
          '',
          '[destination]',
          'type = Maildir',
          `path = ${maildir(workDir)}/`,
          '',
          '[options]',
          'verbose = 0',
          'read_all = false',
          'delete = false',
          'delivered_to = false',
          'received = false',
          'message_log_syslog = false',
          '',
        ].join('\n'),
      );
      chownTree(workDir, uid, gid);
      return {
        cmd: 'setpriv',
        args: [
          `--reuid=${uid}`,
          `--regid=${gid}`,
          '--clear-groups',
          '--',
          'getmail',
          '--quiet',
          `--getmaildir=${workDir}`,
          `--rcfile=${rcfile}`,
        ],
        env: { HOME: workDir, USER: GETMAIL_USER, LOGNAME: GETMAIL_USER },
        cwd: workDir,
      };
    },
    delivered: countMaildir,
  };
}

/** The peer fetchers, in the table's order. */
export function peerContenders(): Contender[] {
  return [mbsync(), mpop(), fetchmail('imap'), fetchmail('pop3'), getmail('imap'), getmail('pop3')];
}
