const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const HELD_DOT = Buffer.from('.');
const HELD_DOT_CR = Buffer.from('.\r');

/**
 * Where the scanner stands. `dot` / `dotCr` hold back bytes seen at the start of a line that may turn out to be
 * a stuffed dot or the terminator; they are emitted only once the next byte proves they are content.
 */
type State = 'start' | 'mid' | 'midCr' | 'dot' | 'dotCr' | 'done';

/**
 * Undoes POP3 dot-stuffing (RFC 1939 section 3) on the body of a multi-line response, chunk by chunk, and finds
 * its end, wherever TCP happened to cut the bytes. Only the byte layout matters: 8-bit bytes, NUL and bare CR or
 * LF pass through untouched, nothing is decoded. The message keeps its final CRLF (the one before `.`).
 *
 * A line starting with `..` loses one dot. A line starting with one dot followed by something else (a server
 * that forgot to stuff) is kept as sent, which loses nothing for a correct server.
 */
export class DotUnstuffer {
  private state: State = 'start';

  get finished(): boolean {
    return this.state === 'done';
  }

  /**
   * Feeds the next chunk; `emit` receives the content (views into `chunk`, or constants for held bytes).
   * Returns the index just past the terminator when the body ends in this chunk (the rest belongs to the next
   * response), or -1 when more is to come.
   */
  push(chunk: Buffer, emit: (part: Buffer) => void): number {
    if (this.state === 'done') throw new Error('DotUnstuffer: the body already ended');
    const n = chunk.length;
    let i = 0;
    let seg = 0;
    const flush = (end: number) => {
      if (end > seg) emit(chunk.subarray(seg, end));
    };
    while (i < n) {
      switch (this.state) {
        case 'mid': {
          // Fast path: content up to the next LF; only a CRLF starts a new line.
          const j = chunk.indexOf(LF, i);
          if (j < 0) {
            this.state = chunk[n - 1] === CR ? 'midCr' : 'mid';
            i = n;
          } else {
            this.state = j > i && chunk[j - 1] === CR ? 'start' : 'mid';
            i = j + 1;
          }
          break;
        }
        case 'midCr':
          // The CR ended the previous chunk.
          if (chunk[i] === LF) {
            this.state = 'start';
            i++;
          } else this.state = 'mid';
          break;
        case 'start':
          if (chunk[i] === DOT) {
            flush(i);
            i++;
            seg = i;
            this.state = 'dot';
          } else this.state = 'mid';
          break;
        case 'dot':
          if (chunk[i] === DOT) {
            // `..`: the held dot was the stuffing; the second one is content (seg already points at it).
            this.state = 'mid';
            i++;
          } else if (chunk[i] === CR) {
            i++;
            seg = i;
            this.state = 'dotCr';
          } else {
            emit(HELD_DOT);
            this.state = 'mid';
          }
          break;
        case 'dotCr':
          if (chunk[i] === LF) {
            this.state = 'done';
            return i + 1;
          }
          emit(HELD_DOT_CR);
          this.state = 'midCr';
          break;
      }
    }
    flush(n);
    return -1;
  }
}
