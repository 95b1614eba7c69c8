import type { SourceRunReport } from '../../core/model';

/**
 * What an index keeps of a run for the status pages (read back as `SourceSummary.lastRun`, which names the fields
 * a page shows), the same in every adapter.
 */
export function lastRunOf(report: SourceRunReport, now: number) {
  return {
    at: new Date(now).toISOString(),
    outcome: report.outcome,
    fetched: report.fetched,
    fetchedBytes: report.fetchedBytes,
    deletedUpstream: report.deletedUpstream,
    evicted: report.evicted,
    ...(report.upstreamUsage ? { upstreamUsage: report.upstreamUsage } : {}),
    durationMs: report.durationMs,
    notes: report.notes,
    ...(report.error ? { error: report.error } : {}),
  };
}
