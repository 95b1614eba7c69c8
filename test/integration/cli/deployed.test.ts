import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import {
  DeleteParameterCommand,
  GetParameterCommand,
  PutParameterCommand,
  SSMClient,
} from '@aws-sdk/client-ssm';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { main, type Io } from '../../../functions/cli/main';
import { DynamoSourceRegistry } from '../../../functions/adapters/dynamodb/source-registry';
import { keys } from '../../../functions/adapters/dynamodb/keys';
import { ensureTable } from '../../../functions/local/emulators';
import { makeAwsClients } from '../../../functions/shared/aws-clients';
import { MailLab, type TestUser } from '../../support/mail-lab';

/**
 * The CLI against a deployed Tributary (issue #14): the config names the stack, the CLI reads its outputs
 * (CloudFormation, mocked: no local stand-in), keeps sources in the table's registry (DynamoDB Local, the same
 * adapter the Lambdas read) and passwords in SSM (mocked, an in-memory parameter store), and the mail commands work
 * on those sources as they do on a config's. Mail comes from the test Dovecot.
 */
const lab = MailLab.fromEnv();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-deployed-'));
fs.writeFileSync(path.join(dir, 'ca.pem'), lab.ca);
const table = `tributary-deployed-${Math.random().toString(36).slice(2, 8)}`;
const bucket = process.env.TRIBUTARY_TEST_BUCKET!;
const prefix = '/tributary/TributaryService/sources/';
const clients = makeAwsClients();
const registry = new DynamoSourceRegistry(clients.documents, table);

const cfn = mockClient(CloudFormationClient);
const ssm = mockClient(SSMClient);
/** The parameter store: name -> value and type. */
let parameters = new Map<string, { value: string; type: string }>();

function stackOutputs(outputs: Record<string, string>) {
  cfn.reset();
  cfn.on(DescribeStacksCommand).callsFake((input: { StackName?: string }) => {
    if (input.StackName !== 'TributaryService') {
      const err = new Error(`Stack with id ${input.StackName} does not exist`);
      err.name = 'ValidationError';
      throw err;
    }
    return {
      Stacks: [
        {
          StackName: 'TributaryService',
          CreationTime: new Date(),
          StackStatus: 'UPDATE_COMPLETE',
          Outputs: Object.entries(outputs).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })),
        },
      ],
    };
  });
}

beforeAll(async () => {
  await ensureTable(clients.dynamodb, table);
});

beforeEach(() => {
  parameters = new Map();
  stackOutputs({ TableName: table, BucketName: bucket, SecretsPrefix: prefix, ApiUrl: 'https://x' });
  ssm.reset();
  ssm
    .on(PutParameterCommand)
    .callsFake((input: { Name: string; Value: string; Type: string; Overwrite?: boolean }) => {
      if (parameters.has(input.Name) && !input.Overwrite) {
        const err = new Error('exists');
        err.name = 'ParameterAlreadyExists';
        throw err;
      }
      parameters.set(input.Name, { value: input.Value, type: input.Type });
      return { Version: 1 };
    });
  ssm.on(GetParameterCommand).callsFake((input: { Name: string }) => {
    const p = parameters.get(input.Name);
    if (!p) {
      const err = new Error('not found');
      err.name = 'ParameterNotFound';
      throw err;
    }
    return { Parameter: { Name: input.Name, Value: p.value, Type: p.type } };
  });
  ssm.on(DeleteParameterCommand).callsFake((input: { Name: string }) => {
    if (!parameters.delete(input.Name)) {
      const err = new Error('not found');
      err.name = 'ParameterNotFound';
      throw err;
    }
    return {};
  });
});

afterAll(() => {
  cfn.restore();
  ssm.restore();
  clients.dynamodb.destroy();
  clients.s3.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function writeConfig(body: Record<string, unknown>): string {
  const file = path.join(dir, `config-${++n}.json`);
  fs.writeFileSync(file, JSON.stringify(body));
  return file;
}
const deployedConfig = () =>
  writeConfig({ store: { mode: 'aws', stack: 'TributaryService', region: 'us-east-1' } });

/** Runs the CLI in this process; `stdin` is what a pipe would give it. */
async function cli(
  args: string[],
  options: { stdin?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = {
    out: (t) => (out += t),
    err: (t) => (err += t),
    isTty: false,
    input: Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]),
    env: options.env ?? {},
  };
  const code = await main(args, io);
  return { code, out, err };
}

const uniq = () => Math.random().toString(36).slice(2, 8);

function serverFlags(user: TestUser): string[] {
  return [
    '--protocol',
    'imap',
    '--host',
    '127.0.0.1',
    '--port',
    String(lab.info.ports.imaps),
    '--ca-file',
    path.join(dir, 'ca.pem'),
    '--servername',
    'localhost',
    '--user',
    user.name,
  ];
}

function mail(i: number): string {
  return `From: a${i}@example.com\r\nTo: b@example.com\r\nSubject: deployed ${i}\r\nMessage-ID: <d${i}.${uniq()}@example.com>\r\nDate: Thu, 03 Dec 2026 10:00:0${i % 10} +0000\r\n\r\nbody ${i}\r\n`;
}

async function rawEntry(id: string): Promise<Record<string, unknown> | undefined> {
  const out = await clients.documents.send(
    new GetCommand({ TableName: table, Key: { PK: keys.registryPartition, SK: keys.sourceEntrySk(id) } }),
  );
  return out.Item;
}

describe('the CLI against a deployed stack', () => {
  it('adds a source (login checked, password to SSM, settings to the registry), syncs it, lists and reads it', async () => {
    const user = lab.createUser('dep');
    for (let i = 0; i < 4; i++) lab.deliver(user, mail(i));
    const config = deployedConfig();
    const id = `work-${uniq()}`;

    const added = await cli(
      ['sources', 'add', id, ...serverFlags(user), '--password-stdin', '--config', config],
      {
        stdin: `${user.password}\n`,
      },
    );
    expect(added.err).toContain('login ok; messages: INBOX 4');
    expect(added.code).toBe(0);
    expect(added.out).toContain(`password in the SSM parameter ${prefix}${id}`);
    // The password went to SSM as a SecureString, without the line end; nowhere else.
    expect(parameters.get(`${prefix}${id}`)).toEqual({ value: user.password, type: 'SecureString' });
    const item = await rawEntry(id);
    expect(item).toBeDefined();
    expect(JSON.stringify(item)).not.toContain(user.password);
    expect(added.out + added.err).not.toContain(user.password);
    const entry = (await registry.get(id))!;
    expect(entry.source).toMatchObject({ id, protocol: 'imap', port: lab.info.ports.imaps, user: user.name });
    expect(entry.source.ca).toContain('BEGIN CERTIFICATE');
    expect('secret' in entry.source).toBe(false);
    // Due at once: the dispatcher's query finds it.
    expect((await registry.due(Date.now(), 100)).map((e) => e.source.id)).toContain(id);

    // A second add of the same id is refused.
    const again = await cli(
      ['sources', 'add', id, ...serverFlags(user), '--password-stdin', '--config', config],
      {
        stdin: user.password,
      },
    );
    expect(again.code).toBe(2);
    expect(again.err).toContain(`"tributary sources update ${id}"`);

    // The mail commands on the registry's sources, the password read from SSM.
    const list = await cli(['sources', 'list', '--json', '--config', config]);
    expect(list.code).toBe(0);
    const listed = (JSON.parse(list.out) as { sources: Array<{ id: string; nextRun?: { at: string } }> })
      .sources;
    // Due at once: its next run is the time it was added (the service's schedule, from the registry).
    expect(Date.parse(listed.find((s) => s.id === id)!.nextRun!.at)).toBeLessThanOrEqual(Date.now());
    expect((await cli(['sources', 'list', '--config', config])).out).toMatch(
      new RegExp(`${id}\\n[\\s\\S]*?  next run: \\d{4}-`),
    );
    const test = await cli(['sources', 'test', id, '--config', config]);
    expect(test.err).toBe('');
    expect(test.out).toContain('INBOX: 4 messages');
    const sync = await cli(['sync', '--source', id, '--config', config]);
    expect(sync.out).toContain(`${id}: ok, 4 new messages`);
    expect(sync.code).toBe(0);
    const inbox = await cli(['inbox', '--source', id, '--json', '--config', config]);
    const subjects = (JSON.parse(inbox.out) as { messages: Array<{ subject: string }> }).messages.map(
      (m) => m.subject,
    );
    expect(subjects.sort()).toEqual(['deployed 0', 'deployed 1', 'deployed 2', 'deployed 3']);
    const plan = await cli(['plan', '--source', id, '--config', config]);
    expect(plan.code).toBe(0);
    const audit = await cli(['audit', '--source', id, '--config', config]);
    expect(audit.code).toBe(0);
    const out = path.join(dir, `export-${uniq()}`);
    const exported = await cli([
      'export',
      '--format',
      'maildir',
      '--out',
      out,
      '--source',
      id,
      '--config',
      config,
    ]);
    expect(exported.code).toBe(0);
    expect(fs.readdirSync(path.join(out, id, 'cur'))).toHaveLength(4);
    const unknown = await cli(['sync', '--source', 'nope', '--config', config]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('no source "nope" in the stack TributaryService');
  }, 120_000);

  it('saves nothing when the login fails, unless told to skip the check', async () => {
    const user = lab.createUser('depbad');
    const config = deployedConfig();
    const id = `bad-${uniq()}`;
    const refused = await cli(
      ['sources', 'add', id, ...serverFlags(user), '--password-env', 'PW', '--config', config],
      {
        env: { PW: 'not-the-password' },
      },
    );
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('[AUTH_FAILED]');
    expect(refused.err).toContain('nothing saved');
    expect(await registry.get(id)).toBeUndefined();
    expect(parameters.size).toBe(0);

    // Bad settings are refused with the config file's messages, before any password is asked.
    const invalid = await cli([
      'sources',
      'add',
      id,
      ...serverFlags(user),
      '--retention',
      'forever',
      '--config',
      config,
    ]);
    expect(invalid.code).toBe(2);
    expect(invalid.err).toContain(
      '--retention must be "keep", "delete-on-retrieve" or "delete-after-days:N"',
    );
    const pop3Folders = await cli([
      'sources',
      'add',
      id,
      ...serverFlags(user),
      '--protocol',
      'pop3',
      '--folders',
      'INBOX',
      '--config',
      config,
    ]);
    expect(pop3Folders.code).toBe(2);
    expect(pop3Folders.err).toContain('POP3 has no folders');
    // No terminal and no password option: a clear error, nothing saved.
    const noPassword = await cli(['sources', 'add', id, ...serverFlags(user), '--config', config]);
    expect(noPassword.code).toBe(2);
    expect(noPassword.err).toContain('no terminal to ask for the password');

    const skipped = await cli(
      ['sources', 'add', id, ...serverFlags(user), '--password-env', 'PW', '--skip-test', '--config', config],
      { env: { PW: 'not-the-password' } },
    );
    expect(skipped.code).toBe(0);
    expect(await registry.get(id)).toBeDefined();
  }, 60_000);

  it('updates settings and the password, disables and enables, removes keeping the mail', async () => {
    const user = lab.createUser('depupd');
    for (let i = 0; i < 3; i++) lab.deliver(user, mail(i));
    const config = deployedConfig();
    const id = `upd-${uniq()}`;
    expect(
      (
        await cli(['sources', 'add', id, ...serverFlags(user), '--password-stdin', '--config', config], {
          stdin: user.password,
        })
      ).code,
    ).toBe(0);
    const first = (await registry.get(id))!;

    // A policy change: no login needed, the password untouched, the CA kept, the schedule kept.
    const policy = await cli([
      'sources',
      'update',
      id,
      '--retention',
      'delete-after-days:30',
      '--poll-minutes',
      '15',
      '--config',
      config,
    ]);
    expect(policy.code).toBe(0);
    const updated = (await registry.get(id))!;
    expect(updated.source).toMatchObject({
      retention: { mode: 'delete-after-days', days: 30 },
      pollMinutes: 15,
    });
    expect(updated.source.ca).toBe(first.source.ca);
    expect(updated.schedule).toEqual(first.schedule);
    expect(updated.revision).toBeGreaterThan(first.revision);
    const quota = path.join(dir, `settings-${uniq()}.json`);
    fs.writeFileSync(quota, JSON.stringify({ inboxQuota: { maxMessages: 100, onExceed: 'pause' } }));
    expect((await cli(['sources', 'update', id, '--settings', quota, '--config', config])).code).toBe(0);
    expect((await registry.get(id))!.source.inboxQuota).toEqual({ maxMessages: 100, onExceed: 'pause' });
    fs.writeFileSync(quota, JSON.stringify({ inboxQuota: null }));
    expect((await cli(['sources', 'update', id, '--settings', quota, '--config', config])).code).toBe(0);
    expect((await registry.get(id))!.source.inboxQuota).toBeUndefined();
    const nothing = await cli(['sources', 'update', id, '--config', config]);
    expect(nothing.code).toBe(2);
    expect(nothing.err).toContain('nothing to change');

    // A new password: checked by logging in, then stored; a wrong one is refused and the old one stays.
    const wrong = await cli(['sources', 'update', id, '--password-env', 'NEWPW', '--config', config], {
      env: { NEWPW: 'wrong' },
    });
    expect(wrong.code).toBe(1);
    expect(parameters.get(`${prefix}${id}`)?.value).toBe(user.password);
    // The password changed on the server (the passwd-file entry Dovecot reads at each login).
    const entryFile = path.join(lab.info.usersDir, user.name);
    fs.writeFileSync(
      entryFile,
      fs.readFileSync(entryFile, 'utf8').replace(`{PLAIN}${user.password}`, '{PLAIN}a-new-password-1'),
    );
    const changed = await cli(['sources', 'update', id, '--password-env', 'NEWPW', '--config', config], {
      env: { NEWPW: 'a-new-password-1' },
    });
    expect(changed.code).toBe(0);
    expect(parameters.get(`${prefix}${id}`)?.value).toBe('a-new-password-1');

    // Disabled: out of the dispatcher's due index, skipped by sync; enabled: back.
    expect((await cli(['sources', 'disable', id, '--config', config])).code).toBe(0);
    expect((await registry.get(id))!.source.enabled).toBe(false);
    expect((await registry.due(Date.now() + 86_400_000, 1000)).map((e) => e.source.id)).not.toContain(id);
    const skipped = await cli(['sync', '--source', id, '--config', config]);
    expect(skipped.out).toContain(`${id}: disabled`);
    expect((await cli(['sources', 'enable', id, '--config', config])).code).toBe(0);
    expect((await registry.due(Date.now() + 86_400_000, 1000)).map((e) => e.source.id)).toContain(id);
    expect((await cli(['sync', '--source', id, '--config', config])).out).toContain('3 new messages');

    // Removed: settings and password gone, the mail stays; added again, it resumes (nothing fetched twice).
    const removed = await cli(['sources', 'remove', id, '--config', config]);
    expect(removed.code).toBe(0);
    expect(removed.out).toContain('Its 3 messages stay in the inbox');
    expect(await registry.get(id)).toBeUndefined();
    expect(parameters.has(`${prefix}${id}`)).toBe(false);
    const inbox = await cli(['inbox', '--json', '--config', config]);
    expect(
      (JSON.parse(inbox.out) as { messages: Array<{ sourceId: string }> }).messages.filter(
        (m) => m.sourceId === id,
      ),
    ).toHaveLength(3);
    expect((await cli(['sources', 'remove', id, '--config', config])).code).toBe(2);
    expect(
      (
        await cli(['sources', 'add', id, ...serverFlags(user), '--password-stdin', '--config', config], {
          stdin: 'a-new-password-1',
        })
      ).code,
    ).toBe(0);
    expect((await cli(['sync', '--source', id, '--config', config])).out).toContain(
      `${id}: ok, 0 new messages`,
    );
  }, 120_000);

  it("imports a config file's sources with their passwords, skipping those already there", async () => {
    const a = lab.createUser('impa');
    const b = lab.createUser('impb');
    const ids = [`imp-a-${uniq()}`, `imp-b-${uniq()}`];
    const secretFile = path.join(dir, `secret-${uniq()}`);
    fs.writeFileSync(secretFile, `${b.password}\n`, { mode: 0o600 });
    const source = (user: TestUser, id: string, secret: Record<string, string>) => ({
      id,
      protocol: 'imap',
      host: '127.0.0.1',
      port: lab.info.ports.imaps,
      caFile: 'ca.pem',
      servername: 'localhost',
      user: user.name,
      secret,
      retention: { mode: 'delete-after-days', days: 7 },
    });
    const local = writeConfig({
      store: { mode: 'local', dataDir: '.tributary' },
      sources: [source(a, ids[0]!, { env: 'PW_A' }), source(b, ids[1]!, { file: path.basename(secretFile) })],
    });
    const config = deployedConfig();
    const imported = await cli(['sources', 'import', '--from', local, '--config', config], {
      env: { PW_A: a.password },
    });
    expect(imported.err).toBe('');
    expect(imported.code).toBe(0);
    expect(parameters.get(`${prefix}${ids[0]}`)?.value).toBe(a.password);
    expect(parameters.get(`${prefix}${ids[1]}`)?.value).toBe(b.password);
    expect((await registry.get(ids[1]!))!.source).toMatchObject({
      retention: { mode: 'delete-after-days', days: 7 },
      user: b.name,
    });
    const again = await cli(['sources', 'import', '--from', local, '--config', config], { env: {} });
    expect(again.code).toBe(0);
    expect(again.out.match(/already in TributaryService: skipped/g)).toHaveLength(2);
    // --replace with a password that cannot be read: that source fails, the other is imported.
    const replaced = await cli(['sources', 'import', '--from', local, '--replace', '--config', config], {
      env: {},
    });
    expect(replaced.code).toBe(1);
    expect(replaced.err).toContain(`${ids[0]}: not imported: [SECRET_MISSING]`);
    expect(replaced.out).toContain(`${ids[1]}: imported`);
  }, 60_000);

  it('says what is wrong with the config or the stack', async () => {
    const withSources = writeConfig({
      store: { mode: 'aws', stack: 'TributaryService' },
      sources: [{ id: 'x', protocol: 'imap', host: 'imap.example.com', user: 'u', secret: { env: 'X' } }],
    });
    const mixed = await cli(['sources', 'list', '--config', withSources]);
    expect(mixed.code).toBe(2);
    expect(mixed.err).toContain('sources live in its table, not in the config file');

    const missing = writeConfig({ store: { mode: 'aws', stack: 'TributaryServise', region: 'eu-west-1' } });
    const nostack = await cli(['sources', 'list', '--config', missing]);
    expect(nostack.code).toBe(2);
    expect(nostack.err).toContain('there is no stack "TributaryServise" in eu-west-1');

    stackOutputs({ TableName: table, BucketName: bucket });
    const old = await cli(['sources', 'list', '--config', deployedConfig()]);
    expect(old.code).toBe(2);
    expect(old.err).toContain('has no output SecretsPrefix');

    // A bare store (table and bucket, sources in the file) cannot be changed by the CLI.
    const bare = writeConfig({ store: { mode: 'aws', table, bucket } });
    const add = await cli(['sources', 'add', 'y', '--config', bare]);
    expect(add.code).toBe(2);
    expect(add.err).toContain('edit that file');
  });
});
