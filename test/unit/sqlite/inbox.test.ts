import { createHash } from 'node:crypto';
import { openEmbeddedStore, type EmbeddedStore } from '../../../functions/adapters/sqlite/embedded-store';
import { identityKey, type MessageRecord } from '../../../functions/core/model';
import type { Lease } from '../../../functions/core/ports';
import { messageRecord } from '../../support/records';
import { dataDir } from './helpers';

/**
 * What the SQL answers of the merged inbox that DynamoDB filters in memory: `q` as a plain substring (SQL wildcards
 * are literal, case folded as toLocaleLowerCase does), and a source's view listing a content it holds twice once.
 */

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
let store: EmbeddedStore;
let lease: Lease;

beforeEach(async () => {
  store = openEmbeddedStore(dataDir());
  lease = (await store.index.acquireLease('inbox', 'test', 60_000, T0))!;
});
afterEach(() => store.close());

function withSubject(uid: number, subject: string): MessageRecord {
  const r = messageRecord('inbox', uid, T0);
  return { ...r, metadata: { ...r.metadata, subject } };
}

describe('SqliteInbox', () => {
  it('matches q as a literal, case-insensitive substring: % and _ are no wildcards', async () => {
    const subjects = ['100% sure', '100 percent', 'snake_case', 'snakeXcase', 'ÉTÉ EN GRÈCE'];
    for (const [i, s] of subjects.entries()) await store.index.commitMessage(lease, withSubject(i + 1, s));
    const subjectsOf = async (q: string) =>
      (await store.inbox.list({ limit: 10, q })).entries.map((e) => e.record.metadata.subject);
    expect(await subjectsOf('0%')).toEqual(['100% sure']);
    expect(await subjectsOf('e_c')).toEqual(['snake_case']);
    expect(await subjectsOf('été en grèce')).toEqual(['ÉTÉ EN GRÈCE']);
    expect(await subjectsOf('  SNAKE ')).toEqual(['snake_case', 'snakeXcase']);
  });

  it("lists a content a source holds in two folders once in that source's view, across pages", async () => {
    const first = messageRecord('inbox', 1, T0);
    const archived = identityKey({ kind: 'imap', folder: 'Archive', uidValidity: '7', uid: 1 });
    // The same bytes in Archive, dated between messages 2 and 3: two places of one content, pages apart.
    const twin: MessageRecord = {
      ...first,
      identity: archived,
      sortDate: new Date(T0 - 2.5 * 3_600_000).toISOString(),
    };
    for (const r of [first, messageRecord('inbox', 2, T0), twin, messageRecord('inbox', 3, T0)])
      await store.index.commitMessage(lease, r);
    const ids: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.inbox.list({ sourceId: 'inbox', limit: 1, cursor });
      ids.push(...page.entries.map((e) => e.id));
      cursor = page.cursor;
    } while (cursor);
    const sha = (uid: number) => createHash('sha256').update(`inbox/${uid}`).digest('hex');
    expect(ids).toEqual([`c${sha(1)}`, `c${sha(2)}`, `c${sha(3)}`]);
    // The index's own view of the source lists both of its items, as DynamoDB's does.
    expect((await store.index.listInbox({ sourceId: 'inbox', limit: 10 })).items).toHaveLength(4);
  });

  it('addresses registry entries only: forged, malformed and removed ids name nothing', async () => {
    const r = messageRecord('inbox', 1, T0);
    await store.index.commitMessage(lease, r);
    const id = `c${r.object.sha256}`;
    expect((await store.inbox.get(id))?.unread).toBe(true);
    for (const bad of [
      `c${r.object.sha256.toUpperCase()}`,
      `c${r.object.sha256}0`,
      r.object.sha256,
      `l${id}`,
      `c' OR 1=1 --`,
    ]) {
      expect(await store.inbox.get(bad)).toBeUndefined();
      expect(await store.inbox.setUnread(bad, false, T0)).toBe(false);
      expect(await store.inbox.removeFromInbox(bad, 'test', T0)).toBe(false);
    }
    expect(await store.inbox.removeFromInbox(id, 'reader', T0)).toBe(true);
    expect(await store.inbox.get(id)).toBeUndefined();
    expect(await store.inbox.setUnread(id, true, T0)).toBe(false);
    expect(store.database.all('SELECT removed_by FROM inbox_removals')).toEqual([{ removed_by: 'reader' }]);
    // Bytes, identity and counters stay.
    expect(await store.index.inboxUsage('inbox')).toEqual({ messages: 1, bytes: 100 });
    expect(await store.index.committedIdentities('inbox', 'imap#')).toEqual(new Set([r.identity]));
  });
});
