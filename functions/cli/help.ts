import { parseArgs } from 'node:util';

/**
 * The CLI's commands, their options and their help, in one table: `tributary help`, `tributary help CMD`,
 * `tributary CMD --help` and the check of each command's options are all built from it, so they cannot disagree.
 */

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** The value's placeholder in the help (string options). */
  value?: string;
  help: string;
}

export const OPTIONS = {
  config: {
    type: 'string',
    value: 'FILE',
    help: 'the config file (default: see CONFIG FILE in "tributary help")',
  },
  verbose: {
    type: 'boolean',
    short: 'v',
    help: 'log what is said to the mail servers and done in the store, on stderr (no passwords)',
  },
  help: { type: 'boolean', short: 'h', help: 'this help' },
  version: { type: 'boolean', short: 'V', help: 'print "tributary VERSION" and exit' },
  source: { type: 'string', value: 'ID', help: 'only this source' },
  json: { type: 'boolean', help: 'machine-readable output (JSON on standard output)' },
  limit: { type: 'string', value: 'N', help: 'messages per page, 1 to 1000 (default 50)' },
  cursor: { type: 'string', value: 'C', help: 'the page after the one that printed this cursor' },
  format: { type: 'string', value: 'maildir|mbox', help: 'the export format' },
  out: { type: 'string', value: 'DIR', help: 'the folder to export into (created if needed)' },
  'budget-seconds': {
    type: 'string',
    value: 'N',
    help: 'stop at a safe point after N seconds (default 840); the next sync goes on',
  },
  since: { type: 'string', value: 'DATE', help: 'only actions from DATE on (e.g. 2026-11-01)' },
  message: { type: 'string', value: 'IDENTITY', help: 'only this set-aside message (see "sources list")' },
  protocol: { type: 'string', value: 'imap|pop3', help: 'the protocol' },
  host: { type: 'string', value: 'HOST', help: 'the server name' },
  port: { type: 'string', value: 'N', help: 'the port (default: from the protocol and --tls)' },
  tls: { type: 'string', value: 'implicit|starttls|none', help: 'how TLS starts (none: loopback only)' },
  user: { type: 'string', value: 'USER', help: 'the login name' },
  'ca-file': {
    type: 'string',
    value: 'PEM|system',
    help: "a CA certificate to trust besides the system's (system: only those)",
  },
  servername: {
    type: 'string',
    value: 'NAME',
    help: 'the name the certificate must carry (default: --host)',
  },
  folders: { type: 'string', value: 'A,B', help: 'IMAP folders to fetch (default INBOX)' },
  'poll-minutes': { type: 'string', value: 'N', help: 'how often the service polls it (default 5)' },
  retention: {
    type: 'string',
    value: 'POLICY',
    help: 'keep | delete-on-retrieve | delete-after-days:N',
  },
  settings: {
    type: 'string',
    value: 'FILE',
    help: "a JSON object with any field of a config file's source (null removes one)",
  },
  'password-stdin': { type: 'boolean', help: 'read the password from standard input (piped)' },
  'password-env': {
    type: 'string',
    value: 'NAME',
    help: 'read the password from the environment variable NAME',
  },
  'ask-password': { type: 'boolean', help: 'update: ask for a new password at the terminal' },
  'skip-test': { type: 'boolean', help: 'save without logging in first' },
  from: { type: 'string', value: 'FILE', help: 'the config file whose sources to import' },
  replace: { type: 'boolean', help: 'overwrite sources already registered' },
} satisfies Record<string, OptionSpec>;

export type OptionName = keyof typeof OPTIONS;

/** Accepted by every command. */
export const GLOBAL_OPTIONS: OptionName[] = ['config', 'verbose', 'help'];

const SOURCE_SETTINGS: OptionName[] = [
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
  'password-stdin',
  'password-env',
];

export interface CommandSpec {
  /** "sync", or "sources add" for a subcommand. */
  name: string;
  /** The arguments after the name, e.g. "ID" (each an upper-case word; [X] when optional). */
  args: string[];
  /** One line for the list of commands. */
  summary: string;
  /** More, for `tributary help CMD`. */
  details?: string;
  options: OptionName[];
  /** Options the command cannot do without (shown without brackets in its usage). */
  required?: OptionName[];
  /** Option help that differs from the common one. */
  optionHelp?: Partial<Record<OptionName, string>>;
}

export const COMMANDS: CommandSpec[] = [
  {
    name: 'sync',
    args: [],
    summary: 'fetch new mail from every source (or one) and apply its policies',
    details:
      'Each source is synced in turn and reported with its outcome: ok (done), more (stopped at a safe point:\n' +
      'time budget spent, a message set aside, or Ctrl-C; run sync again), paused (the inbox quota stopped\n' +
      'fetching), busy (another sync holds the source), disabled, FAILED (with the error). A first Ctrl-C stops\n' +
      'at a safe point, checkpointed, with the lease released; a second one quits at once.',
    options: ['source', 'json', 'budget-seconds'],
  },
  {
    name: 'plan',
    args: [],
    summary: 'what the next sync would fetch and delete, and why (changes nothing)',
    options: ['source', 'json'],
  },
  {
    name: 'audit',
    args: [],
    summary: 'the destructive actions done (upstream deletes, evictions), with subject and sha256',
    options: ['source', 'since', 'json'],
  },
  {
    name: 'inbox',
    args: [],
    summary: 'the merged inbox, newest first, a page at a time',
    options: ['source', 'limit', 'cursor', 'json'],
  },
  {
    name: 'export',
    args: [],
    summary: 'copy stored mail out as Maildir or mbox, byte for byte',
    details:
      'maildir: DIR/<id>/cur, one file per stored message, byte for byte; files already there are kept.\n' +
      'mbox: DIR/<id>.mbox, mboxrd ("From " lines in a message quoted with ">"), each message byte for byte\n' +
      'with its own line ends; an existing DIR/<id>.mbox is never overwritten.',
    options: ['format', 'out', 'source'],
    required: ['format', 'out'],
  },
  {
    name: 'serve',
    args: [],
    summary: 'the inbox in a browser, on 127.0.0.1 only (default port 8025)',
    details: 'Prints a start URL with a one-time token. Ctrl-C stops it.',
    options: ['port'],
    optionHelp: { port: 'the port (default 8025; 0 picks a free one)' },
  },
  {
    name: 'migrate',
    args: [],
    summary: 'move the mail of an older local store into the current one',
    details: '--from local-aws: the local store of earlier versions (DynamoDB Local and an S3 folder).',
    options: ['from', 'json'],
    required: ['from'],
    optionHelp: { from: 'the store to migrate from: local-aws' },
  },
  {
    name: 'sources list',
    args: [],
    summary: 'the sources: settings, policies, inbox counts, last run, set-aside messages',
    options: ['json'],
  },
  {
    name: 'sources test',
    args: ['ID'],
    summary: 'log in to a source and report TLS, capabilities, folders and quota (changes nothing)',
    options: ['json'],
  },
  {
    name: 'sources retry',
    args: ['ID'],
    summary: 'try set-aside messages again at the next sync',
    options: ['message'],
  },
  {
    name: 'sources add',
    args: ['ID'],
    summary: 'deployed Tributary: register a source (logs in first; saves nothing if that fails)',
    details:
      'A deployed Tributary (store {"mode": "aws", "stack": "TributaryService"}) keeps its sources in its table.\n' +
      'The password is asked for at the terminal (not echoed), or read with --password-stdin or\n' +
      '--password-env NAME; never on the command line.',
    options: [
      'protocol',
      'host',
      'user',
      ...SOURCE_SETTINGS.filter((o) => !['protocol', 'host', 'user'].includes(o)),
      'skip-test',
    ],
  },
  {
    name: 'sources update',
    args: ['ID'],
    summary: 'deployed Tributary: change a source; the password only with a password option',
    options: [...SOURCE_SETTINGS, 'ask-password', 'skip-test'],
  },
  {
    name: 'sources enable',
    args: ['ID'],
    summary: 'deployed Tributary: poll the source again',
    options: [],
  },
  {
    name: 'sources disable',
    args: ['ID'],
    summary: 'deployed Tributary: stop polling the source (its mail stays)',
    options: [],
  },
  {
    name: 'sources remove',
    args: ['ID'],
    summary: 'deployed Tributary: unregister the source and delete its password (its mail stays)',
    options: [],
  },
  {
    name: 'sources import',
    args: [],
    summary: "deployed Tributary: register a config file's sources, passwords included",
    options: ['from', 'replace'],
    required: ['from'],
  },
  {
    name: 'help',
    args: ['[COMMAND]'],
    summary: 'this help, or the help of one command',
    options: [],
  },
];

export function findCommand(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** The exit statuses, as main() returns them (one table for the help and the code). */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  interrupted: 130,
  terminated: 143,
} as const;

const EXIT_CODES = `EXIT CODES
  0    ok: every source synced (outcome ok, more, paused, busy or disabled), or the command did what it said
  1    a source FAILED (sync, plan), a login failed (sources test, add, update), a source was not imported,
       no such set-aside message (sources retry --message), the port is in use (serve), or a store error
  2    bad usage: an unknown command or option, a missing or bad argument, an unknown source id, or a
       config file (or source settings) missing or not valid
  130  stopped by Ctrl-C (SIGINT), also at a password prompt; 143 by SIGTERM (serve: 0, its normal stop)
`;

function optionLine(name: OptionName, help?: string): [string, string] {
  const o: OptionSpec = OPTIONS[name];
  const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.value ? ` ${o.value}` : ''}`;
  return [flag, help ?? o.help];
}

function table(rows: Array<[string, string]>, indent = '  '): string {
  const width = Math.min(34, Math.max(...rows.map(([a]) => a.length)));
  return rows
    .map(([a, b]) =>
      a.length > width
        ? `${indent}${a}\n${indent}${' '.repeat(width)}  ${b}`
        : `${indent}${a.padEnd(width)}  ${b}`,
    )
    .join('\n');
}

export function usageLine(c: CommandSpec): string {
  const words = ['tributary', c.name, ...c.args];
  for (const name of c.options) {
    const o: OptionSpec = OPTIONS[name];
    const word = `--${name}${o.value ? ` ${o.value}` : ''}`;
    words.push(c.required?.includes(name) ? word : `[${word}]`);
  }
  // Wrapped at 100 columns, the continuation indented under the command.
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > 98) {
      lines.push(line);
      line = `    ${w}`;
    } else line = line ? `${line} ${w}` : w;
  }
  lines.push(line);
  return lines.join('\n  ');
}

/** `tributary help`: every command with one line, the global options, where the config is found, the exit codes. */
export function topLevelHelp(): string {
  const commands = table(COMMANDS.map((c) => [[c.name, ...c.args].join(' '), c.summary]));
  const globals = table([...GLOBAL_OPTIONS, 'version' as const].map((o) => optionLine(o)));
  return `tributary: your mail accounts in one inbox

USAGE
  tributary [GLOBAL OPTIONS] COMMAND [ARGS] [OPTIONS]
  tributary help COMMAND       (or tributary COMMAND --help): the command's options

COMMANDS
${commands}

GLOBAL OPTIONS
${globals}

CONFIG FILE
  --config FILE, else $TRIBUTARY_CONFIG, else ./tributary.config.json when the current folder has one,
  else $XDG_CONFIG_HOME/tributary/config.json (~/.config/tributary/config.json when XDG_CONFIG_HOME is unset).

${EXIT_CODES}`;
}

/** `tributary help CMD` / `tributary CMD --help`. */
export function commandHelp(c: CommandSpec): string {
  const own = c.options.length
    ? `\nOPTIONS\n${table(c.options.map((o) => optionLine(o, c.optionHelp?.[o])))}\n`
    : '';
  const globals = table(GLOBAL_OPTIONS.map((o) => optionLine(o)));
  return `USAGE
  ${usageLine(c)}

${c.summary.charAt(0).toUpperCase()}${c.summary.slice(1)}.
${c.details ? `\n${c.details}\n` : ''}${own}
GLOBAL OPTIONS
${globals}

Exit codes: see "tributary help".
`;
}

/** `tributary help sources`: the source commands. */
export function groupHelp(group: string): string | undefined {
  const members = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  if (!members.length) return undefined;
  return `USAGE
  tributary ${group} SUBCOMMAND [ARGS] [OPTIONS]

SUBCOMMANDS
${table(members.map((c) => [[c.name, ...c.args].join(' '), c.summary]))}

"tributary help ${group} SUBCOMMAND" shows one's options.
`;
}

/** A mistake in how the command was called: a short message pointing at the command's help; exit status 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** The command it is about ("sync", "sources add"), for the pointer to its help. */
    public command?: string,
  ) {
    super(message);
  }
}

export interface ParsedCommand {
  /** The command as in COMMANDS ("sources test"), or undefined when none was given. */
  spec?: CommandSpec;
  /** `tributary sources --help`: the group asked about, with no subcommand. */
  group?: string;
  /** The positional arguments after the command's name. */
  args: string[];
  values: Record<string, string | boolean | undefined>;
  help: boolean;
  version: boolean;
}

/**
 * Reads argv: the command (the first positional, or the first two for `sources ...`), then checks that every option
 * is one the command takes, with a value when it needs one, and that there are no extra arguments. Throws
 * UsageError with a short message.
 */
export function parseCommandLine(argv: string[]): ParsedCommand {
  const options = Object.fromEntries(
    Object.entries(OPTIONS).map(([name, o]) => [
      name,
      { type: o.type, ...('short' in o && o.short ? { short: o.short } : {}) },
    ]),
  ) as Record<string, { type: 'string' | 'boolean'; short?: string }>;
  // Not strict: parseArgs's own messages name no command and suggest nothing; the checks below do.
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    options,
    allowPositionals: true,
    strict: false,
    tokens: true,
  });
  const help = values.help === true;
  const version = values.version === true;
  let spec: CommandSpec | undefined;
  let group: string | undefined;
  let rest = positionals;
  const [first, second] = positionals;
  if (first !== undefined) {
    if (COMMANDS.some((c) => c.name.startsWith(`${first} `))) {
      group = first;
      spec = second !== undefined ? findCommand(`${first} ${second}`) : undefined;
      if (!spec && !(help && second === undefined))
        throw new UsageError(
          second === undefined
            ? `needs a subcommand: ${COMMANDS.filter((c) => c.name.startsWith(`${first} `))
                .map((c) => c.name.slice(first.length + 1))
                .join(', ')}`
            : `unknown command "${first} ${second}"`,
          first,
        );
      rest = positionals.slice(2);
    } else {
      spec = findCommand(first);
      if (!spec) throw new UsageError(`unknown command "${first}"`);
      rest = positionals.slice(1);
    }
  }
  const commandName = spec?.name ?? first;
  if (help) return { spec, group, args: rest, values, help, version };
  const allowed = new Set<string>([...GLOBAL_OPTIONS, 'version', ...(spec?.options ?? [])]);
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const known = (OPTIONS as Record<string, OptionSpec>)[t.name];
    if (!known || !allowed.has(t.name))
      throw new UsageError(
        known && commandName === undefined ? `${t.rawName} needs a command` : `unknown option ${t.rawName}`,
        commandName,
      );
    if (known.type === 'string' && (t.value === undefined || (!t.inlineValue && /^-./.test(t.value))))
      throw new UsageError(
        `${t.rawName} needs a value${known.value ? ` (${known.value})` : ''}`,
        commandName,
      );
    if (known.type === 'boolean' && t.inlineValue)
      throw new UsageError(`${t.rawName} takes no value`, commandName);
  }
  if (spec && spec.name !== 'help') {
    const max = spec.args.length;
    const required = spec.args.filter((a) => !a.startsWith('[')).length;
    if (rest.length > max) throw new UsageError(`unexpected argument "${rest[max]}"`, spec.name);
    if (rest.length < required)
      throw new UsageError(`needs ${spec.args.slice(rest.length, required).join(' ')}`, spec.name);
  }
  return { spec, group, args: rest, values, help, version };
}

/** How a UsageError is shown: `tributary sync: unknown option --frobnicate (see "tributary help sync")`. */
export function formatUsageError(err: UsageError): string {
  const cmd = err.command;
  return `tributary${cmd ? ` ${cmd}` : ''}: ${err.message} (see "tributary help${cmd ? ` ${cmd}` : ''}")\n`;
}
