import type { ImapFlow } from 'imapflow';
import { UpstreamError } from '../../core/errors';
import type { Source } from '../../core/model';
import { chunks as chunked } from '../common/chunks';
import type { ImapBodies } from './bodies';
import { imapError } from './errors';
import type { ImapFolders } from './folders';
import { SET_CHUNK } from './limits';
import { compactUidSet } from './uid-set';

/** The header blocks (BODY.PEEK[HEADER]) of UIDs right before a delete: the proof the message is the stored one. */
export class ImapHeaderProof {
  constructor(
    private readonly client: ImapFlow,
    private readonly source: Source,
    private readonly folders: ImapFolders,
    private readonly bodies: ImapBodies,
  ) {}

  async headerBlocksNow(folder: string, uidValidity: string, uids: number[]): Promise<Map<number, Buffer>> {
    const wanted = [...new Set(uids)].sort((a, b) => a - b);
    const blocks = new Map<number, Buffer>();
    if (!wanted.length) return blocks;
    // The open folder in whatever mode (a delete leaves it SELECTed); any other is EXAMINEd, never SELECTed.
    const current =
      this.folders.openValidity(folder) ?? (await this.folders.openFolderNow(folder)).uidValidity;
    if (current !== uidValidity) {
      throw new UpstreamError(
        'PROTOCOL_ERROR',
        `the UIDVALIDITY of "${folder}" on ${this.source.host} changed (${uidValidity} -> ${current}): its UIDs now name other messages, so none of them can be checked`,
        true,
      );
    }
    for (const chunk of chunked(wanted, SET_CHUNK)) {
      const asked = new Set(chunk);
      try {
        // `headers` is BODY.PEEK[HEADER]: reading never sets \Seen. A literal arrives as the bytes sent.
        for await (const m of this.client.fetch(
          compactUidSet(chunk),
          { uid: true, headers: true },
          { uid: true },
        )) {
          if (!m.headers) continue;
          if (!asked.has(m.uid) || blocks.has(m.uid)) {
            throw new UpstreamError(
              'PROTOCOL_ERROR',
              `${this.source.host} sent the header block of UID ${m.uid} ${blocks.has(m.uid) ? 'twice' : 'unasked'} in one UID FETCH`,
              true,
            );
          }
          blocks.set(m.uid, m.headers);
        }
      } catch (err) {
        throw imapError(this.source, err, 'UID FETCH BODY.PEEK[HEADER]');
      }
      // A UID left out is taken for expunged by the caller: make sure it is.
      await this.bodies.confirmGone(
        chunk.filter((uid) => !blocks.has(uid)),
        'BODY.PEEK[HEADER]',
      );
    }
    return blocks;
  }
}
