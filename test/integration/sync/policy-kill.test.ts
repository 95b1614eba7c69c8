import type { AuditRecord, Source } from '../../../functions/core/model';
import type { SyncStep } from '../../../functions/core/policy-run';
import { spawnChildSync } from '../../support/child-sync';
import { MailLab } from '../../support/mail-lab';
import { STORE_KINDS, TestTributary } from '../../support/tributary';
import { serverState, sha256 } from '../../support/upstream';

/**
 * A sync killed (SIGKILL, in its own process) at each step of the policies' durable order, then synced to
 * quiescence: every upstream deletion has its audit record and its stored copy; nothing is lost or stored twice.
 * On both stores: DynamoDB Local and s3rver, and the embedded store (the child and this process on one data folder).
 */
const lab = MailLab.fromEnv();

function mail(i: number, tag: string): string {
  return (
    `From: s${i}@example.org\r\nTo: me@example.org\r\nSubject: ${tag} ${i}\r\nMessage-ID: <${tag}.${i}@example.org>\r\n` +
    `Date: ${new Date(Date.UTC(2026, 1, 1, 0, i)).toUTCString().replace('GMT', '+0000')}\r\n\r\n` +
    `${tag} body ${i}\r\n`.repeat(60)
  );
}

type Policy = Pick<Source, 'retention' | 'upstreamQuota' | 'inboxQuota'>;

const deleteOnRetrieve: Policy = { retention: { mode: 'delete-on-retrieve' } };

const scenarios: Array<[string, 'imap' | 'pop3', Policy, `${SyncStep}${'' | `:${number}`}`]> = [
  ['pop3 delete-on-retrieve, between S3 and DynamoDB', 'pop3', deleteOnRetrieve, 'stored:4'],
  ['pop3 delete-on-retrieve, after the audit intent', 'pop3', deleteOnRetrieve, 'intent-written'],
  ['pop3 delete-on-retrieve, between DELE and QUIT', 'pop3', deleteOnRetrieve, 'dele-sent'],
  ['pop3 delete-on-retrieve, between the delete and its audit', 'pop3', deleteOnRetrieve, 'upstream-deleted'],
  ['imap delete-on-retrieve, between S3 and DynamoDB', 'imap', deleteOnRetrieve, 'stored:4'],
  ['imap delete-on-retrieve, after the audit intent', 'imap', deleteOnRetrieve, 'intent-written'],
  ['imap delete-on-retrieve, between the delete and its audit', 'imap', deleteOnRetrieve, 'upstream-deleted'],
  [
    'imap evict-oldest, between the tombstone and the object delete',
    'imap',
    { retention: { mode: 'keep' }, inboxQuota: { maxMessages: 5, onExceed: 'evict-oldest' } },
    'evicted-item:2',
  ],
  [
    'pop3 evict-oldest, between the object delete and its audit',
    'pop3',
    { retention: { mode: 'keep' }, inboxQuota: { maxMessages: 5, onExceed: 'evict-oldest' } },
    'evicted-object',
  ],
];

async function auditOf(t: TestTributary, sourceId: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of t.index.auditTrail(sourceId)) out.push(r);
  return out;
}

describe.each(STORE_KINDS)('policies under SIGKILL (%s store)', (kind) => {
  const t = new TestTributary(lab, { store: kind });
  afterAll(() => t.close());

  it.each(scenarios)('%s', async (name, protocol, policy, killAt) => {
    const user = lab.createUser('pk');
    for (let i = 0; i < 8; i++) lab.deliver(user, mail(i, name.slice(0, 4)));
    const original = await serverState(lab, user);
    const source = t.source(user, protocol, 'implicit', policy);

    const { exited } = spawnChildSync(source, user.password, { leaseMs: 1000, killAt, store: t.storeSpec });
    const exit = await exited;
    expect(exit.signal).toBe('SIGKILL'); // the run did reach the step

    // Sync to quiescence (the dead run's lease expires within a second).
    for (let round = 0; round < 10; round++) {
      const r = await t.sync(source);
      if (r.outcome === 'busy') {
        await new Promise((res) => setTimeout(res, 300));
        continue;
      }
      expect(r.outcome).toBe('ok');
      if (!r.fetched && !r.deletedUpstream && !r.evicted) break;
    }

    const upstream = new Set((await serverState(lab, user)).messages.map((m) => m.sha256));
    const storedCount = new Map<string, number>();
    for (const m of await t.stored(source.id)) {
      const sha = sha256(await t.bytes(m.object.key));
      expect(sha).toBe(m.object.sha256);
      storedCount.set(sha, (storedCount.get(sha) ?? 0) + 1);
    }
    const trail = await auditOf(t, source.id);
    const auditedDeletes = new Set(
      trail.filter((r) => r.action === 'delete-upstream' && r.state === 'done').map((r) => r.object.sha256),
    );
    const evicted = new Set(
      trail.filter((r) => r.action === 'evict' && r.state === 'done').map((r) => r.object.sha256),
    );
    let lost = 0;
    let wronglyDeleted = 0;
    for (const m of original.messages) {
      const isUpstream = upstream.has(m.sha256);
      const isStored = storedCount.has(m.sha256);
      if (!isUpstream && !isStored) lost++;
      if (!isUpstream && (!isStored || !auditedDeletes.has(m.sha256))) wronglyDeleted++;
    }
    const duplicated = [...storedCount.values()].reduce((n, c) => n + c - 1, 0);
    console.log(
      `[reliability] policy-kill ${kind === 'embedded' ? '(embedded store) ' : ''}${name} (killed at ${killAt}): lost ${lost}, duplicated ${duplicated}, wrongly deleted ${wronglyDeleted}, evicted ${evicted.size}`,
    );
    expect({ lost, duplicated, wronglyDeleted }).toEqual({ lost: 0, duplicated: 0, wronglyDeleted: 0 });
    expect(await t.index.pendingActions(source.id)).toEqual([]);
    for (const sha of evicted) expect(upstream.has(sha)).toBe(true);
    if (policy.retention.mode === 'delete-on-retrieve') {
      expect(upstream.size).toBe(0);
      expect(storedCount.size).toBe(8);
    } else {
      expect(upstream.size).toBe(8);
      expect(storedCount.size).toBe(5);
    }
  });
});
