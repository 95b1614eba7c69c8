import { createHash } from 'node:crypto';
import type { MailLab, TestUser } from './mail-lab';

export interface ServedMessage {
  uid: number;
  size: number;
  sha256: string;
  flags: string[];
  internalDate: number;
}

export interface ServerState {
  uidValidity: string;
  highestModseq: string;
  messages: ServedMessage[];
}

/**
 * What Dovecot holds in one folder, read through a separate IMAP client with EXAMINE and BODY.PEEK, so looking
 * changes nothing. The same maildrop is what POP3 serves.
 */
export async function serverState(lab: MailLab, user: TestUser, folder = 'INBOX'): Promise<ServerState> {
  const client = await lab.imap(user);
  try {
    const status = await client.status(folder, { highestModseq: true, uidValidity: true });
    if (!status) throw new Error(`STATUS ${folder} failed`);
    const lock = await client.getMailboxLock(folder, { readOnly: true });
    const messages: ServedMessage[] = [];
    try {
      if (client.mailbox && client.mailbox.exists > 0) {
        for await (const m of client.fetch(
          '1:*',
          { uid: true, source: true, flags: true, internalDate: true },
          { uid: true },
        )) {
          messages.push({
            uid: m.uid,
            size: m.source!.length,
            sha256: createHash('sha256').update(m.source!).digest('hex'),
            // \Recent belongs to whichever session saw the message first (this one, often): not state.
            flags: [...(m.flags ?? [])].filter((f) => f !== '\\Recent').sort(),
            internalDate: new Date(m.internalDate!).getTime(),
          });
        }
      }
    } finally {
      lock.release();
    }
    return {
      uidValidity: String(status.uidValidity),
      highestModseq: String(status.highestModseq),
      messages: messages.sort((a, b) => a.uid - b.uid),
    };
  } finally {
    await client.logout();
  }
}

export function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}
