import { TributaryError } from '../../core/errors';
import type { InboxEntry, InboxQuery, InboxReader, InboxWriter } from '../../core/ports';
import type { SqliteDatabase } from './database';
import {
  checkLimit,
  decodeCursor,
  encodeCursor,
  mergedRecord,
  placesOf,
  type ContentRow,
} from './message-index';

/** A content's sha256 (the registry key): 64 lower-case hex digits, nothing else. */
const SHA256 = /^[0-9a-f]{64}$/;
/** Source ids are slugs (the config schema). */
const SOURCE_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * The ids a reader sees, as on DynamoDB (adapters/dynamodb/inbox.ts): `c<sha256>` names a registry row, the merged
 * entry (decision 0007). The embedded store has no items from before the registry, so it has no `l...` ids; any id
 * other than `c` and 64 hex digits names nothing.
 */
export function contentId(sha256: string): string {
  return `c${sha256}`;
}

function shaOf(id: string): string | undefined {
  return id.length === 65 && id.startsWith('c') && SHA256.test(id.slice(1)) ? id.slice(1) : undefined;
}

/**
 * The merged inbox on SQLite. Every filter is answered by the query itself (an index walk newest first, filtered
 * in SQL), so a page is short only at the end and the DynamoDB adapter's FILTER_BUDGET does not apply:
 * - everything: contents by inbox key (partial index of the listed entries);
 * - unread: the partial index of the listed unread entries;
 * - one source: the source's own listed messages by their inbox key (as DynamoDB walks the source's partition),
 *   joined with their registry rows; a content the source holds twice (two folders) is listed once, at its newest
 *   place, on whichever page that falls;
 * - one source and unread: unread entries with a place in that source;
 * - `q`: a case-insensitive substring of the sender's name or address or of the subject, matched against columns
 *   lower-cased at commit with the same toLocaleLowerCase as the DynamoDB adapter's matchesQuery (instr: no
 *   wildcard to escape).
 */
export class SqliteInbox implements InboxReader, InboxWriter {
  constructor(private readonly db: SqliteDatabase) {}

  async list(query: InboxQuery): Promise<{ entries: InboxEntry[]; cursor?: string }> {
    const limit = checkLimit(query.limit);
    if (query.sourceId !== undefined && !SOURCE_ID.test(query.sourceId)) {
      throw new TributaryError('CONFIG_INVALID', 'source must be a source id', false);
    }
    const before = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const q = query.q?.trim().toLocaleLowerCase();
    const where: string[] = [];
    const params: unknown[] = [];
    const matches = (table: string) => {
      if (!q) return;
      where.push(
        `(instr(${table}.search_from_name, ?) > 0 OR instr(${table}.search_from_address, ?) > 0 OR instr(${table}.search_subject, ?) > 0)`,
      );
      params.push(q, q, q);
    };
    let sql: string;
    if (query.sourceId !== undefined && !query.unread) {
      where.push('m.source_id = ?', 'm.listed = 1', 'c.listed = 1');
      params.push(query.sourceId);
      if (before !== undefined) {
        where.push('m.inbox_key < ?');
        params.push(before);
      }
      // The source's newest place of each content only.
      where.push(`NOT EXISTS (SELECT 1 FROM messages n WHERE n.source_id = m.source_id AND n.sha256 = m.sha256
        AND n.listed = 1 AND n.inbox_key > m.inbox_key)`);
      matches('c');
      sql = `SELECT c.*, m.inbox_key AS walk_key FROM messages m JOIN contents c ON c.sha256 = m.sha256
        WHERE ${where.join(' AND ')} ORDER BY m.inbox_key DESC LIMIT ?`;
    } else {
      where.push('c.listed = 1');
      if (query.unread) where.push('c.unread = 1');
      if (before !== undefined) {
        where.push('c.inbox_key < ?');
        params.push(before);
      }
      if (query.sourceId !== undefined) {
        where.push('EXISTS (SELECT 1 FROM content_via v WHERE v.sha256 = c.sha256 AND v.source_id = ?)');
        params.push(query.sourceId);
      }
      matches('c');
      sql = `SELECT c.*, c.inbox_key AS walk_key FROM contents c WHERE ${where.join(' AND ')}
        ORDER BY c.inbox_key DESC LIMIT ?`;
    }
    params.push(limit + 1);
    return this.db.read('list the inbox', () => {
      const rows = this.db.all<ContentRow & { walk_key: string }>(sql, ...params);
      const page = rows.slice(0, limit);
      const places = placesOf(
        this.db,
        page.map((r) => r.sha256),
      );
      return {
        entries: page.map((row) => this.entryOf(row, places.get(row.sha256) ?? [])),
        ...(rows.length > limit ? { cursor: encodeCursor(page[page.length - 1]!.walk_key) } : {}),
      };
    });
  }

  private entryOf(row: ContentRow, places: Array<{ sourceId: string; identity: string }>): InboxEntry {
    return { id: contentId(row.sha256), record: mergedRecord(row, places), unread: row.unread === 1 };
  }

  async get(id: string): Promise<InboxEntry | undefined> {
    const sha256 = shaOf(id);
    if (!sha256) return undefined;
    return this.db.read('read an inbox entry', () => {
      const row = this.db.get<ContentRow>('SELECT * FROM contents WHERE sha256 = ? AND listed = 1', sha256);
      return row && this.entryOf(row, placesOf(this.db, [sha256]).get(sha256) ?? []);
    });
  }

  async setUnread(id: string, unread: boolean, now: number): Promise<boolean> {
    const sha256 = shaOf(id);
    if (!sha256) return false;
    return this.db.write('change the read state', () => {
      const changed = unread
        ? this.db.run('UPDATE contents SET unread = 1 WHERE sha256 = ? AND listed = 1', sha256).changes
        : this.db.run(
            'UPDATE contents SET unread = 0, read_at = ? WHERE sha256 = ? AND listed = 1',
            new Date(now).toISOString(),
            sha256,
          ).changes;
      return changed > 0;
    });
  }

  /**
   * Out of the merged inbox and every source's view, with the record of who and when, in one transaction. The
   * registry row, the messages and their identities stay (never fetched again), and so do the bytes and counters.
   */
  async removeFromInbox(id: string, by: string, now: number): Promise<boolean> {
    const sha256 = shaOf(id);
    if (!sha256) return false;
    const at = new Date(now).toISOString();
    return this.db.write('remove an inbox entry', () => {
      const row = this.db.get<ContentRow>('SELECT * FROM contents WHERE sha256 = ? AND listed = 1', sha256);
      if (!row) return false;
      const record = mergedRecord(row, placesOf(this.db, [sha256]).get(sha256) ?? []);
      this.db.run(
        'UPDATE contents SET listed = 0, unread = 0, removed_at = ?, removed_by = ? WHERE sha256 = ?',
        at,
        by,
        sha256,
      );
      this.db.run(
        `UPDATE messages SET listed = 0
         WHERE (source_id, identity) IN (SELECT source_id, identity FROM content_via WHERE sha256 = ?)`,
        sha256,
      );
      this.db.run(
        'INSERT INTO inbox_removals (sha256, at, id, removed_by, record) VALUES (?, ?, ?, ?, ?)',
        sha256,
        at,
        id,
        by,
        JSON.stringify({
          via: record.via ?? [],
          subject: record.metadata.subject ?? null,
          object: { key: record.object.key, size: record.object.size, sha256 },
        }),
      );
      return true;
    });
  }
}
