import type { ChildProcess } from 'node:child_process';
import type { Source } from '../../../functions/core/model';
import { spawnChildSync } from '../../support/child-sync';
import { bulkCorpus } from '../../support/corpus';
import { uniform } from '../../support/fault-proxy';
import { MailLab } from '../../support/mail-lab';
import { Reconciler } from '../../support/reconciler';
import { STORE_KINDS, TestTributary, type StoreKind } from '../../support/tributary';

/**
 * Syncs of one source in separate processes, with a short lease, while the parent freezes the lease holder
 * (SIGSTOP) for longer than the lease lasts and lets it go on (SIGCONT) after another process took the lease over:
 * the frozen run wakes up in the middle of its work holding a lease that is no longer its own. A slow S3 (every put
 * waits) keeps each run going long enough to be frozen mid-run. Nothing may be lost or stored twice, the per-source
 * counters must equal the items, and the run status must be the newest run's, never a stale run's.
 *
 * On both stores: DynamoDB Local and s3rver, and the embedded store, where the processes share one data folder (one
 * SQLite file, one mail folder) as local mode's processes do (`npm start` and a CLI sync); the embedded runs are
 * CI-sized.
 */
const lab = MailLab.fromEnv();

const LEASE_MS = 1200;
const RACE_MS: Record<StoreKind, number> = {
  dynamodb: Number(
    process.env.TRIBUTARY_RACE_PROCESS_MS ?? (process.env.TRIBUTARY_TORTURE ? 120_000 : 20_000),
  ),
  embedded: Number(
    process.env.TRIBUTARY_RACE_PROCESS_MS ?? (process.env.TRIBUTARY_TORTURE ? 120_000 : 15_000),
  ),
};
/**
 * How long each raw put of a racer waits first: long enough that runs are still at work when frozen. The embedded
 * store commits in microseconds where DynamoDB Local takes milliseconds, so its runs need the slower puts.
 */
const STORE_DELAY_MS: Record<StoreKind, number> = { dynamodb: 250, embedded: 600 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long the processes still running after the race may take to end. */
const drainMs = (raceMs: number) => Math.max(60_000, raceMs);

interface Racer {
  child: ChildProcess;
  /** The lease's fence, once this process took it. */
  fence?: number;
  exited: boolean;
  frozen: boolean;
  /** Its fence was superseded while it was alive. */
  overtaken: boolean;
  /** When it took the lease, or was last considered for a freeze since. */
  leaseAt?: number;
  /** A freezer is on it (waiting to freeze, or frozen). */
  freezing?: boolean;
  outcome?: string;
}

/** The source's run status as stored, and which run wrote it (by its `at`, which each child prints with its fence). */
async function statusAt(t: TestTributary, sourceId: string): Promise<number | undefined> {
  const at = (await t.index.summary(sourceId)).lastRun?.at;
  return at === undefined ? undefined : Date.parse(at);
}

async function exactCounters(t: TestTributary, sourceId: string) {
  const stored = await t.stored(sourceId);
  const summary = await t.index.summary(sourceId);
  return {
    counters: { messages: summary.messages, bytes: summary.bytes },
    items: { messages: stored.length, bytes: stored.reduce((n, m) => n + m.object.size, 0) },
  };
}

describe.each(
  STORE_KINDS.flatMap((kind) => [
    [kind, 'imap', { mode: 'keep' }] as const,
    [kind, 'pop3', { mode: 'delete-on-retrieve' }] as const,
  ]),
)(
  'on the %s store, syncs of one %s source (%j) in racing processes, the lease holder frozen past its lease',
  (kind, protocol, retention) => {
    const t = new TestTributary(lab, { store: kind });
    afterAll(() => t.close());
    const raceMs = RACE_MS[kind];

    it(
      'leases are taken over mid-run: 0 lost, 0 duplicated, exact counters, the newest run status',
      async () => {
        const random = uniform(protocol === 'imap' ? 501 : 502);
        const user = lab.createUser(`rp${protocol}`);
        for (const m of bulkCorpus(120, 3100, { maxBytes: 8_000, attachmentRatio: 0 }))
          lab.deliver(user, m.raw);
        const reconciler = await new Reconciler(lab, user).start();
        const source: Source = t.source(user, protocol, 'implicit', { retention });

        const racers: Racer[] = [];
        /** Who wrote a status, by its time: the fence of the run. */
        const statusBy = new Map<number, number>();
        let maxFence = 0;
        let takeovers = 0;
        let freezes = 0;
        const freezer = async (r: Racer) => {
          r.freezing = true;
          // Let it work a little, then freeze it for longer than the lease lasts.
          await sleep(100 + random() * 900);
          if (r.exited) return;
          r.frozen = true;
          freezes++;
          r.child.kill('SIGSTOP');
          await sleep(LEASE_MS * (1.3 + random()));
          r.frozen = false;
          r.freezing = false;
          r.child.kill('SIGCONT');
        };
        const freezing: Array<Promise<void>> = [];
        const spawn = () => {
          const r: Racer = {
            child: undefined as unknown as ChildProcess,
            exited: false,
            frozen: false,
            overtaken: false,
          };
          const { child, exited } = spawnChildSync(source, user.password, {
            leaseMs: LEASE_MS,
            store: t.storeSpec,
            checkpointEvery: 10,
            storeDelayMs: STORE_DELAY_MS[kind],
            onLine: (line) => {
              const lease = /^lease (\d+)/.exec(line);
              if (lease) {
                r.fence = Number(lease[1]);
                r.leaseAt = Date.now();
                for (const other of racers) {
                  if (other !== r && !other.exited && other.fence !== undefined && other.fence < r.fence) {
                    if (!other.overtaken) takeovers++;
                    other.overtaken = true;
                  }
                }
                maxFence = Math.max(maxFence, r.fence);
                if (random() < 0.7) freezing.push(freezer(r));
              }
              const status = /^status (\d+) (\d+)/.exec(line);
              if (status) statusBy.set(Number(status[2]), Number(status[1]));
            },
          });
          r.child = child;
          // A signal to a process that has just exited is not an error here.
          child.on('error', () => undefined);
          racers.push(r);
          void exited.then(({ output, code, signal }) => {
            r.exited = true;
            const report = output.split('\n').find((l) => l.startsWith('report '));
            const parsed = report
              ? (JSON.parse(report.slice('report '.length)) as { outcome: string; error?: { code: string } })
              : undefined;
            r.outcome = parsed
              ? `${parsed.outcome}${parsed.error ? ` ${parsed.error.code}` : ''}`
              : `exit ${code ?? signal}`;
          });
        };

        // The race runs its time, and on (up to a minute more) until it has taken over enough live leases to be
        // the test it claims to be: freezes are random, and a short race may happen to take over only one.
        const neededTakeovers = raceMs >= 20_000 ? 3 : 2;
        const end = Date.now() + raceMs;
        const extendedEnd = end + Math.min(raceMs, 60_000);
        let appended = 0;
        let nextMail = Date.now();
        while (Date.now() < end || (takeovers < neededTakeovers && Date.now() < extendedEnd)) {
          if (Date.now() >= nextMail) {
            for (const m of bulkCorpus(2, 7000 + appended, { maxBytes: 8_000, attachmentRatio: 0 })) {
              lab.deliver(user, m.raw);
              reconciler.appended(m.raw);
              appended++;
            }
            nextMail = Date.now() + 1000;
          }
          if (racers.filter((r) => !r.exited).length < 3) spawn();
          // A holder the coin spared that keeps its lease long (a big fetch) gets another chance to be frozen:
          // otherwise one long run can hold the lease through the whole race, which then takes nothing over.
          for (const r of racers) {
            if (r.exited || r.freezing || r.overtaken || r.leaseAt === undefined) continue;
            if (Date.now() - r.leaseAt < 2 * LEASE_MS) continue;
            r.leaseAt = Date.now();
            if (random() < 0.7) freezing.push(freezer(r));
          }
          await sleep(150 + random() * 250);
        }
        // Let every frozen process go on and every process end.
        await Promise.all(freezing);
        for (const r of racers) if (!r.exited) r.child.kill('SIGCONT');
        // The last holder may still be fetching what was appended while others were frozen (a file put takes 600 ms
        // on the embedded store): a minute, or as long as the race ran when that is longer (torture: 2 minutes).
        const drainEnd = Date.now() + drainMs(raceMs);
        while (Date.now() < drainEnd && racers.some((r) => !r.exited)) await sleep(100);
        expect(racers.filter((r) => !r.exited)).toEqual([]);

        // The status now is the one the newest run that wrote one wrote: no stale run wrote over it.
        const at = await statusAt(t, source.id);
        const writtenBy = at === undefined ? undefined : statusBy.get(at);
        const newestWriter = Math.max(...statusBy.values());
        const outcomes: Record<string, number> = {};
        for (const r of racers) outcomes[r.outcome!] = (outcomes[r.outcome!] ?? 0) + 1;
        const overtaken = racers.filter((r) => r.overtaken);
        const overtakenOutcomes: Record<string, number> = {};
        for (const r of overtaken) overtakenOutcomes[r.outcome!] = (overtakenOutcomes[r.outcome!] ?? 0) + 1;
        // A stale run that recorded its status: the fence it printed is below a fence granted before it wrote.
        const staleWriters = overtaken.filter((r) => [...statusBy.values()].includes(r.fence!)).length;

        // Then one clean run to quiescence picks up what the last one left.
        for (let round = 0; round < 10; round++) {
          const r = await t.sync(source, { leaseTtlMs: LEASE_MS });
          if (r.outcome === 'busy') {
            await sleep(500);
            continue;
          }
          expect(r.outcome).toBe('ok');
          if (!r.fetched && !r.deletedUpstream) break;
        }
        const result = await reconciler.finish(t, source.id);
        const counters = await exactCounters(t, source.id);
        console.log(
          `[reliability] race-processes ${protocol} ${retention.mode}${kind === 'embedded' ? ' (embedded store, one data folder)' : ''}: ${racers.length} processes over ${raceMs / 1000} s (lease ${LEASE_MS} ms, ${kind === 'embedded' ? 'file' : 'S3'} put +${STORE_DELAY_MS[kind]} ms), ${freezes} frozen past the lease, ${takeovers} leases taken over from a live process (their outcomes ${JSON.stringify(overtakenOutcomes)}); outcomes ${JSON.stringify(outcomes)}; ${appended} messages appended meanwhile; expected ${result.expected}, stored ${result.stored}, upstream ${result.upstream}: lost ${result.lost}, duplicated ${result.duplicated}, wrongly deleted ${result.wronglyDeleted}, corrupt ${result.corrupt}, unfetched ${result.unfetched}; counters ${counters.counters.messages} for ${counters.items.messages} items; status written by fence ${writtenBy} (newest writer ${newestWriter}, highest fence ${maxFence}; overtaken runs that wrote a status: ${staleWriters})`,
        );
        expect(result).toMatchObject({ lost: 0, duplicated: 0, wronglyDeleted: 0, corrupt: 0, unfetched: 0 });
        expect(counters.counters).toEqual(counters.items);
        expect(await t.index.pendingActions(source.id)).toEqual([]);
        // The race did happen: leases were taken over from processes still alive, mid-run (3 in 20 s, 2 in less).
        expect(takeovers).toBeGreaterThanOrEqual(neededTakeovers);
        expect(outcomes.busy ?? 0).toBeGreaterThan(0);
        expect(writtenBy).toBe(newestWriter);
      },
      raceMs + Math.min(raceMs, 60_000) + drainMs(raceMs) + 60_000,
    );
  },
);

describe.each(STORE_KINDS)('the run status of a run that paused past its lease (%s store)', (kind) => {
  const t = new TestTributary(lab, { store: kind });
  afterAll(() => t.close());

  it.each(['imap', 'pop3'] as const)(
    '%s: a stale run does not write over its successor’s status',
    async (protocol) => {
      const user = lab.createUser(`rs${protocol}`);
      for (const m of bulkCorpus(5, 3300, { maxBytes: 5_000, attachmentRatio: 0 })) lab.deliver(user, m.raw);
      const source: Source = t.source(user, protocol);
      // A: syncs the 5, then its status write is slow (a pause, a slow network): 4 leases long.
      let statusPending!: () => void;
      const aAtStatus = new Promise<void>((resolve) => (statusPending = resolve));
      const statusBy = new Map<number, string>();
      const a = spawnChildSync(source, user.password, {
        leaseMs: 800,
        store: t.storeSpec,
        statusDelayMs: 3200,
        onLine: (line) => {
          const status = /^status (\d+) (\d+)/.exec(line);
          if (status) {
            statusBy.set(Number(status[2]), `A (fence ${status[1]})`);
            statusPending();
          }
        },
      });
      await aAtStatus;
      // A's lease runs out while it waits; B takes it, fetches the 2 new messages and records its status.
      await sleep(1000);
      for (const m of bulkCorpus(2, 3400, { maxBytes: 5_000, attachmentRatio: 0 })) lab.deliver(user, m.raw);
      const b = await t.sync(source, { leaseTtlMs: 800 });
      const bStatus = await statusAt(t, source.id);
      if (bStatus !== undefined) statusBy.set(bStatus, 'B');
      const bNow = bStatus ?? 0;
      const aExit = await a.exited;
      const final = await statusAt(t, source.id);
      const writer = final === undefined ? 'nobody' : (statusBy.get(final) ?? `unknown (${final})`);
      console.log(
        `[reliability] race-processes ${protocol}${kind === 'embedded' ? ' (embedded store)' : ''} stale status: A synced ${/"fetched":(\d+)/.exec(aExit.output)?.[1]} and paused 3.2 s (lease 0.8 s) before its status write; B (${b.outcome}, fetched ${b.fetched}) recorded at ${new Date(bNow).toISOString()}; the status afterwards was written by ${writer}`,
      );
      expect(aExit.code).toBe(0);
      expect(b).toMatchObject({ outcome: 'ok', fetched: 2 });
      expect(writer).toBe('B');
    },
    60_000,
  );
});
