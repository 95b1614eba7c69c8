/**
 * The sync of one source (docs/architecture.md, the flow of data), in parts: the run with its lease and deadline
 * (sync-run.ts), the IMAP folder sync (sync-imap.ts), the POP3 sync (sync-pop3.ts), the commit pipeline
 * (sync-commit.ts), identity rematching (sync-rematch.ts), message failures (sync-failures.ts) and the inbox quota
 * (sync-inbox.ts). This module is what the rest of the code imports.
 */
export { defaultHolder, syncSource } from './sync-run';
export { rawObjectKey } from './sync-commit';
export { identifyPop3 } from './sync-pop3';
export type { SyncDeps, SyncOptions, SyncProgress } from './sync-options';
