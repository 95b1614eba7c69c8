import fs from 'node:fs';
import path from 'node:path';
import { bundle, type Lab } from '../lib/lab';
import type { Contender, Upstream } from '../lib/types';

/**
 * The raw ceilings: fetch the same bytes and store nothing. A bare TLS socket (one UID FETCH 1:*; POP3 with every
 * RETR pipelined) and imapflow (the library Tributary's IMAP adapter is built on).
 */
function ceiling(
  lab: Lab,
  name: string,
  protocol: 'imap' | 'pop3',
  script: string,
  versionOf: () => string,
): Contender {
  let built: Promise<string> | undefined;
  const out = (workDir: string) => path.join(workDir, 'result.json');
  return {
    name,
    protocol,
    noRepoll: true,
    unavailable: async () => undefined,
    version: async () => versionOf(),
    async reset(_upstream, workDir) {
      fs.rmSync(out(workDir), { force: true });
    },
    async command(upstream: Upstream, workDir: string) {
      built ??= bundle(
        path.join(__dirname, '..', 'children', script),
        path.join(lab.dir, 'build', `${script}.cjs`),
      );
      return {
        cmd: process.execPath,
        args: [await built],
        env: {
          BENCH_HOST: upstream.host,
          BENCH_PORT: String(protocol === 'imap' ? upstream.imapsPort : upstream.pop3sPort),
          BENCH_USER: upstream.user,
          BENCH_PASS: upstream.password,
          BENCH_CA: upstream.caFile,
          BENCH_OUT: out(workDir),
        },
      };
    },
    async delivered(workDir) {
      if (!fs.existsSync(out(workDir))) return { messages: 0, bytes: 0 };
      return JSON.parse(fs.readFileSync(out(workDir), 'utf8')) as { messages: number; bytes: number };
    },
  };
}

export function ceilingContenders(lab: Lab): Contender[] {
  const node = `node ${process.version}`;
  const imapflow = () => {
    const pkg = JSON.parse(fs.readFileSync(require.resolve('imapflow/package.json'), 'utf8')) as {
      version: string;
    };
    return `imapflow ${pkg.version} (${node})`;
  };
  return [
    ceiling(lab, 'raw TLS socket IMAP', 'imap', 'raw-imap.ts', () => node),
    ceiling(lab, 'raw TLS socket POP3', 'pop3', 'raw-pop3.ts', () => node),
    ceiling(lab, 'imapflow, no storing', 'imap', 'imapflow-fetch.ts', imapflow),
  ];
}
