import type { AttributeValue } from '@aws-sdk/client-dynamodb';

/**
 * DynamoDB's size of an item as its documentation counts it (for storage and capacity): each attribute's name in
 * UTF-8 bytes plus its value; strings in UTF-8 bytes, binaries in bytes, numbers about one byte per two significant
 * digits plus one, booleans and nulls one byte, lists and maps three bytes plus one per element plus their
 * elements. An approximation (numbers), good to a few bytes an item.
 */
export function attributeValueBytes(value: AttributeValue): number {
  if (value.S !== undefined) return Buffer.byteLength(value.S);
  if (value.N !== undefined) return numberBytes(value.N);
  if (value.B !== undefined) return value.B.length;
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.SS !== undefined) return value.SS.reduce((n, s) => n + Buffer.byteLength(s), 0);
  if (value.NS !== undefined) return value.NS.reduce((n, s) => n + numberBytes(s), 0);
  if (value.BS !== undefined) return value.BS.reduce((n, b) => n + b.length, 0);
  if (value.L !== undefined) return 3 + value.L.reduce((n, v) => n + 1 + attributeValueBytes(v), 0);
  if (value.M !== undefined)
    return (
      3 +
      Object.entries(value.M).reduce((n, [k, v]) => n + 1 + Buffer.byteLength(k) + attributeValueBytes(v), 0)
    );
  return 0;
}

function numberBytes(n: string): number {
  const digits = n.replace(/^-/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '').length || 1;
  return Math.ceil(digits / 2) + 1;
}

export function itemBytes(item: Record<string, AttributeValue>): number {
  return Object.entries(item).reduce((n, [k, v]) => n + Buffer.byteLength(k) + attributeValueBytes(v), 0);
}

/**
 * What an item occupies in storage: itself plus 100 bytes of overhead, and again in each global secondary index
 * whose keys it has (the table's indexes project ALL attributes), plus 100 bytes there too.
 */
export function storedBytes(
  item: Record<string, AttributeValue>,
  indexKeys: Array<[string, string]>,
): number {
  const size = itemBytes(item) + 100;
  const copies = indexKeys.filter(([pk, sk]) => item[pk] !== undefined && item[sk] !== undefined).length;
  return size * (1 + copies);
}
