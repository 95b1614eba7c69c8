import fs from 'node:fs';
import { homedir, hostname } from 'node:os';
import path from 'node:path';
import { ConfigError, describeError, TributaryError } from '../core/errors';
import type { MessageRecord, Source, SourceRunReport } from '../core/model';
import type { Bytes } from '../core/ports';
import { defaultHolder, rawObjectKey, syncSource, type SyncOptions, type SyncProgress } from '../core/sync';
import { planSource, type SourcePlan } from '../core/plan';
import type { AuditRecord } from '../core/model';
import { loadConfig, type Config } from '../shared/config';
import { ConfiguredCredentials } from '../adapters/secrets/credentials';
import { makeConnector } from '../shared/connector';
import { openRuntime, silentLogger, type Runtime } from '../shared/runtime';
import { createDefaultConfig } from '../local/setup';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { PromptInterrupted, type SecretInput } from './password';
import {
  addSource,
  importSources,
  removeSource,
  setEnabled,
  updateSource,
  type AdminContext,
  type SourceFlags,
} from './sources-admin';
import { isRunning } from '../local/data-dir';
import { DEFAULT_PORT, PortInUseError, serve } from './serve';
import {
  commandHelp,
  EXIT,
  findCommand,
  formatUsageError,
  groupHelp,
  parseCommandLine,
  topLevelHelp,
  UsageError,
  type OptionName,
  type OPTIONS,
} from './help';
import { runMigrate } from './migrate';
import { checkSource } from './source-check';
import { displayWidth, fitToWidth, sanitize, truncateToWidth } from './text-width';
import { tracedConnector, tracedCredentials, tracedPort, VerboseLogger } from './verbose';

/** Exit status when the local data folder stays in use by another command (EX_TEMPFAIL: try again later). */

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  isTty: boolean;
  /** Where a password is read from (standard input; a prompt when it is a terminal). */
  input?: SecretInput;
  env?: NodeJS.ProcessEnv;
  /** The terminal's width, when standard output is one (the inbox cuts subjects to it). */
  columns?: number;
  /** Where relative paths start and ./tributary.config.json is looked for (default: the current folder). */
  cwd?: string;
}

const defaultIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  isTty: Boolean(process.stderr.isTTY),
  input: process.stdin,
  env: process.env,
  columns: process.stdout.isTTY ? process.stdout.columns : undefined,
};

/** The options as the command line gave them, checked (parseCommandLine): strings for values, true for flags. */
type Values = {
  [K in OptionName]?: (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean;
};

const SIGNAL_NUMBERS: Partial<Record<string, number>> = { SIGINT: 2, SIGTERM: 15 };

/** 128 + the signal's number, as shells report a command a signal stopped (130 for Ctrl-C). */
export function signalExitCode(signal: unknown): number {
  return 128 + (SIGNAL_NUMBERS[String(signal)] ?? 2);
}

/** The version in package.json (beside functions/ in a checkout, and in an installed or linked package). */
export function cliVersion(): string {
  const file = path.join(__dirname, '..', '..', 'package.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

/** The config file in the current folder, when there is one; the per-user one otherwise (see configFile). */
export const LOCAL_CONFIG_NAME = 'tributary.config.json';

/**
 * Which config file a command reads, as fetchmail (~/.fetchmailrc) and mbsync ($XDG_CONFIG_HOME/isyncrc) users
 * expect one to be found from any folder: `--config FILE`, else $TRIBUTARY_CONFIG, else ./tributary.config.json when
 * the current folder has one (a project folder, as before), else the per-user
 * $XDG_CONFIG_HOME/tributary/config.json (~/.config/tributary/config.json). A relative path in it (dataDir, caFile,
 * a secret file) starts at the config file's folder, wherever the command runs.
 */
export function configFile(
  explicit: string | undefined,
  env: NodeJS.ProcessEnv,
  cwd: string,
): { file: string; lookedAt?: string[] } {
  if (explicit !== undefined) return { file: path.resolve(cwd, explicit) };
  if (env.TRIBUTARY_CONFIG) return { file: path.resolve(cwd, env.TRIBUTARY_CONFIG) };
  const local = path.resolve(cwd, LOCAL_CONFIG_NAME);
  const home = env.HOME || homedir();
  const xdg =
    env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME)
      ? env.XDG_CONFIG_HOME
      : path.join(home, '.config');
  const user = path.join(xdg, 'tributary', 'config.json');
  if (fs.existsSync(local)) return { file: local };
  if (fs.existsSync(user)) return { file: user };
  return { file: local, lookedAt: [local, user] };
}

/**
 * The config, found as `configFile` says. `create` (`serve`, i.e. `npm start`): a first start on a machine with no
 * config writes one (the local store, no source; the page then opens on the form that adds one) where it looked
 * first, or where --config / TRIBUTARY_CONFIG point.
 */
function readConfig(explicit: string | undefined, io: Io, create = false): Config {
  const { file, lookedAt } = configFile(explicit, io.env ?? process.env, io.cwd ?? process.cwd());
  if (create && !fs.existsSync(file)) {
    createDefaultConfig(file);
    io.err(`note: no config yet: wrote ${file} (the local store, no source yet)\n`);
    return loadConfig(file);
  }
  if (lookedAt)
    throw new ConfigError(
      `no config file: looked for ${lookedAt.join(' and ')}; create one (see "Configuration" in the README), or point to one with --config FILE or TRIBUTARY_CONFIG`,
    );
  return loadConfig(file);
}

/**
 * The CLI as started from a shell (bin/tributary.cjs): SIGINT and SIGTERM stop the command at a safe point (a sync
 * stops as at the end of its time budget: checkpointed, lease released, the servers stopped), and a second signal
 * exits at once (the servers still stop: they watch this process; the lease expires by itself).
 */
export async function runFromShell(argv: string[]): Promise<number> {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      process.stderr.write(`\n${sig} again: quitting now\n`);
      process.exit(signalExitCode(sig));
    }
    process.stderr.write(
      `\n${sig === 'SIGINT' ? 'Ctrl-C' : sig}: stopping at a safe point (again to quit at once)\n`,
    );
    controller.abort(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await main(argv, defaultIo, controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function mb(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${(bytes / 1024).toFixed(1)} KB`;
}

function percentOf(used: number, limit: number): string {
  return `${((used / limit) * 100).toFixed(1)}%`;
}

function describePolicy(s: Source): string {
  const r = s.retention;
  const parts = [
    r.mode === 'delete-after-days' ? `retention delete-after-days ${r.days}` : `retention ${r.mode}`,
  ];
  if (s.upstreamQuota)
    parts.push(
      `upstream quota ${s.upstreamQuota.maxUsagePercent}% -> ${s.upstreamQuota.targetPercent}%${s.upstreamQuota.capacityBytes ? ` of ${mb(s.upstreamQuota.capacityBytes)}` : ''}`,
    );
  if (s.inboxQuota) {
    const q = s.inboxQuota;
    const limits = [
      q.maxMessages !== undefined ? `${q.maxMessages} messages` : '',
      q.maxBytes !== undefined ? mb(q.maxBytes) : '',
    ].filter(Boolean);
    parts.push(`inbox quota ${limits.join(' / ')} then ${q.onExceed}`);
  }
  return parts.join('; ');
}

/** The sources a command works on, and where they are listed (the config file, or a deployed stack's table). */
interface SourceSet {
  sources: Config['sources'];
  where: string;
}

function pickSources(set: SourceSet, id: string | undefined): Config['sources'] {
  if (!id) return set.sources;
  const found = set.sources.filter((s) => s.id === id);
  if (!found.length)
    throw new UsageError(
      `no source "${id}" in ${set.where}; known: ${set.sources.map((s) => s.id).join(', ') || '(none)'}`,
    );
  return found;
}

/**
 * Runs one CLI command; returns the exit status (EXIT in help.ts, as "tributary help" lists them: 0 ok, 1 a source
 * or the command failed, 2 bad usage or config, 75 the data folder is busy, 130 Ctrl-C at a password prompt, and
 * 128 + signal whenever `stop` was aborted with a signal's name).
 */
export async function main(argv: string[], io: Io = defaultIo, stop?: AbortSignal): Promise<number> {
  const ended = { byStop: false };
  const code = await runCommand(argv, io, stop, ended);
  return stop?.aborted && !ended.byStop ? signalExitCode(stop.reason) : code;
}

/**
 * `ended.byStop`: the command ends when `stop` is aborted, as its normal way to end (`serve`, a service: Ctrl-C and
 * SIGTERM are how it is stopped, so its status stays 0).
 */
async function runCommand(
  argv: string[],
  io: Io,
  stop: AbortSignal | undefined,
  ended: { byStop: boolean },
): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.err(formatUsageError(err));
    return EXIT.usage;
  }
  const { spec, args } = parsed;
  const values = parsed.values as Values;
  if (parsed.version) {
    io.out(`tributary ${cliVersion()}\n`);
    return EXIT.ok;
  }
  if (parsed.help) {
    io.out(spec ? commandHelp(spec) : ((parsed.group && groupHelp(parsed.group)) ?? topLevelHelp()));
    return EXIT.ok;
  }
  if (!spec) {
    io.err(topLevelHelp());
    return EXIT.usage;
  }
  if (spec.name === 'help') {
    if (!args.length) {
      io.out(topLevelHelp());
      return EXIT.ok;
    }
    const target = findCommand(args.join(' '));
    const text = target ? commandHelp(target) : args.length === 1 ? groupHelp(args[0]!) : undefined;
    if (!text) {
      io.err(formatUsageError(new UsageError(`no command "${args.join(' ')}"`)));
      return EXIT.usage;
    }
    io.out(text);
    return EXIT.ok;
  }
  const command = spec.name;
  const [arg] = args;
  let runtime: Runtime | undefined;
  const logger = values.verbose ? new VerboseLogger(io.err) : undefined;
  try {
    const config = readConfig(values.config, io, command === 'serve');
    logger?.debug(`config: ${config.file} (store: ${config.store.mode})`);
    const deployed = config.store.mode === 'aws' && config.store.stack !== undefined;
    const needsRuntime = async (): Promise<Runtime> => {
      if (runtime) return runtime;
      runtime = await openRuntime(config, logger ?? silentLogger);
      for (const note of runtime.notes) io.err(`note: ${note}\n`);
      if (logger) traceRuntime(runtime, logger);
      return runtime;
    };
    // A deployed Tributary's sources are in its table: reading them needs the store; a config's are at hand.
    const sourceSet = async (): Promise<SourceSet> => {
      if (!deployed) return { sources: config.sources, where: config.file };
      const r = await needsRuntime();
      const location = r.location;
      return {
        sources: r.sources,
        where: `the stack ${location.mode === 'aws' ? location.deployment?.stack : ''}`,
      };
    };
    switch (command) {
      case 'sync': {
        const set = await sourceSet();
        return await runSync(await needsRuntime(), pickSources(set, values.source), values, io, stop);
      }
      case 'sources list': {
        const set = await sourceSet();
        return await listSources(await needsRuntime(), set, values.json, io);
      }
      case 'sources test': {
        const [source] = pickSources(await sourceSet(), arg);
        return await testSource(source!, runtime?.ssm, values.json, io, logger);
      }
      case 'sources retry': {
        const [source] = pickSources(await sourceSet(), arg);
        return await retrySetAside(await needsRuntime(), source!, values.message, io);
      }
      case 'sources add':
      case 'sources update':
      case 'sources remove':
      case 'sources enable':
      case 'sources disable':
      case 'sources import': {
        const sub = command.slice('sources '.length);
        if (!deployed)
          throw new UsageError(
            `"sources ${sub}" changes a deployed Tributary (a config whose store is {"mode": "aws", "stack": "TributaryService"}); here the sources are the ones listed in ${config.file}: edit that file`,
          );
        if (sub === 'import' && !values.from)
          throw new UsageError('needs --from FILE: a config file whose sources to import');
        return await runAdmin(await needsRuntime(), sub, arg, values, io);
      }
      case 'plan': {
        const set = await sourceSet();
        return await showPlan(await needsRuntime(), pickSources(set, values.source), values.json, io);
      }
      case 'audit': {
        const set = await sourceSet();
        return await showAudit(await needsRuntime(), pickSources(set, values.source), values, io);
      }
      case 'inbox': {
        const set = await sourceSet();
        return await showInbox(await needsRuntime(), set, values, io);
      }
      case 'export': {
        const set = await sourceSet();
        return await exportMail(await needsRuntime(), set, values, io, stop);
      }
      case 'migrate': {
        if (!values.from)
          throw new UsageError('needs --from STORE (local-aws: the local store of earlier versions)');
        return await runMigrate(config, { from: values.from, json: values.json }, io);
      }
      case 'serve': {
        const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new UsageError('--port must be a port number (1-65535; 0 picks a free one)');
        try {
          await serve({ port, io, stop, openRuntime: needsRuntime });
        } catch (err) {
          if (!(err instanceof PortInUseError)) throw err;
          io.err(`${err.message}\n`);
          return EXIT.failed;
        }
        ended.byStop = true;
        return EXIT.ok;
      }
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      err.command ??= command;
      io.err(formatUsageError(err));
      return EXIT.usage;
    }
    if (err instanceof PromptInterrupted) {
      io.err(`${err.message}: nothing done\n`);
      return EXIT.interrupted;
    }
    const d = describeError(err);
    io.err(`error [${d.code}]: ${d.message}\n`);
    return err instanceof TributaryError && err.code === 'CONFIG_INVALID' ? EXIT.usage : EXIT.failed;
  } finally {
    await runtime?.close();
  }
}

/** --verbose: the engine's upstream sessions, credentials and store steps logged (see verbose.ts). */
function traceRuntime(runtime: Runtime, logger: VerboseLogger): void {
  const { deps } = runtime;
  const index = tracedPort(runtime.index, logger, 'index');
  const store = tracedPort(runtime.store, logger, 'store');
  const connector = tracedConnector(runtime.connector, logger);
  runtime.deps = {
    ...deps,
    connector: deps.connector === runtime.connector ? connector : tracedConnector(deps.connector, logger),
    credentials: tracedCredentials(deps.credentials, logger),
    store: deps.store === runtime.store ? store : tracedPort(deps.store, logger, 'store'),
    index: deps.index === runtime.index ? index : tracedPort(deps.index, logger, 'index'),
  };
  runtime.index = index;
  runtime.store = store;
  runtime.connector = connector;
}

/** `sources add|update|remove|enable|disable|import` on a deployed Tributary (functions/cli/sources-admin.ts). */
async function runAdmin(
  runtime: Runtime,
  sub: string,
  id: string | undefined,
  values: SourceFlags & { from?: string; replace?: boolean },
  io: Io,
): Promise<number> {
  const location = runtime.location;
  if (location.mode !== 'aws' || !location.deployment || !runtime.registry || !runtime.ssm)
    throw new Error('unreachable: the admin commands need a deployed store');
  const ctx: AdminContext = {
    registry: runtime.registry,
    ssm: runtime.ssm,
    index: runtime.index,
    connector: runtime.connector,
    secretsPrefix: location.deployment.secretsPrefix,
    stack: location.deployment.stack,
    io: { out: io.out, err: io.err, input: io.input ?? process.stdin, env: io.env ?? process.env },
    now: () => Date.now(),
    cwd: process.cwd(),
  };
  switch (sub) {
    case 'add':
      return addSource(ctx, id!, values);
    case 'update':
      return updateSource(ctx, id!, values);
    case 'remove':
      return removeSource(ctx, id!);
    case 'enable':
    case 'disable':
      return setEnabled(ctx, id!, sub === 'enable');
    default:
      return importSources(ctx, values.from!, values.replace ?? false);
  }
}

/** The lease of a source as a busy answer tells it: who, until when, and whether it is stale. */
interface LeaseView {
  holder: string;
  until: string;
  stale: boolean;
  why?: string;
}

/** A holder is `host:pid:random` (defaultHolder): a pid on this machine that no longer runs holds nothing. */
function holderGone(holder: string): number | undefined {
  const parts = holder.split(':');
  const pid = Number(parts[parts.length - 2]);
  const host = parts.slice(0, -2).join(':');
  return host === hostname() && Number.isInteger(pid) && pid > 0 && !isRunning({ pid }) ? pid : undefined;
}

async function leaseView(runtime: Runtime, sourceId: string): Promise<LeaseView | undefined> {
  const lease = await runtime.index.leaseState(sourceId).catch(() => undefined);
  if (!lease) return undefined;
  const now = Date.now();
  const gone = holderGone(lease.holder);
  return {
    holder: lease.holder,
    until: new Date(lease.expiresAt).toISOString(),
    stale: lease.expiresAt <= now || gone !== undefined,
    why:
      lease.expiresAt <= now
        ? 'expired'
        : gone !== undefined
          ? `pid ${gone} is not running on this machine`
          : undefined,
  };
}

function describeBusy(sourceId: string, lease: LeaseView | undefined): string {
  if (!lease) return `${sourceId}: busy: another sync holds this source's lease; nothing done`;
  const until = new Date(lease.until);
  const at = until.toLocaleTimeString();
  if (!lease.stale) {
    const secs = Math.max(0, Math.ceil((until.getTime() - Date.now()) / 1000));
    return `${sourceId}: busy: another sync (${lease.holder}) holds this source's lease until ${at} (${secs} s from now); nothing done`;
  }
  return lease.why === 'expired'
    ? `${sourceId}: busy: the lease held by ${lease.holder} expired at ${at}: it is stale, the next sync takes it over; nothing done`
    : `${sourceId}: busy: the lease held by ${lease.holder} is stale (${lease.why}) but runs until ${at}; sync again after that; nothing done`;
}

/**
 * A lease a killed command left (Ctrl-C twice, SIGKILL, a crash) is released (with its own holder and fence, so
 * nothing else could be released) instead of answering busy for up to a minute: when this process owns the store
 * (`exclusive`), or when the holder is a process of this machine that no longer runs (holderGone; a pid reused by
 * another process keeps the lease, the safe side).
 */
async function releaseLeftLease(runtime: Runtime, source: Source): Promise<string | undefined> {
  if (!source.enabled) return undefined;
  const lease = await runtime.index.leaseState(source.id);
  if (!lease || lease.expiresAt <= Date.now()) return undefined;
  if (!runtime.exclusive && holderGone(lease.holder) === undefined) return undefined;
  await runtime.index.releaseLease(lease);
  return `took over the lease ${lease.holder} left when it stopped without releasing it`;
}

async function runSync(
  runtime: Runtime,
  sources: Source[],
  values: { json?: boolean; 'budget-seconds'?: string },
  io: Io,
  stop?: AbortSignal,
): Promise<number> {
  const budgetSeconds = values['budget-seconds'] ? Number(values['budget-seconds']) : 14 * 60;
  if (!Number.isFinite(budgetSeconds) || budgetSeconds <= 0)
    throw new UsageError('--budget-seconds must be a positive number');
  const holder = defaultHolder();
  const reports: Array<SourceRunReport & { lease?: LeaseView; interrupted?: string }> = [];
  const notStarted: string[] = [];
  for (const source of sources) {
    if (stop?.aborted) {
      notStarted.push(source.id);
      continue;
    }
    const tookOver = await releaseLeftLease(runtime, source);
    const started = Date.now();
    let lastPrint = 0;
    const onProgress = (p: SyncProgress) => {
      if (values.json || !io.isTty || Date.now() - lastPrint < 250) return;
      lastPrint = Date.now();
      const secs = Math.max((Date.now() - started) / 1000, 0.001);
      io.err(
        `\r${source.id}: ${p.fetched}${p.planned !== undefined ? `/${p.planned}` : ''} messages, ${mb(p.fetchedBytes)} (${mb(p.fetchedBytes / secs)}/s)   `,
      );
    };
    const options: SyncOptions = { deadline: Date.now() + budgetSeconds * 1000, holder, onProgress };
    // A signal moves the deadline to now: the run stops at its next safe point exactly as when --budget-seconds
    // runs out (what is in flight commits, the checkpoint is saved, the lease released).
    const stopNow = () => {
      options.deadline = Date.now();
    };
    stop?.addEventListener('abort', stopNow);
    let report: SourceRunReport & { lease?: LeaseView; interrupted?: string };
    try {
      report = await syncSource(runtime.deps, source, options);
    } finally {
      stop?.removeEventListener('abort', stopNow);
    }
    if (tookOver) report.notes.push(tookOver);
    if (report.outcome === 'busy') report.lease = await leaseView(runtime, source.id);
    if (stop?.aborted && report.outcome === 'more') report.interrupted = String(stop.reason);
    reports.push(report);
    if (!values.json) {
      if (io.isTty) io.err('\r\x1b[K');
      io.out(formatReport(report) + '\n');
    }
  }
  if (notStarted.length && !values.json)
    io.out(`not started (${String(stop?.reason)}): ${notStarted.join(', ')}\n`);
  const failed = reports.filter((r) => r.outcome === 'failed').length;
  if (values.json) {
    io.out(
      JSON.stringify({ sources: reports, ...(notStarted.length ? { notStarted } : {}) }, null, 2) + '\n',
    );
  } else if (reports.length > 1) {
    const fetched = reports.reduce((n, r) => n + r.fetched, 0);
    const bytes = reports.reduce((n, r) => n + r.fetchedBytes, 0);
    io.out(`${reports.length} sources: ${fetched} new messages (${mb(bytes)}), ${failed} failed\n`);
  }
  return failed ? 1 : 0;
}

/**
 * One line per source, starting with the outcome word the JSON report has ("outcome"): ok, more, paused, busy,
 * disabled, or FAILED (upper case, to stand out; "failed" in JSON).
 */
export function formatReport(r: SourceRunReport & { lease?: LeaseView; interrupted?: string }): string {
  const secs = r.durationMs / 1000;
  const rate = secs > 0 ? `, ${mb(r.fetchedBytes / secs)}/s` : '';
  switch (r.outcome) {
    case 'failed':
      return `${r.sourceId}: FAILED [${r.error?.code}] ${r.error?.message}`;
    case 'busy':
      return describeBusy(r.sourceId, r.lease);
    case 'disabled':
      return `${r.sourceId}: disabled in the config; skipped`;
    default: {
      const why =
        r.outcome === 'more'
          ? r.interrupted
            ? ` (stopped by ${r.interrupted} at a safe point: checkpointed, lease released; run sync again to go on)`
            : r.notes.some((n) => n.includes('set aside after'))
              ? ' (a message was set aside; run sync again to go on with the rest)'
              : ' (time budget spent: run sync again to go on)'
          : r.outcome === 'paused'
            ? ' (the inbox quota stopped fetching; the rest stays upstream)'
            : '';
      const actions = [
        r.deletedUpstream ? `${r.deletedUpstream} deleted upstream` : '',
        r.evicted ? `${r.evicted} evicted from the inbox` : '',
        r.setAside ? `${r.setAside} set aside (see "sources list")` : '',
        r.upstreamUsage
          ? `upstream ${percentOf(r.upstreamUsage.usedBytes, r.upstreamUsage.limitBytes)} -> ${percentOf(r.upstreamUsage.afterBytes, r.upstreamUsage.limitBytes)}`
          : '',
      ]
        .filter(Boolean)
        .join(', ');
      const notes = r.notes
        .filter((n) => !n.includes('time budget'))
        .map((n) => `\n  note: ${n}`)
        .join('');
      return `${r.sourceId}: ${r.outcome}, ${r.fetched} new message${r.fetched === 1 ? '' : 's'} (${mb(r.fetchedBytes)}${rate}) in ${secs.toFixed(1)} s${actions ? `; ${actions}` : ''}${why}${notes}`;
    }
  }
}

async function listSources(
  runtime: Runtime,
  set: SourceSet,
  json: boolean | undefined,
  io: Io,
): Promise<number> {
  const rows = [];
  // A deployed Tributary's schedule: when the service polls each source next (and whether it is backing off).
  const schedules = new Map((await runtime.registry?.list())?.map((e) => [e.source.id, e.schedule] as const));
  for (const s of set.sources) {
    const summary = await runtime.index.summary(s.id);
    const schedule = schedules.get(s.id);
    rows.push({
      id: s.id,
      protocol: s.protocol,
      server: `${s.host}:${s.port} (${s.tls})`,
      user: s.user,
      folders: s.folders,
      enabled: s.enabled,
      retention: s.retention,
      upstreamQuota: s.upstreamQuota ?? null,
      inboxQuota: s.inboxQuota ?? null,
      policy: describePolicy(s),
      inbox: { messages: summary.messages, bytes: summary.bytes },
      upstreamUsage: summary.lastRun?.upstreamUsage ?? null,
      pendingActions: (await runtime.index.pendingActions(s.id)).length,
      setAside: (await runtime.index.messageFailures(s.id))
        .filter((f) => f.setAside || f.retry)
        .map((f) => ({
          identity: f.identity,
          attempts: f.attempts,
          retry: f.retry ?? false,
          error: f.error,
          lastAt: f.lastAt,
        })),
      lastRun: summary.lastRun,
      consecutiveFailures: summary.consecutiveFailures,
      ...(schedule
        ? {
            nextRun: {
              at: new Date(Math.max(schedule.nextDueAt, schedule.backoffUntil ?? 0)).toISOString(),
              backingOff: (schedule.backoffUntil ?? 0) > Date.now(),
            },
          }
        : {}),
    });
  }
  if (json) {
    io.out(JSON.stringify({ sources: rows }, null, 2) + '\n');
    return 0;
  }
  if (!rows.length) io.out(`no sources in ${set.where}\n`);
  for (const r of rows) {
    const run = r.lastRun;
    const did = run
      ? [
          run.deletedUpstream ? `${run.deletedUpstream} deleted upstream` : '',
          run.evicted ? `${run.evicted} evicted` : '',
        ].filter(Boolean)
      : [];
    const last = run
      ? `${run.at} ${run.outcome}${did.length ? ` (${did.join(', ')})` : ''}${run.error ? ` [${run.error.code}] ${run.error.message}` : ''}` +
        (run.notes ?? []).map((n) => `\n    note: ${n}`).join('')
      : 'never synced';
    io.out(
      `${r.id}${r.enabled ? '' : ' (disabled)'}\n` +
        `  ${r.protocol} ${r.server} user ${r.user}${r.protocol === 'imap' ? ` folders ${r.folders.join(', ')}` : ''}\n` +
        `  policy: ${r.policy}\n` +
        `  inbox: ${r.inbox.messages} messages, ${mb(r.inbox.bytes)}${r.inboxQuota ? ` (limit: ${[r.inboxQuota.maxMessages !== undefined ? `${r.inboxQuota.maxMessages} messages` : '', r.inboxQuota.maxBytes !== undefined ? mb(r.inboxQuota.maxBytes) : ''].filter(Boolean).join(', ')})` : ''}\n` +
        `  upstream usage: ${r.upstreamUsage ? `${mb(r.upstreamUsage.afterBytes)} of ${mb(r.upstreamUsage.limitBytes)} (${percentOf(r.upstreamUsage.afterBytes, r.upstreamUsage.limitBytes)}) after the last run` : r.upstreamQuota ? 'not measured yet' : 'not tracked (no upstream quota policy)'}\n` +
        (r.pendingActions ? `  interrupted actions to resolve at the next sync: ${r.pendingActions}\n` : '') +
        (r.setAside.length
          ? `  set aside (kept upstream, not fetched; "tributary sources retry ${r.id}" tries again):\n` +
            r.setAside
              .map(
                (f) =>
                  `    ${f.identity}: ${f.retry ? 'to be retried at the next sync' : `${f.attempts} failed attempts, the last ${f.lastAt}`} [${f.error.code}] ${f.error.message}\n`,
              )
              .join('')
          : '') +
        `  last run: ${last}\n` +
        (r.nextRun
          ? `  next run: ${r.nextRun.at}${!r.enabled ? ' (disabled: not polled)' : r.nextRun.backingOff ? ` (backing off after ${r.consecutiveFailures} failed run${r.consecutiveFailures === 1 ? '' : 's'})` : ''}\n`
          : ''),
    );
  }
  return 0;
}

/** Asks the next sync to try set-aside messages of a source again (all, or one by its identity). */
async function retrySetAside(
  runtime: Runtime,
  source: Source,
  identity: string | undefined,
  io: Io,
): Promise<number> {
  const marked = await runtime.index.retryMessages(
    source.id,
    identity === undefined ? undefined : [identity],
  );
  if (identity !== undefined && marked === 0) {
    io.err(`${source.id}: no set-aside message ${identity} (see "tributary sources list")\n`);
    return 1;
  }
  io.out(
    `${source.id}: ${marked} set-aside message${marked === 1 ? '' : 's'} will be tried again at the next sync\n`,
  );
  return 0;
}

async function testSource(
  source: Config['sources'][number],
  ssm: SSMClient | undefined,
  json: boolean | undefined,
  io: Io,
  logger: VerboseLogger | undefined,
): Promise<number> {
  // No store needed (but for a deployed Tributary's list of sources): this only talks to the upstream server.
  let credentials: ConfiguredCredentials | ReturnType<typeof tracedCredentials> = new ConfiguredCredentials(
    new Map([[source.id, source.secret]]),
    ssm,
  );
  let connector = makeConnector(logger);
  if (logger) {
    credentials = tracedCredentials(credentials, logger);
    connector = tracedConnector(connector, logger);
  }
  const { report, lines } = await checkSource(source, await credentials.password(source), connector);
  io.out(json ? JSON.stringify(report, null, 2) + '\n' : lines.join('\n') + '\n');
  return EXIT.ok;
}

/** A word as a POSIX shell reads it back: as is when it is safe, else in single quotes. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The inbox's text columns: date, source, sender (cut with "…" to their width), then the subject. */
const INBOX_COLUMNS = { date: 16, source: 12, from: 28 } as const;

/** One message as a line of `tributary inbox`, aligned by terminal columns (CJK and emoji count two). */
export function inboxLine(m: MessageRecord, columns?: number): string {
  const from = sanitize(m.metadata.from?.name || m.metadata.from?.address || '(unknown sender)');
  const attachments = m.metadata.hasAttachments ? '  [attachments]' : '';
  const start = `${m.sortDate.slice(0, 16).replace('T', ' ')}  ${fitToWidth(m.sourceId, INBOX_COLUMNS.source)} ${fitToWidth(from, INBOX_COLUMNS.from)} `;
  const subject = sanitize(m.metadata.subject ?? '(no subject)');
  // On a terminal the subject is cut to what is left of its width, so that a line stays one line.
  const room = columns ? columns - displayWidth(start) - attachments.length : undefined;
  return `${start}${room !== undefined ? truncateToWidth(subject, Math.max(room, 10)) : subject}${attachments}`;
}

async function showInbox(runtime: Runtime, set: SourceSet, values: Values, io: Io): Promise<number> {
  if (values.source) pickSources(set, values.source);
  const limit = values.limit ? Number(values.limit) : 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new UsageError('--limit must be a whole number from 1 to 1000');
  const page = await runtime.index.listInbox({ sourceId: values.source, limit, cursor: values.cursor });
  if (values.json) {
    io.out(
      JSON.stringify({ messages: page.items.map(inboxView), cursor: page.cursor ?? null }, null, 2) + '\n',
    );
    return EXIT.ok;
  }
  for (const m of page.items) {
    io.out(`${inboxLine(m, io.columns)}\n`);
    // One stored message that came through several places (two folders, two accounts) says where.
    if (m.via && m.via.length > 1)
      io.out(`${' '.repeat(18)}via ${m.via.map((v) => `${v.sourceId} ${v.identity}`).join(', ')}\n`);
  }
  if (!page.items.length) io.out('the inbox is empty\n');
  if (page.cursor) io.out(`more: ${nextPageCommand(values, page.cursor)}\n`);
  return EXIT.ok;
}

/** The command that shows the next page: this one's --config, --source and --limit, with the new cursor. */
export function nextPageCommand(values: Pick<Values, 'config' | 'source' | 'limit'>, cursor: string): string {
  const words = ['tributary', 'inbox'];
  if (values.config !== undefined) words.push('--config', values.config);
  if (values.source !== undefined) words.push('--source', values.source);
  if (values.limit !== undefined) words.push('--limit', values.limit);
  // A value that starts with "-" goes with its option, "--cursor=-x", or it would read as an option.
  return [
    ...words.map(shellWord),
    cursor.startsWith('-') ? shellWord(`--cursor=${cursor}`) : `--cursor ${shellWord(cursor)}`,
  ].join(' ');
}

function inboxView(m: MessageRecord) {
  return {
    sourceId: m.sourceId,
    identity: m.identity,
    date: m.sortDate,
    from: m.metadata.from,
    to: m.metadata.to,
    subject: m.metadata.subject,
    snippet: m.metadata.snippet,
    messageId: m.metadata.messageId,
    hasAttachments: m.metadata.hasAttachments,
    size: m.object.size,
    sha256: m.object.sha256,
    seen: m.seen,
    ...(m.via && m.via.length > 1 ? { via: m.via } : {}),
  };
}

async function readAll(body: Bytes): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

/**
 * The Maildir file name of a stored message: its fetch time, then what makes it unique, the source and the
 * identity-derived part of its object key (two stored messages with the same bytes fetched in the same second are
 * still two files), then the flags. The part before ":2," is stable across exports: it tells a file already there.
 */
export function maildirName(
  sourceId: string,
  m: Pick<MessageRecord, 'fetchedAt' | 'identity' | 'seen'>,
): string {
  const time = Math.floor(Date.parse(m.fetchedAt) / 1000);
  // Named by the upstream identity, not by the object: identical messages share one object (decision 0007) but
  // are files of their own.
  const key = path
    .basename(rawObjectKey(sourceId, m.identity))
    .replace(/\.eml$/, '')
    .replace(/[^A-Za-z0-9_-]/g, '_');
  return `${time}.${sourceId}_${key}.tributary:2,${m.seen ? 'S' : ''}`;
}

const maildirBase = (name: string) => name.split(':2,')[0]!;

/**
 * Export writes new files only: a Maildir file is written in tmp/ and linked into cur/ (link() fails rather than
 * replace an existing name: the Maildir way of delivering without overwriting), an mbox is written to a temporary
 * name and linked to DIR/<id>.mbox at the end. What is already there is kept and counted apart.
 */
async function exportMail(
  runtime: Runtime,
  set: SourceSet,
  values: { format?: string; out?: string; source?: string },
  io: Io,
  stop?: AbortSignal,
): Promise<number> {
  if (values.format !== 'maildir' && values.format !== 'mbox')
    throw new UsageError('--format must be "maildir" or "mbox"');
  if (!values.out) throw new UsageError('--out DIR is required');
  const outDir = path.resolve(values.out);
  const sources = pickSources(set, values.source);
  if (values.format === 'mbox') {
    const existing = sources.map((s) => path.join(outDir, `${s.id}.mbox`)).filter((f) => fs.existsSync(f));
    if (existing.length)
      throw new UsageError(
        `${existing.join(', ')} already exist${existing.length === 1 ? 's' : ''}: export never overwrites a file; move ${existing.length === 1 ? 'it' : 'them'} away or choose another --out`,
      );
  }
  let total = 0;
  for (const source of sources) {
    if (stop?.aborted) break;
    const result =
      values.format === 'maildir'
        ? await exportMaildir(runtime, source.id, path.join(outDir, source.id), stop)
        : await exportMbox(runtime, source.id, path.join(outDir, `${source.id}.mbox`), stop);
    io.out(
      `${source.id}: ${result.written} message${result.written === 1 ? '' : 's'} written to ${result.where}${result.kept ? `; ${result.kept} already there, kept as they were` : ''}${stop?.aborted ? ' (interrupted)' : ''}\n`,
    );
    total += result.written;
  }
  io.out(`${total} message${total === 1 ? '' : 's'} written\n`);
  return 0;
}

async function exportMaildir(
  runtime: Runtime,
  sourceId: string,
  dir: string,
  stop?: AbortSignal,
): Promise<{ written: number; kept: number; where: string }> {
  for (const sub of ['cur', 'new', 'tmp'])
    fs.mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o700 });
  const present = new Set(
    ['cur', 'new'].flatMap((sub) => fs.readdirSync(path.join(dir, sub)).map(maildirBase)),
  );
  let written = 0;
  let kept = 0;
  for await (const m of runtime.index.sourceMessages(sourceId)) {
    if (stop?.aborted) break;
    const name = maildirName(sourceId, m);
    if (present.has(maildirBase(name))) {
      kept++;
      continue;
    }
    const raw = await readAll(await runtime.store.get(m.object.key));
    const tmp = path.join(dir, 'tmp', `${maildirBase(name)}.${process.pid}`);
    fs.writeFileSync(tmp, raw, { flag: 'wx', mode: 0o600 });
    try {
      fs.linkSync(tmp, path.join(dir, 'cur', name));
      written++;
      present.add(maildirBase(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      kept++;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  return { written, kept, where: dir };
}

async function exportMbox(
  runtime: Runtime,
  sourceId: string,
  file: string,
  stop?: AbortSignal,
): Promise<{ written: number; kept: number; where: string }> {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'wx', 0o600);
  let written = 0;
  try {
    for await (const m of runtime.index.sourceMessages(sourceId)) {
      if (stop?.aborted) break;
      fs.writeSync(fd, mboxEntry(m, await readAll(await runtime.store.get(m.object.key))));
      written++;
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    if (stop?.aborted) return { written: 0, kept: 0, where: `${file} (nothing: interrupted)` };
    fs.linkSync(tmp, file); // fails rather than replace a file that appeared meanwhile
    return { written, kept: 0, where: file };
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // closed above
    }
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * mboxrd: a From_ line, then the message with every `>*From ` line quoted by one more `>`, then a blank line. The
 * message keeps its bytes and its own line ends; the From_ line and the blank line end the way the message's first
 * line does (CRLF for mail as IMAP and POP3 serve it, and for a message with no line end at all), so a file of
 * CRLF mail is CRLF throughout.
 */
export function mboxEntry(m: Pick<MessageRecord, 'fetchedAt' | 'metadata'>, raw: Buffer): Buffer {
  const sender = (m.metadata.from?.address ?? 'MAILER-DAEMON').replace(/\s/g, '') || 'MAILER-DAEMON';
  const when = new Date(m.fetchedAt)
    .toUTCString()
    .replace(/^(\w+), (\d+) (\w+) (\d+) ([\d:]+) GMT$/, '$1 $3 $2 $5 $4');
  const firstLf = raw.indexOf(0x0a);
  const eol = firstLf === 0 || (firstLf > 0 && raw[firstLf - 1] !== 0x0d) ? '\n' : '\r\n';
  const parts: Buffer[] = [Buffer.from(`From ${sender} ${when}${eol}`)];
  let start = 0;
  while (start < raw.length) {
    let end = raw.indexOf(0x0a, start);
    end = end === -1 ? raw.length : end + 1;
    const line = raw.subarray(start, end);
    let i = 0;
    while (i < line.length && line[i] === 0x3e) i++;
    if (line.subarray(i, i + 5).toString('latin1') === 'From ') parts.push(Buffer.from('>'));
    parts.push(line);
    start = end;
  }
  if (raw.length && raw[raw.length - 1] !== 0x0a) parts.push(Buffer.from(eol));
  parts.push(Buffer.from(eol));
  return Buffer.concat(parts);
}

async function showPlan(
  runtime: Runtime,
  sources: Source[],
  json: boolean | undefined,
  io: Io,
): Promise<number> {
  const plans: Array<SourcePlan | { sourceId: string; error: { code: string; message: string } }> = [];
  let failed = 0;
  for (const source of sources) {
    if (!source.enabled) {
      if (!json) io.out(`${source.id}: disabled in the config; the sync skips it\n`);
      continue;
    }
    try {
      const plan = await planSource(runtime.deps, source);
      plans.push(plan);
      if (!json) io.out(formatPlan(plan));
    } catch (err) {
      failed++;
      const d = describeError(err);
      plans.push({ sourceId: source.id, error: { code: d.code, message: d.message } });
      if (!json) io.out(`${source.id}: cannot plan: [${d.code}] ${d.message}\n`);
    }
  }
  if (json) io.out(JSON.stringify({ plans }, null, 2) + '\n');
  return failed ? 1 : 0;
}

export function formatPlan(p: SourcePlan): string {
  const lines = [`${p.sourceId}: the next sync would`];
  const bytes = (list: Array<{ size: number }>) => mb(list.reduce((n, m) => n + m.size, 0));
  lines.push(`  fetch ${p.fetch.length} new message(s) (${bytes(p.fetch)})`);
  if (p.leftByPause) lines.push(`  leave ${p.leftByPause} upstream: the inbox quota pauses this source`);
  lines.push(`  delete ${p.deletes.length} upstream${p.deletes.length ? ` (${bytes(p.deletes)})` : ''}`);
  for (const d of p.deletes) lines.push(`    ${d.identity}  ${mb(d.size)}  ${d.policy}: ${d.why}`);
  if (p.evictions.length || p.inbox.now.messages !== p.inbox.after.messages) {
    lines.push(`  evict ${p.evictions.length} stored copie(s) (${bytes(p.evictions)})`);
    for (const e of p.evictions) lines.push(`    ${e.identity}  ${mb(e.size)}  ${e.why}`);
  }
  if (p.upstreamUsage) {
    const u = p.upstreamUsage;
    lines.push(
      `  upstream usage ${mb(u.usedBytes)} of ${mb(u.limitBytes)} (${percentOf(u.usedBytes, u.limitBytes)})${u.afterBytes !== undefined ? ` -> ${percentOf(u.afterBytes, u.limitBytes)}` : ''}`,
    );
  }
  if (p.pendingActions) lines.push(`  first resolve ${p.pendingActions} action(s) an interrupted run left`);
  for (const n of p.notes) lines.push(`  note: ${n}`);
  return lines.join('\n') + '\n';
}

/**
 * The subject of each audited message, from the stored records (the index keeps the metadata with each message,
 * not with the audit trail): one pass over the messages of each source that has audit records, which stops as soon as
 * every target is found. A target no longer stored (an evicted copy) has no subject.
 */
async function auditSubjects(
  runtime: Runtime,
  records: AuditRecord[],
): Promise<Map<string, string | undefined>> {
  const wanted = new Map<string, Set<string>>();
  for (const r of records) {
    const set = wanted.get(r.sourceId) ?? new Set<string>();
    set.add(r.target);
    wanted.set(r.sourceId, set);
  }
  const subjects = new Map<string, string | undefined>();
  for (const [sourceId, targets] of wanted) {
    let left = targets.size;
    for await (const m of runtime.index.sourceMessages(sourceId)) {
      if (!targets.has(m.identity)) continue;
      subjects.set(`${sourceId}\u0000${m.identity}`, m.metadata.subject ?? '');
      if (--left === 0) break;
    }
  }
  return subjects;
}

/** The subject column of an audit line: quoted, one line, cut at 40 columns. */
function auditSubject(subject: string | undefined): string {
  if (subject === undefined) return '(no longer stored)';
  if (!subject) return '(no subject)';
  return `"${truncateToWidth(sanitize(subject), 40)}"`;
}

async function showAudit(
  runtime: Runtime,
  sources: Source[],
  values: { since?: string; json?: boolean },
  io: Io,
): Promise<number> {
  let since: string | undefined;
  if (values.since) {
    const t = Date.parse(values.since);
    if (Number.isNaN(t))
      throw new UsageError('--since must be a date, e.g. 2026-11-01 or 2026-11-01T12:00:00Z');
    since = new Date(t).toISOString();
  }
  const records: AuditRecord[] = [];
  for (const source of sources) {
    for await (const r of runtime.index.auditTrail(source.id, since)) records.push(r);
  }
  records.sort((a, b) => a.id.localeCompare(b.id));
  const subjects = records.length
    ? await auditSubjects(runtime, records)
    : new Map<string, string | undefined>();
  const subjectOf = (r: AuditRecord) => subjects.get(`${r.sourceId}\u0000${r.target}`);
  if (values.json) {
    // The records as stored, with the subject beside them (null when the message is no longer stored).
    const audit = records.map((r) => ({ ...r, subject: subjectOf(r) ?? null }));
    io.out(JSON.stringify({ audit }, null, 2) + '\n');
    return EXIT.ok;
  }
  if (!records.length) io.out(`no destructive action recorded${since ? ` since ${since}` : ''}\n`);
  for (const r of records) {
    const usage =
      r.usageBefore !== undefined
        ? ` usage ${mb(r.usageBefore)}${r.usageAfter !== undefined ? ` -> ${mb(r.usageAfter)}` : ''}`
        : '';
    io.out(
      `${r.at}  ${r.sourceId}  ${r.action} ${r.state}  ${r.identity}  ${auditSubject(subjectOf(r))}  ${mb(r.object.size)} sha256 ${r.object.sha256.slice(0, 12)}  ${r.policy}: ${r.why}${usage}${r.note ? ` (${r.note})` : ''}\n`,
    );
  }
  return EXIT.ok;
}
