import { DynamoDBServiceException } from '@aws-sdk/client-dynamodb';
import { S3ServiceException } from '@aws-sdk/client-s3';
import type { AwsClients } from '../../functions/shared/aws-clients';
import { uniform } from './fault-proxy';

/**
 * Faults injected into the real S3 and DynamoDB clients, as SDK middleware, so that the requests still go to
 * s3rver and DynamoDB Local:
 * - `server-error`: a 500 (S3 InternalError, DynamoDB InternalServerError); the request is not sent;
 * - `throttle`: S3 SlowDown (503), DynamoDB ProvisionedThroughputExceededException / ThrottlingException (400);
 * - `ambiguous`: a write (PutObject, DeleteObject, TransactWriteItems, UpdateItem, PutItem, DeleteItem) is sent and
 *   applied, then its answer is replaced by a network error (ECONNRESET, or a TimeoutError) or by a 500: the caller
 *   cannot tell that it happened.
 *
 * Each fault is injected at one of two places, drawn per request:
 * - `sdk`: below the SDK's retry middleware, per attempt, as the network and the service produce them: the SDK
 *   retries them as it would on AWS (an ambiguous TransactWriteItems is sent again with its ClientRequestToken);
 * - `caller`: above it, once per call: what the SDK gives up with after its retries, seen by Tributary itself.
 */
export type StorageFault = 'server-error' | 'throttle' | 'ambiguous';
export type FaultLayer = 'sdk' | 'caller';

export interface StorageFaultOptions {
  seed: number;
  /** Probability that a call (caller layer) or an attempt (sdk layer) gets a fault; 0 turns them off. */
  rate: number;
  /** Which operations may fail (default: all). `commandName` is the SDK's, e.g. 'TransactWriteItemsCommand'. */
  applies?: (service: 's3' | 'dynamodb', commandName: string) => boolean;
}

const WRITES = new Set([
  'PutObjectCommand',
  'DeleteObjectCommand',
  'TransactWriteItemsCommand',
  'UpdateItemCommand',
  'PutItemCommand',
  'DeleteItemCommand',
]);

export class StorageFaults {
  /** Off until the test turns it on; the harness's own reads never pass through here anyway. */
  rate: number;
  /** Faults injected, by `service command fault layer`. */
  readonly counts: Record<string, number> = {};
  /** Calls made while faults were on, by service and command (the denominator). */
  readonly calls: Record<string, number> = {};
  private readonly random: () => number;

  constructor(private readonly options: StorageFaultOptions) {
    this.rate = options.rate;
    this.random = uniform(options.seed);
  }

  /** Attaches to the clients (the DynamoDB document client shares its client's middleware stack). */
  attach(clients: AwsClients): this {
    for (const [service, stack] of [
      ['s3', clients.s3.middlewareStack],
      ['dynamodb', clients.dynamodb.middlewareStack],
    ] as const) {
      const add = stack.add.bind(stack) as (mw: unknown, options: Record<string, unknown>) => void;
      add(this.middleware(service, 'caller'), {
        step: 'initialize',
        priority: 'high',
        name: 'tributaryStorageFaultCaller',
      });
      add(this.middleware(service, 'sdk'), {
        step: 'finalizeRequest',
        priority: 'low',
        name: 'tributaryStorageFaultSdk',
      });
    }
    return this;
  }

  /** Injected faults of one kind, or all. */
  total(fault?: StorageFault): number {
    return Object.entries(this.counts)
      .filter(([k]) => !fault || k.split(' ')[2] === fault)
      .reduce((n, [, c]) => n + c, 0);
  }

  private middleware(service: 's3' | 'dynamodb', layer: FaultLayer) {
    return (
        next: (args: unknown) => Promise<{ output?: unknown; response?: unknown }>,
        context: { commandName?: string },
      ) =>
      async (args: unknown) => {
        const command = context.commandName ?? 'unknown';
        if (this.rate <= 0 || (this.options.applies && !this.options.applies(service, command)))
          return next(args);
        if (layer === 'caller')
          this.calls[`${service} ${command}`] = (this.calls[`${service} ${command}`] ?? 0) + 1;
        // Half the faults at each layer: a call draws once at the caller layer, each attempt once at the SDK's.
        if (this.random() >= this.rate / 2) return next(args);
        const kinds: StorageFault[] = WRITES.has(command)
          ? ['server-error', 'throttle', 'ambiguous']
          : ['server-error', 'throttle'];
        const fault = kinds[Math.floor(this.random() * kinds.length)]!;
        const key = `${service} ${command} ${fault} ${layer}`;
        this.counts[key] = (this.counts[key] ?? 0) + 1;
        if (fault !== 'ambiguous') throw this.error(service, fault, command);
        const out = await next(args);
        // The answer is lost: drop its body unread, as a broken connection would.
        const body = (out.output as { Body?: { destroy?: () => void } } | undefined)?.Body;
        body?.destroy?.();
        throw this.random() < 0.5
          ? this.error(service, 'server-error', command)
          : Object.assign(new Error(`read ECONNRESET (injected after ${command} was applied)`), {
              name: this.random() < 0.5 ? 'TimeoutError' : 'Error',
              code: 'ECONNRESET',
              ...(layer === 'caller' ? { $metadata: { attempts: 3 } } : {}),
            });
      };
  }

  private error(service: 's3' | 'dynamodb', fault: 'server-error' | 'throttle', command: string): Error {
    const $metadata = { httpStatusCode: fault === 'server-error' ? 500 : service === 's3' ? 503 : 400 };
    const message = `injected ${fault} on ${command}`;
    if (service === 's3') {
      const name = fault === 'server-error' ? 'InternalError' : 'SlowDown';
      return new S3ServiceException({ name, $fault: 'server', $metadata, message });
    }
    const name =
      fault === 'server-error'
        ? 'InternalServerError'
        : this.random() < 0.5
          ? 'ProvisionedThroughputExceededException'
          : 'ThrottlingException';
    return new DynamoDBServiceException({
      name,
      $fault: fault === 'server-error' ? 'server' : 'client',
      $metadata,
      message,
    });
  }
}
