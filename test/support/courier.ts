import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePorts, stopChild } from '../../functions/local/processes';
import { makeCertificates, startServerProcess } from './private-server';

const run = promisify(execFile);

/** Where a private Courier instance listens and how to reach it. Serializable: it travels to jest workers. */
export interface CourierInfo {
  dir: string;
  host: '127.0.0.1';
  servername: 'localhost';
  /** imap and pop3 offer STARTTLS/STLS; imaps and pop3s are TLS from the first byte. */
  ports: { imap: number; imaps: number; pop3: number; pop3s: number };
  /** PEM of the CA that signed the server certificate (CN=localhost, SAN DNS:localhost + IP:127.0.0.1). */
  caFile: string;
  /** One userdb file per user (`userdb/<name>`), compiled by `makeuserdb -f` into the private userdb.dat. */
  userdbDir: string;
  /** Homes and Maildirs: `<dataDir>/<user>/Maildir`. */
  dataDir: string;
  /** uid/gid that own mail files (mail:mail): Courier refuses a Maildir owned by anyone else. */
  uid: number;
  gid: number;
  /** The Courier-IMAP and POP3 package versions that run. */
  version: { imap: string; pop3: string };
}

/** A user of the private Courier; the same shape as the Dovecot lab's TestUser. */
export interface CourierUser {
  name: string;
  password: string;
  home: string;
  maildir: string;
}

/** Installed with apt; none of them conflicts with Dovecot. */
const APT_PACKAGES = ['courier-base', 'courier-authdaemon', 'courier-authlib-userdb'];
const AUTHDAEMOND = '/usr/lib/courier/courier-authlib/authdaemond';
const COURIERTCPD = '/usr/sbin/couriertcpd';
const COURIERTLS = '/usr/bin/couriertls';
const MAKEUSERDB = '/usr/sbin/makeuserdb';
/** Paths inside a courier-imap / courier-pop tree ('/' when the packages are installed). */
const SERVER_FILES = {
  imapLogin: 'usr/lib/courier/courier/imaplogin',
  imapd: 'usr/bin/imapd',
  pop3Login: 'usr/lib/courier/courier/courierpop3login',
  pop3d: 'usr/lib/courier/courier/courierpop3d',
  imapdConfig: 'etc/courier/imapd',
  imapdSslConfig: 'etc/courier/imapd-ssl',
  pop3dConfig: 'etc/courier/pop3d',
  pop3dSslConfig: 'etc/courier/pop3d-ssl',
};

export interface CourierInstall {
  /** '/' or the unpacked packages: where SERVER_FILES are. */
  root: string;
  version: { imap: string; pop3: string };
}

function packageVersion(name: string): string | undefined {
  try {
    const out = execFileSync('dpkg-query', ['-W', '-f', '${Status}\t${Version}', name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const [status, version] = out.split('\t');
    return status === 'install ok installed' ? version : undefined;
  } catch {
    return undefined;
  }
}

function debField(deb: string, field: string): string {
  return execFileSync('dpkg-deb', ['-f', deb, field], { encoding: 'utf8' }).trim();
}

function hasTree(root: string): boolean {
  return Object.values(SERVER_FILES).every((f) => fs.existsSync(path.join(root, f)));
}

function cacheDir(): string {
  const base =
    process.env.TRIBUTARY_COURIER_CACHE ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'tributary');
  return path.join(base, 'courier');
}

/**
 * Finds Courier; installs what is missing when we are root with apt, else fails with what to install.
 *
 * Debian's courier-imap and courier-pop declare `Conflicts: imap-server` / `pop3-server`, which Dovecot provides:
 * `apt-get install courier-imap` REMOVES dovecot-imapd and dovecot-pop3d (and the Dovecot harness, finding them
 * gone, installs them back, removing Courier). So only the conflict-free packages (authdaemon, userdb,
 * couriertcpd/couriertls from courier-base) are installed; the two server packages, when not installed, are
 * fetched with `apt-get download` and unpacked into a cache (`~/.cache/tributary/courier/<courier-base version>`,
 * or TRIBUTARY_COURIER_CACHE), never registered with dpkg. Their programs take their settings from the
 * environment, so they run from there.
 */
export function ensureCourier(): CourierInstall {
  const isRoot = process.getuid?.() === 0;
  const hasApt = fs.existsSync('/usr/bin/apt-get');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const shared = () => [AUTHDAEMOND, COURIERTCPD, COURIERTLS, MAKEUSERDB].every((p) => fs.existsSync(p));
  if (!shared()) {
    if (!isRoot || !hasApt) {
      throw new Error(
        `Courier is needed by the integration tests and is not installed. Install the packages ${APT_PACKAGES.join(' ')} ` +
          `(Debian/Ubuntu: sudo apt-get install --no-install-recommends ${APT_PACKAGES.join(' ')}; NOT courier-imap or ` +
          'courier-pop, which would remove Dovecot), then run npm test again.',
      );
    }
    process.stderr.write(`[harness] installing ${APT_PACKAGES.join(' ')} with apt-get...\n`);
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...APT_PACKAGES], {
      stdio: 'ignore',
      env,
    });
    if (!shared())
      throw new Error(`apt-get installed ${APT_PACKAGES.join(' ')}, but Courier's programs are missing`);
  }
  const imapInstalled = packageVersion('courier-imap');
  const pop3Installed = packageVersion('courier-pop');
  if (imapInstalled && pop3Installed && hasTree('/'))
    return { root: '/', version: { imap: imapInstalled, pop3: pop3Installed } };

  const base = packageVersion('courier-base');
  if (!base) throw new Error('courier-base is not installed (dpkg-query says so), yet couriertcpd exists');
  const root = path.join(cacheDir(), base);
  const versionFile = path.join(root, 'versions.json');
  if (hasTree(root) && fs.existsSync(versionFile))
    return { root, version: JSON.parse(fs.readFileSync(versionFile, 'utf8')) as CourierInstall['version'] };
  if (!hasApt)
    throw new Error(
      'Courier-IMAP is not installed and apt-get is missing to fetch courier-imap and courier-pop',
    );
  process.stderr.write(
    `[harness] fetching courier-imap and courier-pop (unpacked into ${root}, not installed)...\n`,
  );
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-courier-deb-'));
  try {
    try {
      // As root apt warns that its sandbox user cannot write the folder; harmless.
      execFileSync('apt-get', ['download', '-qq', 'courier-imap', 'courier-pop'], {
        cwd: work,
        stdio: ['ignore', 'ignore', 'pipe'],
        env,
      });
    } catch (err) {
      const said = String((err as { stderr?: Buffer }).stderr ?? err).trim();
      throw new Error(
        `could not fetch courier-imap and courier-pop with apt-get download (${said}). The Debian archive must be ` +
          `reachable once: the unpacked packages are then kept in ${root}.`,
        { cause: err },
      );
    }
    const debs = fs.readdirSync(work).filter((f) => f.endsWith('.deb'));
    const version: Partial<CourierInstall['version']> = {};
    const tree = path.join(work, 'root');
    for (const deb of debs.map((f) => path.join(work, f))) {
      const pkg = debField(deb, 'Package');
      // The programs link against courier-base's libraries: the versions must be the ones apt pairs.
      if (!debField(deb, 'Depends').includes(`courier-base (= ${base})`))
        throw new Error(
          `${pkg} from apt wants another courier-base than the installed ${base}: run apt-get update && apt-get install courier-base`,
        );
      execFileSync('dpkg-deb', ['-x', deb, tree]);
      if (pkg === 'courier-imap') version.imap = debField(deb, 'Version');
      if (pkg === 'courier-pop') version.pop3 = debField(deb, 'Version');
    }
    if (!version.imap || !version.pop3 || !hasTree(tree))
      throw new Error(`apt-get download gave ${debs.join(', ')}: courier-imap or courier-pop is missing`);
    fs.writeFileSync(path.join(tree, 'versions.json'), JSON.stringify(version));
    fs.mkdirSync(path.dirname(root), { recursive: true });
    try {
      fs.renameSync(tree, root);
    } catch (err) {
      // Another run unpacked the same version at the same moment: theirs is as good.
      if (!hasTree(root)) throw err;
    }
    return { root, version: version as CourierInstall['version'] };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The harness certificates (makeCertificates), and the key and the certificate in one file, as couriertls wants. */
async function makeCourierCertificates(tlsDir: string): Promise<void> {
  await makeCertificates(tlsDir, { key: 'ec', caName: 'Tributary Courier Test CA' });
  const p = (f: string) => path.join(tlsDir, f);
  const both = Buffer.concat([fs.readFileSync(p('key.pem')), fs.readFileSync(p('cert.pem'))]);
  fs.writeFileSync(p('server.pem'), both, { mode: 0o600 });
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The environment file of one listener: the package's own settings (as its init script reads them), then ours.
 * Sourced with `set -a` by the run script inside the namespace, where /etc/courier is the private copy.
 */
function envFile(kind: 'imap' | 'imaps' | 'pop3' | 'pop3s', dir: string): string {
  const imap = kind.startsWith('imap');
  const configs = imap ? ['imapd', 'imapd-ssl'] : ['pop3d', 'pop3d-ssl'];
  const lines = [
    ...configs.map((c) => `. /etc/courier/${c}`),
    'ADDRESS=127.0.0.1',
    // Tests run in parallel from one address; Debian's POP3 default of 4 per IP would refuse them.
    'MAXDAEMONS=200',
    'MAXPERIP=200',
    `COURIERTLS=${COURIERTLS}`,
    `TLS_CERTFILE=${shellQuote(path.join(dir, 'tls', 'server.pem'))}`,
    // Debian's dhparams.pem lives in the real /etc/courier; ECDHE needs none. No session cache file either.
    'TLS_DHPARAMS=',
    'TLS_CACHEFILE=',
  ];
  if (imap) {
    // As /usr/lib/courier/imapd{,-ssl} start: STARTTLS per IMAPDSTARTTLS, IMAP_TLS on the implicit port, the
    // memory limit.
    lines.push('IMAP_STARTTLS=$IMAPDSTARTTLS', 'IMAP_SHAREDINDEXFILE=', 'ulimit -v $IMAP_ULIMITD');
    if (kind === 'imaps') lines.push('IMAP_TLS=1');
  } else if (kind === 'pop3s') {
    lines.push('POP3_TLS=1', 'POP3_STARTTLS=NO', 'POP3_TLS_REQUIRED=0');
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The run script: PID 1 of a private mount and PID namespace. Courier-authlib's socket
 * (/run/courier/authdaemon/socket) and its userdb (/etc/courier/userdb.dat) are compiled-in paths, so our own
 * directories are bind-mounted over /etc/courier and /run/courier for this instance alone: the system's, and
 * other test runs', are untouched. When PID 1 exits (on SIGTERM, or when `unshare --kill-child` dies) the kernel
 * kills everything in the namespace, couriertcpd included (it makes itself a process-group leader, so a group
 * signal would miss it).
 */
function runScript(dir: string, info: CourierInfo): string {
  const q = shellQuote;
  const bin = (f: string) => q(path.join(dir, 'bin', path.basename(f)));
  const tcpd = `${COURIERTCPD} -address=127.0.0.1 -maxprocs=200 -maxperip=200 -nodnslookup -noidentlookup`;
  const tls = `${COURIERTLS} -server -tcpd`;
  const imap = `${bin(SERVER_FILES.imapLogin)} ${bin(SERVER_FILES.imapd)} Maildir`;
  const pop3 = `${bin(SERVER_FILES.pop3Login)} ${bin(SERVER_FILES.pop3d)} Maildir`;
  const serve = (kind: keyof CourierInfo['ports'], command: string) =>
    `env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin /bin/sh -c 'set -a; . "$0"; exec "$@"' ${q(path.join(dir, 'env', kind))} ` +
    `${tcpd} ${info.ports[kind]} ${command} >>${q(path.join(dir, 'log', `${kind}.log`))} 2>&1 &`;
  return `#!/bin/sh
# Generated by the Tributary test harness: a private Courier on 127.0.0.1 (see test/support/courier.ts).
trap 'exit 0' TERM INT HUP
mount --bind ${q(path.join(dir, 'etc'))} /etc/courier || exit 97
mount --bind ${q(path.join(dir, 'run'))} /run/courier || exit 97
cd /
(set -a; . /etc/courier/authdaemonrc; exec ${AUTHDAEMOND}) >>${q(path.join(dir, 'log', 'authdaemond.log'))} 2>&1 &
${serve('imap', imap)}
${serve('imaps', `${tls} ${imap}`)}
${serve('pop3', pop3)}
${serve('pop3s', `${tls} ${pop3}`)}
wait
exit 1
`;
}

/** A private Courier-IMAP and Courier POP3 on loopback: own authdaemon, userdb, Maildirs and TLS certificate. */
export async function startCourier(dir: string): Promise<{ info: CourierInfo; stop: () => Promise<void> }> {
  if (process.getuid?.() !== 0)
    throw new Error(
      'the Courier harness needs root: it runs Courier in a private mount namespace (unshare -m)',
    );
  const install = ensureCourier();
  for (const d of ['bin', 'etc', 'run/authdaemon', 'data', 'env', 'log'])
    fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.chmodSync(dir, 0o755); // the mail uid must traverse it
  fs.chmodSync(path.join(dir, 'data'), 0o755);
  // imapd and courierpop3d are exec'd after the switch to the mail uid, which cannot enter a cache under /root.
  for (const f of [SERVER_FILES.imapLogin, SERVER_FILES.imapd, SERVER_FILES.pop3Login, SERVER_FILES.pop3d])
    fs.copyFileSync(path.join(install.root, f), path.join(dir, 'bin', path.basename(f)));
  // The mount points: the package creates them, a container without systemd-tmpfiles may lack /run/courier.
  for (const p of ['/etc/courier', '/run/courier']) fs.mkdirSync(p, { recursive: true });
  const certificates = makeCourierCertificates(path.join(dir, 'tls'));
  const [imap, imaps, pop3, pop3s] = await freePorts(4);
  const info: CourierInfo = {
    dir,
    host: '127.0.0.1',
    servername: 'localhost',
    ports: { imap: imap!, imaps: imaps!, pop3: pop3!, pop3s: pop3s! },
    caFile: path.join(dir, 'tls', 'ca.pem'),
    userdbDir: path.join(dir, 'etc', 'userdb'),
    dataDir: path.join(dir, 'data'),
    uid: 8,
    gid: 8,
    version: install.version,
  };
  const etc = path.join(dir, 'etc');
  for (const f of [
    SERVER_FILES.imapdConfig,
    SERVER_FILES.imapdSslConfig,
    SERVER_FILES.pop3dConfig,
    SERVER_FILES.pop3dSslConfig,
  ])
    fs.copyFileSync(path.join(install.root, f), path.join(etc, path.basename(f)));
  // DEBUG_LOGIN=1 logs logins but not passwords.
  fs.writeFileSync(
    path.join(etc, 'authdaemonrc'),
    'authmodulelist="authuserdb"\nauthmodulelistorig="authuserdb"\ndaemons=3\nauthdaemonvar=/run/courier/authdaemon\nDEBUG_LOGIN=1\nDEFAULTOPTIONS=""\nLOGGEROPTS=""\n',
  );
  fs.mkdirSync(info.userdbDir, { mode: 0o700 });
  fs.chmodSync(info.userdbDir, 0o700); // makeuserdb refuses a userdb that group or others can read
  await run(MAKEUSERDB, ['-f', info.userdbDir]); // an empty userdb.dat, so authuserdb finds one
  for (const kind of ['imap', 'imaps', 'pop3', 'pop3s'] as const)
    fs.writeFileSync(path.join(dir, 'env', kind), envFile(kind, dir));
  const script = path.join(dir, 'run.sh');
  fs.writeFileSync(script, runScript(dir, info), { mode: 0o755 });
  await certificates;

  const { child, exited } = await startServerProcess(
    'unshare',
    ['--mount', '--pid', '--fork', '--kill-child', '--propagation', 'private', '/bin/sh', script],
    {
      name: "Courier's namespace",
      outputFile: path.join(dir, 'log', 'run.stderr'),
      logs: `${dir}/log`,
      ports: Object.values(info.ports),
    },
  );
  const socket = path.join(dir, 'run', 'authdaemon', 'socket');
  for (const deadline = Date.now() + 15000; !fs.existsSync(socket);) {
    const exitReason = exited();
    if (exitReason) throw new Error(exitReason);
    if (Date.now() > deadline) throw new Error(`authdaemond made no socket; see ${dir}/log/authdaemond.log`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { info, stop: () => stopChild(child) };
}

let counter = 0;
let lastMicros = 0;

/**
 * Adds a user with its own empty Maildir, optionally with a storage quota: one userdb file, then `makeuserdb -f` (authdaemond sees the new
 * userdb.dat at the next login; makeuserdb locks against concurrent runs).
 */
export function addCourierUser(
  info: CourierInfo,
  prefix = 'c',
  options: { password?: string; quotaBytes?: number } = {},
): CourierUser {
  const name = `${prefix}${process.pid}x${++counter}${randomBytes(3).toString('hex')}`;
  const pass = options.password ?? `pw-${randomBytes(6).toString('hex')}`;
  const home = path.join(info.dataDir, name);
  const maildir = path.join(home, 'Maildir');
  for (const sub of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(maildir, sub), { recursive: true });
  for (const p of [home, maildir, ...['cur', 'new', 'tmp'].map((s) => path.join(maildir, s))])
    fs.chownSync(p, info.uid, info.gid);
  if (options.quotaBytes !== undefined) {
    // Maildir++ quota: the limit on the first line of maildirsize, then one `<bytes> <count>` line per change,
    // appended by whoever delivers or deletes (deliverToCourier, Courier itself).
    const sizeFile = path.join(maildir, 'maildirsize');
    fs.writeFileSync(sizeFile, `${options.quotaBytes}S\n`, { mode: 0o644 });
    fs.chownSync(sizeFile, info.uid, info.gid);
  }
  const hash = `{SHA256}${createHash('sha256').update(pass).digest('base64')}`;
  fs.writeFileSync(
    path.join(info.userdbDir, name),
    // userdb's `quota` is a Maildir++ quota (`<bytes>S`), which Courier keeps in the Maildir's maildirsize file.
    `${name}\tuid=${info.uid}|gid=${info.gid}|home=${home}|mail=${maildir}|systempw=${hash}` +
      `${options.quotaBytes === undefined ? '' : `|quota=${options.quotaBytes}S`}\n`,
    { mode: 0o600 },
  );
  execFileSync(MAKEUSERDB, ['-f', info.userdbDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { name, password: pass, home, maildir };
}

/**
 * Delivers a message into the user's Maildir as Courier's own delivery agents (deliverquota, maildrop) do:
 * LF line ends on disk. Courier serves every LF of a file as CRLF and treats a CR as an ordinary byte, so a file
 * stored with CRLF would be served with CR CR LF. `verbatim` writes the bytes as they are (to measure that).
 * `folder` is a Maildir++ folder such as `.Archive`, or '' for INBOX.
 */
export function deliverToCourier(
  info: CourierInfo,
  user: CourierUser,
  message: Buffer | string,
  options: { folder?: string; verbatim?: boolean } = {},
): string {
  const raw = Buffer.isBuffer(message) ? message : Buffer.from(message, 'utf8');
  const bytes = options.verbatim ? raw : crlfToLf(raw);
  const dir = path.join(user.maildir, options.folder ?? '');
  for (const sub of ['', 'cur', 'new', 'tmp']) {
    const p = path.join(dir, sub);
    if (!fs.existsSync(p)) {
      fs.mkdirSync(p, { recursive: true });
      fs.chownSync(p, info.uid, info.gid);
    }
  }
  // Courier numbers new mail in file-name order: seconds, then zero-padded microseconds and a counter keep
  // that order the delivery order (a real MDA's unpadded M<usec> does not, within one second).
  lastMicros = Math.max(Date.now() * 1000, lastMicros + 1);
  const [seconds, micros] = [Math.floor(lastMicros / 1e6), lastMicros % 1e6];
  const base = `${seconds}.M${String(micros).padStart(6, '0')}P${process.pid}Q${++counter}.tributary-test`;
  const tmp = path.join(dir, 'tmp', base);
  fs.writeFileSync(tmp, bytes);
  fs.chownSync(tmp, info.uid, info.gid);
  const final = path.join(dir, 'new', base);
  fs.renameSync(tmp, final);
  // As deliverquota does: the message counts against a Maildir++ quota (GETQUOTAROOT reads this sum).
  const sizeFile = path.join(user.maildir, 'maildirsize');
  if (fs.existsSync(sizeFile)) fs.appendFileSync(sizeFile, `${bytes.length} 1\n`);
  return final;
}

/** Every CRLF as LF; a lone CR or LF stays. */
export function crlfToLf(b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(b.length);
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0d && b[i + 1] === 0x0a) continue;
    out[n++] = b[i]!;
  }
  return out.subarray(0, n);
}
