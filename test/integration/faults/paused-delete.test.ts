import type { AuditRecord, Source } from '../../../functions/core/model';
import type { SyncStep } from '../../../functions/core/policy-run';
import { spawnChildSync } from '../../support/child-sync';
import { MailLab } from '../../support/mail-lab';
import { Reconciler } from '../../support/reconciler';
import { STORE_KINDS, TestTributary } from '../../support/tributary';
import { serverState } from '../../support/upstream';

/**
 * A run paused (SIGSTOP) at the last moment before the command that deletes upstream, for longer than its lease:
 * the server carries no fence, so only the run itself can refuse to send that command once it may have a successor.
 * - POP3, the successor reads the server first: it finds the messages still there (the DELEs of a session apply only
 *   at its QUIT) and records the paused run's intents as not applied. Had the paused run gone on with QUIT, the
 *   messages would be gone with an audit trail saying they were not deleted, the race the cross-process race test
 *   once caught. Paused before the lease renewal that precedes QUIT, and after it.
 * - IMAP: paused right before UID STORE \Deleted (some servers expunge at the STORE, and a flag stored after the
 *   successor resolved the intents would be left for any client's EXPUNGE), the successor reading first; and paused
 *   with \Deleted stored right before UID EXPUNGE, no successor yet.
 * A run that wakes to find its lease taken stops LEASE_LOST; one whose lease is still its own but has less than half
 * of it ahead stops LEASE_EXPIRING.
 * Then syncs to quiescence delete everything with a completed audit record: nothing lost, stored twice, or deleted
 * without its record.
 */
const lab = MailLab.fromEnv();

/** Long enough that a renewal on a loaded machine leaves more than half of it ahead. */
const LEASE_MS = 2000;
const MESSAGES = 6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function mail(i: number, tag: string): string {
  return (
    `From: s${i}@example.org\r\nTo: me@example.org\r\nSubject: ${tag} ${i}\r\nMessage-ID: <${tag}.${i}@example.org>\r\n` +
    `Date: ${new Date(Date.UTC(2026, 2, 1, 0, i)).toUTCString().replace('GMT', '+0000')}\r\n\r\n` +
    `${tag} body ${i}\r\n`.repeat(40)
  );
}

async function auditOf(t: TestTributary, sourceId: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of t.index.auditTrail(sourceId)) out.push(r);
  return out;
}

type Scenario = {
  name: string;
  protocol: 'imap' | 'pop3';
  stopAt: SyncStep;
  /** A successor syncs (and reads the server) while the run is paused. */
  successorFirst: boolean;
  /** How the paused run ends: its lease taken (the renewal failed), or still its own with too little ahead. */
  code: 'LEASE_LOST' | 'LEASE_EXPIRING';
};

const scenarios: Scenario[] = [
  {
    name: 'pop3, paused between DELE and the lease renewal for QUIT; the successor reads first',
    protocol: 'pop3',
    stopAt: 'dele-sent',
    successorFirst: true,
    code: 'LEASE_LOST',
  },
  {
    name: 'pop3, paused with the lease renewed and QUIT next; the successor reads first',
    protocol: 'pop3',
    stopAt: 'quit-next',
    successorFirst: true,
    code: 'LEASE_EXPIRING',
  },
  {
    name: 'imap, paused with the folder selected and UID STORE \\Deleted next; the successor reads first',
    protocol: 'imap',
    stopAt: 'store-next',
    successorFirst: true,
    code: 'LEASE_EXPIRING',
  },
  {
    name: 'imap, paused with \\Deleted stored and UID EXPUNGE next; no successor yet',
    protocol: 'imap',
    stopAt: 'expunge-next',
    successorFirst: false,
    code: 'LEASE_EXPIRING',
  },
];

describe.each(STORE_KINDS)(
  'a run paused past its lease right before deleting upstream (%s store)',
  (kind) => {
    const t = new TestTributary(lab, { store: kind });
    afterAll(() => t.close());

    it.each(scenarios)('$name', async ({ name, protocol, stopAt, successorFirst, code }) => {
      const user = lab.createUser(`pd${protocol}`);
      for (let i = 0; i < MESSAGES; i++) lab.deliver(user, mail(i, `${protocol}-${stopAt}`));
      const reconciler = await new Reconciler(lab, user).start();
      const source: Source = t.source(user, protocol, 'implicit', {
        retention: { mode: 'delete-on-retrieve' },
      });

      let reached!: () => void;
      const stopped = new Promise<void>((resolve) => (reached = resolve));
      const a = spawnChildSync(source, user.password, {
        leaseMs: LEASE_MS,
        stopAt,
        store: t.storeSpec,
        onLine: (line) => {
          if (line === `stopped ${stopAt}`) reached();
        },
      });
      const early = a.exited.then(({ output }) => {
        throw new Error(`the run ended before reaching ${stopAt}: ${output}`);
      });
      await Promise.race([stopped, early]);
      early.catch(() => undefined);
      // Paused past its lease.
      await sleep(LEASE_MS * 1.5);

      if (successorFirst) {
        // The successor leaves mail upstream (the user switched the source to keep meanwhile): only the paused run
        // could delete now.
        const successor = await t.sync({ ...source, retention: { mode: 'keep' } }, { leaseTtlMs: LEASE_MS });
        expect(successor.outcome).toBe('ok');
      }
      a.child.kill('SIGCONT');
      const exit = await a.exited;
      const report = exit.output.split('\n').find((l) => l.startsWith('report '));
      const parsed = JSON.parse(report!.slice('report '.length)) as {
        outcome: string;
        error?: { code: string };
      };
      const served = (await serverState(lab, user)).messages;
      const flagged = served.filter((m) => m.flags.includes('\\Deleted')).length;
      const trail = await auditOf(t, source.id);
      const notApplied = trail.filter(
        (r) => r.action === 'delete-upstream' && r.state === 'not-applied',
      ).length;

      // Then syncs to quiescence, deleting with their own intents.
      for (let round = 0; round < 10; round++) {
        const r = await t.sync(source, { leaseTtlMs: LEASE_MS });
        expect(r.outcome).toBe('ok');
        if (!r.fetched && !r.deletedUpstream) break;
      }
      const result = await reconciler.finish(t, source.id);
      console.log(
        `[reliability] paused-delete ${kind === 'embedded' ? '(embedded store) ' : ''}${name}: the paused run ended ${parsed.outcome}${parsed.error ? ` ${parsed.error.code}` : ''}, ${MESSAGES - served.length} deleted upstream after its pause and ${flagged} left flagged \\Deleted, ${notApplied} intents recorded as not applied; then lost ${result.lost}, duplicated ${result.duplicated}, wrongly deleted ${result.wronglyDeleted}`,
      );
      // The paused run sent nothing that deletes, and stopped.
      expect(parsed).toMatchObject({ outcome: 'failed', error: { code } });
      expect(served.length).toBe(MESSAGES);
      // A successor that read first resolved the intents: nothing would clear a flag stored after that.
      if (successorFirst) {
        expect(flagged).toBe(0);
        expect(notApplied).toBe(MESSAGES);
      }
      expect(result).toMatchObject({ lost: 0, duplicated: 0, wronglyDeleted: 0, corrupt: 0, unfetched: 0 });
      expect(result.upstream).toBe(0);
      expect(result.stored).toBe(MESSAGES);
      expect(await t.index.pendingActions(source.id)).toEqual([]);
    });
  },
);
