import { randomBytes } from 'node:crypto';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { MessageRecord, Source } from '../../../functions/core/model';
import { MailLab } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';
import { serverState, sha256 } from '../../support/upstream';

/**
 * Same message, one copy (decision 0007), against Dovecot, DynamoDB Local and s3rver: a message that reaches the
 * store through two folders or two accounts is stored once and listed once with every place it came through,
 * while each source keeps its own items, counters and policies.
 */

const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

/**
 * A message unique to the test (`tag`), dated in 2099 so it heads the merged inbox the other tests share; `n` orders
 * messages of one tag by date.
 */
function mail(tag: string, n = 0, bytes = 2000): string {
  const head =
    `From: Sender <s@example.org>\r\nTo: me@example.org\r\nSubject: ${tag} ${n}\r\n` +
    `Date: Thu, 01 Jan 2099 00:${String(n).padStart(2, '0')}:00 +0000\r\n` +
    `Message-ID: <${tag}.${n}@example.org>\r\n\r\n`;
  const line = `${tag} ${n} `.repeat(6).trim() + '\r\n';
  return head + line.repeat(Math.ceil((bytes - head.length) / line.length));
}

const newTag = () => `one-copy-${randomBytes(5).toString('hex')}`;

/** Objects stored under these sources' prefixes. */
async function objects(...sourceIds: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const id of sourceIds) {
    const listed = await t.clients.s3.send(
      new ListObjectsV2Command({ Bucket: t.bucket, Prefix: `raw/${id}/` }),
    );
    out.push(...(listed.Contents ?? []).map((o) => o.Key!));
  }
  return out.sort();
}

/** The merged inbox entries of one tag (they head the inbox: dated 2099). */
async function merged(tag: string): Promise<MessageRecord[]> {
  const page = await t.index.listInbox({ limit: 200 });
  return page.items.filter((m) => m.metadata.subject?.startsWith(`${tag} `));
}

/** Every committed item of the source holds an object that exists with its size and sha256. */
async function expectIntact(sourceId: string): Promise<MessageRecord[]> {
  const stored = await t.stored(sourceId);
  for (const m of stored) {
    const bytes = await t.bytes(m.object.key);
    expect({ size: bytes.length, sha: sha256(bytes) }).toEqual({ size: m.object.size, sha: m.object.sha256 });
  }
  return stored;
}

const via = (source: Source, m: MessageRecord) => ({ sourceId: source.id, identity: m.identity });
const byVia = (a: { sourceId: string; identity: string }, b: { sourceId: string; identity: string }) =>
  `${a.sourceId}#${a.identity}` < `${b.sourceId}#${b.identity}` ? -1 : 1;

describe('the same message through two folders and two accounts', () => {
  it('is stored once and listed once with every place, each source keeping its own items and counters', async () => {
    const tag = newTag();
    const [ann, bob] = [lab.createUser('oca'), lab.createUser('ocb')];
    const shared = mail(tag, 1);
    lab.deliver(ann, shared);
    lab.deliver(ann, shared, '.Archive');
    lab.deliver(ann, mail(tag, 2));
    lab.deliver(bob, shared);
    lab.deliver(bob, mail(tag, 3));
    const a = t.source(ann, 'imap', 'implicit', { folders: ['INBOX', 'Archive'] });
    // Over POP3: a message without NUL is served byte for byte as over IMAP, so it is the same content.
    const b = t.source(bob, 'pop3', 'implicit');

    expect((await t.sync(a)).fetched).toBe(3);
    expect((await t.sync(b)).fetched).toBe(2);

    const storedA = await expectIntact(a.id);
    const storedB = await expectIntact(b.id);
    expect([storedA.length, storedB.length]).toEqual([3, 2]);
    // Counters count each source's own items, shared or not.
    const size = (list: MessageRecord[]) => list.reduce((n, m) => n + m.object.size, 0);
    expect(await t.index.inboxUsage(a.id)).toEqual({ messages: 3, bytes: size(storedA) });
    expect(await t.index.inboxUsage(b.id)).toEqual({ messages: 2, bytes: size(storedB) });
    // The shared bytes once, the two others once each.
    const copies = [...storedA, ...storedB].filter((m) => m.object.sha256 === sha256(Buffer.from(shared)));
    expect(copies).toHaveLength(3);
    expect(new Set(copies.map((m) => m.object.key)).size).toBe(1);
    expect(await objects(a.id, b.id)).toHaveLength(3);

    const entries = await merged(tag);
    expect(entries.map((m) => m.metadata.subject).sort()).toEqual([`${tag} 1`, `${tag} 2`, `${tag} 3`]);
    const one = entries.find((m) => m.metadata.subject === `${tag} 1`)!;
    expect(one.via).toEqual(
      [
        ...storedA.filter((m) => m.object.sha256 === one.object.sha256).map((m) => via(a, m)),
        ...storedB.filter((m) => m.object.sha256 === one.object.sha256).map((m) => via(b, m)),
      ].sort(byVia),
    );
    expect((await t.index.listInbox({ sourceId: a.id, limit: 10 })).items).toHaveLength(3);
    expect((await t.index.listInbox({ sourceId: b.id, limit: 10 })).items).toHaveLength(2);
    // Nothing new the second time.
    expect((await t.sync(a)).fetched).toBe(0);
    expect((await t.sync(b)).fetched).toBe(0);
  });

  it('deletes upstream only the copy of the source whose policy says so; the other place and the bytes stay', async () => {
    const tag = newTag();
    const [ann, bob] = [lab.createUser('ocd'), lab.createUser('oce')];
    const shared = mail(tag, 1);
    lab.deliver(ann, shared);
    lab.deliver(bob, shared);
    const a = t.source(ann, 'imap', 'implicit');
    const b = t.source(bob, 'imap', 'implicit');
    expect((await t.sync(a)).fetched).toBe(1);
    expect((await t.sync(b)).fetched).toBe(1);

    const report = await t.sync({ ...b, retention: { mode: 'delete-on-retrieve' } });

    expect(report.deletedUpstream).toBe(1);
    expect((await serverState(lab, bob)).messages).toHaveLength(0);
    expect((await serverState(lab, ann)).messages.map((m) => m.sha256)).toEqual([
      sha256(Buffer.from(shared)),
    ]);
    await expectIntact(a.id);
    await expectIntact(b.id);
    expect((await merged(tag)).map((m) => m.via?.length)).toEqual([2]);
  });

  it('evicts a shared copy keeping the bytes, and the last reference with its object and merged entry', async () => {
    const tag = newTag();
    const [ann, bob] = [lab.createUser('ocf'), lab.createUser('ocg')];
    const shared = mail(tag, 1);
    lab.deliver(bob, shared);
    const b = t.source(bob, 'imap', 'implicit');
    expect((await t.sync(b)).fetched).toBe(1);
    const [held] = await t.stored(b.id);

    // Ann's oldest message is the shared one; her quota keeps two.
    lab.deliver(ann, shared);
    await new Promise((r) => setTimeout(r, 1100)); // a later INTERNALDATE (Maildir keeps seconds)
    lab.deliver(ann, mail(tag, 2));
    lab.deliver(ann, mail(tag, 3));
    const a = t.source(ann, 'imap', 'implicit', { inboxQuota: { maxMessages: 2, onExceed: 'evict-oldest' } });
    const first = await t.sync(a);
    expect([first.fetched, first.evicted]).toEqual([3, 1]);
    expect(await t.store.head(held!.object.key)).toBeDefined();
    await expectIntact(b.id);
    expect(await t.index.inboxUsage(a.id)).toMatchObject({ messages: 2 });
    const entry = (await merged(tag)).find((m) => m.metadata.subject === `${tag} 1`);
    expect(entry?.via).toEqual([{ sourceId: b.id, identity: held!.identity }]);

    // Bob's quota now evicts the last reference: the bytes and the merged entry go.
    await new Promise((r) => setTimeout(r, 1100));
    lab.deliver(bob, mail(tag, 4));
    const last = await t.sync({ ...b, inboxQuota: { maxMessages: 1, onExceed: 'evict-oldest' } });
    expect([last.fetched, last.evicted]).toEqual([1, 1]);
    expect(await t.store.head(held!.object.key)).toBeUndefined();
    expect((await merged(tag)).map((m) => m.metadata.subject).sort()).toEqual([
      `${tag} 2`,
      `${tag} 3`,
      `${tag} 4`,
    ]);
    await expectIntact(a.id);
    await expectIntact(b.id);
  });
});

describe('one copy under races and crashes', () => {
  it('two sources committing the same messages at the same time: each listed once with both places', async () => {
    const other = new TestTributary(lab);
    try {
      for (let round = 0; round < 3; round++) {
        const tag = newTag();
        const [ann, bob] = [lab.createUser('och'), lab.createUser('oci')];
        const mails = Array.from({ length: 12 }, (_, i) => mail(tag, i + 1, 1500 + 100 * i));
        for (const m of mails) {
          lab.deliver(ann, m);
          lab.deliver(bob, m);
        }
        const a = t.source(ann, 'imap', 'implicit');
        const b = other.source(bob, round === 1 ? 'pop3' : 'imap', 'implicit');
        const reports = await Promise.all([t.sync(a), other.sync(b)]);
        expect(reports.map((r) => [r.outcome, r.fetched])).toEqual([
          ['ok', 12],
          ['ok', 12],
        ]);
        const entries = await merged(tag);
        expect(entries).toHaveLength(12);
        for (const e of entries) expect(e.via?.map((v) => v.sourceId).sort()).toEqual([a.id, b.id].sort());
        // Twelve objects in all: the loser of each race deleted its own copy after its commit.
        expect(await objects(a.id, b.id)).toHaveLength(12);
        await expectIntact(a.id);
        await expectIntact(b.id);
        expect(await t.index.inboxUsage(b.id)).toMatchObject({ messages: 12 });
      }
    } finally {
      other.close();
    }
  });

  it('a run killed between the commit and the duplicate delete loses and duplicates nothing', async () => {
    const tag = newTag();
    const [ann, bob] = [lab.createUser('ocj'), lab.createUser('ock')];
    const mails = [1, 2, 3].map((n) => mail(tag, n));
    for (const m of mails) {
      lab.deliver(ann, m);
      lab.deliver(bob, m);
    }
    const a = t.source(ann, 'imap', 'implicit');
    const b = t.source(bob, 'imap', 'implicit');
    expect((await t.sync(a)).fetched).toBe(3);

    // Stopped at the first commit: its own copy is not deleted, the rest of the run never happens.
    const cut = await t.sync(b, {
      pipelineJobs: 1,
      onStep: (step) => {
        if (step === 'committed') throw new Error('killed');
      },
    });
    expect(cut.outcome).toBe('failed');
    expect(await objects(b.id)).toHaveLength(1); // the orphan the contract allows
    await expectIntact(b.id);

    const next = await t.sync(b);
    expect([next.outcome, next.fetched]).toEqual(['ok', 2]);
    const entries = await merged(tag);
    expect(entries).toHaveLength(3);
    for (const e of entries) expect(e.via).toHaveLength(2);
    expect((await expectIntact(b.id)).length).toBe(3);
    expect(await t.index.inboxUsage(b.id)).toMatchObject({ messages: 3 });
    expect(await objects(a.id)).toHaveLength(3);
  });
});
