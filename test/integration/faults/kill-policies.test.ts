import type { Source } from '../../../functions/core/model';
import type { SyncStep } from '../../../functions/core/policy-run';
import { spawnChildSync } from '../../support/child-sync';
import { bulkCorpus } from '../../support/corpus';
import { uniform } from '../../support/fault-proxy';
import { MailLab } from '../../support/mail-lab';
import { Reconciler } from '../../support/reconciler';
import { TestTributary } from '../../support/tributary';

/**
 * The sync process SIGKILLed at a random step of its work (a random occurrence of a random step), under each
 * retention policy, with mail arriving between runs; then synced to quiescence and reconciled.
 */
const lab = MailLab.fromEnv();

const KILLS = Number(process.env.TRIBUTARY_POLICY_KILLS ?? (process.env.TRIBUTARY_TORTURE ? 60 : 15));
const HALF_DAY = 12 * 60 * 60 * 1000;

const STEPS: Record<string, SyncStep[]> = {
  imap: ['stored', 'committed', 'intent-written', 'upstream-deleted'],
  pop3: ['stored', 'committed', 'intent-written', 'dele-sent', 'upstream-deleted'],
};

// `keep` is test/integration/sync/kill.test.ts (30 kills each for IMAP and POP3).
describe.each([
  ['pop3', { mode: 'delete-on-retrieve' }],
  ['imap', { mode: 'delete-on-retrieve' }],
  ['pop3', { mode: 'delete-after-days', days: 1 }],
  ['imap', { mode: 'delete-after-days', days: 1 }],
] as const)('%s %j under SIGKILL', (protocol, retention) => {
  it(
    `${KILLS} kills at random steps: 0 lost, 0 duplicated, 0 wrongly deleted`,
    async () => {
      const random = uniform(KILLS * 31 + protocol.length + retention.mode.length);
      const user = lab.createUser(`kp${protocol}`);
      for (const m of bulkCorpus(30, 4000, { maxBytes: 12_000, attachmentRatio: 0.1 }))
        lab.deliver(user, m.raw);
      const reconciler = await new Reconciler(lab, user).start();
      const source: Source = new TestTributary(lab).source(user, protocol, 'implicit', { retention });
      const steps = STEPS[protocol]!;

      let kills = 0;
      let finished = 0;
      let offset = 0;
      const at: Record<string, number> = {};
      for (let run = 0; kills < KILLS && run < KILLS * 4; run++) {
        // New mail every run (the deleting policies empty the mailbox), so every step has something to do.
        const arriving = 2 + Math.floor(random() * 3);
        for (const m of bulkCorpus(arriving, 6000 + run * 7, { maxBytes: 9_000, attachmentRatio: 0 })) {
          lab.deliver(user, m.raw);
          reconciler.appended(m.raw);
        }
        offset += HALF_DAY; // a day passes every two runs: delete-after-days has expired mail to delete
        const step = steps[Math.floor(random() * steps.length)]!;
        // Per-message steps at a random message; the policy steps happen once per run (one chunk).
        const nth = step === 'stored' || step === 'committed' ? 1 + Math.floor(random() * 2) : 1;
        const { exited } = spawnChildSync(source, user.password, {
          leaseMs: 1500,
          killAt: `${step}:${nth}`,
          clockOffsetMs: offset,
        });
        const exit = await exited;
        if (exit.signal === 'SIGKILL') {
          kills++;
          at[step] = (at[step] ?? 0) + 1;
        } else {
          expect(exit.code).toBe(0);
          finished++;
        }
      }

      // To quiescence, with the clock where the last child left it (leases and ages are on that clock).
      const t = new TestTributary(lab);
      t.passwords.set(source.id, user.password);
      const now = () => Date.now() + offset + 2 * HALF_DAY;
      t.deps.clock = { now };
      try {
        for (let round = 0; round < 10; round++) {
          const r = await t.sync(source, { deadline: now() + 120_000 });
          expect(r.outcome).toBe('ok');
          if (!r.fetched && !r.deletedUpstream) break;
        }
        expect(await t.index.pendingActions(source.id)).toEqual([]);
        const result = await reconciler.finish(t, source.id);
        console.log(
          `[reliability] kills ${protocol} ${retention.mode}: ${kills} SIGKILLs (${Object.entries(at)
            .map(([s, n]) => `${s} ${n}`)
            .join(
              ', ',
            )}), ${finished} runs finished; expected ${result.expected}, stored ${result.stored}, upstream ${result.upstream}: lost ${result.lost}, duplicated ${result.duplicated}, wrongly deleted ${result.wronglyDeleted}, corrupt ${result.corrupt}, unfetched ${result.unfetched}`,
        );
        expect(kills).toBe(KILLS);
        expect(result).toMatchObject({ lost: 0, duplicated: 0, wronglyDeleted: 0, corrupt: 0, unfetched: 0 });
        expect(result.upstream).toBeLessThan(result.expected);
      } finally {
        t.close();
      }
    },
    60_000 + KILLS * 20_000,
  );
});
