import { readHeaderBlock, type HeaderField } from './header-block';

/**
 * Replaces the body of every base64 part that is not text, a message or a multipart (an attachment: a PDF, an
 * image, a zip) by a marker, before postal-mime sees the message. postal-mime decodes every attachment to hand
 * back its content, and the metadata needs only its size: on mail with attachments that decoding was most of a
 * sync's CPU time (about 60 ms per MB). The size is counted here the way postal-mime's decoder would produce it.
 *
 * Only what postal-mime reads changes: the stored message is the original. Text parts (the snippet), message/rfc822
 * parts (parsed inline) and every header stay as they are. A structure this does not follow (no boundary, nesting
 * deeper than `maxDepth`) is left whole, so the worst case is the old cost, never a wrong structure.
 */
export interface ElidedEntity {
  entity: Buffer;
  /** Marker text (what the placeholder body decodes to) -> decoded size of the part it replaced. */
  sizes: Map<string, number>;
}

const HEADER_SCAN_BYTES = 64 * 1024;
const PASS_THROUGH = new Set(['', '7bit', '8bit', 'binary']);
const QP_FIELD = Buffer.from('Content-Transfer-Encoding: quoted-printable\r\n');
const EMPTY = Buffer.alloc(0);
/** What a quoted-printable decoder would not pass through as is: an escape, or '=' ending a line. */
const QP_MEANING = /=(?:[0-9A-Fa-f]{2}|\r?\n|\r?$)/;

function hasQpMeaning(entity: Buffer, from: number, to: number): boolean {
  return from < to && entity.indexOf(0x3d, from) !== -1 && entity.indexOf(0x3d, from) < to
    ? QP_MEANING.test(entity.toString('latin1', from, to))
    : false;
}
const EQUALS = 0x3d;

export function elideBinaryParts(entity: Buffer, nonce: string, maxDepth: number): ElidedEntity {
  const out: Buffer[] = [];
  const sizes = new Map<string, number>();
  let taken = 0; // entity[0, taken) is in `out` already

  let edited = false;
  const replace = (from: number, to: number, body: Buffer) => {
    edited = true;
    out.push(entity.subarray(taken, from), body);
    taken = to;
  };

  const walk = (start: number, end: number, depth: number): void => {
    const block = readHeaderBlock(
      entity.subarray(start, Math.min(end, start + HEADER_SCAN_BYTES)),
      HEADER_SCAN_BYTES,
    );
    if (block.bodyOffset === undefined) return;
    const field = (key: string) => block.fields.find((f) => f.key === key)?.value ?? '';
    const contentType = field('content-type');
    const media = contentType.split(';', 1)[0]!.trim().toLowerCase();
    const bodyStart = start + block.bodyOffset;
    if (media.startsWith('multipart/')) {
      const boundary = boundaryOf(contentType);
      if (boundary && depth < maxDepth) walkParts(bodyStart, end, boundary, depth + 1);
      return;
    }
    const encoding = field('content-transfer-encoding').trim().toLowerCase();
    if (media.startsWith('text/') && PASS_THROUGH.has(encoding)) {
      // postal-mime 4.0 keeps each line of a 7bit/8bit part as a Blob part of its own and reads them back one by
      // one (about 10 us a line: a tenth of a sync's CPU on ordinary mail). Its quoted-printable decoder makes the
      // same bytes (each line, then LF) in 100 KB chunks when the text holds no escape (=XX) and no line ends in
      // '=' (a soft break), so such a part is relabelled quoted-printable; the others stay as they are.
      if (!hasQpMeaning(entity, bodyStart, end)) relabel(start, block.fields, QP_FIELD);
      return;
    }
    if (encoding !== 'base64' || !media || media.startsWith('text/') || media.startsWith('message/')) return;
    const marker = `\u0000tributary-elided:${nonce}:${sizes.size}`;
    sizes.set(marker, base64DecodedSize(entity, bodyStart, end));
    replace(bodyStart, end, Buffer.from(`${Buffer.from(marker, 'latin1').toString('base64')}\r\n`));
  };

  /** Replaces the part's Content-Transfer-Encoding field(s) by `field` (or adds it when it had none). */
  const relabel = (start: number, fields: HeaderField[], field: Buffer) => {
    const cte = fields.filter((f) => f.key === 'content-transfer-encoding');
    if (!cte.length) return replace(start, start, field);
    cte.forEach((f, i) => replace(start + f.start, start + f.end, i === 0 ? field : EMPTY));
  };

  /** The parts between `--boundary` lines; the line break before each delimiter belongs to the delimiter. */
  const walkParts = (bodyStart: number, end: number, boundary: string, depth: number): void => {
    const dash = Buffer.from(`--${boundary}`, 'latin1');
    let partStart: number | undefined;
    for (let at = entity.indexOf(dash, bodyStart); at !== -1 && at < end; at = entity.indexOf(dash, at + 1)) {
      if (at !== bodyStart && entity[at - 1] !== 0x0a) continue; // not at the start of a line
      const lineEnd = lineEndAt(entity, at, end);
      const rest = entity.toString('latin1', at + dash.length, lineEnd).trimEnd();
      if (rest !== '' && rest !== '--') continue; // a longer boundary that starts like this one
      if (partStart !== undefined) {
        let partEnd = at - 1; // the LF
        if (partEnd > partStart && entity[partEnd - 1] === 0x0d) partEnd--;
        walk(partStart, Math.max(partStart, partEnd), depth);
      }
      if (rest === '--') return;
      partStart = Math.min(end, nextLine(entity, lineEnd, end));
    }
    if (partStart !== undefined) walk(partStart, end, depth); // no closing delimiter: the last part runs to the end
  };

  walk(0, entity.length, 0);
  if (!edited) return { entity, sizes };
  out.push(entity.subarray(taken));
  return { entity: Buffer.concat(out), sizes };
}

function boundaryOf(contentType: string): string | undefined {
  const m = /;\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** Where the line that contains `at` ends (its CR or LF), or `end`. */
function lineEndAt(buf: Buffer, at: number, end: number): number {
  const lf = buf.indexOf(0x0a, at);
  const stop = lf === -1 || lf > end ? end : lf;
  return stop > at && buf[stop - 1] === 0x0d ? stop - 1 : stop;
}

function nextLine(buf: Buffer, lineEnd: number, end: number): number {
  let i = lineEnd;
  if (buf[i] === 0x0d) i++;
  if (buf[i] === 0x0a) i++;
  return Math.min(i, end);
}

const BASE64 = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/')
  BASE64[c.charCodeAt(0)] = 1;

/**
 * The bytes postal-mime 4.0's Base64Decoder makes of this text: characters outside the alphabet are dropped, `=`
 * ends a unit, a unit of n characters gives floor(n / 4) * 3 bytes plus (n % 4) - 1 for a partial group (a lone
 * trailing character gives nothing).
 */
export function base64DecodedSize(buf: Buffer, from: number, to: number): number {
  if (to - from >= NATIVE_MIN_BYTES && oneUnitWithoutUrlChars(buf, from, to)) {
    // Node's decoder skips what is not in the alphabet and decodes a partial last group as postal-mime does; it
    // differs only on '=' inside the text (it stops there) and on '-' and '_' (base64url), excluded above.
    return Buffer.from(buf.toString('latin1', from, to), 'base64').length;
  }
  let bytes = 0;
  let unit = 0;
  for (let i = from; i < to; i++) {
    const c = buf[i]!;
    if (BASE64[c] === 1) unit++;
    else if (c === EQUALS) {
      bytes += unitBytes(unit);
      unit = 0;
    }
  }
  return bytes + unitBytes(unit);
}

/** Below this, the byte loop is as fast as native decoding (about 3 ns a byte against 0.5). */
const NATIVE_MIN_BYTES = 4096;
const DASH = 0x2d;
const UNDERSCORE = 0x5f;

/** No '-' or '_', and no alphabet character after the first '=' (padding only at the end). */
function oneUnitWithoutUrlChars(buf: Buffer, from: number, to: number): boolean {
  const within = (at: number) => at !== -1 && at < to;
  if (within(buf.indexOf(DASH, from)) || within(buf.indexOf(UNDERSCORE, from))) return false;
  const eq = buf.indexOf(EQUALS, from);
  if (!within(eq)) return true;
  for (let i = eq; i < to; i++) if (BASE64[buf[i]!] === 1) return false;
  return true;
}

/** Bytes a unit of n base64 characters decodes to (a lone trailing character gives nothing). */
function unitBytes(unit: number): number {
  const n = unit % 4 === 1 ? unit - 1 : unit;
  return Math.floor(n / 4) * 3 + (n % 4 ? (n % 4) - 1 : 0);
}
