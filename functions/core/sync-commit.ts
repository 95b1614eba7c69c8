import { BodyTap, sha256Hex } from './body-tap';
import { identityKey } from './model';
import type { MessageRecord, UpstreamId } from './model';
import { bytesOf, collect, Pipeline } from './pipeline';
import type { Bytes } from './ports';
import type { RunContext } from './sync-context';

/** The deterministic S3 key: a retry after a crash overwrites its own object instead of leaving an orphan. */
export function rawObjectKey(sourceId: string, identity: string): string {
  return `raw/${sourceId}/${sha256Hex(identity).slice(0, 40)}.eml`;
}

/** What is kept of a message too big to parse whole: its header block fits in this (the parser caps headers too). */
const HEADER_KEEP_BYTES = 1024 * 1024;

/** Messages stored and committed at once while the next ones download, and the bytes they may hold. */
const PIPELINE_JOBS = 32;
const PIPELINE_BYTES = 48 * 1024 * 1024;
/** Thrown inside a fetch loop to stop it when the time budget is spent. */
export class BudgetSpent extends Error {}

/**
 * The commit pipeline of a run: each message streamed into the store while hashed, parsed, then committed (fenced)
 * with the counters; small messages in the background while the next ones download.
 */
export class CommitPipeline {
  constructor(
    private readonly run: Pick<
      RunContext,
      'deps' | 'source' | 'options' | 'report' | 'lease' | 'wholeMessageBytes' | 'inbox' | 'checkLease'
    >,
  ) {}

  pipeline(oneAtATime: boolean): Pipeline {
    return oneAtATime
      ? new Pipeline(1, 0)
      : new Pipeline(
          this.run.options.pipelineJobs ?? PIPELINE_JOBS,
          this.run.options.pipelineBytes ?? PIPELINE_BYTES,
        );
  }

  /**
   * A small message is read into memory and stored and committed in the background while the next one
   * downloads; a big one is streamed to S3 here, from the connection, so the download waits for it (memory stays
   * bounded by the pipeline's bytes and the stream's parts, whatever the message size).
   */
  async handOff(
    pipeline: Pipeline,
    announcedSize: number,
    body: Bytes,
    handle: (body: Bytes, inMemoryBytes?: number) => Promise<void>,
  ): Promise<void> {
    pipeline.check();
    if (announcedSize > this.run.wholeMessageBytes) {
      await handle(body);
      return;
    }
    const bytes = await collect(body);
    await pipeline.add(bytes.length, () => handle(bytesOf(bytes), bytes.length));
  }

  /**
   * Streams one message into S3 while hashing it; parses what it kept. Nothing is committed yet. `inMemoryBytes`:
   * the body is already in memory, that long (the store can send it in one request).
   */
  async store(
    upstream: UpstreamId,
    body: Bytes,
    announcedSize: number,
    inMemoryBytes?: number,
  ): Promise<{ record: MessageRecord; contentSha256: string }> {
    this.run.checkLease();
    const identity = identityKey(upstream);
    const key = rawObjectKey(this.run.source.id, identity);
    // Keep the whole message for the parser only when the server says it is small enough; of a bigger one keep
    // just enough for its header block. A server that under-announces still only costs the parse limit.
    const parseLimit = this.run.options.parseLimitBytes ?? 8 * 1024 * 1024;
    // A body in memory (handOff collected it) is ours: the tap keeps a view of it, not a copy.
    const tap = new BodyTap(
      announcedSize <= parseLimit ? parseLimit : HEADER_KEEP_BYTES,
      inMemoryBytes !== undefined,
    );
    if (inMemoryBytes === undefined) {
      await this.run.deps.store.put(key, tap.wrap(body), {});
    } else {
      // In memory already: hash it first, so the store can send the hash along (S3 signs and checks it instead
      // of hashing the body again).
      const bytes = await collect(tap.wrap(body));
      await this.run.deps.store.put(key, bytesOf(bytes), {
        size: bytes.length,
        sha256: tap.digests().sha256,
      });
    }
    this.run.options.onStep?.('stored');
    const { sha256, contentSha256 } = tap.digests();
    const metadata = await this.run.deps.parser.parse(tap.head(), tap.complete);
    const fetchedAt = new Date(this.run.deps.clock.now()).toISOString();
    return {
      contentSha256,
      record: {
        sourceId: this.run.source.id,
        identity,
        upstream,
        object: { key, size: tap.size, sha256, contentSha256 },
        metadata,
        fetchedAt,
        sortDate: metadata.date ?? fetchedAt,
        seen: false,
        flagged: false,
      },
    };
  }

  async commit(record: MessageRecord): Promise<void> {
    this.run.checkLease();
    const result = await this.run.deps.index.commitMessage(this.run.lease, record);
    if (result === 'exists') {
      this.run.report.skipped++;
      return;
    }
    this.run.report.fetched++;
    this.run.report.fetchedBytes += record.object.size;
    this.run.inbox.added(record.object.size);
    this.run.options.onStep?.('committed');
    if (result === 'shared') {
      // The item points at the bytes another committed item registered: the copy just written is a duplicate. Only
      // after the fenced commit, as in matchExisting: a crash before this leaves an orphan, never a missing object.
      await this.run.deps.store.delete(record.object.key);
      this.run.options.onStep?.('duplicate-deleted');
    }
  }
}
