import type { Source } from '../../core/model';
import type { RegisteredSource, SourceRegistry } from '../../core/ports';
import { initialSchedule, type SourceSchedule } from '../../core/schedule';
import type { SqliteDatabase } from './database';

interface SourceRow {
  source: string;
  schedule: string;
  revision: number;
}

/** A source backing off is not due: the due order is by the later of the next due time and the back-off. */
function dueAt(schedule: SourceSchedule): number {
  return Math.max(0, Math.floor(Math.max(schedule.nextDueAt, schedule.backoffUntil ?? 0)));
}

function toEntry(row: SourceRow): RegisteredSource {
  return {
    source: JSON.parse(row.source) as Source,
    schedule: JSON.parse(row.schedule) as SourceSchedule,
    revision: row.revision,
  };
}

/**
 * SourceRegistry on the embedded database: one row per source with its settings, schedule and revision; enabled
 * rows are in the due index. Local mode mirrors the config file's sources into it for the in-process scheduler.
 * Every read here is consistent (one database), so `due` never lags a write as DynamoDB's index may.
 */
export class SqliteSourceRegistry implements SourceRegistry {
  constructor(private readonly db: SqliteDatabase) {}

  async get(sourceId: string): Promise<RegisteredSource | undefined> {
    const row = await this.db.read('read a source', () =>
      this.db.get<SourceRow>('SELECT source, schedule, revision FROM sources WHERE source_id = ?', sourceId),
    );
    return row && toEntry(row);
  }

  async list(): Promise<RegisteredSource[]> {
    const rows = await this.db.read('list sources', () =>
      this.db.all<SourceRow>('SELECT source, schedule, revision FROM sources ORDER BY source_id'),
    );
    return rows.map(toEntry);
  }

  async put(source: Source, now: number): Promise<void> {
    const schedule = initialSchedule(now);
    // New: due at once. Known: new settings, same schedule (changing a source does not reset its back-off).
    await this.db.write('write a source', () =>
      this.db.run(
        `INSERT INTO sources (source_id, source, schedule, revision, enabled, due_at) VALUES (?, ?, ?, 1, ?, ?)
         ON CONFLICT (source_id) DO UPDATE SET source = excluded.source, enabled = excluded.enabled,
           revision = revision + 1`,
        source.id,
        JSON.stringify(source),
        JSON.stringify(schedule),
        source.enabled ? 1 : 0,
        dueAt(schedule),
      ),
    );
  }

  async remove(sourceId: string): Promise<void> {
    await this.db.write('remove a source', () =>
      this.db.run('DELETE FROM sources WHERE source_id = ?', sourceId),
    );
  }

  async due(now: number, limit: number): Promise<RegisteredSource[]> {
    if (limit <= 0) return [];
    const rows = await this.db.read('list due sources', () =>
      this.db.all<SourceRow>(
        `SELECT source, schedule, revision FROM sources WHERE enabled = 1 AND due_at <= ?
         ORDER BY due_at, source_id LIMIT ?`,
        Math.max(0, Math.floor(now)),
        limit,
      ),
    );
    return rows.map(toEntry);
  }

  async setSchedule(sourceId: string, schedule: SourceSchedule, revision: number): Promise<boolean> {
    return this.db.write('write a schedule', () => {
      const changed = this.db.run(
        `UPDATE sources SET schedule = ?, due_at = ?, revision = revision + 1
         WHERE source_id = ? AND revision = ?`,
        JSON.stringify(schedule),
        dueAt(schedule),
        sourceId,
        revision,
      ).changes;
      return changed > 0;
    });
  }
}
