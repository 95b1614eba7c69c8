import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The peer fetchers, by the command the bench runs, with the Debian package that ships each. */
export const PEER_TOOLS = {
  mbsync: 'isync',
  mpop: 'mpop',
  fetchmail: 'fetchmail',
  getmail: 'getmail6',
} as const;

export type PeerTool = keyof typeof PEER_TOOLS;

/** Where the tool's binary is, or undefined when it is not on PATH (nor in /usr/bin). */
export function findTool(tool: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/bin', '/usr/local/bin'];
  for (const dir of dirs) {
    const candidate = `${dir}/${tool}`;
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function missing(): PeerTool[] {
  return (Object.keys(PEER_TOOLS) as PeerTool[]).filter((tool) => !findTool(tool));
}

async function aptGet(args: string[]): Promise<void> {
  await run('apt-get', ['-o', 'DPkg::Lock::Timeout=300', ...args], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    maxBuffer: 64 * 1024 * 1024,
  });
}

function errorText(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr?.trim() || e.message || String(err)).split('\n').slice(-3).join(' / ');
}

async function install(): Promise<Record<string, string | undefined>> {
  const absent = missing();
  let failure: string | undefined;
  if (absent.length) {
    const packages = absent.map((tool) => PEER_TOOLS[tool]);
    const isRoot = process.getuid?.() === 0;
    if (!isRoot || !fs.existsSync('/usr/bin/apt-get')) {
      const what = `the Debian package${packages.length > 1 ? 's' : ''} ${packages.join(' ')}`;
      failure = `not installed, and the bench can install it only as root with apt-get (install ${what})`;
    } else {
      process.stderr.write(`[bench] installing ${packages.join(' ')} with apt-get...\n`);
      const installArgs = ['install', '-y', '-qq', '--no-install-recommends', ...packages];
      try {
        await aptGet(installArgs);
      } catch {
        // Most often a stale or absent package list: refresh it once and try again.
        try {
          await aptGet(['update', '-qq']);
          await aptGet(installArgs);
        } catch (err) {
          failure = `apt-get install ${packages.join(' ')} failed: ${errorText(err)}`;
        }
      }
    }
  }
  const result: Record<string, string | undefined> = {};
  for (const tool of Object.keys(PEER_TOOLS) as PeerTool[]) {
    if (findTool(tool)) result[tool] = undefined;
    else
      result[tool] =
        failure ?? `${tool} (package ${PEER_TOOLS[tool]}) is still missing after apt-get install`;
  }
  return result;
}

let pending: Promise<Record<string, string | undefined>> | undefined;

/**
 * Installs the Debian packages of the peer fetchers (isync, mpop, fetchmail, getmail6) when one is missing and
 * we are root with apt-get; once per process. Resolves, per tool (mbsync, mpop, fetchmail, getmail), to
 * undefined when it can run, or to why it cannot: a missing tool is reported, never faked.
 */
export function ensurePeerTools(): Promise<Record<string, string | undefined>> {
  pending ??= install();
  return pending;
}
