import type { ImapFlow } from 'imapflow';
import { UpstreamError } from '../../core/errors';
import type { Source } from '../../core/model';
import { chunks as chunked } from '../common/chunks';
import { imapError } from './errors';
import type { ImapFolders } from './folders';
import { SET_CHUNK } from './limits';
import { compactUidSet } from './uid-set';

/** imapflow's internal command runner (ImapFlow#exec in 2.x). */
type Exec = (
  command: string,
  attributes: Array<{ type: string; value: string }>,
) => Promise<{ next: () => void }>;

/**
 * The only writes of a session: UID STORE +FLAGS.SILENT (\\Deleted) and UID EXPUNGE of exactly the UIDs given, and
 * the undo of a \\Deleted flag a cut delete left behind; both in a folder SELECTed under the UIDVALIDITY expected.
 */
export class ImapDeletes {
  constructor(
    private readonly client: ImapFlow,
    private readonly source: Source,
    private readonly capabilities: ReadonlySet<string>,
    private readonly folders: ImapFolders,
    /** The session's UID SEARCH (under its own budget). */
    private readonly present: (uids: number[]) => Promise<Set<number>>,
  ) {}

  async deleteUidsNow(
    folder: string,
    uidValidity: string,
    uids: number[],
    mayDelete?: (next: 'store' | 'expunge') => void,
  ): Promise<Set<number>> {
    // imapflow itself would pick UID EXPUNGE or a plain EXPUNGE from this live map: check the same one.
    if (!this.capabilities.has('UIDPLUS') || !this.client.capabilities.has('UIDPLUS')) {
      throw new UpstreamError(
        'CAPABILITY_MISSING',
        `${this.source.host} has no UIDPLUS: Tributary deletes only with UID EXPUNGE, because a plain EXPUNGE would also remove messages marked \\Deleted by you or another client; set "retention": {"mode": "keep"} and remove "upstreamQuota" for this source`,
        false,
      );
    }
    const wanted = [...new Set(uids)].sort((a, b) => a - b);
    if (!wanted.length) return new Set();
    await this.selectForWrite(folder, uidValidity, 'deleted');
    for (const chunk of chunked(wanted, SET_CHUNK)) {
      if (!this.client.capabilities.has('UIDPLUS')) {
        throw new UpstreamError(
          'CAPABILITY_MISSING',
          `${this.source.host} withdrew UIDPLUS during the session: nothing more was deleted`,
          false,
        );
      }
      const set = compactUidSet(chunk);
      // What imapflow's messageDelete does (UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE of the same set),
      // in two steps so that `mayDelete` is asked right before each: either may be the one that deletes.
      this.ask(mayDelete, 'store');
      let flagged: boolean;
      try {
        flagged = await this.client.messageFlagsAdd(set, ['\\Deleted'], { uid: true, silent: true });
      } catch (err) {
        throw imapError(this.source, err, 'UID STORE +FLAGS');
      }
      if (!flagged) throw this.refused(folder, 'UID STORE \\Deleted');
      this.ask(mayDelete, 'expunge');
      await this.uidExpunge(folder, set);
    }
    const still = await this.present(wanted);
    return new Set(wanted.filter((uid) => !still.has(uid)));
  }

  /**
   * UID EXPUNGE (RFC 4315) of exactly `set`, through imapflow's command queue (`exec`, the call its own expunge
   * command makes: imapflow has no public method that expunges without flagging first).
   */
  private async uidExpunge(folder: string, set: string): Promise<void> {
    const exec = (this.client as unknown as { exec: Exec }).exec.bind(this.client);
    let response: Awaited<ReturnType<Exec>>;
    try {
      response = await exec('UID EXPUNGE', [{ type: 'SEQUENCE', value: set }]);
    } catch (err) {
      // imapflow rejects a NO or BAD answer with the server's text, and a lost connection with its own error.
      if (!this.client.usable) throw imapError(this.source, err, 'UID EXPUNGE');
      throw this.refused(folder, 'UID EXPUNGE');
    }
    response.next();
  }

  /** Asks `mayDelete` about the next command; when it refuses, the connection is dropped before that command. */
  private ask(mayDelete: ((next: 'store' | 'expunge') => void) | undefined, next: 'store' | 'expunge'): void {
    try {
      mayDelete?.(next);
    } catch (err) {
      this.client.close();
      throw err;
    }
  }

  private refused(folder: string, what: string): UpstreamError {
    if (!this.client.usable) {
      return new UpstreamError(
        'CONNECTION_LOST',
        `the connection to ${this.source.host}:${this.source.port} was lost during ${what}`,
        true,
      );
    }
    return new UpstreamError(
      'PROTOCOL_ERROR',
      `${this.source.host} refused ${what} in "${folder}"; it will be retried`,
      true,
    );
  }

  /** SELECT read-write, refusing when the UIDVALIDITY is not the one the UIDs were read under. */
  private async selectForWrite(folder: string, uidValidity: string, what: string): Promise<void> {
    let box: Awaited<ReturnType<ImapFlow['mailboxOpen']>>;
    await this.folders.ready(folder, 'open');
    try {
      box = await this.client.mailboxOpen(folder, { readOnly: false });
    } catch (err) {
      throw this.folders.folderError(folder, err, `SELECT ${folder}`);
    }
    if (String(box.uidValidity) !== uidValidity) {
      throw new UpstreamError(
        'PROTOCOL_ERROR',
        `the UIDVALIDITY of "${folder}" on ${this.source.host} changed (${uidValidity} -> ${String(box.uidValidity)}): its UIDs now name other messages, so nothing was ${what}`,
        true,
      );
    }
  }

  async clearDeletedNow(folder: string, uidValidity: string, uids: number[]): Promise<void> {
    const wanted = [...new Set(uids)].sort((a, b) => a - b);
    if (!wanted.length) return;
    await this.selectForWrite(folder, uidValidity, 'changed');
    for (const chunk of chunked(wanted, SET_CHUNK)) {
      let done: boolean;
      try {
        done = await this.client.messageFlagsRemove(compactUidSet(chunk), ['\\Deleted'], { uid: true });
      } catch (err) {
        throw imapError(this.source, err, 'UID STORE -FLAGS');
      }
      if (!done) {
        throw new UpstreamError(
          'PROTOCOL_ERROR',
          `${this.source.host} refused UID STORE -FLAGS (\\Deleted) in "${folder}"; it will be retried`,
          true,
        );
      }
    }
  }
}
