import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { BodyTap, sha256Hex } from './body-tap';
import { describeError, LeaseLostError, MessageError, UpstreamError } from './errors';
import { bytesOf, collect, Pipeline } from './pipeline';
import { identityKey, imapFolderKeyPrefix, imapFolderPrefix, SET_ASIDE_AFTER } from './model';
import type {
  FolderState,
  MessageFailure,
  MessageRecord,
  Source,
  SourceRunReport,
  UpstreamId,
} from './model';
import {
  effectiveValidity,
  folderGeneration,
  planImapFolder,
  planPop3Sync,
  UidCheckpoint,
  type Pop3Candidate,
} from './planners';
import { describeInboxQuota, inboxFits, type InboxUsage } from './policies';
import { DEFAULT_WHOLE_MESSAGE_BYTES } from './ports';
import {
  applyImapPolicies,
  applyPop3Policies,
  attachStored,
  checkImapCapabilities,
  hasPolicyWork,
  PolicyRun,
  currentValidity,
  scanImap,
  scanPop3,
  type PolicyContext,
  type SyncStep,
} from './policy-run';
import type {
  Bytes,
  Clock,
  Credentials,
  ImapSession,
  Lease,
  Logger,
  MailConnector,
  MessageIndex,
  MetadataParser,
  Pop3Listing,
  Pop3Session,
  RawMailStore,
} from './ports';

export interface SyncDeps {
  connector: MailConnector;
  store: RawMailStore;
  index: MessageIndex;
  parser: MetadataParser;
  credentials: Credentials;
  clock: Clock;
  logger: Logger;
}

export interface SyncProgress {
  sourceId: string;
  fetched: number;
  fetchedBytes: number;
  /** Messages this run plans to fetch, when known. */
  planned?: number;
}

export interface SyncOptions {
  /** Epoch ms by which the run must have stopped cleanly (checkpointed); the rest is left for the next run. */
  deadline: number;
  /** Who we are, for the lease. */
  holder?: string;
  leaseTtlMs?: number;
  /** Connect, greeting and per-read timeout upstream. */
  timeoutMs?: number;
  /** Messages up to this size are parsed whole; bigger ones by their header block only (bounded memory). */
  parseLimitBytes?: number;
  /** Save the IMAP checkpoint after this many commits (and always at the end). */
  checkpointEvery?: number;
  onProgress?: (progress: SyncProgress) => void;
  /** Messages stored and committed concurrently while the next ones download (default 16; 1 = one at a time). */
  pipelineJobs?: number;
  /** Bytes of downloaded messages held in memory for those jobs (default 48 MiB). */
  pipelineBytes?: number;
  /**
   * Messages up to this size are read whole and stored while the next ones download; bigger ones are streamed from
   * the connection to S3, so a 50 MB message costs the same few MB as a small one (DEFAULT_WHOLE_MESSAGE_BYTES).
   */
  wholeMessageBytes?: number;
  /** Called at named points of the run; fault tests stop the process there. */
  onStep?: (step: SyncStep) => void;
}

/** The deterministic S3 key: a retry after a crash overwrites its own object instead of leaving an orphan. */
export function rawObjectKey(sourceId: string, identity: string): string {
  return `raw/${sourceId}/${sha256Hex(identity).slice(0, 40)}.eml`;
}

export function defaultHolder(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/** What is kept of a message too big to parse whole: its header block fits in this (the parser caps headers too). */
const HEADER_KEEP_BYTES = 1024 * 1024;

/** Messages stored and committed at once while the next ones download, and the bytes they may hold. */
const PIPELINE_JOBS = 16;
const PIPELINE_BYTES = 48 * 1024 * 1024;
/** Thrown inside a fetch loop to stop it when the time budget is spent. */
class BudgetSpent extends Error {}

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

/**
 * The identity of each POP3 message: its UIDL, or without UIDL a hash of its `TOP n 0` header block (identical
 * headers get an ordinal). Undefined when `budgetLeft` says stop while reading headers.
 */
export async function identifyPop3(
  session: Pop3Session,
  listing: Pop3Listing[],
  budgetLeft: () => boolean,
): Promise<Map<number, UpstreamId> | undefined> {
  const out = new Map<number, UpstreamId>();
  const seenTop = new Map<string, number>();
  for (const entry of listing) {
    if (entry.uidl !== undefined) {
      out.set(entry.number, { kind: 'pop3', uidl: entry.uidl });
      continue;
    }
    if (!budgetLeft()) return undefined;
    const headerHash = sha256Hex(await session.topHeaders(entry.number));
    const nth = (seenTop.get(headerHash) ?? 0) + 1;
    seenTop.set(headerHash, nth);
    out.set(entry.number, { kind: 'pop3-top', headerHash: nth === 1 ? headerHash : `${headerHash}#${nth}` });
  }
  return out;
}

class SourceRun {
  private renewTimer?: NodeJS.Timeout;
  private renewing: Promise<void> = Promise.resolve();
  private leaseLost = false;
  /** What the source occupies in the store, kept current while fetching, when it has an inbox quota. */
  private inbox?: InboxUsage;
  private deadlineTimer?: NodeJS.Timeout;
  private readonly atDeadline: Array<() => void> = [];
  /** The hard deadline passed: the upstream connection was dropped, whatever it was doing. */
  pastDeadline = false;
  private readonly wholeMessageBytes: number;

  constructor(
    private readonly deps: SyncDeps,
    private readonly source: Source,
    private readonly options: SyncOptions,
    public lease: Lease,
    private readonly report: SourceRunReport,
  ) {
    this.wholeMessageBytes = options.wholeMessageBytes ?? DEFAULT_WHOLE_MESSAGE_BYTES;
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
    for (const f of await this.deps.index.messageFailures(this.source.id)) this.failures.set(f.identity, f);
    const connect = {
      timeoutMs: this.options.timeoutMs ?? 30_000,
      wholeMessageBytes: this.wholeMessageBytes,
    };
    if (this.source.inboxQuota) this.inbox = await this.deps.index.inboxUsage(this.source.id);
    if (this.source.protocol === 'imap') {
      const session = await this.openWithin(this.deps.connector.openImap(this.source, password, connect));
      try {
        checkImapCapabilities(this.source, session.capabilities);
        for (const folder of this.source.folders) {
          if (!(await this.syncImapFolder(session, folder))) break;
        }
        if (this.report.outcome !== 'more') await this.imapPolicies(session);
      } finally {
        await session.close().catch(() => undefined);
      }
    } else {
      const session = await this.openWithin(this.deps.connector.openPop3(this.source, password, connect));
      let quit = false;
      try {
        // After a stop for time, RETRs may still be in flight: drop the connection rather than drain them past
        // the deadline. No DELE was sent before the policies, so dropping it deletes nothing.
        if (await this.syncPop3(session)) {
          quit = await this.pop3Policies(session);
          if (!quit) await session.quit();
          quit = true;
        }
      } finally {
        if (!quit) session.abort();
      }
    }
  }

  private policyContext(): PolicyContext {
    return {
      source: this.source,
      index: this.deps.index,
      store: this.deps.store,
      clock: this.deps.clock,
      logger: this.deps.logger,
      report: this.report,
      lease: () => this.lease,
      checkLease: () => this.checkLease(),
      renewLease: async () => {
        this.checkLease();
        this.lease = await this.deps.index.renewLease(
          this.lease,
          this.options.leaseTtlMs ?? 60_000,
          this.deps.clock.now(),
        );
      },
      budgetLeft: () => this.budgetLeft() && !this.pastDeadline,
      step: (step) => this.options.onStep?.(step),
    };
  }

  /** After every folder is fetched: the policies, on committed messages only. A `keep` source does nothing here. */
  private async imapPolicies(session: ImapSession): Promise<void> {
    const pending = await this.deps.index.pendingActions(this.source.id);
    if (!hasPolicyWork(this.source, pending)) return;
    const { messages, folders } = await scanImap(
      session,
      this.source,
      currentValidity(this.deps.index, this.source.id),
    );
    await attachStored(this.deps.index, this.source.id, messages);
    const ctx = this.policyContext();
    const run = new PolicyRun(ctx);
    await run.resolvePending(pending, messages, {
      readPrefixes: this.source.folders.map(imapFolderKeyPrefix),
      undo: async (still) => {
        for (const folder of new Set(still.map((m) => m.folder!))) {
          const uids = still.filter((m) => m.folder === folder).map((m) => m.uid!);
          await session.clearDeleted(folder, folders.get(folder)!.uidValidity, uids);
        }
      },
    });
    await applyImapPolicies(run, ctx, session, messages, folders);
  }

  /** Returns true when it ended the session with QUIT itself (after DELEs). */
  private async pop3Policies(session: Pop3Session): Promise<boolean> {
    const pending = await this.deps.index.pendingActions(this.source.id);
    if (!hasPolicyWork(this.source, pending)) return false;
    const messages = scanPop3(this.pop3Listing, this.pop3Identities);
    await attachStored(this.deps.index, this.source.id, messages);
    const ctx = this.policyContext();
    const run = new PolicyRun(ctx);
    await run.resolvePending(pending, messages);
    return applyPop3Policies(run, ctx, session, messages, this.pop3FetchedNow);
  }

  /**
   * The inbox quota with `pause`: the longest prefix of `todo` (in fetch order) that fits; the rest stays upstream
   * untouched, and the run says so.
   */
  private limitToInbox<T extends { size: number }>(todo: T[]): T[] {
    const cap = this.source.inboxQuota;
    if (cap?.onExceed !== 'pause' || !this.inbox) return todo;
    let usage = { ...this.inbox };
    const fits: T[] = [];
    for (const m of todo) {
      if (!inboxFits(cap, usage, m.size)) break;
      fits.push(m);
      usage = { messages: usage.messages + 1, bytes: usage.bytes + m.size };
    }
    if (fits.length < todo.length) {
      this.report.outcome = 'paused';
      this.report.notes.push(
        `paused by the inbox quota (${describeInboxQuota(cap, usage)}): ${todo.length - fits.length} message(s) stay upstream, untouched`,
      );
    }
    return fits;
  }

  /** Messages set aside and not asked to be retried: every run skips them. */
  setAsideCount(): number {
    return [...this.failures.values()].filter((f) => f.setAside && !f.retry).length;
  }

  private isSetAside(identity: string): boolean {
    const f = this.failures.get(identity);
    return f !== undefined && f.setAside && !f.retry;
  }

  /**
   * Counts a failed attempt at one message; returns true when that set it aside. A message being retried on demand
   * stays marked for retry until it is set aside again, so a run below the IMAP checkpoint keeps reaching it.
   */
  private async messageFailed(upstream: UpstreamId, err: MessageError): Promise<boolean> {
    const identity = identityKey(upstream);
    const previous = this.failures.get(identity);
    const at = new Date(this.deps.clock.now()).toISOString();
    const attempts = (previous?.attempts ?? 0) + 1;
    const setAside = attempts >= SET_ASIDE_AFTER;
    const failure: MessageFailure = {
      sourceId: this.source.id,
      identity,
      upstream,
      attempts,
      error: { code: err.code, message: err.message },
      firstAt: previous?.firstAt ?? at,
      lastAt: at,
      setAside,
      ...(!setAside && previous?.retry ? { retry: true } : {}),
    };
    this.checkLease();
    await this.deps.index.recordMessageFailure(this.lease, failure);
    this.failures.set(identity, failure);
    if (setAside) {
      this.report.outcome = 'more';
      this.report.notes.push(
        `${identity}: set aside after ${attempts} failed attempts (${err.message}); it stays upstream, untouched and never deleted by a policy, and the rest of the source goes on ("tributary sources retry ${this.source.id}" tries it again)`,
      );
    } else {
      this.report.notes.push(`${identity}: attempt ${attempts} of ${SET_ASIDE_AFTER} failed on this message`);
    }
    return setAside;
  }

  /** Forgets the failures of messages now committed (or gone upstream). */
  private async forgetFailures(identities: string[]): Promise<void> {
    const known = identities.filter((id) => this.failures.has(id));
    if (!known.length) return;
    this.checkLease();
    await this.deps.index.clearMessageFailures(this.lease, known);
    for (const id of known) this.failures.delete(id);
  }

  private budgetLeft(): boolean {
    return this.deps.clock.now() < this.options.deadline;
  }

  private checkLease(): void {
    if (this.leaseLost) throw new LeaseLostError(this.source.id);
  }

  private progress(planned?: number): void {
    this.options.onProgress?.({
      sourceId: this.source.id,
      fetched: this.report.fetched,
      fetchedBytes: this.report.fetchedBytes,
      planned,
    });
  }

  private pipeline(oneAtATime: boolean): Pipeline {
    return oneAtATime
      ? new Pipeline(1, 0)
      : new Pipeline(
          this.options.pipelineJobs ?? PIPELINE_JOBS,
          this.options.pipelineBytes ?? PIPELINE_BYTES,
        );
  }

  /**
   * A small message is read into memory and stored and committed in the background while the next one
   * downloads; a big one is streamed to S3 here, from the connection, so the download waits for it (memory stays
   * bounded by the pipeline's bytes and the stream's parts, whatever the message size).
   */
  private async handOff(
    pipeline: Pipeline,
    announcedSize: number,
    body: Bytes,
    handle: (body: Bytes, inMemoryBytes?: number) => Promise<void>,
  ): Promise<void> {
    pipeline.check();
    if (announcedSize > this.wholeMessageBytes) {
      await handle(body);
      return;
    }
    const bytes = await collect(body);
    await pipeline.add(bytes.length, () => handle(bytesOf(bytes), bytes.length));
  }

  /**
   * Streams one message into S3 while hashing it; parses what it kept. Nothing is committed yet. `inMemoryBytes`:
   * the body is already in memory, that long (the store can send it in one request).
   */
  private async store(
    upstream: UpstreamId,
    body: Bytes,
    announcedSize: number,
    inMemoryBytes?: number,
  ): Promise<{ record: MessageRecord; contentSha256: string }> {
    this.checkLease();
    const identity = identityKey(upstream);
    const key = rawObjectKey(this.source.id, identity);
    // Keep the whole message for the parser only when the server says it is small enough; of a bigger one keep
    // just enough for its header block. A server that under-announces still only costs the parse limit.
    const parseLimit = this.options.parseLimitBytes ?? 8 * 1024 * 1024;
    const tap = new BodyTap(announcedSize <= parseLimit ? parseLimit : HEADER_KEEP_BYTES);
    if (inMemoryBytes === undefined) {
      await this.deps.store.put(key, tap.wrap(body), {});
    } else {
      // In memory already: hash it first, so the store can send the hash along (S3 signs and checks it instead
      // of hashing the body again).
      const bytes = await collect(tap.wrap(body));
      await this.deps.store.put(key, bytesOf(bytes), { size: bytes.length, sha256: tap.digests().sha256 });
    }
    this.options.onStep?.('stored');
    const { sha256, contentSha256 } = tap.digests();
    const metadata = await this.deps.parser.parse(tap.head(), tap.complete);
    const fetchedAt = new Date(this.deps.clock.now()).toISOString();
    return {
      contentSha256,
      record: {
        sourceId: this.source.id,
        identity,
        upstream,
        object: { key, size: tap.size, sha256, contentSha256 },
        metadata,
        fetchedAt,
        sortDate: metadata.date ?? fetchedAt,
        seen: false,
        flagged: false,
      },
    };
  }

  private async commit(record: MessageRecord): Promise<void> {
    this.checkLease();
    const result = await this.deps.index.commitMessage(this.lease, record);
    if (result === 'exists') {
      this.report.skipped++;
      return;
    }
    this.report.fetched++;
    this.report.fetchedBytes += record.object.size;
    if (this.inbox)
      this.inbox = { messages: this.inbox.messages + 1, bytes: this.inbox.bytes + record.object.size };
    this.options.onStep?.('committed');
    if (result === 'shared') {
      // The item points at the bytes another committed item registered: the copy just written is a duplicate. Only
      // after the fenced commit, as in matchExisting: a crash before this leaves an orphan, never a missing object.
      await this.deps.store.delete(record.object.key);
      this.options.onStep?.('duplicate-deleted');
    }
  }

  /** Returns false when the budget ran out (the caller stops; the report says there is more to do). */
  private async syncImapFolder(session: ImapSession, folder: string): Promise<boolean> {
    const status = await session.openFolder(folder);
    const state = await this.deps.index.getFolderState(this.source.id, folder);
    const plan = planImapFolder(state, status);
    this.deps.logger.debug('imap plan', { sourceId: this.source.id, folder, plan: plan.kind, why: plan.why });
    const generation = folderGeneration(state, plan);
    const validity = effectiveValidity(status.uidValidity, generation);
    // Set-aside messages asked to be retried may lie below the checkpoint: the listing starts low enough to reach them.
    const retryUids = [...this.failures.values()].flatMap((f) =>
      f.retry &&
      f.upstream.kind === 'imap' &&
      f.upstream.folder === folder &&
      f.upstream.uidValidity === validity
        ? [f.upstream.uid]
        : [],
    );
    if (plan.kind === 'unchanged' && !retryUids.length) return true;
    if (plan.kind === 'rematch') this.report.notes.push(`${folder}: ${plan.why}`);

    const fromUid = Math.min(
      plan.kind === 'rematch' ? 1 : plan.kind === 'unchanged' ? Number.MAX_SAFE_INTEGER : plan.fromUid,
      ...retryUids,
    );
    const prefix = imapFolderPrefix(folder, validity);
    const idOf = (uid: number): UpstreamId => ({ kind: 'imap', folder, uidValidity: validity, uid });
    const listed = await session.listUids(fromUid);
    const committed = await this.deps.index.committedIdentities(
      this.source.id,
      prefix,
      identityKey(idOf(fromUid)),
    );
    const checkpoint = new UidCheckpoint(
      plan.kind === 'rematch' ? 0 : (state?.committedThroughUid ?? 0),
      listed.map((m) => m.uid),
    );
    const unstored = listed.filter((m) => {
      const identity = identityKey(idOf(m.uid));
      // A set-aside message is settled for the checkpoint: it is on record, and a retry reaches below it.
      const done = committed.has(identity) || this.isSetAside(identity);
      if (done) checkpoint.settle(m.uid);
      return !done;
    });
    // Failures of UIDs this complete listing no longer holds: the message is gone upstream, nothing is left to retry.
    const listedUids = new Set(listed.map((m) => m.uid));
    await this.forgetFailures(
      [...this.failures.values()].flatMap((f) =>
        f.upstream.kind === 'imap' &&
        f.upstream.folder === folder &&
        f.upstream.uidValidity === validity &&
        f.upstream.uid >= fromUid &&
        !listedUids.has(f.upstream.uid)
          ? [f.identity]
          : [],
      ),
    );
    const todo = this.limitToInbox(unstored);
    const cut = todo.length < unstored.length;
    this.progress(todo.length);

    const every = this.options.checkpointEvery ?? 50;
    let sinceSave = 0;
    // During a rematch the old generation's state stays until the whole new listing is settled: a checkpoint of
    // the new UIDVALIDITY written halfway would make the next run treat unmatched old messages as new ones.
    const rematching = plan.kind === 'rematch';
    const save = async (uidNext: number, final = false) => {
      if (rematching && !final) return;
      this.checkLease();
      const next: FolderState = {
        folder,
        uidValidity: status.uidValidity,
        committedThroughUid: checkpoint.value,
        uidNext,
        highestModseq: status.highestModseq,
        ...(generation ? { generation } : {}),
      };
      await this.deps.index.saveFolderState(this.lease, next);
    };

    // During a rematch each message is matched against the store before the next: two twins in flight at once
    // could both claim the same stored copy.
    const pipeline = this.pipeline(rematching);
    const handle = async (uid: number, size: number, body: Bytes, inMemoryBytes?: number) => {
      const upstream = idOf(uid);
      const { record, contentSha256 } = await this.store(upstream, body, size, inMemoryBytes);
      if (rematching && (await this.matchExisting(upstream, record, contentSha256))) {
        this.report.skipped++;
      } else {
        await this.commit(record);
      }
      await this.forgetFailures([record.identity]);
      checkpoint.settle(uid);
      this.progress(todo.length);
    };
    let finished = false;
    let failure: { error: unknown } | undefined;
    try {
      await session.fetchBodies(todo, async (uid, size, body) => {
        if (!this.budgetLeft()) throw new BudgetSpent();
        await this.handOff(pipeline, size, body, (bytes, held) => handle(uid, size, bytes, held));
        if (++sinceSave >= every) {
          sinceSave = 0;
          await save(state?.uidNext ?? 1);
        }
      });
      finished = true;
    } catch (err) {
      failure = { error: err };
    }
    // What is in flight commits (or fails) before the checkpoint is saved over it.
    const jobFailure = await pipeline.settle();
    if (jobFailure && (!failure || failure.error instanceof BudgetSpent)) failure = jobFailure;
    if (failure && !(failure.error instanceof BudgetSpent)) {
      await save(state?.uidValidity === status.uidValidity ? state.uidNext : 1).catch(() => undefined);
      const err = failure.error;
      if (
        err instanceof MessageError &&
        err.at.uid !== undefined &&
        (await this.messageFailed(idOf(err.at.uid), err))
      )
        return false;
      throw err;
    }
    if (failure) finished = false;
    if (finished && !cut) {
      // Every listed UID was delivered or has vanished meanwhile, and the listing (taken after EXAMINE) holds
      // every UID below that UIDNEXT still there: UIDs are never reused, so everything below it is settled.
      checkpoint.settleThrough(status.uidNext - 1);
      // A UIDNEXT derived from the highest UID goes down when the newest messages are expunged: keep the higher one.
      const sameGeneration = state?.uidValidity === status.uidValidity && !rematching;
      await save(
        status.uidNextDerived && sameGeneration ? Math.max(state.uidNext, status.uidNext) : status.uidNext,
        true,
      );
      return true;
    }
    await save(state?.uidValidity === status.uidValidity ? state.uidNext : 1);
    if (finished) return false; // paused by the inbox quota: the checkpoint stays below what was left upstream
    this.report.outcome = 'more';
    this.report.notes.push(
      `${folder}: time budget spent; the next run continues from UID ${checkpoint.value + 1}`,
    );
    return false;
  }

  /**
   * After a UIDVALIDITY change: if a stored message has the same content and no identity in the new generation
   * claims it yet, record the new UID as an alias and drop the object just written; nothing is stored twice.
   */
  private async matchExisting(
    upstream: UpstreamId,
    record: MessageRecord,
    contentSha256: string,
  ): Promise<boolean> {
    if (upstream.kind !== 'imap') return false;
    // Only this folder's earlier generations: an identical message in another folder is its own copy.
    const folderPrefix = imapFolderKeyPrefix(upstream.folder);
    const newPrefix = imapFolderPrefix(upstream.folder, upstream.uidValidity);
    const entries = (await this.deps.index.findByContent(this.source.id, contentSha256)).filter((e) =>
      e.identity.startsWith(folderPrefix),
    );
    const claimed = new Set(entries.filter((e) => e.identity.startsWith(newPrefix)).map((e) => e.target));
    const target = entries.find((e) => !e.identity.startsWith(newPrefix) && !claimed.has(e.target))?.target;
    if (!target) return false;
    this.checkLease();
    await this.deps.index.commitAlias(this.lease, upstream, target, contentSha256);
    // Only after the fenced commit: a crash before this leaves an orphan object, never a missing one.
    await this.deps.store.delete(record.object.key);
    return true;
  }

  /** Returns false when it stopped for time. */
  private async syncPop3(session: Pop3Session): Promise<boolean> {
    const listing = await session.list();
    this.pop3Listing = listing;
    const identified = await identifyPop3(session, listing, () => this.budgetLeft());
    if (!identified) {
      this.report.outcome = 'more';
      this.report.notes.push(
        'time budget spent reading headers (the server has no UIDL); the next run goes on',
      );
      return false;
    }
    const candidates: Pop3Candidate[] = listing.map((entry) => {
      const upstream = identified.get(entry.number)!;
      this.pop3Upstream.set(entry.number, upstream);
      this.pop3Identities.set(entry.number, identityKey(upstream));
      return { number: entry.number, identity: identityKey(upstream), size: entry.size };
    });
    const committed = await this.deps.index.committedIdentities(this.source.id, 'pop3');
    const plan = planPop3Sync(committed, candidates);
    const fetch = this.limitToInbox(plan.fetch.filter((c) => !this.isSetAside(c.identity)));
    const listed = new Set(candidates.map((c) => c.identity));
    // Failures of messages the maildrop no longer lists: gone upstream, nothing is left to retry.
    await this.forgetFailures(
      [...this.failures.values()].flatMap((f) =>
        f.upstream.kind !== 'imap' && !listed.has(f.identity) ? [f.identity] : [],
      ),
    );
    // Stored identities the server no longer lists: after a UIDL reset, new UIDLs may name those very messages.
    const vanished = [...committed].some((id) => !listed.has(id));
    const sizes = new Map(candidates.map((c) => [c.number, c.size]));
    this.progress(fetch.length);
    // After a UIDL reset each message is matched against the store before the next (see syncImapFolder).
    const pipeline = this.pipeline(vanished);
    const handle = async (number: number, body: Bytes, inMemoryBytes?: number) => {
      const upstream = this.pop3Upstream.get(number)!;
      const { record, contentSha256 } = await this.store(
        upstream,
        body,
        sizes.get(number) ?? 0,
        inMemoryBytes,
      );
      if (vanished && (await this.matchReset(upstream, record, contentSha256, listed))) {
        this.report.skipped++;
      } else {
        await this.commit(record);
      }
      await this.forgetFailures([record.identity]);
      this.pop3FetchedNow.set(number, record.object.sha256);
      this.progress(fetch.length);
    };
    let failure: { error: unknown } | undefined;
    try {
      await session.retrieve(
        fetch.map((c) => c.number),
        async (number, body) => {
          if (!this.budgetLeft()) throw new BudgetSpent();
          await this.handOff(pipeline, sizes.get(number) ?? 0, body, (bytes, held) =>
            handle(number, bytes, held),
          );
        },
      );
    } catch (err) {
      failure = { error: err };
    }
    const jobFailure = await pipeline.settle();
    if (jobFailure && (!failure || failure.error instanceof BudgetSpent)) failure = jobFailure;
    if (failure) {
      const err = failure.error;
      if (err instanceof MessageError && err.at.number !== undefined) {
        const upstream = this.pop3Upstream.get(err.at.number);
        if (upstream && (await this.messageFailed(upstream, err))) return false;
      }
      if (!(err instanceof BudgetSpent)) throw err;
      this.report.outcome = 'more';
      this.report.notes.push('time budget spent; the next run continues');
      return false;
    }
    return true;
  }

  /**
   * POP3 UIDL reset: a new UIDL whose bytes equal a stored message that the server no longer lists under its old
   * identity (and that Tributary did not delete upstream) is that message: record an alias, store nothing twice.
   * Two identical messages listed at once stay two: an entry whose identity is listed claims its copy.
   */
  private async matchReset(
    upstream: UpstreamId,
    record: MessageRecord,
    contentSha256: string,
    listed: ReadonlySet<string>,
  ): Promise<boolean> {
    const entries = (await this.deps.index.findByContent(this.source.id, contentSha256)).filter((e) =>
      e.identity.startsWith('pop3'),
    );
    const claimed = new Set(entries.filter((e) => listed.has(e.identity)).map((e) => e.target));
    const free = [...new Set(entries.filter((e) => !claimed.has(e.target)).map((e) => e.target))];
    if (!free.length) return false;
    const copies = await this.deps.index.lookup(this.source.id, free);
    const target = free.find((id) => {
      const copy = copies.get(id);
      return copy?.state === 'stored' && !copy.deletedUpstreamAt;
    });
    if (!target) return false;
    this.checkLease();
    await this.deps.index.commitAlias(this.lease, upstream, target, contentSha256);
    this.report.notes.push(
      `${identityKey(upstream)}: a stored message under a new UIDL (the server reset them)`,
    );
    // Only after the fenced commit: a crash before this leaves an orphan object, never a missing one.
    await this.deps.store.delete(record.object.key);
    return true;
  }

  /** Messages that failed on their own before, by identity (set aside after SET_ASIDE_AFTER attempts). */
  private readonly failures = new Map<string, MessageFailure>();
  /** Message numbers fetched in this session, with the sha256 of what was fetched: their proof before a DELE. */
  private readonly pop3FetchedNow = new Map<number, string>();
  private readonly pop3Upstream = new Map<number, UpstreamId>();
  private readonly pop3Identities = new Map<number, string>();
  private pop3Listing: Pop3Listing[] = [];
}
