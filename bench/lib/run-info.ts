import { execFileSync } from 'node:child_process';
import os from 'node:os';

/** The machine a report was measured on, in one line. */
export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} x ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${os.release()}, node ${process.version}`;
}

/** The commit a report measured (12 hex digits) and whether tracked files had changes; undefined outside git. */
export function commitOf(): { head: string; dirty: boolean } | undefined {
  try {
    const head = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      encoding: 'utf8',
    }).trim();
    return { head, dirty: dirty !== '' };
  } catch {
    return undefined;
  }
}
