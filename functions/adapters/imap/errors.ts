import { UpstreamError, type ErrorCode } from '../../core/errors';
import type { Source } from '../../core/model';
import { HOSTNAME_MISMATCH, UNTRUSTED_CERT_CODES } from '../common/cert-errors';
import { withoutControls } from '../common/printable';

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
    withoutControls(password && password.length >= 3 ? text.split(password).join('***') : text);
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
    case HOSTNAME_MISMATCH:
      return make(
        'TLS_HOSTNAME_MISMATCH',
        `the certificate of ${where} is not valid for the name ${source.servername ?? source.host}: ${e.message}`,
        false,
      );
    case 'NONEXISTENT':
      return make('FOLDER_NOT_FOUND', `${stage}: the folder does not exist on ${source.host}`, false);
  }
  if (e.code !== undefined && UNTRUSTED_CERT_CODES.has(e.code)) {
    return make(
      'TLS_CERT_UNTRUSTED',
      `the certificate of ${where} is not trusted (${e.code}): if the server uses a private CA, give its certificate as "caFile"`,
      false,
    );
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
