import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { DynamoMessageIndex } from '../adapters/dynamodb/message-index';
import { DynamoSourceRegistry } from '../adapters/dynamodb/source-registry';
import { PostalMimeParser } from '../adapters/mime';
import { S3RawMailStore } from '../adapters/s3/raw-mail-store';
import { SsmCredentials } from '../adapters/secrets/ssm-credentials';
import { describeError } from '../core/errors';
import type { SourceRunReport } from '../core/model';
import type { SourceRegistry } from '../core/ports';
import { MAX_QUEUE_DELAY_SECONDS, syncDeadline } from '../core/schedule';
import { LoginDelays, writeScheduleAfterRun } from '../core/schedule-writer';
import { syncSource, type SyncDeps, type SyncOptions } from '../core/sync';
import { makeAwsClients } from '../shared/aws-clients';
import { parseEnv } from '../shared/env';
import { makeObservability, type Observability } from '../shared/observability';
import { makeConnector } from '../shared/connector';
import { parseSyncMessage, SqsSyncQueue, type SyncQueue } from './queue';

/**
 * The sync function (issue #14): one queue message, one source, one run of the engine's syncSource with a deadline
 * taken from the invocation's remaining time, then the source's next due time. A run that ends with `more` sends
 * its source back to the queue at once, so a first import of any size finishes over as many invocations as it
 * needs; every run is checkpointed, so nothing is fetched twice or lost. This is a composition root, not a second
 * engine: everything a run does is syncSource's.
 */
export interface SyncHandlerDeps {
  registry: SourceRegistry;
  queue: SyncQueue;
  /** The engine's ports; `connector` is wrapped here to read POP3 LOGIN-DELAY. */
  sync: SyncDeps;
  obs: Observability;
  /** Passed to syncSource (lease TTL, pipeline sizes...); the deadline and holder are set per run. */
  options?: Omit<SyncOptions, 'deadline' | 'holder'>;
  /** Drops a cached password the server refused, so one changed in SSM is read again at the next run. */
  forgetPassword?: (sourceId: string) => void;
}

/** Run-status fields worth a log line (no secret can be in a report: errors are typed and masked upstream). */
function summary(report: SourceRunReport): Record<string, unknown> {
  return {
    outcome: report.outcome,
    fetched: report.fetched,
    fetchedBytes: report.fetchedBytes,
    deletedUpstream: report.deletedUpstream,
    evicted: report.evicted,
    durationMs: report.durationMs,
    ...(report.setAside ? { setAside: report.setAside } : {}),
    ...(report.error ? { code: report.error.code, error: report.error.message } : {}),
    ...(report.notes.length ? { notes: report.notes } : {}),
  };
}

export function makeHandler(
  deps: SyncHandlerDeps,
): (event: SQSEvent, context: Context) => Promise<SQSBatchResponse> {
  const { registry, queue, obs } = deps;
  const log = obs.logger;
  const delays = new LoginDelays();
  const syncDeps: SyncDeps = { ...deps.sync, connector: delays.wrap(deps.sync.connector), logger: log };

  async function runOne(record: SQSRecord, context: Context) {
    const message = parseSyncMessage(record.body);
    if (!message) {
      // Retrying cannot make it valid: drop it (the dispatcher sends a good one when the source is due).
      log.error('not a sync message; dropped', { messageId: record.messageId });
      return;
    }
    const id = message.sourceId;
    await obs.withSource(id, async () => {
      const entry = await registry.get(id);
      if (!entry) {
        log.warn('the source is no longer registered; nothing to do', { reason: message.reason });
        return;
      }
      if (!entry.source.enabled) {
        log.info('the source is disabled; nothing to do', { reason: message.reason });
        return;
      }
      const clock = deps.sync.clock;
      const startedAt = clock.now();
      const deadline = syncDeadline(startedAt, context.getRemainingTimeInMillis());
      log.info('sync started', { reason: message.reason, budgetMs: deadline - startedAt });
      const report = await syncSource(syncDeps, entry.source, {
        ...deps.options,
        deadline,
        holder: `lambda:${context.awsRequestId}`,
      });
      const finishedAt = clock.now();
      obs.runMetrics(report);
      log[report.outcome === 'failed' ? 'warn' : 'info']('sync finished', summary(report));
      // A refused password may have been changed in SSM since it was cached: read it again next time.
      if (report.error?.code === 'AUTH_FAILED') deps.forgetPassword?.(id);
      const loginDelay = delays.take(id);
      let requeued = false;
      if (report.outcome === 'more' && (loginDelay ?? 0) <= MAX_QUEUE_DELAY_SECONDS) {
        try {
          await queue.send({ sourceId: id, reason: 'more', at: finishedAt }, loginDelay ?? 0);
          requeued = true;
        } catch (err) {
          // The dispatcher picks the source up instead: it is due at once (scheduleAfterRun, not requeued).
          log.error('could not send the source back to the queue', { error: describeError(err).message });
        }
      }
      const failures = await writeSchedule(id, report, {
        startedAt,
        finishedAt,
        requeued,
        loginDelay,
      });
      if (report.outcome === 'failed') obs.failedRun(id, failures ?? 1);
    });
  }

  function writeSchedule(
    id: string,
    report: SourceRunReport,
    run: { startedAt: number; finishedAt: number; requeued: boolean; loginDelay?: number },
  ): Promise<number | undefined> {
    return writeScheduleAfterRun(registry, id, report, run, log);
  }

  return async (event, context) => {
    obs.invocation(context);
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    try {
      for (const record of event.Records) {
        try {
          await runOne(record, context);
        } catch (err) {
          // The run itself ends with a status, whatever the server did; an error here is the table or the
          // registry: the queue delivers the message again (partial batch response).
          const e = describeError(err);
          log.error('could not handle the message; it will be delivered again', {
            messageId: record.messageId,
            code: e.code,
            error: e.message,
          });
          batchItemFailures.push({ itemIdentifier: record.messageId });
        }
      }
    } finally {
      obs.flush();
    }
    return { batchItemFailures };
  };
}

/** The composition root: adapters and SDK clients built once per container from the environment. */
function fromEnv(): SyncHandlerDeps {
  const env = parseEnv('sync');
  const clients = makeAwsClients();
  const obs = makeObservability();
  const credentials = new SsmCredentials(new SSMClient({}), env.SECRETS_PREFIX);
  return {
    registry: new DynamoSourceRegistry(clients.documents, env.TABLE_NAME),
    queue: new SqsSyncQueue(new SQSClient({}), env.QUEUE_URL),
    obs,
    sync: {
      connector: makeConnector(obs.logger),
      store: new S3RawMailStore(clients.s3, env.BUCKET_NAME),
      index: new DynamoMessageIndex(clients.documents, env.TABLE_NAME),
      parser: new PostalMimeParser(),
      credentials,
      clock: { now: () => Date.now() },
      logger: obs.logger,
    },
    forgetPassword: (sourceId) => credentials.forget(sourceId),
  };
}

export const handler = makeHandler(fromEnv());
