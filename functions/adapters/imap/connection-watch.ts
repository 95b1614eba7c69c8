import type { ImapFlow } from 'imapflow';
import { UpstreamError } from '../../core/errors';
import type { Source } from '../../core/model';
import { imapError } from './errors';

/**
 * Watches one imapflow connection: counts the bytes its parser receives, to drop the connection when an answer runs
 * past its budget, and keeps the first error the connection reported, so an operation it failed reports the cause
 * (a read timeout, a literal over the cap) rather than the "connection not available" imapflow then rejects with.
 */
export class ConnectionWatch {
  private received = 0;
  /** The answer in progress, and the count of received bytes it may not pass. */
  private budget: { stage: string; bytes: number; end: number } | undefined;
  /** Set when an answer passed its budget: the connection was dropped for it. */
  overrun: UpstreamError | undefined;
  private connectionError: unknown;

  constructor(
    private readonly client: ImapFlow,
    private readonly source: Source,
  ) {
    // Also keeps a connection error from being an unhandled 'error' event.
    client.on('error', (err: unknown) => (this.connectionError ??= err));
    // Whatever feeds imapflow's parser (the socket, the TLS socket after STARTTLS, the inflater with COMPRESS)
    // is piped into its `streamer`; a 'data' listener beside the pipe only observes, its backpressure still holds.
    const streamer = (client as unknown as { streamer?: NodeJS.EventEmitter }).streamer;
    const count = (chunk: Buffer) => this.count(chunk.length);
    streamer?.on('pipe', (src: NodeJS.EventEmitter) => src.on('data', count));
    streamer?.on('unpipe', (src: NodeJS.EventEmitter) => src.off('data', count));
  }

  private count(bytes: number): void {
    this.received += bytes;
    const budget = this.budget;
    if (budget && this.received > budget.end && !this.overrun) {
      this.overrun = new UpstreamError(
        'PROTOCOL_ERROR',
        `${this.source.host}:${this.source.port} sent more than ${budget.bytes} bytes in answer to ${budget.stage}, far more than it should: the connection was dropped`,
        true,
      );
      this.client.close();
    }
  }

  /**
   * Runs one operation with a budget of received bytes. imapflow caps each response, but not how many responses
   * one command gets: an endless stream of untagged answers (LIST, FETCH) kept it reading, and collecting, with no
   * timeout ever firing, past the run's deadline. Past the budget the connection is dropped and the operation
   * fails with PROTOCOL_ERROR. Budgets nest: an inner one never extends an outer one.
   */
  async guarded<T>(stage: string, bytes: number, fn: () => Promise<T>): Promise<T> {
    const outer = this.budget;
    const end = Math.min(this.received + bytes, outer?.end ?? Infinity);
    this.budget = end === outer?.end ? outer : { stage, bytes, end };
    try {
      return await fn();
    } catch (err) {
      throw this.explain(err, stage);
    } finally {
      this.budget = outer;
    }
  }

  /** The real cause of a failure that imapflow reports as a lost connection. */
  private explain(err: unknown, stage: string): unknown {
    if (this.overrun) return this.overrun;
    const lost =
      (err instanceof UpstreamError && err.code === 'CONNECTION_LOST') ||
      (err as { code?: string } | undefined)?.code === 'NoConnection';
    if (!lost || this.connectionError === undefined) return err;
    const cause = imapError(this.source, this.connectionError, stage);
    return cause.code === 'TIMEOUT' || cause.code === 'PROTOCOL_ERROR' ? cause : err;
  }
}
