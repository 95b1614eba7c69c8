import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { describeError } from '../core/errors';
import type { Logger } from '../core/ports';
import type { Source, SourceRunReport } from '../core/model';
import { defaultHolder, syncSource, type SyncOptions } from '../core/sync';
import { LocalScheduler, type RunningSync } from '../local/scheduler';
import { makeLocalSetup } from '../local/setup';
import type { Runtime } from '../shared/runtime';
import { tokenAuthenticator } from '../web/auth';
import type { SyncProgressView } from '../web/contract';
import { LocalDownloadLinks } from '../web/downloads';
import { makeWebApp } from '../web/app';
import { buildPageAssets, pageHeaders, type PageAssets } from '../web/page-assets';

/**
 * `tributary serve` (`npm start`): the whole service on one machine, in one process, on 127.0.0.1 only. Over the
 * local store it runs the scheduler (functions/local/scheduler.ts: each source on its own interval and back-off,
 * the dispatcher's rules), the syncs, and the web app of the API Lambda with its page; a random token printed in the
 * start URL becomes the session cookie. With no source yet, the page opens on the form that adds one. Pointed at a
 * deployed Tributary (the `aws` store), it serves the page over it and "sync now" runs in this process, the deployed
 * scheduler doing the rest.
 */

export const DEFAULT_PORT = 8025;
/** The time budget of an in-process "sync now" over the `aws` store, as the CLI's sync. */
const SYNC_BUDGET_MS = 14 * 60 * 1000;
/** A running sync is reported in the terminal at most this often. */
const PROGRESS_EVERY_MS = 10_000;

export interface ServeIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

export class PortInUseError extends Error {}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** Rate and time left of a running sync, from what it fetched since it started. */
export function progressView(run: RunningSync, now: number): SyncProgressView {
  const p = run.progress;
  const seconds = (now - run.startedAt) / 1000;
  const fetched = p?.fetched ?? 0;
  const fetchedBytes = p?.fetchedBytes ?? 0;
  const view: SyncProgressView = { sourceId: run.source.id, startedAt: run.startedAt, fetched, fetchedBytes };
  if (p?.planned !== undefined) view.planned = p.planned;
  if (seconds >= 1 && fetchedBytes > 0) view.bytesPerSecond = Math.round(fetchedBytes / seconds);
  if (p?.planned !== undefined && fetched > 0 && seconds >= 1) {
    const perMessage = seconds / fetched;
    view.etaSeconds = Math.max(0, Math.round((p.planned - fetched) * perMessage));
  }
  return view;
}

export function describeProgress(view: SyncProgressView): string {
  const count = view.planned !== undefined ? `${view.fetched}/${view.planned}` : `${view.fetched}`;
  const rate = view.bytesPerSecond !== undefined ? `, ${mb(view.bytesPerSecond)}/s` : '';
  const eta =
    view.etaSeconds !== undefined
      ? `, about ${view.etaSeconds >= 90 ? `${Math.round(view.etaSeconds / 60)} min` : `${view.etaSeconds} s`} left`
      : '';
  return `${view.sourceId}: ${count} messages, ${mb(view.fetchedBytes)}${rate}${eta}`;
}

function describeReport(report: SourceRunReport): string {
  const error = report.error ? ` [${report.error.code}] ${report.error.message}` : '';
  return `sync ${report.sourceId}: ${report.outcome}, ${report.fetched} new (${mb(report.fetchedBytes)})${error}`;
}

/** Over the `aws` store: "sync now" in this process, one at a time per source (a second request joins it). */
class InProcessSyncs {
  private readonly running = new Map<string, { options: SyncOptions; done: Promise<void> }>();

  constructor(
    private readonly runtime: Runtime,
    private readonly io: ServeIo,
  ) {}

  start(source: Source): void {
    if (this.running.has(source.id)) return;
    const options: SyncOptions = { deadline: Date.now() + SYNC_BUDGET_MS, holder: defaultHolder() };
    const done = syncSource(this.runtime.deps, source, options)
      .then((report) => this.io.err(`${describeReport(report)}\n`))
      .catch((err: unknown) => {
        const d = describeError(err);
        this.io.err(`sync ${source.id}: failed [${d.code}] ${d.message}\n`);
      })
      .finally(() => this.running.delete(source.id));
    this.running.set(source.id, { options, done });
  }

  /** Moves every running sync's deadline to now (they stop at their next safe point) and waits for them. */
  async stop(): Promise<void> {
    for (const run of this.running.values()) run.options.deadline = Date.now();
    await Promise.all([...this.running.values()].map((r) => r.done));
  }
}

async function loadPage(
  io: ServeIo,
): Promise<{ assets: PageAssets; headers: Record<string, string> } | undefined> {
  try {
    return { assets: await buildPageAssets(), headers: pageHeaders() };
  } catch (err) {
    io.err(`note: the page could not be built (${(err as Error).message}); the API is served without it\n`);
    return undefined;
  }
}

/**
 * Listens on 127.0.0.1:`port` first (so a port in use is reported at once, before the store starts), then opens
 * the store and serves until `stop` aborts. Throws PortInUseError when the port is taken.
 */
export async function serve(options: {
  port: number;
  io: ServeIo;
  stop?: AbortSignal;
  openRuntime: () => Promise<Runtime>;
}): Promise<void> {
  const { io, stop } = options;
  let fetch: ((request: Request, env: unknown) => Response | Promise<Response>) | undefined;
  const server = createAdaptorServer({
    fetch: (request: Request, env: unknown) =>
      fetch
        ? fetch(request, env)
        : new Response('starting', { status: 503, headers: { 'Retry-After': '1' } }),
    hostname: '127.0.0.1',
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new PortInUseError(
              `port ${options.port} on 127.0.0.1 is already in use (another "tributary serve"?): stop that program or choose another port with --port N`,
            )
          : err,
      );
    server.once('error', onError);
    server.listen(options.port, '127.0.0.1', () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const closeServer = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    });
  let syncs: InProcessSyncs | undefined;
  let scheduler: LocalScheduler | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let runtime: Runtime | undefined;
  try {
    if (stop?.aborted) return;
    const rt = await options.openRuntime();
    runtime = rt;
    const log: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (message) => io.err(`warning: ${message}\n`),
      error: (message, fields) => io.err(`error: ${message} ${JSON.stringify(fields ?? {})}\n`),
    };
    const shown = new Map<string, number>();
    if (rt.schedules) {
      scheduler = new LocalScheduler(rt.schedules, rt.deps, log, {
        onFinish: (run, report, error) => {
          shown.delete(run.source.id);
          if (report) io.err(`${describeReport(report)}\n`);
          if (error) {
            const d = describeError(error);
            io.err(`sync ${run.source.id}: could not record the run [${d.code}] ${d.message}\n`);
          }
        },
      });
    } else {
      syncs = new InProcessSyncs(rt, io);
    }
    const local = scheduler;
    const inProcess = syncs;
    const auth = tokenAuthenticator();
    const downloads = new LocalDownloadLinks();
    const page = await loadPage(io);
    const sources = async () => (rt.registry ? (await rt.registry.list()).map((e) => e.source) : rt.sources);
    const setup =
      local && rt.addSource
        ? makeLocalSetup({
            configFile: rt.configFile,
            connector: rt.connector,
            sources: () => rt.sources,
            added: async (source) => {
              rt.addSource!(source);
              await local.mirror(rt.sources);
              await local.runNow(source.id);
            },
          })
        : undefined;
    const app = makeWebApp({
      auth,
      inbox: rt.inbox,
      store: rt.store,
      downloads,
      localDownloads: downloads,
      sources: {
        list: async () =>
          rt.registry
            ? await rt.registry.list()
            : rt.schedules
              ? await rt.schedules.list()
              : rt.sources.map((source) => ({ source })),
      },
      status: rt.index,
      syncNow: async (sourceId) => {
        if (local) return local.runNow(sourceId);
        const source = (await sources()).find((s) => s.id === sourceId);
        if (!source || !inProcess) return false;
        inProcess.start(source);
        return true;
      },
      ...(setup ? { setup } : {}),
      ...(local ? { progress: () => local.runs().map((run) => progressView(run, Date.now())) } : {}),
      pageConfig: { auth: 'cookie' },
      ...(page ? { page } : {}),
      hosts: [`127.0.0.1:${port}`, `localhost:${port}`],
      logger: log,
    });
    fetch = (request, env) => app.fetch(request, env);
    await local?.start(rt.sources);
    // A long sync says how it is going, at most every PROGRESS_EVERY_MS per source.
    ticker = setInterval(() => {
      const now = Date.now();
      for (const run of local?.runs() ?? []) {
        const last = shown.get(run.source.id) ?? run.startedAt;
        if (now - last < PROGRESS_EVERY_MS) continue;
        shown.set(run.source.id, now);
        io.err(`progress ${describeProgress(progressView(run, now))}\n`);
      }
    }, 1000);
    ticker.unref();
    const none = rt.sources.length === 0 && !rt.registry;
    io.out(
      `Tributary is ready on 127.0.0.1 only. Open:\n\n  http://127.0.0.1:${port}/?token=${auth.token}\n\n` +
        `(the token in this URL is the only way in; it changes at every start).\n` +
        (local
          ? none
            ? `No mail account yet: the page opens on the form that adds one.\n`
            : `Syncing ${rt.sources.length} source(s), each on its own interval.\n`
          : `The deployed service schedules the syncs; "sync now" in the page runs one here.\n`) +
        `Ctrl-C stops (at a safe point: a restart resumes where it stopped).\n`,
    );
    if (!stop?.aborted) {
      await new Promise<void>((resolve) => stop?.addEventListener('abort', () => resolve(), { once: true }));
    }
  } finally {
    // Requests first (nothing new starts), then the syncs at their next safe point, then the store.
    clearInterval(ticker);
    await closeServer();
    await scheduler?.stop();
    await syncs?.stop();
    await runtime?.close();
    io.err('tributary serve: stopped\n');
  }
}
