import { identityKey, imapFolderKeyPrefix, imapFolderPrefix } from './model';
import type { MessageRecord, UpstreamId } from './model';
import type { RunContext } from './sync-context';

/**
 * After a UIDVALIDITY change: if a stored message has the same content and no identity in the new generation
 * claims it yet, record the new UID as an alias and drop the object just written; nothing is stored twice.
 */
export async function matchExisting(
  run: RunContext,
  upstream: UpstreamId,
  record: MessageRecord,
  contentSha256: string,
): Promise<boolean> {
  if (upstream.kind !== 'imap') return false;
  // Only this folder's earlier generations: an identical message in another folder is its own copy.
  const folderPrefix = imapFolderKeyPrefix(upstream.folder);
  const newPrefix = imapFolderPrefix(upstream.folder, upstream.uidValidity);
  const entries = (await run.deps.index.findByContent(run.source.id, contentSha256)).filter((e) =>
    e.identity.startsWith(folderPrefix),
  );
  const claimed = new Set(entries.filter((e) => e.identity.startsWith(newPrefix)).map((e) => e.target));
  const target = entries.find((e) => !e.identity.startsWith(newPrefix) && !claimed.has(e.target))?.target;
  if (!target) return false;
  run.checkLease();
  await run.deps.index.commitAlias(run.lease, upstream, target, contentSha256);
  // Only after the fenced commit: a crash before this leaves an orphan object, never a missing one.
  await run.deps.store.delete(record.object.key);
  return true;
}

/**
 * POP3 UIDL reset: a new UIDL whose bytes equal a stored message that the server no longer lists under its old
 * identity (and that Tributary did not delete upstream) is that message: record an alias, store nothing twice.
 * Two identical messages listed at once stay two: an entry whose identity is listed claims its copy.
 */
export async function matchReset(
  run: RunContext,
  upstream: UpstreamId,
  record: MessageRecord,
  contentSha256: string,
  listed: ReadonlySet<string>,
): Promise<boolean> {
  const entries = (await run.deps.index.findByContent(run.source.id, contentSha256)).filter((e) =>
    e.identity.startsWith('pop3'),
  );
  const claimed = new Set(entries.filter((e) => listed.has(e.identity)).map((e) => e.target));
  const free = [...new Set(entries.filter((e) => !claimed.has(e.target)).map((e) => e.target))];
  if (!free.length) return false;
  const copies = await run.deps.index.lookup(run.source.id, free);
  const target = free.find((id) => {
    const copy = copies.get(id);
    return copy?.state === 'stored' && !copy.deletedUpstreamAt;
  });
  if (!target) return false;
  run.checkLease();
  await run.deps.index.commitAlias(run.lease, upstream, target, contentSha256);
  run.report.notes.push(
    `${identityKey(upstream)}: a stored message under a new UIDL (the server reset them)`,
  );
  // Only after the fenced commit: a crash before this leaves an orphan object, never a missing one.
  await run.deps.store.delete(record.object.key);
  return true;
}
