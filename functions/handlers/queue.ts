import { SendMessageBatchCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';

/**
 * The sync queue's message: which source to sync, and why (`due`: the dispatcher; `more`: the previous run of the
 * source stopped at its deadline with more to do; `now`: someone asked for it in the web page). The body carries
 * nothing else: the source's settings are read from the registry when the message is handled, so a message never
 * runs a source with stale settings.
 */
const syncMessageSchema = z.strictObject({
  sourceId: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
  reason: z.enum(['due', 'more', 'now']),
  /** Epoch ms when it was sent. */
  at: z.number().int().nonnegative(),
});

export type SyncMessage = z.infer<typeof syncMessageSchema>;

/** The message in a queue record's body, or undefined when the body is not one (it is then dropped, logged). */
export function parseSyncMessage(body: string): SyncMessage | undefined {
  try {
    const parsed = syncMessageSchema.safeParse(JSON.parse(body));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Where the dispatcher and the sync function send sources to sync. */
export interface SyncQueue {
  /** Sends each message; returns the source ids whose message the queue did not take. */
  sendAll(messages: SyncMessage[]): Promise<string[]>;
  /** Sends one message, visible after `delaySeconds` (at most 900); throws when the queue did not take it. */
  send(message: SyncMessage, delaySeconds?: number): Promise<void>;
}

/** SendMessageBatch takes at most 10 entries. */
const BATCH = 10;

export class SqsSyncQueue implements SyncQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async sendAll(messages: SyncMessage[]): Promise<string[]> {
    const failed: string[] = [];
    for (let i = 0; i < messages.length; i += BATCH) {
      const batch = messages.slice(i, i + BATCH);
      try {
        const out = await this.sqs.send(
          new SendMessageBatchCommand({
            QueueUrl: this.queueUrl,
            // Entry ids only need to be unique within the batch; a source appears once per dispatch.
            Entries: batch.map((m, n) => ({ Id: String(n), MessageBody: JSON.stringify(m) })),
          }),
        );
        for (const f of out.Failed ?? []) {
          const m = batch[Number(f.Id)];
          if (m) failed.push(m.sourceId);
        }
      } catch {
        failed.push(...batch.map((m) => m.sourceId));
      }
    }
    return failed;
  }

  async send(message: SyncMessage, delaySeconds = 0): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(message),
        ...(delaySeconds > 0 ? { DelaySeconds: Math.min(900, Math.ceil(delaySeconds)) } : {}),
      }),
    );
  }
}
