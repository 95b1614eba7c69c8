import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Source, SourceRunReport } from '../../../functions/core/model';
import { bulkCorpus } from '../../support/corpus';
import { uniform } from '../../support/fault-proxy';
import { countUnhandledRejections, makeLanes, syncToQuiescence, type Lane } from '../../support/fault-lanes';
import { MailLab } from '../../support/mail-lab';
import type { Reconciliation } from '../../support/reconciler';
import { StorageFaults } from '../../support/storage-fault';
import { TestTributary } from '../../support/tributary';
import { sha256 } from '../../support/upstream';

/**
 * S3 and DynamoDB failing under the sync, injected into the real SDK clients (test/support/storage-fault.ts): 500s,
 * throttling, and the ambiguous write (applied, its answer lost), both where the SDK retries them and where
 * Tributary sees them. IMAP and POP3, keep and delete-on-retrieve, mail arriving meanwhile; then a clean resync:
 * nothing lost, nothing stored twice, nothing deleted upstream without its committed and intact copy, the per-source
 * counters equal to the items, every object byte-exact, no orphan object.
 */
const lab = MailLab.fromEnv();
/** The clean side: the resync, and every check. */
const t = new TestTributary(lab);
/** The sync under faults: its own clients, with the faults attached. */
const f = new TestTributary(lab);
const SYNCS = Number(process.env.TRIBUTARY_STORAGE_SYNCS ?? (process.env.TRIBUTARY_TORTURE ? 120 : 16));
const RATE = Number(process.env.TRIBUTARY_STORAGE_FAULT_RATE ?? 0.08);
const LEASE_MS = 1500;
const faults = new StorageFaults({ seed: 4242, rate: 0 }).attach(f.clients);
afterAll(() => {
  t.close();
  f.close();
});

const unhandled = countUnhandledRejections();

/** What the index says the source holds against what it holds: counters, objects, deleted-upstream copies. */
async function storeChecks(source: Source) {
  const stored = await t.stored(source.id);
  const summary = await t.index.summary(source.id);
  let wrongSize = 0;
  for (const m of stored) if ((await t.bytes(m.object.key)).length !== m.object.size) wrongSize++;
  const listed = await t.clients.s3.send(
    new ListObjectsV2Command({ Bucket: t.bucket, Prefix: `raw/${source.id}/` }),
  );
  const keys = new Set(stored.map((m) => m.object.key));
  const orphans = (listed.Contents ?? []).filter((o) => !keys.has(o.Key!)).length;
  // Every delete the audit trail calls done: its message is committed, and its object holds the audited bytes.
  let deletedWithoutIntactCopy = 0;
  let deletesDone = 0;
  for await (const r of t.index.auditTrail(source.id)) {
    if (r.action !== 'delete-upstream' || r.state !== 'done') continue;
    deletesDone++;
    const copy = (await t.index.lookup(source.id, [r.target])).get(r.target);
    const intact =
      copy?.state === 'stored' &&
      copy.sha256 === r.object.sha256 &&
      sha256(await t.bytes(copy.key)) === r.object.sha256;
    if (!intact) deletedWithoutIntactCopy++;
  }
  return {
    counters: { messages: summary.messages, bytes: summary.bytes },
    items: { messages: stored.length, bytes: stored.reduce((n, m) => n + m.object.size, 0) },
    wrongSize,
    orphans,
    deletesDone,
    deletedWithoutIntactCopy,
  };
}

describe('syncs while S3 and DynamoDB fail', () => {
  it(
    `${SYNCS} syncs per source under random 500s, throttling and ambiguous writes: 0 lost, 0 duplicated, 0 wrongly deleted, exact counters and objects`,
    async () => {
      let seed = 31_000;
      const lanes = await makeLanes(lab, f, 'sf', (user) => {
        for (const m of bulkCorpus(30, seed++, { maxBytes: 20_000, attachmentRatio: 0.1 }))
          lab.deliver(user, m.raw);
      });
      for (const lane of lanes) t.passwords.set(lane.source.id, lane.user.password);

      const random = uniform(77);
      const outcomes: Record<string, number> = {};
      const threw: string[] = [];
      const errors = new Set<string>();
      faults.rate = RATE;
      try {
        for (let i = 0; i < SYNCS * lanes.length; i++) {
          const lane = lanes[i % lanes.length]!;
          if (random() < 0.3) {
            for (const m of bulkCorpus(1 + Math.floor(random() * 3), 90_000 + i, { maxBytes: 15_000 })) {
              lab.deliver(lane.user, m.raw);
              lane.reconciler.appended(m.raw);
            }
          }
          let report: SourceRunReport;
          try {
            report = await f.sync(lane.source, {
              deadline: Date.now() + 20_000,
              timeoutMs: 5_000,
              leaseTtlMs: LEASE_MS,
            });
          } catch (err) {
            // syncSource is meant to answer with a report; what it threw instead is reported (see the lease test).
            threw.push(String(err).slice(0, 160));
            outcomes.threw = (outcomes.threw ?? 0) + 1;
            await new Promise((r) => setTimeout(r, LEASE_MS + 100));
            continue;
          }
          const key = report.error ? `${report.outcome} ${report.error.code}` : report.outcome;
          outcomes[key] = (outcomes[key] ?? 0) + 1;
          if (report.error)
            errors.add(
              `${report.error.code}: ${report.error.message.replace(/[0-9a-f]{10}/g, '…').slice(0, 140)}`,
            );
          // A lease whose acquisition or release lost its answer is held until it expires.
          if (report.outcome === 'busy') await new Promise((r) => setTimeout(r, LEASE_MS + 100));
        }
      } finally {
        faults.rate = 0;
      }

      const results: Array<{
        lane: Lane;
        result: Reconciliation;
        checks: Awaited<ReturnType<typeof storeChecks>>;
      }> = [];
      for (const lane of lanes) {
        // Storage is healthy again: sync to quiescence (a lease of a failed run may still need to expire).
        await syncToQuiescence(t, lane.source, { leaseTtlMs: LEASE_MS });
        expect(await t.index.pendingActions(lane.source.id)).toEqual([]);
        const result = await lane.reconciler.finish(t, lane.source.id);
        const checks = await storeChecks(lane.source);
        results.push({ lane, result, checks });
        console.log(
          `[reliability] storage ${lane.name}: expected ${result.expected}, stored ${result.stored}, upstream ${result.upstream}: lost ${result.lost}, duplicated ${result.duplicated}, wrongly deleted ${result.wronglyDeleted}, corrupt ${result.corrupt}, unfetched ${result.unfetched}; counters ${checks.counters.messages}/${checks.counters.bytes} B for ${checks.items.messages} items/${checks.items.bytes} B; wrong size ${checks.wrongSize}, orphan objects ${checks.orphans}; ${checks.deletesDone} deletes done, ${checks.deletedWithoutIntactCopy} without a committed intact copy`,
        );
      }
      const byFault = (['server-error', 'throttle', 'ambiguous'] as const)
        .map((k) => `${k} ${faults.total(k)}`)
        .join(', ');
      const ambiguousCommits = Object.entries(faults.counts)
        .filter(([k]) => k.startsWith('dynamodb TransactWriteItemsCommand ambiguous'))
        .reduce((n, [, c]) => n + c, 0);
      console.log(
        `[reliability] storage: ${SYNCS * lanes.length} syncs at a fault rate of ${RATE}; ${faults.total()} faults injected (${byFault}; ${ambiguousCommits} ambiguous TransactWriteItems); outcomes ${JSON.stringify(outcomes)}; unhandled rejections ${unhandled()}`,
      );
      if (threw.length)
        console.log(`syncs that threw instead of reporting:\n${[...new Set(threw)].join('\n')}`);
      console.log(`errors the failed syncs reported:\n${[...errors].join('\n')}`);
      console.log(`faults injected: ${JSON.stringify(faults.counts, null, 1)}`);

      for (const { result, checks } of results) {
        expect(result).toMatchObject({ lost: 0, duplicated: 0, wronglyDeleted: 0, corrupt: 0, unfetched: 0 });
        expect(checks.counters).toEqual(checks.items);
        expect({ wrongSize: checks.wrongSize, orphans: checks.orphans }).toEqual({
          wrongSize: 0,
          orphans: 0,
        });
        expect(checks.deletedWithoutIntactCopy).toBe(0);
      }
      expect(unhandled()).toBe(0);
      // The faults did happen, of every kind, and some syncs got through them; the deleting lanes did delete.
      for (const k of ['server-error', 'throttle', 'ambiguous'] as const)
        expect(faults.total(k)).toBeGreaterThan(0);
      expect(ambiguousCommits).toBeGreaterThan(0);
      expect(outcomes.ok ?? 0).toBeGreaterThan(0);
      expect(Object.keys(outcomes).some((k) => k.startsWith('failed'))).toBe(true);
      // A storage fault is named as one in the run status (STORAGE_FAILED, or LEASE_LOST when it cost the lease),
      // whichever call it hit: never INTERNAL, which says "a bug".
      expect(outcomes['failed INTERNAL'] ?? 0).toBe(0);
      for (const { lane, checks } of results)
        if (lane.source.retention.mode !== 'keep') expect(checks.deletesDone).toBeGreaterThan(0);
    },
    180_000 + SYNCS * 4 * 3_000,
  );

  it('a DynamoDB error while taking the lease ends the run with a failed report (the CLI goes on with the next source)', async () => {
    const user = lab.createUser('sflease');
    lab.deliver(user, bulkCorpus(1, 5, { maxBytes: 5_000 })[0]!.raw);
    const g = new TestTributary(lab);
    // Only the lease's UpdateItem fails, every time, where Tributary sees it (after the SDK's retries).
    const leaseFaults = new StorageFaults({
      seed: 1,
      rate: 2,
      applies: (service, command) => service === 'dynamodb' && command === 'UpdateItemCommand',
    }).attach(g.clients);
    try {
      const source = g.source(user, 'imap');
      const outcome = await g.sync(source, { leaseTtlMs: LEASE_MS }).then(
        (report) => ({ report: { outcome: report.outcome, code: report.error?.code } }),
        (err: unknown) => ({ threw: String(err) }),
      );
      console.log(
        `sync with a failing lease write: ${JSON.stringify(outcome)}; ${JSON.stringify(leaseFaults.counts)}`,
      );
      expect(outcome).toEqual({ report: { outcome: 'failed', code: 'STORAGE_FAILED' } });
    } finally {
      g.close();
    }
  });
});
