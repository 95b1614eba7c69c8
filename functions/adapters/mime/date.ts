/** RFC 5322 `Date:` values to ISO 8601, strictly: a date that cannot be read is undefined, never a guess. */

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/** RFC 5322 4.3 obsolete zones, in minutes east of UTC; military and unknown zones count as -0000. */
const ZONES: Record<string, number> = {
  ut: 0,
  utc: 0,
  gmt: 0,
  z: 0,
  est: -300,
  edt: -240,
  cst: -360,
  cdt: -300,
  mst: -420,
  mdt: -360,
  pst: -480,
  pdt: -420,
};

// [day-of-week ","] day month year hour ":" minute [":" second] [zone]; obsolete forms (two-digit years,
// named zones, missing seconds, extra spaces, a trailing comment) are accepted as RFC 5322 asks.
const RFC5322_DATE =
  /^\s*(?:[A-Za-z]{2,9}\s*,?\s*)?(\d{1,2})[\s-]+([A-Za-z]{3,9})\.?[\s-]+(\d{2,4})\s+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:\.\d{1,6})?\s*(?:([+-])(\d{2}):?(\d{2})|([A-Za-z]{1,5})(?![A-Za-z]))?/;

const ISO_DATE =
  /^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?\s*(?:Z|[+-]\d{2}:?\d{2})?\s*$/i;

function iso(ms: number): string | undefined {
  if (!Number.isFinite(ms)) return undefined;
  const d = new Date(ms);
  const year = d.getUTCFullYear();
  return year >= 1 && year <= 9999 ? d.toISOString() : undefined;
}

/** The Date header as ISO 8601 (UTC, milliseconds), or undefined when it does not parse. */
export function parseMailDate(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const text = value.length > 200 ? value.slice(0, 200) : value;
  const m = RFC5322_DATE.exec(text);
  if (m) {
    const day = Number(m[1]);
    const month = MONTHS.indexOf(m[2]!.slice(0, 3).toLowerCase());
    let year = Number(m[3]);
    if (m[3]!.length === 2) year += year < 50 ? 2000 : 1900;
    else if (m[3]!.length === 3) year += 1900;
    const hour = Number(m[4]);
    const minute = Number(m[5]);
    const second = Math.min(Number(m[6] ?? 0), 59); // a leap second is read as :59
    if (month < 0 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return undefined;
    let offset = 0;
    if (m[7]) offset = (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9]));
    else if (m[10]) offset = ZONES[m[10].toLowerCase()] ?? 0;
    if (Math.abs(offset) >= 24 * 60) return undefined;
    const date = new Date(0);
    date.setUTCFullYear(year, month, day); // not Date.UTC, which reads years below 100 as 19xx
    date.setUTCHours(hour, minute, second, 0);
    if (date.getUTCDate() !== day) return undefined; // 31 Feb and the like
    return iso(date.getTime() - offset * 60_000);
  }
  if (ISO_DATE.test(text)) {
    const normalized = text
      .trim()
      .replace(' ', 'T')
      .replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
    // Without a zone, Date.parse would use the machine's: read it as UTC, as for RFC 5322's -0000.
    return iso(Date.parse(/(?:Z|[+-]\d{2}:?\d{2})$/i.test(normalized) ? normalized : `${normalized}Z`));
  }
  return undefined;
}
