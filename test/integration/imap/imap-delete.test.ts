import type { ImapFlow } from 'imapflow';
import type { ImapSession } from '../../../functions/core/ports';
import { recordWire } from '../../support/imap-wire';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';

const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

function message(subject: string, body = 'Hello from the delete tests.\r\n'): string {
  return `From: Ann <ann@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.test>\r\nDate: Thu, 26 Nov 2026 09:00:00 +0000\r\n\r\n${body}`;
}

/** APPENDs with explicit internal dates, as the user's own client would; returns the UIDs and UIDVALIDITY. */
async function appendDated(
  user: TestUser,
  items: Array<{ raw: string; date?: Date; flags?: string[] }>,
): Promise<{ uids: number[]; uidValidity: string }> {
  const client = await lab.imap(user);
  const uids: number[] = [];
  let uidValidity = '';
  try {
    for (const m of items) {
      const res = await client.append('INBOX', m.raw, m.flags ?? [], m.date);
      if (!res || res.uid === undefined) throw new Error('APPEND gave no APPENDUID');
      uids.push(res.uid);
      uidValidity = String(res.uidValidity);
    }
  } finally {
    await client.logout();
  }
  return { uids, uidValidity };
}

/** Runs `fn` with a separate imapflow client of the user (not Tributary's). */
async function asUser<T>(user: TestUser, fn: (client: ImapFlow) => Promise<T>): Promise<T> {
  const client = await lab.imap(user);
  try {
    return await fn(client);
  } finally {
    await client.logout();
  }
}

/** What INBOX holds, read independently with EXAMINE: UID -> sorted flags. */
async function inbox(user: TestUser): Promise<Map<number, string[]>> {
  return asUser(user, async (client) => {
    const out = new Map<number, string[]>();
    const box = await client.mailboxOpen('INBOX', { readOnly: true });
    if (box.exists > 0) {
      for await (const m of client.fetch('1:*', { uid: true, flags: true }, { uid: true })) {
        out.set(m.uid, [...(m.flags ?? [])].sort());
      }
    }
    return out;
  });
}

async function highestModseq(user: TestUser): Promise<bigint | undefined> {
  return asUser(user, async (client) => {
    const status = await client.status('INBOX', { highestModseq: true });
    return status ? status.highestModseq : undefined;
  });
}

async function openSession(user: TestUser): Promise<ImapSession> {
  const source = t.source(user, 'imap', 'implicit');
  return t.deps.connector.openImap(source, user.password, { timeoutMs: 10_000 });
}

describe('ImapFlowSession against Dovecot: listing, presence and deletion', () => {
  it('lists INTERNALDATE as epoch ms, ascending as appended, only when asked', async () => {
    const user = lab.createUser('idate');
    const dates = [
      new Date('2024-01-02T03:04:05Z'),
      new Date('2024-06-30T23:59:58Z'),
      new Date('2025-02-03T10:11:12Z'),
    ];
    const raws = dates.map((_, i) => message(`dated-${i}`, `body ${i}\r\n`.repeat(i + 1)));
    const { uids } = await appendDated(
      user,
      raws.map((raw, i) => ({ raw, date: dates[i] })),
    );
    const session = await openSession(user);
    try {
      await session.openFolder('INBOX');
      const expected = uids.map((uid, i) => ({
        uid,
        size: Buffer.byteLength(raws[i]!),
        internalDate: dates[i]!.getTime(),
      }));
      expect(await session.listUids(1, { internalDate: true })).toStrictEqual(expected);
      expect(await session.listUids(uids[1]!, { internalDate: true })).toStrictEqual(expected.slice(1));
      // Not asked: the entries are exactly as before the option existed.
      const plain = expected.map(({ uid, size }) => ({ uid, size }));
      expect(await session.listUids(1)).toStrictEqual(plain);
      expect(await session.listUids(1, { internalDate: false })).toStrictEqual(plain);
    } finally {
      await session.close();
    }
  });

  it('present() names the UIDs the open folder holds, and asks nothing for an empty list', async () => {
    const user = lab.createUser('present');
    const { uids } = await appendDated(user, [
      { raw: message('p-0') },
      { raw: message('p-1') },
      { raw: message('p-2') },
    ]);
    await asUser(user, async (client) => {
      await client.mailboxOpen('INBOX');
      expect(await client.messageDelete(String(uids[1]), { uid: true })).toBe(true);
    });
    const session = await openSession(user);
    try {
      await session.openFolder('INBOX');
      const wire = recordWire(session);
      expect(await session.present([uids[0]!, uids[1]!, uids[2]!, uids[2]! + 1000])).toEqual(
        new Set([uids[0], uids[2]]),
      );
      expect(wire).toEqual([expect.stringMatching(/^UID SEARCH UID /)]);
      wire.length = 0;
      expect(await session.present([])).toEqual(new Set());
      expect(wire).toEqual([]);
    } finally {
      await session.close();
    }
  });

  it('deletes exactly the chosen UIDs with UID EXPUNGE, leaving a message the user flagged \\Deleted himself', async () => {
    const user = lab.createUser('del');
    const { uids, uidValidity } = await appendDated(user, [
      { raw: message('d-0') },
      { raw: message('d-1') },
      { raw: message('d-2') },
      { raw: message('d-3') },
      { raw: message('d-4') },
    ]);
    const [a, b, c, d, e] = uids as [number, number, number, number, number];
    // The user's own client marks d \Deleted and does not expunge (yet): a plain EXPUNGE would take it.
    await asUser(user, async (client) => {
      await client.mailboxOpen('INBOX');
      expect(await client.messageFlagsAdd(String(d), ['\\Deleted'], { uid: true })).toBe(true);
    });
    expect((await inbox(user)).get(d)).toContain('\\Deleted');

    const session = await openSession(user);
    try {
      const status = await session.openFolder('INBOX');
      expect(status.uidValidity).toBe(uidValidity);
      const wire = recordWire(session);
      const gone = await session.deleteUids('INBOX', uidValidity, [c, a, b]);
      expect(gone).toEqual(new Set([a, b, c]));
      expect(wire).toEqual([
        'SELECT INBOX',
        `UID STORE ${a}:${c} +FLAGS.SILENT (\\Deleted)`,
        `UID EXPUNGE ${a}:${c}`,
        `UID SEARCH UID ${a}:${c}`,
      ]);

      // Already gone: confirmed again, nothing else touched; an empty list asks nothing.
      wire.length = 0;
      expect(await session.deleteUids('INBOX', uidValidity, [b])).toEqual(new Set([b]));
      expect(await session.deleteUids('INBOX', uidValidity, [])).toEqual(new Set());
      expect(wire.some((l) => /^(CLOSE|EXPUNGE)\b/.test(l))).toBe(false);
    } finally {
      await session.close();
    }
    const left = await inbox(user);
    expect([...left.keys()].sort((x, y) => x - y)).toEqual([d, e]);
    expect(left.get(d)).toContain('\\Deleted');
    expect(left.get(e)).not.toContain('\\Deleted');
    expect((await lab.status(user)).messages).toBe(2);
  });

  it('deletes nothing when the UIDVALIDITY changed since the UIDs were read (PROTOCOL_ERROR)', async () => {
    const user = lab.createUser('uidv');
    const { uids, uidValidity } = await appendDated(user, [{ raw: message('v-0') }, { raw: message('v-1') }]);
    await lab.setUidValidity(user, Number(uidValidity) + 1000);
    const session = await openSession(user);
    try {
      const wire = recordWire(session);
      const err = await session.deleteUids('INBOX', uidValidity, uids).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ name: 'UpstreamError', code: 'PROTOCOL_ERROR', retryable: true });
      expect((err as Error).message).toMatch(/UIDVALIDITY.*nothing was deleted/);
      expect(wire.filter((l) => /STORE|EXPUNGE/.test(l))).toEqual([]);
    } finally {
      await session.close();
    }
    expect([...(await inbox(user)).keys()]).toHaveLength(2);
    expect((await lab.status(user)).messages).toBe(2);
  });

  it('refuses to delete on a server without UIDPLUS (CAPABILITY_MISSING) and sends nothing', async () => {
    const user = lab.createUser('noplus');
    const { uids, uidValidity } = await appendDated(user, [{ raw: message('n-0') }, { raw: message('n-1') }]);
    const session = await openSession(user);
    try {
      await session.openFolder('INBOX');
      // Dovecot always offers UIDPLUS: take it out of what the connection says the server offers.
      const client = (session as unknown as { client: ImapFlow }).client;
      expect(client.capabilities.delete('UIDPLUS')).toBe(true);
      const wire = recordWire(session);
      const err = await session.deleteUids('INBOX', uidValidity, uids).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ name: 'UpstreamError', code: 'CAPABILITY_MISSING', retryable: false });
      expect((err as Error).message).toContain('has no UIDPLUS');
      expect((err as Error).message).toContain('"retention": {"mode": "keep"}');
      expect(wire).toEqual([]);
    } finally {
      await session.close();
    }
    expect([...(await inbox(user)).keys()].sort((x, y) => x - y)).toEqual(uids);
  });

  it('a session that only syncs (EXAMINE, list, fetch, present, quota) changes no flag and no MODSEQ', async () => {
    const user = lab.createUser('ro');
    const { uids } = await appendDated(user, [
      { raw: message('r-0'), date: new Date('2024-03-01T00:00:00Z') },
      { raw: message('r-1'), flags: ['\\Flagged'] },
      { raw: message('r-2', 'x'.repeat(2000) + '\r\n') },
    ]);
    const flagsBefore = await inbox(user);
    const modseqBefore = await highestModseq(user);
    expect(typeof modseqBefore).toBe('bigint');

    const session = await openSession(user);
    const wire = recordWire(session);
    try {
      const status = await session.openFolder('INBOX');
      expect(status.highestModseq).toBe(String(modseqBefore));
      const listed = await session.listUids(1, { internalDate: true });
      expect(listed.map((m) => m.uid)).toEqual(uids);
      const bodies: number[] = [];
      await session.fetchBodies(listed, async (uid, _size, body) => {
        for await (const chunk of body) void chunk;
        bodies.push(uid);
      });
      expect(bodies).toEqual(uids);
      expect(await session.present(uids)).toEqual(new Set(uids));
      await session.quota();
    } finally {
      await session.close();
    }
    expect(wire).toContain('EXAMINE INBOX');
    expect(wire.filter((l) => /^(SELECT|CLOSE|EXPUNGE)\b|STORE|EXPUNGE/.test(l))).toEqual([]);
    expect(await highestModseq(user)).toBe(modseqBefore);
    const flagsAfter = await inbox(user);
    expect(flagsAfter).toEqual(flagsBefore);
    expect([...flagsAfter.values()].some((f) => f.includes('\\Seen'))).toBe(false);
  });
});
