import { TributaryError } from '../../core/errors';

/**
 * The opaque cursor of an inbox page, shared by the index adapters: the sort key of the last entry given, below
 * which the next page starts. A cursor that is not one of ours is a usage error, not a crash.
 */
export function encodeCursor(before: string): string {
  return Buffer.from(JSON.stringify({ before })).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString());
  } catch {
    parsed = undefined;
  }
  const before = (parsed as { before?: unknown } | undefined)?.before;
  if (typeof before !== 'string' || !before || before.length > 4096) {
    throw new TributaryError(
      'CONFIG_INVALID',
      'the inbox cursor is not valid: use the cursor a page returned',
      false,
    );
  }
  return before;
}
