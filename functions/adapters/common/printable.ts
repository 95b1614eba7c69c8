/** Server text made safe to show in an error or a log line: printable ASCII only, anything else as `?`. */
export function printable(bytes: Buffer | string): string {
  const text = typeof bytes === 'string' ? bytes : bytes.toString('latin1');
  return text.replace(/[^\x20-\x7e]/g, '?').trim();
}

/**
 * Text that may carry a server's words (decoded: a folder name may be UTF-8) made safe to show: control characters
 * (C0, DEL, C1) as `?`, the rest as it is.
 */
export function withoutControls(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}
