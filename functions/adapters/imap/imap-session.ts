import type { ImapFlow } from 'imapflow';
import type { FolderStatus, Source } from '../../core/model';
import type { Bytes, ConnectOptions, ImapSession, Logger, TlsInfo } from '../../core/ports';
import { ImapBodies, type Guard } from './bodies';
import { connectImap, tlsInfoOf, type SessionGate } from './connect';
import type { ConnectionWatch } from './connection-watch';
import { ImapDeletes } from './delete';
import { imapError } from './errors';
import { ImapFolders } from './folders';
import { ImapHeaderProof } from './header-proof';
import { HEADER_BYTES_PER_MESSAGE, LISTING_BYTES_PER_MESSAGE, SMALL_ANSWER_BYTES } from './limits';

export { imapError } from './errors';
export { compactUidSet } from './uid-set';

/** An IMAP session, logged in: see ImapSession (core/ports.ts). */
export async function openImapSession(
  source: Source,
  password: string,
  options: ConnectOptions & { logger?: Logger },
): Promise<ImapSession> {
  const { client, watch, wholeMessageBytes, gate } = await connectImap(source, password, options);
  return new ImapFlowSession(client, source, options.timeoutMs, watch, wholeMessageBytes, gate);
}

/**
 * The session: each operation under its budget of received bytes (a failed one marks the session, so close drops the
 * connection instead of a LOGOUT that would wait behind it), carried out by the part that reads folders, fetches
 * bodies, deletes, or proves header blocks.
 */
class ImapFlowSession implements ImapSession {
  readonly capabilities: ReadonlySet<string>;
  readonly tls?: TlsInfo;

  /** An operation failed: commands may still be in flight (an endless answer), so LOGOUT would wait behind them. */
  private failed = false;
  private readonly folders: ImapFolders;
  private readonly bodies: ImapBodies;
  private readonly deletes: ImapDeletes;
  private readonly proof: ImapHeaderProof;

  constructor(
    private readonly client: ImapFlow,
    private readonly source: Source,
    private readonly timeoutMs: number,
    private readonly watch: ConnectionWatch,
    wholeMessageBytes: number,
    gate: SessionGate,
  ) {
    this.capabilities = new Set([...client.capabilities.keys()].map((c) => c.toUpperCase()));
    this.tls = tlsInfoOf(client);
    // Courier has no ID (imapflow's serverInfo stays null); its greeting text is "Courier-IMAP ready. ...".
    const courier = /\bCourier-IMAP\b/i.test(client.greeting ?? '');
    const guard: Guard = (stage, bytes, fn) => this.guarded(stage, bytes, fn);
    const present = (uids: number[]) => this.present(uids);
    this.folders = new ImapFolders(client, source, courier, gate);
    this.bodies = new ImapBodies(client, source, guard, present, wholeMessageBytes);
    this.deletes = new ImapDeletes(client, source, this.capabilities, this.folders, present);
    this.proof = new ImapHeaderProof(client, source, this.folders, this.bodies);
  }

  /** An operation under a budget of received bytes (ConnectionWatch.guarded); a failure marks the session. */
  private async guarded<T>(stage: string, bytes: number, fn: () => Promise<T>): Promise<T> {
    try {
      return await this.watch.guarded(stage, bytes, fn);
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  listFolders(): Promise<string[]> {
    return this.guarded('LIST', 16 * SMALL_ANSWER_BYTES, () => this.folders.listFoldersNow());
  }

  peekFolder(folder: string): Promise<FolderStatus | undefined> {
    return this.guarded(`STATUS ${folder}`, SMALL_ANSWER_BYTES, () => this.folders.peekNow(folder));
  }

  openFolder(folder: string): Promise<FolderStatus> {
    return this.guarded(`EXAMINE ${folder}`, SMALL_ANSWER_BYTES, () => this.folders.openFolderNow(folder));
  }

  listUids(
    fromUid: number,
    options: { internalDate?: boolean } = {},
  ): Promise<Array<{ uid: number; size: number; internalDate?: number }>> {
    const exists = Number(this.client.mailbox ? this.client.mailbox.exists : 0) || 0;
    return this.guarded('UID FETCH (list)', SMALL_ANSWER_BYTES + exists * LISTING_BYTES_PER_MESSAGE, () =>
      this.folders.listUidsNow(fromUid, options),
    );
  }

  present(uids: number[]): Promise<Set<number>> {
    return this.guarded('UID SEARCH', SMALL_ANSWER_BYTES + uids.length * LISTING_BYTES_PER_MESSAGE, () =>
      this.folders.presentNow(uids),
    );
  }

  deleteUids(
    folder: string,
    uidValidity: string,
    uids: number[],
    mayDelete?: (next: 'store' | 'expunge') => void,
  ): Promise<Set<number>> {
    return this.guarded(
      'SELECT / UID STORE / UID EXPUNGE',
      SMALL_ANSWER_BYTES + uids.length * LISTING_BYTES_PER_MESSAGE,
      () => this.deletes.deleteUidsNow(folder, uidValidity, uids, mayDelete),
    );
  }

  clearDeleted(folder: string, uidValidity: string, uids: number[]): Promise<void> {
    return this.guarded(
      'SELECT / UID STORE -FLAGS',
      SMALL_ANSWER_BYTES + uids.length * LISTING_BYTES_PER_MESSAGE,
      () => this.deletes.clearDeletedNow(folder, uidValidity, uids),
    );
  }

  headerBlocks(folder: string, uidValidity: string, uids: number[]): Promise<Map<number, Buffer>> {
    return this.guarded(
      'EXAMINE / UID FETCH BODY.PEEK[HEADER]',
      2 * SMALL_ANSWER_BYTES + uids.length * HEADER_BYTES_PER_MESSAGE,
      () => this.proof.headerBlocksNow(folder, uidValidity, uids),
    );
  }

  fetchBodies(
    messages: Array<{ uid: number; size: number }>,
    onMessage: (uid: number, size: number, body: Bytes) => Promise<void>,
  ): Promise<void> {
    return this.bodies.fetchBodies(messages, onMessage);
  }

  quota(): Promise<{ usedBytes: number; limitBytes: number } | undefined> {
    return this.guarded('GETQUOTAROOT', SMALL_ANSWER_BYTES, () => this.quotaNow());
  }

  private async quotaNow(): Promise<{ usedBytes: number; limitBytes: number } | undefined> {
    if (!this.capabilities.has('QUOTA')) return undefined;
    try {
      // The account's quota root, whichever folder is open: before and after a delete compare the same root.
      const q = await this.client.getQuota('INBOX');
      if (!q || !q.storage || q.storage.limit === undefined) return undefined;
      return { usedBytes: Number(q.storage.usage ?? 0), limitBytes: Number(q.storage.limit) };
    } catch (err) {
      throw imapError(this.source, err, 'GETQUOTAROOT');
    }
  }

  abort(): void {
    this.client.close();
  }

  /**
   * LOGOUT, then the connection is closed. imapflow queues LOGOUT behind any command still in flight, and after a
   * failure one may never end (an endless answer, a stalled server): then the connection is just dropped, and a
   * LOGOUT gets at most the read timeout. Before, a run failed by an endless answer hung here until the hard
   * deadline dropped the connection.
   */
  async close(): Promise<void> {
    if (this.failed || this.watch.overrun || !this.client.usable) {
      this.client.close();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no answer to LOGOUT')), this.timeoutMs);
    });
    try {
      await this.guarded('LOGOUT', SMALL_ANSWER_BYTES, () => Promise.race([this.client.logout(), late]));
    } catch {
      this.client.close();
    } finally {
      clearTimeout(timer);
    }
  }
}
