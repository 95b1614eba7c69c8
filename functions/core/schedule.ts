/**
 * When a source is polled next (issue #14): pure functions of the previous schedule, the run's outcome and the
 * clock, so the dispatcher and the sync function share one rule and a table of cases tests it.
 */
import type { SourceRunReport } from './model';

/** The schedule kept with each registered source; epoch ms throughout. */
export interface SourceSchedule {
  /** When the source is next due. While a run (or a chain of `more` runs) is in flight, the end of its claim. */
  nextDueAt: number;
  /** Consecutive failed runs; 0 after any run that got through. */
  failures: number;
  /** Set after a failure: no dispatch before this time, whatever else says the source is due. */
  backoffUntil?: number;
  /** When the last run that changed the schedule started, and how it ended. */
  lastRunAt?: number;
  lastOutcome?: SourceRunReport['outcome'];
  lastErrorCode?: string;
  /** When the dispatcher last sent the source to the queue. */
  dispatchedAt?: number;
}

export interface BackoffPolicy {
  /** The wait after the first failure; it doubles with each further one. */
  baseMs: number;
  /** The longest wait, however many failures. */
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 60_000, capMs: 60 * 60_000 };

/**
 * How long a dispatched source stays claimed: the longest a Lambda invocation can run (15 minutes). A run that
 * ends writes the real next due time; one killed before it can write is dispatched again when the claim runs out.
 */
export const DISPATCH_CLAIM_MS = 15 * 60_000;

/** SQS delays a message by at most 15 minutes. */
export const MAX_QUEUE_DELAY_SECONDS = 900;

/** The wait after `failures` consecutive failures: base, 2 x base, 4 x base, ... up to the cap. */
export function backoffMs(failures: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  if (failures <= 0) return 0;
  // 2 ** 40 is already far past any cap; bounding the exponent keeps the arithmetic finite.
  return Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(failures - 1, 40));
}

/** A source nobody has run yet: due at once. */
export function initialSchedule(now: number): SourceSchedule {
  return { nextDueAt: now, failures: 0 };
}

export interface RunResult {
  outcome: SourceRunReport['outcome'];
  errorCode?: string;
  /** When the run started (before the lease) and ended. */
  startedAt: number;
  finishedAt: number;
  /** Minutes between polls of the source (its `pollMinutes`). */
  pollMinutes: number;
  /** POP3 LOGIN-DELAY the server announced, in seconds: no login before that long after this one. */
  loginDelaySeconds?: number;
  /** A `more` run was sent back to the queue at once, so the chain continues without the dispatcher. */
  requeued?: boolean;
}

/**
 * The schedule after a run, or undefined when the run changes nothing: `busy` (another run holds the source and
 * writes its own), `disabled`, a lost lease (the successor writes), or a run older than the one that last wrote.
 */
export function scheduleAfterRun(
  prev: SourceSchedule,
  run: RunResult,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): SourceSchedule | undefined {
  if (run.outcome === 'busy' || run.outcome === 'disabled') return undefined;
  // LEASE_LOST: another run took the source over; its outcome is the one that counts.
  if (run.outcome === 'failed' && run.errorCode === 'LEASE_LOST') return undefined;
  // A delayed write from an older run must not undo a newer run's schedule.
  if (prev.lastRunAt !== undefined && prev.lastRunAt > run.startedAt) return undefined;
  // POP3 LOGIN-DELAY (RFC 2449): the server refuses (and may count against the account) a login sooner than this.
  const loginAllowedAt = run.startedAt + (run.loginDelaySeconds ?? 0) * 1000;
  const base = {
    lastRunAt: run.startedAt,
    lastOutcome: run.outcome,
    ...(prev.dispatchedAt === undefined ? {} : { dispatchedAt: prev.dispatchedAt }),
  };
  if (run.outcome === 'failed') {
    const failures = prev.failures + 1;
    const nextDueAt = Math.max(run.finishedAt + backoffMs(failures, policy), loginAllowedAt);
    return {
      ...base,
      nextDueAt,
      failures,
      backoffUntil: nextDueAt,
      ...(run.errorCode === undefined ? {} : { lastErrorCode: run.errorCode }),
    };
  }
  if (run.outcome === 'more') {
    // Re-enqueued: the chain holds the claim while it runs. Not re-enqueued (the queue refused, or the login
    // delay is longer than a queue delay can be): due as soon as a login is allowed, for the dispatcher.
    const nextDueAt = run.requeued
      ? Math.max(run.finishedAt + DISPATCH_CLAIM_MS, loginAllowedAt)
      : Math.max(run.finishedAt, loginAllowedAt);
    return { ...base, nextDueAt, failures: 0 };
  }
  // ok, paused: the source's own interval, from the end of the run.
  return {
    ...base,
    nextDueAt: Math.max(run.finishedAt + run.pollMinutes * 60_000, loginAllowedAt),
    failures: 0,
  };
}

/** Why the dispatcher leaves a source alone this minute, or undefined when it sends it. */
export function notDispatchable(
  entry: { enabled: boolean; schedule: SourceSchedule },
  now: number,
): 'disabled' | 'backing-off' | 'not-due' | undefined {
  if (!entry.enabled) return 'disabled';
  if (entry.schedule.backoffUntil !== undefined && entry.schedule.backoffUntil > now) return 'backing-off';
  if (entry.schedule.nextDueAt > now) return 'not-due';
  return undefined;
}

/** The dispatcher's claim: not due again until the run it sent writes its own schedule, or the claim runs out. */
export function claimForDispatch(
  prev: SourceSchedule,
  now: number,
  claimMs: number = DISPATCH_CLAIM_MS,
): SourceSchedule {
  return { ...prev, nextDueAt: now + claimMs, dispatchedAt: now };
}

/**
 * The deadline handed to syncSource: the invocation's remaining time minus a margin for what follows the run
 * (the schedule write, a re-enqueue, the metrics), a fifth of the time left, between 250 ms and 10 s.
 */
export function syncDeadline(now: number, remainingMs: number): number {
  const margin = Math.min(10_000, Math.max(250, remainingMs / 5));
  return now + Math.max(0, remainingMs - margin);
}

/** Seconds of the POP3 `LOGIN-DELAY n` capability, when announced (`LOGIN-DELAY 900` or `LOGIN-DELAY 900 USER`). */
export function loginDelaySeconds(capabilities: readonly string[]): number | undefined {
  for (const c of capabilities) {
    const m = /^LOGIN-DELAY\s+(\d+)/i.exec(c);
    if (m) return Number(m[1]);
  }
  return undefined;
}
