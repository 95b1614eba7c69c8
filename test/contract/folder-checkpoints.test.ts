import type { FolderState } from '../../functions/core/model';
import { implementations, newSourceId, openFor, T0 } from './implementations';

/** FolderCheckpoints: the IMAP checkpoint of each folder, read back as written, per source and folder. */
describe.each(implementations)('FolderCheckpoints on $name', (impl) => {
  const store = openFor(impl);
  const index = () => store().index;

  async function lease(sourceId = newSourceId('ckpt')) {
    return (await index().acquireLease(sourceId, 'checkpoint-test', 60_000, T0))!;
  }

  it('has no state for a folder never saved', async () => {
    expect(await index().getFolderState(newSourceId('ckpt'), 'INBOX')).toBeUndefined();
  });

  it('reads back what was saved, optional fields included, and the latest save wins', async () => {
    const l = await lease();
    const first: FolderState = {
      folder: 'INBOX',
      uidValidity: '1700000000',
      committedThroughUid: 0,
      uidNext: 1,
    };
    await index().saveFolderState(l, first);
    expect(await index().getFolderState(l.sourceId, 'INBOX')).toEqual(first);

    const next: FolderState = {
      folder: 'INBOX',
      uidValidity: '1700000000',
      committedThroughUid: 41,
      uidNext: 57,
      highestModseq: '123456789012345',
      generation: 2,
    };
    await index().saveFolderState(l, next);
    expect(await index().getFolderState(l.sourceId, 'INBOX')).toEqual(next);

    // A later save without the optional fields drops them.
    const plain: FolderState = { folder: 'INBOX', uidValidity: '9', committedThroughUid: 3, uidNext: 4 };
    await index().saveFolderState(l, plain);
    expect(await index().getFolderState(l.sourceId, 'INBOX')).toEqual(plain);
  });

  it('keeps folders (whatever their names) and sources apart', async () => {
    const a = await lease();
    const b = await lease();
    const names = ['INBOX', 'Archive/2026', 'Dossier #1 100%', 'Входящие', 'INBOX.Sent'];
    for (const [i, folder] of names.entries())
      await index().saveFolderState(a, {
        folder,
        uidValidity: String(100 + i),
        committedThroughUid: i,
        uidNext: i + 1,
      });
    await index().saveFolderState(b, {
      folder: 'INBOX',
      uidValidity: '5',
      committedThroughUid: 50,
      uidNext: 51,
    });

    for (const [i, folder] of names.entries())
      expect(await index().getFolderState(a.sourceId, folder)).toEqual({
        folder,
        uidValidity: String(100 + i),
        committedThroughUid: i,
        uidNext: i + 1,
      });
    expect(await index().getFolderState(b.sourceId, 'INBOX')).toMatchObject({ committedThroughUid: 50 });
    expect(await index().getFolderState(b.sourceId, 'Archive/2026')).toBeUndefined();
    expect(await index().getFolderState(a.sourceId, 'inbox.sent')).toBeUndefined();
  });

  it('keeps UIDVALIDITY a string, leading zeros and big values included', async () => {
    const l = await lease();
    for (const uidValidity of ['0042', '4294967295']) {
      await index().saveFolderState(l, { folder: 'INBOX', uidValidity, committedThroughUid: 1, uidNext: 2 });
      expect((await index().getFolderState(l.sourceId, 'INBOX'))?.uidValidity).toBe(uidValidity);
    }
  });
});
