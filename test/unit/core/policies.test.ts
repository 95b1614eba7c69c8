import type { Source } from '../../../functions/core/model';
import { checkImapCapabilities } from '../../../functions/core/policy-run';
import {
  inboxFits,
  planPolicies,
  usableQuota,
  type PolicyInput,
  type UpstreamMessage,
} from '../../../functions/core/policies';

const DAY = 24 * 60 * 60 * 1000;
const NOW = Date.parse('2026-06-30T12:00:00Z');

/** `n` upstream messages of `size` bytes, the first `stored` of them committed, committed `ageDays` ago. */
function mailbox(
  n: number,
  opts: { size?: number; stored?: number; ageDays?: (i: number) => number } = {},
): UpstreamMessage[] {
  const size = opts.size ?? 1000;
  return Array.from({ length: n }, (_, i) => ({
    identity: `pop3#m${i}`,
    number: i + 1,
    size,
    order: i,
    stored:
      i < (opts.stored ?? n)
        ? {
            identity: `pop3#m${i}`,
            key: `raw/s/${i}.eml`,
            size,
            sha256: 'x',
            fetchedAt: new Date(NOW - (opts.ageDays?.(i) ?? 0) * DAY).toISOString(),
            state: 'stored' as const,
          }
        : undefined,
  }));
}

function input(source: Partial<Source>, upstream: UpstreamMessage[], extra: Partial<PolicyInput> = {}) {
  return {
    source: { retention: { mode: 'keep' as const }, ...source },
    now: NOW,
    upstream,
    inbox: { messages: 0, bytes: 0 },
    ...extra,
  };
}

const ids = (list: Array<{ message: UpstreamMessage }>) => list.map((d) => d.message.identity);

describe('planPolicies', () => {
  it('keep with no quota decides nothing', () => {
    const plan = planPolicies(input({}, mailbox(5)));
    expect(plan.deletes).toEqual([]);
    expect(plan.evictions).toEqual([]);
  });

  it('delete-on-retrieve deletes every committed message and none that is not', () => {
    const plan = planPolicies(
      input({ retention: { mode: 'delete-on-retrieve' } }, mailbox(5, { stored: 3 })),
    );
    expect(ids(plan.deletes)).toEqual(['pop3#m0', 'pop3#m1', 'pop3#m2']);
    expect(plan.deletes.every((d) => d.policy === 'delete-on-retrieve')).toBe(true);
  });

  it('never counts an evicted copy as held', () => {
    const up = mailbox(2);
    up[0]!.stored!.state = 'evicted';
    const plan = planPolicies(input({ retention: { mode: 'delete-on-retrieve' } }, up));
    expect(ids(plan.deletes)).toEqual(['pop3#m1']);
  });

  it('delete-after-days deletes exactly those committed N days ago or more', () => {
    const up = mailbox(6, { ageDays: (i) => [0, 6.9, 7, 7.1, 30, 1][i]! });
    const plan = planPolicies(input({ retention: { mode: 'delete-after-days', days: 7 } }, up));
    expect(ids(plan.deletes)).toEqual(['pop3#m2', 'pop3#m3', 'pop3#m4']);
    expect(plan.deletes[2]!.why).toContain('committed 30 days ago');
  });

  describe('upstream quota', () => {
    const quota = { upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 } };

    it('does nothing at or under the maximum', () => {
      const plan = planPolicies(
        input(quota, mailbox(10), { usage: { usedBytes: 9000, limitBytes: 10_000 } }),
      );
      expect(plan.deletes).toEqual([]);
      expect(plan.usageAfter).toBe(9000);
    });

    it('above the maximum deletes the oldest committed until at or under the target', () => {
      const up = mailbox(10).reverse(); // order, not position, decides
      const plan = planPolicies(input(quota, up, { usage: { usedBytes: 9500, limitBytes: 10_000 } }));
      expect(ids(plan.deletes)).toEqual(['pop3#m0', 'pop3#m1']);
      expect(plan.usageAfter).toBe(7500);
      expect(plan.deletes.every((d) => d.policy === 'upstream-quota')).toBe(true);
    });

    it('skips what is not committed and says when the target cannot be reached', () => {
      const plan = planPolicies(
        input(quota, mailbox(10, { stored: 1 }), { usage: { usedBytes: 9500, limitBytes: 10_000 } }),
      );
      expect(ids(plan.deletes)).toEqual(['pop3#m0']);
      expect(plan.notes.join()).toMatch(/cannot reach 75%/);
    });

    it('deletes nothing when the server reports a limit of 0 or a usage that is no number', () => {
      for (const usage of [
        { usedBytes: 9500, limitBytes: 0 },
        { usedBytes: 9500, limitBytes: -1 },
        { usedBytes: Number.NaN, limitBytes: 10_000 },
        { usedBytes: 9500, limitBytes: Number.POSITIVE_INFINITY },
      ]) {
        const plan = planPolicies(input(quota, mailbox(10), { usage }));
        expect(plan.deletes).toEqual([]);
        expect(usableQuota(usage)).toBeUndefined();
      }
      expect(usableQuota({ usedBytes: 0, limitBytes: 1 })).toEqual({ usedBytes: 0, limitBytes: 1 });
    });

    it('counts retention deletes first and does not delete twice', () => {
      const plan = planPolicies(
        input(
          { ...quota, retention: { mode: 'delete-after-days', days: 7 } },
          mailbox(10, { ageDays: (i) => (i === 5 ? 8 : 0) }),
          { usage: { usedBytes: 9500, limitBytes: 10_000 } },
        ),
      );
      expect(ids(plan.deletes)).toEqual(['pop3#m5', 'pop3#m0']);
      expect(plan.usageAfter).toBe(7500);
    });
  });

  describe('inbox quota', () => {
    it('evict-oldest evicts the oldest copies still upstream until under the limits', () => {
      const plan = planPolicies(
        input({ inboxQuota: { maxMessages: 7, onExceed: 'evict-oldest' } }, mailbox(10), {
          inbox: { messages: 10, bytes: 10_000 },
        }),
      );
      expect(ids(plan.evictions)).toEqual(['pop3#m0', 'pop3#m1', 'pop3#m2']);
      expect(plan.inboxAfter).toEqual({ messages: 7, bytes: 7000 });
    });

    it('never evicts a copy that exists nowhere else', () => {
      // 10 stored, only 2 of them still upstream; one of those is deleted upstream by the retention.
      const plan = planPolicies(
        input(
          {
            retention: { mode: 'delete-after-days', days: 7 },
            inboxQuota: { maxBytes: 5000, onExceed: 'evict-oldest' },
          },
          mailbox(2, { ageDays: (i) => (i === 0 ? 10 : 0) }),
          { inbox: { messages: 10, bytes: 10_000 } },
        ),
      );
      expect(ids(plan.deletes)).toEqual(['pop3#m0']);
      expect(ids(plan.evictions)).toEqual(['pop3#m1']);
      expect(plan.notes.join()).toMatch(/inbox quota: still over/);
    });

    it('pause never evicts', () => {
      const plan = planPolicies(
        input({ inboxQuota: { maxMessages: 1, onExceed: 'pause' } }, mailbox(3), {
          inbox: { messages: 3, bytes: 3000 },
        }),
      );
      expect(plan.evictions).toEqual([]);
    });

    it('inboxFits checks both limits', () => {
      const cap = { maxMessages: 3, maxBytes: 3000, onExceed: 'pause' as const };
      expect(inboxFits(cap, { messages: 2, bytes: 1000 }, 2000)).toBe(true);
      expect(inboxFits(cap, { messages: 2, bytes: 1000 }, 2001)).toBe(false);
      expect(inboxFits(cap, { messages: 3, bytes: 0 }, 1)).toBe(false);
    });
  });
});

describe('checkImapCapabilities', () => {
  const source = {
    id: 'work',
    host: 'imap.example.com',
    retention: { mode: 'keep' },
  } as unknown as Source;
  const all = new Set(['UIDPLUS', 'QUOTA']);

  it('lets a keep source read any server', () => {
    expect(() => checkImapCapabilities(source, new Set())).not.toThrow();
  });

  it('refuses a deleting policy without UIDPLUS, before anything is fetched', () => {
    for (const s of [
      { ...source, retention: { mode: 'delete-on-retrieve' } },
      { ...source, upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 } },
    ] as Source[]) {
      let error: unknown;
      try {
        checkImapCapabilities(s, new Set(['QUOTA']));
      } catch (err) {
        error = err;
      }
      expect(error).toMatchObject({
        code: 'CAPABILITY_MISSING',
        message: expect.stringMatching(/no UIDPLUS/),
      });
      expect(() => checkImapCapabilities(s, all)).not.toThrow();
    }
  });

  it('refuses the upstream quota on a server that cannot report usage', () => {
    const s = { ...source, upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 } } as Source;
    expect(() => checkImapCapabilities(s, new Set(['UIDPLUS']))).toThrow(/does not report storage usage/);
  });
});
