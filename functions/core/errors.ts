/**
 * Named errors with a stable `code`, a `retryable` flag and a message a person can act on (docs/architecture.md, errors).
 * Mapping to HTTP or exit codes happens at the edges only.
 */
export type ErrorCode =
  | 'AUTH_FAILED'
  | 'HOST_NOT_FOUND'
  | 'CONNECTION_REFUSED'
  | 'TIMEOUT'
  | 'TLS_CERT_UNTRUSTED'
  | 'TLS_HOSTNAME_MISMATCH'
  | 'TLS_FAILED'
  | 'STARTTLS_UNAVAILABLE'
  | 'FOLDER_NOT_FOUND'
  | 'NOT_THAT_PROTOCOL'
  | 'PROTOCOL_ERROR'
  | 'CAPABILITY_MISSING'
  | 'CONFIG_INVALID'
  | 'SECRET_MISSING'
  | 'STORAGE_FAILED'
  | 'LEASE_LOST'
  | 'LEASE_EXPIRING'
  | 'CONNECTION_LOST';

export class TributaryError extends Error {
  override readonly name: string = 'TributaryError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Something about the upstream account or server: stored in the source status, the source backs off. */
export class UpstreamError extends TributaryError {
  override readonly name = 'UpstreamError';
}

/**
 * A failure of one message, not of the connection or the account: bytes far from the announced size, a UID the
 * server will not deliver, a RETR answered with something that is not the announced message. The sync counts these
 * per message and, after a few runs, sets the message aside (kept upstream, never deleted by a policy, shown,
 * retryable) so that the rest of the source syncs on. `at` names the message in the session that failed.
 */
export class MessageError extends UpstreamError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly at: { uid?: number; number?: number },
    options?: { cause?: unknown },
  ) {
    super(code, message, true, options);
  }
}

export class ConfigError extends TributaryError {
  override readonly name = 'ConfigError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG_INVALID', message, false, options);
  }
}

export class StorageError extends TributaryError {
  override readonly name = 'StorageError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORAGE_FAILED', message, true, options);
  }
}

/**
 * The lease had less than half of its time ahead right before a command that deletes upstream (the run was held
 * up: a pause, a stalled store): nothing was deleted, since a successor may take the lease at any moment and the
 * server checks no fence. The run stops; its status is written only if the lease is still its own.
 */
export class LeaseExpiringError extends TributaryError {
  override readonly name = 'LeaseExpiringError';
  constructor(message: string) {
    super('LEASE_EXPIRING', message, true);
  }
}

/** Our lease was taken over (we paused past it): stop at once, write nothing more. */
export class LeaseLostError extends TributaryError {
  override readonly name = 'LeaseLostError';
  constructor(sourceId: string) {
    super(
      'LEASE_LOST',
      `another sync took over source ${sourceId}; this run stopped without writing more`,
      true,
    );
  }
}

export function describeError(err: unknown): { code: string; message: string; retryable: boolean } {
  if (err instanceof TributaryError)
    return { code: err.code, message: err.message, retryable: err.retryable };
  const message = err instanceof Error ? err.message : String(err);
  return { code: 'INTERNAL', message, retryable: true };
}
