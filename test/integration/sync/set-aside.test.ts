import { closeAfterEach } from '../../support/close-after-each';
import { startFakeImap } from '../../support/fake-imap-server';
import { MailLab } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';
import { startFakePop3 } from '../../unit/pop3/fake-pop3-server';
import { SET_ASIDE_AFTER } from '../../../functions/core/model';

/**
 * One message that can never be fetched consistently (its bytes far from its announced size) must not stop its
 * source forever: after a few failed runs it is set aside, recorded with its reason, kept upstream, never deleted
 * by a policy, and the rest of the source syncs on; a retry on demand tries it again.
 */
const t = new TestTributary(MailLab.fromEnv());
afterAll(() => t.close());

const mail = (tag: string) =>
  Buffer.from(
    `From: a@example.test\r\nSubject: message ${tag}\r\nMessage-ID: <${tag}@x>\r\n\r\nbody ${tag}\r\n`,
  );

async function subjects(sourceId: string): Promise<string[]> {
  return (await t.stored(sourceId)).map((m) => m.metadata.subject ?? '').sort();
}

describe('a message that keeps failing', () => {
  const track = closeAfterEach();

  it('POP3: is set aside after a few runs, never deleted, and the rest syncs on; a retry tries it again', async () => {
    // LIST says message 2 is a third of what RETR serves: not the message announced.
    const pop3 = track(
      await startFakePop3({
        messages: [mail('A'), mail('B'), mail('C')],
        mode: 'bulk',
        announcedSize: (n, actual) => (n === 2 ? Math.floor(actual / 3) : actual),
      }),
    );
    const source = t.fakeSource('pop3', pop3.port, { retention: { mode: 'delete-on-retrieve' } });

    for (let attempt = 1; attempt < SET_ASIDE_AFTER; attempt++) {
      const run = await t.sync(source);
      expect(run).toMatchObject({ outcome: 'failed', error: { code: 'PROTOCOL_ERROR' } });
      expect(run.notes.join('\n')).toContain(`attempt ${attempt} of ${SET_ASIDE_AFTER}`);
    }
    const setAside = await t.sync(source);
    expect(setAside.outcome).toBe('more');
    expect(setAside.notes.join('\n')).toMatch(/set aside after 3 failed attempts/);

    const after = await t.sync(source);
    expect(after).toMatchObject({ outcome: 'ok', setAside: 1 });
    expect(await subjects(source.id)).toEqual(['message A', 'message C']);
    // Deleted upstream: exactly the two committed ones, never the one set aside.
    expect([...pop3.deleted].sort()).toEqual([1, 3]);
    const [failure] = await t.index.messageFailures(source.id);
    expect(failure).toMatchObject({ identity: 'pop3#uid-2', attempts: 3, setAside: true });
    expect(failure!.error.message).toMatch(/LIST/);

    // A later run leaves it alone; a retry on demand fetches it again (and it fails again, counted anew).
    expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 0, setAside: 1 });
    const retrsBefore = pop3.received.filter((c) => c === 'RETR 2').length;
    expect(await t.index.retryMessages(source.id)).toBe(1);
    const retried = await t.sync(source);
    expect(retried.outcome).toBe('failed');
    expect(pop3.received.filter((c) => c === 'RETR 2').length).toBe(retrsBefore + 1);
    expect((await t.index.messageFailures(source.id))[0]).toMatchObject({ attempts: 1, retry: true });
  });

  it('IMAP: is set aside, the checkpoint passes it, and a retry reaches below the checkpoint', async () => {
    const MB = 1024 * 1024;
    // RFC822.SIZE for UID 2 is 3 MB; the server sends a few dozen bytes.
    const imap = track(
      await startFakeImap({
        messages: [mail('A'), mail('B'), mail('C')],
        announcedSize: (uid, actual) => (uid === 2 ? 3 * MB : actual),
      }),
    );
    const source = t.fakeSource('imap', imap.port);

    for (let attempt = 1; attempt < SET_ASIDE_AFTER; attempt++) {
      const run = await t.sync(source);
      expect(run.outcome).toBe('failed');
    }
    expect((await t.sync(source)).outcome).toBe('more');
    const after = await t.sync(source);
    expect(after).toMatchObject({ outcome: 'ok', setAside: 1 });
    expect(await subjects(source.id)).toEqual(['message A', 'message C']);
    const state = await t.index.getFolderState(source.id, 'INBOX');
    expect(state?.committedThroughUid).toBe(3);

    // Unchanged folder: the next poll does not list again; a retry does, from UID 2.
    const fetchesBefore = imap.received.filter((l) => /UID FETCH 2/.test(l)).length;
    await t.index.retryMessages(source.id);
    expect((await t.sync(source)).outcome).toBe('failed');
    expect(imap.received.filter((l) => /UID FETCH 2/.test(l)).length).toBeGreaterThan(fetchesBefore);
  });
});
