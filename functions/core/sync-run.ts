import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { describeError, LeaseExpiringError, LeaseLostError, UpstreamError } from './errors';
import type { Source, SourceRunReport } from './model';
import { checkImapCapabilities, type PolicyContext } from './policy-run';
import { DEFAULT_WHOLE_MESSAGE_BYTES } from './ports';
import type { Lease } from './ports';
import { CommitPipeline } from './sync-commit';
import type { RunContext } from './sync-context';
import { FailureLedger } from './sync-failures';
import { imapPolicies, syncImapFolder } from './sync-imap';
import { InboxTally } from './sync-inbox';
import type { SyncDeps, SyncOptions } from './sync-options';
import { Pop3Sync } from './sync-pop3';

export function defaultHolder(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/**
 * One source, one run (docs/architecture.md, the flow of data): lease, connect, plan, fetch each new message as a stream into S3,
 * commit its item with the counters in one transaction, advance the checkpoint, release. Every step is safe to
 * cut at any point: the next run redoes only what was not committed.
 */
export async function syncSource(
  deps: SyncDeps,
  source: Source,
  options: SyncOptions,
): Promise<SourceRunReport> {
  const started = deps.clock.now();
  const report: SourceRunReport = {
    sourceId: source.id,
    outcome: 'ok',
    fetched: 0,
    fetchedBytes: 0,
    skipped: 0,
    deletedUpstream: 0,
    evicted: 0,
    durationMs: 0,
    notes: [],
  };
  if (!source.enabled) {
    report.outcome = 'disabled';
    return report;
  }
  const ttl = options.leaseTtlMs ?? 60_000;
  let lease: Lease | undefined;
  try {
    lease = await deps.index.acquireLease(source.id, options.holder ?? defaultHolder(), ttl, started);
  } catch (err) {
    // The table could not be reached: this source's run fails with its typed error, the caller goes on to the next.
    const described = describeError(err);
    report.outcome = 'failed';
    report.error = { code: described.code, message: described.message };
    report.durationMs = deps.clock.now() - started;
    return report;
  }
  if (!lease) {
    report.outcome = 'busy';
    report.notes.push('another sync of this source is running; this one exits without doing anything');
    report.durationMs = deps.clock.now() - started;
    return report;
  }
  const run = new SourceRun(deps, source, options, lease, report);
  try {
    await run.execute();
  } catch (err) {
    const described = describeError(err);
    if (run.pastDeadline && described.code !== 'LEASE_LOST') {
      // Cut at the deadline (a stalled or trickling server): what was committed stays, the rest is for next time.
      report.outcome = 'more';
      report.notes.push(
        'stopped at the deadline in the middle of an upstream exchange; the next run continues',
      );
    } else {
      report.outcome = 'failed';
      report.error = { code: described.code, message: described.message };
      deps.logger.warn('sync failed', {
        sourceId: source.id,
        code: described.code,
        error: described.message,
      });
    }
  } finally {
    await run.stopRenewing();
    const setAside = run.setAsideCount();
    if (setAside) report.setAside = setAside;
    report.durationMs = deps.clock.now() - started;
    try {
      // A run that lost its lease must not overwrite its successor's status.
      if (report.error?.code !== 'LEASE_LOST')
        await deps.index.recordRun(run.lease, report, deps.clock.now());
    } catch (err) {
      // A successor took the lease meanwhile: its status stands, and this run's is not written over it.
      if (err instanceof LeaseLostError)
        report.notes.push('the run status was not written: another sync took over');
      else
        deps.logger.error('could not record the run status', {
          sourceId: source.id,
          error: describeError(err).message,
        });
    }
    await deps.index.releaseLease(run.lease).catch(() => undefined);
  }
  return report;
}

class SourceRun implements RunContext {
  private renewTimer?: NodeJS.Timeout;
  private renewing: Promise<void> = Promise.resolve();
  private leaseLost = false;
  private deadlineTimer?: NodeJS.Timeout;
  private readonly atDeadline: Array<() => void> = [];
  /** The hard deadline passed: the upstream connection was dropped, whatever it was doing. */
  pastDeadline = false;
  readonly wholeMessageBytes: number;
  readonly failures: FailureLedger;
  readonly inbox: InboxTally;
  readonly commits: CommitPipeline;
  private readonly pop3: Pop3Sync;

  constructor(
    readonly deps: SyncDeps,
    readonly source: Source,
    readonly options: SyncOptions,
    public lease: Lease,
    readonly report: SourceRunReport,
  ) {
    this.wholeMessageBytes = options.wholeMessageBytes ?? DEFAULT_WHOLE_MESSAGE_BYTES;
    this.failures = new FailureLedger(this);
    this.inbox = new InboxTally(this);
    this.commits = new CommitPipeline(this);
    this.pop3 = new Pop3Sync(this);
    const ttl = options.leaseTtlMs ?? 60_000;
    this.renewTimer = setInterval(() => {
      this.renewing = deps.index.renewLease(this.lease, ttl, deps.clock.now()).then(
        (renewed) => {
          this.lease = renewed;
        },
        (err: unknown) => {
          // Only a lost lease is fatal; a failed renewal (throttling, network) is retried at the next tick, and
          // every write still carries the fence, so an expired lease can never write over a successor.
          if (err instanceof LeaseLostError) this.leaseLost = true;
          else
            deps.logger.warn('lease renewal failed; retrying', {
              sourceId: source.id,
              error: describeError(err).message,
            });
        },
      );
    }, ttl / 3);
    this.renewTimer.unref();
    // Between messages the run stops by itself (budgetLeft); a server that stalls or trickles inside one exchange
    // is cut here, early enough to leave time for the checkpoint, the status and the lease release.
    const now = deps.clock.now();
    const reserve = Math.min(1000, Math.max(0, options.deadline - now) / 10);
    this.deadlineTimer = setTimeout(
      () => {
        this.pastDeadline = true;
        for (const stop of this.atDeadline.splice(0)) stop();
      },
      Math.max(0, options.deadline - now - reserve),
    );
    this.deadlineTimer.unref();
  }

  /**
   * Opens an upstream session unless the hard deadline comes first; an open that finishes after the deadline is
   * dropped. Once open, the session is dropped at the deadline.
   */
  private openWithin<S extends { abort(): void }>(opening: Promise<S>): Promise<S> {
    return new Promise<S>((resolve, reject) => {
      const late = () =>
        reject(new UpstreamError('TIMEOUT', 'the run reached its deadline while connecting', true));
      const forget = () => {
        const i = this.atDeadline.indexOf(late);
        if (i >= 0) this.atDeadline.splice(i, 1);
      };
      if (this.pastDeadline) late();
      else this.atDeadline.push(late);
      opening.then(
        (session) => {
          forget();
          if (this.pastDeadline) {
            session.abort();
            late();
            return;
          }
          this.atDeadline.push(() => session.abort());
          resolve(session);
        },
        (err: unknown) => {
          forget();
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /** Stops renewing and waits for a renewal in flight, so it cannot extend the lease after it is released. */
  async stopRenewing(): Promise<void> {
    clearInterval(this.renewTimer);
    clearTimeout(this.deadlineTimer);
    await this.renewing;
  }

  async execute(): Promise<void> {
    const password = await this.deps.credentials.password(this.source);
    this.failures.load(await this.deps.index.messageFailures(this.source.id));
    const connect = {
      timeoutMs: this.options.timeoutMs ?? 30_000,
      wholeMessageBytes: this.wholeMessageBytes,
    };
    if (this.source.inboxQuota) this.inbox.usage = await this.deps.index.inboxUsage(this.source.id);
    if (this.source.protocol === 'imap') {
      const session = await this.openWithin(this.deps.connector.openImap(this.source, password, connect));
      try {
        checkImapCapabilities(this.source, session.capabilities);
        for (const folder of this.source.folders) {
          if (!(await syncImapFolder(this, session, folder))) break;
        }
        if (this.report.outcome !== 'more') await imapPolicies(this, session);
      } finally {
        await session.close().catch(() => undefined);
      }
    } else {
      const session = await this.openWithin(this.deps.connector.openPop3(this.source, password, connect));
      let quit = false;
      try {
        // After a stop for time, RETRs may still be in flight: drop the connection rather than drain them past
        // the deadline. No DELE was sent before the policies, so dropping it deletes nothing.
        if (await this.pop3.sync(session)) {
          quit = await this.pop3.policies(session);
          if (!quit) await session.quit();
          quit = true;
        }
      } finally {
        if (!quit) session.abort();
      }
    }
  }

  policyContext(): PolicyContext {
    return {
      source: this.source,
      index: this.deps.index,
      store: this.deps.store,
      clock: this.deps.clock,
      logger: this.deps.logger,
      report: this.report,
      lease: () => this.lease,
      checkLease: () => this.checkLease(),
      renewLease: () => this.renewLease(),
      leaseAhead: () => this.leaseAhead(),
      budgetLeft: () => this.budgetLeft() && !this.pastDeadline,
      step: (step) => this.options.onStep?.(step),
    };
  }

  /**
   * Extends the lease with a fenced write (LeaseLostError if it was taken over), right before acting upstream. A
   * renewal slow enough to leave less than half of the lease ahead (a stalled store, a throttled table) is made once
   * more, so that the check right before the command that deletes (leaseAhead) does not refuse a healthy run.
   */
  private async renewLease(): Promise<void> {
    const renew = async () => {
      this.checkLease();
      this.lease = await this.deps.index.renewLease(
        this.lease,
        this.options.leaseTtlMs ?? 60_000,
        this.deps.clock.now(),
      );
    };
    await renew();
    if (this.leaseAheadMs() < this.halfLeaseMs()) await renew();
  }

  /**
   * Throws unless the lease is ours with at least half of its time ahead, by the last renewal that succeeded. A
   * successor may take the lease only once it has expired, so a command written now reaches the server at least
   * half a lease before any successor can start: what a paused process must not do is wake up and delete after its
   * successor has read the server.
   */
  leaseAhead(): void {
    this.checkLease();
    const ahead = this.leaseAheadMs();
    if (ahead < this.halfLeaseMs())
      throw new LeaseExpiringError(
        `this run of source ${this.source.id} was held up right before deleting upstream (its lease ends in ${Math.round(ahead)} ms, less than half of it), so another sync could take over at any moment: it deleted nothing and stopped; the next run finishes the deletes`,
      );
  }

  private leaseAheadMs(): number {
    return this.lease.expiresAt - this.deps.clock.now();
  }

  private halfLeaseMs(): number {
    return (this.options.leaseTtlMs ?? 60_000) / 2;
  }

  /** Messages set aside and not asked to be retried: every run skips them. */
  setAsideCount(): number {
    return this.failures.setAsideCount();
  }

  budgetLeft(): boolean {
    return this.deps.clock.now() < this.options.deadline;
  }

  checkLease(): void {
    if (this.leaseLost) throw new LeaseLostError(this.source.id);
  }

  progress(planned?: number): void {
    this.options.onProgress?.({
      sourceId: this.source.id,
      fetched: this.report.fetched,
      fetchedBytes: this.report.fetchedBytes,
      planned,
    });
  }
}
