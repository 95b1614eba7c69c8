import { SQSClient } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { DynamoSourceRegistry } from '../adapters/dynamodb/source-registry';
import { describeError } from '../core/errors';
import type { Clock, SourceRegistry } from '../core/ports';
import { claimForDispatch, DISPATCH_CLAIM_MS, notDispatchable } from '../core/schedule';
import { makeAwsClients } from '../shared/aws-clients';
import { parseEnv } from '../shared/env';
import { makeObservability, type Observability } from '../shared/observability';
import { SqsSyncQueue, type SyncMessage, type SyncQueue } from './queue';

/**
 * The dispatcher (issue #14): EventBridge Scheduler invokes it every minute. It reads the sources that are due from
 * the due index (a query, never a scan), leaves alone the disabled ones and those backing off, claims each of the
 * others (a schedule write conditional on the revision it read, so two dispatchers never both send a source) and
 * sends one queue message per claimed source. A claimed source is not due again until its run writes the next due
 * time, or the claim runs out (the run died before it could).
 */
export interface DispatchDeps {
  registry: SourceRegistry;
  queue: SyncQueue;
  clock: Clock;
  obs: Observability;
  /** Sources read per invocation (default 500); the rest are due still and go next minute. */
  limit?: number;
  claimMs?: number;
}

export interface DispatchResult {
  dispatched: string[];
  skipped: Array<{ sourceId: string; why: string }>;
  /** Claimed but refused by the queue: their claim was given back. */
  failed: string[];
}

export function makeHandler(
  deps: DispatchDeps,
): (event: unknown, context: Context) => Promise<DispatchResult> {
  const { registry, queue, clock, obs } = deps;
  const log = obs.logger;
  return async (_event, context) => {
    obs.invocation(context);
    const now = clock.now();
    const result: DispatchResult = { dispatched: [], skipped: [], failed: [] };
    try {
      const due = await registry.due(now, deps.limit ?? 500);
      const claimed: Array<{ entry: (typeof due)[number]; message: SyncMessage }> = [];
      for (const entry of due) {
        const id = entry.source.id;
        // The index may lag a write (a source disabled or failed a moment ago): the entry read decides.
        const why = notDispatchable({ enabled: entry.source.enabled, schedule: entry.schedule }, now);
        if (why) {
          result.skipped.push({ sourceId: id, why });
          continue;
        }
        const next = claimForDispatch(entry.schedule, now, deps.claimMs ?? DISPATCH_CLAIM_MS);
        if (!(await registry.setSchedule(id, next, entry.revision))) {
          // Written since the index was read: another dispatcher claimed it, or a run just wrote its schedule.
          result.skipped.push({ sourceId: id, why: 'changed-meanwhile' });
          continue;
        }
        claimed.push({ entry, message: { sourceId: id, reason: 'due', at: now } });
      }
      const refused = new Set(await queue.sendAll(claimed.map((c) => c.message)));
      for (const { entry } of claimed) {
        const id = entry.source.id;
        if (!refused.has(id)) {
          result.dispatched.push(id);
          continue;
        }
        result.failed.push(id);
        // Give the claim back so the next minute tries again (the claim is at revision + 1).
        await registry.setSchedule(id, entry.schedule, entry.revision + 1).catch(() => false);
      }
      log.info('dispatched', {
        due: due.length,
        dispatched: result.dispatched,
        skipped: result.skipped,
        failed: result.failed,
      });
      obs.count('dispatched', result.dispatched.length);
      if (result.failed.length) {
        log.error('the queue refused some sources', { failed: result.failed });
        obs.problem('dispatchFailed', result.failed.length);
      }
      return result;
    } catch (err) {
      const e = describeError(err);
      log.error('dispatch failed', { code: e.code, error: e.message });
      throw err;
    } finally {
      obs.flush();
    }
  };
}

/** The composition root: adapters built once per container from the environment. */
function fromEnv(): DispatchDeps {
  const env = parseEnv('dispatch');
  const clients = makeAwsClients();
  return {
    registry: new DynamoSourceRegistry(clients.documents, env.TABLE_NAME),
    queue: new SqsSyncQueue(new SQSClient({}), env.QUEUE_URL),
    clock: { now: () => Date.now() },
    obs: makeObservability(),
  };
}

export const handler = makeHandler(fromEnv());
