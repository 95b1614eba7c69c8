/**
 * How far an announced size and the bytes served may differ: Exchange estimates RFC822.SIZE unless
 * EnableExactRFC822Size is set, and servers count line ends differently, so only a gross mismatch is refused.
 */
export const SIZE_SLACK_BYTES = 1024 * 1024;

/**
 * The most bytes a body announced at `announced` bytes may take before it is certainly not that message (twice the
 * size, plus the slack): past it an answer is given up on, since it may never end.
 */
export function runawayBytes(announced: number): number {
  return 2 * announced + SIZE_SLACK_BYTES;
}

/**
 * Whether a body of `actual` bytes may be the message announced at `announced` bytes. Sizes are not exact
 * everywhere (SIZE_SLACK_BYTES), but a body more than twice the other plus a megabyte is not the message announced:
 * an endless or runaway answer, or a truncated one that must not be stored as if it were the message (a deleting
 * policy would then remove the real one upstream).
 */
export function sizesAgree(announced: number, actual: number): boolean {
  return Math.max(announced, actual) <= runawayBytes(Math.min(announced, actual));
}
