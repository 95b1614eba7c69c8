import { UpstreamError, type ErrorCode } from '../../core/errors';
import type { Source } from '../../core/model';
import { HOSTNAME_MISMATCH, UNTRUSTED_CERT_CODES } from '../common/cert-errors';
import { printable } from './reader';

/** Socket-level codes that are about the network, even while a TLS handshake is running. */
const NETWORK = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH']);

/** A `-ERR` answer: the server refused one command, the session itself is still in step. */
export class Pop3Refusal extends Error {
  override readonly name = 'Pop3Refusal';
  constructor(
    readonly command: string,
    readonly text: string,
  ) {
    super(`-ERR ${text} (to ${command})`);
  }
}

export interface ErrorContext {
  source: Source;
  /** What the session was doing, for the message ("the greeting", "RETR 3"). */
  stage: string;
  /** True while a TLS handshake is in progress: unknown errors then are TLS failures. */
  tlsHandshake: boolean;
  /** Never shown: removed from any server text that would echo it. */
  password?: string;
}

export function where(source: Source): string {
  return `${source.host}:${source.port}`;
}

/** Server text fit for an error message: printable, short, and never the password. */
export function serverText(text: string, password?: string): string {
  let t = printable(text).slice(0, 200);
  if (password && password.length > 0) t = t.split(password).join('***');
  return t;
}

/** Turns what Node's net/tls/dns, node-pop3 and the reader throw into an error a person can act on. */
export function pop3Error(err: unknown, ctx: ErrorContext): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const { source, stage } = ctx;
  const at = where(source);
  const e = (err ?? {}) as { code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const detail = serverText(typeof e.message === 'string' ? e.message : String(err), ctx.password);
  const make = (c: ErrorCode, message: string, retryable: boolean) =>
    new UpstreamError(c, message, retryable, { cause: err });

  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME')
    return make(
      'HOST_NOT_FOUND',
      `the host name ${source.host} does not resolve${code === 'EAI_AGAIN' ? ' (DNS did not answer)' : ''}: check the spelling of "host"`,
      code === 'EAI_AGAIN',
    );
  if (code === 'ECONNREFUSED')
    return make(
      'CONNECTION_REFUSED',
      `nothing accepts connections on ${at}: check "host" and "port" (POP3S is usually 995, POP3 110)`,
      true,
    );
  if (code === HOSTNAME_MISMATCH)
    return make(
      'TLS_HOSTNAME_MISMATCH',
      `the certificate of ${at} is not valid for the name ${source.servername ?? source.host} (${detail}): connect by the name the certificate carries, or set "servername"`,
      false,
    );
  if (UNTRUSTED_CERT_CODES.has(code))
    return make(
      'TLS_CERT_UNTRUSTED',
      `the certificate of ${at} is not trusted (${code}): if the server uses a private CA, give its certificate as "caFile"`,
      false,
    );
  if (code === 'ETIMEDOUT' && !ctx.tlsHandshake)
    return make('TIMEOUT', `${at} did not answer in time during ${stage}`, true);
  const tlsLike = code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code === 'EPROTO';
  if (tlsLike || (ctx.tlsHandshake && !NETWORK.has(code)))
    return make(
      'TLS_FAILED',
      `TLS with ${at} failed during ${stage}: ${detail}. Check "tls" and "port" (POP3S with "implicit" is usually 995; port 110 needs "starttls")`,
      false,
    );
  if (NETWORK.has(code) || detail === 'no-socket' || detail === 'close' || detail === 'end')
    return make(
      'CONNECTION_LOST',
      `the connection to ${at} was lost during ${stage} (${code || detail})`,
      true,
    );
  return make('PROTOCOL_ERROR', `POP3 ${stage} with ${at} failed: ${detail}`, true);
}
