import { closeAfterEach } from '../../support/close-after-each';
import { startFakeImap } from '../../support/fake-imap-server';
import { MailLab } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';
import { startFakePop3 } from '../../unit/pop3/fake-pop3-server';

/**
 * Before a DELE or UID EXPUNGE the server must prove that the message it holds under an identity is the stored
 * copy, by more than the identity and the size: servers reuse UIDLs, a folder re-created under its old UIDVALIDITY
 * reuses UIDs, and without UIDL two messages can share a header hash. Scripted servers swap a message for another
 * of the same size under the same identity between two runs; the second run, with a deleting policy, must delete
 * only what it can prove.
 */
const t = new TestTributary(MailLab.fromEnv());
afterAll(() => t.close());

/** Same length whatever `tag` (one letter), so only the bytes tell the two apart. */
const mail = (tag: string, subject = `message ${tag}`) =>
  Buffer.from(
    `From: a@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${tag}@example.test>\r\n\r\nbody ${tag}\r\n`,
  );

function report(name: string, upstreamSwapped: number[], deleted: number[]): void {
  const wrong = deleted.filter((n) => upstreamSwapped.includes(n)).length;
  console.log(`[reliability] delete proof ${name}: wrongly deleted ${wrong}`);
}

describe('the proof before a delete', () => {
  const track = closeAfterEach();

  it('POP3: a UIDL the server reused for another message of the same size is not deleted', async () => {
    const messages = [mail('A'), mail('B')];
    const pop3 = track(await startFakePop3({ messages, mode: 'bulk' }));
    const source = t.fakeSource('pop3', pop3.port);
    expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 2 });

    messages[0] = mail('C'); // uid-1 now names another message, same size
    const run = await t.sync({ ...source, retention: { mode: 'delete-on-retrieve' } });

    report('pop3 uidl reused', [1], [...pop3.deleted]);
    expect([...pop3.deleted]).toEqual([2]);
    expect(run).toMatchObject({ outcome: 'ok', fetched: 0, deletedUpstream: 1 });
    expect(run.notes.join('\n')).toMatch(/uid-1: the server holds another message under this identity now/);
    // Two TOPs before the DELE: the proof came from the server in this run, not from the store.
    expect(pop3.received.filter((c) => c.startsWith('TOP')).length).toBeGreaterThanOrEqual(2);
  });

  it('POP3 without UIDL: a message whose header hash repeats another is proven by its whole content', async () => {
    const same = 'same headers';
    const messages = [mail('A', same)];
    // Identical header blocks need identical Message-IDs: the headers of A and B are byte for byte the same.
    const twin = Buffer.from(mail('A', same).toString('latin1').replace('body A', 'body B'), 'latin1');
    const pop3 = track(
      await startFakePop3({
        messages,
        mode: 'bulk',
        capabilities: ['USER', 'TOP'],
        override: (command) => (command === 'UIDL' ? ['-ERR UIDL not supported\r\n'] : undefined),
      }),
    );
    const source = t.fakeSource('pop3', pop3.port);
    expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 1 });

    messages[0] = twin; // A deleted elsewhere, B arrived: same headers, same size, same identity
    const run = await t.sync({ ...source, retention: { mode: 'delete-on-retrieve' } });

    report('pop3 header hash repeated', [1], [...pop3.deleted]);
    expect([...pop3.deleted]).toEqual([]);
    expect(run.notes.join('\n')).toMatch(/its content differs from the stored copy's/);
  });

  it('POP3: a message fetched in the same session is proven by what was fetched, without another read', async () => {
    const messages = [mail('A'), mail('B')];
    const pop3 = track(await startFakePop3({ messages, mode: 'bulk' }));
    const source = t.fakeSource('pop3', pop3.port);
    const run = await t.sync({ ...source, retention: { mode: 'delete-on-retrieve' } });
    expect(run).toMatchObject({ outcome: 'ok', fetched: 2, deletedUpstream: 2 });
    expect([...pop3.deleted].sort()).toEqual([1, 2]);
    expect(pop3.received.filter((c) => c.startsWith('TOP'))).toEqual([]);
    expect(pop3.received.filter((c) => c.startsWith('RETR'))).toHaveLength(2);
  });

  it('IMAP: a UID reused by a folder re-created under the same UIDVALIDITY is not expunged', async () => {
    let imap = track(await startFakeImap({ messages: [mail('A'), mail('B')] }));
    const source = t.fakeSource('imap', imap.port);
    expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 2 });
    await imap.close();

    // The folder again, same UIDVALIDITY, but UID 1 now holds another message of the same size.
    imap = track(await startFakeImap({ messages: [mail('C'), mail('B')] }));
    const run = await t.sync({ ...source, port: imap.port, retention: { mode: 'delete-on-retrieve' } });

    report('imap uid reused', [1], [...imap.expunged]);
    expect([...imap.expunged]).toEqual([2]);
    expect(run).toMatchObject({ outcome: 'ok', deletedUpstream: 1 });
    expect(run.notes.join('\n')).toMatch(/the server holds another message under this identity now/);
    expect(imap.received.some((l) => /UID FETCH .*BODY\.PEEK\[HEADER\]/i.test(l))).toBe(true);
  });
});
