import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FileRawMailStore, keyPath } from '../../../functions/adapters/files/raw-mail-store';
import { StorageError } from '../../../functions/core/errors';
import { bytesOf, collect, dataDir, mode } from './helpers';

/** Raw messages as files: what a key may name, what a put leaves behind when it fails or the process dies. */

const KEY = `raw/src-1/${'a1'.repeat(20)}.eml`;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** Every file and folder under `root`, relative, sorted. */
function tree(root: string): string[] {
  return (fs.readdirSync(root, { recursive: true }) as string[]).sort();
}

describe('object keys', () => {
  it('name a file under the store for keys as the sync makes them', () => {
    expect(keyPath('/store', KEY)).toBe(path.join('/store', 'raw', 'src-1', `${'a1'.repeat(20)}.eml`));
  });

  it.each([
    ['empty', ''],
    ['absolute', '/etc/passwd'],
    ['parent', 'raw/../../x.eml'],
    ['dot segment', 'raw/./x.eml'],
    ['empty segment', 'raw//x.eml'],
    ['trailing slash', 'raw/x/'],
    ['backslash', 'raw\\x.eml'],
    ['space', 'raw/a b.eml'],
    ['NUL', 'raw/a\0.eml'],
    ['non-ASCII', 'raw/é.eml'],
    ['hidden (a temporary file)', 'raw/.x.eml.tmp'],
    ['a sidecar', `${KEY}.sha256`],
    ['too long', `raw/${'a'.repeat(1100)}`],
  ])('refuse a key that is %s, for every operation', async (_what, key) => {
    const store = new FileRawMailStore(path.join(dataDir(), 'mail'));
    await expect(store.put(key, bytesOf('x'), {})).rejects.toBeInstanceOf(StorageError);
    await expect(store.get(key)).rejects.toBeInstanceOf(StorageError);
    await expect(store.head(key)).rejects.toBeInstanceOf(StorageError);
    await expect(store.delete(key)).rejects.toBeInstanceOf(StorageError);
  });
});

describe('FileRawMailStore', () => {
  it('stores 0600 files in 0700 folders, streams them back, records their sha256, deletes idempotently', async () => {
    const root = path.join(dataDir(), 'mail');
    const store = new FileRawMailStore(root);
    const text = 'Subject: hi\r\n\r\nbody\r\n';
    await store.put(KEY, bytesOf(text.slice(0, 5), text.slice(5)), {});
    const file = keyPath(root, KEY);
    expect([root, path.join(root, 'raw'), path.dirname(file)].map(mode)).toEqual([0o700, 0o700, 0o700]);
    expect(mode(file)).toBe(0o600);
    expect(mode(`${file}.sha256`)).toBe(0o600);
    expect(await collect(await store.get(KEY))).toBe(text);
    expect(await store.head(KEY)).toEqual({ size: text.length, sha256: sha(text) });
    // A retry overwrites its own orphan.
    await store.put(KEY, bytesOf('again'), { size: 5, sha256: sha('again') });
    expect(await store.head(KEY)).toEqual({ size: 5, sha256: sha('again') });

    await store.delete(KEY);
    await store.delete(KEY);
    expect(await store.head(KEY)).toBeUndefined();
    await expect(store.get(KEY)).rejects.toThrow(StorageError);
    expect(tree(root)).toEqual(['raw', path.join('raw', 'src-1')]);
  });

  it.each([
    ['size', { size: 999 }],
    ['sha256', { sha256: 'f'.repeat(64) }],
  ])(
    'keeps neither the bytes nor a temporary file when the %s differs, and the previous copy stays',
    async (_what, info) => {
      const root = path.join(dataDir(), 'mail');
      const store = new FileRawMailStore(root);
      await store.put(KEY, bytesOf('previous'), {});
      await expect(store.put(KEY, bytesOf('other bytes'), info)).rejects.toBeInstanceOf(StorageError);
      expect(await collect(await store.get(KEY))).toBe('previous');
      expect(await store.head(KEY)).toEqual({ size: 8, sha256: sha('previous') });
      expect(tree(path.dirname(keyPath(root, KEY)))).toEqual([
        path.basename(KEY),
        `${path.basename(KEY)}.sha256`,
      ]);
    },
  );

  it('makes a folder again when it was removed by hand after the store saw it', async () => {
    const root = path.join(dataDir(), 'mail');
    const store = new FileRawMailStore(root);
    await store.put(KEY, bytesOf('first'), {});
    fs.rmSync(path.join(root, 'raw'), { recursive: true });
    const other = `raw/src-1/${'b2'.repeat(20)}.eml`;
    await store.put(other, bytesOf('second'), { sha256: sha('second') });
    expect(await collect(await store.get(other))).toBe('second');
    expect(mode(path.join(root, 'raw', 'src-1'))).toBe(0o700);
  });

  it('returns from a put only once the new folder of its file is on disk, also when another put made the folder', async () => {
    const root = path.join(dataDir(), 'mail');
    const events: string[] = [];
    const open = fs.promises.open.bind(fs.promises);
    let held = false;
    // Every fsync of a folder is recorded once done; the first fsync of raw/ (the entry of the new raw/src-1) is
    // held back 300 ms, so a put that does not wait for it returns first.
    const spy = jest.spyOn(fs.promises, 'open').mockImplementation(async (file, flags, mode) => {
      const handle = await open(file, flags, mode);
      const name = path.relative(root, String(file));
      if (flags === 'r' && fs.statSync(file).isDirectory()) {
        const sync = handle.sync.bind(handle);
        const hold = name === 'raw' && !held;
        held ||= hold;
        handle.sync = async () => {
          if (hold) await new Promise((resolve) => setTimeout(resolve, 300));
          await sync();
          events.push(`fsync ${name}`);
        };
      }
      return handle;
    });
    try {
      const store = new FileRawMailStore(root);
      const keys = [`raw/src-1/${'b3'.repeat(20)}.eml`, `raw/src-1/${'c3'.repeat(20)}.eml`];
      await Promise.all(
        keys.map(async (key) => {
          await store.put(key, bytesOf(key), {});
          events.push(`put ${key}`);
        }),
      );
      expect(held).toBe(true);
      for (const key of keys)
        expect(events.indexOf(`put ${key}`)).toBeGreaterThan(events.indexOf('fsync raw'));
    } finally {
      spy.mockRestore();
    }
  });

  it('passes a failing body on as it is and leaves no file behind', async () => {
    const root = path.join(dataDir(), 'mail');
    const store = new FileRawMailStore(root);
    async function* broken(): AsyncIterable<Uint8Array> {
      yield Buffer.from('half a mess');
      throw new Error('connection reset');
    }
    const error = await store.put(KEY, broken(), {}).catch((e: unknown) => e);
    expect(error).not.toBeInstanceOf(StorageError);
    expect((error as Error).message).toBe('connection reset');
    expect(tree(path.dirname(keyPath(root, KEY)))).toEqual([]);
  });

  it('ignores a recorded sha256 whose size is not the file size (a sidecar from other bytes)', async () => {
    const root = path.join(dataDir(), 'mail');
    const store = new FileRawMailStore(root);
    await store.put(KEY, bytesOf('12345'), {});
    fs.writeFileSync(`${keyPath(root, KEY)}.sha256`, `${sha('123456')} 6\n`);
    expect(await store.head(KEY)).toEqual({ size: 5 });
  });

  it('never shows part of a message under its final name when the process dies in the middle of a put', async () => {
    const root = path.join(dataDir(), 'mail');
    const store = new FileRawMailStore(root);
    await store.put(KEY, bytesOf('the copy stored before'), {});
    // A child writes 1 MB of the message, then kills itself while the rest is due.
    const script = `
      const { FileRawMailStore } = require(${JSON.stringify(path.resolve(__dirname, '../../../functions/adapters/files/raw-mail-store.ts'))});
      const store = new FileRawMailStore(${JSON.stringify(root)});
      async function* body() {
        for (let i = 0; i < 16; i++) yield Buffer.alloc(65536, 120);
        process.stdout.write('written\\n');
        await new Promise((r) => setTimeout(r, 200));
        process.kill(process.pid, 'SIGKILL');
        await new Promise(() => {});
      }
      store.put(${JSON.stringify(KEY)}, body(), {});
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_c, s) => resolve(s)),
    );
    expect(signal).toBe('SIGKILL');
    expect(output).toBe('written\n');

    expect(await collect(await store.get(KEY))).toBe('the copy stored before');
    expect(await store.head(KEY)).toEqual({ size: 22, sha256: sha('the copy stored before') });
    // What the dead put wrote is a hidden temporary file no key can name: an orphan, never the message.
    const leftovers = tree(path.dirname(keyPath(root, KEY))).filter((f) => f.startsWith('.'));
    expect(leftovers).toHaveLength(1);
    expect(fs.statSync(path.join(path.dirname(keyPath(root, KEY)), leftovers[0]!)).size).toBe(1 << 20);
    // A retry replaces the copy in full.
    await store.put(KEY, bytesOf('retried'), {});
    expect(await collect(await store.get(KEY))).toBe('retried');
  });
});
