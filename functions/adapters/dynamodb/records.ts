import type { Address, MessageMetadata, MessageRecord, StoredObject } from '../../core/model';
import { messageRecordFields } from '../../core/model';
import type { StoredCopy } from '../../core/policies';
import type { Item } from './fencing';
import { keys } from './keys';

/** Metadata must leave the item well under DynamoDB's 400 KB: a message no item can hold would block its source. */
const METADATA_BUDGET_BYTES = 64 * 1024;

/** Trims address and attachment lists (then long strings) until the metadata fits; the raw message keeps it all. */
export function fitMetadata(metadata: MessageMetadata, budget = METADATA_BUDGET_BYTES): MessageMetadata {
  const size = (m: MessageMetadata) => Buffer.byteLength(JSON.stringify(m));
  if (size(metadata) <= budget) return metadata;
  const cut = (s: string | undefined, n: number) => (s && s.length > n ? s.slice(0, n) : s);
  const shortAddress = (a: Address) => ({ name: cut(a.name, 64), address: cut(a.address, 128) });
  let m: MessageMetadata = {
    ...metadata,
    to: metadata.to.slice(0, 10).map(shortAddress),
    cc: metadata.cc.slice(0, 10).map(shortAddress),
    attachments: metadata.attachments
      .slice(0, 20)
      .map((a) => ({ ...a, filename: cut(a.filename, 128), mimeType: cut(a.mimeType, 128)! })),
    from: metadata.from && shortAddress(metadata.from),
    subject: cut(metadata.subject, 512),
    messageId: cut(metadata.messageId, 512),
    parseError: cut(metadata.parseError, 512),
    truncated: true,
  };
  if (size(m) > budget) m = { ...m, to: [], cc: [], attachments: [], snippet: cut(m.snippet, 200) ?? '' };
  return m;
}

/** What lookup reads of a message item. */
export const COPY_FIELDS = ['type', 'target', 'object', 'fetchedAt', 'deletedUpstreamAt'];

/** The copy a message item or its tombstone holds; undefined for anything else. */
export function toStoredCopy(item: Item): StoredCopy | undefined {
  if (item.type !== 'message' && item.type !== 'evicted') return undefined;
  const object = item.object as StoredObject;
  const deletedUpstreamAt = item.deletedUpstreamAt as string | undefined;
  return {
    identity: String(item.SK).slice(keys.messagePrefix.length),
    key: object.key,
    size: Number(object.size),
    sha256: object.sha256,
    fetchedAt: String(item.fetchedAt),
    state: item.type === 'message' ? 'stored' : 'evicted',
    ...(deletedUpstreamAt !== undefined ? { deletedUpstreamAt } : {}),
  };
}

/**
 * A merged inbox entry: a content registry item with every place its bytes came through, or a message item
 * committed before the registry existed (one place). The entry is named after a place that still holds it.
 */
export function toMergedRecord(item: Item): MessageRecord {
  const record = toRecord(item);
  if (item.type !== 'content')
    return { ...record, via: [{ sourceId: record.sourceId, identity: record.identity }] };
  const via = [...((item.via as Set<string> | undefined) ?? [])].sort().map((entry) => {
    const at = entry.indexOf('#');
    return { sourceId: entry.slice(0, at), identity: entry.slice(at + 1) };
  });
  const named = via.some((v) => v.sourceId === record.sourceId && v.identity === record.identity);
  return { ...record, ...(named || !via[0] ? {} : via[0]), via };
}

export function toRecord(item: Item): MessageRecord {
  return messageRecordFields(item as unknown as MessageRecord);
}
