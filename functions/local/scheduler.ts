import { describeError } from '../core/errors';
import type { Source, SourceRunReport } from '../core/model';
import type { Logger, SourceRegistry } from '../core/ports';
import { claimForDispatch, DISPATCH_CLAIM_MS, notDispatchable } from '../core/schedule';
import { LoginDelays, writeScheduleAfterRun } from '../core/schedule-writer';
import { defaultHolder, syncSource, type SyncDeps, type SyncOptions, type SyncProgress } from '../core/sync';

/**
 * Local mode's scheduler (issue #16): what EventBridge Scheduler, the dispatcher, the queue and the sync function
 * do in AWS, in one process. The same rules decide: a source is run when its registry entry is due and not backing
 * off (notDispatchable), claimed first by a revision-checked schedule write (claimForDispatch: a second process on
 * the same data folder cannot claim it too), and after the run its next due time is written by the very function the
 * sync Lambda uses (writeScheduleAfterRun: its interval, exponential back-off after failures, POP3 LOGIN-DELAY).
 * A run that stops with `more` is due again at once. The lease still decides who syncs: a CLI `sync` of the same
 * source meanwhile finds it busy.
 */

/** A run's budget: as long as a Lambda invocation, after which it checkpoints and continues in the next run. */
export const LOCAL_RUN_BUDGET_MS = 14 * 60 * 1000;
/** How often the registry is read for due sources. */
const TICK_MS = 5000;
/** Sources synced at once (each is one upstream connection and its commits). */
const PARALLEL_RUNS = 3;

export interface RunningSync {
  source: Source;
  reason: 'due' | 'now';
  startedAt: number;
  progress?: SyncProgress;
  /** The run's options: syncSource reads `deadline` as it goes, so moving it stops the run at its next safe point. */
  options: SyncOptions;
}

export interface SchedulerEvents {
  onStart?: (run: RunningSync) => void;
  onProgress?: (run: RunningSync) => void;
  onFinish?: (run: RunningSync, report: SourceRunReport | undefined, error?: unknown) => void;
}

export class LocalScheduler {
  private readonly running = new Map<string, { run: RunningSync; done: Promise<void> }>();
  private readonly delays = new LoginDelays();
  private readonly deps: SyncDeps;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly registry: SourceRegistry,
    deps: SyncDeps,
    private readonly log: Logger,
    private readonly events: SchedulerEvents = {},
    private readonly options: { tickMs?: number; parallel?: number; budgetMs?: number } = {},
  ) {
    this.deps = { ...deps, connector: this.delays.wrap(deps.connector) };
  }

  /**
   * Makes the registry hold exactly the config's sources (settings replaced, schedules kept; a source no longer in
   * the config leaves the registry, its mail and audit trail stay in the store), then starts ticking.
   */
  async start(sources: Source[]): Promise<void> {
    await this.mirror(sources);
    this.tick();
  }

  async mirror(sources: Source[]): Promise<void> {
    const now = this.deps.clock.now();
    const wanted = new Set(sources.map((s) => s.id));
    for (const source of sources) await this.registry.put(source, now);
    for (const entry of await this.registry.list()) {
      if (!wanted.has(entry.source.id)) await this.registry.remove(entry.source.id);
    }
  }

  /** The syncs in flight, for the sources page and the terminal. */
  runs(): RunningSync[] {
    return [...this.running.values()].map((r) => r.run);
  }

  /**
   * Runs the source now ("sync now" in the page), whatever its schedule, unless it is running here already
   * (false). Its next due time is written after the run as after any other.
   */
  async runNow(sourceId: string): Promise<boolean> {
    if (this.stopped) return false;
    const entry = await this.registry.get(sourceId);
    if (!entry || !entry.source.enabled) return false;
    if (!this.running.has(sourceId)) this.launch(entry.source, 'now');
    return true;
  }

  private tick(): void {
    if (this.stopped) return;
    this.ticking = this.dispatch()
      .catch((err: unknown) => {
        const d = describeError(err);
        this.log.error('could not read the due sources', { code: d.code, error: d.message });
      })
      .finally(() => {
        this.ticking = undefined;
        if (!this.stopped) this.timer = setTimeout(() => this.tick(), this.options.tickMs ?? TICK_MS);
      });
  }

  private async dispatch(): Promise<void> {
    const parallel = this.options.parallel ?? PARALLEL_RUNS;
    const now = this.deps.clock.now();
    for (const entry of await this.registry.due(now, 100)) {
      if (this.stopped || this.running.size >= parallel) return;
      const id = entry.source.id;
      if (this.running.has(id)) continue;
      if (notDispatchable({ enabled: entry.source.enabled, schedule: entry.schedule }, now)) continue;
      // Claimed as the dispatcher claims: another process on this folder that read the same entry loses the write.
      const claim = claimForDispatch(entry.schedule, now, DISPATCH_CLAIM_MS);
      if (!(await this.registry.setSchedule(id, claim, entry.revision))) continue;
      this.launch(entry.source, 'due');
    }
  }

  private launch(source: Source, reason: RunningSync['reason']): void {
    const startedAt = this.deps.clock.now();
    const run: RunningSync = {
      source,
      reason,
      startedAt,
      options: {
        deadline: startedAt + (this.options.budgetMs ?? LOCAL_RUN_BUDGET_MS),
        holder: defaultHolder(),
        onProgress: (progress: SyncProgress) => {
          run.progress = progress;
          this.events.onProgress?.(run);
        },
      },
    };
    this.events.onStart?.(run);
    const done = (async () => {
      let report: SourceRunReport | undefined;
      try {
        report = await syncSource(this.deps, source, run.options);
        const finishedAt = this.deps.clock.now();
        await writeScheduleAfterRun(
          this.registry,
          source.id,
          report,
          {
            startedAt,
            finishedAt,
            requeued: false,
            loginDelay: this.delays.take(source.id),
          },
          this.log,
        );
        this.events.onFinish?.(run, report);
      } catch (err) {
        // The run itself ends with a status; this is the registry failing. The claim runs out and it runs again.
        this.events.onFinish?.(run, report, err);
      } finally {
        this.running.delete(source.id);
      }
      // A run that stopped with more to do is due at once: look again now rather than at the next tick.
      if (!this.stopped && report?.outcome === 'more' && !this.ticking) {
        clearTimeout(this.timer);
        this.tick();
      }
    })();
    this.running.set(source.id, { run, done });
  }

  /** Starts nothing more; running syncs stop at their next safe point (checkpointed, lease released). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const { run } of this.running.values()) run.options.deadline = this.deps.clock.now();
    await this.ticking;
    await Promise.all([...this.running.values()].map((r) => r.done));
  }
}
