import fs from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { describeError, TributaryError } from '../core/errors';
import type { MessageRecord, Source, SourceRunReport } from '../core/model';
import type { Bytes } from '../core/ports';
import { defaultHolder, rawObjectKey, syncSource, type SyncOptions, type SyncProgress } from '../core/sync';
import { planSource, type SourcePlan } from '../core/plan';
import type { AuditRecord } from '../core/model';
import { loadConfig, type Config } from '../shared/config';
import { ConfiguredCredentials } from '../adapters/secrets/credentials';
import { makeConnector } from '../shared/connector';
import { openRuntime, type Runtime } from '../shared/runtime';
import { DataDirBusyError, InterruptedError } from '../local/emulators';
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
import { describeOwner, isRunning } from '../local/data-dir';
import { DEFAULT_PORT, PortInUseError, serve } from './serve';

/** Exit status when the local data folder stays in use by another command (EX_TEMPFAIL: try again later). */
export const EXIT_BUSY = 75;
const DEFAULT_WAIT_SECONDS = 30;

const USAGE = `tributary: your mail accounts in one inbox

Usage:
  tributary sync [--source ID] [--json] [--budget-seconds N]
  tributary plan [--source ID] [--json]          what the next sync would fetch and delete, and why
  tributary audit [--source ID] [--since DATE] [--json]
  tributary sources list [--json]
  tributary sources test ID [--json]
  tributary sources retry ID [--message IDENTITY]   try set-aside messages again at the next sync
  tributary inbox [--source ID] [--limit N] [--cursor C] [--json]
  tributary serve [--port N]                     the inbox in a browser, on 127.0.0.1 only (default port 8025):
      prints a start URL with a one-time token; "sync now" in the page syncs that source in this process.
      No scheduler runs yet: new mail arrives with "sync now" (with the local store, the data folder is serve's
      while it runs: a "tributary sync" elsewhere waits for it). Ctrl-C stops it.
  tributary export --format maildir|mbox --out DIR [--source ID]
      maildir: DIR/<id>/cur, one file per stored message, byte for byte; files already there are kept
      mbox: DIR/<id>.mbox, mboxrd ("From " lines in a message quoted with ">"), each message byte for byte
            with its own line ends: its "From " line and the blank line after it end the same way (CRLF for
            mail as servers send it); an existing DIR/<id>.mbox is never overwritten

A deployed Tributary (store {"mode": "aws", "stack": "TributaryService"}) keeps its sources in its table:
  tributary sources add ID --protocol imap|pop3 --host HOST --user USER [SETTINGS] [PASSWORD] [--skip-test]
  tributary sources update ID [SETTINGS] [PASSWORD] [--skip-test]
  tributary sources enable ID | disable ID | remove ID     remove keeps the source's mail in the inbox
  tributary sources import --from FILE [--replace]        the sources of a config file, passwords included
    SETTINGS: --port N --tls implicit|starttls|none --folders A,B --poll-minutes N --ca-file PEM|system
              --servername NAME --retention keep|delete-on-retrieve|delete-after-days:N
              --settings FILE (a JSON object with any field of a config file's source; null removes one)
    PASSWORD: asked for at the terminal, not echoed; or --password-stdin (piped), --password-env NAME;
              update changes it only with one of those or --ask-password. Never on the command line.
    add and update log in first (as "sources test" does) and save nothing if that fails.

Options:
  --config FILE   the config file (default: $TRIBUTARY_CONFIG, else ./tributary.config.json)
  --wait SECONDS  local store: how long to wait while another command uses the data folder (default ${DEFAULT_WAIT_SECONDS})

Exit status: 0 ok, 1 a source failed, 2 bad usage or config, ${EXIT_BUSY} the data folder stayed busy,
130 stopped by Ctrl-C (143 by SIGTERM). A first Ctrl-C stops a sync at a safe point, checkpointed, with its
lease released; a second one quits at once.
`;

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
  isTty: boolean;
  /** Where a password is read from (standard input; a prompt when it is a terminal). */
  input?: SecretInput;
  env?: NodeJS.ProcessEnv;
}

const defaultIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  isTty: Boolean(process.stderr.isTTY),
  input: process.stdin,
  env: process.env,
};

class UsageError extends Error {}

const SIGNAL_NUMBERS: Partial<Record<string, number>> = { SIGINT: 2, SIGTERM: 15 };

/** 128 + the signal's number, as shells report a command a signal stopped (130 for Ctrl-C). */
export function signalExitCode(signal: unknown): number {
  return 128 + (SIGNAL_NUMBERS[String(signal)] ?? 2);
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

const ADMIN_COMMANDS = ['add', 'update', 'remove', 'enable', 'disable', 'import'];

/**
 * Runs one CLI command; returns the exit status (0 ok, 1 a source failed, 2 bad usage or config, 75 the data folder
 * is busy, 128 + signal when `stop` was aborted with a signal's name).
 */
export async function main(argv: string[], io: Io = defaultIo, stop?: AbortSignal): Promise<number> {
  const code = await runCommand(argv, io, stop);
  return stop?.aborted ? signalExitCode(stop.reason) : code;
}

async function runCommand(argv: string[], io: Io, stop: AbortSignal | undefined): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        source: { type: 'string' },
        json: { type: 'boolean', default: false },
        limit: { type: 'string' },
        cursor: { type: 'string' },
        format: { type: 'string' },
        out: { type: 'string' },
        'budget-seconds': { type: 'string' },
        since: { type: 'string' },
        message: { type: 'string' },
        wait: { type: 'string' },
        protocol: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        tls: { type: 'string' },
        user: { type: 'string' },
        'ca-file': { type: 'string' },
        servername: { type: 'string' },
        folders: { type: 'string' },
        'poll-minutes': { type: 'string' },
        retention: { type: 'string' },
        settings: { type: 'string' },
        'password-stdin': { type: 'boolean' },
        'password-env': { type: 'string' },
        'ask-password': { type: 'boolean' },
        'skip-test': { type: 'boolean' },
        from: { type: 'string' },
        replace: { type: 'boolean' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, sub, arg] = positionals;
  if (values.help || !command) {
    io.out(USAGE);
    return command || values.help ? 0 : 2;
  }
  let runtime: Runtime | undefined;
  try {
    const config = loadConfig(values.config);
    const waitSeconds = values.wait !== undefined ? Number(values.wait) : DEFAULT_WAIT_SECONDS;
    if (!Number.isFinite(waitSeconds) || waitSeconds < 0)
      throw new UsageError('--wait must be a number of seconds (0: do not wait)');
    const deployed = config.store.mode === 'aws' && config.store.stack !== undefined;
    const needsRuntime = async (): Promise<Runtime> => {
      if (runtime) return runtime;
      runtime = await openRuntime(config, undefined, {
        waitMs: waitSeconds * 1000,
        purpose: [command, sub].filter(Boolean).join(' '),
        signal: stop,
        onWait: (owner) =>
          io.err(
            `waiting for ${config.store.mode === 'local' ? config.store.dataDir : 'the store'}: in use by ${describeOwner(owner)}; up to ${waitSeconds} s\n`,
          ),
        onNote: (note) => io.err(`note: ${note}\n`),
      });
      for (const note of runtime.notes) io.err(`note: ${note}\n`);
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
      case 'sources':
        if (sub === 'list') {
          const set = await sourceSet();
          return await listSources(await needsRuntime(), set, values.json, io);
        }
        if (sub === 'test') {
          if (!arg) throw new UsageError('sources test needs a source id');
          const [source] = pickSources(await sourceSet(), arg);
          return await testSource(source!, runtime?.ssm, values.json, io);
        }
        if (sub === 'retry') {
          if (!arg) throw new UsageError('sources retry needs a source id');
          const [source] = pickSources(await sourceSet(), arg);
          return await retrySetAside(await needsRuntime(), source!, values.message, io);
        }
        if (sub && ADMIN_COMMANDS.includes(sub)) {
          if (!deployed)
            throw new UsageError(
              `"sources ${sub}" changes a deployed Tributary (a config whose store is {"mode": "aws", "stack": "TributaryService"}); here the sources are the ones listed in ${config.file}: edit that file`,
            );
          if (sub !== 'import' && !arg) throw new UsageError(`sources ${sub} needs a source id`);
          if (sub === 'import' && !values.from)
            throw new UsageError('sources import needs --from FILE: a config file whose sources to import');
          return await runAdmin(await needsRuntime(), sub, arg, values, io);
        }
        throw new UsageError(
          `unknown "sources ${sub ?? ''}": use "sources list", "sources test ID", "sources retry ID"${deployed ? ', or add, update, remove, enable, disable, import' : ''}`,
        );
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
      case 'serve': {
        const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new UsageError('--port must be a port number (1-65535; 0 picks a free one)');
        try {
          await serve({ port, io, stop, openRuntime: needsRuntime });
        } catch (err) {
          if (!(err instanceof PortInUseError)) throw err;
          io.err(`${err.message}\n`);
          return 1;
        }
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof DataDirBusyError) {
      io.err(
        `${err.message}: nothing done; run the command again when it is done, or give it longer with --wait SECONDS\n`,
      );
      return EXIT_BUSY;
    }
    if (err instanceof PromptInterrupted) {
      io.err(`${err.message}: nothing done\n`);
      return 130;
    }
    if (err instanceof InterruptedError) {
      io.err(`${err.message}: nothing done\n`);
      return 1;
    }
    const d = describeError(err);
    io.err(`error [${d.code}]: ${d.message}\n`);
    return err instanceof TributaryError && err.code === 'CONFIG_INVALID' ? 2 : 1;
  } finally {
    await runtime?.close();
  }
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
 * In local mode this process owns the store (the data folder's lock): no other sync can run on it, so a lease still
 * running is one a killed command left (Ctrl-C twice, SIGKILL, a crash). It is released (with its own holder and
 * fence, so nothing else could be released) instead of answering busy for up to a minute.
 */
async function releaseLeftLease(runtime: Runtime, source: Source): Promise<string | undefined> {
  if (!runtime.exclusive || !source.enabled) return undefined;
  const lease = await runtime.index.leaseState(source.id);
  if (!lease || lease.expiresAt <= Date.now()) return undefined;
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
      const more =
        r.outcome === 'more'
          ? r.interrupted
            ? ` (stopped by ${r.interrupted} at a safe point: checkpointed, lease released; run sync again to go on)`
            : r.notes.some((n) => n.includes('set aside after'))
              ? ' (a message was set aside; run sync again to go on with the rest)'
              : ' (more to do: time budget spent, run sync again)'
          : r.outcome === 'paused'
            ? ' (paused by the inbox quota)'
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
      return `${r.sourceId}: ok, ${r.fetched} new message${r.fetched === 1 ? '' : 's'} (${mb(r.fetchedBytes)}${rate}) in ${secs.toFixed(1)} s${actions ? `; ${actions}` : ''}${more}${notes}`;
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
): Promise<number> {
  // No store needed (but for a deployed Tributary's list of sources): this only talks to the upstream server.
  const password = await new ConfiguredCredentials(new Map([[source.id, source.secret]]), ssm).password(
    source,
  );
  const connector = makeConnector();
  const report: Record<string, unknown> = {
    id: source.id,
    protocol: source.protocol,
    server: `${source.host}:${source.port}`,
    tlsMode: source.tls,
  };
  const lines: string[] = [`${source.id}: ${source.protocol} ${source.host}:${source.port} (${source.tls})`];
  if (source.protocol === 'imap') {
    const session = await connector.openImap(source, password, { timeoutMs: 20_000 });
    try {
      const wanted = ['IDLE', 'UIDPLUS', 'CONDSTORE', 'QUOTA', 'MOVE', 'QRESYNC'];
      report.tls = session.tls;
      report.capabilities = Object.fromEntries(wanted.map((c) => [c, session.capabilities.has(c)]));
      const folders = await session.listFolders();
      report.folders = folders;
      lines.push(
        session.tls
          ? `  TLS: ${session.tls.protocol} ${session.tls.cipher}, certificate ${session.tls.subject} issued by ${session.tls.issuer}, valid to ${session.tls.validTo}`
          : '  TLS: none (loopback only)',
      );
      lines.push(`  login: ok as ${source.user}`);
      lines.push(
        `  capabilities: ${wanted.map((c) => `${c} ${session.capabilities.has(c) ? 'yes' : 'no'}`).join(', ')}`,
      );
      lines.push(`  folders on the server: ${folders.join(', ')}`);
      const counts: Record<string, number> = {};
      for (const f of source.folders) {
        const status = await session.openFolder(f);
        counts[f] = status.exists;
        lines.push(
          `  ${f}: ${status.exists} messages (UIDVALIDITY ${status.uidValidity}, UIDNEXT ${status.uidNext})`,
        );
      }
      report.messages = counts;
      const quota = await session.quota();
      report.quota = quota ?? null;
      lines.push(
        quota
          ? `  quota: ${mb(quota.usedBytes)} of ${mb(quota.limitBytes)} (${((quota.usedBytes / quota.limitBytes) * 100).toFixed(1)}%)`
          : `  quota: the server does not report usage${session.capabilities.has('QUOTA') ? '' : ' (no QUOTA)'}: "upstreamQuota" cannot work for this source`,
      );
    } finally {
      await session.close();
    }
  } else {
    const session = await connector.openPop3(source, password, { timeoutMs: 20_000 });
    try {
      const wanted = ['UIDL', 'TOP', 'PIPELINING', 'STLS', 'EXPIRE', 'LOGIN-DELAY'];
      const caps = session.capabilities.map((c) => c.toUpperCase());
      const has = (c: string) => caps.some((x) => x === c || x.startsWith(`${c} `));
      report.tls = session.tls;
      report.capabilities = Object.fromEntries(wanted.map((c) => [c, has(c)]));
      const stat = await session.stat();
      report.messages = stat.count;
      report.octets = stat.octets;
      lines.push(
        session.tls
          ? `  TLS: ${session.tls.protocol} ${session.tls.cipher}, certificate ${session.tls.subject} issued by ${session.tls.issuer}, valid to ${session.tls.validTo}`
          : '  TLS: none (loopback only)',
      );
      lines.push(`  login: ok as ${source.user}`);
      lines.push(`  capabilities: ${wanted.map((c) => `${c} ${has(c) ? 'yes' : 'no'}`).join(', ')}`);
      lines.push(`  maildrop: ${stat.count} messages, ${mb(stat.octets)}`);
      report.quota = null;
      lines.push(
        `  quota: POP3 reports no quota${source.upstreamQuota?.capacityBytes ? `; the quota guard measures ${mb(stat.octets)} against the declared capacityBytes ${mb(source.upstreamQuota.capacityBytes)} (${percentOf(stat.octets, source.upstreamQuota.capacityBytes)})` : '; declare "capacityBytes" in "upstreamQuota" for the quota guard'}`,
      );
    } finally {
      await session.quit().catch(() => session.abort());
    }
  }
  io.out(json ? JSON.stringify(report, null, 2) + '\n' : lines.join('\n') + '\n');
  return 0;
}

async function showInbox(
  runtime: Runtime,
  set: SourceSet,
  values: { source?: string; limit?: string; cursor?: string; json?: boolean },
  io: Io,
): Promise<number> {
  if (values.source) pickSources(set, values.source);
  const limit = values.limit ? Number(values.limit) : 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new UsageError('--limit must be a whole number from 1 to 1000');
  const page = await runtime.index.listInbox({ sourceId: values.source, limit, cursor: values.cursor });
  if (values.json) {
    io.out(
      JSON.stringify({ messages: page.items.map(inboxView), cursor: page.cursor ?? null }, null, 2) + '\n',
    );
    return 0;
  }
  for (const m of page.items) {
    const from = m.metadata.from?.name || m.metadata.from?.address || '(unknown sender)';
    io.out(
      `${m.sortDate.slice(0, 16).replace('T', ' ')}  ${m.sourceId.padEnd(12)} ${from.slice(0, 28).padEnd(28)} ${m.metadata.subject ?? '(no subject)'}${m.metadata.hasAttachments ? '  [attachments]' : ''}\n`,
    );
    // One stored message that came through several places (two folders, two accounts) says where.
    if (m.via && m.via.length > 1)
      io.out(`${' '.repeat(18)}via ${m.via.map((v) => `${v.sourceId} ${v.identity}`).join(', ')}\n`);
  }
  if (!page.items.length) io.out('the inbox is empty\n');
  if (page.cursor)
    io.out(
      `more: tributary inbox --cursor ${page.cursor}${values.source ? ` --source ${values.source}` : ''}\n`,
    );
  return 0;
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
  if (values.json) {
    io.out(JSON.stringify({ audit: records }, null, 2) + '\n');
    return 0;
  }
  if (!records.length) io.out(`no destructive action recorded${since ? ` since ${since}` : ''}\n`);
  for (const r of records) {
    const usage =
      r.usageBefore !== undefined
        ? ` usage ${mb(r.usageBefore)}${r.usageAfter !== undefined ? ` -> ${mb(r.usageAfter)}` : ''}`
        : '';
    io.out(
      `${r.at}  ${r.sourceId}  ${r.action} ${r.state}  ${r.identity}  ${mb(r.object.size)}  ${r.policy}: ${r.why}${usage}${r.note ? ` (${r.note})` : ''}\n`,
    );
  }
  return 0;
}
