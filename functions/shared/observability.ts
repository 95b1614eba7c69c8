import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import type { SourceRunReport } from '../core/model';
import type { Logger } from '../core/ports';
import { DETAILED_METRICS_VARIABLE, SYNC_FAILED_METRIC } from './metric-names';

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
  /** A count with no source dimension (the dispatcher's sends, for instance); sent only with detailed metrics. */
  count(name: string, value: number): void;
  /** A count of something that went wrong (an alarm may watch it): always sent, and only when it happens. */
  problem(name: string, value: number): void;
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

/**
 * Log level from POWERTOOLS_LOG_LEVEL (Powertools' own variable; INFO when unset). Detailed metrics when
 * TRIBUTARY_DETAILED_METRICS is `true` (the service stack sets it from its `detailedMetrics` context).
 */
export function makeObservability(
  options: { detailedMetrics?: boolean } = {
    detailedMetrics: process.env[DETAILED_METRICS_VARIABLE] === 'true',
  },
): Observability {
  const detailed = options.detailedMetrics ?? false;
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
      // CloudWatch bills each distinct metric name and dimension set $0.30 for every month it is sent: these five
      // would be most of an idle deployment's bill (docs/cost.md), and every figure is already in the "sync
      // finished" log line, which Logs Insights charts per source for free. So they are opt-in (the stack's
      // `detailedMetrics` context), and then with the service as their only dimension: the source and the outcome
      // ride along as properties.
      if (!detailed) return;
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
      if (detailed) metrics.addMetric(name, MetricUnit.Count, value);
    },
    problem(name, value) {
      metrics.addMetric(name, MetricUnit.Count, value);
    },
    flush() {
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    },
  };
}
