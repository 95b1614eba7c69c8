import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { StorageError, TributaryError } from '../../core/errors';
import type { Bytes, RawMailStore } from '../../core/ports';

/** Object keys as the sync makes them (`raw/<source>/<40 hex>.eml`), and anything else of these characters. */
const KEY_CHARS = /^[A-Za-z0-9/_.-]+$/;
const KEY_MAX = 1024;
/** The sidecar beside each file: `<sha256 hex> <size>\n`. */
const SIDECAR = '.sha256';

/**
 * The key's path under `root`, or a StorageError. A key is relative, of [A-Za-z0-9/_.-] only, with no empty,
 * `.` or `..` segment, and no segment starting with a dot (temporary files do) or ending in `.sha256` (sidecars):
 * no key can name anything outside the store, nor a file the store keeps for itself.
 */
export function keyPath(root: string, key: string): string {
  const segments = key.split('/');
  const bad =
    key.length === 0 ||
    key.length > KEY_MAX ||
    !KEY_CHARS.test(key) ||
    segments.some((s) => s.length === 0 || s.startsWith('.') || s.endsWith(SIDECAR));
  if (bad) throw new StorageError(`not a valid object key: ${JSON.stringify(key.slice(0, 200))}`);
  return path.join(root, ...segments);
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** fsync of a folder, so a rename or a new entry in it survives a power cut; Windows cannot open folders. */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await fs.promises.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Raw messages as files under `<dataDir>/mail`, one per key (folders 0700, files 0600). A put writes a temporary
 * file in the final folder, fsyncs it, checks size and sha256 when the caller knows them, then renames it over the
 * final name and fsyncs the folder: the final name only ever holds a complete message, and once put returns the
 * message survives a power cut (the durability contract, rule 1). Overwriting is allowed: a retry replaces its own
 * orphan.
 *
 * The sha256 computed while writing is kept in a sidecar (`<file>.sha256`, `<hex> <size>`) for head(). The old
 * sidecar is removed before the new file is renamed in and the new one written after, and head() trusts a sidecar
 * only if its size is the file's: a crash in between leaves a file without a recorded sha256 (head() then gives
 * the size alone, which the port allows), never a sha256 of other bytes.
 */
export class FileRawMailStore implements RawMailStore {
  /**
   * Folders this store made or found and whose entry it fsynced in their parent, so a put does not mkdir and fsync
   * every segment again (one per source, mostly).
   */
  private readonly folders = new Set<string>();

  constructor(readonly root: string) {}

  async put(key: string, body: Bytes, info: { sha256?: string; size?: number }): Promise<void> {
    const file = keyPath(this.root, key);
    const dir = path.dirname(file);
    await this.ensureDir(dir);
    const temp = path.join(
      dir,
      `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
    );
    let handle: fs.promises.FileHandle | undefined;
    try {
      handle = await this.fs(`create ${key}`, async () => {
        try {
          return await fs.promises.open(temp, 'wx', 0o600);
        } catch (err) {
          // The folder went since this store saw it (removed by hand): make it again, once.
          if (errno(err) !== 'ENOENT') throw err;
          this.folders.clear();
          await this.ensureDir(dir);
          return await fs.promises.open(temp, 'wx', 0o600);
        }
      });
      const hash = createHash('sha256');
      let size = 0;
      // Errors of the body (the upstream connection, the time budget) are not storage failures: they pass as
      // they are, and the temporary file goes.
      for await (const chunk of body) {
        hash.update(chunk);
        size += chunk.byteLength;
        let written = 0;
        while (written < chunk.byteLength) {
          const h = handle;
          const { bytesWritten } = await this.fs(`write ${key}`, () =>
            h.write(chunk, written, chunk.byteLength - written),
          );
          written += bytesWritten;
        }
      }
      const h = handle;
      await this.fs(`write ${key}`, () => h.sync());
      await this.fs(`write ${key}`, () => h.close());
      handle = undefined;
      const sha256 = hash.digest('hex');
      if (info.size !== undefined && info.size !== size) {
        throw new StorageError(`stored ${size} bytes for ${key}, expected ${info.size}: not kept`);
      }
      if (info.sha256 !== undefined && info.sha256.toLowerCase() !== sha256) {
        throw new StorageError(`the bytes stored for ${key} do not have the expected sha256: not kept`);
      }
      await this.fs(`store ${key}`, async () => {
        await fs.promises.rm(`${file}${SIDECAR}`, { force: true });
        await fs.promises.rename(temp, file);
        await writeSidecar(`${file}${SIDECAR}`, `${sha256} ${size}\n`);
        await syncDir(dir);
      });
    } catch (err) {
      if (handle) await handle.close().catch(() => undefined);
      await fs.promises.rm(temp, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  async get(key: string): Promise<Bytes> {
    const file = keyPath(this.root, key);
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(file, 'r');
    } catch (err) {
      throw new StorageError(
        errno(err) === 'ENOENT'
          ? `object ${key} is missing from the local store`
          : `could not read ${key}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return readAll(handle.createReadStream(), key);
  }

  async head(key: string): Promise<{ size: number; sha256?: string } | undefined> {
    const file = keyPath(this.root, key);
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(file);
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw new StorageError(`could not look up ${key}: ${(err as Error).message}`, { cause: err });
    }
    if (!stat.isFile()) throw new StorageError(`object ${key} is not a file`);
    let sidecar: string | undefined;
    try {
      sidecar = await fs.promises.readFile(`${file}${SIDECAR}`, 'utf8');
    } catch (err) {
      if (errno(err) !== 'ENOENT')
        throw new StorageError(`could not look up ${key}: ${(err as Error).message}`, { cause: err });
    }
    const m = sidecar === undefined ? null : /^([0-9a-f]{64}) (\d+)\n$/.exec(sidecar);
    return m && Number(m[2]) === stat.size ? { size: stat.size, sha256: m[1]! } : { size: stat.size };
  }

  /** Idempotent. Not fsynced: a delete lost to a crash leaves an orphan, which is harmless. */
  async delete(key: string): Promise<void> {
    const file = keyPath(this.root, key);
    await this.fs(`delete ${key}`, async () => {
      await fs.promises.rm(file, { force: true });
      await fs.promises.rm(`${file}${SIDECAR}`, { force: true });
    });
  }

  /**
   * Creates the folders of a key 0700, one by one, and fsyncs each one's parent, once per folder and process.
   * The parent is fsynced also when the folder was there already: another put (of this process or another) may
   * have made it a moment ago and still be fsyncing, and a put must not return before the folder holding its file
   * is on disk.
   */
  private async ensureDir(dir: string): Promise<void> {
    if (this.folders.has(dir)) return;
    const relative = path.relative(this.root, dir);
    let at = this.root;
    for (const segment of ['', ...relative.split(path.sep).filter(Boolean)]) {
      at = segment ? path.join(at, segment) : at;
      if (this.folders.has(at)) continue;
      const current = at;
      await this.fs(`create the folder ${current}`, async () => {
        try {
          await fs.promises.mkdir(current, { mode: 0o700 });
        } catch (err) {
          if (errno(err) === 'EEXIST') return;
          throw err;
        }
        await fs.promises.chmod(current, 0o700); // whatever the umask
      });
      await this.fs(`create the folder ${current}`, () => syncDir(path.dirname(current)));
      this.folders.add(current);
    }
  }

  private async fs<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof TributaryError) throw err;
      throw new StorageError(`could not ${what} in the local store: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}

async function writeSidecar(file: string, text: string): Promise<void> {
  const temp = `${path.join(path.dirname(file), `.${path.basename(file)}`)}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await fs.promises.open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.promises.rename(temp, file);
}

/** A file's bytes as a stream; a read that fails half way is a storage failure too. */
async function* readAll(stream: fs.ReadStream, key: string): Bytes {
  try {
    for await (const chunk of stream) yield chunk as Uint8Array;
  } catch (err) {
    throw new StorageError(`could not read ${key}: ${(err as Error).message}`, { cause: err });
  } finally {
    stream.destroy();
  }
}
