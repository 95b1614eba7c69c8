import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AuditRecord, MessageRecord, SourceRunReport } from '../../../functions/core/model';

jest.mock('../../../functions/shared/runtime', () => ({
  openRuntime: jest.fn(),
  silentLogger: {
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: () => undefined,
  },
}));
jest.mock('../../../functions/cli/migrate', () => ({ runMigrate: jest.fn(async () => 0) }));

import { openRuntime } from '../../../functions/shared/runtime';
import { runMigrate } from '../../../functions/cli/migrate';
import {
  cliVersion,
  configFile,
  formatReport,
  inboxLine,
  main,
  nextPageCommand,
  type Io,
} from '../../../functions/cli/main';
import { displayWidth } from '../../../functions/cli/text-width';
import { COMMANDS } from '../../../functions/cli/help';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-cli-unit-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function writeConfig(file: string, sources: string[] = ['work', 'home']): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(
    file,
    JSON.stringify({
      store: { mode: 'local', dataDir: 'data' },
      sources: sources.map((id) => ({
        id,
        protocol: 'imap',
        host: 'mail.example.com',
        user: 'ann',
        secret: { env: 'PW' },
      })),
    }),
  );
  return file;
}
const config = writeConfig(path.join(dir, 'tributary.config.json'));

async function cli(args: string[], extra: Partial<Io> = {}) {
  let out = '';
  let err = '';
  const io: Io = {
    out: (t) => (out += t),
    err: (t) => (err += t),
    isTty: false,
    env: {},
    cwd: dir,
    ...extra,
  };
  const code = await main(args, io);
  return { code, out, err };
}

const runtimeMock = openRuntime as jest.MockedFunction<typeof openRuntime>;
beforeEach(() => fakeRuntime({}));
function fakeRuntime(index: Record<string, unknown>) {
  const runtime = {
    index,
    notes: [],
    close: async () => undefined,
    deps: {},
    connector: {},
    store: {},
    sources: [],
  };
  runtimeMock.mockResolvedValue(runtime as never);
  return runtime;
}

describe('--version', () => {
  it('prints "tributary <version>" from package.json, with -V too, and ignores the rest', async () => {
    const { version } = JSON.parse(
      fs.readFileSync(path.join(__dirname, '../../../package.json'), 'utf8'),
    ) as { version: string };
    expect(cliVersion()).toBe(version);
    for (const args of [['--version'], ['-V'], ['sync', '--version']]) {
      expect(await cli(args)).toEqual({ code: 0, out: `tributary ${version}\n`, err: '' });
    }
  });
});

describe('help', () => {
  it('the top-level help lists every command on one line and the exit codes', async () => {
    const res = await cli(['help']);
    expect(res.code).toBe(0);
    for (const c of COMMANDS) expect(res.out).toMatch(new RegExp(`^  ${c.name}( [A-Z\\[]\\S*)? +\\S`, 'm'));
    expect(res.out).toMatch(/^EXIT CODES$/m);
    for (const code of ['0', '1', '2', '130']) expect(res.out).toMatch(new RegExp(`^  ${code} +\\S`, 'm'));
    expect((await cli(['--help'])).out).toBe(res.out);
    expect((await cli(['-h'])).out).toBe(res.out);
  });

  it('no command: the help on stderr, exit 2', async () => {
    const res = await cli([]);
    expect(res.code).toBe(2);
    expect(res.out).toBe('');
    expect(res.err).toContain('COMMANDS');
  });

  it.each(COMMANDS.filter((c) => c.name !== 'help').map((c) => [c.name]))(
    '"help %s" and "%s --help" show its usage and every option it takes',
    async (name) => {
      const spec = COMMANDS.find((c) => c.name === name)!;
      const a = await cli(['help', ...name.split(' ')]);
      const b = await cli([...name.split(' '), '--help']);
      expect(a.code).toBe(0);
      expect(b).toEqual(a);
      expect(a.out).toContain(`tributary ${name}`);
      for (const o of spec.options) expect(a.out).toMatch(new RegExp(`^ +(-\\w, )?--${o}\\b`, 'm'));
      expect(a.out).toMatch(/--verbose/);
    },
  );

  it('"help sources" lists the source commands; an unknown one is a usage error', async () => {
    const res = await cli(['help', 'sources']);
    expect(res.out).toMatch(/sources add ID/);
    expect((await cli(['sources', '--help'])).out).toBe(res.out);
    expect(await cli(['help', 'frob'])).toMatchObject({
      code: 2,
      err: 'tributary: no command "frob" (see "tributary help")\n',
    });
  });
});

describe('bad usage: a short error naming the command, exit 2', () => {
  it.each([
    [['sync', '--frobnicate'], 'tributary sync: unknown option --frobnicate (see "tributary help sync")'],
    [['sync', '--limit', '5'], 'tributary sync: unknown option --limit (see "tributary help sync")'],
    [
      ['sources', 'add', 'x', '--frobnicate'],
      'tributary sources add: unknown option --frobnicate (see "tributary help sources add")',
    ],
    [['inbox', '--limit'], 'tributary inbox: --limit needs a value (N) (see "tributary help inbox")'],
    [
      ['inbox', '--source', '--json'],
      'tributary inbox: --source needs a value (ID) (see "tributary help inbox")',
    ],
    [['sync', '--json=yes'], 'tributary sync: --json takes no value (see "tributary help sync")'],
    [['sync', 'extra'], 'tributary sync: unexpected argument "extra" (see "tributary help sync")'],
    [['sources', 'test'], 'tributary sources test: needs ID (see "tributary help sources test")'],
    [
      ['sources'],
      'tributary sources: needs a subcommand: list, test, retry, add, update, enable, disable, remove, import (see "tributary help sources")',
    ],
    [['sources', 'frob'], 'tributary sources: unknown command "sources frob" (see "tributary help sources")'],
    [['frob'], 'tributary: unknown command "frob" (see "tributary help")'],
    [['-x'], 'tributary: unknown option -x (see "tributary help")'],
    [
      ['inbox', '--config', config, '--limit', '0'],
      'tributary inbox: --limit must be a whole number from 1 to 1000 (see "tributary help inbox")',
    ],
    [
      ['sources', 'retry', 'nope', '--config', config],
      `tributary sources retry: no source "nope" in ${config}; known: work, home (see "tributary help sources retry")`,
    ],
    [
      ['migrate', '--config', config],
      'tributary migrate: needs --from STORE (local-aws: the local store of earlier versions) (see "tributary help migrate")',
    ],
  ])('%j', async (args, message) => {
    const res = await cli(args);
    expect(res).toEqual({ code: 2, out: '', err: `${message}\n` });
  });
});

describe('the config file, found from any folder', () => {
  const home = path.join(dir, 'home');
  const xdg = path.join(dir, 'xdg');
  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere, { recursive: true });

  it('--config, else $TRIBUTARY_CONFIG, else ./tributary.config.json, else $XDG_CONFIG_HOME/tributary/config.json', () => {
    const user = writeConfig(path.join(xdg, 'tributary', 'config.json'));
    expect(configFile('x.json', { TRIBUTARY_CONFIG: '/etc/t.json' }, dir)).toEqual({
      file: path.join(dir, 'x.json'),
    });
    expect(configFile(undefined, { TRIBUTARY_CONFIG: '/etc/t.json' }, dir)).toEqual({ file: '/etc/t.json' });
    expect(configFile(undefined, { XDG_CONFIG_HOME: xdg }, dir)).toEqual({ file: config });
    expect(configFile(undefined, { XDG_CONFIG_HOME: xdg }, elsewhere)).toEqual({ file: user });
    const homeConfig = writeConfig(path.join(home, '.config', 'tributary', 'config.json'));
    expect(configFile(undefined, { HOME: home }, elsewhere)).toEqual({ file: homeConfig });
    // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
    expect(configFile(undefined, { HOME: home, XDG_CONFIG_HOME: 'rel' }, elsewhere)).toEqual({
      file: homeConfig,
    });
  });

  it('a command run elsewhere reads the per-user config; none anywhere says where it looked', async () => {
    const user = writeConfig(path.join(dir, 'xdg2', 'tributary', 'config.json'), ['mine']);
    const res = await cli(['sources', 'retry', 'nope'], {
      cwd: elsewhere,
      env: { XDG_CONFIG_HOME: path.join(dir, 'xdg2') },
    });
    expect(res.err).toContain(`no source "nope" in ${user}; known: mine`);
    const none = await cli(['sync'], { cwd: elsewhere, env: { HOME: path.join(dir, 'nohome') } });
    expect(none.code).toBe(2);
    expect(none.err).toBe(
      `error [CONFIG_INVALID]: no config file: looked for ${path.join(elsewhere, 'tributary.config.json')} and ${path.join(dir, 'nohome', '.config', 'tributary', 'config.json')}; create one (see "Configuration" in the README), or point to one with --config FILE or TRIBUTARY_CONFIG\n`,
    );
  });
});

describe('migrate', () => {
  it('runs runMigrate with the config, --from and --json, and returns its status', async () => {
    const mocked = runMigrate as jest.MockedFunction<typeof runMigrate>;
    mocked.mockResolvedValueOnce(3);
    const res = await cli(['migrate', '--from', 'local-aws', '--json', '--config', config]);
    expect(res.code).toBe(3);
    expect(mocked).toHaveBeenCalledWith(
      expect.objectContaining({ file: config }),
      { from: 'local-aws', json: true },
      expect.anything(),
    );
  });
});

describe('sync text: the outcome words of the JSON report', () => {
  const base: SourceRunReport = {
    sourceId: 'work',
    outcome: 'ok',
    fetched: 4,
    fetchedBytes: 4096,
    skipped: 0,
    deletedUpstream: 0,
    evicted: 0,
    durationMs: 1000,
    notes: [],
  };
  it.each(['ok', 'more', 'paused'] as const)('%s', (outcome) => {
    expect(formatReport({ ...base, outcome })).toMatch(new RegExp(`^work: ${outcome}, 4 new messages`));
  });
  it('busy, disabled and failed', () => {
    expect(formatReport({ ...base, outcome: 'busy' })).toMatch(/^work: busy: /);
    expect(formatReport({ ...base, outcome: 'disabled' })).toMatch(/^work: disabled /);
    expect(formatReport({ ...base, outcome: 'failed', error: { code: 'AUTH_FAILED', message: 'no' } })).toBe(
      'work: FAILED [AUTH_FAILED] no',
    );
  });
});

function message(
  extra: { sourceId?: string; from?: string; subject?: string; attachments?: boolean } = {},
): MessageRecord {
  return {
    sourceId: extra.sourceId ?? 'work',
    identity: 'imap#INBOX#1#0000000001',
    sortDate: '2026-03-04T05:06:07.000Z',
    fetchedAt: '2026-03-04T05:06:08.000Z',
    seen: false,
    object: { key: 'k', size: 10, sha256: 'a'.repeat(64) },
    metadata: {
      from: { name: extra.from ?? 'Ann', address: 'ann@example.com' },
      subject: extra.subject ?? 'Hello',
      hasAttachments: extra.attachments ?? false,
    },
  } as unknown as MessageRecord;
}

describe('inbox text', () => {
  it('keeps its columns aligned with CJK and emoji, cut with an ellipsis at the column width', () => {
    const lines = [
      inboxLine(message({ from: 'Ann Example' })),
      inboxLine(message({ from: '山田太郎 (経理部) 山田太郎 (経理部) 山田太郎', subject: '会議のお知らせ' })),
      inboxLine(message({ from: '👩‍💻 Dev Team 🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀', sourceId: 'a-very-long-source-id' })),
      inboxLine(message({ from: 'Zoë Ça\u0301va' })),
    ];
    // The subject starts at the same column on every line: date (16) + 2, source (12) + 1, sender (28) + 1.
    for (const line of lines) {
      const subjectAt = line.lastIndexOf(' ') + 1;
      expect(displayWidth(line.slice(0, subjectAt))).toBe(60);
    }
    expect(lines[1]).toContain('山田太郎 (経理部) 山田太郎 … 会議');
    expect(lines[2]).toContain('a-very-long…');
    expect(lines[1]!.endsWith('会議のお知らせ')).toBe(true);
  });

  it('cuts the subject to the terminal width, and strips control characters', () => {
    const line = inboxLine(message({ subject: `${'長'.repeat(40)}\x1b[2J`, attachments: true }), 100);
    expect(displayWidth(line)).toBeLessThanOrEqual(100);
    expect(displayWidth(line)).toBeGreaterThanOrEqual(99);
    expect(line).toMatch(/… {2}\[attachments\]$/);
    expect(inboxLine(message({ subject: 'a\x1b[2Jb' }))).toContain('a [2Jb');
  });

  it('the more: hint keeps --config, --source and --limit', () => {
    expect(nextPageCommand({ limit: '5', source: 'work' }, 'eyJhIjoxfQ')).toBe(
      'tributary inbox --source work --limit 5 --cursor eyJhIjoxfQ',
    );
    expect(nextPageCommand({ config: '/my dir/t.json' }, 'c')).toBe(
      "tributary inbox --config '/my dir/t.json' --cursor c",
    );
    expect(nextPageCommand({}, '-x')).toBe('tributary inbox --cursor=-x');
  });

  it('prints the hint after the page, end to end', async () => {
    fakeRuntime({ listInbox: jest.fn(async () => ({ items: [message()], cursor: 'NEXT' })) });
    const res = await cli(['inbox', '--config', config, '--limit', '1', '--source', 'work']);
    expect(res.code).toBe(0);
    expect(res.out.trim().split('\n').pop()).toBe(
      `more: tributary inbox --config ${config} --source work --limit 1 --cursor NEXT`,
    );
  });
});

describe('audit text', () => {
  it('shows the subject (from the stored messages, one pass that stops when all are found) and the sha256', async () => {
    const record = (n: number, target: string): AuditRecord => ({
      id: `2026-03-04T00:00:0${n}.000Z#${n}`,
      sourceId: 'work',
      action: 'delete-upstream',
      policy: 'delete-on-retrieve',
      why: 'committed to the store',
      identity: target,
      target,
      object: { key: 'k', size: 2048, sha256: `${n}`.repeat(64) },
      at: `2026-03-04T00:00:0${n}.000Z`,
      state: 'done',
    });
    const stored = [
      { ...message({ subject: 'Invoice 日本' }), identity: 'id-1' },
      { ...message({ subject: 'Other' }), identity: 'id-2' },
      { ...message({ subject: 'never read' }), identity: 'id-3' },
    ];
    let read = 0;
    let trail = [record(1, 'id-1'), record(2, 'id-2'), record(3, 'id-gone')];
    fakeRuntime({
      auditTrail: async function* () {
        yield* trail;
      },
      sourceMessages: async function* (sourceId: string) {
        if (sourceId !== 'work') return;
        for (const m of stored) {
          read++;
          yield m;
        }
      },
    });
    const res = await cli(['audit', '--config', config, '--source', 'work']);
    expect(res.code).toBe(0);
    const lines = res.out.trim().split('\n');
    expect(lines[0]).toContain(
      'id-1  "Invoice 日本"  2.0 KB sha256 111111111111  delete-on-retrieve: committed to the store',
    );
    expect(lines[1]).toContain('"Other"');
    expect(lines[2]).toContain('id-gone  (no longer stored)');
    expect(read).toBe(3);
    const json = JSON.parse((await cli(['audit', '--config', config, '--source', 'work', '--json'])).out) as {
      audit: Array<{ subject: string | null }>;
    };
    expect(json.audit.map((a) => a.subject)).toEqual(['Invoice 日本', 'Other', null]);
    // Every subject found: the pass stops there.
    trail = [record(1, 'id-1'), record(2, 'id-2')];
    read = 0;
    expect((await cli(['audit', '--config', config])).out).toContain('"Other"');
    expect(read).toBe(2);
  });
});
