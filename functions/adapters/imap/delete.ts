import type { ImapFlow } from 'imapflow';
import { UpstreamError } from '../../core/errors';
import type { Source } from '../../core/model';
import { chunks as chunked } from '../common/chunks';
import { imapError } from './errors';
import type { ImapFolders } from './folders';
import { SET_CHUNK } from './limits';
import { compactUidSet } from './uid-set';

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

  async deleteUidsNow(folder: string, uidValidity: string, uids: number[]): Promise<Set<number>> {
    // imapflow itself picks UID EXPUNGE or a plain EXPUNGE from this live map: check the same one.
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
      let done: boolean;
      try {
        // imapflow's expunge: UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE of the same set. Its options go
        // on to the STORE as they are, so `silent` works although messageDelete's type does not list it.
        const options = { uid: true, silent: true };
        done = await this.client.messageDelete(compactUidSet(chunk), options);
      } catch (err) {
        throw imapError(this.source, err, 'UID STORE/UID EXPUNGE');
      }
      if (!done) {
        if (!this.client.usable) {
          throw new UpstreamError(
            'CONNECTION_LOST',
            `the connection to ${this.source.host}:${this.source.port} was lost during UID STORE/UID EXPUNGE`,
            true,
          );
        }
        throw new UpstreamError(
          'PROTOCOL_ERROR',
          `${this.source.host} refused UID STORE \\Deleted or UID EXPUNGE in "${folder}"; it will be retried`,
          true,
        );
      }
    }
    const still = await this.present(wanted);
    return new Set(wanted.filter((uid) => !still.has(uid)));
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
