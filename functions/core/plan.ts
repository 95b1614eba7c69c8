/**
 * `tributary plan`: what the next sync of a source would fetch, delete upstream and evict, and why. A dry run:
 * no lease, no write, IMAP folders opened with EXAMINE, a POP3 session ended without any DELE. It decides with
 * the same functions the sync uses (the folder planner, the inbox quota's cut, planPolicies).
 */
import { deletesUpstream } from './model';
import type { Source } from './model';
import { planImapFolder } from './planners';
import {
  describeInboxQuota,
  inboxFits,
  planPolicies,
  usableQuota,
  type InboxUsage,
  type UpstreamMessage,
} from './policies';
import {
  attachStored,
  checkImapCapabilities,
  currentValidity,
  requireUsage,
  scanImap,
  scanPop3,
} from './policy-run';
import { identifyPop3, type SyncDeps } from './sync';
import { identityKey } from './model';

export interface SourcePlan {
  sourceId: string;
  fetch: Array<{ identity: string; size: number }>;
  /** Messages left upstream because the inbox quota pauses the source. */
  leftByPause: number;
  deletes: Array<{ identity: string; size: number; policy: string; why: string }>;
  evictions: Array<{ identity: string; size: number; why: string }>;
  upstreamUsage?: { usedBytes: number; limitBytes: number; afterBytes?: number };
  inbox: { now: InboxUsage; after: InboxUsage };
  /** Intents left by an interrupted run, which the next sync resolves first. */
  pendingActions: number;
  notes: string[];
}

type PlanDeps = Pick<SyncDeps, 'connector' | 'index' | 'credentials' | 'clock'>;

export async function planSource(
  deps: PlanDeps,
  source: Source,
  options: { timeoutMs?: number } = {},
): Promise<SourcePlan> {
  const now = deps.clock.now();
  const password = await deps.credentials.password(source);
  const connect = { timeoutMs: options.timeoutMs ?? 30_000 };
  const inboxNow = await deps.index.inboxUsage(source.id);
  const pendingActions = (await deps.index.pendingActions(source.id)).length;
  const notes: string[] = [];
  let messages: UpstreamMessage[];
  let toFetch: UpstreamMessage[];
  let usage: { usedBytes: number; limitBytes: number } | undefined;

  if (source.protocol === 'imap') {
    const session = await deps.connector.openImap(source, password, connect);
    try {
      checkImapCapabilities(source, session.capabilities);
      const scan = await scanImap(session, source, currentValidity(deps.index, source.id));
      messages = scan.messages;
      await attachStored(deps.index, source.id, messages);
      toFetch = [];
      for (const folder of source.folders) {
        const status = scan.folders.get(folder)!;
        const plan = planImapFolder(await deps.index.getFolderState(source.id, folder), status);
        if (plan.kind === 'unchanged') continue;
        if (plan.kind === 'rematch')
          notes.push(
            `${folder}: ${plan.why}; messages matching a stored one are not fetched again, so this plan overstates what is fetched`,
          );
        const from = plan.kind === 'rematch' ? 1 : plan.fromUid;
        toFetch.push(
          ...messages
            .filter((m) => m.folder === folder && m.uid! >= from && !m.stored)
            .sort((a, b) => a.uid! - b.uid!),
        );
      }
      if (source.upstreamQuota || deletesUpstream(source)) usage = usableQuota(await session.quota());
      requireUsage(source, usage);
    } finally {
      await session.close().catch(() => undefined);
    }
  } else {
    const session = await deps.connector.openPop3(source, password, connect);
    try {
      const listing = await session.list();
      const ids = await identifyPop3(session, listing, () => true);
      const identities = new Map([...ids!].map(([n, id]) => [n, identityKey(id)]));
      messages = scanPop3(listing, identities);
      await attachStored(deps.index, source.id, messages);
      toFetch = messages.filter((m) => !m.stored);
      const capacity = source.upstreamQuota?.capacityBytes;
      if (capacity) usage = { usedBytes: listing.reduce((n, e) => n + e.size, 0), limitBytes: capacity };
      await session.quit();
    } catch (err) {
      session.abort();
      throw err;
    }
  }

  // The inbox quota's pause: the sync fetches the longest prefix that fits, in this same order.
  let inbox = { ...inboxNow };
  let fetchCount = toFetch.length;
  const cap = source.inboxQuota;
  if (cap?.onExceed === 'pause') {
    fetchCount = 0;
    while (fetchCount < toFetch.length && inboxFits(cap, inbox, toFetch[fetchCount]!.size)) {
      inbox = { messages: inbox.messages + 1, bytes: inbox.bytes + toFetch[fetchCount]!.size };
      fetchCount++;
    }
    if (fetchCount < toFetch.length)
      notes.push(
        `paused by the inbox quota (${describeInboxQuota(cap, inbox)}): ${toFetch.length - fetchCount} message(s) stay upstream, untouched`,
      );
  } else {
    for (const m of toFetch) inbox = { messages: inbox.messages + 1, bytes: inbox.bytes + m.size };
  }
  const fetched = toFetch.slice(0, fetchCount);
  // Once fetched they are committed: the policies see them as stored now.
  const fetchedAt = new Date(now).toISOString();
  for (const m of fetched) {
    m.stored = { identity: m.identity, key: '', size: m.size, sha256: '', fetchedAt, state: 'stored' };
  }
  const policy = planPolicies({ source, now, upstream: messages, usage, inbox });
  return {
    sourceId: source.id,
    fetch: fetched.map((m) => ({ identity: m.identity, size: m.size })),
    leftByPause: toFetch.length - fetchCount,
    deletes: policy.deletes.map((d) => ({
      identity: d.message.identity,
      size: d.message.size,
      policy: d.policy,
      why: d.why,
    })),
    evictions: policy.evictions.map((e) => ({
      identity: e.message.identity,
      size: e.message.stored.size,
      why: e.why,
    })),
    upstreamUsage: usage && { ...usage, afterBytes: source.upstreamQuota ? policy.usageAfter : undefined },
    inbox: { now: inboxNow, after: policy.inboxAfter },
    pendingActions,
    notes: [...notes, ...policy.notes],
  };
}
