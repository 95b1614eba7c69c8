import {
  effectiveValidity,
  folderGeneration,
  planImapFolder,
  planPop3Sync,
  UidCheckpoint,
} from '../../../functions/core/planners';
import type { FolderState, FolderStatus } from '../../../functions/core/model';

const state = (s: Partial<FolderState> = {}): FolderState => ({
  folder: 'INBOX',
  uidValidity: '1795676863',
  committedThroughUid: 41,
  uidNext: 42,
  ...s,
});
const status = (s: Partial<FolderStatus> = {}): FolderStatus => ({
  uidValidity: '1795676863',
  uidNext: 42,
  exists: 41,
  ...s,
});

describe('planImapFolder', () => {
  it.each([
    ['no state yet', undefined, status(), 'initial', 1],
    ['nothing changed', state(), status(), 'unchanged', undefined],
    ['new mail (UIDNEXT grew)', state(), status({ uidNext: 45 }), 'incremental', 42],
    ['a previous run stopped early', state({ committedThroughUid: 30 }), status(), 'incremental', 31],
    ['mail expunged only (UIDNEXT same)', state(), status({ exists: 10 }), 'unchanged', undefined],
    ['UIDVALIDITY changed', state(), status({ uidValidity: '1795676999' }), 'rematch', undefined],
    [
      'UIDVALIDITY compared as strings, not numbers',
      state({ uidValidity: '0001' }),
      status({ uidValidity: '1' }),
      'rematch',
      undefined,
    ],
    // No UIDNEXT from the server: the adapter's highest UID + 1 goes back when the newest messages are expunged.
    [
      'derived UIDNEXT back after the newest were expunged',
      state(),
      status({ uidNext: 40, exists: 38, uidNextDerived: true }),
      'unchanged',
      undefined,
    ],
    [
      'derived UIDNEXT of an emptied folder',
      state(),
      status({ uidNext: 1, exists: 0, uidNextDerived: true }),
      'unchanged',
      undefined,
    ],
    [
      'derived UIDNEXT back, a previous run stopped early',
      state({ committedThroughUid: 30 }),
      status({ uidNext: 35, uidNextDerived: true }),
      'incremental',
      31,
    ],
    ['derived UIDNEXT same', state(), status({ uidNext: 42, uidNextDerived: true }), 'unchanged', undefined],
    ['derived UIDNEXT grew', state(), status({ uidNext: 45, uidNextDerived: true }), 'incremental', 42],
    [
      'a real UIDNEXT going back still means re-created',
      state(),
      status({ uidNext: 40 }),
      'rematch',
      undefined,
    ],
  ] as const)('%s', (_name, st, stat, kind, fromUid) => {
    const plan = planImapFolder(st, stat);
    expect(plan.kind).toBe(kind);
    if (fromUid !== undefined) expect(plan).toMatchObject({ fromUid });
    expect(plan.why.length).toBeGreaterThan(10);
  });
});

describe('a folder re-created under the same UIDVALIDITY', () => {
  it('UIDNEXT going back starts a new generation, matched by content; the next one goes on from there', () => {
    const plan = planImapFolder(state({ uidNext: 50, committedThroughUid: 49 }), status({ uidNext: 4 }));
    expect(plan).toMatchObject({ kind: 'rematch', generation: 1 });
    expect(folderGeneration(state(), plan)).toBe(1);
    expect(effectiveValidity('1795676863', 1)).toBe('1795676863.r1');
    const again = planImapFolder(state({ uidNext: 50, generation: 1 }), status({ uidNext: 4 }));
    expect(again).toMatchObject({ kind: 'rematch', generation: 2 });
    const settled = state({ uidNext: 4, committedThroughUid: 3, generation: 1 });
    const next = planImapFolder(settled, status({ uidNext: 4 }));
    expect(next.kind).toBe('unchanged');
    expect(folderGeneration(settled, next)).toBe(1);
    expect(effectiveValidity('1795676863', 0)).toBe('1795676863');
  });
});

describe('UidCheckpoint', () => {
  it('advances only over a contiguous settled prefix', () => {
    const c = new UidCheckpoint(10, [11, 12, 15, 20]);
    c.settle(12);
    expect(c.value).toBe(10);
    c.settle(11);
    expect(c.value).toBe(12);
    c.settle(20);
    expect(c.value).toBe(12);
    c.settleThrough(15);
    expect(c.value).toBe(20);
  });

  it('passes UIDs that were never listed (expunged) once everything listed below is settled', () => {
    const c = new UidCheckpoint(0, [1, 2, 5]);
    c.settle(1);
    c.settleThrough(9);
    expect(c.value).toBe(9);
    const d = new UidCheckpoint(0, [1, 2]);
    d.settle(2);
    expect(d.value).toBe(0);
  });

  it('never goes backwards', () => {
    const c = new UidCheckpoint(50, [3, 4]);
    c.settle(3);
    c.settle(4);
    expect(c.value).toBe(50);
  });
});

describe('planPop3Sync', () => {
  it('fetches what is listed and not committed, in server order', () => {
    const listing = [
      { number: 1, identity: 'pop3#a', size: 10 },
      { number: 2, identity: 'pop3#b', size: 20 },
      { number: 3, identity: 'pop3#c', size: 30 },
    ];
    const plan = planPop3Sync(new Set(['pop3#b', 'pop3#zzz']), listing);
    expect(plan.fetch.map((m) => m.number)).toEqual([1, 3]);
    expect(plan.alreadyStored).toBe(1);
  });
});
