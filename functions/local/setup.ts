import fs from 'node:fs';
import path from 'node:path';
import { checkSource } from '../cli/source-check';
import { ConfigError, describeError } from '../core/errors';
import type { MailConnector } from '../core/ports';
import { isLoopback, parseSource, type Config } from '../shared/config';
import type { LocalSetup, NewSourceInput, SetupResult } from '../web/contract';

/**
 * The first-run page's "test connection" and "add source" on one machine (issue #16): the same validation as the
 * config file, the same check as `tributary sources test`, and a source saved the way a user would write it by
 * hand: its settings in the config file, its password in a file of its own under `.secrets/` beside the config
 * (git-ignored, folder 0700, file 0600: the modes the credentials adapter insists on). Nothing is saved unless the
 * login works.
 */

type ConfigSource = Config['sources'][number];

/** Where a source's password file goes: beside the config, never inside the data folder (a backup of the mail then
 * carries no password). */
export function secretFileFor(configFile: string, sourceId: string): string {
  return path.join(path.dirname(path.resolve(configFile)), '.secrets', sourceId);
}

/** A slug from the host and user when the form leaves the id out: "imap-example-com-ann". */
export function suggestId(input: Pick<NewSourceInput, 'host' | 'user'>, taken: ReadonlySet<string>): string {
  const base =
    `${input.user.split('@')[0] ?? ''}-${input.host}`
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 50) || 'mail';
  for (let n = 1; ; n++) {
    const id = n === 1 ? base : `${base}-${n}`;
    if (!taken.has(id)) return id;
  }
}

/** The source as the config file holds it (what is written), from the form's input. */
function configEntry(input: NewSourceInput, id: string, secretFile: string, configFile: string) {
  return {
    id,
    protocol: input.protocol,
    host: input.host.trim(),
    ...(input.port === undefined ? {} : { port: input.port }),
    tls: input.tls,
    user: input.user,
    secret: { file: path.relative(path.dirname(path.resolve(configFile)), secretFile) },
    ...(input.protocol === 'imap' ? { folders: input.folders?.length ? input.folders : ['INBOX'] } : {}),
    ...(input.pollMinutes === undefined ? {} : { pollMinutes: input.pollMinutes }),
    retention: input.retention ?? { mode: 'keep' },
  };
}

/** Writes `text` to `file` through a temporary name, fsynced, then renamed: a crash leaves the old or the new. */
function writeAtomically(file: string, text: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

export interface LocalSetupDeps {
  configFile: string;
  connector: MailConnector;
  /** The sources the running service has (the config's, and those added since). */
  sources: () => ConfigSource[];
  /** Called once a source is saved: the service adds it to its schedule (due at once). */
  added: (source: ConfigSource) => Promise<void>;
}

export function makeLocalSetup(deps: LocalSetupDeps): LocalSetup {
  const validate = (input: NewSourceInput): { source: ConfigSource; entry: object } => {
    const taken = new Set(deps.sources().map((s) => s.id));
    const id = input.id ?? suggestId(input, taken);
    if (taken.has(id)) throw new FieldError('id', `a source "${id}" exists already: choose another name`);
    if (input.tls === 'none' && !isLoopback(input.host.trim()))
      throw new FieldError(
        'tls',
        'without TLS the password would cross the network in clear: "none" is only for a server on this machine (127.0.0.1, localhost)',
      );
    const secretFile = secretFileFor(deps.configFile, id);
    const entry = configEntry(input, id, secretFile, deps.configFile);
    const source = parseSource(entry, path.dirname(path.resolve(deps.configFile)), `the source "${id}"`);
    return { source, entry };
  };

  const check = async (source: ConfigSource, password: string): Promise<SetupResult> => {
    try {
      const { lines } = await checkSource(source, password, deps.connector);
      return { ok: true, sourceId: source.id, lines };
    } catch (err) {
      const d = describeError(err);
      return { ok: false, code: d.code, message: d.message };
    }
  };

  return {
    async test(input) {
      let source: ConfigSource;
      try {
        source = validate(input).source;
      } catch (err) {
        return invalid(err);
      }
      return check(source, input.password);
    },

    async add(input) {
      let validated: { source: ConfigSource; entry: object };
      try {
        validated = validate(input);
      } catch (err) {
        return invalid(err);
      }
      const { source, entry } = validated;
      const result = await check(source, input.password);
      if (!result.ok) return result;
      const secretFile = 'file' in source.secret ? source.secret.file : undefined;
      if (!secretFile) throw new Error('unreachable: a source added here has a secret file');
      fs.mkdirSync(path.dirname(secretFile), { recursive: true, mode: 0o700 });
      fs.chmodSync(path.dirname(secretFile), 0o700);
      writeAtomically(secretFile, `${input.password}\n`, 0o600);
      addToConfig(deps.configFile, entry);
      await deps.added(source);
      return result;
    },
  };
}

/** A form field that is not valid: the page shows the message beside it. */
class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

function invalid(err: unknown): SetupResult {
  if (err instanceof FieldError)
    return { ok: false, code: 'CONFIG_INVALID', message: err.message, field: err.field };
  if (err instanceof ConfigError) return { ok: false, code: 'CONFIG_INVALID', message: err.message };
  throw err;
}

/**
 * Appends the source to the config file, keeping everything else as it is; creates the file (local store, this
 * source) when there is none yet. The file may hold no password (the secret is a file reference), so its mode
 * stays as the user had it; a new one is 0600 all the same.
 */
export function addToConfig(configFile: string, entry: object): void {
  let raw: { sources?: unknown[] } & Record<string, unknown> = {};
  let mode = 0o600;
  try {
    raw = JSON.parse(fs.readFileSync(configFile, 'utf8')) as typeof raw;
    mode = fs.statSync(configFile).mode & 0o777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  raw.sources = [...(raw.sources ?? []), entry];
  writeAtomically(configFile, `${JSON.stringify(raw, null, 2)}\n`, mode);
}

/** The config `tributary serve` writes on a machine that has none: the local store, no source yet. */
export function createDefaultConfig(configFile: string): void {
  const dir = path.dirname(path.resolve(configFile));
  fs.mkdirSync(dir, { recursive: true });
  writeAtomically(
    configFile,
    `${JSON.stringify({ store: { mode: 'local', dataDir: '.tributary' }, sources: [] }, null, 2)}\n`,
    0o600,
  );
}
