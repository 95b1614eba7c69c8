import tls from 'node:tls';
import net from 'node:net';
import { ImapFlow } from 'imapflow';
import { UpstreamError } from '../../core/errors';
import type { Source } from '../../core/model';
import { DEFAULT_WHOLE_MESSAGE_BYTES } from '../../core/ports';
import type { ConnectOptions, Logger, TlsInfo } from '../../core/ports';
import { trustOptions } from '../common/tls';
import { ConnectionWatch } from './connection-watch';
import { imapError } from './errors';
import { GreetingSniffer, probeGreeting } from './greeting';
import { MAX_LINE_BYTES, maxLiteralBytes, SMALL_ANSWER_BYTES } from './limits';

/** imapflow's logger, routed to ours: only warnings and errors, never protocol traffic (it could hold mail). */
function loggerAdapter(logger?: Logger) {
  if (!logger) return false as const;
  const pick = (o: unknown) => (typeof o === 'object' && o && 'msg' in o ? String(o.msg) : String(o));
  const noop = () => undefined;
  return {
    trace: noop,
    debug: noop,
    info: noop,
    warn: (o: unknown) => logger.warn(`imap: ${pick(o)}`),
    error: (o: unknown) => logger.error(`imap: ${pick(o)}`),
  };
}

export function tlsInfoOf(client: ImapFlow): TlsInfo | undefined {
  const socket = (client as unknown as { socket?: net.Socket }).socket;
  if (!(socket instanceof tls.TLSSocket)) return undefined;
  const cert = socket.getPeerCertificate();
  const cipher = socket.getCipher();
  return {
    protocol: socket.getProtocol() ?? 'unknown',
    cipher: cipher?.name ?? 'unknown',
    subject: String(cert?.subject?.CN ?? ''),
    issuer: String(cert?.issuer?.CN ?? ''),
    validTo: cert?.valid_to ?? '',
  };
}

/**
 * Connects and logs in (implicit TLS, STARTTLS or plain, as the source says), then enables UTF8=ACCEPT: the
 * imapflow client of a session, with the watch over its connection.
 */
export async function connectImap(
  source: Source,
  password: string,
  options: ConnectOptions & { logger?: Logger },
): Promise<{
  client: ImapFlow;
  watch: ConnectionWatch;
  wholeMessageBytes: number;
  gate: SessionGate;
}> {
  const wholeMessageBytes = options.wholeMessageBytes ?? DEFAULT_WHOLE_MESSAGE_BYTES;
  if (!Number.isSafeInteger(wholeMessageBytes) || wholeMessageBytes < 0) {
    throw new RangeError(`wholeMessageBytes must be a non-negative integer, not ${wholeMessageBytes}`);
  }
  const maxLiteral = maxLiteralBytes(wholeMessageBytes);
  const servername = source.servername ?? (net.isIP(source.host) ? undefined : source.host);
  const client = new ImapFlow({
    host: source.host,
    port: source.port,
    secure: source.tls === 'implicit',
    doSTARTTLS: source.tls === 'starttls' ? true : source.tls === 'none' ? false : undefined,
    servername,
    tls: {
      ...trustOptions(source),
      ...(servername ? { servername } : {}),
    },
    auth: { user: source.user, pass: password },
    logger: loggerAdapter(options.logger),
    connectionTimeout: options.timeoutMs,
    // A real server greets at once; waiting long only delays telling the user the port is wrong.
    greetingTimeout: Math.min(options.timeoutMs, 10_000),
    // timeoutMs is the per-read timeout (ports.ts). It used to be raised to at least 10 s, so with the short
    // timeouts of a tight budget a server that stalled after its greeting held the run past its deadline.
    socketTimeout: options.timeoutMs,
    maxLiteralSize: maxLiteral,
    maxLineLength: MAX_LINE_BYTES,
    maxResponseSize: maxLiteral + MAX_LINE_BYTES,
    disableAutoIdle: true,
    disableAutoEnable: true,
  });
  const watch = new ConnectionWatch(client, source);
  const greeting = new GreetingSniffer(client);
  const gate = leanLogin(client);
  try {
    // The login exchange (greeting, CAPABILITY, LOGIN, NAMESPACE or LIST "" "") is small; a server that answers
    // it endlessly (imapflow reads on, no timeout fires) is dropped.
    await watch.guarded('connect and login', SMALL_ANSWER_BYTES, () => client.connect());
  } catch (err) {
    client.close();
    const code = (err as { code?: string }).code;
    // A POP3 or SMTP greeting was seen as it came (GreetingSniffer); after a timeout or a close, ask the port again.
    const other =
      greeting.found ??
      (code === 'GREETING_TIMEOUT' || code === 'ClosedAfterConnectTLS' || code === 'ClosedAfterConnectText'
        ? await probeGreeting(source, servername, Math.min(options.timeoutMs, 5000))
        : undefined);
    if (other) {
      throw new UpstreamError(
        'NOT_THAT_PROTOCOL',
        `${source.host}:${source.port} does not speak IMAP: it greets like ${other}. Check "port" and "protocol" (IMAPS is usually 993, IMAP 143)`,
        false,
        { cause: err },
      );
    }
    throw imapError(source, err, 'connect and login', password);
  }
  return { client, watch, wholeMessageBytes, gate };
}

/**
 * What the login left for later (leanLogin), done when first needed: the namespace before a folder other than INBOX
 * is named (INBOX needs none), ENABLE UTF8=ACCEPT before a folder is first opened.
 */
export interface SessionGate {
  /** Before `folder` is named to imapflow (STATUS, LIST without a folder). */
  beforeName(folder?: string): Promise<void>;
  /** Before `folder` is opened (SELECT or EXAMINE). */
  beforeOpen(folder: string): Promise<void>;
}

type Run = (command: string, ...args: unknown[]) => Promise<unknown>;

/**
 * Two round trips imapflow spends after every login, and a poll that finds nothing new pays for each (a Lambda
 * waits on every one):
 * - ID again after login, when the ID before it answered fewer than two fields (Dovecot names only itself). The
 *   answer is informational; it is sent again only when the first ID got no answer at all.
 * - NAMESPACE: imapflow prefixes folder names with the personal namespace (Courier's "INBOX.") and needs its
 *   delimiter for LIST. INBOX is never prefixed, so it is asked for only before the first folder other than
 *   INBOX is named, or a LIST (SessionGate); a source that reads INBOX alone never asks.
 * Both are intercepted at imapflow's command runner while the login is under way (imapflow 2.x calls
 * `this.run('NAMESPACE')` and `this.run('ID', ...)` from startSession); afterwards every command passes through.
 * Likewise ENABLE UTF8=ACCEPT (enableUtf8Accept) waits until a folder is first opened: a poll that STATUS shows
 * has nothing new opens none.
 */
function leanLogin(client: ImapFlow): SessionGate {
  const inner = client as unknown as { run: Run; usable: boolean; idRequested: unknown };
  const run: Run = inner.run.bind(client);
  let deferred = false;
  inner.run = async (command: string, ...args: unknown[]) => {
    if (!inner.usable) {
      const name = command.toUpperCase();
      if (name === 'NAMESPACE') {
        deferred = true;
        return undefined;
      }
      if (name === 'ID' && client.authenticated && inner.idRequested) return inner.idRequested;
    }
    return run(command, ...args);
  };
  let enabled = false;
  const beforeName = async (folder?: string) => {
    if (!deferred || (folder !== undefined && folder.toUpperCase() === 'INBOX')) return;
    deferred = false;
    await run('NAMESPACE');
  };
  return {
    beforeName,
    async beforeOpen(folder: string) {
      await beforeName(folder);
      if (enabled) return;
      enabled = true;
      await enableUtf8Accept(client);
    },
  };
}

/**
 * RFC 6855: a server may serve mail with raw UTF-8 headers "downgraded" (or as a placeholder) to a client that did
 * not ENABLE UTF8=ACCEPT, and that copy is not the message. imapflow would send the ENABLE itself, but only within
 * its auto-enable, which also asks for CONDSTORE and IMAP4rev2 and is off here (`disableAutoEnable`), so this
 * enables UTF8=ACCEPT alone, before the first folder is opened (the RFC allows it only in the authenticated state;
 * a STATUS before it names the folder in modified UTF-7, which every server reads). Bodies stay exact: imapflow
 * hands literals over as the bytes received; only mailbox names change form on the wire (UTF-8 instead of modified
 * UTF-7), and imapflow encodes and decodes them, so a folder keeps its name. A refused ENABLE leaves the session
 * as it was.
 */
async function enableUtf8Accept(client: ImapFlow): Promise<void> {
  const caps = client.capabilities;
  // UTF8=ONLY implies UTF8=ACCEPT (RFC 6855 section 6); imapflow only enables what the server lists.
  if (!caps.has('UTF8=ACCEPT') && caps.has('UTF8=ONLY')) caps.set('UTF8=ACCEPT', true);
  if (!caps.has('UTF8=ACCEPT')) return;
  const run = (client as unknown as { run: (command: string, ...args: unknown[]) => Promise<unknown> }).run;
  await run.call(client, 'ENABLE', ['UTF8=ACCEPT']);
}
