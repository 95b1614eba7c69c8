import {
  backoffMs,
  claimForDispatch,
  DISPATCH_CLAIM_MS,
  loginDelaySeconds,
  notDispatchable,
  scheduleAfterRun,
  syncDeadline,
  type RunResult,
  type SourceSchedule,
} from '../../../functions/core/schedule';

const MIN = 60_000;
const T = Date.UTC(2026, 0, 1);

describe('backoffMs', () => {
  it.each([
    [0, 0],
    [1, 1 * MIN],
    [2, 2 * MIN],
    [3, 4 * MIN],
    [6, 32 * MIN],
    [7, 60 * MIN], // 64 minutes, capped
    [50, 60 * MIN],
    [10_000, 60 * MIN], // no overflow to Infinity or NaN
  ])('after %i failures waits %i ms', (failures, expected) => {
    expect(backoffMs(failures)).toBe(expected);
  });

  it('follows the policy it is given', () => {
    expect(backoffMs(3, { baseMs: 1000, capMs: 3000 })).toBe(3000);
    expect(backoffMs(2, { baseMs: 1000, capMs: 3000 })).toBe(2000);
  });
});

describe('scheduleAfterRun', () => {
  const fresh: SourceSchedule = { nextDueAt: T, failures: 0 };
  const run = (over: Partial<RunResult>): RunResult => ({
    outcome: 'ok',
    startedAt: T,
    finishedAt: T + 10_000,
    pollMinutes: 5,
    ...over,
  });

  it.each<[string, SourceSchedule, Partial<RunResult>, Partial<SourceSchedule> | undefined]>([
    // success: the source's own interval, from the end of the run; failures and back-off forgotten
    ['ok: poll interval after the run', fresh, {}, { nextDueAt: T + 10_000 + 5 * MIN, failures: 0 }],
    [
      'ok after failures: the count starts over, no back-off',
      { nextDueAt: T, failures: 4, backoffUntil: T, lastErrorCode: 'TIMEOUT' },
      {},
      { nextDueAt: T + 10_000 + 5 * MIN, failures: 0, backoffUntil: undefined, lastErrorCode: undefined },
    ],
    [
      'paused: like ok (the inbox quota is checked again next poll)',
      fresh,
      { outcome: 'paused' },
      { nextDueAt: T + 10_000 + 5 * MIN },
    ],
    // failure: exponential back-off from the end of the run
    [
      'first failure: one minute',
      fresh,
      { outcome: 'failed', errorCode: 'AUTH_FAILED' },
      {
        nextDueAt: T + 10_000 + MIN,
        backoffUntil: T + 10_000 + MIN,
        failures: 1,
        lastErrorCode: 'AUTH_FAILED',
      },
    ],
    [
      'fourth failure: eight minutes',
      { nextDueAt: T, failures: 3 },
      { outcome: 'failed', errorCode: 'TIMEOUT' },
      { nextDueAt: T + 10_000 + 8 * MIN, failures: 4 },
    ],
    [
      'many failures: capped at one hour',
      { nextDueAt: T, failures: 30 },
      { outcome: 'failed', errorCode: 'TIMEOUT' },
      { nextDueAt: T + 10_000 + 60 * MIN, failures: 31 },
    ],
    // more: re-enqueued runs keep the claim; not re-enqueued, due at once for the dispatcher
    [
      'more, re-enqueued: claimed while the chain runs',
      fresh,
      { outcome: 'more', requeued: true },
      { nextDueAt: T + 10_000 + DISPATCH_CLAIM_MS, failures: 0 },
    ],
    [
      'more, not re-enqueued: due at once',
      fresh,
      { outcome: 'more', requeued: false },
      { nextDueAt: T + 10_000 },
    ],
    // POP3 LOGIN-DELAY: never due before a login is allowed again
    [
      'LOGIN-DELAY longer than the interval wins',
      fresh,
      { loginDelaySeconds: 3600 },
      { nextDueAt: T + 3600_000 },
    ],
    [
      'LOGIN-DELAY shorter than the interval changes nothing',
      fresh,
      { loginDelaySeconds: 60 },
      { nextDueAt: T + 10_000 + 5 * MIN },
    ],
    [
      'LOGIN-DELAY longer than the back-off wins',
      fresh,
      { outcome: 'failed', errorCode: 'TIMEOUT', loginDelaySeconds: 900 },
      { nextDueAt: T + 900_000, backoffUntil: T + 900_000 },
    ],
    [
      'more with LOGIN-DELAY, not re-enqueued: due when a login is allowed',
      fresh,
      { outcome: 'more', loginDelaySeconds: 1800 },
      { nextDueAt: T + 1800_000 },
    ],
    // runs that change nothing
    ['busy: another run writes its own', fresh, { outcome: 'busy' }, undefined],
    ['disabled', fresh, { outcome: 'disabled' }, undefined],
    ['lease lost: the successor writes', fresh, { outcome: 'failed', errorCode: 'LEASE_LOST' }, undefined],
    [
      'an older run written late does not undo a newer one',
      { nextDueAt: T + 5 * MIN, failures: 0, lastRunAt: T + 1000 },
      { outcome: 'failed', errorCode: 'TIMEOUT' },
      undefined,
    ],
  ])('%s', (_name, prev, over, expected) => {
    const next = scheduleAfterRun(prev, run(over));
    if (expected === undefined) {
      expect(next).toBeUndefined();
      return;
    }
    expect(next).toBeDefined();
    for (const [k, v] of Object.entries(expected)) expect(next![k as keyof SourceSchedule]).toBe(v);
    expect(next!.lastRunAt).toBe(T);
    expect(next!.lastOutcome).toBe(over.outcome ?? 'ok');
  });

  it('keeps when the dispatcher last sent the source', () => {
    const next = scheduleAfterRun({ nextDueAt: T, failures: 0, dispatchedAt: T - 5 }, run({}));
    expect(next?.dispatchedAt).toBe(T - 5);
  });
});

describe('notDispatchable', () => {
  const now = T;
  it.each<[string, boolean, SourceSchedule, ReturnType<typeof notDispatchable>]>([
    ['due now', true, { nextDueAt: now, failures: 0 }, undefined],
    ['overdue', true, { nextDueAt: now - MIN, failures: 0 }, undefined],
    ['due later', true, { nextDueAt: now + 1, failures: 0 }, 'not-due'],
    ['disabled, though due', false, { nextDueAt: now - MIN, failures: 0 }, 'disabled'],
    [
      'backing off, though due by time',
      true,
      { nextDueAt: now - MIN, failures: 2, backoffUntil: now + MIN },
      'backing-off',
    ],
    ['back-off over', true, { nextDueAt: now - MIN, failures: 2, backoffUntil: now - 1 }, undefined],
  ])('%s', (_name, enabled, schedule, expected) => {
    expect(notDispatchable({ enabled, schedule }, now)).toBe(expected);
  });
});

describe('claimForDispatch', () => {
  it('makes the source not due until the claim runs out, and keeps the rest', () => {
    const claimed = claimForDispatch({ nextDueAt: T - MIN, failures: 2, lastOutcome: 'failed' }, T);
    expect(claimed).toEqual({
      nextDueAt: T + DISPATCH_CLAIM_MS,
      failures: 2,
      lastOutcome: 'failed',
      dispatchedAt: T,
    });
    expect(notDispatchable({ enabled: true, schedule: claimed }, T + DISPATCH_CLAIM_MS - 1)).toBe('not-due');
  });
});

describe('syncDeadline', () => {
  it.each([
    // remaining ms -> budget ms: a fifth kept back, at least 250 ms, at most 10 s
    [900_000, 890_000],
    [30_000, 24_000],
    [3000, 2400],
    [1000, 750],
    [200, 0],
    [0, 0],
  ])('with %i ms left runs %i ms', (remaining, budget) => {
    expect(syncDeadline(T, remaining) - T).toBe(budget);
  });
});

describe('loginDelaySeconds', () => {
  it.each<[string[], number | undefined]>([
    [['UIDL', 'TOP'], undefined],
    [[], undefined],
    [['LOGIN-DELAY 900'], 900],
    [['UIDL', 'LOGIN-DELAY 300 USER'], 300],
    [['LOGIN-DELAY'], undefined],
  ])('%j -> %s', (caps, expected) => {
    expect(loginDelaySeconds(caps)).toBe(expected);
  });
});
