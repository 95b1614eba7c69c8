import type { FolderState, FolderStatus } from './model';

export type ImapFolderPlan =
  | { kind: 'unchanged'; why: string }
  | { kind: 'initial'; fromUid: 1; why: string }
  | { kind: 'incremental'; fromUid: number; why: string }
  | { kind: 'rematch'; previousUidValidity: string; generation: number; why: string };

/**
 * What to do with one IMAP folder, from the stored state and one SELECT/EXAMINE answer.
 * Decides only; the sync use case carries the plan out.
 */
export function planImapFolder(state: FolderState | undefined, status: FolderStatus): ImapFolderPlan {
  if (!state) return { kind: 'initial', fromUid: 1, why: 'first sync of this folder: fetch everything' };
  if (state.uidValidity !== status.uidValidity) {
    return {
      kind: 'rematch',
      previousUidValidity: state.uidValidity,
      generation: 0,
      why: `UIDVALIDITY changed (${state.uidValidity} -> ${status.uidValidity}): the UIDs are void, match by content`,
    };
  }
  if (status.uidNextDerived && status.uidNext < state.uidNext) {
    // The server sends no UIDNEXT; the adapter's stand-in (highest UID + 1) goes back whenever the newest messages
    // are expunged, so here going back is not a re-created folder (one would go undetected, as in decision 0004
    // when it outgrows the old UIDNEXT). What it does say: no UID at or above the saved UIDNEXT exists, so nothing
    // is new; only what a previous run left below it may be pending.
    const pending = state.committedThroughUid < state.uidNext - 1;
    if (!pending) {
      return {
        kind: 'unchanged',
        why: `no UID at or above ${state.uidNext} (highest UID + 1 is ${status.uidNext}, the server sends no UIDNEXT) and everything below committed`,
      };
    }
    return {
      kind: 'incremental',
      fromUid: state.committedThroughUid + 1,
      why: `fetch UIDs from ${state.committedThroughUid + 1}, left by a previous run (no UID at or above ${state.uidNext}; the server sends no UIDNEXT)`,
    };
  }
  if (status.uidNext < state.uidNext) {
    // RFC 9051 forbids it, but a mailbox deleted and re-created with the same UIDVALIDITY does this: the old UIDs
    // name other messages now. A new generation keeps the new identities apart; content matching does the rest.
    return {
      kind: 'rematch',
      previousUidValidity: state.uidValidity,
      generation: (state.generation ?? 0) + 1,
      why: `UIDNEXT went back (${state.uidNext} -> ${status.uidNext}) under the same UIDVALIDITY ${status.uidValidity}: the folder was re-created and its UIDs reused, match by content`,
    };
  }
  const pendingBelowSavedUidNext = state.committedThroughUid < state.uidNext - 1;
  if (status.uidNext === state.uidNext && !pendingBelowSavedUidNext) {
    return { kind: 'unchanged', why: 'UIDVALIDITY and UIDNEXT unchanged and everything below committed' };
  }
  return {
    kind: 'incremental',
    fromUid: state.committedThroughUid + 1,
    why: `fetch UIDs from ${state.committedThroughUid + 1} (UIDNEXT ${state.uidNext} -> ${status.uidNext})`,
  };
}

/** The folder generation a run works in: a rematch's new one, else the stored one. */
export function folderGeneration(state: FolderState | undefined, plan: ImapFolderPlan): number {
  return plan.kind === 'rematch' ? plan.generation : (state?.generation ?? 0);
}

/** The UIDVALIDITY that goes into identities: the server's, plus the generation when there is one. */
export function effectiveValidity(uidValidity: string, generation: number): string {
  return generation ? `${uidValidity}.r${generation}` : uidValidity;
}

/**
 * Advances an IMAP checkpoint: the highest UID such that every listed UID at or below it is settled
 * (committed, or gone from the server). UIDs are never reused within one UIDVALIDITY, so a vanished UID is settled.
 */
export class UidCheckpoint {
  private readonly pending: number[];
  private index = 0;
  private settledSet = new Set<number>();

  constructor(
    private committedThrough: number,
    listedUids: number[],
  ) {
    this.pending = [...listedUids].sort((a, b) => a - b);
  }

  settle(uid: number): void {
    this.settledSet.add(uid);
    while (this.index < this.pending.length && this.settledSet.has(this.pending[this.index]!)) {
      this.committedThrough = Math.max(this.committedThrough, this.pending[this.index]!);
      this.settledSet.delete(this.pending[this.index]!);
      this.index++;
    }
  }

  /** Everything listed up to and including `uid` is settled (e.g. a batch finished: the missing ones vanished). */
  settleThrough(uid: number): void {
    for (const u of this.pending) if (u <= uid) this.settle(u);
    // Nothing listed at or below `uid` is pending any more: UIDs up to it that were never listed are gone.
    if (this.index >= this.pending.length || this.pending[this.index]! > uid) {
      this.committedThrough = Math.max(this.committedThrough, uid);
    }
  }

  get value(): number {
    return this.committedThrough;
  }
}

export interface Pop3Candidate {
  number: number;
  identity: string;
  size: number;
}

/** POP3: fetch what the server lists and the store does not hold. Message numbers only address this session. */
export function planPop3Sync(
  committed: ReadonlySet<string>,
  listing: Pop3Candidate[],
): { fetch: Pop3Candidate[]; alreadyStored: number } {
  const fetch = listing.filter((m) => !committed.has(m.identity));
  return { fetch, alreadyStored: listing.length - fetch.length };
}
