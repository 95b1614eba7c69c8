import { createHash, randomBytes } from 'node:crypto';
import { StorageError } from '../../functions/core/errors';
import type { Bytes } from '../../functions/core/ports';
import { bodyOf, implementations, openFor, readAll } from './implementations';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A key as the sync makes them (rawObjectKey): under the source's prefix, of this test only. */
function newKey(): string {
  return `raw/contract-${randomBytes(5).toString('hex')}/${randomBytes(20).toString('hex')}.eml`;
}

/**
 * RawMailStore: the exact bytes at a key, as the sync writes them (in memory with their size and sha256, or
 * streamed without), read back, looked up and deleted.
 */
describe.each(implementations)('RawMailStore on $name', (impl) => {
  const store = openFor(impl);
  const raw = () => store().raw;
  const read = async (key: string) => readAll(await raw().get(key));

  it('gives back the exact bytes of a message written with its size and sha256, and heads it', async () => {
    const key = newKey();
    // Every byte value, CR/LF/NUL and a line with a lone dot included.
    const bytes = Buffer.concat([Buffer.from('Subject: x\r\n\r\n.\r\n..\r\n\0\r'), randomBytes(70_000)]);

    await raw().put(key, bodyOf(bytes, 4096), { size: bytes.length, sha256: sha256(bytes) });

    expect((await read(key)).equals(bytes)).toBe(true);
    expect(await raw().head(key)).toEqual({ size: bytes.length, sha256: sha256(bytes) });
  });

  it.each([
    ['streamed, size unknown (a big message)', false],
    ['in memory, with its size and sha256', true],
  ] as const)('round-trips a multi-MB body %s byte for byte', async (_how, known) => {
    const key = newKey();
    const bytes = randomBytes(6 * 1024 * 1024 + 321);
    await raw().put(key, bodyOf(bytes), known ? { size: bytes.length, sha256: sha256(bytes) } : {});

    const back = await read(key);

    expect(back.length).toBe(bytes.length);
    expect(sha256(back)).toBe(sha256(bytes));
    const head = await raw().head(key);
    expect(head?.size).toBe(bytes.length);
    if (known) expect(head?.sha256).toBe(sha256(bytes));
  });

  it('stores an empty body', async () => {
    const key = newKey();
    const empty = Buffer.alloc(0);
    await raw().put(key, bodyOf(empty), { size: 0, sha256: sha256(empty) });
    expect((await read(key)).length).toBe(0);
    expect(await raw().head(key)).toMatchObject({ size: 0 });
  });

  it('overwrites: a retry after a crash replaces its own orphan', async () => {
    const key = newKey();
    const first = randomBytes(50_000);
    const second = Buffer.from('the message, whole this time\r\n');
    await raw().put(key, bodyOf(first), { size: first.length, sha256: sha256(first) });
    await raw().put(key, bodyOf(second), { size: second.length, sha256: sha256(second) });
    expect((await read(key)).equals(second)).toBe(true);
    expect(await raw().head(key)).toEqual({ size: second.length, sha256: sha256(second) });
  });

  it('heads nothing at a key never written, and deletes idempotently', async () => {
    const key = newKey();
    expect(await raw().head(key)).toBeUndefined();
    await raw().delete(key);

    const bytes = randomBytes(1000);
    await raw().put(key, bodyOf(bytes), { size: bytes.length, sha256: sha256(bytes) });
    const neighbour = `${key}.other`;
    await raw().put(neighbour, bodyOf(bytes), { size: bytes.length });
    await raw().delete(key);
    await raw().delete(key);

    expect(await raw().head(key)).toBeUndefined();
    expect((await read(neighbour)).equals(bytes)).toBe(true);
  });

  it('fails a read of a missing key with a StorageError', async () => {
    const reading = (async () => readAll(await raw().get(newKey())))();
    await expect(reading).rejects.toBeInstanceOf(StorageError);
  });

  it('passes an error of the body stream on (the upstream failed, not the store)', async () => {
    const key = newKey();
    const bytes = randomBytes(200_000);
    async function* broken(): Bytes {
      yield bytes.subarray(0, 100_000);
      throw new Error('the upstream connection dropped');
    }
    const putting = raw().put(key, broken(), {});
    await expect(putting).rejects.toThrow('the upstream connection dropped');
    await expect(putting).rejects.not.toBeInstanceOf(StorageError);
  });
});
