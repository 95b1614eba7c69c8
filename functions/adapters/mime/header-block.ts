/**
 * A small, bounded reader of a message's top-level header block, independent of postal-mime: it gives the same
 * fields whether the body is parsed (`full`), cut off (`headers-only`), or refused by postal-mime (`failed`),
 * and it reads raw 8-bit header bytes the way mail clients do (UTF-8 when they are valid UTF-8, else
 * windows-1252) where postal-mime would turn them into U+FFFD.
 */

import { decodeWindows1252 } from './text';

export interface HeaderField {
  /** Lower-cased field name. */
  key: string;
  /** Unfolded value (the line breaks removed, the folding whitespace kept), trimmed; not RFC 2047 decoded. */
  value: string;
  /** Where the field's raw bytes start and end (after its last line end), its folded lines included. */
  start: number;
  end: number;
}

export interface HeaderBlock {
  fields: HeaderField[];
  /** Lines in the block that are neither a field nor a continuation (garbage, an mbox `From ` line, ...). */
  invalidLines: number;
  /** Offset of the first body byte (after the empty line), or undefined when no empty line ended the block. */
  bodyOffset: number | undefined;
  /** True when `maxBytes` was reached before the empty line. */
  truncated: boolean;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Header bytes as text: ASCII as is, valid UTF-8 (RFC 6532) as UTF-8, anything else as windows-1252. */
export function decodeHeaderBytes(bytes: Uint8Array): string {
  let ascii = true;
  for (const b of bytes) {
    if (b >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  try {
    return utf8.decode(bytes);
  } catch {
    // windows-1252 is a superset of the printable ISO-8859-1 range: the usual charset of unlabelled 8-bit headers.
    return decodeWindows1252(bytes);
  }
}

/** Length of a field name at the start of `line` (RFC 5322 ftext, optional WSP before the colon), or -1. */
function fieldNameEnd(line: Uint8Array): number {
  let i = 0;
  while (i < line.length) {
    const b = line[i]!;
    if (b === COLON) break;
    if (b < 33 || b > 126) break;
    i++;
  }
  if (i === 0) return -1;
  let j = i;
  while (j < line.length && (line[j] === SP || line[j] === HTAB)) j++;
  return line[j] === COLON ? i : -1;
}

/**
 * Reads the header block: everything up to the first empty line (CRLF or bare LF line ends), at most
 * `maxBytes` bytes of it. Never throws on any input.
 */
export function readHeaderBlock(raw: Uint8Array, maxBytes: number): HeaderBlock {
  const limit = Math.min(raw.length, maxBytes);
  const fields: HeaderField[] = [];
  let invalidLines = 0;
  let current: { key: string; parts: Uint8Array[]; start: number; end: number } | undefined;
  const flush = () => {
    if (!current) return;
    const joined = current.parts.length === 1 ? current.parts[0]! : Buffer.concat(current.parts);
    fields.push({
      key: current.key,
      value: decodeHeaderBytes(joined).trim(),
      start: current.start,
      end: current.end,
    });
    current = undefined;
  };

  let pos = 0;
  while (pos < limit) {
    const lf = raw.indexOf(LF, pos);
    const lineEnd = lf === -1 || lf >= limit ? limit : lf;
    let contentEnd = lineEnd;
    while (contentEnd > pos && raw[contentEnd - 1] === CR) contentEnd--;
    const line = raw.subarray(pos, contentEnd);
    const next = lineEnd === lf ? lf + 1 : lineEnd;

    if (line.length === 0 && lineEnd === lf) {
      flush();
      return { fields, invalidLines, bodyOffset: next, truncated: false };
    }
    if (line.length > 0) {
      const first = line[0]!;
      if ((first === SP || first === HTAB) && current) {
        current.parts.push(line);
        current.end = next;
      } else {
        flush();
        const nameEnd = fieldNameEnd(line);
        if (nameEnd > 0) {
          const key = Buffer.from(line.subarray(0, nameEnd)).toString('latin1').toLowerCase();
          const colon = line.indexOf(COLON, nameEnd);
          current = { key, parts: [line.subarray(colon + 1)], start: pos, end: next };
        } else {
          invalidLines++;
        }
      }
    }
    pos = next;
  }
  flush();
  return { fields, invalidLines, bodyOffset: undefined, truncated: limit < raw.length };
}
