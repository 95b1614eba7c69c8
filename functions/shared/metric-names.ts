/**
 * Metric names shared by the functions that emit them and the stack that alarms on them (one spelling, so an
 * alarm cannot watch a metric nobody writes).
 */
export const SYNC_FAILED_METRIC = 'SyncFailed';
