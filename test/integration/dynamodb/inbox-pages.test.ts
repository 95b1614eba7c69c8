import { randomBytes } from 'node:crypto';
import { DynamoMessageIndex } from '../../../functions/adapters/dynamodb/message-index';
import { TributaryError } from '../../../functions/core/errors';
import type { MessageRecord } from '../../../functions/core/model';
import { makeAwsClients } from '../../../functions/shared/aws-clients';
import { messageRecord } from '../../support/records';

const aws = makeAwsClients();
const index = new DynamoMessageIndex(aws.documents, process.env.TRIBUTARY_TEST_TABLE!);
afterAll(() => aws.dynamodb.destroy());

function record(sourceId: string, uid: number, sortDate: string): MessageRecord {
  return { ...messageRecord(sourceId, uid, Date.parse(sortDate), 10), fetchedAt: sortDate, sortDate };
}

describe('inbox pages', () => {
  const sourceId = `pages-${randomBytes(5).toString('hex')}`;
  const expected: string[] = [];

  beforeAll(async () => {
    const lease = (await index.acquireLease(sourceId, 'pages-test', 60_000, Date.now()))!;
    const records: MessageRecord[] = [];
    // 23 messages, several sharing a date: the order is date, then source and identity, newest first.
    for (let uid = 1; uid <= 23; uid++) {
      const day = String(1 + Math.floor(uid / 3)).padStart(2, '0');
      records.push(record(sourceId, uid, `2026-10-${day}T08:00:00.000Z`));
    }
    for (const r of records) expect(await index.commitMessage(lease, r)).toBe('committed');
    expected.push(
      ...records
        .map((r) => ({ id: r.identity, key: `${r.sortDate}#${sourceId}#${r.identity}` }))
        .sort((a, b) => (a.key < b.key ? 1 : -1))
        .map((r) => r.id),
    );
  });

  it('walks every message once, newest first, and the last page has no cursor', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await index.listInbox({ sourceId, limit: 5, cursor });
      seen.push(...page.items.map((m) => m.identity));
      cursor = page.cursor;
      pages++;
    } while (cursor && pages < 10);
    expect(seen).toEqual(expected);
    expect(pages).toBe(5);
  });

  it('still reads a cursor of the older form (the LastEvaluatedKey itself)', async () => {
    const first = await index.listInbox({ sourceId, limit: 5 });
    const last = first.items[4]!;
    const old = Buffer.from(
      JSON.stringify({ GSI2PK: `SRC#${sourceId}`, GSI2SK: `${last.sortDate}#${sourceId}#${last.identity}` }),
    ).toString('base64url');
    const next = await index.listInbox({ sourceId, limit: 5, cursor: old });
    expect(next.items.map((m) => m.identity)).toEqual(expected.slice(5, 10));
  });

  it('refuses a cursor that is not one of ours with a clear error', async () => {
    for (const bad of ['not-base64-json', Buffer.from('{"x":1}').toString('base64url')]) {
      await expect(index.listInbox({ sourceId, limit: 5, cursor: bad })).rejects.toThrow(TributaryError);
      await expect(index.listInbox({ sourceId, limit: 5, cursor: bad })).rejects.toThrow(
        /cursor is not valid/,
      );
    }
  });
});
