import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfiguredCredentials } from '../../../functions/adapters/secrets/credentials';
import { maildirName, mboxEntry } from '../../../functions/cli/main';
import { rawObjectKey } from '../../../functions/core/sync';
import type { Source } from '../../../functions/core/model';
import { childEnv } from '../../../functions/local/emulators';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-files-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const source = { id: 'work' } as Source;

function secretFile(name: string, mode: number): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, 'hunter2\n');
  fs.chmodSync(file, mode);
  return file;
}

describe('a secret file', () => {
  it.each([
    [0o644, 'read'],
    [0o640, 'read'],
    [0o604, 'read'],
    [0o620, 'changed'],
  ])(
    'with mode %s is refused: others can %s it; the message names the file and the fix',
    async (mode, verb) => {
      const file = secretFile(`s-${mode.toString(8)}`, mode);
      const credentials = new ConfiguredCredentials(new Map([['work', { file }]]));
      await expect(credentials.password(source)).rejects.toMatchObject({
        code: 'SECRET_MISSING',
        message: `source work: the secret file ${file} can be ${verb} by other users (mode 0${mode.toString(8)}), so it is not used: run "chmod 600 ${file}"`,
      });
    },
  );

  it.each([0o600, 0o400])('with mode %o is used', async (mode) => {
    const file = secretFile(`ok-${mode.toString(8)}`, mode);
    const credentials = new ConfiguredCredentials(new Map([['work', { file }]]));
    await expect(credentials.password(source)).resolves.toBe('hunter2');
  });
});

describe('the servers of the local store', () => {
  it('get PATH, Java and locale variables, never passwords or AWS credentials', () => {
    const env = childEnv(
      { JAVA_TOOL_OPTIONS: '-Xmx64m' },
      {
        PATH: '/usr/bin',
        JAVA_HOME: '/opt/jdk',
        LANG: 'C.UTF-8',
        WORK_MAIL_PASSWORD: 'hunter2',
        AWS_ACCESS_KEY_ID: 'AKIA...',
        AWS_SECRET_ACCESS_KEY: 'secret',
        NODE_OPTIONS: '--require ./x.js',
      },
    );
    expect(env).toEqual({
      PATH: '/usr/bin',
      JAVA_HOME: '/opt/jdk',
      LANG: 'C.UTF-8',
      JAVA_TOOL_OPTIONS: '-Xmx64m',
    });
  });
});

describe('export', () => {
  const record = {
    fetchedAt: '2026-11-02T10:00:00.500Z',
    metadata: { from: { address: 'ann@example.com' } },
  };

  it('names twins apart: same bytes (one shared object), same second, different upstream identities', () => {
    const a = { fetchedAt: record.fetchedAt, seen: false, identity: 'imap#INBOX#7#0000000001' };
    const b = { ...a, identity: 'imap#INBOX#7#0000000002' };
    const [na, nb] = [maildirName('work', a), maildirName('work', b)];
    expect(na).not.toBe(nb);
    const hash = path.basename(rawObjectKey('work', a.identity), '.eml');
    expect(na).toBe(`1793613600.work_${hash}.tributary:2,`);
  });

  it.each([
    ['CRLF', '\r\n'],
    ['LF', '\n'],
  ])('mboxrd with a %s message: its From_ line and blank line end like its lines', (_name, eol) => {
    const raw = Buffer.from(
      ['Subject: x', '', 'From me', '>From you', 'From', 'end', ''].join(eol),
      'latin1',
    );
    const entry = mboxEntry(record as never, raw).toString('latin1');
    expect(entry).toBe(
      [
        'From ann@example.com Mon Nov 02 10:00:00 2026',
        'Subject: x',
        '',
        '>From me',
        '>>From you',
        'From',
        'end',
        '',
        '',
      ].join(eol),
    );
  });

  it('ends a message without a final line end with CRLF', () => {
    expect(mboxEntry(record as never, Buffer.from('Subject: x')).toString('latin1')).toBe(
      'From ann@example.com Mon Nov 02 10:00:00 2026\r\nSubject: x\r\n\r\n',
    );
  });
});
