/**
 * Carrying out the policies (docs/architecture.md, policies) at the end of a run, in the durable order of decision 0004:
 * verify the stored copy -> write the audit intent -> act -> complete the audit. A run cut anywhere leaves either
 * nothing done or an intent that the next run resolves against what the server then holds.
 */
import { createHash } from 'node:crypto';
import { UpstreamError } from './errors';
import { HeaderCollector, headerDigest } from './header-proof';
import { deletesUpstream, identityKey } from './model';
import type { AuditRecord, FolderStatus, Source, SourceRunReport } from './model';
import { effectiveValidity, folderGeneration, planImapFolder } from './planners';
import {
  planPolicies,
  usableQuota,
  type PlannedDelete,
  type PolicyPlan,
  type StoredCopy,
  type UpstreamMessage,
} from './policies';
import type { ImapSession, Lease, MessageIndex, Pop3Listing, Pop3Session, RawMailStore } from './ports';
import type { Clock, Logger } from './ports';

/** Named points of a run, for fault tests that stop the process exactly there. */
export type SyncStep =
  | 'stored' // the object is in S3, its item not yet committed
  | 'committed'
  | 'duplicate-deleted' // a message whose bytes were registered already: its own copy is deleted
  | 'intent-written' // audit intents written, nothing deleted yet
  | 'dele-sent' // POP3: DELEs sent, QUIT not yet
  | 'quit-next' // POP3: the lease renewed for the QUIT, which is written next (unless the lease is too short)
  | 'store-next' // IMAP: folder selected, UID STORE \Deleted written next (unless the lease is too short)
  | 'expunge-next' // IMAP: \Deleted stored, UID EXPUNGE written next (unless the lease is too short)
  | 'upstream-deleted' // the server applied the deletes; audits not yet completed
  | 'evicted-item' // the item is a tombstone, the object not yet deleted
  | 'evicted-object'; // the object is deleted, the audit not yet completed

export interface PolicyContext {
  source: Source;
  index: MessageIndex;
  store: RawMailStore;
  clock: Clock;
  logger: Logger;
  report: SourceRunReport;
  lease: () => Lease;
  checkLease: () => void;
  /** Extends the lease with a fenced write (LeaseLostError if it was taken): done right before acting upstream. */
  renewLease: () => Promise<void>;
  /**
   * Called synchronously right before a command that deletes upstream is written (POP3 QUIT, IMAP UID STORE
   * \Deleted and UID EXPUNGE): throws LeaseLostError when the lease was taken over, LeaseExpiringError when less
   * than half of it is ahead. The server checks no fence, so this is what keeps a run that was paused past its
   * lease from deleting after its successor read the server (docs/architecture.md, "A paused run and the server").
   */
  leaseAhead: () => void;
  budgetLeft: () => boolean;
  step: (step: SyncStep) => void;
}

/** Destructive actions are done in chunks (verify -> intent -> act -> complete), the time budget checked between. */
const CHUNK = 100;

function chunks<T>(list: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/** Whether a run has anything to do after fetching: a policy, or intents a cut run left behind. */
export function hasPolicyWork(source: Source, pending: AuditRecord[]): boolean {
  // A pause works while fetching; only eviction needs the listing afterwards.
  return deletesUpstream(source) || source.inboxQuota?.onExceed === 'evict-oldest' || pending.length > 0;
}

/** Refuses, before anything is fetched, a deleting policy the server cannot carry out safely. */
export function checkImapCapabilities(source: Source, capabilities: ReadonlySet<string>): void {
  if (deletesUpstream(source) && !capabilities.has('UIDPLUS')) {
    throw new UpstreamError(
      'CAPABILITY_MISSING',
      `${source.host} has no UIDPLUS, so source ${source.id} cannot delete upstream safely (a plain EXPUNGE would also remove messages marked \\Deleted elsewhere): set "retention": {"mode": "keep"} and remove "upstreamQuota"`,
      false,
    );
  }
  if (source.upstreamQuota && !capabilities.has('QUOTA')) {
    throw new UpstreamError(
      'CAPABILITY_MISSING',
      `${source.host} does not report storage usage (no IMAP QUOTA), so the "upstreamQuota" of source ${source.id} cannot work: remove it (check with "tributary sources test ${source.id}")`,
      false,
    );
  }
}

/** Every message of the configured IMAP folders, oldest arrival first, and each folder's status (EXAMINE). */
export async function scanImap(
  session: ImapSession,
  source: Source,
  validityOf: (folder: string, status: FolderStatus) => Promise<string>,
): Promise<{ messages: UpstreamMessage[]; folders: Map<string, FolderStatus> }> {
  const rows: Array<Omit<UpstreamMessage, 'order'> & { date: number; f: number }> = [];
  const folders = new Map<string, FolderStatus>();
  for (const [f, folder] of source.folders.entries()) {
    const status = await session.openFolder(folder);
    folders.set(folder, status);
    const uidValidity = await validityOf(folder, status);
    for (const m of await session.listUids(1, { internalDate: true })) {
      rows.push({
        identity: identityKey({ kind: 'imap', folder, uidValidity, uid: m.uid }),
        folder,
        uid: m.uid,
        size: m.size,
        // Unknown arrival counts as newest, so the quota guard never deletes it first on a guess.
        date: m.internalDate ?? Number.MAX_SAFE_INTEGER,
        f,
      });
    }
  }
  rows.sort((a, b) => a.date - b.date || a.f - b.f || a.uid! - b.uid!);
  return {
    messages: rows.map(({ date: _date, f: _f, ...m }, order) => ({ ...m, order })),
    folders,
  };
}

/** The UIDVALIDITY (with its generation) the sync uses for a folder in this state: what its identities carry. */
export function currentValidity(
  index: MessageIndex,
  sourceId: string,
): (folder: string, status: FolderStatus) => Promise<string> {
  return async (folder, status) => {
    const state = await index.getFolderState(sourceId, folder);
    return effectiveValidity(status.uidValidity, folderGeneration(state, planImapFolder(state, status)));
  };
}

/** The POP3 maildrop, in message-number order (the arrival order). */
export function scanPop3(listing: Pop3Listing[], identities: Map<number, string>): UpstreamMessage[] {
  return listing
    .filter((e) => identities.has(e.number))
    .map((e) => ({ identity: identities.get(e.number)!, number: e.number, size: e.size, order: e.number }));
}

/** Attaches the committed copy behind each message. */
export async function attachStored(
  index: MessageIndex,
  sourceId: string,
  messages: UpstreamMessage[],
): Promise<void> {
  const copies = await index.lookup(
    sourceId,
    messages.map((m) => m.identity),
  );
  for (const m of messages) m.stored = copies.get(m.identity);
}

/** What the stored object holds now: its size, sha256 and the digest of its header block. */
async function readBack(
  store: RawMailStore,
  key: string,
): Promise<{ size: number; sha256: string; header: string }> {
  const hash = createHash('sha256');
  const header = new HeaderCollector();
  let size = 0;
  for await (const chunk of await store.get(key)) {
    size += chunk.byteLength;
    hash.update(chunk);
    header.add(chunk);
  }
  return { size, sha256: hash.digest('hex'), header: header.digest() };
}

/**
 * What the server shows, right before a delete, of the message it holds under an identity: its header block
 * (POP3 `TOP n 0`, IMAP `BODY.PEEK[HEADER]`), the sha256 of the whole message (read again where headers prove
 * nothing, as for POP3 identities made of the header hash), or the sha256 of the bytes fetched in this very session
 * under the same message number.
 */
export type UpstreamProof = { header: Uint8Array } | { sha256: string };

/** Gathers the proofs for a chunk of deletes, by identity; a message with no proof is not deleted. */
export type Prover = (deletes: PlannedDelete[]) => Promise<Map<string, UpstreamProof>>;

/**
 * Runs the policies for one source in an open session: resolves intents a cut run left, plans, and carries the
 * plan out. `upstream` is everything the server holds in the source's scope now, with its stored copies attached.
 */
export class PolicyRun {
  private seq = 0;

  constructor(private readonly ctx: PolicyContext) {}

  private auditId(): string {
    const at = new Date(this.ctx.clock.now()).toISOString();
    return `${at}#${String(this.ctx.lease().fence).padStart(6, '0')}#${String(this.seq++).padStart(5, '0')}`;
  }

  private record(
    action: AuditRecord['action'],
    d: Pick<PlannedDelete, 'message' | 'policy' | 'why'>,
    usageBefore: number | undefined,
  ): AuditRecord {
    const stored: StoredCopy = d.message.stored;
    return {
      id: this.auditId(),
      sourceId: this.ctx.source.id,
      action,
      policy: d.policy,
      why: d.why,
      identity: d.message.identity,
      target: stored.identity,
      object: { key: stored.key, size: stored.size, sha256: stored.sha256 },
      at: new Date(this.ctx.clock.now()).toISOString(),
      state: 'intent',
      usageBefore,
    };
  }

  /**
   * Intents left by a run that stopped between an action and its completion. A delete is `not-applied` when the
   * message is still upstream (by its identity, or by its stored copy after a UIDVALIDITY change) and `done` when
   * it is gone from a folder that was read; an intent about a folder no longer read stays pending. An eviction is
   * finished (object deleted) when the item is already a tombstone.
   * `undo` clears the \Deleted flag a cut IMAP delete may have left on messages still there.
   */
  async resolvePending(
    pending: AuditRecord[],
    upstream: UpstreamMessage[],
    options: { readPrefixes?: string[]; undo?: (messages: UpstreamMessage[]) => Promise<void> } = {},
  ): Promise<void> {
    if (!pending.length) return;
    const byIdentity = new Map(upstream.map((m) => [m.identity, m]));
    const byTarget = new Map(upstream.filter((m) => m.stored).map((m) => [m.stored!.identity, m]));
    const outcomes: Parameters<MessageIndex['completeActions']>[1] = [];
    const still: UpstreamMessage[] = [];
    for (const record of pending) {
      if (record.action === 'delete-upstream') {
        const present = byIdentity.get(record.identity) ?? byTarget.get(record.target);
        if (present) {
          still.push(present);
          outcomes.push({
            record,
            state: 'not-applied',
            note: 'the run stopped before the server applied the delete; the message is still upstream',
          });
        } else if (options.readPrefixes && !options.readPrefixes.some((p) => record.identity.startsWith(p))) {
          this.ctx.report.notes.push(
            `${record.identity}: an interrupted delete in a folder no longer read; its audit record stays pending`,
          );
        } else {
          outcomes.push({
            record,
            state: 'done',
            note: 'the run stopped after the delete; the next run found the message gone upstream',
          });
        }
      } else {
        const copy = (await this.ctx.index.lookup(this.ctx.source.id, [record.target])).get(record.target);
        if (copy?.state === 'evicted') {
          if (await this.ctx.index.objectUnreferenced(record.object))
            await this.ctx.store.delete(record.object.key);
          outcomes.push({ record, state: 'done', note: 'finished by the next run' });
        } else {
          outcomes.push({ record, state: 'not-applied', note: 'the run stopped before the eviction' });
        }
      }
    }
    if (still.length && options.undo) await options.undo(still);
    this.ctx.checkLease();
    await this.ctx.index.completeActions(this.ctx.lease(), outcomes, this.ctx.clock.now());
    this.ctx.report.notes.push(`completed ${outcomes.length} audit record(s) left by an interrupted run`);
  }

  async plan(
    upstream: UpstreamMessage[],
    usage: { usedBytes: number; limitBytes: number } | undefined,
  ): Promise<PolicyPlan> {
    const plan = planPolicies({
      source: this.ctx.source,
      now: this.ctx.clock.now(),
      upstream,
      usage,
      inbox: await this.ctx.index.inboxUsage(this.ctx.source.id),
    });
    this.ctx.report.notes.push(...plan.notes);
    return plan;
  }

  /**
   * Section 4, rule 1: deleted upstream only if the object holds the recorded size and sha256 right before, and
   * the item exists (it was just read from the base table); and rule 5: only if the server proves the message it
   * holds is that copy (`prove`). A copy that fails either is kept upstream and reported.
   */
  async verified(deletes: PlannedDelete[], prove: Prover): Promise<PlannedDelete[]> {
    const intact = await this.intact(deletes);
    if (!intact.length) return [];
    const proofs = await prove(intact.map((v) => v.d));
    const ok: PlannedDelete[] = [];
    for (const { d, header } of intact) {
      const proof = proofs.get(d.message.identity);
      const proven =
        proof !== undefined &&
        ('header' in proof
          ? headerDigest(proof.header) === header
          : proof.sha256 === d.message.stored.sha256);
      if (proven) {
        ok.push(d);
        continue;
      }
      this.ctx.logger.warn('the upstream message is not proven to be the stored copy; not deleting it', {
        sourceId: this.ctx.source.id,
        identity: d.message.identity,
      });
      this.ctx.report.notes.push(
        proof === undefined
          ? `${d.message.identity}: the server could not show the message right before the delete, so it is kept upstream`
          : `${d.message.identity}: the server holds another message under this identity now (its ${'header' in proof ? 'header block' : 'content'} differs from the stored copy's), so it is kept upstream and nothing is deleted on a guess`,
      );
    }
    return ok;
  }

  /** The deletes whose stored copy is intact (size and sha256 read back), with the digest of its header block. */
  private async intact(deletes: PlannedDelete[]): Promise<Array<{ d: PlannedDelete; header: string }>> {
    const ok: Array<{ d: PlannedDelete; header: string }> = [];
    for (const d of deletes) {
      const stored = d.message.stored;
      // What was stored must be what the server says it holds: a copy of another size may be a truncated one.
      // One tolerance: a POP3 server adds the final CRLF a message lacks (RFC 1939), so +2 is the same message.
      const announced = d.message.size;
      if (stored.size !== announced && !(d.message.number !== undefined && stored.size === announced + 2)) {
        this.ctx.report.notes.push(
          `${d.message.identity}: the stored copy has ${stored.size} bytes, the server says ${announced}; kept upstream (delete it there yourself once you have checked the copy)`,
        );
        continue;
      }
      // A store that cannot be reached throws here and fails the run: nothing is deleted on a guess.
      const head = await this.ctx.store.head(stored.key);
      const actual =
        head && head.size === stored.size ? await readBack(this.ctx.store, stored.key) : undefined;
      if (actual && actual.size === stored.size && actual.sha256 === stored.sha256) {
        ok.push({ d, header: actual.header });
      } else {
        this.ctx.logger.error('stored copy does not match its record; not deleting upstream', {
          sourceId: this.ctx.source.id,
          identity: d.message.identity,
        });
        this.ctx.report.notes.push(
          `${d.message.identity}: the stored copy is missing or does not match its size and sha256, so it is kept upstream; check the object ${stored.key} (restore it or delete the message item to fetch it again)`,
        );
      }
    }
    return ok;
  }

  /** Writes the intents for these deletes; returns the audit records, in the same order. */
  async begin(deletes: PlannedDelete[], usageBefore: number | undefined): Promise<AuditRecord[]> {
    const records = deletes.map((d) => this.record('delete-upstream', d, usageBefore));
    this.ctx.checkLease();
    await this.ctx.index.beginActions(this.ctx.lease(), records);
    this.ctx.step('intent-written');
    return records;
  }

  async complete(
    records: AuditRecord[],
    gone: (record: AuditRecord) => boolean,
    usageAfter: number | undefined,
  ): Promise<void> {
    this.ctx.checkLease();
    const outcomes = records.map((record) => {
      const done = gone(record);
      return {
        record,
        state: done ? ('done' as const) : ('not-applied' as const),
        usageAfter,
        note: done ? undefined : 'the server did not remove it',
      };
    });
    await this.ctx.index.completeActions(this.ctx.lease(), outcomes, this.ctx.clock.now());
    this.ctx.report.deletedUpstream += outcomes.filter((o) => o.state === 'done').length;
  }

  /**
   * The deletes in chunks, oldest first: time budget checked, stored copies verified, intents written, lease
   * renewed, then `act` (the server's part) with the chunk and its audit records. Stops when the budget is spent.
   */
  async inChunks(
    deletes: PlannedDelete[],
    usageBefore: () => number | undefined,
    prove: Prover,
    act: (chunk: PlannedDelete[], records: AuditRecord[]) => Promise<void>,
  ): Promise<void> {
    const todo = chunks(deletes, CHUNK);
    for (const [i, chunk] of todo.entries()) {
      if (!this.ctx.budgetLeft()) {
        this.ctx.report.notes.push(
          `time budget spent: ${todo.slice(i).flat().length} planned delete(s) left for the next run`,
        );
        return;
      }
      const verified = await this.verified(chunk, prove);
      if (!verified.length) continue;
      const records = await this.begin(verified, usageBefore());
      await this.ctx.renewLease();
      await act(verified, records);
    }
  }

  /** Evicts copies whose messages are confirmed still upstream (`present`), oldest first. */
  async evict(plan: PolicyPlan, present: (m: UpstreamMessage) => boolean): Promise<void> {
    let bytes = (await this.ctx.index.inboxUsage(this.ctx.source.id)).bytes;
    for (const e of plan.evictions) {
      if (!present(e.message)) {
        this.ctx.report.notes.push(`${e.message.identity}: gone upstream meanwhile; its copy is kept`);
        continue;
      }
      const record = this.record('evict', { ...e, policy: 'inbox-quota' }, bytes);
      this.ctx.checkLease();
      await this.ctx.index.beginActions(this.ctx.lease(), [record]);
      this.ctx.step('intent-written');
      const result = await this.ctx.index.evict(this.ctx.lease(), record, this.ctx.clock.now());
      this.ctx.step('evicted-item');
      // Only after the fenced tombstone: a crash before this leaves an orphan object, never a listed message
      // without its bytes. And only once no committed item references the bytes: another source may share them
      // (decision 0007). A run cut here is finished by resolvePending, which asks the same.
      if (await this.ctx.index.objectUnreferenced(record.object))
        await this.ctx.store.delete(record.object.key);
      this.ctx.step('evicted-object');
      if (result === 'evicted') bytes -= record.object.size;
      await this.ctx.index.completeActions(
        this.ctx.lease(),
        [{ record, state: result === 'evicted' ? 'done' : 'not-applied', usageAfter: bytes }],
        this.ctx.clock.now(),
      );
      if (result === 'evicted') this.ctx.report.evicted++;
    }
  }
}

/** IMAP: evictions confirmed by UID SEARCH, then deletes in chunks (verified, intents, UID EXPUNGE per folder). */
export async function applyImapPolicies(
  run: PolicyRun,
  ctx: PolicyContext,
  session: ImapSession,
  upstream: UpstreamMessage[],
  folders: Map<string, FolderStatus>,
): Promise<void> {
  const quota =
    ctx.source.upstreamQuota || deletesUpstream(ctx.source) ? usableQuota(await session.quota()) : undefined;
  requireUsage(ctx.source, quota);
  const guard = ctx.source.upstreamQuota && quota;
  if (guard) ctx.report.upstreamUsage = { ...quota, afterBytes: quota.usedBytes };
  const plan = await run.plan(upstream, quota);
  const byFolder = new Map<string, UpstreamMessage[]>();
  for (const e of plan.evictions) {
    const list = byFolder.get(e.message.folder!) ?? [];
    list.push(e.message);
    byFolder.set(e.message.folder!, list);
  }
  const stillThere = new Set<string>();
  for (const [folder, messages] of byFolder) {
    await session.openFolder(folder);
    const present = await session.present(messages.map((m) => m.uid!));
    for (const m of messages) if (present.has(m.uid!)) stillThere.add(m.identity);
  }
  await run.evict(plan, (m) => stillThere.has(m.identity));

  let usage = quota?.usedBytes;
  await run.inChunks(
    plan.deletes,
    () => usage,
    async (deletes) => {
      const proofs = new Map<string, UpstreamProof>();
      for (const folder of new Set(deletes.map((d) => d.message.folder!))) {
        const inFolder = deletes.filter((d) => d.message.folder === folder);
        const headers = await session.headerBlocks(
          folder,
          folders.get(folder)!.uidValidity,
          inFolder.map((d) => d.message.uid!),
        );
        for (const d of inFolder) {
          const header = headers.get(d.message.uid!);
          if (header) proofs.set(d.message.identity, { header });
        }
      }
      return proofs;
    },
    async (deletes, records) => {
      const gone = new Set<string>();
      for (const [i, folder] of [...new Set(deletes.map((d) => d.message.folder!))].entries()) {
        const inFolder = deletes.filter((d) => d.message.folder === folder);
        // inChunks renewed the lease for the first folder; each further one renews it again, since UID EXPUNGE is
        // sent only while at least half of it is ahead.
        if (i > 0) await ctx.renewLease();
        const removed = await session.deleteUids(
          folder,
          folders.get(folder)!.uidValidity,
          inFolder.map((d) => d.message.uid!),
          (next) => {
            ctx.step(next === 'store' ? 'store-next' : 'expunge-next');
            ctx.leaseAhead();
          },
        );
        for (const d of inFolder) if (removed.has(d.message.uid!)) gone.add(d.message.identity);
      }
      ctx.step('upstream-deleted');
      const after = quota ? usableQuota(await session.quota()) : undefined;
      usage = after?.usedBytes;
      if (guard)
        ctx.report.upstreamUsage!.afterBytes = after?.usedBytes ?? plan.usageAfter ?? quota.usedBytes;
      await run.complete(records, (r) => gone.has(r.identity), usage);
    },
  );
}

/** The quota guard needs a usage figure and a limit; without them it would be a silent no-op. */
export function requireUsage(source: Source, usage: { limitBytes: number } | undefined): void {
  if (source.upstreamQuota && !usage) {
    throw new UpstreamError(
      'CAPABILITY_MISSING',
      `${source.host} did not report a usable storage limit for ${source.user} (none, or a limit of 0), so the "upstreamQuota" of source ${source.id} cannot work: remove it (check with "tributary sources test ${source.id}")`,
      false,
    );
  }
}

/**
 * POP3: evictions while the maildrop is held, then DELE each verified message (in chunks, each begun with its
 * intents) and QUIT in the same session: the server applies the DELEs only at QUIT, so a session lost before it
 * deletes nothing. Returns true when it sent QUIT (the caller must not QUIT again).
 */
export async function applyPop3Policies(
  run: PolicyRun,
  ctx: PolicyContext,
  session: Pop3Session,
  upstream: UpstreamMessage[],
  fetchedNow: ReadonlyMap<number, string>,
): Promise<boolean> {
  const octets = upstream.reduce((n, m) => n + m.size, 0);
  const capacity = ctx.source.upstreamQuota?.capacityBytes;
  const usage = capacity ? { usedBytes: octets, limitBytes: capacity } : undefined;
  if (usage) ctx.report.upstreamUsage = { ...usage, afterBytes: octets };
  const plan = await run.plan(upstream, usage);
  await run.evict(plan, () => true);

  const begun: AuditRecord[] = [];
  let deletedBytes = 0;
  await run.inChunks(
    plan.deletes,
    () => octets,
    (deletes) => provePop3(session, deletes, fetchedNow),
    async (deletes, records) => {
      begun.push(...records);
      for (const d of deletes) {
        await session.dele(d.message.number!);
        deletedBytes += d.message.size;
      }
    },
  );
  if (!begun.length) return false;
  ctx.step('dele-sent');
  // QUIT is what deletes, and the server cannot check a fence: the lease is renewed for it, and QUIT is written
  // only while at least half of it is ahead. Else the session is dropped and the DELEs are not applied.
  await ctx.renewLease();
  await session.quit(() => {
    ctx.step('quit-next');
    ctx.leaseAhead();
  });
  ctx.step('upstream-deleted');
  const after = octets - deletedBytes;
  if (usage) ctx.report.upstreamUsage = { ...usage, afterBytes: after };
  await run.complete(begun, () => true, after);
  return true;
}

/**
 * The POP3 proofs: a message fetched in this session under the same number is proven by the sha256 of what was
 * fetched; else a UIDL identity by its header block (`TOP n 0`, pipelined); else (identities that are themselves a
 * header hash, or a server without TOP) by the sha256 of the whole message read again, since its headers prove
 * nothing its identity did not already say.
 */
export async function provePop3(
  session: Pop3Session,
  deletes: PlannedDelete[],
  fetchedNow: ReadonlyMap<number, string>,
): Promise<Map<string, UpstreamProof>> {
  const proofs = new Map<string, UpstreamProof>();
  const byHeader: PlannedDelete[] = [];
  const byContent: PlannedDelete[] = [];
  for (const d of deletes) {
    const sha256 = fetchedNow.get(d.message.number!);
    if (sha256 !== undefined) proofs.set(d.message.identity, { sha256 });
    else if (d.message.identity.startsWith('pop3top#')) byContent.push(d);
    else byHeader.push(d);
  }
  if (byHeader.length) {
    try {
      const headers = await session.headerBlocks(byHeader.map((d) => d.message.number!));
      for (const d of byHeader) {
        const header = headers.get(d.message.number!);
        if (header) proofs.set(d.message.identity, { header });
      }
    } catch (err) {
      if (!(err instanceof UpstreamError && err.code === 'CAPABILITY_MISSING')) throw err;
      byContent.push(...byHeader);
    }
  }
  if (byContent.length) {
    const numbers = new Map(byContent.map((d) => [d.message.number!, d.message.identity]));
    await session.retrieve([...numbers.keys()], async (number, body) => {
      const hash = createHash('sha256');
      for await (const chunk of body) hash.update(chunk);
      proofs.set(numbers.get(number)!, { sha256: hash.digest('hex') });
    });
  }
  return proofs;
}
