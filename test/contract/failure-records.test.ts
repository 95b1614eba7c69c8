import type { MessageFailure } from '../../functions/core/model';
import type { Lease } from '../../functions/core/ports';
import { implementations, iso, newSourceId, openFor, record, T0 } from './implementations';

function failure(
  sourceId: string,
  uid: number,
  attempts: number,
  extra: Partial<MessageFailure> = {},
): MessageFailure {
  const r = record(sourceId, uid);
  return {
    sourceId,
    identity: r.identity,
    upstream: r.upstream,
    attempts,
    error: { code: 'PROTOCOL_ERROR', message: `attempt ${attempts}: 12 bytes, 4000 announced` },
    firstAt: iso(T0),
    lastAt: iso(T0 + attempts * 1000),
    setAside: attempts >= 3,
    ...extra,
  };
}

const byIdentity = (a: MessageFailure, b: MessageFailure) => (a.identity < b.identity ? -1 : 1);

/** FailureRecords: per-message failures recorded and cleared under the lease, and retries asked for by people. */
describe.each(implementations)('FailureRecords on $name', (impl) => {
  const store = openFor(impl);
  const index = () => store().index;

  async function lease(): Promise<Lease> {
    return (await index().acquireLease(newSourceId('fail'), 'failure-test', 600_000, T0))!;
  }

  it('records failures, the latest attempt of a message replacing the earlier, and lists them', async () => {
    const l = await lease();
    expect(await index().messageFailures(l.sourceId)).toEqual([]);
    await index().recordMessageFailure(l, failure(l.sourceId, 1, 1));
    await index().recordMessageFailure(l, failure(l.sourceId, 2, 1));
    const setAside = failure(l.sourceId, 1, 3);
    await index().recordMessageFailure(l, setAside);

    const listed = await index().messageFailures(l.sourceId);

    expect([...listed].sort(byIdentity)).toEqual([setAside, failure(l.sourceId, 2, 1)].sort(byIdentity));
    expect(await index().messageFailures(newSourceId('nobody'))).toEqual([]);
  });

  it('keeps POP3 identities and a retry flag as written', async () => {
    const l = await lease();
    const pop3: MessageFailure = {
      ...failure(l.sourceId, 1, 2, { retry: true }),
      identity: 'pop3#UID-1#x',
      upstream: { kind: 'pop3', uidl: 'UID-1#x' },
    };
    await index().recordMessageFailure(l, pop3);
    expect(await index().messageFailures(l.sourceId)).toEqual([pop3]);
  });

  it('clears the failures named, leaving the others; unknown identities are no error', async () => {
    const l = await lease();
    const fs = [1, 2, 3].map((uid) => failure(l.sourceId, uid, uid));
    for (const f of fs) await index().recordMessageFailure(l, f);

    await index().clearMessageFailures(l, [
      fs[0]!.identity,
      fs[2]!.identity,
      fs[0]!.identity,
      'imap#INBOX#7#0000000099',
    ]);

    expect(await index().messageFailures(l.sourceId)).toEqual([fs[1]]);
    await index().clearMessageFailures(l, []);
    expect(await index().messageFailures(l.sourceId)).toEqual([fs[1]]);
  });

  it('asks for retries of every failure of the source, or of the ones named: attempts start over', async () => {
    const l = await lease();
    const fs = [1, 2, 3].map((uid) => failure(l.sourceId, uid, 3));
    for (const f of fs) await index().recordMessageFailure(l, f);

    expect(await index().retryMessages(l.sourceId, [fs[1]!.identity, 'imap#INBOX#7#0000000099'])).toBe(1);
    const afterOne = new Map((await index().messageFailures(l.sourceId)).map((f) => [f.identity, f]));
    expect(afterOne.get(fs[1]!.identity)).toEqual({ ...fs[1], attempts: 0, setAside: false, retry: true });
    expect(afterOne.get(fs[0]!.identity)).toEqual(fs[0]);

    expect(await index().retryMessages(l.sourceId)).toBe(3);
    for (const f of await index().messageFailures(l.sourceId))
      expect(f).toMatchObject({ attempts: 0, setAside: false, retry: true, error: fs[0]!.error });
    expect(await index().retryMessages(newSourceId('nobody'))).toBe(0);
  });
});
