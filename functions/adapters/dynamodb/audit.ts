import { StorageError } from '../../core/errors';
import type { AuditRecord } from '../../core/model';
import type { ActionJournal, Lease } from '../../core/ports';
import { chunks } from '../common/chunks';
import { TRANSACT_MAX, type IndexTable, type Item, type TransactItems } from './fencing';
import { keys } from './keys';

/** The audit trail: intents (with pending markers) before an action, their completion after it. */
export class DynamoActionJournal implements ActionJournal {
  constructor(private readonly table: IndexTable) {}

  async beginActions(lease: Lease, records: AuditRecord[]): Promise<void> {
    const pk = keys.sourcePk(lease.sourceId);
    // A transaction checks an item once, so a target's second delete in one call is not checked by DynamoDB: it
    // must record the same sha256 as the first, or nothing is begun (as a failed check would leave it).
    const shaOf = new Map<string, string>();
    for (const record of records) {
      if (record.action !== 'delete-upstream') continue;
      const seen = shaOf.get(record.target);
      if (seen !== undefined && seen !== record.object.sha256) {
        throw new StorageError(
          `audit intent refused for source ${lease.sourceId}: ${record.target} is named twice with different sha256 (${seen}, ${record.object.sha256})`,
        );
      }
      shaOf.set(record.target, record.object.sha256);
    }
    // Up to three items a record (intent, pending marker, the check of its stored item), plus the lease check.
    for (const batch of chunks(records, Math.floor((TRANSACT_MAX - 1) / 3))) {
      const checked = new Set<string>();
      await this.table.write(lease, [
        ...batch.flatMap((record): TransactItems => {
          const intent: AuditRecord = { ...record, state: 'intent' };
          const items: TransactItems = [
            {
              Put: {
                TableName: this.table.tableName,
                Item: { ...intent, PK: pk, SK: keys.auditSk(record.id), type: 'audit' },
                // A retry rewrites its own intent; a completed record is never reopened.
                ConditionExpression: 'attribute_not_exists(PK) OR #state = :intent',
                ExpressionAttributeNames: { '#state': 'state' },
                ExpressionAttributeValues: { ':intent': 'intent' },
              },
            },
            {
              Put: {
                TableName: this.table.tableName,
                Item: { PK: pk, SK: keys.pendingSk(record.id), type: 'pending', record: intent },
              },
            },
          ];
          // Section 4 rule 1, at the last moment: an upstream delete is begun only while the message item
          // exists, is a stored message (not evicted) and records the sha256 the object was just checked against.
          if (record.action === 'delete-upstream' && !checked.has(record.target)) {
            checked.add(record.target);
            items.push({
              ConditionCheck: {
                TableName: this.table.tableName,
                Key: { PK: pk, SK: keys.messageSk(record.target) },
                ConditionExpression: '#type = :message AND #object.#sha = :sha',
                ExpressionAttributeNames: { '#type': 'type', '#object': 'object', '#sha': 'sha256' },
                ExpressionAttributeValues: { ':message': 'message', ':sha': record.object.sha256 },
              },
            });
          }
          return items;
        }),
        this.table.leaseCheck(lease),
      ]);
    }
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
    const pk = keys.sourcePk(lease.sourceId);
    const at = new Date(now).toISOString();
    const deletedUpstream = (o: (typeof outcomes)[number]) =>
      o.record.action === 'delete-upstream' && o.state === 'done';
    // Read first: a failed condition would cancel the audit's completion with it.
    const targets = outcomes.filter(deletedUpstream).map((o) => keys.messageSk(o.record.target));
    const messages =
      targets.length > 0
        ? await this.table.getMany(lease.sourceId, targets, ['deletedUpstreamAt'])
        : new Map<string, Item>();
    const marked = new Set<string>();
    // Up to three items an outcome, plus the lease check.
    for (const batch of chunks(outcomes, Math.floor((TRANSACT_MAX - 1) / 3))) {
      const items: TransactItems = [];
      for (const outcome of batch) {
        const { record, state, usageAfter, note } = outcome;
        const set = ['#state = :state', '#completedAt = :at'];
        const names: Record<string, string> = { '#state': 'state', '#completedAt': 'completedAt' };
        const values: Record<string, string | number> = { ':state': state, ':at': at };
        if (usageAfter !== undefined) {
          set.push('#usageAfter = :usageAfter');
          names['#usageAfter'] = 'usageAfter';
          values[':usageAfter'] = usageAfter;
        }
        if (note !== undefined) {
          set.push('#note = :note');
          names['#note'] = 'note';
          values[':note'] = note;
        }
        items.push(
          {
            Update: {
              TableName: this.table.tableName,
              Key: { PK: pk, SK: keys.auditSk(record.id) },
              UpdateExpression: `SET ${set.join(', ')}`,
              ConditionExpression: 'attribute_exists(PK)',
              ExpressionAttributeNames: names,
              ExpressionAttributeValues: values,
            },
          },
          { Delete: { TableName: this.table.tableName, Key: { PK: pk, SK: keys.pendingSk(record.id) } } },
        );
        const sk = keys.messageSk(record.target);
        const message = messages.get(sk);
        if (
          deletedUpstream(outcome) &&
          message &&
          message.deletedUpstreamAt === undefined &&
          !marked.has(sk)
        ) {
          marked.add(sk);
          items.push({
            Update: {
              TableName: this.table.tableName,
              Key: { PK: pk, SK: sk },
              UpdateExpression: 'SET deletedUpstreamAt = :at',
              ConditionExpression: 'attribute_exists(PK)',
              ExpressionAttributeValues: { ':at': at },
            },
          });
        }
      }
      items.push(this.table.leaseCheck(lease));
      await this.table.write(lease, items);
    }
  }

  async pendingActions(sourceId: string): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    for await (const item of this.table.query({
      KeyConditionExpression: 'PK = :pk AND begins_with(SK, :p)',
      ExpressionAttributeValues: { ':pk': keys.sourcePk(sourceId), ':p': keys.pendingPrefix },
    })) {
      out.push(item.record as AuditRecord);
    }
    return out;
  }

  async *auditTrail(sourceId: string, since?: string): AsyncIterable<AuditRecord> {
    for await (const item of this.table.query({
      KeyConditionExpression: 'PK = :pk AND SK BETWEEN :a AND :b',
      ExpressionAttributeValues: {
        ':pk': keys.sourcePk(sourceId),
        ':a': keys.auditSk(since ?? ''),
        ':b': `${keys.auditPrefix}\uffff`,
      },
    })) {
      const { PK: _pk, SK: _sk, type: _type, ...record } = item;
      yield record as unknown as AuditRecord;
    }
  }
}
