import type { Source, SourceRunReport } from './model';
import type { PolicyContext } from './policy-run';
import type { Lease } from './ports';
import type { CommitPipeline } from './sync-commit';
import type { FailureLedger } from './sync-failures';
import type { InboxTally } from './sync-inbox';
import type { SyncDeps, SyncOptions } from './sync-options';

/**
 * One run of one source as its parts see it (the IMAP folder sync, the POP3 sync, the commit pipeline, the
 * failure ledger, the rematching): the lease as it stands now (renewals replace it), the time budget, the report.
 */
export interface RunContext {
  readonly deps: SyncDeps;
  readonly source: Source;
  readonly options: SyncOptions;
  readonly report: SourceRunReport;
  /** The current lease: read at each write, since a renewal replaces it. */
  readonly lease: Lease;
  readonly wholeMessageBytes: number;
  readonly failures: FailureLedger;
  readonly inbox: InboxTally;
  readonly commits: CommitPipeline;
  /** Throws LeaseLostError once a renewal found the lease taken over. */
  checkLease(): void;
  /** Whether the soft deadline is still ahead (between messages the run stops by itself). */
  budgetLeft(): boolean;
  progress(planned?: number): void;
  policyContext(): PolicyContext;
}
