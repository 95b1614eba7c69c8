import tls from 'node:tls';
import net from 'node:net';
import type { ImapFlow } from 'imapflow';
import type { Source } from '../../core/model';
import { printable } from '../common/printable';
import { trustOptions } from '../common/tls';

/**
 * What a greeting that is certainly not IMAP's looks like (a POP3 `+OK`, an SMTP `220`), for the message that the
 * port or protocol is wrong; undefined for anything else.
 */
export function greetsLikeOther(text: string): string | undefined {
  if (/^\+OK/i.test(text)) return 'a POP3 server';
  if (/^220[ -]/.test(text)) return 'an SMTP server';
  return undefined;
}

/**
 * Reads the first bytes the server sends, beside imapflow: a POP3 or SMTP greeting means the wrong port or protocol,
 * which imapflow only notices at its greeting timeout (10 s) since such a line is no IMAP greeting to it. The
 * connection is dropped at once instead (connect() then fails), and `found` says what the port greets like.
 */
export class GreetingSniffer {
  found: string | undefined;
  private text = '';
  private decided = false;

  constructor(client: ImapFlow) {
    // As in ConnectionWatch: whatever feeds imapflow's parser is piped into its `streamer`; this only observes.
    const streamer = (client as unknown as { streamer?: NodeJS.EventEmitter }).streamer;
    const look = (chunk: Buffer) => {
      if (this.decided) return;
      this.text += chunk.toString('latin1');
      // Four bytes tell "+OK" and "220 " from "* OK"; a shorter greeting ends its line sooner.
      if (this.text.length < 4 && !this.text.includes('\n')) return;
      this.decided = true;
      this.found = greetsLikeOther(this.text);
      if (this.found) client.close();
    };
    streamer?.on('pipe', (src: NodeJS.EventEmitter) => src.on('data', look));
    streamer?.on('unpipe', (src: NodeJS.EventEmitter) => src.off('data', look));
  }
}

/**
 * After a greeting timeout: what does the port say? A POP3 (`+OK`) or SMTP (`220`) greeting means the user gave
 * the wrong port or protocol, which deserves its own message. Only the greeting line is read; nothing is sent.
 */
export async function probeGreeting(
  source: Source,
  servername: string | undefined,
  timeoutMs: number,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const options = { host: source.host, port: source.port };
    const socket =
      source.tls === 'implicit'
        ? tls.connect({
            ...options,
            ...(servername ? { servername } : {}),
            ...trustOptions(source),
          })
        : net.connect(options);
    let text = '';
    const done = (what: string | undefined) => {
      socket.destroy();
      resolve(what);
    };
    socket.setTimeout(timeoutMs, () => done(undefined));
    socket.on('error', () => done(undefined));
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      // A greeting is one short line: kilobytes without a line end are not one (and are not worth waiting for).
      if (!text.includes('\n') && text.length <= 4096) return;
      const other = greetsLikeOther(text);
      if (other) done(other);
      else if (/^\* (OK|PREAUTH|BYE)/i.test(text)) done(undefined);
      else done(`something else ("${printable(text.slice(0, 40))}")`);
    });
  });
}
