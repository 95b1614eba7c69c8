import { bigMessage, bulkCorpus } from '../../support/corpus';
import { countUnhandledRejections, makeLanes, syncToQuiescence } from '../../support/fault-lanes';
import { startFaultProxy, uniform, type Fault } from '../../support/fault-proxy';
import { MailLab } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';

/**
 * Syncs through a proxy that cuts, resets, stalls, trickles or splits each connection, under keep and
 * delete-on-retrieve, over IMAPS and POP3S, while new mail arrives. Every sync must end by its deadline, nothing
 * may be rejected unhandled, and once synced cleanly the reconciler must count 0 lost, duplicated, wrongly deleted.
 */
const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

const CONNECTIONS = Number(
  process.env.TRIBUTARY_FAULT_CONNECTIONS ?? (process.env.TRIBUTARY_TORTURE ? 1000 : 100),
);
const BUDGET_MS = 4000;
const TIMEOUT_MS = 1500;
/** What a run may take past its deadline: closing the session, the checkpoint, the status, the lease. */
const SLACK_MS = 1000;

const WEIGHTS: Array<[Fault, number]> = [
  ['none', 15],
  ['cut', 30],
  ['reset', 20],
  ['split', 15],
  ['stall', 10],
  ['trickle', 10],
];

function chooser(seed: number): (n: number) => Fault {
  const random = uniform(seed);
  const total = WEIGHTS.reduce((n, [, w]) => n + w, 0);
  return () => {
    let x = random() * total;
    for (const [fault, w] of WEIGHTS) if ((x -= w) < 0) return fault;
    return 'cut';
  };
}

const unhandled = countUnhandledRejections();

describe('syncs through a faulty network', () => {
  it(
    `${CONNECTIONS} cut/reset/stall/trickle/split connections: every sync ends by its deadline, and nothing is lost, duplicated or wrongly deleted`,
    async () => {
      let seed = 7000;
      const lanes = await makeLanes(lab, t, 'net', (user) => {
        // Small ones (one pipelined FETCH) and two over 1 MB (IMAP's chunked download: see wholeMessageBytes).
        for (const m of bulkCorpus(10, seed++, { maxBytes: 20_000, attachmentRatio: 0 }))
          lab.deliver(user, m.raw);
        for (let i = 0; i < 2; i++) lab.deliver(user, bigMessage(1_200_000 + i, seed++));
      });

      let worstOverrunMs = -Infinity;
      let syncs = 0;
      const outcomes: Record<string, number> = {};
      const random = uniform(99);
      const proxies = await Promise.all(
        lanes.map((lane, i) =>
          startFaultProxy({
            target: { host: lab.info.host, port: lane.source.port },
            choose: chooser(1000 + i),
            seed: 2000 + i,
          }),
        ),
      );
      const connections = () =>
        proxies.reduce((n, p) => n + Object.values(p.counts).reduce((a, b) => a + b, 0), 0);
      try {
        while (connections() < CONNECTIONS) {
          const i = syncs % lanes.length;
          const lane = lanes[i]!;
          if (random() < 0.25) {
            const [m] = bulkCorpus(1, 50_000 + syncs, { maxBytes: 15_000, attachmentRatio: 0 });
            lab.deliver(lane.user, m!.raw);
            lane.reconciler.appended(m!.raw);
          }
          const started = Date.now();
          const report = await t.sync(
            { ...lane.source, port: proxies[i]!.port },
            {
              deadline: started + BUDGET_MS,
              timeoutMs: TIMEOUT_MS,
              leaseTtlMs: 3000,
              wholeMessageBytes: 1024 * 1024,
            },
          );
          const key = report.error ? `${report.outcome} ${report.error.code}` : report.outcome;
          outcomes[key] = (outcomes[key] ?? 0) + 1;
          worstOverrunMs = Math.max(worstOverrunMs, Date.now() - (started + BUDGET_MS));
          syncs++;
        }
      } finally {
        await Promise.all(proxies.map((p) => p.close()));
      }

      const results = [];
      for (const lane of lanes) {
        // A clean network now: sync to quiescence (a lease of a cut run may still need to expire).
        await syncToQuiescence(t, lane.source);
        const result = await lane.reconciler.finish(t, lane.source.id);
        results.push(result);
        console.log(
          `[reliability] network ${lane.name}: expected ${result.expected}, stored ${result.stored}, upstream ${result.upstream}: lost ${result.lost}, duplicated ${result.duplicated}, wrongly deleted ${result.wronglyDeleted}, corrupt ${result.corrupt}, unfetched ${result.unfetched}`,
        );
      }
      const faults: Record<Fault, number> = { none: 0, cut: 0, reset: 0, stall: 0, trickle: 0, split: 0 };
      for (const p of proxies) for (const [f, n] of Object.entries(p.counts)) faults[f as Fault] += n;
      console.log(
        `[reliability] network: ${connections()} connections (${Object.entries(faults)
          .map(([f, n]) => `${f} ${n}`)
          .join(
            ', ',
          )}) in ${syncs} syncs; outcomes ${JSON.stringify(outcomes)}; worst end ${worstOverrunMs} ms after the deadline (allowed ${SLACK_MS}); unhandled rejections ${unhandled()}`,
      );

      expect(worstOverrunMs).toBeLessThanOrEqual(SLACK_MS);
      expect(unhandled()).toBe(0);
      for (const r of results) {
        expect(r).toMatchObject({ lost: 0, duplicated: 0, wronglyDeleted: 0, corrupt: 0, unfetched: 0 });
      }
      // The faults did happen, and some syncs got through them.
      for (const f of ['cut', 'reset', 'stall', 'split', 'trickle'] as const)
        expect(faults[f]).toBeGreaterThan(0);
      expect(outcomes.ok ?? 0).toBeGreaterThan(0);
    },
    120_000 + CONNECTIONS * 5_000,
  );
});
