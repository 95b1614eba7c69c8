import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AuditRecord, Source } from '../../../functions/core/model';
import { planSource } from '../../../functions/core/plan';
import type { RawMailStore } from '../../../functions/core/ports';
import { S3Client } from '@aws-sdk/client-s3';
import { FileRawMailStore } from '../../../functions/adapters/files/raw-mail-store';
import { S3RawMailStore } from '../../../functions/adapters/s3/raw-mail-store';
import { standardCorpus } from '../../support/corpus';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { STORE_KINDS, TestTributary } from '../../support/tributary';
import { serverState, sha256 } from '../../support/upstream';

/** The policies against Dovecot, on both stores: DynamoDB Local and s3rver, and the embedded store of local mode. */
const lab = MailLab.fromEnv();

const DAY = 24 * 60 * 60 * 1000;

/** A plain message of about `bytes` bytes, different for each (i, tag). */
function mail(i: number, tag: string, bytes = 2000): string {
  const head =
    `From: Sender ${i} <s${i}@example.org>\r\nTo: me@example.org\r\nSubject: ${tag} message ${i}\r\n` +
    `Date: ${new Date(Date.UTC(2026, 0, 1, 0, i)).toUTCString().replace('GMT', '+0000')}\r\n` +
    `Message-ID: <${tag}.${i}@example.org>\r\n\r\n`;
  const line = `${tag} ${i} `.repeat(8).trim() + '\r\n';
  return head + line.repeat(Math.max(1, Math.ceil((bytes - head.length) / line.length)));
}

function fill(user: TestUser, n: number, tag: string, bytes = 2000, from = 0): string[] {
  const out: string[] = [];
  for (let i = from; i < from + n; i++) {
    const m = mail(i, tag, bytes);
    lab.deliver(user, m);
    out.push(m);
  }
  return out;
}

/** A raw store of `t`'s kind that cannot be reached. */
function deadRawStore(t: TestTributary): { store: RawMailStore; close(): void } {
  if (t.kind === 'dynamodb') {
    const deadS3 = new S3Client({
      endpoint: 'http://127.0.0.1:9',
      forcePathStyle: true,
      maxAttempts: 1,
      requestHandler: { connectionTimeout: 2_000, requestTimeout: 5_000 },
    });
    return { store: new S3RawMailStore(deadS3, t.bucket), close: () => deadS3.destroy() };
  }
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dead-store-')), 'not-a-folder');
  fs.writeFileSync(file, '');
  return {
    store: new FileRawMailStore(path.join(file, 'mail')),
    close: () => fs.rmSync(path.dirname(file), { recursive: true, force: true }),
  };
}

describe.each(STORE_KINDS)('on the %s store', (kind) => {
  const t = new TestTributary(lab, { store: kind });
  afterAll(() => t.close());

  async function audit(sourceId: string): Promise<AuditRecord[]> {
    const out: AuditRecord[] = [];
    for await (const r of t.index.auditTrail(sourceId)) out.push(r);
    return out;
  }

  /** Every stored copy read back from the store: sha256 -> count. */
  async function storedShas(sourceId: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const m of await t.stored(sourceId)) {
      const sha = sha256(await t.bytes(m.object.key));
      expect(sha).toBe(m.object.sha256);
      out.set(sha, (out.get(sha) ?? 0) + 1);
    }
    return out;
  }

  /** A clock the test moves; the run's deadline follows it. */
  function fakeClock(start: number) {
    const clock = { at: start, now: () => clock.at };
    return clock;
  }

  describe.each(['pop3', 'imap'] as const)('delete-on-retrieve over %s', (protocol) => {
    it('empties the mailbox and stores every message byte-exact, each delete audited', async () => {
      const user = lab.createUser(`dor${protocol}`);
      const corpus = standardCorpus(41);
      for (const c of corpus) lab.deliver(user, c.raw);
      const before = await serverState(lab, user);
      expect(before.messages).toHaveLength(corpus.length);
      const source = t.source(user, protocol, 'implicit', { retention: { mode: 'delete-on-retrieve' } });

      const report = await t.sync(source);

      expect(report.outcome).toBe('ok');
      expect(report.fetched).toBe(corpus.length);
      expect(report.deletedUpstream).toBe(corpus.length);
      expect((await serverState(lab, user)).messages).toHaveLength(0);
      // Stored exactly as the server held them (POP3 serves what IMAP serves, but for the NUL byte).
      const stored = await storedShas(source.id);
      expect([...stored.values()].every((n) => n === 1)).toBe(true);
      expect(stored.size).toBe(corpus.length);
      if (protocol === 'imap')
        expect(new Set(stored.keys())).toEqual(new Set(before.messages.map((m) => m.sha256)));
      const trail = await audit(source.id);
      expect(trail).toHaveLength(corpus.length);
      expect(trail.every((r) => r.state === 'done' && r.policy === 'delete-on-retrieve')).toBe(true);
      expect(await t.index.pendingActions(source.id)).toEqual([]);
      for (const m of await t.stored(source.id)) expect(m.deletedUpstreamAt).toBeDefined();

      // Nothing left to do: a second run fetches and deletes nothing.
      const again = await t.sync(source);
      expect([again.fetched, again.deletedUpstream]).toEqual([0, 0]);
    });
  });

  describe('delete-after-days with an injected clock', () => {
    it.each(['pop3', 'imap'] as const)(
      '%s: nothing is deleted before day N, exactly the expired ones after',
      async (protocol) => {
        const user = lab.createUser(`dad${protocol}`);
        const clock = fakeClock(Date.parse('2026-03-01T08:00:00Z'));
        const tt = new TestTributary(lab, t.storeSpec);
        tt.deps.clock = clock;
        const source = tt.source(user, protocol, 'implicit', {
          retention: { mode: 'delete-after-days', days: 7 },
        });
        const sync = () => tt.sync(source, { deadline: clock.at + 120_000 });
        try {
          const first = fill(user, 3, 'first');
          expect((await sync()).fetched).toBe(3);
          clock.at += 3 * DAY;
          const second = fill(user, 2, 'second', 2000, 3);
          expect((await sync()).fetched).toBe(2);

          clock.at += 4 * DAY - 60_000; // 6 days 23:59 after the first commit
          const early = await sync();
          expect(early.deletedUpstream).toBe(0);
          expect((await serverState(lab, user)).messages).toHaveLength(5);

          clock.at += 60_000; // exactly 7 days after the first three were committed
          const due = await sync();
          expect(due.deletedUpstream).toBe(3);
          const left = await serverState(lab, user);
          expect(left.messages.map((m) => m.sha256).sort()).toEqual(second.map((m) => sha256(m)).sort());
          const trail = await audit(source.id);
          expect(trail.filter((r) => r.state === 'done').map((r) => r.policy)).toEqual(
            Array(3).fill('delete-after-days'),
          );
          const deleted = new Set(trail.map((r) => r.target));
          for (const m of await tt.stored(source.id)) {
            expect(deleted.has(m.identity)).toBe(first.map((x) => sha256(x)).includes(m.object.sha256));
          }

          clock.at += 3 * DAY; // the second two are now 7 days old
          expect((await sync()).deletedUpstream).toBe(2);
          expect((await serverState(lab, user)).messages).toHaveLength(0);
          expect((await tt.stored(source.id)).length).toBe(5);
        } finally {
          tt.close();
        }
      },
    );
  });

  describe('upstream quota guard', () => {
    it('IMAP: over 90% of the Dovecot quota, one sync brings usage under 75% by deleting the oldest committed', async () => {
      const user = lab.createUser('uqi', { quotaBytes: 100 * 1024 });
      const messages = fill(user, 19, 'q', 5000); // ~95 KB of 100 KB
      await lab.recalcQuota(user);
      const before = await lab.quota(user);
      expect(before.usedBytes / before.limitBytes!).toBeGreaterThan(0.9);
      const served = await serverState(lab, user);
      const source = t.source(user, 'imap', 'implicit', {
        upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 },
      });

      const report = await t.sync(source);

      expect(report.outcome).toBe('ok');
      expect(report.fetched).toBe(19);
      const after = await lab.quota(user);
      expect(after.usedBytes).toBeLessThanOrEqual(0.75 * after.limitBytes!);
      const left = await serverState(lab, user);
      const deleted = served.messages.filter((m) => !left.messages.some((l) => l.uid === m.uid));
      expect(deleted.length).toBeGreaterThan(0);
      expect(report.deletedUpstream).toBe(deleted.length);
      // The oldest: every deleted UID is below every remaining one.
      expect(Math.max(...deleted.map((m) => m.uid))).toBeLessThan(
        Math.min(...left.messages.map((m) => m.uid)),
      );
      // All committed: each deleted message is in the store, byte-exact, with a done audit record.
      const stored = await storedShas(source.id);
      for (const m of deleted) expect(stored.get(m.sha256)).toBe(1);
      const trail = await audit(source.id);
      expect(trail.map((r) => [r.policy, r.state])).toEqual(deleted.map(() => ['upstream-quota', 'done']));
      expect(trail[0]!.usageBefore).toBeGreaterThan(0.9 * before.limitBytes!);
      expect(trail[0]!.usageAfter).toBeLessThanOrEqual(0.75 * before.limitBytes!);
      expect(report.upstreamUsage?.afterBytes).toBeLessThanOrEqual(0.75 * before.limitBytes!);
      expect(messages).toHaveLength(19);
    });

    it('under the maximum nothing is deleted, and the usage is still reported', async () => {
      const user = lab.createUser('uqu', { quotaBytes: 1024 * 1024 });
      fill(user, 5, 'u', 5000);
      await lab.recalcQuota(user);
      const source = t.source(user, 'imap', 'implicit', {
        upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 },
      });
      const report = await t.sync(source);
      expect(report.deletedUpstream).toBe(0);
      expect(report.upstreamUsage).toMatchObject({ limitBytes: 1024 * 1024 });
      expect(report.upstreamUsage!.usedBytes).toBeGreaterThan(20_000);
      expect(report.upstreamUsage!.afterBytes).toBe(report.upstreamUsage!.usedBytes);
    });

    it('POP3: STAT octets against capacityBytes, the oldest go first', async () => {
      const user = lab.createUser('uqp');
      fill(user, 10, 'p', 5000);
      const served = await serverState(lab, user);
      const octets = served.messages.reduce((n, m) => n + m.size, 0);
      const capacity = Math.floor(octets / 0.95); // 95% full
      const source = t.source(user, 'pop3', 'implicit', {
        upstreamQuota: { maxUsagePercent: 90, targetPercent: 75, capacityBytes: capacity },
      });
      const report = await t.sync(source);
      const left = await serverState(lab, user);
      const leftOctets = left.messages.reduce((n, m) => n + m.size, 0);
      expect(leftOctets).toBeLessThanOrEqual(0.75 * capacity);
      expect(leftOctets).toBeGreaterThan(0.75 * capacity - 5100); // no more than needed
      expect(left.messages.map((m) => m.uid)).toEqual(
        served.messages.slice(-left.messages.length).map((m) => m.uid),
      );
      expect(report.deletedUpstream).toBe(served.messages.length - left.messages.length);
    });

    it('with the store refusing writes, nothing is deleted upstream', async () => {
      const user = lab.createUser('uqd', { quotaBytes: 100 * 1024 });
      fill(user, 19, 'd', 5000);
      await lab.recalcQuota(user);
      const before = await serverState(lab, user);
      // The same Tributary with its raw store gone: the S3 endpoint on a port where nothing listens, or the embedded
      // store's mail folder under a path that cannot be a folder (a file in the way), so every put, get and head fails.
      const dead = new TestTributary(lab, t.storeSpec);
      const gone = deadRawStore(t);
      dead.deps.store = gone.store;
      const source = dead.source(user, 'imap', 'implicit', {
        retention: { mode: 'delete-on-retrieve' },
        upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 },
      });
      try {
        const failed = await dead.sync(source, { timeoutMs: 10_000 });
        expect(failed.outcome).toBe('failed');
        expect(failed.deletedUpstream).toBe(0);
        expect((await serverState(lab, user)).messages).toEqual(before.messages);

        // Committed while the store worked, then the store stops: the check right before the delete fails.
        t.passwords.set(source.id, user.password);
        const keepFirst = await t.sync({ ...source, retention: { mode: 'keep' }, upstreamQuota: undefined });
        expect(keepFirst.fetched).toBe(19);
        const refused = await dead.sync(source, { timeoutMs: 10_000 });
        expect(refused.outcome).toBe('failed');
        expect(refused.deletedUpstream).toBe(0);
        expect((await serverState(lab, user)).messages.map((m) => m.uid)).toEqual(
          before.messages.map((m) => m.uid),
        );
        expect(await audit(source.id)).toEqual([]);
      } finally {
        gone.close();
        dead.close();
      }
    });

    it('a stored copy that no longer matches its record is kept upstream', async () => {
      const user = lab.createUser('uqc');
      fill(user, 3, 'c');
      const source = t.source(user, 'pop3', 'implicit');
      expect((await t.sync(source)).fetched).toBe(3);
      const [victim] = await t.stored(source.id);
      // Corrupt one stored object behind Tributary's back.
      await t.store.put(
        victim!.object.key,
        (async function* () {
          yield Buffer.from('not the message');
        })(),
        {},
      );
      const report = await t.sync({ ...source, retention: { mode: 'delete-on-retrieve' } });
      expect(report.deletedUpstream).toBe(2);
      expect(report.notes.join('\n')).toMatch(/does not match its size and sha256, so it is kept upstream/);
      const left = await serverState(lab, user);
      // The one kept is the corrupted one, and no audit record names it.
      expect(left.messages.map((m) => m.sha256)).toEqual([victim!.object.sha256]);
      expect((await audit(source.id)).map((r) => r.target)).not.toContain(victim!.identity);
      expect(await audit(source.id)).toHaveLength(2);
    });
  });

  describe('inbox quota', () => {
    it('pause: fetching stops at the limit, the rest stays upstream untouched, and the status says so', async () => {
      const user = lab.createUser('iqp');
      fill(user, 5, 'pause');
      const before = await serverState(lab, user);
      const source = t.source(user, 'imap', 'implicit', {
        inboxQuota: { maxMessages: 3, onExceed: 'pause' },
      });

      const first = await t.sync(source);
      expect([first.outcome, first.fetched]).toEqual(['paused', 3]);
      expect(first.notes.join()).toMatch(
        /paused by the inbox quota \(3 of 3 messages\): 2 message\(s\) stay upstream/,
      );
      const again = await t.sync(source);
      expect([again.outcome, again.fetched]).toEqual(['paused', 0]);
      expect(await serverState(lab, user)).toEqual(before); // flags, MODSEQ, everything
      expect((await t.index.summary(source.id)).lastRun?.outcome).toBe('paused');

      // Raising the limit resumes where it stopped, nothing twice.
      const raised = await t.sync({ ...source, inboxQuota: { maxMessages: 10, onExceed: 'pause' } });
      expect([raised.outcome, raised.fetched]).toEqual(['ok', 2]);
      expect((await storedShas(source.id)).size).toBe(5);
    });

    it('pause over POP3 by bytes', async () => {
      const user = lab.createUser('iqb');
      fill(user, 4, 'bytes', 3000);
      const source = t.source(user, 'pop3', 'implicit', {
        inboxQuota: { maxBytes: 7000, onExceed: 'pause' },
      });
      const first = await t.sync(source);
      expect([first.outcome, first.fetched]).toEqual(['paused', 2]);
      expect((await serverState(lab, user)).messages).toHaveLength(4);
    });

    it('evict-oldest: removes the oldest copies still upstream, never one that exists nowhere else', async () => {
      const user = lab.createUser('iqe');
      fill(user, 5, 'evict');
      const source = t.source(user, 'imap', 'implicit', {
        inboxQuota: { maxMessages: 5, onExceed: 'evict-oldest' },
      });
      expect((await t.sync(source)).evicted).toBe(0);
      const served = await serverState(lab, user);

      // The user deletes the two oldest upstream with another client: their stored copies are now the only ones.
      const client = await lab.imap(user);
      try {
        await client.mailboxOpen('INBOX');
        await client.messageDelete(`${served.messages[0]!.uid}:${served.messages[1]!.uid}`, { uid: true });
      } finally {
        await client.logout();
      }
      fill(user, 2, 'evict', 2000, 5);
      const report = await t.sync(source);

      expect([report.fetched, report.evicted]).toEqual([2, 2]);
      const evictedUids = [served.messages[2]!.uid, served.messages[3]!.uid];
      const stored = await t.stored(source.id);
      expect(stored).toHaveLength(5);
      const storedUids = stored.map((m) => (m.upstream.kind === 'imap' ? m.upstream.uid : -1));
      for (const uid of evictedUids) expect(storedUids).not.toContain(uid);
      // The two that exist nowhere else are still stored.
      for (const m of served.messages.slice(0, 2)) expect(storedUids).toContain(m.uid);
      // The evicted ones are still upstream, their objects gone, their identities known (not fetched again).
      const left = await serverState(lab, user);
      for (const uid of evictedUids) expect(left.messages.map((m) => m.uid)).toContain(uid);
      const trail = await audit(source.id);
      expect(trail.map((r) => [r.action, r.state])).toEqual([
        ['evict', 'done'],
        ['evict', 'done'],
      ]);
      for (const r of trail) expect(await t.store.head(r.object.key)).toBeUndefined();
      expect(await t.index.inboxUsage(source.id)).toMatchObject({ messages: 5 });
      const page = await t.index.listInbox({ sourceId: source.id, limit: 50 });
      expect(page.items).toHaveLength(5);
      const again = await t.sync(source);
      expect([again.fetched, again.evicted, again.deletedUpstream]).toEqual([0, 0, 0]);
    });
  });

  describe('keep', () => {
    it.each(['imap', 'pop3'] as const)(
      '%s: 20 syncs leave upstream count, flags and MODSEQ unchanged',
      async (protocol) => {
        const user = lab.createUser(`keep${protocol}`);
        fill(user, 6, 'keep');
        await lab.append(user, [mail(100, 'flagged')], 'INBOX', ['\\Flagged']);
        await lab.append(user, [mail(101, 'seen')], 'INBOX', ['\\Seen', '\\Answered']);
        const original = await serverState(lab, user);
        const source = t.source(user, protocol);
        const first = await t.sync(source);
        expect([first.outcome, first.fetched, first.deletedUpstream]).toEqual(['ok', 8, 0]);
        // IMAP reads with BODY.PEEK: not even the first sync changes a flag. Dovecot's POP3 marks a message \Seen
        // when it is RETRieved (unless the server sets pop3_no_flag_updates): that happens once, at the first sync;
        // from then on a POP3 keep source must not change anything either.
        const baseline = protocol === 'imap' ? original : await serverState(lab, user);
        if (protocol === 'imap') expect(await serverState(lab, user)).toEqual(original);
        let fetched = 0;
        for (let i = 1; i < 20; i++) {
          const r = await t.sync(source);
          expect([r.outcome, r.deletedUpstream, r.evicted]).toEqual(['ok', 0, 0]);
          fetched += r.fetched;
        }
        expect(fetched).toBe(0);
        const after = await serverState(lab, user);
        expect(after).toEqual(baseline); // every UID, size, sha256, flag, and HIGHESTMODSEQ
        expect(after.messages.map(({ uid, size, sha256 }) => ({ uid, size, sha256 }))).toEqual(
          original.messages.map(({ uid, size, sha256 }) => ({ uid, size, sha256 })),
        );
        expect(await audit(source.id)).toEqual([]);
      },
    );
  });

  describe('tributary plan', () => {
    it.each(['imap', 'pop3'] as const)(
      '%s: the dry run changes nothing and the next sync does exactly what it said',
      async (protocol) => {
        const user = lab.createUser(`plan${protocol}`);
        const clock = fakeClock(Date.parse('2026-05-01T08:00:00Z'));
        const tt = new TestTributary(lab, t.storeSpec);
        tt.deps.clock = clock;
        const source: Source = tt.source(user, protocol, 'implicit', {
          retention: { mode: 'delete-after-days', days: 7 },
        });
        try {
          fill(user, 4, 'old');
          expect((await tt.sync(source, { deadline: clock.at + 120_000 })).fetched).toBe(4);
          clock.at += 8 * DAY;
          fill(user, 3, 'new', 2000, 4);
          const before = await serverState(lab, user);

          const plan = await planSource(tt.deps, source);

          expect(await serverState(lab, user)).toEqual(before);
          expect(await tt.index.inboxUsage(source.id)).toMatchObject({ messages: 4 });
          expect(plan.fetch).toHaveLength(3);
          expect(plan.deletes).toHaveLength(4);
          expect(plan.deletes.every((d) => d.policy === 'delete-after-days')).toBe(true);

          const storedBefore = new Set((await tt.stored(source.id)).map((m) => m.identity));
          const report = await tt.sync(source, { deadline: clock.at + 120_000 });
          const fetchedNow = (await tt.stored(source.id))
            .map((m) => m.identity)
            .filter((i) => !storedBefore.has(i));
          expect(fetchedNow.sort()).toEqual(plan.fetch.map((f) => f.identity).sort());
          const done = (await audit(source.id)).filter((r) => r.state === 'done').map((r) => r.identity);
          expect(done.sort()).toEqual(plan.deletes.map((d) => d.identity).sort());
          expect(report.deletedUpstream).toBe(4);
        } finally {
          tt.close();
        }
      },
    );

    it('predicts the inbox quota pause and the upstream quota deletes', async () => {
      const user = lab.createUser('planq', { quotaBytes: 100 * 1024 });
      fill(user, 19, 'pq', 5000);
      await lab.recalcQuota(user);
      const source = t.source(user, 'imap', 'implicit', {
        upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 },
        inboxQuota: { maxMessages: 15, onExceed: 'pause' },
      });
      const plan = await planSource(t.deps, source);
      expect(plan.fetch).toHaveLength(15);
      expect(plan.leftByPause).toBe(4);
      expect(plan.deletes.length).toBeGreaterThan(0);
      const report = await t.sync(source);
      expect([report.outcome, report.fetched]).toEqual(['paused', 15]);
      const done = (await audit(source.id)).filter((r) => r.state === 'done').map((r) => r.identity);
      expect(done.sort()).toEqual(plan.deletes.map((d) => d.identity).sort());
    });
  });
});
