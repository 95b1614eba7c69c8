import { decodeCursor, encodeCursor } from '../common/inbox-cursor';
import { lastRunOf } from '../common/run-status';
import { LeaseLostError, StorageError, TributaryError } from '../../core/errors';
import type {
  AuditRecord,
  FolderState,
  MessageFailure,
  MessageRecord,
  SourceRunReport,
  UpstreamId,
  Via,
} from '../../core/model';
import { identityKey, messageRecordFields } from '../../core/model';
import type { InboxUsage, StoredCopy } from '../../core/policies';
import type { CommitOutcome, Lease, MessageIndex, SourceSummary } from '../../core/ports';
import type { SqliteDatabase } from './database';

/**
 * Messages of one lease committed in one transaction (commitMessage): one fsync of the log for all of them. No
 * item limit to respect here; the bound only keeps one transaction, and the lock it holds, short.
 */
const COMMIT_GROUP_MAX = 200;
/** Parameters bound in one `IN (...)` list, well under SQLite's limit. */
const IN_LIST_MAX = 500;
/** Rows read per query by the iterators, so a long walk never holds one read snapshot open for long. */
const PAGE = 500;

interface MessageRow {
  source_id: string;
  identity: string;
  kind: 'message' | 'alias' | 'evicted';
  upstream: string;
  target: string | null;
  record: string | null;
  object_key: string | null;
  size: number | null;
  sha256: string | null;
  content_sha256: string | null;
  fetched_at: string | null;
  inbox_key: string | null;
  listed: number;
  deleted_upstream_at: string | null;
  evicted_at: string | null;
}

export interface ContentRow {
  sha256: string;
  object_key: string;
  record: string;
  inbox_key: string;
  listed: number;
  unread: number;
}

interface PendingCommit {
  lease: Lease;
  record: MessageRecord;
  resolve: (outcome: CommitOutcome) => void;
  reject: (err: unknown) => void;
}

/** keys.inboxSk of the DynamoDB adapter: the same order (newest first when read descending, then stable). */
export function inboxKey(sortDate: string, sourceId: string, identity: string): string {
  return `${sortDate}#${sourceId}#${identity}`;
}

/** `keys.via`: what the merged record's `via` is sorted by, as on DynamoDB. */
function viaKey(v: Via): string {
  return `${v.sourceId}#${v.identity}`;
}

export function checkLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new TributaryError('CONFIG_INVALID', 'the page limit must be a positive whole number', false);
  }
  return limit;
}

/** A stored message row as its record; the deletion time lives in its own column. */
function messageRecordOf(row: MessageRow): MessageRecord {
  const record = JSON.parse(row.record!) as MessageRecord;
  return messageRecordFields({ ...record, deletedUpstreamAt: row.deleted_upstream_at ?? undefined });
}

/**
 * A merged inbox entry's record: the registry row's (first reference's) fields with every place the bytes came
 * through, named after a place that still holds them (as the DynamoDB adapter's toMergedRecord).
 */
export function mergedRecord(content: ContentRow, places: Via[]): MessageRecord {
  const record = messageRecordFields(JSON.parse(content.record) as MessageRecord);
  const via = [...places].sort((a, b) => (viaKey(a) < viaKey(b) ? -1 : viaKey(a) > viaKey(b) ? 1 : 0));
  const named = via.some((v) => v.sourceId === record.sourceId && v.identity === record.identity);
  const first = via[0];
  return {
    ...record,
    ...(named || !first ? {} : { sourceId: first.sourceId, identity: first.identity }),
    via,
  };
}

/** The places (content_via) of these registry rows, by sha256. */
export function placesOf(db: SqliteDatabase, sha256s: string[]): Map<string, Via[]> {
  const found = new Map<string, Via[]>();
  for (const batch of chunks([...new Set(sha256s)], IN_LIST_MAX)) {
    const rows = db.all<{ sha256: string; source_id: string; identity: string }>(
      `SELECT sha256, source_id, identity FROM content_via WHERE sha256 IN (${batch.map(() => '?').join(', ')})`,
      ...batch,
    );
    for (const row of rows) {
      const list = found.get(row.sha256) ?? [];
      list.push({ sourceId: row.source_id, identity: row.identity });
      found.set(row.sha256, list);
    }
  }
  return found;
}

/** What the inbox's `q` is matched against: lower-cased as matchesQuery does (toLocaleLowerCase). */
function searchFields(record: MessageRecord): [string, string, string] {
  const lower = (s: string | undefined) => (s ?? '').toLocaleLowerCase();
  const m = record.metadata;
  return [lower(m.from?.name), lower(m.from?.address), lower(m.subject)];
}

/** The committed record without what only reads add (via) or what has its own column (deletedUpstreamAt). */
function storedJson(record: MessageRecord): string {
  const { via: _via, deletedUpstreamAt: _deleted, ...rest } = record;
  return JSON.stringify(rest);
}

function toStoredCopy(row: MessageRow): StoredCopy | undefined {
  if (row.kind === 'alias') return undefined;
  return {
    identity: row.identity,
    key: row.object_key!,
    size: row.size!,
    sha256: row.sha256!,
    fetchedAt: row.fetched_at!,
    state: row.kind === 'message' ? 'stored' : 'evicted',
    ...(row.deleted_upstream_at !== null ? { deletedUpstreamAt: row.deleted_upstream_at } : {}),
  };
}

/**
 * The smallest string above every string that starts with `prefix` (in SQLite's binary order, which is code point
 * order): the prefix with its last code point raised by one. Undefined when there is none (empty prefix).
 */
function prefixEnd(prefix: string): string | undefined {
  const points = [...prefix];
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!;
    let next = last + 1;
    if (next >= 0xd800 && next <= 0xdfff) next = 0xe000;
    if (next <= 0x10ffff) return points.join('') + String.fromCodePoint(next);
  }
  return undefined;
}

function chunks<T>(list: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/**
 * MessageIndex on the embedded SQLite database: the same outcomes as the DynamoDB adapter, on relational tables
 * (schema in database.ts). Every write that changes a source's state is one BEGIN IMMEDIATE transaction that first
 * reads the lease row and goes on only while holder and fence are the caller's; since the write lock is taken
 * before that read, no other process can take the lease over between the check and the commit. Reads are plain
 * reads of the one database, so every read is strongly consistent.
 */
export class SqliteMessageIndex implements MessageIndex {
  private queued: PendingCommit[] = [];
  private flushScheduled = false;

  constructor(private readonly db: SqliteDatabase) {}

  async acquireLease(
    sourceId: string,
    holder: string,
    ttlMs: number,
    now: number,
  ): Promise<Lease | undefined> {
    return this.db.write(`take the lease of source ${sourceId}`, () => {
      const row = this.db.get<{ fence: number; lease_until: number }>(
        'SELECT fence, lease_until FROM leases WHERE source_id = ?',
        sourceId,
      );
      if (row && row.lease_until >= now) return undefined;
      const fence = (row?.fence ?? 0) + 1;
      this.db.run(
        `INSERT INTO leases (source_id, holder, fence, lease_until) VALUES (?, ?, ?, ?)
         ON CONFLICT (source_id) DO UPDATE SET holder = excluded.holder, fence = excluded.fence,
           lease_until = excluded.lease_until`,
        sourceId,
        holder,
        fence,
        now + ttlMs,
      );
      return { sourceId, holder, fence, expiresAt: now + ttlMs };
    });
  }

  async renewLease(lease: Lease, ttlMs: number, now: number): Promise<Lease> {
    return this.db.write(`renew the lease of source ${lease.sourceId}`, () => {
      const changed = this.db.run(
        'UPDATE leases SET lease_until = ? WHERE source_id = ? AND holder = ? AND fence = ?',
        now + ttlMs,
        lease.sourceId,
        lease.holder,
        lease.fence,
      ).changes;
      if (changed === 0) throw new LeaseLostError(lease.sourceId);
      return { ...lease, expiresAt: now + ttlMs };
    });
  }

  async releaseLease(lease: Lease): Promise<void> {
    // Taken over meanwhile: the successor's lease is not ours to release.
    await this.db.write(`release the lease of source ${lease.sourceId}`, () =>
      this.db.run(
        'UPDATE leases SET lease_until = 0 WHERE source_id = ? AND holder = ? AND fence = ?',
        lease.sourceId,
        lease.holder,
        lease.fence,
      ),
    );
  }

  /** Inside a write transaction: throws LeaseLostError unless the stored lease is this one (holder and fence). */
  private checkLease(lease: Lease): void {
    const row = this.db.get<{ holder: string; fence: number }>(
      'SELECT holder, fence FROM leases WHERE source_id = ?',
      lease.sourceId,
    );
    if (!row || row.holder !== lease.holder || row.fence !== lease.fence)
      throw new LeaseLostError(lease.sourceId);
  }

  /** One immediate transaction that first checks the lease. */
  private fenced<T>(lease: Lease, what: string, body: () => T): Promise<T> {
    return this.db.write(`${what} for source ${lease.sourceId}`, () => {
      this.checkLease(lease);
      return body();
    });
  }

  async getFolderState(sourceId: string, folder: string): Promise<FolderState | undefined> {
    const row = await this.db.read('read a folder checkpoint', () =>
      this.db.get<{
        uid_validity: string;
        committed_through_uid: number;
        uid_next: number;
        highest_modseq: string | null;
        generation: number | null;
      }>(
        `SELECT uid_validity, committed_through_uid, uid_next, highest_modseq, generation
         FROM folder_states WHERE source_id = ? AND folder = ?`,
        sourceId,
        folder,
      ),
    );
    if (!row) return undefined;
    return {
      folder,
      uidValidity: row.uid_validity,
      committedThroughUid: row.committed_through_uid,
      uidNext: row.uid_next,
      highestModseq: row.highest_modseq ?? undefined,
      ...(row.generation ? { generation: row.generation } : {}),
    };
  }

  async saveFolderState(lease: Lease, state: FolderState): Promise<void> {
    await this.fenced(lease, 'save a folder checkpoint', () =>
      this.db.run(
        `INSERT OR REPLACE INTO folder_states
           (source_id, folder, uid_validity, committed_through_uid, uid_next, highest_modseq, generation)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
        lease.sourceId,
        state.folder,
        state.uidValidity,
        state.committedThroughUid,
        state.uidNext,
        state.highestModseq ?? null,
        state.generation ?? null,
      ),
    );
  }

  async committedIdentities(sourceId: string, prefix: string, from?: string): Promise<Set<string>> {
    const start = from && from > prefix ? from : prefix;
    const end = prefixEnd(prefix);
    const rows = await this.db.read('list committed identities', () =>
      end === undefined
        ? this.db.all<{ identity: string }>(
            'SELECT identity FROM messages WHERE source_id = ? AND identity >= ?',
            sourceId,
            start,
          )
        : this.db.all<{ identity: string }>(
            'SELECT identity FROM messages WHERE source_id = ? AND identity >= ? AND identity < ?',
            sourceId,
            start,
            end,
          ),
    );
    return new Set(rows.map((r) => r.identity));
  }

  async findByContent(
    sourceId: string,
    contentSha256: string,
  ): Promise<Array<{ identity: string; target: string }>> {
    return this.db.read('find messages by content', () =>
      this.db.all<{ identity: string; target: string }>(
        `SELECT identity, target FROM content_entries WHERE source_id = ? AND content_sha256 = ?
         ORDER BY identity`,
        sourceId,
        contentSha256,
      ),
    );
  }

  /**
   * Commits asked for in the same turn of the event loop (the sync's pipeline commits several messages at once)
   * go together, in one transaction per lease: one fsync for all of them. Each caller gets its own outcome once
   * that transaction has committed; a lost lease or a failed transaction fails all of its messages, none written.
   */
  commitMessage(lease: Lease, record: MessageRecord): Promise<CommitOutcome> {
    if (record.sourceId !== lease.sourceId) {
      return Promise.reject(
        new StorageError(
          `message of source ${record.sourceId} committed under the lease of ${lease.sourceId}`,
        ),
      );
    }
    return new Promise<CommitOutcome>((resolve, reject) => {
      this.queued.push({ lease, record, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => void this.flushCommits());
      }
    });
  }

  private async flushCommits(): Promise<void> {
    const entries = this.queued;
    this.queued = [];
    this.flushScheduled = false;
    // Entries under different leases (a stale holder and its successor in one process) never share a
    // transaction: each group checks its own fence.
    const byLease = new Map<string, PendingCommit[]>();
    for (const e of entries) {
      const at = `${e.lease.sourceId}\u0000${e.lease.fence}\u0000${e.lease.holder}`;
      byLease.set(at, [...(byLease.get(at) ?? []), e]);
    }
    for (const members of byLease.values()) {
      for (const group of chunks(members, COMMIT_GROUP_MAX)) {
        const lease = group[0]!.lease;
        try {
          const outcomes = await this.fenced(lease, `commit ${group.length} message(s)`, () =>
            this.commitGroup(
              lease,
              group.map((e) => e.record),
            ),
          );
          group.forEach((e, i) => e.resolve(outcomes[i]!));
        } catch (err) {
          for (const e of group) e.reject(err);
        }
      }
    }
  }

  /**
   * Inside the fenced transaction: each message in turn (a twin sees the registration of the one before it), then
   * the counters raised by the new ones. See MessageCommits.commitMessage for the outcomes.
   */
  private commitGroup(lease: Lease, records: MessageRecord[]): CommitOutcome[] {
    let messages = 0;
    let bytes = 0;
    const outcomes = records.map((record) => {
      const outcome = this.commitOne(record);
      if (outcome !== 'exists') {
        messages++;
        bytes += record.object.size;
      }
      return outcome;
    });
    if (messages > 0) this.addToStats(lease.sourceId, messages, bytes);
    return outcomes;
  }

  private commitOne(record: MessageRecord): CommitOutcome {
    const { sourceId, identity } = record;
    if (this.db.get('SELECT 1 AS x FROM messages WHERE source_id = ? AND identity = ?', sourceId, identity))
      return 'exists';
    const sha256 = record.object.sha256;
    const registry = this.db.get<{ object_key: string; listed: number }>(
      'SELECT object_key, listed FROM contents WHERE sha256 = ?',
      sha256,
    );
    // Registered bytes: the item points at the registered object (decision 0007).
    const object = registry ? { ...record.object, key: registry.object_key } : record.object;
    const key = inboxKey(record.sortDate, sourceId, identity);
    this.db.run(
      `INSERT INTO messages (source_id, identity, kind, upstream, record, object_key, size, sha256,
         content_sha256, fetched_at, inbox_key, listed)
       VALUES (?, ?, 'message', ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      sourceId,
      identity,
      JSON.stringify(record.upstream),
      storedJson({ ...record, object }),
      object.key,
      object.size,
      sha256,
      object.contentSha256,
      record.fetchedAt,
      key,
      // Bytes a reader removed from the inbox stay out of it, whichever source brings them again.
      registry && !registry.listed ? 0 : 1,
    );
    this.db.run(
      `INSERT OR REPLACE INTO content_entries (source_id, content_sha256, identity, target) VALUES (?, ?, ?, ?)`,
      sourceId,
      object.contentSha256,
      identity,
      identity,
    );
    if (!registry) {
      // The first reference: its fields are the merged inbox entry, new and unread.
      const [fromName, fromAddress, subject] = searchFields(record);
      this.db.run(
        `INSERT INTO contents (sha256, object_key, record, inbox_key, listed, unread, search_from_name,
           search_from_address, search_subject)
         VALUES (?, ?, ?, ?, 1, 1, ?, ?, ?)`,
        sha256,
        record.object.key,
        storedJson(record),
        key,
        fromName,
        fromAddress,
        subject,
      );
    }
    this.db.run(
      'INSERT INTO content_via (sha256, source_id, identity) VALUES (?, ?, ?)',
      sha256,
      sourceId,
      identity,
    );
    // The item's own object is kept when the registry names it already.
    return !registry || registry.object_key === record.object.key ? 'committed' : 'shared';
  }

  private addToStats(sourceId: string, messages: number, bytes: number): void {
    this.db.run(
      `INSERT INTO source_stats (source_id, messages, bytes) VALUES (?, ?, ?)
       ON CONFLICT (source_id) DO UPDATE SET messages = messages + excluded.messages, bytes = bytes + excluded.bytes`,
      sourceId,
      messages,
      bytes,
    );
  }

  async commitAlias(
    lease: Lease,
    upstream: UpstreamId,
    target: string,
    contentSha256: string,
  ): Promise<'committed' | 'exists'> {
    const identity = identityKey(upstream);
    return this.fenced(lease, 'commit an alias', () => {
      const inserted = this.db.run(
        `INSERT INTO messages (source_id, identity, kind, upstream, target) VALUES (?, ?, 'alias', ?, ?)
         ON CONFLICT (source_id, identity) DO NOTHING`,
        lease.sourceId,
        identity,
        JSON.stringify(upstream),
        target,
      ).changes;
      if (inserted === 0) return 'exists';
      this.db.run(
        `INSERT OR REPLACE INTO content_entries (source_id, content_sha256, identity, target) VALUES (?, ?, ?, ?)`,
        lease.sourceId,
        contentSha256,
        identity,
        target,
      );
      return 'committed';
    });
  }

  async lookup(sourceId: string, identities: string[]): Promise<Map<string, StoredCopy>> {
    return this.db.read('look up stored copies', () => {
      const rows = this.rowsOf(sourceId, identities);
      const targets = [...rows.values()]
        .filter((r) => r.kind === 'alias' && !rows.has(r.target!))
        .map((r) => r.target!);
      for (const [identity, row] of this.rowsOf(sourceId, targets)) rows.set(identity, row);
      const found = new Map<string, StoredCopy>();
      for (const identity of identities) {
        const row = rows.get(identity);
        // One level only: an alias always names the message that holds the copy (commitAlias).
        const holder = row?.kind === 'alias' ? rows.get(row.target!) : row;
        const copy = holder && toStoredCopy(holder);
        if (copy) found.set(identity, copy);
      }
      return found;
    });
  }

  private rowsOf(sourceId: string, identities: string[]): Map<string, MessageRow> {
    const rows = new Map<string, MessageRow>();
    for (const batch of chunks([...new Set(identities)], IN_LIST_MAX)) {
      for (const row of this.db.all<MessageRow>(
        `SELECT * FROM messages WHERE source_id = ? AND identity IN (${batch.map(() => '?').join(', ')})`,
        sourceId,
        ...batch,
      ))
        rows.set(row.identity, row);
    }
    return rows;
  }

  async inboxUsage(sourceId: string): Promise<InboxUsage> {
    const row = await this.db.read('read the source counters', () =>
      this.db.get<{ messages: number; bytes: number }>(
        'SELECT messages, bytes FROM source_stats WHERE source_id = ?',
        sourceId,
      ),
    );
    return { messages: row?.messages ?? 0, bytes: row?.bytes ?? 0 };
  }

  async beginActions(lease: Lease, records: AuditRecord[]): Promise<void> {
    if (records.length === 0) return;
    // All records in one transaction: a refused one writes none of them.
    await this.fenced(lease, 'write audit intents', () => {
      for (const record of records) {
        const intent: AuditRecord = { ...record, state: 'intent' };
        const existing = this.db.get<{ state: string }>(
          'SELECT state FROM audit WHERE source_id = ? AND id = ?',
          lease.sourceId,
          record.id,
        );
        // A retry rewrites its own intent; a completed record is never reopened.
        if (existing && existing.state !== 'intent') {
          throw new StorageError(
            `audit record ${record.id} of source ${lease.sourceId} is completed already: it cannot be begun again`,
          );
        }
        // The durability contract, at the last moment: an upstream delete is begun only while its target is a
        // stored message (not evicted) recording the sha256 the object was just checked against.
        if (record.action === 'delete-upstream') {
          const target = this.db.get<{ kind: string; sha256: string | null }>(
            'SELECT kind, sha256 FROM messages WHERE source_id = ? AND identity = ?',
            lease.sourceId,
            record.target,
          );
          if (!target || target.kind !== 'message' || target.sha256 !== record.object.sha256) {
            throw new StorageError(
              `audit intent refused for source ${lease.sourceId}: ${record.target} is not a stored message with sha256 ${record.object.sha256}`,
            );
          }
        }
        const json = JSON.stringify(intent);
        this.db.run(
          `INSERT INTO audit (source_id, id, state, record) VALUES (?, ?, ?, ?)
           ON CONFLICT (source_id, id) DO UPDATE SET state = excluded.state, record = excluded.record`,
          lease.sourceId,
          record.id,
          'intent',
          json,
        );
        this.db.run(
          `INSERT INTO pending_actions (source_id, id, record) VALUES (?, ?, ?)
           ON CONFLICT (source_id, id) DO UPDATE SET record = excluded.record`,
          lease.sourceId,
          record.id,
          json,
        );
      }
    });
  }

  async completeActions(
    lease: Lease,
    outcomes: Array<{
      record: AuditRecord;
      state: 'done' | 'not-applied';
      usageAfter?: number;
      note?: string;
    }>,
    now: number,
  ): Promise<void> {
    if (outcomes.length === 0) return;
    const at = new Date(now).toISOString();
    await this.fenced(lease, 'complete audit records', () => {
      for (const { record, state, usageAfter, note } of outcomes) {
        const row = this.db.get<{ record: string }>(
          'SELECT record FROM audit WHERE source_id = ? AND id = ?',
          lease.sourceId,
          record.id,
        );
        if (!row) {
          throw new StorageError(
            `audit record ${record.id} of source ${lease.sourceId} was never begun: it cannot be completed`,
          );
        }
        const completed: AuditRecord = {
          ...(JSON.parse(row.record) as AuditRecord),
          state,
          completedAt: at,
          ...(usageAfter !== undefined ? { usageAfter } : {}),
          ...(note !== undefined ? { note } : {}),
        };
        this.db.run(
          'UPDATE audit SET state = ?, record = ? WHERE source_id = ? AND id = ?',
          state,
          JSON.stringify(completed),
          lease.sourceId,
          record.id,
        );
        this.db.run('DELETE FROM pending_actions WHERE source_id = ? AND id = ?', lease.sourceId, record.id);
        // A retried completion keeps the first deletion time.
        if (record.action === 'delete-upstream' && state === 'done') {
          this.db.run(
            `UPDATE messages SET deleted_upstream_at = ?
             WHERE source_id = ? AND identity = ? AND kind <> 'alias' AND deleted_upstream_at IS NULL`,
            at,
            lease.sourceId,
            record.target,
          );
        }
      }
    });
  }

  async pendingActions(sourceId: string): Promise<AuditRecord[]> {
    const rows = await this.db.read('read pending audit intents', () =>
      this.db.all<{ record: string }>(
        'SELECT record FROM pending_actions WHERE source_id = ? ORDER BY id',
        sourceId,
      ),
    );
    return rows.map((r) => JSON.parse(r.record) as AuditRecord);
  }

  async *auditTrail(sourceId: string, since?: string): AsyncIterable<AuditRecord> {
    let after: string | undefined;
    for (;;) {
      const rows = await this.db.read('read the audit trail', () =>
        after === undefined
          ? this.db.all<{ id: string; record: string }>(
              'SELECT id, record FROM audit WHERE source_id = ? AND id >= ? ORDER BY id LIMIT ?',
              sourceId,
              since ?? '',
              PAGE,
            )
          : this.db.all<{ id: string; record: string }>(
              'SELECT id, record FROM audit WHERE source_id = ? AND id > ? ORDER BY id LIMIT ?',
              sourceId,
              after,
              PAGE,
            ),
      );
      for (const row of rows) yield JSON.parse(row.record) as AuditRecord;
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.id;
    }
  }

  /**
   * Tombstone, content entries, counters and the registry's release in one fenced transaction. The last reference
   * deletes the registry row (the merged entry goes with it); the caller deletes the object afterwards only when
   * objectUnreferenced says so.
   */
  async evict(lease: Lease, record: AuditRecord, now: number): Promise<'evicted' | 'already'> {
    return this.fenced(lease, 'evict a stored copy', () => {
      const row = this.db.get<MessageRow>(
        'SELECT * FROM messages WHERE source_id = ? AND identity = ?',
        lease.sourceId,
        record.target,
      );
      if (!row) {
        throw new StorageError(`cannot evict ${record.target} of source ${lease.sourceId}: no such message`);
      }
      if (row.kind === 'evicted') return 'already';
      if (row.kind !== 'message') {
        throw new StorageError(
          `cannot evict ${record.target} of source ${lease.sourceId}: it is ${row.kind}, not a stored copy`,
        );
      }
      // Out of both inboxes; the row stays, so the identity stays known and is never fetched again.
      this.db.run(
        `UPDATE messages SET kind = 'evicted', evicted_at = ?, listed = 0 WHERE source_id = ? AND identity = ?`,
        new Date(now).toISOString(),
        lease.sourceId,
        record.target,
      );
      // Its content entries (its own, and those of aliases to it): a rematch must not find a copy that is gone.
      this.db.run(
        'DELETE FROM content_entries WHERE source_id = ? AND content_sha256 = ? AND (target = ? OR identity = ?)',
        lease.sourceId,
        row.content_sha256,
        record.target,
        record.target,
      );
      this.addToStats(lease.sourceId, -1, -row.size!);
      const released = this.db.run(
        'DELETE FROM content_via WHERE sha256 = ? AND source_id = ? AND identity = ?',
        row.sha256,
        lease.sourceId,
        record.target,
      ).changes;
      if (released > 0) {
        this.db.run(
          'DELETE FROM contents WHERE sha256 = ? AND NOT EXISTS (SELECT 1 FROM content_via WHERE sha256 = ?)',
          row.sha256,
          row.sha256,
        );
      }
      return 'evicted';
    });
  }

  async objectUnreferenced(object: { key: string; sha256: string }): Promise<boolean> {
    const row = await this.db.read('read the content registry', () =>
      this.db.get(
        'SELECT 1 AS x FROM contents WHERE sha256 = ? AND object_key = ?',
        object.sha256,
        object.key,
      ),
    );
    // A registry row exists only while referenced; registered again since means under another item's own key.
    return row === undefined;
  }

  async messageFailures(sourceId: string): Promise<MessageFailure[]> {
    const rows = await this.db.read('read message failures', () =>
      this.db.all<{ record: string }>(
        'SELECT record FROM failures WHERE source_id = ? ORDER BY identity',
        sourceId,
      ),
    );
    return rows.map((r) => JSON.parse(r.record) as MessageFailure);
  }

  async recordMessageFailure(lease: Lease, failure: MessageFailure): Promise<void> {
    await this.fenced(lease, 'record a message failure', () =>
      this.db.run(
        'INSERT OR REPLACE INTO failures (source_id, identity, record) VALUES (?, ?, ?)',
        lease.sourceId,
        failure.identity,
        JSON.stringify(failure),
      ),
    );
  }

  async clearMessageFailures(lease: Lease, identities: string[]): Promise<void> {
    await this.fenced(lease, 'clear message failures', () => {
      for (const identity of new Set(identities))
        this.db.run('DELETE FROM failures WHERE source_id = ? AND identity = ?', lease.sourceId, identity);
    });
  }

  async retryMessages(sourceId: string, identities?: string[]): Promise<number> {
    const chosen = identities ? new Set(identities) : undefined;
    // Not fenced (it only marks records), but one transaction: a run's concurrent write waits for it.
    return this.db.write('mark messages for retry', () => {
      let marked = 0;
      const rows = this.db.all<{ identity: string; record: string }>(
        'SELECT identity, record FROM failures WHERE source_id = ?',
        sourceId,
      );
      for (const row of rows) {
        if (chosen && !chosen.has(row.identity)) continue;
        const failure = JSON.parse(row.record) as MessageFailure;
        this.db.run(
          'UPDATE failures SET record = ? WHERE source_id = ? AND identity = ?',
          JSON.stringify({ ...failure, attempts: 0, setAside: false, retry: true }),
          sourceId,
          row.identity,
        );
        marked++;
      }
      return marked;
    });
  }

  /** Fenced like every state write of a run: a run that paused past its lease cannot overwrite its successor's. */
  async recordRun(lease: Lease, report: SourceRunReport, now: number): Promise<void> {
    const failed = report.outcome === 'failed';
    const lastRun = lastRunOf(report, now);
    await this.fenced(lease, 'record the run', () =>
      this.db.run(
        `INSERT INTO run_status (source_id, last_run, last_error, consecutive_failures) VALUES (?, ?, ?, ?)
         ON CONFLICT (source_id) DO UPDATE SET last_run = excluded.last_run,
           last_error = ${failed ? 'excluded.last_error' : 'NULL'},
           consecutive_failures = ${failed ? 'consecutive_failures + 1' : '0'}`,
        lease.sourceId,
        JSON.stringify(lastRun),
        failed && report.error ? JSON.stringify(report.error) : null,
        failed ? 1 : 0,
      ),
    );
  }

  async summary(sourceId: string): Promise<SourceSummary> {
    return this.db.read('read the source summary', () => {
      const stats = this.db.get<{ messages: number; bytes: number }>(
        'SELECT messages, bytes FROM source_stats WHERE source_id = ?',
        sourceId,
      );
      const status = this.db.get<{ last_run: string; consecutive_failures: number }>(
        'SELECT last_run, consecutive_failures FROM run_status WHERE source_id = ?',
        sourceId,
      );
      return {
        sourceId,
        messages: stats?.messages ?? 0,
        bytes: stats?.bytes ?? 0,
        lastRun: status ? (JSON.parse(status.last_run) as SourceSummary['lastRun']) : undefined,
        consecutiveFailures: status?.consecutive_failures ?? 0,
      };
    });
  }

  async leaseState(sourceId: string): Promise<Lease | undefined> {
    const row = await this.db.read('read the lease', () =>
      this.db.get<{ holder: string; fence: number; lease_until: number }>(
        'SELECT holder, fence, lease_until FROM leases WHERE source_id = ?',
        sourceId,
      ),
    );
    return row && { sourceId, holder: row.holder, fence: row.fence, expiresAt: row.lease_until };
  }

  /**
   * Newest first. With `sourceId`: the source's own stored messages (not merged); else the merged inbox, one
   * entry per content. The cursor is the last entry's inbox key, read back as `key < cursor`.
   */
  async listInbox(options: {
    sourceId?: string;
    limit: number;
    cursor?: string;
  }): Promise<{ items: MessageRecord[]; cursor?: string }> {
    const limit = checkLimit(options.limit);
    const before = options.cursor === undefined ? undefined : decodeCursor(options.cursor);
    return this.db.read('list the inbox', () => {
      if (options.sourceId !== undefined) {
        const rows = this.db.all<MessageRow>(
          `SELECT * FROM messages WHERE source_id = ? AND listed = 1 ${before === undefined ? '' : 'AND inbox_key < ?'}
           ORDER BY inbox_key DESC LIMIT ?`,
          ...[options.sourceId, ...(before === undefined ? [] : [before]), limit + 1],
        );
        const page = rows.slice(0, limit);
        return {
          items: page.map(messageRecordOf),
          ...(rows.length > limit ? { cursor: encodeCursor(page[page.length - 1]!.inbox_key!) } : {}),
        };
      }
      const rows = this.db.all<ContentRow>(
        `SELECT * FROM contents WHERE listed = 1 ${before === undefined ? '' : 'AND inbox_key < ?'}
         ORDER BY inbox_key DESC LIMIT ?`,
        ...[...(before === undefined ? [] : [before]), limit + 1],
      );
      const page = rows.slice(0, limit);
      const places = placesOf(
        this.db,
        page.map((r) => r.sha256),
      );
      return {
        items: page.map((r) => mergedRecord(r, places.get(r.sha256) ?? [])),
        ...(rows.length > limit ? { cursor: encodeCursor(page[page.length - 1]!.inbox_key) } : {}),
      };
    });
  }

  async *sourceMessages(sourceId: string): AsyncIterable<MessageRecord> {
    let after = '';
    let first = true;
    for (;;) {
      const rows = await this.db.read('read the source messages', () =>
        this.db.all<MessageRow>(
          `SELECT * FROM messages WHERE source_id = ? AND kind = 'message' AND identity ${first ? '>=' : '>'} ?
           ORDER BY identity LIMIT ?`,
          sourceId,
          after,
          PAGE,
        ),
      );
      for (const row of rows) yield messageRecordOf(row);
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.identity;
      first = false;
    }
  }
}

export { decodeCursor, encodeCursor } from '../common/inbox-cursor';
