import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import type { SourceRunReport } from '../core/model';
import type { Logger } from '../core/ports';
import { SYNC_FAILED_METRIC } from './metric-names';

/**
 * Logs and metrics of the Lambda functions, in one place (issue #14). Powertools writes JSON log lines and
 * CloudWatch embedded-metric blobs to stdout; service name and namespace come from POWERTOOLS_SERVICE_NAME and
 * POWERTOOLS_METRICS_NAMESPACE. Two rules: every line written while a source is handled carries its `sourceId`, and
 * no line carries a secret (fields whose name says password, secret, token or authorization are masked, wherever
 * they are nested).
 */
export interface Observability {
  /** The core's Logger port, writing through Powertools. */
  logger: Logger;
  /** Puts the invocation's request id (and function name, cold start) on every log line that follows. */
  invocation(context: Context): void;
  /** Runs `work` with `sourceId` on every log line written meanwhile. */
  withSource<T>(sourceId: string, work: () => Promise<T>): Promise<T>;
  /** One run's metrics: runs, messages, bytes, duration, upstream deletions (the source and outcome as properties). */
  runMetrics(report: SourceRunReport): void;
  /**
   * A failed run: `SyncFailed` with the source's consecutive failures as its value, what the "source failing N runs
   * in a row" alarm watches.
   */
  failedRun(sourceId: string, consecutiveFailures: number): void;
  /** A count with no source dimension (the dispatcher's sends, for instance). */
  count(name: string, value: number): void;
  /** Writes what was recorded; call once at the end of every invocation. */
  flush(): void;
}

const SECRET_FIELD = /pass(word)?|secret|token|authori[sz]ation|credential/i;
const MASK = '[redacted]';

/** A copy of `value` with secret-named fields masked; cycles and depth are bounded. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_FIELD.test(k) ? MASK : redact(v, depth + 1);
  return out;
}

/** Log level from POWERTOOLS_LOG_LEVEL (Powertools' own variable; INFO when unset). */
export function makeObservability(): Observability {
  const powertools = new PowertoolsLogger();
  const metrics = new Metrics();
  const write =
    (level: 'debug' | 'info' | 'warn' | 'error') => (message: string, fields?: Record<string, unknown>) => {
      if (fields) powertools[level](message, redact(fields) as Record<string, unknown>);
      else powertools[level](message);
    };
  let depth = 0;
  return {
    logger: { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') },
    invocation(context) {
      powertools.addContext(context);
    },
    async withSource(sourceId, work) {
      // Batch size 1: one source at a time per container, so a temporary key is enough (and removed after).
      depth++;
      powertools.appendKeys({ sourceId });
      try {
        return await work();
      } finally {
        if (--depth === 0) powertools.removeKeys(['sourceId']);
      }
    },
    runMetrics(report) {
      // Dimensions: the service only, never the source. CloudWatch bills each distinct name and dimension set as
      // one custom metric ($0.30 a month each): five per source would cost more than the rest of an idle
      // deployment (docs/cost.md). The source and the outcome ride along as properties of the same log line, so
      // CloudWatch Logs Insights still charts any of them per source (docs/deploy.md).
      metrics.addMetadata('sourceId', report.sourceId);
      metrics.addMetadata('outcome', report.outcome);
      metrics.addMetric('runs', MetricUnit.Count, 1);
      metrics.addMetric('messages', MetricUnit.Count, report.fetched);
      metrics.addMetric('bytes', MetricUnit.Bytes, report.fetchedBytes);
      metrics.addMetric('duration', MetricUnit.Milliseconds, report.durationMs);
      metrics.addMetric('deletedUpstream', MetricUnit.Count, report.deletedUpstream);
      metrics.publishStoredMetrics();
    },
    failedRun(sourceId, consecutiveFailures) {
      metrics.addMetadata('sourceId', sourceId);
      metrics.addMetric(SYNC_FAILED_METRIC, MetricUnit.Count, consecutiveFailures);
      metrics.publishStoredMetrics();
    },
    count(name, value) {
      metrics.addMetric(name, MetricUnit.Count, value);
    },
    flush() {
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    },
  };
}
