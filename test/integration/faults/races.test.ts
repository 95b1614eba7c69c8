import { performance } from 'node:perf_hooks';
import type { Source } from '../../../functions/core/model';
import type { MessageIndex } from '../../../functions/core/ports';
import { syncSource } from '../../../functions/core/sync';
import { bulkCorpus } from '../../support/corpus';
import { MailLab } from '../../support/mail-lab';
import { Reconciler } from '../../support/reconciler';
import { STORE_KINDS, TestTributary, type StoreKind } from '../../support/tributary';

/**
 * Four syncs of one source started together, round after round, while mail arrives: the lease lets one work,
 * the others exit `busy`; the intervals in which a run held the lease never overlap; nothing is stored twice. On
 * both stores (the embedded one at CI-sized rounds).
 */
const lab = MailLab.fromEnv();

const ROUNDS: Record<StoreKind, number> = {
  dynamodb: Number(process.env.TRIBUTARY_RACE_ROUNDS ?? (process.env.TRIBUTARY_TORTURE ? 300 : 100)),
  embedded: Number(process.env.TRIBUTARY_RACE_ROUNDS ?? (process.env.TRIBUTARY_TORTURE ? 300 : 100)),
};

describe.each(
  STORE_KINDS.flatMap((kind) => [
    [kind, 'imap', { mode: 'keep' }] as const,
    [kind, 'pop3', { mode: 'delete-on-retrieve' }] as const,
  ]),
)('on the %s store, 4 syncs of one %s source (%j) racing', (kind, protocol, retention) => {
  const t = new TestTributary(lab, { store: kind });
  afterAll(() => t.close());
  const rounds = ROUNDS[kind];

  it(
    `${rounds} rounds: at most one lease holder at any instant, 0 lost, 0 duplicated`,
    async () => {
      const user = lab.createUser(`race${protocol}`);
      for (const m of bulkCorpus(20, 800, { maxBytes: 10_000, attachmentRatio: 0 })) lab.deliver(user, m.raw);
      const reconciler = await new Reconciler(lab, user).start();
      const source: Source = t.source(user, protocol, 'implicit', { retention });

      // Every interval in which some run held the lease, from the granted acquire to the release call.
      const held: Array<{ holder: string; from: number; to: number }> = [];
      const open = new Map<string, number>();
      const index: MessageIndex = Object.create(t.index) as MessageIndex;
      index.acquireLease = async (...args) => {
        const lease = await t.index.acquireLease(...args);
        if (lease) open.set(lease.holder, performance.now());
        return lease;
      };
      index.releaseLease = async (lease) => {
        held.push({ holder: lease.holder, from: open.get(lease.holder)!, to: performance.now() });
        open.delete(lease.holder);
        return t.index.releaseLease(lease);
      };
      const deps = { ...t.deps, index };

      const outcomes: Record<string, number> = {};
      let appended = 0;
      for (let round = 0; round < rounds; round++) {
        if (round % 3 === 0) {
          const [m] = bulkCorpus(1, 9000 + round, { maxBytes: 8_000, attachmentRatio: 0 });
          lab.deliver(user, m!.raw);
          reconciler.appended(m!.raw);
          appended++;
        }
        const reports = await Promise.all(
          [0, 1, 2, 3].map((k) =>
            syncSource(deps, source, {
              deadline: Date.now() + 60_000,
              leaseTtlMs: 30_000,
              holder: `racer-${round}-${k}`,
            }),
          ),
        );
        for (const r of reports) outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
        expect(reports.filter((r) => r.outcome === 'failed')).toEqual([]);
      }
      // One clean run picks up whatever the last round's winner left.
      await t.sync(source);

      held.sort((a, b) => a.from - b.from);
      let overlaps = 0;
      for (let i = 1; i < held.length; i++) if (held[i]!.from < held[i - 1]!.to) overlaps++;
      const result = await reconciler.finish(t, source.id);
      console.log(
        `[reliability] race ${protocol} ${retention.mode}${kind === 'embedded' ? ' (embedded store)' : ''}: ${rounds} rounds x 4 syncs, ${appended} messages appended meanwhile; outcomes ${JSON.stringify(outcomes)}; overlapping lease holders ${overlaps}; lost ${result.lost}, duplicated ${result.duplicated}, wrongly deleted ${result.wronglyDeleted}, unfetched ${result.unfetched}`,
      );
      expect(overlaps).toBe(0);
      expect(held.length).toBeGreaterThanOrEqual(rounds);
      expect(outcomes.busy ?? 0).toBeGreaterThan(0);
      expect(result).toMatchObject({ lost: 0, duplicated: 0, wronglyDeleted: 0, corrupt: 0, unfetched: 0 });
    },
    60_000 + rounds * 3_000,
  );
});
