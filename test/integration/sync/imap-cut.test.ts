import net from 'node:net';
import { bigMessage, bulkCorpus } from '../../support/corpus';
import { MailLab } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';

const lab = MailLab.fromEnv();
/** Messages above this size are fetched in partial FETCHes (the default, 16 MB, would need far bigger mail). */
const CHUNKED_ABOVE = 1024 * 1024;
const t = new TestTributary(lab);

/** A TCP proxy to Dovecot's IMAPS port that cuts every connection after `cutAfter` bytes from the server. */
async function cuttingProxy(
  cutAfter: number,
): Promise<{ port: number; cuts: () => number; close: () => Promise<void> }> {
  let cuts = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(lab.info.ports.imaps, lab.info.host);
    sockets.add(client).add(upstream);
    let sent = 0;
    const kill = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', kill).on('close', kill).pipe(upstream);
    upstream.on('error', kill).on('close', kill);
    upstream.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      if (sent > cutAfter) {
        cuts++;
        kill();
      } else client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cuts: () => cuts,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

afterAll(() => t.close());

describe('an IMAP connection cut in the middle of a sync', () => {
  it('fails the run, keeps the checkpoint below every message not stored, and the next sync stores the rest once', async () => {
    const user = lab.createUser();
    // Big messages go through the chunked download (messages above 1 MB here, not the default 16 MB), small ones
    // through the pipelined FETCH.
    for (let i = 0; i < 4; i++) lab.deliver(user, bigMessage(1536 * 1024 + i, 40 + i));
    for (const m of bulkCorpus(5, 41, { maxBytes: 8_000, attachmentRatio: 0 })) lab.deliver(user, m.raw);
    const source = t.source(user, 'imap');
    const proxy = await cuttingProxy(2_500_000);
    try {
      const cut = await t.sync({ ...source, port: proxy.port }, { wholeMessageBytes: CHUNKED_ABOVE });
      expect(proxy.cuts()).toBeGreaterThan(0);
      expect(cut.outcome).toBe('failed');
      expect(cut.error?.code).toMatch(/^(CONNECTION_LOST|PROTOCOL_ERROR|TIMEOUT)$/);
    } finally {
      await proxy.close();
    }
    const uidsStored = async () =>
      (await t.stored(source.id)).map((m) => (m.upstream.kind === 'imap' ? m.upstream.uid : -1));
    const afterCut = await uidsStored();
    expect(afterCut.length).toBeLessThan(9);
    const firstMissing = [1, 2, 3, 4, 5, 6, 7, 8, 9].find((u) => !afterCut.includes(u))!;
    const state = await t.index.getFolderState(source.id, 'INBOX');
    expect(state?.committedThroughUid ?? 0).toBeLessThan(firstMissing);

    expect(await t.sync(source, { wholeMessageBytes: CHUNKED_ABOVE })).toMatchObject({
      outcome: 'ok',
      fetched: 9 - afterCut.length,
    });
    expect((await uidsStored()).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});
