import type { AuditRecord, MessageRecord, Source } from '../../../functions/core/model';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';
import { serverState } from '../../support/upstream';

/**
 * Intents an interrupted run left behind, resolved by the next run against what the server holds: the cases the
 * SIGKILL tests cannot reach on demand (a cut between UID STORE and UID EXPUNGE, a UIDVALIDITY change, a folder no
 * longer read), set up by writing the intent the way the run does.
 */
const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

function mail(i: number): string {
  return `From: a@example.org\r\nSubject: r${i}\r\nMessage-ID: <r${i}.${Math.random()}@x>\r\n\r\nbody ${i}\r\n`;
}

async function setUp(n: number): Promise<{ user: TestUser; source: Source; stored: MessageRecord[] }> {
  const user = lab.createUser('rec');
  for (let i = 0; i < n; i++) lab.deliver(user, mail(i));
  const source = t.source(user, 'imap');
  expect((await t.sync(source)).fetched).toBe(n);
  const stored = (await t.stored(source.id)).sort((a, b) => (a.identity < b.identity ? -1 : 1));
  return { user, source, stored };
}

/** Writes a delete intent for `m` under a lease, as the run does right before acting. */
async function leaveIntent(m: MessageRecord): Promise<AuditRecord> {
  const lease = (await t.index.acquireLease(m.sourceId, 'crashed-run', 1, Date.now()))!;
  const record: AuditRecord = {
    id: `${new Date().toISOString()}#000001#00000`,
    sourceId: m.sourceId,
    action: 'delete-upstream',
    policy: 'delete-on-retrieve',
    why: 'committed to the store',
    identity: m.identity,
    target: m.identity,
    object: { key: m.object.key, size: m.object.size, sha256: m.object.sha256 },
    at: new Date().toISOString(),
    state: 'intent',
  };
  await t.index.beginActions(lease, [record]);
  await new Promise((r) => setTimeout(r, 5)); // the crashed run's 1 ms lease has expired
  return record;
}

async function trail(sourceId: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for await (const r of t.index.auditTrail(sourceId)) out.push(r);
  return out;
}

describe('resolving what an interrupted run left', () => {
  it('a delete cut between UID STORE and UID EXPUNGE: not applied, and the \\Deleted flag it left is removed', async () => {
    const { user, source, stored } = await setUp(3);
    await leaveIntent(stored[0]!);
    const uid = stored[0]!.upstream.kind === 'imap' ? stored[0]!.upstream.uid : 0;
    const client = await lab.imap(user);
    try {
      await client.mailboxOpen('INBOX');
      await client.messageFlagsAdd(String(uid), ['\\Deleted'], { uid: true });
    } finally {
      await client.logout();
    }
    // The source is now `keep`: nothing will delete the message, so the flag must not stay for another client's
    // EXPUNGE to act on.
    const report = await t.sync(source);
    expect(report.outcome).toBe('ok');
    const state = await serverState(lab, user);
    expect(state.messages).toHaveLength(3);
    expect(state.messages.find((m) => m.uid === uid)!.flags).not.toContain('\\Deleted');
    expect((await trail(source.id)).map((r) => r.state)).toEqual(['not-applied']);
    expect(await t.index.pendingActions(source.id)).toEqual([]);
    expect((await t.stored(source.id)).every((m) => m.deletedUpstreamAt === undefined)).toBe(true);
  });

  it('after a UIDVALIDITY change the message is found by its stored copy: not applied, not marked deleted', async () => {
    const { user, source, stored } = await setUp(3);
    await leaveIntent(stored[1]!);
    const before = await lab.status(user);
    await lab.setUidValidity(user, Number(before.uidValidity) + 7);
    const report = await t.sync(source);
    expect(report.outcome).toBe('ok');
    expect(report.fetched).toBe(0); // matched by content, not stored twice
    expect((await trail(source.id)).map((r) => r.state)).toEqual(['not-applied']);
    expect((await t.stored(source.id)).every((m) => m.deletedUpstreamAt === undefined)).toBe(true);
  });

  it('a delete really applied before the cut is completed as done', async () => {
    const { user, source, stored } = await setUp(3);
    await leaveIntent(stored[2]!);
    const uid = stored[2]!.upstream.kind === 'imap' ? stored[2]!.upstream.uid : 0;
    const client = await lab.imap(user);
    try {
      await client.mailboxOpen('INBOX');
      await client.messageDelete(String(uid), { uid: true });
    } finally {
      await client.logout();
    }
    await t.sync(source);
    expect((await trail(source.id)).map((r) => r.state)).toEqual(['done']);
    const marked = (await t.stored(source.id)).filter((m) => m.deletedUpstreamAt !== undefined);
    expect(marked.map((m) => m.identity)).toEqual([stored[2]!.identity]);
  });

  it('an intent about a folder no longer read stays pending instead of being guessed', async () => {
    const { user, source, stored } = await setUp(2);
    await leaveIntent(stored[0]!);
    lab.deliver(user, mail(9), '.Archive');
    const report = await t.sync({ ...source, folders: ['Archive'] });
    expect(report.outcome).toBe('ok');
    expect(report.notes.join('\n')).toMatch(/an interrupted delete in a folder no longer read/);
    expect((await t.index.pendingActions(source.id)).map((r) => r.identity)).toEqual([stored[0]!.identity]);
    // Read again, the folder settles it.
    await t.sync(source);
    expect(await t.index.pendingActions(source.id)).toEqual([]);
    expect((await trail(source.id)).map((r) => r.state)).toEqual(['not-applied']);
  });
});
