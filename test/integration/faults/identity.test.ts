import type { Source } from '../../../functions/core/model';
import type { Bytes, RawMailStore } from '../../../functions/core/ports';
import { bigMessage, bulkCorpus, sameMessageIdPair } from '../../support/corpus';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { Reconciler, type Reconciliation } from '../../support/reconciler';
import { TestTributary } from '../../support/tributary';
import { serverState, sha256 } from '../../support/upstream';

/**
 * Identity anomalies (docs/decisions/0004-identity-anomalies-and-policy-order.md): the server changes what names a message. Each ends reconciled: 0 lost,
 * 0 duplicated, 0 wrongly deleted.
 */
const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

function deliverAll(user: TestUser, raws: Array<Buffer | string>, r?: Reconciler, folder = ''): void {
  for (const raw of raws) {
    lab.deliver(user, raw, folder);
    r?.appended(raw);
  }
}

const mails = (n: number, seed: number) =>
  bulkCorpus(n, seed, { maxBytes: 6_000, attachmentRatio: 0 }).map((m) => m.raw);

function report(name: string, r: Reconciliation): void {
  console.log(
    `[reliability] identity ${name}: expected ${r.expected}, stored ${r.stored}, upstream ${r.upstream}: lost ${r.lost}, duplicated ${r.duplicated}, wrongly deleted ${r.wronglyDeleted}, unfetched ${r.unfetched}`,
  );
  expect(r).toMatchObject({ lost: 0, duplicated: 0, wronglyDeleted: 0, corrupt: 0, unfetched: 0 });
}

describe('identity anomalies', () => {
  it.each(['imap', 'pop3'] as const)(
    '%s: a UIDVALIDITY bump (for POP3, every UIDL changes) stores nothing twice',
    async (protocol) => {
      const user = lab.createUser(`uv${protocol}`);
      deliverAll(user, mails(5, 10));
      const r = await new Reconciler(lab, user).start();
      const source = t.source(user, protocol);
      expect((await t.sync(source)).fetched).toBe(5);
      const before = await lab.status(user);
      await lab.setUidValidity(user, Number(before.uidValidity) + 11);
      deliverAll(user, mails(2, 11), r);
      const after = await t.sync(source);
      expect(after.fetched).toBe(2);
      expect(after.skipped).toBe(5);
      report(`${protocol} UIDVALIDITY bump`, await r.finish(t, source.id));
    },
  );

  it('imap: a folder re-created with the same UIDVALIDITY and its UIDs reused is fetched, not skipped', async () => {
    const user = lab.createUser('recreate');
    const old = mails(4, 20);
    deliverAll(user, old, undefined, '.Archive');
    const source: Source = t.source(user, 'imap', 'implicit', { folders: ['Archive'] });
    expect((await t.sync(source)).fetched).toBe(4);
    const { uidValidity, uidNext } = await lab.status(user, 'Archive');
    expect(uidNext).toBe(5);

    const r = await new Reconciler(lab, user, ['Archive']).start();
    await lab.doveadm('mailbox', 'delete', '-u', user.name, 'Archive');
    for (const raw of old) r.deletedByUser(sha256(raw));
    await lab.doveadm('mailbox', 'create', '-u', user.name, 'Archive');
    await lab.setUidValidity(user, Number(uidValidity), 'Archive');
    // UIDs 1..3 again: two new messages and one byte-identical to an old one.
    const fresh = [...mails(2, 21), old[1]!];
    deliverAll(user, fresh, r, '.Archive');
    const status = await lab.status(user, 'Archive');
    expect([status.uidValidity, status.uidNext]).toEqual([uidValidity, 4]);

    const report1 = await t.sync(source);
    expect(report1.notes.join('\n')).toMatch(/UIDNEXT went back \(5 -> 4\) under the same UIDVALIDITY/);
    expect([report1.fetched, report1.skipped]).toEqual([2, 1]);
    expect((await t.sync(source)).fetched).toBe(0);
    const result = await r.finish(t, source.id);
    // The four old copies stay in the store (deleted upstream by someone else, they exist nowhere else).
    expect(result.stored).toBe(6);
    report('imap folder re-created, same UIDVALIDITY', result);
  });

  it.each(['imap', 'pop3'] as const)(
    '%s: two identical messages, and two with the same Message-ID, are each stored once per copy',
    async (protocol) => {
      const user = lab.createUser(`twin${protocol}`);
      const [a, b] = sameMessageIdPair(30);
      const twin = mails(1, 31)[0]!;
      deliverAll(user, [twin, twin, a.raw, b.raw]);
      const r = await new Reconciler(lab, user).start();
      const source = t.source(user, protocol);
      expect((await t.sync(source)).fetched).toBe(4);
      if (protocol === 'pop3') {
        // Then every UIDL changes: each new UIDL matches one stored copy, never both the same one.
        const { uidValidity } = await lab.status(user);
        await lab.setUidValidity(user, Number(uidValidity) + 5);
        const again = await t.sync(source);
        expect([again.fetched, again.skipped]).toEqual([0, 4]);
      }
      report(`${protocol} identical twins and a shared Message-ID`, await r.finish(t, source.id));
    },
  );

  it.each(['imap', 'pop3'] as const)(
    '%s: messages expunged by another client in the middle of a sync',
    async (protocol) => {
      const user = lab.createUser(`exp${protocol}`);
      // Over 1 MB, fetched in partial FETCHes above 1 MB (wholeMessageBytes below): IMAP fetches each by itself, so
      // the expunge lands between two of them.
      deliverAll(
        user,
        Array.from({ length: 6 }, (_, i) => bigMessage(1_100_000 + i, 40 + i)),
      );
      const r = await new Reconciler(lab, user).start();
      const state = await serverState(lab, user);
      const victims = state.messages.slice(3, 5);
      for (const v of victims) r.deletedByUser(v.sha256);

      // After the first object is written, another client expunges two later messages.
      let puts = 0;
      const store: RawMailStore = Object.create(t.store) as RawMailStore;
      store.put = async (key: string, body: Bytes, info: { sha256?: string; size?: number }) => {
        await t.store.put(key, body, info);
        if (++puts === 1) {
          const client = await lab.imap(user);
          try {
            await client.mailboxOpen('INBOX');
            await client.messageDelete(victims.map((v) => v.uid).join(','), { uid: true });
          } finally {
            await client.logout();
          }
        }
      };
      const tt = new TestTributary(lab);
      tt.deps.store = store;
      const source = tt.source(user, protocol);
      try {
        // One store-and-commit job at a time, so the fetch is at most one message ahead when the expunge lands; with
        // the full pipeline the later messages may already be downloaded (and are then stored, legitimately).
        const first = await tt.sync(source, { pipelineJobs: 1, wholeMessageBytes: 1024 * 1024 });
        expect(first.outcome).toBe('ok');
        // IMAP no longer serves an expunged UID. Dovecot's POP3 session keeps the maildrop as it was at login
        // (RFC 1939), so it may still serve them: stored then, and legitimately so.
        if (protocol === 'imap') expect(first.fetched).toBe(4);
        else expect([4, 6]).toContain(first.fetched);
        expect((await t.sync(source)).fetched).toBe(0);
      } finally {
        tt.close();
      }
      report(`${protocol} expunged mid-sync`, await r.finish(t, source.id));
    },
  );
});
