/** What one IMAP session asks for at once, and the most bytes it accepts in answer. */

/** One pipelined FETCH asks for at most this many bytes of messages (more when one alone is bigger). */
export const BATCH_BYTES = 16 * 1024 * 1024;
/** A bigger message is fetched in partial FETCHes of this size, one round trip each (imapflow holds one in memory). */
export const STREAM_CHUNK_BYTES = 2 * 1024 * 1024;
/**
 * The parser's caps (imapflow's defaults are 1 GB each, so a hostile server could make it buffer that much). No
 * answer to what we send holds a literal above twice the whole-message limit + 1 MB (a message whose size was
 * understated within the tolerance of `sizesAgree`) or a chunk of a big one (STREAM_CHUNK_BYTES), nor a line above
 * 1 MB (SEARCH asks for SET_CHUNK UIDs at most).
 */
export function maxLiteralBytes(wholeMessageBytes: number): number {
  return Math.max(2 * wholeMessageBytes, STREAM_CHUNK_BYTES) + 1024 * 1024;
}
export const MAX_LINE_BYTES = 1024 * 1024;
/** Bytes an answer without message bodies may take (LIST, EXAMINE, SEARCH, STORE, quota, LOGOUT). */
export const SMALL_ANSWER_BYTES = 1024 * 1024;
/** Bytes per message a UID FETCH listing (UID, RFC822.SIZE, INTERNALDATE) or an EXPUNGE answer may take. */
export const LISTING_BYTES_PER_MESSAGE = 256;
/** UIDs per UID SEARCH / STORE / EXPUNGE / FETCH of headers: keeps command lines short even for scattered UIDs. */
export const SET_CHUNK = 1000;
/** Bytes per message a UID FETCH BODY.PEEK[HEADER] may take on average: header blocks of real mail are a few KB,
 *  long Received chains and DKIM signatures some tens; the sum over the set is the budget, not each one. */
export const HEADER_BYTES_PER_MESSAGE = 256 * 1024;
