import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { DynamoInbox } from '../adapters/dynamodb/inbox';
import { describeError } from '../core/errors';
import type { Source } from '../core/model';
import { defaultHolder, syncSource, type SyncOptions } from '../core/sync';
import { makeAwsClients, type AwsClients } from '../shared/aws-clients';
import { LOCAL_TABLE, type Runtime } from '../shared/runtime';
import { tokenAuthenticator } from '../web/auth';
import { LocalDownloadLinks } from '../web/downloads';
import { makeWebApp } from '../web/app';
import { buildPageAssets, pageHeaders, type PageAssets } from '../web/page-assets';

/**
 * `tributary serve` (issue #15): the web app of the API Lambda, served by one Node process on 127.0.0.1 only, over
 * the config's store. A random token, printed in the start URL, becomes the session cookie. "Sync now" runs the
 * source's sync in this process, one at a time per source. No scheduler (issue #16): mail arrives when "sync now"
 * or `tributary sync` runs.
 */

export const DEFAULT_PORT = 8025;
/** The time budget of an in-process "sync now", as the CLI's sync. */
const SYNC_BUDGET_MS = 14 * 60 * 1000;

export interface ServeIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

export class PortInUseError extends Error {}

/** Runs syncs in this process: one at a time per source (a second request while one runs joins it). */
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
      .then((report) => {
        const error = report.error ? ` [${report.error.code}] ${report.error.message}` : '';
        this.io.err(`sync ${source.id}: ${report.outcome}, ${report.fetched} new${error}\n`);
      })
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
  let clients: AwsClients | undefined;
  try {
    if (stop?.aborted) return;
    const runtime = await options.openRuntime();
    // The inbox reads through clients of its own, made the way the runtime made its (the endpoints are in the env).
    clients = makeAwsClients();
    const table = runtime.location.mode === 'aws' ? runtime.location.table : LOCAL_TABLE;
    syncs = new InProcessSyncs(runtime, io);
    const started = syncs;
    const auth = tokenAuthenticator();
    const downloads = new LocalDownloadLinks();
    const page = await loadPage(io);
    const sources = async () =>
      runtime.registry ? (await runtime.registry.list()).map((e) => e.source) : runtime.sources;
    const app = makeWebApp({
      auth,
      inbox: new DynamoInbox(clients.documents, table),
      store: runtime.store,
      downloads,
      localDownloads: downloads,
      sources: {
        list: async () =>
          runtime.registry ? await runtime.registry.list() : runtime.sources.map((source) => ({ source })),
      },
      status: runtime.index,
      syncNow: async (sourceId) => {
        const source = (await sources()).find((s) => s.id === sourceId);
        if (!source) return false;
        started.start(source);
        return true;
      },
      pageConfig: { auth: 'cookie' },
      ...(page ? { page } : {}),
      hosts: [`127.0.0.1:${port}`, `localhost:${port}`],
      logger: {
        debug: () => undefined,
        info: () => undefined,
        warn: (message) => io.err(`warning: ${message}\n`),
        error: (message, fields) => io.err(`error: ${message} ${JSON.stringify(fields ?? {})}\n`),
      },
    });
    fetch = (request, env) => app.fetch(request, env);
    io.out(
      `Tributary is serving the inbox on 127.0.0.1 only. Open:\n\n  http://127.0.0.1:${port}/?token=${auth.token}\n\n` +
        `(the token in this URL is the only way in; it changes each time). No scheduler runs: use "sync now" in the\n` +
        `page. Ctrl-C stops.\n`,
    );
    if (!stop?.aborted) {
      await new Promise<void>((resolve) => stop?.addEventListener('abort', () => resolve(), { once: true }));
    }
  } finally {
    await closeServer();
    await syncs?.stop();
    clients?.dynamodb.destroy();
    io.err('tributary serve: stopped\n');
  }
}
