/**
 * Metric names shared by the functions that emit them and the stack that alarms on them (one spelling, so an
 * alarm cannot watch a metric nobody writes).
 */
export const SYNC_FAILED_METRIC = 'SyncFailed';

/** `true`: the functions also send runs, messages, bytes, duration and upstream deletions (billed per metric). */
export const DETAILED_METRICS_VARIABLE = 'TRIBUTARY_DETAILED_METRICS';
