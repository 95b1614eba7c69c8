import tls from 'node:tls';
import net from 'node:net';
import { ImapFlow } from 'imapflow';
import { MessageError, UpstreamError, type ErrorCode } from '../../core/errors';
import type { FolderStatus, Source } from '../../core/model';
import { DEFAULT_WHOLE_MESSAGE_BYTES } from '../../core/ports';
import type { Bytes, ConnectOptions, ImapSession, Logger, TlsInfo } from '../../core/ports';

/** One pipelined FETCH asks for at most this many bytes of messages (more when one alone is bigger). */
const BATCH_BYTES = 16 * 1024 * 1024;
/** A bigger message is fetched in partial FETCHes of this size, one round trip each (imapflow holds one in memory). */
const STREAM_CHUNK_BYTES = 2 * 1024 * 1024;
/**
 * The parser's caps (imapflow's defaults are 1 GB each, so a hostile server could make it buffer that much). No
 * answer to what we send holds a literal above twice the whole-message limit + 1 MB (a message whose size was
 * understated within the tolerance of `sizesAgree`) or a chunk of a big one (STREAM_CHUNK_BYTES), nor a line above
 * 1 MB (SEARCH asks for SET_CHUNK UIDs at most).
 */
function maxLiteralBytes(wholeMessageBytes: number): number {
  return Math.max(2 * wholeMessageBytes, STREAM_CHUNK_BYTES) + 1024 * 1024;
}
const MAX_LINE_BYTES = 1024 * 1024;
/** Bytes an answer without message bodies may take (LIST, EXAMINE, SEARCH, STORE, quota, LOGOUT). */
const SMALL_ANSWER_BYTES = 1024 * 1024;
/** Bytes per message a UID FETCH listing (UID, RFC822.SIZE, INTERNALDATE) or an EXPUNGE answer may take. */
const LISTING_BYTES_PER_MESSAGE = 256;
/** How far an announced size and the bytes served may differ: Exchange estimates RFC822.SIZE unless
 *  EnableExactRFC822Size is set, and servers count line ends differently, so only a gross mismatch is refused. */
const SIZE_SLACK_BYTES = 1024 * 1024;
/** UIDs per UID SEARCH / STORE / EXPUNGE / FETCH of headers: keeps command lines short even for scattered UIDs. */
const SET_CHUNK = 1000;
/** Bytes per message a UID FETCH BODY.PEEK[HEADER] may take on average: header blocks of real mail are a few KB,
 *  long Received chains and DKIM signatures some tens; the sum over the set is the budget, not each one. */
const HEADER_BYTES_PER_MESSAGE = 256 * 1024;

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

/** Turns what imapflow, Node's TLS and DNS throw into an error a person can act on. */
export function imapError(source: Source, err: unknown, stage: string, password?: string): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const e = (err ?? {}) as {
    code?: string;
    message?: string;
    authenticationFailed?: boolean;
    tlsFailed?: boolean;
    responseText?: string;
    serverResponseCode?: string;
  };
  const where = `${source.host}:${source.port}`;
  // Server text goes into messages: a server that echoes the password must not put it in our status or logs.
  const scrub = (text: string) =>
    password && password.length >= 3 ? text.split(password).join('***') : text;
  const make = (code: ErrorCode, message: string, retryable: boolean) =>
    new UpstreamError(code, scrub(message), retryable, { cause: err });
  if (e.authenticationFailed) {
    return make(
      'AUTH_FAILED',
      `IMAP login refused by ${source.host} for user ${source.user}: check the password (an app password if the provider requires one)${e.responseText ? ` (server said: ${e.responseText})` : ''}`,
      false,
    );
  }
  // imapflow marks every failure of the STARTTLS step `tlsFailed`, a refused STARTTLS as well as a certificate the
  // handshake rejected after it: the certificate and timeout codes below are tried first, as with implicit TLS.
  switch (e.code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return make(
        'HOST_NOT_FOUND',
        `the host name ${source.host} does not resolve: check the spelling of "host"`,
        e.code === 'EAI_AGAIN',
      );
    case 'ECONNREFUSED':
      return make(
        'CONNECTION_REFUSED',
        `nothing accepts connections on ${where}: check "host" and "port" (IMAPS is usually 993, IMAP 143)`,
        true,
      );
    case 'CONNECT_TIMEOUT':
    case 'GREETING_TIMEOUT':
    case 'UPGRADE_TIMEOUT':
    case 'ETIMEOUT':
    case 'ETIMEDOUT':
      return make('TIMEOUT', `${where} did not answer in time during ${stage}`, true);
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return make(
        'TLS_HOSTNAME_MISMATCH',
        `the certificate of ${where} is not valid for the name ${source.servername ?? source.host}: ${e.message}`,
        false,
      );
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'CERT_HAS_EXPIRED':
    case 'CERT_UNTRUSTED':
      return make(
        'TLS_CERT_UNTRUSTED',
        `the certificate of ${where} is not trusted (${e.code}): if the server uses a private CA, give its certificate as "caFile"`,
        false,
      );
    case 'NONEXISTENT':
      return make('FOLDER_NOT_FOUND', `${stage}: the folder does not exist on ${source.host}`, false);
  }
  if (e.tlsFailed && e.code === undefined) {
    // imapflow's own "not offered" errors carry no code (no STARTTLS capability, a refused STARTTLS, PREAUTH).
    return make(
      'STARTTLS_UNAVAILABLE',
      `${where} does not offer STARTTLS, and this source requires it: nothing was sent in clear. Use tls "implicit" with the IMAPS port (usually 993) if the server has one.`,
      false,
    );
  }
  if (e.code === 'LiteralTooLarge' || e.code === 'LineTooLarge' || e.code === 'ResponseTooLarge') {
    return make(
      'PROTOCOL_ERROR',
      `${where} sent an answer bigger than any it should during ${stage} (${e.message}); nothing of it was kept`,
      true,
    );
  }
  if (
    typeof e.code === 'string' &&
    (e.code.startsWith('ParserError') || e.code === 'InvalidResponse' || e.code === 'ClosedAfterConnectText')
  ) {
    return make(
      'NOT_THAT_PROTOCOL',
      `${where} does not speak IMAP${e.tlsFailed ? '' : ' (or not with this TLS mode)'}: check "port", "protocol" and "tls"`,
      false,
    );
  }
  if (/ssl|tls|wrong version number|handshake/i.test(e.message ?? '') || e.code?.startsWith('ERR_SSL')) {
    return make(
      'TLS_FAILED',
      `TLS with ${where} failed: ${e.message}. Check "tls" and "port" (IMAPS is usually 993 with "implicit")`,
      false,
    );
  }
  if (
    e.code === 'NoConnection' ||
    e.code === 'EConnectionClosed' ||
    e.code === 'ECONNRESET' ||
    e.code === 'EPIPE'
  ) {
    return make('CONNECTION_LOST', `the connection to ${where} was lost during ${stage}`, true);
  }
  if (e.tlsFailed) {
    return make(
      'TLS_FAILED',
      `TLS after STARTTLS with ${where} failed (${e.code}): ${e.message}; nothing was sent in clear`,
      false,
    );
  }
  return make(
    'PROTOCOL_ERROR',
    `IMAP ${stage} on ${where} failed: ${e.responseText ?? e.message ?? String(err)}`,
    true,
  );
}

/**
 * After a greeting timeout: what does the port say? A POP3 (`+OK`) or SMTP (`220`) greeting means the user gave
 * the wrong port or protocol, which deserves its own message. Only the greeting line is read; nothing is sent.
 */
async function probeGreeting(
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
            ...(source.ca ? { ca: [...tls.rootCertificates, source.ca] } : {}),
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
      if (/^\+OK/i.test(text)) done('a POP3 server');
      else if (/^220[ -]/.test(text)) done('an SMTP server');
      else if (/^\* (OK|PREAUTH|BYE)/i.test(text)) done(undefined);
      else done(`something else ("${text.slice(0, 40).trim()}")`);
    });
  });
}

function tlsInfoOf(client: ImapFlow): TlsInfo | undefined {
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

export async function openImapSession(
  source: Source,
  password: string,
  options: ConnectOptions & { logger?: Logger },
): Promise<ImapSession> {
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
      rejectUnauthorized: true,
      ...(servername ? { servername } : {}),
      ...(source.ca ? { ca: [...tls.rootCertificates, source.ca] } : {}),
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
  try {
    // The login exchange (greeting, CAPABILITY, LOGIN, NAMESPACE or LIST "" "") is small; a server that answers
    // it endlessly (imapflow reads on, no timeout fires) is dropped.
    await watch.guarded('connect and login', SMALL_ANSWER_BYTES, () => client.connect());
    await watch.guarded('ENABLE UTF8=ACCEPT', SMALL_ANSWER_BYTES, () => enableUtf8Accept(client));
  } catch (err) {
    client.close();
    const code = (err as { code?: string }).code;
    if (
      code === 'GREETING_TIMEOUT' ||
      code === 'ClosedAfterConnectTLS' ||
      code === 'ClosedAfterConnectText'
    ) {
      const other = await probeGreeting(source, servername, Math.min(options.timeoutMs, 5000));
      if (other) {
        throw new UpstreamError(
          'NOT_THAT_PROTOCOL',
          `${source.host}:${source.port} does not speak IMAP: it greets like ${other}. Check "port" and "protocol" (IMAPS is usually 993, IMAP 143)`,
          false,
          { cause: err },
        );
      }
    }
    throw imapError(source, err, 'connect and login', password);
  }
  return new ImapFlowSession(client, source, options.timeoutMs, watch, wholeMessageBytes);
}

/**
 * RFC 6855: a server may serve mail with raw UTF-8 headers "downgraded" (or as a placeholder) to a client that did
 * not ENABLE UTF8=ACCEPT, and that copy is not the message. imapflow would send the ENABLE itself, but only within
 * its auto-enable, which also asks for CONDSTORE and IMAP4rev2 and is off here (`disableAutoEnable`), so this
 * enables UTF8=ACCEPT alone, before any folder is opened (the RFC allows it only then). Bodies stay exact: imapflow
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

/**
 * Watches one imapflow connection: counts the bytes its parser receives, to drop the connection when an answer runs
 * past its budget, and keeps the first error the connection reported, so an operation it failed reports the cause
 * (a read timeout, a literal over the cap) rather than the "connection not available" imapflow then rejects with.
 */
class ConnectionWatch {
  private received = 0;
  /** The answer in progress, and the count of received bytes it may not pass. */
  private budget: { stage: string; bytes: number; end: number } | undefined;
  /** Set when an answer passed its budget: the connection was dropped for it. */
  overrun: UpstreamError | undefined;
  private connectionError: unknown;

  constructor(
    private readonly client: ImapFlow,
    private readonly source: Source,
  ) {
    // Also keeps a connection error from being an unhandled 'error' event.
    client.on('error', (err: unknown) => (this.connectionError ??= err));
    // Whatever feeds imapflow's parser (the socket, the TLS socket after STARTTLS, the inflater with COMPRESS)
    // is piped into its `streamer`; a 'data' listener beside the pipe only observes, its backpressure still holds.
    const streamer = (client as unknown as { streamer?: NodeJS.EventEmitter }).streamer;
    const count = (chunk: Buffer) => this.count(chunk.length);
    streamer?.on('pipe', (src: NodeJS.EventEmitter) => src.on('data', count));
    streamer?.on('unpipe', (src: NodeJS.EventEmitter) => src.off('data', count));
  }

  private count(bytes: number): void {
    this.received += bytes;
    const budget = this.budget;
    if (budget && this.received > budget.end && !this.overrun) {
      this.overrun = new UpstreamError(
        'PROTOCOL_ERROR',
        `${this.source.host}:${this.source.port} sent more than ${budget.bytes} bytes in answer to ${budget.stage}, far more than it should: the connection was dropped`,
        true,
      );
      this.client.close();
    }
  }

  /**
   * Runs one operation with a budget of received bytes. imapflow caps each response, but not how many responses
   * one command gets: an endless stream of untagged answers (LIST, FETCH) kept it reading, and collecting, with no
   * timeout ever firing, past the run's deadline. Past the budget the connection is dropped and the operation
   * fails with PROTOCOL_ERROR. Budgets nest: an inner one never extends an outer one.
   */
  async guarded<T>(stage: string, bytes: number, fn: () => Promise<T>): Promise<T> {
    const outer = this.budget;
    const end = Math.min(this.received + bytes, outer?.end ?? Infinity);
    this.budget = end === outer?.end ? outer : { stage, bytes, end };
    try {
      return await fn();
    } catch (err) {
      throw this.explain(err, stage);
    } finally {
      this.budget = outer;
    }
  }

  /** The real cause of a failure that imapflow reports as a lost connection. */
  private explain(err: unknown, stage: string): unknown {
    if (this.overrun) return this.overrun;
    const lost =
      (err instanceof UpstreamError && err.code === 'CONNECTION_LOST') ||
      (err as { code?: string } | undefined)?.code === 'NoConnection';
    if (!lost || this.connectionError === undefined) return err;
    const cause = imapError(this.source, this.connectionError, stage);
    return cause.code === 'TIMEOUT' || cause.code === 'PROTOCOL_ERROR' ? cause : err;
  }
}

/** A usable UID / UIDNEXT: a positive safe integer, else undefined. */
function positive(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

/** A usable count: a non-negative safe integer, else undefined. */
function nonNegative(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/**
 * Whether a body of `actual` bytes may be the message announced at `announced` bytes. Sizes are not exact
 * everywhere (SIZE_SLACK_BYTES), but a body more than twice the other plus a megabyte is not the message announced:
 * an endless or runaway answer, or a truncated one that must not be stored as if it were the message (a deleting
 * policy would then remove the real one upstream).
 */
function sizesAgree(announced: number, actual: number): boolean {
  return Math.max(announced, actual) <= 2 * Math.min(announced, actual) + SIZE_SLACK_BYTES;
}

class ImapFlowSession implements ImapSession {
  readonly capabilities: ReadonlySet<string>;
  readonly tls?: TlsInfo;

  /** An operation failed: commands may still be in flight (an endless answer), so LOGOUT would wait behind them. */
  private failed = false;
  /** The UIDVALIDITY of each opened folder view, also when only STATUS told it (imapflow keeps only EXAMINE's). */
  private readonly validities = new WeakMap<object, string>();
  /** Courier-IMAP (its greeting says so): a folder is SELECTed once per session before EXAMINE (selectOnce). */
  private readonly courier: boolean;
  /** Folders this session has SELECTed once already (Courier only). */
  private readonly selectedOnce = new Set<string>();

  constructor(
    private readonly client: ImapFlow,
    private readonly source: Source,
    private readonly timeoutMs: number,
    private readonly watch: ConnectionWatch,
    private readonly wholeMessageBytes: number,
  ) {
    this.capabilities = new Set([...client.capabilities.keys()].map((c) => c.toUpperCase()));
    this.tls = tlsInfoOf(client);
    // Courier has no ID (imapflow's serverInfo stays null); its greeting text is "Courier-IMAP ready. ...".
    this.courier = /\bCourier-IMAP\b/i.test(client.greeting ?? '');
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
    return this.guarded('LIST', 16 * SMALL_ANSWER_BYTES, () => this.listFoldersNow());
  }

  private async listFoldersNow(): Promise<string[]> {
    try {
      return (await this.client.list()).map((m) => m.path);
    } catch (err) {
      throw imapError(this.source, err, 'LIST');
    }
  }

  openFolder(folder: string): Promise<FolderStatus> {
    return this.guarded(`EXAMINE ${folder}`, SMALL_ANSWER_BYTES, () => this.openFolderNow(folder));
  }

  private async openFolderNow(folder: string): Promise<FolderStatus> {
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

  private folderError(folder: string, err: unknown, stage: string): UpstreamError {
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

  listUids(
    fromUid: number,
    options: { internalDate?: boolean } = {},
  ): Promise<Array<{ uid: number; size: number; internalDate?: number }>> {
    const exists = Number(this.client.mailbox ? this.client.mailbox.exists : 0) || 0;
    return this.guarded('UID FETCH (list)', SMALL_ANSWER_BYTES + exists * LISTING_BYTES_PER_MESSAGE, () =>
      this.listUidsNow(fromUid, options),
    );
  }

  private async listUidsNow(
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

  present(uids: number[]): Promise<Set<number>> {
    return this.guarded('UID SEARCH', SMALL_ANSWER_BYTES + uids.length * LISTING_BYTES_PER_MESSAGE, () =>
      this.presentNow(uids),
    );
  }

  private async presentNow(uids: number[]): Promise<Set<number>> {
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

  deleteUids(folder: string, uidValidity: string, uids: number[]): Promise<Set<number>> {
    return this.guarded(
      'SELECT / UID STORE / UID EXPUNGE',
      SMALL_ANSWER_BYTES + uids.length * LISTING_BYTES_PER_MESSAGE,
      () => this.deleteUidsNow(folder, uidValidity, uids),
    );
  }

  private async deleteUidsNow(folder: string, uidValidity: string, uids: number[]): Promise<Set<number>> {
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
    try {
      box = await this.client.mailboxOpen(folder, { readOnly: false });
    } catch (err) {
      throw this.folderError(folder, err, `SELECT ${folder}`);
    }
    if (String(box.uidValidity) !== uidValidity) {
      throw new UpstreamError(
        'PROTOCOL_ERROR',
        `the UIDVALIDITY of "${folder}" on ${this.source.host} changed (${uidValidity} -> ${String(box.uidValidity)}): its UIDs now name other messages, so nothing was ${what}`,
        true,
      );
    }
  }

  clearDeleted(folder: string, uidValidity: string, uids: number[]): Promise<void> {
    return this.guarded(
      'SELECT / UID STORE -FLAGS',
      SMALL_ANSWER_BYTES + uids.length * LISTING_BYTES_PER_MESSAGE,
      () => this.clearDeletedNow(folder, uidValidity, uids),
    );
  }

  private async clearDeletedNow(folder: string, uidValidity: string, uids: number[]): Promise<void> {
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

  async fetchBodies(
    messages: Array<{ uid: number; size: number }>,
    onMessage: (uid: number, size: number, body: Bytes) => Promise<void>,
  ): Promise<void> {
    const sizes = new Map(messages.map((m) => [m.uid, m.size]));
    const ordered = [...sizes.keys()].sort((a, b) => a - b);
    let batch: number[] = [];
    let batchBytes = 0;
    const flush = async () => {
      const uids = batch;
      const bytes = batchBytes;
      batch = [];
      batchBytes = 0;
      if (!uids.length) return;
      // Twice the announced bytes (sizesAgree), a megabyte of slack, and the FETCH framing of each message.
      await this.guarded(
        'UID FETCH BODY.PEEK[]',
        2 * bytes + SMALL_ANSWER_BYTES + uids.length * LISTING_BYTES_PER_MESSAGE,
        () => this.fetchBatch(uids, sizes, onMessage),
      );
    };
    for (const uid of ordered) {
      const size = sizes.get(uid)!;
      if (size > this.wholeMessageBytes) {
        await flush();
        // imapflow stops a download at twice the size plus a window (DownloadOverflow); this is the backstop.
        await this.guarded(
          `UID FETCH BODY.PEEK[] of UID ${uid}`,
          2 * size + 2 * STREAM_CHUNK_BYTES + SMALL_ANSWER_BYTES,
          () => this.stream(uid, size, onMessage),
        );
        continue;
      }
      if (batch.length && (batchBytes + size > BATCH_BYTES || batch.length >= 500)) await flush();
      batch.push(uid);
      batchBytes += size;
    }
    await flush();
  }

  /** One pipelined UID FETCH BODY.PEEK[] for many small messages; imapflow waits for us between messages. */
  private async fetchBatch(
    uids: number[],
    sizes: ReadonlyMap<number, number>,
    onMessage: (uid: number, size: number, body: Bytes) => Promise<void>,
  ): Promise<void> {
    let consumerError: Error | undefined;
    const delivered = new Set<number>();
    const asked = new Set(uids);
    try {
      for await (const m of this.client.fetch(
        compactUidSet(uids),
        { uid: true, source: true },
        { uid: true },
      )) {
        if (!m.source) continue;
        const source = m.source;
        // Each body once, and only those asked for: a server repeating answers would otherwise have the same
        // message stored again and again until the deadline.
        if (!asked.has(m.uid) || delivered.has(m.uid)) {
          throw new UpstreamError(
            'PROTOCOL_ERROR',
            `${this.source.host} sent the body of UID ${m.uid} ${delivered.has(m.uid) ? 'twice' : 'unasked'} in one UID FETCH`,
            true,
          );
        }
        const announced = sizes.get(m.uid)!;
        if (!sizesAgree(announced, source.length)) {
          // This message's failure, not the connection's: the sync sets it aside after a few runs.
          throw new MessageError(
            'PROTOCOL_ERROR',
            `${this.source.host} sent ${source.length} bytes for UID ${m.uid}, whose RFC822.SIZE is ${announced}: that is not the message it announced, so it was not stored`,
            { uid: m.uid },
          );
        }
        try {
          await onMessage(m.uid, source.length, oneChunk(source));
          delivered.add(m.uid);
        } catch (err) {
          consumerError = err instanceof Error ? err : new Error(String(err));
          throw consumerError;
        }
      }
    } catch (err) {
      if (consumerError !== undefined) throw consumerError;
      throw imapError(this.source, err, 'UID FETCH BODY.PEEK[]');
    }
    await this.confirmGone(
      uids.filter((u) => !delivered.has(u)),
      'BODY.PEEK[]',
    );
  }

  /**
   * The caller settles UIDs that were not delivered as expunged; make sure they are. A closed connection or a
   * server that answered without the body must not pass for an expunge: that would skip a message for good.
   */
  private async confirmGone(uids: number[], what: string): Promise<void> {
    if (!uids.length) return;
    if (!this.client.usable || !this.client.mailbox) {
      throw new UpstreamError(
        'CONNECTION_LOST',
        `the connection to ${this.source.host}:${this.source.port} was lost during UID FETCH`,
        true,
      );
    }
    const still = [...(await this.present(uids))].sort((a, b) => a - b);
    if (still.length) {
      // Named after the first: the sync counts failures per message, and the next run meets the others again.
      throw new MessageError(
        'PROTOCOL_ERROR',
        `${this.source.host} did not send ${what} of UID ${still.join(', ')} although the message exists; it will be retried`,
        { uid: still[0]! },
      );
    }
  }

  /** A big message in chunks of BODY.PEEK[]<offset.length>: memory stays at one chunk. */
  private async stream(
    uid: number,
    size: number,
    onMessage: (uid: number, size: number, body: Bytes) => Promise<void>,
  ): Promise<void> {
    let download: Awaited<ReturnType<ImapFlow['download']>>;
    try {
      download = await this.client.download(String(uid), undefined, {
        uid: true,
        chunkSize: STREAM_CHUNK_BYTES,
      });
    } catch (err) {
      throw imapError(this.source, err, `download UID ${uid}`);
    }
    if (!download.content) {
      await this.confirmGone([uid], 'BODY.PEEK[]'); // expunged meanwhile, or the connection is gone
      return;
    }
    const content = download.content;
    const source = this.source;
    const client = this.client;
    async function* body(): Bytes {
      let received = 0;
      try {
        for await (const chunk of content) {
          received += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
      } catch (err) {
        // Past twice the announced size (imapflow's DownloadOverflow) the body is not this message: its failure.
        if ((err as { code?: string } | undefined)?.code === 'DownloadOverflow') {
          throw new MessageError(
            'PROTOCOL_ERROR',
            `${source.host} sent more than twice the ${size} bytes announced for UID ${uid}: that is not the message it announced, so it was not stored`,
            { uid },
            { cause: err },
          );
        }
        throw imapError(source, err, `download UID ${uid}`);
      }
      // A chunked download ends at the first short chunk: a server that cut one short would pass for the end.
      if (received < size && !client.usable) {
        throw new UpstreamError(
          'CONNECTION_LOST',
          `the connection to ${source.host}:${source.port} was lost during the download of UID ${uid}`,
          true,
        );
      }
      if (received < size) {
        throw new MessageError(
          'PROTOCOL_ERROR',
          `${source.host} sent ${received} of the ${size} bytes of UID ${uid}; it will be retried`,
          { uid },
        );
      }
    }
    try {
      await onMessage(uid, size, body());
    } finally {
      content.destroy();
    }
  }

  headerBlocks(folder: string, uidValidity: string, uids: number[]): Promise<Map<number, Buffer>> {
    return this.guarded(
      'EXAMINE / UID FETCH BODY.PEEK[HEADER]',
      2 * SMALL_ANSWER_BYTES + uids.length * HEADER_BYTES_PER_MESSAGE,
      () => this.headerBlocksNow(folder, uidValidity, uids),
    );
  }

  private async headerBlocksNow(
    folder: string,
    uidValidity: string,
    uids: number[],
  ): Promise<Map<number, Buffer>> {
    const wanted = [...new Set(uids)].sort((a, b) => a - b);
    const blocks = new Map<number, Buffer>();
    if (!wanted.length) return blocks;
    // The open folder in whatever mode (a delete leaves it SELECTed); any other is EXAMINEd, never SELECTed.
    const current = this.openValidity(folder) ?? (await this.openFolderNow(folder)).uidValidity;
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
      await this.confirmGone(
        chunk.filter((uid) => !blocks.has(uid)),
        'BODY.PEEK[HEADER]',
      );
    }
    return blocks;
  }

  /** The UIDVALIDITY of `folder` when it is the open folder, as EXAMINE/SELECT (or STATUS after it) said. */
  private openValidity(folder: string): string | undefined {
    const box = this.client.mailbox;
    if (!box) return undefined;
    // imapflow keeps INBOX upper-cased whatever case it was asked in (it is case-insensitive, RFC 3501 5.1).
    const same = box.path === folder || (box.path === 'INBOX' && folder.toUpperCase() === 'INBOX');
    if (!same) return undefined;
    return box.uidValidity !== undefined ? String(box.uidValidity) : this.validities.get(box);
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

async function* oneChunk(buf: Buffer): Bytes {
  yield buf;
}

function chunked<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** `1:3,7,9:10` from a list of UIDs. */
export function compactUidSet(uids: number[]): string {
  const sorted = [...new Set(uids)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}:${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
