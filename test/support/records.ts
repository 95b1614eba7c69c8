import { createHash } from 'node:crypto';
import { identityKey, type MessageRecord } from '../../functions/core/model';

/**
 * A message record as the sync would commit it, for tests of the index alone: INBOX UID `uid` (UIDVALIDITY 7),
 * an object key and hashes derived from the source and UID, dated `uid` hours before `t0`.
 */
export function messageRecord(sourceId: string, uid: number, t0: number, size = 100 * uid): MessageRecord {
  const upstream = { kind: 'imap', folder: 'INBOX', uidValidity: '7', uid } as const;
  const sha = createHash('sha256').update(`${sourceId}/${uid}`).digest('hex');
  return {
    sourceId,
    identity: identityKey(upstream),
    upstream,
    object: { key: `raw/${sourceId}/${sha}`, size, sha256: sha, contentSha256: sha },
    metadata: {
      subject: `message ${uid}`,
      to: [],
      cc: [],
      snippet: '',
      hasAttachments: false,
      attachments: [],
      parse: 'full',
    },
    fetchedAt: new Date(t0 + uid * 1000).toISOString(),
    sortDate: new Date(t0 - uid * 3_600_000).toISOString(),
    seen: false,
    flagged: false,
  };
}
