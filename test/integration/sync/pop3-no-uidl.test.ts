import { startFakePop3, type FakeServer } from '../../unit/pop3/fake-pop3-server';
import { MailLab } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';

/**
 * A POP3 server without UIDL (Dovecot always has it, so this is the scripted fake): identity falls back to a hash
 * of the `TOP n 0` headers, and messages with identical headers are told apart by their order.
 */
const t = new TestTributary(MailLab.fromEnv());
let fake: FakeServer;
const msg = (subject: string, body: string) =>
  Buffer.from(`Subject: ${subject}\r\nFrom: a@example.test\r\n\r\n${body}\r\n`);
const messages = [msg('one', 'first'), msg('two', 'second'), msg('same', 'copy A'), msg('same', 'copy B')];

beforeAll(async () => {
  fake = await startFakePop3({
    messages,
    mode: 'bulk',
    capabilities: ['USER', 'TOP'],
    override: (command) => (command === 'UIDL' ? ['-ERR UIDL not supported\r\n'] : undefined),
  });
});
afterAll(async () => {
  await fake.close();
  t.close();
});

describe('POP3 sync from a server without UIDL', () => {
  it('identifies messages by their headers, stores each once, and fetches nothing the second time', async () => {
    const source = t.fakeSource('pop3', fake.port);
    const first = await t.sync(source);
    expect(first).toMatchObject({ outcome: 'ok', fetched: 4 });
    const stored = await t.stored(source.id);
    expect(stored.map((m) => m.upstream.kind)).toEqual(['pop3-top', 'pop3-top', 'pop3-top', 'pop3-top']);
    expect(new Set(stored.map((m) => m.identity)).size).toBe(4);
    const bodies = await Promise.all(stored.map((m) => t.bytes(m.object.key)));
    expect(bodies.map((b) => b.toString('base64')).sort()).toEqual(
      messages.map((b) => b.toString('base64')).sort(),
    );
    expect(await t.sync(source)).toMatchObject({ outcome: 'ok', fetched: 0 });
    expect(fake.received.filter((c) => c.startsWith('RETR'))).toHaveLength(4);
  });
});
