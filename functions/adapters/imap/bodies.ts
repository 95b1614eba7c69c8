import type { ImapFlow } from 'imapflow';
import { MessageError, UpstreamError } from '../../core/errors';
import type { Source } from '../../core/model';
import type { Bytes } from '../../core/ports';
import { sizesAgree } from '../common/sizes';
import { imapError } from './errors';
import { BATCH_BYTES, LISTING_BYTES_PER_MESSAGE, SMALL_ANSWER_BYTES, STREAM_CHUNK_BYTES } from './limits';
import { compactUidSet } from './uid-set';

/** Runs an operation under a budget of received bytes (ConnectionWatch.guarded, through the session). */
export type Guard = <T>(stage: string, bytes: number, fn: () => Promise<T>) => Promise<T>;

/**
 * The bodies of messages (BODY.PEEK[]), exact bytes: small ones many to a pipelined FETCH, big ones streamed in
 * partial FETCHes; a UID not delivered is confirmed expunged before the caller may take it for gone.
 */
export class ImapBodies {
  constructor(
    private readonly client: ImapFlow,
    private readonly source: Source,
    private readonly guarded: Guard,
    /** The session's UID SEARCH (under its own budget). */
    private readonly present: (uids: number[]) => Promise<Set<number>>,
    private readonly wholeMessageBytes: number,
  ) {}

  async fetchBodies(
    messages: Array<{ uid: number; size: number }>,
    onMessage: (uid: number, size: number, body: Bytes) => Promise<void>,
  ): Promise<void> {
    const sizes = new Map(messages.map((m) => [m.uid, m.size]));
    const ordered = [...sizes.keys()].sort((a, b) => a - b);
    let batch: number[] = [];
    let batchBytes = 0;
    const flush = async () => {
      const uids = batch;
      const bytes = batchBytes;
      batch = [];
      batchBytes = 0;
      if (!uids.length) return;
      // Twice the announced bytes (sizesAgree), a megabyte of slack, and the FETCH framing of each message.
      await this.guarded(
        'UID FETCH BODY.PEEK[]',
        2 * bytes + SMALL_ANSWER_BYTES + uids.length * LISTING_BYTES_PER_MESSAGE,
        () => this.fetchBatch(uids, sizes, onMessage),
      );
    };
    for (const uid of ordered) {
      const size = sizes.get(uid)!;
      if (size > this.wholeMessageBytes) {
        await flush();
        // imapflow stops a download at twice the size plus a window (DownloadOverflow); this is the backstop.
        await this.guarded(
          `UID FETCH BODY.PEEK[] of UID ${uid}`,
          2 * size + 2 * STREAM_CHUNK_BYTES + SMALL_ANSWER_BYTES,
          () => this.stream(uid, size, onMessage),
        );
        continue;
      }
      if (batch.length && (batchBytes + size > BATCH_BYTES || batch.length >= 500)) await flush();
      batch.push(uid);
      batchBytes += size;
    }
    await flush();
  }

  /** One pipelined UID FETCH BODY.PEEK[] for many small messages; imapflow waits for us between messages. */
  private async fetchBatch(
    uids: number[],
    sizes: ReadonlyMap<number, number>,
    onMessage: (uid: number, size: number, body: Bytes) => Promise<void>,
  ): Promise<void> {
    let consumerError: Error | undefined;
    const delivered = new Set<number>();
    const asked = new Set(uids);
    try {
      for await (const m of this.client.fetch(
        compactUidSet(uids),
        { uid: true, source: true },
        { uid: true },
      )) {
        if (!m.source) continue;
        const source = m.source;
        // Each body once, and only those asked for: a server repeating answers would otherwise have the same
        // message stored again and again until the deadline.
        if (!asked.has(m.uid) || delivered.has(m.uid)) {
          throw new UpstreamError(
            'PROTOCOL_ERROR',
            `${this.source.host} sent the body of UID ${m.uid} ${delivered.has(m.uid) ? 'twice' : 'unasked'} in one UID FETCH`,
            true,
          );
        }
        const announced = sizes.get(m.uid)!;
        if (!sizesAgree(announced, source.length)) {
          // This message's failure, not the connection's: the sync sets it aside after a few runs.
          throw new MessageError(
            'PROTOCOL_ERROR',
            `${this.source.host} sent ${source.length} bytes for UID ${m.uid}, whose RFC822.SIZE is ${announced}: that is not the message it announced, so it was not stored`,
            { uid: m.uid },
          );
        }
        try {
          await onMessage(m.uid, source.length, oneChunk(source));
          delivered.add(m.uid);
        } catch (err) {
          consumerError = err instanceof Error ? err : new Error(String(err));
          throw consumerError;
        }
      }
    } catch (err) {
      if (consumerError !== undefined) throw consumerError;
      throw imapError(this.source, err, 'UID FETCH BODY.PEEK[]');
    }
    await this.confirmGone(
      uids.filter((u) => !delivered.has(u)),
      'BODY.PEEK[]',
    );
  }

  /**
   * The caller settles UIDs that were not delivered as expunged; make sure they are. A closed connection or a
   * server that answered without the body must not pass for an expunge: that would skip a message for good.
   */
  async confirmGone(uids: number[], what: string): Promise<void> {
    if (!uids.length) return;
    if (!this.client.usable || !this.client.mailbox) {
      throw new UpstreamError(
        'CONNECTION_LOST',
        `the connection to ${this.source.host}:${this.source.port} was lost during UID FETCH`,
        true,
      );
    }
    const still = [...(await this.present(uids))].sort((a, b) => a - b);
    if (still.length) {
      // Named after the first: the sync counts failures per message, and the next run meets the others again.
      throw new MessageError(
        'PROTOCOL_ERROR',
        `${this.source.host} did not send ${what} of UID ${still.join(', ')} although the message exists; it will be retried`,
        { uid: still[0]! },
      );
    }
  }

  /** A big message in chunks of BODY.PEEK[]<offset.length>: memory stays at one chunk. */
  private async stream(
    uid: number,
    size: number,
    onMessage: (uid: number, size: number, body: Bytes) => Promise<void>,
  ): Promise<void> {
    let download: Awaited<ReturnType<ImapFlow['download']>>;
    try {
      download = await this.client.download(String(uid), undefined, {
        uid: true,
        chunkSize: STREAM_CHUNK_BYTES,
      });
    } catch (err) {
      throw imapError(this.source, err, `download UID ${uid}`);
    }
    if (!download.content) {
      await this.confirmGone([uid], 'BODY.PEEK[]'); // expunged meanwhile, or the connection is gone
      return;
    }
    const content = download.content;
    const source = this.source;
    const client = this.client;
    async function* body(): Bytes {
      let received = 0;
      try {
        for await (const chunk of content) {
          received += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
      } catch (err) {
        // Past twice the announced size (imapflow's DownloadOverflow) the body is not this message: its failure.
        if ((err as { code?: string } | undefined)?.code === 'DownloadOverflow') {
          throw new MessageError(
            'PROTOCOL_ERROR',
            `${source.host} sent more than twice the ${size} bytes announced for UID ${uid}: that is not the message it announced, so it was not stored`,
            { uid },
            { cause: err },
          );
        }
        throw imapError(source, err, `download UID ${uid}`);
      }
      // A chunked download ends at the first short chunk: a server that cut one short would pass for the end.
      if (received < size && !client.usable) {
        throw new UpstreamError(
          'CONNECTION_LOST',
          `the connection to ${source.host}:${source.port} was lost during the download of UID ${uid}`,
          true,
        );
      }
      if (received < size) {
        throw new MessageError(
          'PROTOCOL_ERROR',
          `${source.host} sent ${received} of the ${size} bytes of UID ${uid}; it will be retried`,
          { uid },
        );
      }
    }
    try {
      await onMessage(uid, size, body());
    } finally {
      content.destroy();
    }
  }
}

async function* oneChunk(buf: Buffer): Bytes {
  yield buf;
}
