import type { ImapFlow } from 'imapflow';
import { UpstreamError } from '../../core/errors';
import type { FolderStatus, Source } from '../../core/model';
import { chunks as chunked } from '../common/chunks';
import type { SessionGate } from './connect';
import { imapError } from './errors';
import { SET_CHUNK } from './limits';
import { compactUidSet } from './uid-set';

/** A usable UID / UIDNEXT: a positive safe integer, else undefined. */
function positive(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** A usable count: a non-negative safe integer, else undefined. */
function nonNegative(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/**
 * Folders of one session as read: LIST, EXAMINE (with STATUS where EXAMINE says too little), the UID listing, UID
 * SEARCH, and which UIDVALIDITY the open folder has. Read-only: a folder is EXAMINEd, except Courier's SELECT once.
 */
export class ImapFolders {
  /** The UIDVALIDITY of each opened folder view, also when only STATUS told it (imapflow keeps only EXAMINE's). */
  private readonly validities = new WeakMap<object, string>();
  /** Folders this session has SELECTed once already (Courier only). */
  private readonly selectedOnce = new Set<string>();

  constructor(
    private readonly client: ImapFlow,
    private readonly source: Source,
    /** Courier-IMAP (its greeting says so): a folder is SELECTed once per session before EXAMINE (selectOnce). */
    private readonly courier: boolean,
    /** What the login left for later: the namespace, ENABLE UTF8=ACCEPT (connect.ts, leanLogin). */
    private readonly gate: SessionGate = { beforeName: async () => {}, beforeOpen: async () => {} },
  ) {}

  /**
   * Before naming a folder to imapflow (it prefixes names with the personal namespace): that namespace loaded; with
   * `open`, before opening it: UTF8=ACCEPT enabled where offered.
   */
  async ready(folder?: string, open?: 'open'): Promise<void> {
    try {
      if (open && folder !== undefined) await this.gate.beforeOpen(folder);
      else await this.gate.beforeName(folder);
    } catch (err) {
      throw imapError(this.source, err, open ? 'NAMESPACE / ENABLE' : 'NAMESPACE');
    }
    if (open && folder !== undefined) this.skipFolderListing(folder);
  }

  /**
   * imapflow's SELECT/EXAMINE first asks `LIST "" <folder>` and LSUB (two round trips per folder and session) for
   * the folder's delimiter, special use and subscription, none of which a sync reads; it skips them when its
   * folder cache already holds the name. So the name goes into that cache, as imapflow would spell it (INBOX in
   * capitals; other names behind the personal namespace's prefix, normalizePath in imapflow's tools). A folder that
   * does not exist is still told apart: on a refused SELECT imapflow asks LIST itself (mailboxMissing).
   */
  private skipFolderListing(folder: string): void {
    const inner = this.client as unknown as {
      folders?: Map<string, { path: string }>;
      namespace?: { prefix?: string };
    };
    if (!(inner.folders instanceof Map)) return;
    const prefix = inner.namespace?.prefix ?? '';
    const path =
      folder.toUpperCase() === 'INBOX'
        ? 'INBOX'
        : prefix && !folder.startsWith(prefix)
          ? prefix + folder
          : folder;
    if (!inner.folders.has(path)) inner.folders.set(path, { path });
  }

  /**
   * The folder's UIDVALIDITY, UIDNEXT and message count by STATUS, without opening it: what a poll compares with
   * its checkpoint before anything else. Undefined when the server refused STATUS or left one of them out (the
   * caller then EXAMINEs the folder, which says more).
   */
  async peekNow(folder: string): Promise<FolderStatus | undefined> {
    // Courier numbers new messages only when a session that may write opens the folder (selectOnce): whether its
    // STATUS counts mail that arrived since is not something to rely on, so Courier's folders are always opened.
    if (this.courier) return undefined;
    const status = await this.statusOf(folder, { uidNext: true, uidValidity: true, messages: true });
    const uidNext = positive(status?.uidNext);
    const exists = nonNegative(status?.messages);
    if (status?.uidValidity === undefined || uidNext === undefined || exists === undefined) return undefined;
    return { uidValidity: String(status.uidValidity), uidNext, exists };
  }

  async listFoldersNow(): Promise<string[]> {
    await this.ready();
    try {
      return (await this.client.list()).map((m) => m.path);
    } catch (err) {
      throw imapError(this.source, err, 'LIST');
    }
  }

  async openFolderNow(folder: string): Promise<FolderStatus> {
    await this.ready(folder, 'open');
    if (this.courier) await this.selectOnce(folder);
    let box: Awaited<ReturnType<ImapFlow['mailboxOpen']>>;
    try {
      box = await this.client.mailboxOpen(folder, { readOnly: true });
    } catch (err) {
      throw this.folderError(folder, err, `EXAMINE ${folder}`);
    }
    // imapflow leaves a field unset when the server did not send it or sent no usable number (never NaN).
    let uidValidity = box.uidValidity === undefined ? undefined : String(box.uidValidity);
    let uidNext = positive(box.uidNext);
    let exists = nonNegative(box.exists);
    if (uidValidity === undefined || uidNext === undefined || exists === undefined) {
      // RFC 3501 lets EXAMINE omit UIDNEXT (Courier does); STATUS must answer it.
      const status = await this.statusOf(folder, {
        ...(uidNext === undefined ? { uidNext: true } : {}),
        ...(uidValidity === undefined ? { uidValidity: true } : {}),
        ...(exists === undefined ? { messages: true } : {}),
      });
      uidNext ??= positive(status?.uidNext);
      uidValidity ??= status?.uidValidity === undefined ? undefined : String(status.uidValidity);
      exists ??= nonNegative(status?.messages);
    }
    if (uidValidity === undefined || exists === undefined) {
      throw new UpstreamError(
        'PROTOCOL_ERROR',
        `${this.source.host} did not say the ${uidValidity === undefined ? 'UIDVALIDITY' : 'message count'} of "${folder}" in answer to EXAMINE or STATUS: without it no message can be named safely, so nothing was read`,
        true,
      );
    }
    this.validities.set(box, uidValidity);
    const highestModseq = box.highestModseq === undefined ? undefined : String(box.highestModseq);
    const base = { uidValidity, exists, ...(highestModseq === undefined ? {} : { highestModseq }) };
    if (uidNext !== undefined) return { ...base, uidNext };
    // Nor in STATUS: the highest UID + 1 stands in. It is never above the real UIDNEXT, so "everything below it
    // is listed" stays true; it goes down when the newest messages are expunged (the planner knows, see uidNextDerived).
    return { ...base, uidNext: (await this.highestUid(exists)) + 1, uidNextDerived: true };
  }

  /**
   * Courier only: SELECT the folder once per session, then EXAMINE it as on every other server. Courier keeps a
   * folder's UID list (`courierimapuiddb`) only once a session that may write has opened it; a folder only ever
   * EXAMINEd (or read with STATUS) is numbered afresh in each session with a new UIDVALIDITY, so every run of a
   * `keep` source saw "UIDVALIDITY changed" and downloaded the whole folder again to match it by content. One
   * SELECT makes Courier save the list, and the UIDVALIDITY then stays (docs/servers.md). The SELECT changes no
   * message: Courier clears only \Recent, which belongs to one session anyway; no flag is stored, nothing is
   * expunged (the EXAMINE that follows closes the folder without expunging, RFC 3501 6.3.1, never CLOSE), and
   * bodies are still read with BODY.PEEK. Measured in test/integration/sync/courier.test.ts. Other servers
   * (Dovecot) keep their UIDs without it and are only ever EXAMINEd. A refused SELECT (an ACL that allows only
   * reading, say) is no error: the EXAMINE goes on as before, and says so if the folder is missing.
   */
  private async selectOnce(folder: string): Promise<void> {
    const key = folder.toUpperCase() === 'INBOX' ? 'INBOX' : folder;
    if (this.selectedOnce.has(key)) return;
    this.selectedOnce.add(key);
    try {
      await this.client.mailboxOpen(folder, { readOnly: false });
    } catch (err) {
      if (!this.client.usable) throw imapError(this.source, err, `SELECT ${folder}`);
    }
  }

  /** STATUS of a folder; undefined when the server refused it (imapflow answers false then). */
  private async statusOf(
    folder: string,
    query: { uidNext?: boolean; uidValidity?: boolean; messages?: boolean },
  ): Promise<Exclude<Awaited<ReturnType<ImapFlow['status']>>, false> | undefined> {
    let status: Awaited<ReturnType<ImapFlow['status']>> | false;
    await this.ready(folder);
    try {
      status = await this.client.status(folder, query);
    } catch (err) {
      throw this.folderError(folder, err, `STATUS ${folder}`);
    }
    if (status) return status;
    if (!this.client.usable) {
      throw new UpstreamError(
        'CONNECTION_LOST',
        `the connection to ${this.source.host}:${this.source.port} was lost during STATUS ${folder}`,
        true,
      );
    }
    return undefined;
  }

  /** The highest UID of the open folder (`UID FETCH * UID`), 0 when it is empty. */
  private async highestUid(exists: number): Promise<number> {
    // `UID FETCH *` of an empty folder is an error on some servers, and there is no UID to find.
    if (exists === 0) return 0;
    let highest = 0;
    try {
      for await (const m of this.client.fetch({ uid: '*' }, { uid: true }, { uid: true })) {
        if (Number.isSafeInteger(m.uid) && m.uid > highest) highest = m.uid;
      }
    } catch (err) {
      throw imapError(this.source, err, 'UID FETCH * (UID)');
    }
    if (!highest && !this.client.usable) {
      throw new UpstreamError(
        'CONNECTION_LOST',
        `the connection to ${this.source.host}:${this.source.port} was lost during UID FETCH * (UID)`,
        true,
      );
    }
    return highest;
  }

  folderError(folder: string, err: unknown, stage: string): UpstreamError {
    const e = err as { serverResponseCode?: string; responseText?: string; mailboxMissing?: boolean };
    if (
      e.serverResponseCode === 'NONEXISTENT' ||
      /doesn't exist|does not exist|unknown mailbox/i.test(e.responseText ?? '')
    ) {
      return new UpstreamError(
        'FOLDER_NOT_FOUND',
        `the folder "${folder}" does not exist on ${this.source.host} for user ${this.source.user}: check "folders" (names are case-sensitive, e.g. "INBOX" or "Archive/2024")`,
        false,
        { cause: err },
      );
    }
    return imapError(this.source, err, stage);
  }

  async listUidsNow(
    fromUid: number,
    options: { internalDate?: boolean },
  ): Promise<Array<{ uid: number; size: number; internalDate?: number }>> {
    // By UID: a server that lists one twice must not make us fetch it twice.
    const out = new Map<number, { uid: number; size: number; internalDate?: number }>();
    const withDate = options.internalDate === true;
    try {
      if ((this.client.mailbox && Number(this.client.mailbox.exists)) === 0) return [];
      const query = withDate ? { uid: true, size: true, internalDate: true } : { uid: true, size: true };
      for await (const m of this.client.fetch(`${fromUid}:*`, query, { uid: true })) {
        // `n:*` also answers the highest UID when it is below n (RFC 3501): keep only what was asked.
        if (m.uid < fromUid) continue;
        const entry: { uid: number; size: number; internalDate?: number } = {
          uid: m.uid,
          size: Number(m.size ?? 0),
        };
        if (withDate) {
          // imapflow gives a Date, or the raw text when it cannot parse it: then the date is unknown, not invented.
          const ms = m.internalDate instanceof Date ? m.internalDate.getTime() : NaN;
          if (Number.isFinite(ms)) entry.internalDate = ms;
        }
        out.set(entry.uid, entry);
      }
    } catch (err) {
      throw imapError(this.source, err, 'UID FETCH (list)');
    }
    return [...out.values()].sort((a, b) => a.uid - b.uid);
  }

  async presentNow(uids: number[]): Promise<Set<number>> {
    const found = new Set<number>();
    for (const chunk of chunked([...new Set(uids)], SET_CHUNK)) {
      let result: Awaited<ReturnType<ImapFlow['search']>>;
      try {
        result = await this.client.search({ uid: compactUidSet(chunk) }, { uid: true });
      } catch (err) {
        throw imapError(this.source, err, 'UID SEARCH');
      }
      // imapflow answers false when the server refused the search, undefined without an open folder: neither
      // means "none of them", which would pass every message for expunged.
      if (!Array.isArray(result)) {
        if (!this.client.usable) {
          throw new UpstreamError(
            'CONNECTION_LOST',
            `the connection to ${this.source.host}:${this.source.port} was lost during UID SEARCH`,
            true,
          );
        }
        throw new UpstreamError(
          'PROTOCOL_ERROR',
          `IMAP UID SEARCH on ${this.source.host}:${this.source.port} failed${this.client.mailbox ? '' : ' (no folder open)'}`,
          true,
        );
      }
      const asked = new Set(chunk);
      for (const uid of result) if (asked.has(uid)) found.add(uid);
    }
    return found;
  }

  /** The UIDVALIDITY of `folder` when it is the open folder, as EXAMINE/SELECT (or STATUS after it) said. */
  openValidity(folder: string): string | undefined {
    const box = this.client.mailbox;
    if (!box) return undefined;
    // imapflow keeps INBOX upper-cased whatever case it was asked in (it is case-insensitive, RFC 3501 5.1).
    const same = box.path === folder || (box.path === 'INBOX' && folder.toUpperCase() === 'INBOX');
    if (!same) return undefined;
    return box.uidValidity !== undefined ? String(box.uidValidity) : this.validities.get(box);
  }
}
