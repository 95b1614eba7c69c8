import fs from 'node:fs';
import path from 'node:path';
import {
  bulkCorpus,
  header8bitLatin1,
  header8bitUtf8,
  standardCorpus,
  type CorpusMessage,
} from '../../support/corpus';
import { CourierLab, RawImap, courierUpstream, imapSnapshot, pop3Snapshot } from '../../support/courier-lab';
import type { CourierUser } from '../../support/courier';
import { MailLab } from '../../support/mail-lab';
import { Reconciler, type Reconciliation } from '../../support/reconciler';
import { TestTributary } from '../../support/tributary';
import { sha256 } from '../../support/upstream';
import type { Source, SourceRunReport } from '../../../functions/core/model';

const found = CourierLab.fromEnv();
const lab = found instanceof CourierLab ? found : undefined;
if (!lab) process.stderr.write(`[courier] skipped: ${(found as { unavailable: string }).unavailable}\n`);
const describeCourier = lab ? describe : describe.skip;

// TestTributary is Tributary wired to the harness's DynamoDB Local and S3; its Dovecot lab only supplies
// defaults, which every source below overrides with Courier's address, port and CA.
const t = new TestTributary(MailLab.fromEnv());
afterAll(() => t.close());

function courierSource(
  user: CourierUser,
  protocol: 'imap' | 'pop3',
  mode: 'implicit' | 'none',
  overrides: Partial<Source> = {},
): Source {
  const ep = lab!.endpoint(protocol, mode);
  return t.source(user, protocol, mode, {
    host: ep.host,
    port: ep.port,
    ca: lab!.ca.toString(),
    servername: lab!.info.servername,
    ...overrides,
  });
}

/**
 * What Courier serves for a corpus message delivered the way its MDA stores mail (LF on disk): the original,
 * unless a line ends in a bare CR or LF (both come back as CRLF, so a test cannot expect the original); POP3
 * adds the CRLF a last line lacks.
 */
function servedOriginal(raw: Buffer, protocol: 'imap' | 'pop3'): Buffer | undefined {
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x0a && raw[i - 1] !== 0x0d) return undefined;
    if (raw[i] === 0x0d && raw[i + 1] !== 0x0a) return undefined;
  }
  const crlf = raw.subarray(-2).toString('latin1') === '\r\n';
  return protocol === 'pop3' && !crlf ? Buffer.concat([raw, Buffer.from('\r\n')]) : raw;
}

const sorted = (xs: string[]) => [...xs].sort();

/**
 * The run went well: no error (a report without one has no `error` key at all, so `toMatchObject({error:
 * undefined})` cannot say it; the error, if any, is asserted first so that a failure shows it), outcome `ok`,
 * and the given counters.
 */
function expectOk(r: SourceRunReport, counters: Partial<SourceRunReport> = {}): void {
  expect(r.error).toBeUndefined();
  expect(r).toMatchObject({ outcome: 'ok', ...counters });
}

/** The flags of every message of INBOX, keyed by the sha256 of its bytes, read with EXAMINE (changes nothing). */
async function flagsByContent(c: CourierLab, user: CourierUser): Promise<Record<string, string[]>> {
  const imap = await RawImap.login(c.endpoint('imap', 'none'), user);
  try {
    expect((await imap.command('EXAMINE INBOX')).status).toMatch(/^\S+ OK/);
    const fetched = await imap.command('UID FETCH 1:* (FLAGS BODY.PEEK[])');
    const out: Record<string, string[]> = {};
    for (const r of fetched.untagged) {
      const flags = /FLAGS \(([^)]*)\)/.exec(r.text);
      if (!flags || r.literals.length !== 1) continue;
      out[sha256(r.literals[0]!)] = flags[1]!.split(' ').filter(Boolean).sort();
    }
    return out;
  } finally {
    await imap.logout();
  }
}

function report(label: string, r: Reconciliation): void {
  process.stdout.write(
    `[reliability] courier ${label}: lost ${r.lost}, duplicated ${r.duplicated}, wrongly deleted ${r.wronglyDeleted}, ` +
      `corrupt ${r.corrupt}, unfetched ${r.unfetched}, foreign ${r.foreign} ` +
      `(expected ${r.expected}, upstream ${r.upstream}, stored ${r.stored})\n`,
  );
}

/** Stored bytes, as sha256, of every message of the source. */
async function storedShas(sourceId: string): Promise<string[]> {
  const out: string[] = [];
  for (const m of await t.stored(sourceId)) out.push(sha256(await t.bytes(m.object.key)));
  return out;
}

/** Byte-exact against the corpus itself: each original Courier keeps must come back from the store as it was. */
function expectOriginalsStored(corpus: CorpusMessage[], protocol: 'imap' | 'pop3', stored: string[]): void {
  const kept = corpus.filter((m) => servedOriginal(m.raw, protocol) !== undefined);
  expect(kept.length).toBeGreaterThan(corpus.length - 2);
  const missing = kept
    .filter((m) => !stored.includes(sha256(servedOriginal(m.raw, protocol)!)))
    .map((m) => m.name);
  expect(missing).toEqual([]);
}

describeCourier('IMAP sync against Courier', () => {
  const c = lab!;

  it.each(['implicit', 'none'] as const)(
    'stores every corpus message byte-exact over TLS mode %s; a re-sync fetches nothing, under the same UIDVALIDITY',
    async (mode) => {
      const user = c.createUser();
      const corpus = standardCorpus(7);
      for (const m of corpus) c.deliver(user, m.raw);
      const rec = await new Reconciler(courierUpstream(c, user, 'imap')).start();
      const served = await imapSnapshot(c.endpoint('imap', 'implicit'), user, { enableUtf8: true });
      const source = courierSource(user, 'imap', mode);

      const first = await t.sync(source);
      // Failed before the adapter asked STATUS: Courier's EXAMINE has no [UIDNEXT] (STORAGE_FAILED ... NaN).
      expectOk(first, { fetched: corpus.length });
      const stored = await storedShas(source.id);
      expect(sorted(stored)).toEqual(sorted(served.messages.map((m) => sha256(m.bytes))));
      expectOriginalsStored(corpus, 'imap', stored);

      // Courier's UIDVALIDITY is the clock's second: a re-sync within the same second could not see it move.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const second = await t.sync(source);
      const r = await rec.finish(t, source.id);
      report(`IMAP ${mode} keep`, r);
      expect(r).toMatchObject({ lost: 0, duplicated: 0, wronglyDeleted: 0, corrupt: 0, unfetched: 0 });
      // Failed before the adapter SELECTed each Courier folder once per session: a folder that was only ever
      // EXAMINEd gets a new UIDVALIDITY in every session (Courier saves its UID list only when a session may
      // write), so the re-sync downloaded everything again to match it by content (the `skipped`).
      expectOk(second, { fetched: 0, skipped: 0 });
      expect(second.notes.filter((n) => /UIDVALIDITY/.test(n))).toEqual([]);
    },
  );
});

describeCourier('IMAP sync against Courier, the folder once opened read-write', () => {
  const c = lab!;

  it('re-syncs without fetching anything once a client has SELECTed the folder (Courier then keeps its UIDs)', async () => {
    const user = c.createUser();
    for (const m of bulkCorpus(10, 43, { maxBytes: 20_000 })) c.deliver(user, m.raw);
    const client = await RawImap.login(c.endpoint('imap', 'none'), user);
    expect((await client.command('SELECT INBOX')).status).toMatch(/^\S+ OK/);
    await client.logout();
    const source = courierSource(user, 'imap', 'implicit');
    expectOk(await t.sync(source), { fetched: 10 });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expectOk(await t.sync(source), { fetched: 0, skipped: 0, notes: [] });
  });

  it('a keep sync leaves every flag as it was (\\Seen, \\Answered, \\Flagged, \\Deleted, unseen), although it SELECTs the folder once', async () => {
    const user = c.createUser();
    const corpus = bulkCorpus(5, 47, { maxBytes: 20_000 });
    // Maildir flags in the file name (cur/<name>:2,<flags>): S \Seen, R \Answered, F \Flagged, T \Deleted.
    // The last message stays in new/: unseen and \Recent.
    const infos = [':2,S', ':2,RS', ':2,F', ':2,ST'];
    corpus.forEach((m, i) => {
      const file = c.deliver(user, m.raw);
      const info = infos[i];
      if (info !== undefined) fs.renameSync(file, path.join(user.maildir, 'cur', path.basename(file) + info));
    });
    const before = await flagsByContent(c, user);
    // The flags are set, and differ: otherwise "unchanged" would prove nothing.
    expect(Object.values(before).map((f) => f.filter((x) => x !== '\\Recent').join(' '))).toEqual(
      expect.arrayContaining(['\\Seen', '\\Answered \\Seen', '\\Flagged', '\\Deleted \\Seen', '']),
    );
    const source = courierSource(user, 'imap', 'implicit');
    expectOk(await t.sync(source), { fetched: corpus.length });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expectOk(await t.sync(source), { fetched: 0, skipped: 0 });
    const after = await flagsByContent(c, user);
    // \Recent is the only flag a SELECT may take (it belongs to one session); every other flag is as it was,
    // and no message is gone (the \Deleted one was not expunged).
    const withoutRecent = (all: Record<string, string[]>) =>
      Object.fromEntries(Object.entries(all).map(([k, f]) => [k, f.filter((x) => x !== '\\Recent')]));
    expect(withoutRecent(after)).toEqual(withoutRecent(before));
    expect(Object.keys(after)).toHaveLength(corpus.length);
  });
});

describeCourier('POP3 sync against Courier', () => {
  const c = lab!;

  it.each(['implicit', 'none'] as const)(
    'stores every corpus message byte-exact over TLS mode %s, 8-bit headers as sent (not a notice), and leaves the maildrop as it was',
    async (mode) => {
      const user = c.createUser();
      const corpus = standardCorpus(5);
      for (const m of corpus) c.deliver(user, m.raw);
      const rec = await new Reconciler(courierUpstream(c, user, 'pop3')).start();
      // The maildrop as a UTF8 client sees it: the messages themselves.
      const before = await pop3Snapshot(c.endpoint('pop3', 'implicit'), user, { utf8: true });
      const source = courierSource(user, 'pop3', mode);

      const first = await t.sync(source);
      expectOk(first, { fetched: corpus.length });
      const byUidl = new Map<string, string>();
      for (const m of await t.stored(source.id)) {
        if (m.upstream.kind !== 'pop3') throw new Error('not a POP3 identity');
        byUidl.set(m.upstream.uidl, sha256(await t.bytes(m.object.key)));
      }
      // Known to fail before the adapter sends UTF8 (RFC 6856): Courier serves each message with an 8-bit
      // header as a generated "Cannot display Unicode content" notice, and that notice is what gets stored.
      const mismatched = before.messages
        .filter((m) => byUidl.get(m.uidl) !== sha256(m.bytes))
        .map((m) => `${m.uidl} (LIST ${m.size})`);
      expect(mismatched).toEqual([]);
      expectOriginalsStored(corpus, 'pop3', [...byUidl.values()]);

      expectOk(await t.sync(source), { fetched: 0, skipped: 0 });
      const after = await pop3Snapshot(c.endpoint('pop3', 'implicit'), user, { utf8: true });
      expect(after.messages.map((m) => [m.uidl, sha256(m.bytes)])).toEqual(
        before.messages.map((m) => [m.uidl, sha256(m.bytes)]),
      );

      const r = await rec.finish(t, source.id);
      report(`POP3 ${mode} keep`, r);
      expect(r).toMatchObject({ lost: 0, duplicated: 0, wronglyDeleted: 0, corrupt: 0, unfetched: 0 });
    },
  );

  it('delete-on-retrieve deletes upstream exactly what it stored, 8-bit headers included, each with a done audit record', async () => {
    const user = c.createUser();
    const corpus = [...bulkCorpus(12, 41, { maxBytes: 20_000 }), header8bitUtf8(41), header8bitLatin1(41)];
    for (const m of corpus) c.deliver(user, m.raw);
    const rec = await new Reconciler(courierUpstream(c, user, 'pop3')).start();
    const source = courierSource(user, 'pop3', 'implicit', { retention: { mode: 'delete-on-retrieve' } });

    const run = await t.sync(source);
    const again = await t.sync(source); // resolves whatever the first left, deletes nothing twice
    const r = await rec.finish(t, source.id);
    report('POP3 delete-on-retrieve', r);
    // The durability contract first: whatever else went wrong, nothing may be lost or deleted unverified.
    expect({ lost: r.lost, wronglyDeleted: r.wronglyDeleted }).toEqual({ lost: 0, wronglyDeleted: 0 });
    expectOk(run, { fetched: corpus.length, deletedUpstream: corpus.length });
    expectOk(again, { fetched: 0, deletedUpstream: 0 });
    expect(r).toMatchObject({ duplicated: 0, corrupt: 0, unfetched: 0, upstream: 0, stored: corpus.length });
    const done = [];
    for await (const a of t.index.auditTrail(source.id))
      if (a.action === 'delete-upstream' && a.state === 'done') done.push(a);
    expect(done).toHaveLength(corpus.length);
    expectOriginalsStored(corpus, 'pop3', await storedShas(source.id));
  });
});
