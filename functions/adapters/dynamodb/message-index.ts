import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type {
  ActionJournal,
  FailureRecords,
  FolderCheckpoints,
  MessageCommits,
  MessageIndex,
  RunStatusLog,
  SourceLeases,
  SourceMessages,
  SourceStatus,
  StoredCopies,
} from '../../core/ports';
import { DynamoActionJournal } from './audit';
import { DynamoFolderCheckpoints } from './checkpoints';
import { DynamoMessageCommits } from './commits';
import { DynamoStoredCopies } from './copies';
import { DynamoFailureRecords } from './failures';
import { IndexTable } from './fencing';
import { DynamoSourceLeases } from './leases';
import { DynamoSourceMessages } from './listing';
import { DynamoSourceStatus } from './status';
import { KeyedSerialQueue } from './write-queue';

export type { SourceSummary } from '../../core/ports';
export { fitMetadata, toMergedRecord } from './records';

/**
 * MessageIndex on DynamoDB: the narrow ports of core/ports.ts, each in a file of its own, on one table. Every read
 * that decides a write (dedupe, lease, checkpoint) is a strongly consistent read of the base table; GSIs only serve
 * the reader. Every write that changes state carries a ConditionCheck on the lease's fencing number, and all of a
 * source's fenced writes, whichever part makes them, go through the one KeyedSerialQueue of this index.
 */
export class DynamoMessageIndex implements MessageIndex {
  private readonly leases: DynamoSourceLeases;
  private readonly checkpoints: DynamoFolderCheckpoints;
  private readonly commits: DynamoMessageCommits;
  private readonly journal: DynamoActionJournal;
  private readonly copies: DynamoStoredCopies;
  private readonly failures: DynamoFailureRecords;
  private readonly messages: DynamoSourceMessages;
  private readonly status: DynamoSourceStatus;

  constructor(db: DynamoDBDocumentClient, tableName: string) {
    const table = new IndexTable(db, tableName, new KeyedSerialQueue());
    this.leases = new DynamoSourceLeases(table);
    this.checkpoints = new DynamoFolderCheckpoints(table);
    this.commits = new DynamoMessageCommits(table);
    this.journal = new DynamoActionJournal(table);
    this.copies = new DynamoStoredCopies(table, this.commits);
    this.failures = new DynamoFailureRecords(table);
    this.messages = new DynamoSourceMessages(table);
    this.status = new DynamoSourceStatus(table);
  }

  acquireLease(...a: Parameters<SourceLeases['acquireLease']>) {
    return this.leases.acquireLease(...a);
  }
  renewLease(...a: Parameters<SourceLeases['renewLease']>) {
    return this.leases.renewLease(...a);
  }
  releaseLease(...a: Parameters<SourceLeases['releaseLease']>) {
    return this.leases.releaseLease(...a);
  }

  getFolderState(...a: Parameters<FolderCheckpoints['getFolderState']>) {
    return this.checkpoints.getFolderState(...a);
  }
  saveFolderState(...a: Parameters<FolderCheckpoints['saveFolderState']>) {
    return this.checkpoints.saveFolderState(...a);
  }

  committedIdentities(...a: Parameters<MessageCommits['committedIdentities']>) {
    return this.commits.committedIdentities(...a);
  }
  findByContent(...a: Parameters<MessageCommits['findByContent']>) {
    return this.commits.findByContent(...a);
  }
  commitMessage(...a: Parameters<MessageCommits['commitMessage']>) {
    return this.commits.commitMessage(...a);
  }
  commitAlias(...a: Parameters<MessageCommits['commitAlias']>) {
    return this.commits.commitAlias(...a);
  }
  lookup(...a: Parameters<MessageCommits['lookup']>) {
    return this.commits.lookup(...a);
  }

  recordRun(...a: Parameters<RunStatusLog['recordRun']>) {
    return this.status.recordRun(...a);
  }

  beginActions(...a: Parameters<ActionJournal['beginActions']>) {
    return this.journal.beginActions(...a);
  }
  completeActions(...a: Parameters<ActionJournal['completeActions']>) {
    return this.journal.completeActions(...a);
  }
  pendingActions(...a: Parameters<ActionJournal['pendingActions']>) {
    return this.journal.pendingActions(...a);
  }
  auditTrail(...a: Parameters<ActionJournal['auditTrail']>) {
    return this.journal.auditTrail(...a);
  }

  inboxUsage(...a: Parameters<StoredCopies['inboxUsage']>) {
    return this.copies.inboxUsage(...a);
  }
  evict(...a: Parameters<StoredCopies['evict']>) {
    return this.copies.evict(...a);
  }
  objectUnreferenced(...a: Parameters<StoredCopies['objectUnreferenced']>) {
    return this.copies.objectUnreferenced(...a);
  }

  messageFailures(...a: Parameters<FailureRecords['messageFailures']>) {
    return this.failures.messageFailures(...a);
  }
  recordMessageFailure(...a: Parameters<FailureRecords['recordMessageFailure']>) {
    return this.failures.recordMessageFailure(...a);
  }
  clearMessageFailures(...a: Parameters<FailureRecords['clearMessageFailures']>) {
    return this.failures.clearMessageFailures(...a);
  }
  retryMessages(...a: Parameters<FailureRecords['retryMessages']>) {
    return this.failures.retryMessages(...a);
  }

  listInbox(...a: Parameters<SourceMessages['listInbox']>) {
    return this.messages.listInbox(...a);
  }
  sourceMessages(...a: Parameters<SourceMessages['sourceMessages']>) {
    return this.messages.sourceMessages(...a);
  }

  summary(...a: Parameters<SourceStatus['summary']>) {
    return this.status.summary(...a);
  }
  leaseState(...a: Parameters<SourceStatus['leaseState']>) {
    return this.status.leaseState(...a);
  }
}
