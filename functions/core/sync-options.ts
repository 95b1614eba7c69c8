import type {
  Clock,
  Credentials,
  Logger,
  MailConnector,
  MessageIndex,
  MetadataParser,
  RawMailStore,
} from './ports';
import type { SyncStep } from './policy-run';

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
