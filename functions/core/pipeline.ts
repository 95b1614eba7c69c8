/**
 * Stores and commits messages while the next ones download. A message already in memory is handed to `add`,
 * which returns as soon as there is room (at most `maxJobs` jobs and `maxBytes` bytes in flight); the job runs
 * in the background. The first failure stops the intake: the next `add` throws it, and `settle` reports it
 * once every job in flight has ended, so the caller saves its checkpoint over what did commit.
 *
 * Nothing here changes what is durable: each job is one message's own store-then-commit, and a checkpoint only
 * passes a UID once the job of every UID below it has committed (UidCheckpoint).
 */
export class Pipeline {
  private readonly running = new Set<Promise<void>>();
  private bytes = 0;
  private failure: { error: unknown } | undefined;

  constructor(
    private readonly maxJobs: number,
    private readonly maxBytes: number,
  ) {
    if (maxJobs < 1) throw new RangeError('Pipeline: maxJobs must be at least 1');
  }

  get inFlight(): number {
    return this.running.size;
  }

  /** Throws the first job failure, if any. */
  check(): void {
    if (this.failure) throw this.failure.error;
  }

  /** Waits for room, then starts `job`, which holds `bytes` until it ends. Throws an earlier job's failure. */
  async add(bytes: number, job: () => Promise<void>): Promise<void> {
    this.check();
    while (
      this.running.size >= this.maxJobs ||
      (this.running.size > 0 && this.bytes + bytes > this.maxBytes)
    ) {
      await Promise.race(this.running);
      this.check();
    }
    this.bytes += bytes;
    const done: Promise<void> = job()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => {
        this.bytes -= bytes;
        this.running.delete(done);
      });
    this.running.add(done);
  }

  /** Waits for every job in flight; returns the first failure (undefined when all committed). */
  async settle(): Promise<{ error: unknown } | undefined> {
    while (this.running.size) await Promise.all(this.running);
    return this.failure;
  }
}

/** Reads a body to its end into one buffer. */
export async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    chunks.push(
      Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    );
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

export async function* bytesOf(buffer: Buffer): AsyncIterable<Uint8Array> {
  yield buffer;
}
