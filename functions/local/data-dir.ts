import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../core/errors';

/**
 * The local store's data folder: it holds every stored message and the whole index, so it is this user's alone
 * (0700, files 0600), and one process at a time owns it (see the lock in emulators.ts). This file knows the
 * folder's layout, its mode, and the record of who owns it (`owner.json`, read by a second command for its
 * messages and to find servers a killed command left behind).
 */

/** What `prepareDataDir` did that the user should hear about. */
export type DataDirNotes = string[];

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

/**
 * Creates the folder 0700, or checks an existing one. An existing folder open to others is tightened to 0700
 * rather than refused: earlier versions created it with the default umask (0755 on most systems), so a loose mode
 * is almost never a choice someone made, and refusing would stop every existing installation at its next sync for
 * no gain: chmod 700 is the only fix there is, so we apply it and say so. With the folder 0700 the files an earlier
 * version left inside (0644) cannot be reached by others either. A folder that belongs to another user is refused:
 * we cannot tighten it, and our mail does not belong in it.
 */
export function prepareDataDir(dir: string, subdirs: string[] = ['dynamodb', 's3']): DataDirNotes {
  const notes: DataDirNotes = [];
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (!stat) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(dir, 0o700); // whatever the umask
  } else {
    if (!stat.isDirectory())
      throw new ConfigError(`store.dataDir: ${dir} is not a folder: point "dataDir" at a folder`);
    const uid = process.getuid?.();
    if (uid !== undefined && stat.uid !== uid)
      throw new ConfigError(
        `store.dataDir: ${dir} belongs to another user (uid ${stat.uid}): the local store keeps your mail there, so it must be your own folder`,
      );
    if (stat.mode & 0o077) {
      fs.chmodSync(dir, 0o700);
      notes.push(
        `${dir} was open to other users (mode ${octal(stat.mode)}); it holds your mail, so it is now 0700 (yours only)`,
      );
    }
  }
  for (const sub of subdirs) fs.mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o700 });
  return notes;
}

/** The file the lock is taken on (flock(1), see emulators.ts); created 0600, never removed. */
export function lockFile(dir: string): string {
  const file = path.join(dir, 'lock');
  fs.closeSync(fs.openSync(file, 'a', 0o600));
  return file;
}

/** A process, told apart from a later one that got the same pid by its start time (Linux /proc). */
export interface ProcessRef {
  pid: number;
  /** Clock ticks since boot at which it started (field 22 of /proc/PID/stat); absent where there is no /proc. */
  start?: string;
}

export function processRef(pid: number): ProcessRef {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, start: fields[19] };
  } catch {
    return { pid };
  }
}

export function isRunning(ref: ProcessRef): boolean {
  try {
    process.kill(ref.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return ref.start === undefined || processRef(ref.pid).start === ref.start;
}

/** Who owns the folder: the CLI process, what it runs, and the processes of its servers. */
export interface FolderOwner extends ProcessRef {
  host: string;
  command: string;
  since: string;
  /** The process group of the servers (its leader is flock), and each server. */
  group?: ProcessRef;
  servers: Record<string, ProcessRef>;
  /** Set when it is stopping its servers (the lock is released once they are gone). */
  stopping?: boolean;
}

const ownerFile = (dir: string) => path.join(dir, 'owner.json');

/** Written by the lock holder only (after taking the lock, and when it stops), so never by two at once. */
export function writeOwner(dir: string, owner: FolderOwner): void {
  const tmp = `${ownerFile(dir)}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(owner) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, ownerFile(dir));
}

export function readOwner(dir: string): FolderOwner | undefined {
  try {
    return JSON.parse(fs.readFileSync(ownerFile(dir), 'utf8')) as FolderOwner;
  } catch {
    return undefined;
  }
}

export function describeOwner(owner: FolderOwner | undefined): string {
  if (!owner) return 'another process';
  const since = new Date(owner.since);
  return `pid ${owner.pid}${owner.host === os.hostname() ? '' : ` on ${owner.host}`} (tributary ${owner.command}, since ${Number.isNaN(since.getTime()) ? owner.since : since.toLocaleTimeString()}${owner.stopping ? ', stopping' : ''})`;
}

/**
 * The servers a command left running when it died without stopping them (its supervisor killed too, say): killed
 * here, only when the command is gone and each process is still the one recorded (same start time). Returns what
 * was killed.
 */
export function killOrphans(owner: FolderOwner): string[] {
  if (owner.host !== os.hostname() || isRunning(owner)) return [];
  const killed: string[] = [];
  const kill = (name: string, ref: ProcessRef, target: number) => {
    if (!isRunning(ref)) return;
    try {
      process.kill(target, 'SIGKILL');
      killed.push(`${name} (pid ${ref.pid})`);
    } catch {
      // gone meanwhile
    }
  };
  if (owner.group) kill('the server group', owner.group, -owner.group.pid);
  for (const [name, ref] of Object.entries(owner.servers)) kill(name, ref, ref.pid);
  return killed;
}
