import { setTimeout as sleep } from 'node:timers/promises';
import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import { StorageError, TributaryError } from '../../core/errors';
import type { MessageRecord } from '../../core/model';
import type { InboxEntry, InboxQuery, InboxReader, InboxWriter } from '../../core/ports';
import { decodeCursor, encodeCursor } from '../common/inbox-cursor';
import { keys } from './keys';
import { readOrFail } from './fencing';
import { toMergedRecord } from './records';
import { TABLE } from './table';

type Item = Record<string, unknown>;

/**
 * Entries examined by one request of a filter no index answers (`q`; `unread` within one source): such a page may
 * come back short with a cursor, and the next request goes on from there. Bounds a request's reads (about 2 MB of
 * items at the usual 1 KB) whatever the inbox size.
 */
export const FILTER_BUDGET = 2000;
/** Items read per Query while filtering. */
const FILTER_PAGE = 250;
const BATCH_GET_MAX = 100;
const RETRIES = 8;

/** A content's sha256 (the registry key): 64 lower-case hex digits, nothing else. */
const SHA256 = /^[0-9a-f]{64}$/;
/** Source ids are slugs (the config schema), so `\0` never occurs in one. */
const SOURCE_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * The ids a reader sees. `c<sha256>`: a merged entry, i.e. a content registry item (decision 0007). `l<base64url of
 * source \0 identity>`: a message item committed before the registry existed, which carries its own merged inbox
 * keys. Either decodes to exactly one key whose sort key is fixed (`COPY`, or `MSG#...`), and the item read must be
 * of that kind and still in the inbox, so no id can address a lease, a checkpoint, an audit record or a tombstone.
 */
type ParsedId = { kind: 'content'; sha256: string } | { kind: 'legacy'; sourceId: string; identity: string };

export function contentId(sha256: string): string {
  return `c${sha256}`;
}

function legacyId(sourceId: string, identity: string): string {
  return `l${Buffer.from(`${sourceId}\0${identity}`).toString('base64url')}`;
}

export function parseInboxId(id: string): ParsedId | undefined {
  if (id.length > 2048) return undefined;
  if (id.startsWith('c') && SHA256.test(id.slice(1))) return { kind: 'content', sha256: id.slice(1) };
  if (id.startsWith('l') && /^[A-Za-z0-9_-]+$/.test(id.slice(1))) {
    const text = Buffer.from(id.slice(1), 'base64url').toString();
    const at = text.indexOf('\0');
    const sourceId = text.slice(0, at);
    const identity = text.slice(at + 1);
    if (at > 0 && SOURCE_ID.test(sourceId) && identity.length > 0 && legacyId(sourceId, identity) === id)
      return { kind: 'legacy', sourceId, identity };
  }
  return undefined;
}

const lower = (s: string | undefined) => (s ?? '').toLocaleLowerCase();

/** `q` against the sender's name and address and the subject, case-insensitively. */
export function matchesQuery(record: MessageRecord, q: string): boolean {
  const needle = q.toLocaleLowerCase();
  const m = record.metadata;
  return (
    lower(m.from?.name).includes(needle) ||
    lower(m.from?.address).includes(needle) ||
    lower(m.subject).includes(needle)
  );
}

/** Which index and partition a query walks, and what is left to filter in memory. */
interface Walk {
  index: { name: string; partitionKey: string; sortKey: string };
  partition: string;
  /** The items are a source's message items: their merged entries are read from the registry. */
  sourceItems: boolean;
  keep: (entry: InboxEntry) => boolean;
  /** Whether any entry may be dropped (then the walk is bounded by FILTER_BUDGET). */
  filtered: boolean;
}

/**
 * The merged inbox on DynamoDB (issue #15). Where each list is read:
 * - everything: GSI1 partition `INBOX` (one Query of `limit` items: the inbox bench's read);
 * - unread: GSI2 partition `UNREAD`, a sparse partition holding only the unread merged entries (written at commit,
 *   removed when read), so the filter costs what the unread entries cost, never a walk over read mail;
 * - one source: GSI2 partition `SRC#<source>` (its message items, which the sync writes), joined with their
 *   registry items in one BatchGet for the read state and removal;
 * - one source and unread: the unread partition, keeping the entries that came through the source (bounded);
 * - `q`: the chosen walk, filtered in memory, at most FILTER_BUDGET entries examined per request. DynamoDB has no
 *   case-insensitive or substring index: a search reads the inbox newest first, so its cost is the number of
 *   entries examined, not the number of matches (figures in docs/web.md).
 *
 * Read state lives on the merged entry: unread is "the registry item is in the unread partition". Entries of
 * messages committed before this change (or before the registry) are read.
 */
export class DynamoInbox implements InboxReader, InboxWriter {
  constructor(
    private readonly db: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async list(query: InboxQuery): Promise<{ entries: InboxEntry[]; cursor?: string }> {
    const walk = this.walkFor(query);
    const limit = query.limit;
    let before = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const entries: InboxEntry[] = [];
    // Two items of one source holding the same bytes (two folders) are one merged entry: listed once.
    const listed = new Set<string>();
    let examined = 0;
    for (;;) {
      const want = Math.min(walk.filtered ? FILTER_PAGE : limit - entries.length, FILTER_BUDGET - examined);
      const out = await readOrFail('query', () =>
        this.db.send(
          new QueryCommand({
            TableName: this.tableName,
            IndexName: walk.index.name,
            KeyConditionExpression: `#pk = :p${before === undefined ? '' : ' AND #sk < :before'}`,
            ExpressionAttributeNames: {
              '#pk': walk.index.partitionKey,
              ...(before === undefined ? {} : { '#sk': walk.index.sortKey }),
            },
            ExpressionAttributeValues: {
              ':p': walk.partition,
              ...(before === undefined ? {} : { ':before': before }),
            },
            ScanIndexForward: false,
            Limit: want,
          }),
        ),
      );
      const items = out.Items ?? [];
      const candidates = walk.sourceItems ? await this.mergedOf(items) : items.map((i) => this.entryOf(i));
      for (let k = 0; k < items.length; k++) {
        examined++;
        before = String(items[k]![walk.index.sortKey]);
        const entry = candidates[k];
        if (entry && !listed.has(entry.id) && walk.keep(entry)) {
          listed.add(entry.id);
          entries.push(entry);
        }
        if (entries.length >= limit) {
          // More may follow: the rest of this batch, or the index beyond it.
          const more = k < items.length - 1 || out.LastEvaluatedKey !== undefined;
          return { entries, ...(more ? { cursor: encodeCursor(before) } : {}) };
        }
      }
      if (!out.LastEvaluatedKey) return { entries };
      // Whatever the walk, a request examines at most FILTER_BUDGET entries.
      if (examined >= FILTER_BUDGET) return { entries, cursor: encodeCursor(before!) };
    }
  }

  private walkFor(query: InboxQuery): Walk {
    const q = query.q?.trim();
    const matches = q ? (e: InboxEntry) => matchesQuery(e.record, q) : () => true;
    if (query.sourceId !== undefined && !SOURCE_ID.test(query.sourceId)) {
      throw new TributaryError('CONFIG_INVALID', 'source must be a source id', false);
    }
    const { inbox, sourceInbox } = TABLE.indexes;
    if (query.unread) {
      const source = query.sourceId;
      return {
        index: sourceInbox,
        partition: keys.unreadPk,
        sourceItems: false,
        keep: source
          ? (e) => e.unread && (e.record.via ?? []).some((v) => v.sourceId === source) && matches(e)
          : (e) => e.unread && matches(e),
        filtered: Boolean(source || q),
      };
    }
    if (query.sourceId !== undefined) {
      return {
        index: sourceInbox,
        partition: keys.sourcePk(query.sourceId),
        sourceItems: true,
        keep: matches,
        // Items whose merged entry was removed drop out too (rare: removal also takes them out of this partition),
        // so a page reads about `limit` items unless `q` filters.
        filtered: Boolean(q),
      };
    }
    return { index: inbox, partition: keys.inboxPk, sourceItems: false, keep: matches, filtered: Boolean(q) };
  }

  /** An item of the merged inbox (GSI1, or the unread partition) as an entry; undefined for anything else. */
  private entryOf(item: Item): InboxEntry | undefined {
    if (item.type === 'content') {
      if (!(Number(item.refs) > 0) || item[TABLE.indexes.inbox.partitionKey] !== keys.inboxPk)
        return undefined;
      return {
        id: contentId(String(item.sha256)),
        record: toMergedRecord(item),
        unread: item[TABLE.indexes.sourceInbox.partitionKey] === keys.unreadPk,
      };
    }
    if (item.type === 'message' && !item.registered) {
      if (item[TABLE.indexes.inbox.partitionKey] !== keys.inboxPk) return undefined;
      const record = toMergedRecord(item);
      return { id: legacyId(record.sourceId, record.identity), record, unread: item.unread === true };
    }
    return undefined;
  }

  /** The merged entries of a source's message items (a BatchGet of their registry items), in the same order. */
  private async mergedOf(items: Item[]): Promise<Array<InboxEntry | undefined>> {
    const shas = [
      ...new Set(
        items
          .filter((i) => i.type === 'message' && i.registered)
          .map((i) => (i.object as { sha256: string }).sha256),
      ),
    ];
    const registries = await this.registries(shas);
    return items.map((item) => {
      if (item.type !== 'message') return undefined;
      if (!item.registered) return this.entryOf(item);
      const registry = registries.get((item.object as { sha256: string }).sha256);
      return registry ? this.entryOf(registry) : undefined;
    });
  }

  private async registries(sha256s: string[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>();
    for (let i = 0; i < sha256s.length; i += BATCH_GET_MAX) {
      let pending: Item[] = sha256s
        .slice(i, i + BATCH_GET_MAX)
        .map((sha) => ({ PK: keys.registryPk(sha), SK: keys.registrySk }));
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > RETRIES)
          throw new StorageError('DynamoDB kept content registry keys unprocessed: the table is throttled');
        if (attempt > 0) await sleep(Math.min(1000, 25 * 2 ** attempt));
        const out = await readOrFail('batch-get', () =>
          this.db.send(new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: pending } } })),
        );
        for (const item of out.Responses?.[this.tableName] ?? []) found.set(String(item.sha256), item);
        pending = out.UnprocessedKeys?.[this.tableName]?.Keys ?? [];
      }
    }
    return found;
  }

  /** The item an id names (strongly consistent), only if it is of the kind the id promises. */
  private async itemOf(id: string): Promise<{ parsed: ParsedId; item: Item } | undefined> {
    const parsed = parseInboxId(id);
    if (!parsed) return undefined;
    const Key =
      parsed.kind === 'content'
        ? { PK: keys.registryPk(parsed.sha256), SK: keys.registrySk }
        : { PK: keys.sourcePk(parsed.sourceId), SK: keys.messageSk(parsed.identity) };
    const { Item } = await readOrFail('get', () =>
      this.db.send(new GetCommand({ TableName: this.tableName, Key, ConsistentRead: true })),
    );
    if (!Item) return undefined;
    const entry = this.entryOf(Item);
    if (!entry || entry.id !== id) return undefined;
    return { parsed, item: Item };
  }

  async get(id: string): Promise<InboxEntry | undefined> {
    const found = await this.itemOf(id);
    return found && this.entryOf(found.item);
  }

  async setUnread(id: string, unread: boolean, now: number): Promise<boolean> {
    const found = await this.itemOf(id);
    if (!found) return false;
    const { inbox, sourceInbox } = TABLE.indexes;
    const Key = { PK: found.item.PK, SK: found.item.SK };
    const names: Record<string, string> = { '#ip': inbox.partitionKey, '#type': 'type' };
    try {
      if (found.parsed.kind === 'legacy') {
        // Its GSI2 keys are its source's inbox: the read state is an attribute only (not in the unread partition).
        await this.db.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key,
            UpdateExpression: 'SET unread = :u, readAt = :at',
            ConditionExpression: '#type = :message AND #ip = :inbox',
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: {
              ':u': unread,
              ':at': new Date(now).toISOString(),
              ':message': 'message',
              ':inbox': keys.inboxPk,
            },
          }),
        );
        return true;
      }
      await this.db.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key,
          // Into the unread partition under the entry's own inbox sort key, or out of it.
          UpdateExpression: unread ? 'SET #up = :unread, #us = #is' : 'SET readAt = :at REMOVE #up, #us',
          // Conditions keep an update from creating an item or reviving one that left the inbox meanwhile.
          ConditionExpression: '#type = :content AND refs > :zero AND #ip = :inbox',
          ExpressionAttributeNames: {
            ...names,
            '#up': sourceInbox.partitionKey,
            '#us': sourceInbox.sortKey,
            ...(unread ? { '#is': inbox.sortKey } : {}),
          },
          ExpressionAttributeValues: {
            ...(unread ? { ':unread': keys.unreadPk } : { ':at': new Date(now).toISOString() }),
            ':content': 'content',
            ':zero': 0,
            ':inbox': keys.inboxPk,
          },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw new StorageError(`DynamoDB update failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async removeFromInbox(id: string, by: string, now: number): Promise<boolean> {
    const found = await this.itemOf(id);
    if (!found) return false;
    const { inbox, sourceInbox } = TABLE.indexes;
    const item = found.item;
    const at = new Date(now).toISOString();
    const record = toMergedRecord(item);
    const sha256 = record.object.sha256;
    const legacy = found.parsed.kind === 'legacy';
    try {
      await this.db.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Update: {
                TableName: this.tableName,
                Key: { PK: item.PK, SK: item.SK },
                // Out of the merged inbox and the unread partition (a legacy item: its source's inbox too). The item
                // itself stays: its references, and the sources' message items, keep the identities committed.
                UpdateExpression: 'SET removedAt = :at, removedBy = :by REMOVE #ip, #is, #up, #us',
                ConditionExpression: legacy
                  ? '#type = :message AND #ip = :inbox'
                  : '#type = :content AND refs > :zero AND #ip = :inbox',
                ExpressionAttributeNames: {
                  '#type': 'type',
                  '#ip': inbox.partitionKey,
                  '#is': inbox.sortKey,
                  '#up': sourceInbox.partitionKey,
                  '#us': sourceInbox.sortKey,
                },
                ExpressionAttributeValues: {
                  ':at': at,
                  ':by': by,
                  ':inbox': keys.inboxPk,
                  ...(legacy ? { ':message': 'message' } : { ':content': 'content', ':zero': 0 }),
                },
              },
            },
            {
              // The audit record: who took it out of the inbox, when, and what it was.
              Put: {
                TableName: this.tableName,
                Item: {
                  PK: keys.registryPk(sha256),
                  SK: keys.inboxRemovalSk(`${at}#${id}`),
                  type: 'inbox-removal',
                  id,
                  by,
                  at,
                  via: record.via ?? [],
                  subject: record.metadata.subject ?? null,
                  object: { key: record.object.key, size: record.object.size, sha256 },
                },
              },
            },
          ],
        }),
      );
    } catch (err) {
      if (err instanceof TransactionCanceledException) {
        const reasons = err.CancellationReasons ?? [];
        if (reasons[0]?.Code === 'ConditionalCheckFailed') return false;
      }
      throw new StorageError(`DynamoDB update failed: ${(err as Error).message}`, { cause: err });
    }
    // Each source's view: its message items leave their source inbox partition. Best effort after the fact: the
    // source view also drops any item whose merged entry is out of the inbox.
    if (!legacy) {
      for (const via of record.via ?? []) {
        await this.db
          .send(
            new UpdateCommand({
              TableName: this.tableName,
              Key: { PK: keys.sourcePk(via.sourceId), SK: keys.messageSk(via.identity) },
              UpdateExpression: 'REMOVE #up, #us',
              ConditionExpression: '#type = :message',
              ExpressionAttributeNames: {
                '#up': sourceInbox.partitionKey,
                '#us': sourceInbox.sortKey,
                '#type': 'type',
              },
              ExpressionAttributeValues: { ':message': 'message' },
            }),
          )
          .catch((err: unknown) => {
            if (!(err instanceof ConditionalCheckFailedException)) throw err;
          });
      }
    }
    return true;
  }
}
