import fs from 'node:fs';
import path from 'node:path';
import { DeleteParameterCommand, PutParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { ConfiguredCredentials } from '../adapters/secrets/credentials';
import type { DynamoSourceRegistry } from '../adapters/dynamodb/source-registry';
import { ConfigError, describeError, StorageError } from '../core/errors';
import type { Source } from '../core/model';
import type { MailConnector } from '../core/ports';
import { loadConfig, parseSource, type Config } from '../shared/config';
import { readPassword, type SecretInput } from './password';
import { checkSource } from './source-check';

/**
 * The commands that change a deployed Tributary's sources (`sources add|update|remove|enable|disable|import`):
 * settings go to the table's source registry (where the dispatcher and the sync function read them), each password
 * to one SSM SecureString under the stack's prefix (where only the sync function can read it). Mail is never
 * touched: removing a source keeps what was fetched from it.
 */
export interface AdminIo {
  out: (text: string) => void;
  err: (text: string) => void;
  input: SecretInput;
  env: NodeJS.ProcessEnv;
}

export interface AdminContext {
  registry: DynamoSourceRegistry;
  ssm: Pick<SSMClient, 'send'>;
  index: { summary(sourceId: string): Promise<{ messages: number }> };
  connector: MailConnector;
  secretsPrefix: string;
  stack: string;
  io: AdminIo;
  now: () => number;
  /** Where relative paths given on the command line start (the current folder). */
  cwd: string;
}

/** The options of `sources add|update`, as parseArgs gives them (strings; checked here and by the config's rules). */
export interface SourceFlags {
  protocol?: string;
  host?: string;
  port?: string;
  tls?: string;
  user?: string;
  'ca-file'?: string;
  servername?: string;
  folders?: string;
  'poll-minutes'?: string;
  retention?: string;
  settings?: string;
  'password-stdin'?: boolean;
  'password-env'?: string;
  'ask-password'?: boolean;
  'skip-test'?: boolean;
}

const SETTING_FLAGS = [
  'protocol',
  'host',
  'port',
  'tls',
  'user',
  'ca-file',
  'servername',
  'folders',
  'poll-minutes',
  'retention',
  'settings',
] as const;

class AdminError extends ConfigError {}

function numberFlag(name: string, value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new AdminError(`--${name} must be a whole number, not "${value}"`);
  return Number(value);
}

function retentionFlag(value: string): Record<string, unknown> {
  const m = /^delete-after-days[:=](\d+)$/.exec(value);
  if (m) return { mode: 'delete-after-days', days: Number(m[1]) };
  if (value === 'keep' || value === 'delete-on-retrieve') return { mode: value };
  throw new AdminError(
    `--retention must be "keep", "delete-on-retrieve" or "delete-after-days:N" (e.g. delete-after-days:30), not "${value}"`,
  );
}

/**
 * The settings the options give, in the config file's field names: `--settings FILE` (a JSON object with any field
 * of a source but "id" and "secret"; `null` removes a field, e.g. `{"upstreamQuota": null}`), then each option on
 * top of it.
 */
function settingsFromFlags(flags: SourceFlags, cwd: string): Record<string, unknown> {
  let raw: Record<string, unknown> = {};
  if (flags.settings !== undefined) {
    const file = path.resolve(cwd, flags.settings);
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new AdminError(`--settings ${file}: not a readable JSON file (${(err as Error).message})`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
      throw new AdminError(`--settings ${file}: must hold one JSON object with the source's fields`);
    for (const key of ['id', 'secret', 'password'])
      if (key in parsed)
        throw new AdminError(
          `--settings ${file}: "${key}" cannot be set there (the id is the command's argument; the password is asked for)`,
        );
    raw = { ...(parsed as Record<string, unknown>) };
    if (typeof raw.caFile === 'string') raw.caFile = path.resolve(path.dirname(file), raw.caFile);
  }
  if (flags.protocol !== undefined) raw.protocol = flags.protocol;
  if (flags.host !== undefined) raw.host = flags.host;
  if (flags.port !== undefined) raw.port = numberFlag('port', flags.port);
  if (flags.tls !== undefined) raw.tls = flags.tls;
  if (flags.user !== undefined) raw.user = flags.user;
  if (flags['ca-file'] !== undefined)
    raw.caFile = flags['ca-file'] === 'system' ? null : path.resolve(cwd, flags['ca-file']);
  if (flags.servername !== undefined) raw.servername = flags.servername === '' ? null : flags.servername;
  if (flags.folders !== undefined)
    raw.folders = flags.folders
      .split(',')
      .map((f) => f.trim())
      .filter(Boolean);
  if (flags['poll-minutes'] !== undefined)
    raw.pollMinutes = numberFlag('poll-minutes', flags['poll-minutes']);
  if (flags.retention !== undefined) raw.retention = retentionFlag(flags.retention);
  return raw;
}

/** A registered source in the config file's format (the CA stays PEM text beside it: it has no file any more). */
function settingsOf(s: Source): Record<string, unknown> {
  return {
    protocol: s.protocol,
    host: s.host,
    port: s.port,
    tls: s.tls,
    ...(s.servername ? { servername: s.servername } : {}),
    user: s.user,
    ...(s.protocol === 'imap' ? { folders: s.folders } : {}),
    pollMinutes: s.pollMinutes,
    enabled: s.enabled,
    retention: s.retention,
    ...(s.upstreamQuota ? { upstreamQuota: s.upstreamQuota } : {}),
    ...(s.inboxQuota ? { inboxQuota: s.inboxQuota } : {}),
  };
}

/** The source as the registry keeps it: no secret reference (the parameter's name follows from the id). */
function stored(source: Config['sources'][number]): Source {
  const { secret: _secret, ...rest } = source;
  void _secret;
  return rest;
}

function parameterName(ctx: AdminContext, id: string): string {
  return `${ctx.secretsPrefix}${id}`;
}

function validate(
  ctx: AdminContext,
  id: string,
  raw: Record<string, unknown>,
  keepCa: string | undefined,
): Config['sources'][number] {
  const clean = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== null));
  const source = parseSource(
    { ...clean, id, secret: { ssmParameter: parameterName(ctx, id) } },
    ctx.cwd,
    `source "${id}"`,
  );
  // A CA given earlier (its PEM text is in the registry) stays unless a new file or "system" was given.
  if (!('caFile' in raw) && keepCa !== undefined) source.ca = keepCa;
  return source;
}

/**
 * Logs in as the sync function would, and looks at the source's folders (IMAP) or maildrop (POP3): the check of
 * `tributary sources test` (checkSource), summed up in one line.
 */
async function checkLogin(ctx: AdminContext, source: Source, password: string): Promise<string> {
  const { report } = await checkSource(source, password, ctx.connector);
  const messages = report.messages;
  return typeof messages === 'number'
    ? `login ok; ${messages} messages in the maildrop`
    : `login ok; messages: ${Object.entries(messages as Record<string, number>)
        .map(([folder, count]) => `${folder} ${count}`)
        .join(', ')}`;
}

async function putPassword(ctx: AdminContext, id: string, password: string): Promise<void> {
  const name = parameterName(ctx, id);
  try {
    await ctx.ssm.send(
      new PutParameterCommand({
        Name: name,
        Value: password,
        Type: 'SecureString',
        Overwrite: true,
        Description: `Tributary: the password of the source ${id}`,
      }),
    );
  } catch (err) {
    // The SDK's message names the parameter and the reason, never the value.
    throw new StorageError(
      `cannot write the SSM parameter ${name} (${(err as Error).name}: ${(err as Error).message})`,
      { cause: err },
    );
  }
}

async function deletePassword(ctx: AdminContext, id: string): Promise<boolean> {
  try {
    await ctx.ssm.send(new DeleteParameterCommand({ Name: parameterName(ctx, id) }));
    return true;
  } catch (err) {
    if ((err as { name?: string }).name === 'ParameterNotFound') return false;
    throw new StorageError(
      `cannot delete the SSM parameter ${parameterName(ctx, id)} (${(err as Error).name}): delete it yourself`,
      { cause: err },
    );
  }
}

function passwordChoice(flags: SourceFlags) {
  return { stdin: flags['password-stdin'], env: flags['password-env'] };
}

function wantsNewPassword(flags: SourceFlags): boolean {
  return Boolean(flags['password-stdin'] || flags['password-env'] !== undefined || flags['ask-password']);
}

async function askPassword(ctx: AdminContext, flags: SourceFlags, source: Source): Promise<string> {
  return readPassword(
    passwordChoice(flags),
    { input: ctx.io.input, env: ctx.io.env, prompt: ctx.io.err },
    `password of ${source.user} on ${source.host} (${source.id})`,
  );
}

function describeSource(s: Source): string {
  return `${s.protocol} ${s.host}:${s.port} (${s.tls}), user ${s.user}${s.protocol === 'imap' ? `, folders ${s.folders.join(', ')}` : ''}, every ${s.pollMinutes} min`;
}

async function loginOrRefuse(
  ctx: AdminContext,
  flags: SourceFlags,
  source: Source,
  password: string,
): Promise<boolean> {
  if (flags['skip-test']) return true;
  try {
    ctx.io.err(`${source.id}: checking the login... `);
    ctx.io.err(`${await checkLogin(ctx, source, password)}\n`);
    return true;
  } catch (err) {
    const d = describeError(err);
    ctx.io.err(
      `failed\n${source.id}: error [${d.code}]: ${d.message}\nnothing saved (--skip-test saves it without this check)\n`,
    );
    return false;
  }
}

/** `sources add ID`: validated like a config entry, the login checked, the password to SSM, then the settings. */
export async function addSource(ctx: AdminContext, id: string, flags: SourceFlags): Promise<number> {
  if (await ctx.registry.get(id))
    throw new AdminError(
      `a source "${id}" is already registered in ${ctx.stack}: change it with "tributary sources update ${id}"`,
    );
  const source = validate(ctx, id, settingsFromFlags(flags, ctx.cwd), undefined);
  const password = await askPassword(ctx, flags, source);
  if (!(await loginOrRefuse(ctx, flags, source, password))) return 1;
  // The password first: the dispatcher may send the source to the sync function as soon as it is registered.
  await putPassword(ctx, id, password);
  await ctx.registry.put(stored(source), ctx.now());
  ctx.io.out(
    `${id}: added to ${ctx.stack} (${describeSource(source)}); password in the SSM parameter ${parameterName(ctx, id)}.\n` +
      `${source.enabled ? 'The service polls it within a minute.' : 'It is disabled: "tributary sources enable" starts polling.'}\n`,
  );
  return 0;
}

/** `sources update ID`: the options change those settings only; the password only with a password option. */
export async function updateSource(ctx: AdminContext, id: string, flags: SourceFlags): Promise<number> {
  const entry = await ctx.registry.get(id);
  if (!entry)
    throw new AdminError(`no source "${id}" in ${ctx.stack}: add it with "tributary sources add ${id}"`);
  const given = settingsFromFlags(flags, ctx.cwd);
  const changesSettings = SETTING_FLAGS.some((f) => flags[f] !== undefined);
  if (!changesSettings && !wantsNewPassword(flags))
    throw new AdminError(
      `sources update ${id}: nothing to change: give the settings to change (--host, --retention, --settings FILE...) or --ask-password / --password-stdin / --password-env NAME`,
    );
  const current = settingsOf(entry.source);
  // A new protocol or TLS mode brings its own default port and (POP3) no folders, unless given.
  if (given.protocol !== undefined && given.protocol !== current.protocol) {
    if (given.port === undefined) delete current.port;
    if (given.folders === undefined) delete current.folders;
  }
  if (given.tls !== undefined && given.tls !== current.tls && given.port === undefined) delete current.port;
  const source = validate(ctx, id, { ...current, ...given }, entry.source.ca);
  const password = wantsNewPassword(flags) ? await askPassword(ctx, flags, source) : undefined;
  const reachesServer = ['protocol', 'host', 'port', 'tls', 'user', 'ca-file', 'servername', 'folders'].some(
    (f) => flags[f as keyof SourceFlags] !== undefined,
  );
  if (password !== undefined || (reachesServer && !flags['skip-test'])) {
    const login =
      password ??
      (await new ConfiguredCredentials(
        new Map([[id, { ssmParameter: parameterName(ctx, id) }]]),
        ctx.ssm as SSMClient,
      )
        .password(source)
        .catch((err: unknown) => {
          throw new AdminError(
            `${describeError(err).message}: give the password too (--ask-password), or --skip-test`,
          );
        }));
    if (!(await loginOrRefuse(ctx, flags, source, login))) return 1;
  }
  if (password !== undefined) await putPassword(ctx, id, password);
  await ctx.registry.put(stored(source), ctx.now());
  ctx.io.out(
    `${id}: updated (${describeSource(source)})${password !== undefined ? '; new password stored' : ''}.\n` +
      (password !== undefined
        ? 'A warm sync function keeps the old password until the server refuses it, then reads the new one.\n'
        : ''),
  );
  return 0;
}

/** `sources enable|disable ID`: the dispatcher skips a disabled source; its settings and mail stay. */
export async function setEnabled(ctx: AdminContext, id: string, enabled: boolean): Promise<number> {
  const entry = await ctx.registry.get(id);
  if (!entry) throw new AdminError(`no source "${id}" in ${ctx.stack}`);
  if (entry.source.enabled === enabled) {
    ctx.io.out(`${id}: already ${enabled ? 'enabled' : 'disabled'}\n`);
    return 0;
  }
  await ctx.registry.put({ ...entry.source, enabled }, ctx.now());
  ctx.io.out(
    enabled
      ? `${id}: enabled; polled again when it is next due\n`
      : `${id}: disabled; not polled until "tributary sources enable ${id}" (its mail stays in the inbox)\n`,
  );
  return 0;
}

/** `sources remove ID`: the settings and the password go; the mail fetched from it and its sync state stay. */
export async function removeSource(ctx: AdminContext, id: string): Promise<number> {
  const entry = await ctx.registry.get(id);
  if (!entry) throw new AdminError(`no source "${id}" in ${ctx.stack}`);
  // Unregistered first: the dispatcher stops sending it before its password disappears.
  await ctx.registry.remove(id);
  const hadPassword = await deletePassword(ctx, id);
  const summary = await ctx.index.summary(id);
  ctx.io.out(
    `${id}: removed from ${ctx.stack}${hadPassword ? ', its password deleted from SSM' : ''}.\n` +
      `Its ${summary.messages} message${summary.messages === 1 ? '' : 's'} stay in the inbox, and its sync state with them: adding "${id}" again resumes where it stopped.\n`,
  );
  return 0;
}

/**
 * `sources import --from FILE`: each source of a config file (passwords from where that file says) to the
 * deployment; a source already registered is skipped unless `replace`. Mail already fetched into a local store is
 * not copied: it stays there (`tributary export`), and the service fetches what is still upstream.
 */
export async function importSources(ctx: AdminContext, from: string, replace: boolean): Promise<number> {
  const config = loadConfig(path.resolve(ctx.cwd, from));
  if (!config.sources.length) {
    ctx.io.out(`no sources in ${config.file}\n`);
    return 0;
  }
  const credentials = new ConfiguredCredentials(
    new Map(config.sources.map((s) => [s.id, s.secret] as const)),
    undefined,
    ctx.io.env,
  );
  let failed = 0;
  for (const source of config.sources) {
    try {
      if (!replace && (await ctx.registry.get(source.id))) {
        ctx.io.out(
          `${source.id}: already in ${ctx.stack}: skipped (--replace overwrites its settings and password)\n`,
        );
        continue;
      }
      const password = await credentials.password(source);
      await putPassword(ctx, source.id, password);
      await ctx.registry.put(
        stored({ ...source, secret: { ssmParameter: parameterName(ctx, source.id) } }),
        ctx.now(),
      );
      ctx.io.out(`${source.id}: imported (${describeSource(source)})\n`);
    } catch (err) {
      failed++;
      const d = describeError(err);
      ctx.io.err(`${source.id}: not imported: [${d.code}] ${d.message}\n`);
    }
  }
  ctx.io.out(
    `Mail already fetched into ${config.store.mode === 'local' ? config.store.dataDir : "that config's store"} stays there ("tributary export" copies it out); the service fetches what is still on the servers.\n`,
  );
  return failed ? 1 : 0;
}
