/** Consecutive slices of `list`, each `size` long (the last one shorter): batches for a request's item limit. */
export function chunks<T>(list: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}
