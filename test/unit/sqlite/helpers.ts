import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A fresh data folder (0700, as prepareDataDir makes it), removed after the test file. */
export function dataDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-sqlite-'));
  fs.chmodSync(dir, 0o700);
  made.push(dir);
  return dir;
}

const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

export function mode(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

export async function* bytesOf(...chunks: string[]): AsyncIterable<Uint8Array> {
  for (const chunk of chunks) yield Buffer.from(chunk);
}

export async function collect(body: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts).toString();
}
