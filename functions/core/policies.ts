/**
 * The per-source policies (docs/architecture.md, policies), decided as a pure function of what the server holds now, what
 * the store holds, the clock and the usage figures. The sync carries the decision out; `tributary plan` prints it.
 * Both call this same function, so the dry run says what the next sync does.
 */
import type { InboxQuotaPolicy, PolicyName, Source } from './model';

const DAY_MS = 24 * 60 * 60 * 1000;

/** The stored side of an upstream message: the committed item its identity maps to (itself, or an alias target). */
export interface StoredCopy {
  /** Identity of the message item holding the copy. */
  identity: string;
  key: string;
  size: number;
  sha256: string;
  /** ISO 8601: when Tributary committed it. */
  fetchedAt: string;
  /** `evicted`: the inbox quota removed the copy; the identity stays known so it is not fetched again. */
  state: 'stored' | 'evicted';
  deletedUpstreamAt?: string;
}

/** One message the server holds now, in the scope of the source (POP3 maildrop, or the configured IMAP folders). */
export interface UpstreamMessage {
  /** Its identity key (identityKey in model.ts). */
  identity: string;
  /** IMAP folder and UID; POP3 message number (this session only). */
  folder?: string;
  uid?: number;
  number?: number;
  size: number;
  /** Arrival order upstream, oldest first: IMAP INTERNALDATE (then folder order and UID), POP3 message number. */
  order: number;
  /** The committed copy, when there is one. */
  stored?: StoredCopy;
}

export interface PolicyInput {
  source: Pick<Source, 'retention' | 'upstreamQuota' | 'inboxQuota'>;
  now: number;
  upstream: UpstreamMessage[];
  /** Upstream usage, when the quota guard is on: IMAP GETQUOTAROOT, POP3 STAT octets against capacityBytes. */
  usage?: { usedBytes: number; limitBytes: number };
  /** What the source occupies in the store now. */
  inbox: InboxUsage;
}

export interface InboxUsage {
  messages: number;
  bytes: number;
}

export interface PlannedDelete {
  message: UpstreamMessage & { stored: StoredCopy };
  policy: PolicyName;
  why: string;
}

export interface PlannedEviction {
  message: UpstreamMessage & { stored: StoredCopy };
  why: string;
}

export interface PolicyPlan {
  deletes: PlannedDelete[];
  evictions: PlannedEviction[];
  /** Upstream usage expected after the deletes (when the quota guard reads usage). */
  usageAfter?: number;
  /** Inbox usage expected after the evictions. */
  inboxAfter: InboxUsage;
  /** What the policies could not do, in words for the status. */
  notes: string[];
}

function byOrder(a: UpstreamMessage, b: UpstreamMessage): number {
  return a.order - b.order;
}

function deletable(m: UpstreamMessage): m is UpstreamMessage & { stored: StoredCopy } {
  return m.stored?.state === 'stored';
}

function describeBytes(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${(n / 1024).toFixed(1)} KB`;
}

/**
 * A quota reading the guard may act on, or undefined. Some servers report a storage limit of 0 (meaning "none", or
 * a quota root without a storage resource): taken at its word, every committed message would be over quota and
 * deleted upstream. A limit that is not a positive number, or a usage that is not a number, is no usable quota.
 */
export function usableQuota(
  reading: { usedBytes: number; limitBytes: number } | undefined,
): { usedBytes: number; limitBytes: number } | undefined {
  if (!reading) return undefined;
  const { usedBytes, limitBytes } = reading;
  if (!Number.isFinite(limitBytes) || limitBytes <= 0) return undefined;
  if (!Number.isFinite(usedBytes) || usedBytes < 0) return undefined;
  return { usedBytes, limitBytes };
}

/** Whether the inbox, at `usage`, is over the policy's limits. */
export function inboxOver(policy: InboxQuotaPolicy, usage: InboxUsage): boolean {
  return (
    (policy.maxMessages !== undefined && usage.messages > policy.maxMessages) ||
    (policy.maxBytes !== undefined && usage.bytes > policy.maxBytes)
  );
}

/** Whether one more message of `size` bytes fits under the inbox quota. */
export function inboxFits(policy: InboxQuotaPolicy, usage: InboxUsage, size: number): boolean {
  return !inboxOver(policy, { messages: usage.messages + 1, bytes: usage.bytes + size });
}

export function describeInboxQuota(policy: InboxQuotaPolicy, usage: InboxUsage): string {
  const limits = [
    policy.maxMessages !== undefined ? `${usage.messages} of ${policy.maxMessages} messages` : undefined,
    policy.maxBytes !== undefined
      ? `${describeBytes(usage.bytes)} of ${describeBytes(policy.maxBytes)}`
      : undefined,
  ].filter(Boolean);
  return limits.join(', ');
}

/**
 * Decides every destructive action of one run. Only committed copies are candidates (a message the store does not
 * hold is never deleted upstream, an evicted copy never counts as held), the oldest go first, and an eviction only
 * takes a copy that stays upstream after this plan.
 */
export function planPolicies(input: PolicyInput): PolicyPlan {
  const { source, now } = input;
  const notes: string[] = [];
  const deletes: PlannedDelete[] = [];
  const chosen = new Set<string>();
  const candidates = input.upstream.filter(deletable).sort(byOrder);

  const retention = source.retention;
  if (retention.mode === 'delete-on-retrieve') {
    for (const m of candidates) {
      deletes.push({ message: m, policy: 'delete-on-retrieve', why: 'committed to the store' });
      chosen.add(m.identity);
    }
  } else if (retention.mode === 'delete-after-days') {
    for (const m of candidates) {
      const age = now - Date.parse(m.stored.fetchedAt);
      if (age >= retention.days * DAY_MS) {
        deletes.push({
          message: m,
          policy: 'delete-after-days',
          why: `committed ${Math.floor(age / DAY_MS)} days ago (keep ${retention.days} days)`,
        });
        chosen.add(m.identity);
      }
    }
  }

  let usageAfter: number | undefined;
  const quota = source.upstreamQuota;
  const reading = usableQuota(input.usage);
  if (quota && reading) {
    const { usedBytes, limitBytes } = reading;
    let used = usedBytes - deletes.reduce((n, d) => n + d.message.size, 0);
    const max = (limitBytes * quota.maxUsagePercent) / 100;
    const target = (limitBytes * quota.targetPercent) / 100;
    if (usedBytes > max && used > target) {
      for (const m of candidates) {
        if (used <= target) break;
        if (chosen.has(m.identity)) continue;
        const percent = ((used / limitBytes) * 100).toFixed(1);
        deletes.push({
          message: m,
          policy: 'upstream-quota',
          why: `upstream at ${percent}% (over ${quota.maxUsagePercent}%, down to ${quota.targetPercent}%): oldest committed`,
        });
        chosen.add(m.identity);
        used -= m.size;
      }
      if (used > target) {
        notes.push(
          `upstream quota: cannot reach ${quota.targetPercent}% (${describeBytes(used)} of ${describeBytes(limitBytes)} would remain): the rest is mail Tributary has not committed or does not read`,
        );
      }
    }
    usageAfter = used;
  }

  const evictions: PlannedEviction[] = [];
  let inboxAfter = { ...input.inbox };
  const cap = source.inboxQuota;
  if (cap?.onExceed === 'evict-oldest' && inboxOver(cap, inboxAfter)) {
    // A copy may go only if the message stays upstream: not one this plan deletes, not one already gone.
    for (const m of candidates) {
      if (!inboxOver(cap, inboxAfter)) break;
      if (chosen.has(m.identity)) continue;
      evictions.push({
        message: m,
        why: `inbox quota (${describeInboxQuota(cap, inboxAfter)}): oldest copy still upstream`,
      });
      inboxAfter = { messages: inboxAfter.messages - 1, bytes: inboxAfter.bytes - m.stored.size };
    }
    if (inboxOver(cap, inboxAfter)) {
      notes.push(
        `inbox quota: still over (${describeInboxQuota(cap, inboxAfter)}): every other stored copy exists nowhere else upstream, so none is evicted`,
      );
    }
  }
  return { deletes, evictions, usageAfter, inboxAfter, notes };
}
