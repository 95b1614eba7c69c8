import { describeError } from '../core/errors';
import type { Source } from '../core/model';
import type { Credentials, ImapSession, Logger, MailConnector, Pop3Session } from '../core/ports';

/**
 * `tributary --verbose`: what the CLI does upstream and in the store, as debug lines on standard error, the way
 * `fetchmail -v` shows its conversation. Passwords never appear: the login line masks it, and every password the
 * run reads is blanked out of every line (a server that echoes it, an error that quotes it).
 */
export class VerboseLogger implements Logger {
  private readonly secrets = new Set<string>();

  constructor(
    private readonly write: (text: string) => void,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** A value never to be printed: every later line has it replaced by "***". */
  secret(value: string): void {
    if (value.length) this.secrets.add(value);
  }

  debug(message: string, fields?: Record<string, unknown>): void {
    this.line('debug', message, fields);
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.line('info', message, fields);
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.line('warn', message, fields);
  }
  error(message: string, fields?: Record<string, unknown>): void {
    this.line('error', message, fields);
  }

  private line(level: string, message: string, fields?: Record<string, unknown>): void {
    const extra = fields && Object.keys(fields).length ? ` ${summarize(fields, 1)}` : '';
    let text = `${this.now().toISOString().slice(11, 23)} ${level} ${message}${extra}`;
    for (const s of this.secrets) text = text.split(s).join('***');
    // One line each: a value with a line end (a server's text) cannot forge a line of its own.
    this.write(`${text.replace(/[\p{Cc}]/gu, ' ')}\n`);
  }
}

/** A short, content-free rendering of a value: counts for lists and bytes, a few fields of an object. */
export function summarize(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 59)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (typeof value === 'function') return 'fn';
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Set) return `Set(${value.size})`;
  if (value instanceof Map) return `Map(${value.size})`;
  if (value instanceof Error) return describeError(value).message;
  if (Array.isArray(value)) {
    const simple = value.every((v) => v === null || ['string', 'number', 'boolean'].includes(typeof v));
    return simple && value.length <= 4 && depth > 0
      ? `[${value.map((v) => summarize(v)).join(', ')}]`
      : `[${value.length}]`;
  }
  if (typeof value === 'object') {
    if (Symbol.asyncIterator in value) return '<stream>';
    if (depth <= 0) return '{…}';
    const entries = Object.entries(value).filter(
      ([, v]) => v === null || ['string', 'number', 'boolean'].includes(typeof v) || Array.isArray(v),
    );
    const shown = entries.slice(0, 6).map(([k, v]) => `${k}=${summarize(v, depth - 1)}`);
    return `{${shown.join(' ')}${entries.length > 6 ? ' …' : ''}}`;
  }
  return typeof value;
}

type Wire = Record<string, (args: unknown[]) => string>;

/** What each session method sends, in protocol terms (the adapters speak the protocol; this names the step). */
const IMAP_WIRE: Wire = {
  listFolders: () => 'LIST "" "*"',
  openFolder: ([f]) => `EXAMINE ${summarize(f)}`,
  listUids: ([from, o]) =>
    `UID FETCH ${String(from)}:* (UID RFC822.SIZE${(o as { internalDate?: boolean } | undefined)?.internalDate ? ' INTERNALDATE' : ''})`,
  present: ([uids]) => `UID SEARCH UID (${(uids as unknown[]).length} UIDs)`,
  deleteUids: ([f, v, uids]) =>
    `SELECT ${summarize(f)} (UIDVALIDITY ${String(v)}); UID STORE +FLAGS.SILENT (\\Deleted); UID EXPUNGE (${(uids as unknown[]).length} UIDs)`,
  clearDeleted: ([f, v, uids]) =>
    `SELECT ${summarize(f)} (UIDVALIDITY ${String(v)}); UID STORE -FLAGS.SILENT (\\Deleted) (${(uids as unknown[]).length} UIDs)`,
  fetchBodies: ([m]) => `UID FETCH BODY.PEEK[] (${(m as unknown[]).length} messages)`,
  headerBlocks: ([f, v, uids]) =>
    `UID FETCH BODY.PEEK[HEADER] in ${summarize(f)} (UIDVALIDITY ${String(v)}, ${(uids as unknown[]).length} UIDs)`,
  quota: () => 'GETQUOTAROOT',
  close: () => 'LOGOUT',
  abort: () => '(connection dropped)',
};

const POP3_WIRE: Wire = {
  stat: () => 'STAT',
  list: () => 'UIDL; LIST',
  topHeaders: ([n]) => `TOP ${String(n)} 0`,
  headerBlocks: ([ns]) => `TOP n 0 (${(ns as unknown[]).length} messages)`,
  retrieve: ([ns]) => `RETR (${(ns as unknown[]).length} messages)`,
  dele: ([n]) => `DELE ${String(n)}`,
  quit: () => 'QUIT',
  abort: () => '(connection dropped)',
};

/** A session whose every command is logged as `<proto> host > COMMAND`, then its answer `<` (or `!` and the error). */
function traced<T extends object>(session: T, logger: Logger, tag: string, wire: Wire): T {
  return new Proxy(session, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      const describe = wire[prop] ?? (() => prop);
      return (...args: unknown[]) => {
        logger.debug(`${tag} > ${describe(args)}`);
        const started = Date.now();
        const done = (result: unknown) => {
          logger.debug(`${tag} < ${prop}: ${summarize(result, 1)} (${Date.now() - started} ms)`);
          return result;
        };
        const failed = (err: unknown): never => {
          const d = describeError(err);
          logger.debug(`${tag} ! ${prop}: [${d.code}] ${d.message}`);
          throw err;
        };
        let result: unknown;
        try {
          result = (value as (...a: unknown[]) => unknown).apply(target, args);
        } catch (err) {
          failed(err);
        }
        return result instanceof Promise ? result.then(done, failed) : result;
      };
    },
  });
}

function where(source: Source): string {
  return `${source.host}:${source.port}`;
}

/** The connector, with the conversation of every session it opens logged (the password masked). */
export function tracedConnector(connector: MailConnector, logger: VerboseLogger): MailConnector {
  const open = async <S extends object>(
    proto: 'imap' | 'pop3',
    source: Source,
    password: string,
    login: string[],
    opening: () => Promise<S>,
    describeSession: (s: S) => string,
    wire: Wire,
  ): Promise<S> => {
    logger.secret(password);
    const tag = `${proto} ${where(source)}`;
    logger.debug(
      `${tag} connecting (${source.tls === 'none' ? 'no TLS' : `TLS ${source.tls}`}) for ${source.id}`,
    );
    for (const l of login) logger.debug(`${tag} > ${l}`);
    const started = Date.now();
    try {
      const session = await opening();
      logger.debug(`${tag} < logged in (${Date.now() - started} ms): ${describeSession(session)}`);
      return traced(session, logger, tag, wire);
    } catch (err) {
      const d = describeError(err);
      logger.debug(`${tag} ! login: [${d.code}] ${d.message}`);
      throw err;
    }
  };
  const tlsText = (tls: ImapSession['tls']) =>
    tls ? `${tls.protocol} ${tls.cipher}, certificate ${tls.subject}` : 'no TLS';
  return {
    openImap: (source, password, options) =>
      open(
        'imap',
        source,
        password,
        [`LOGIN ${JSON.stringify(source.user)} ****`],
        () => connector.openImap(source, password, options),
        (s: ImapSession) => `${tlsText(s.tls)}; CAPABILITY ${[...s.capabilities].join(' ')}`,
        IMAP_WIRE,
      ),
    openPop3: (source, password, options) =>
      open(
        'pop3',
        source,
        password,
        [`USER ${source.user}`, 'PASS ****'],
        () => connector.openPop3(source, password, options),
        (s: Pop3Session) => `${tlsText(s.tls)}; CAPA ${s.capabilities.join(', ') || '(none)'}`,
        POP3_WIRE,
      ),
  };
}

/** The credentials, with each password read registered as a secret (and only its source named in the log). */
export function tracedCredentials(credentials: Credentials, logger: VerboseLogger): Credentials {
  return {
    password: async (source) => {
      const password = await credentials.password(source);
      logger.secret(password);
      logger.debug(`credentials: the password of ${source.id} read`);
      return password;
    },
  };
}

/** A store port (the index, the raw mail store) with each call and its answer logged, without mail content. */
export function tracedPort<T extends object>(port: T, logger: Logger, tag: string): T {
  return new Proxy(port, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string' || prop === 'constructor') return value;
      return (...args: unknown[]) => {
        logger.debug(`${tag}: ${prop}(${args.map((a) => summarize(a, 1)).join(', ')})`);
        const started = Date.now();
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (!(result instanceof Promise)) return result;
        return (result as Promise<unknown>).then(
          (r: unknown) => {
            logger.debug(`${tag}: ${prop} -> ${summarize(r, 1)} (${Date.now() - started} ms)`);
            return r;
          },
          (err: unknown) => {
            const d = describeError(err);
            logger.debug(`${tag}: ${prop} failed: [${d.code}] ${d.message}`);
            throw err;
          },
        );
      };
    },
  });
}
