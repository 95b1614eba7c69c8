/** Every key of the table is spelled here and nowhere else (docs/decisions/0003-one-table.md). */
export const keys = {
  sourcePk: (sourceId: string) => `SRC#${sourceId}`,
  messageSk: (identity: string) => `MSG#${identity}`,
  messagePrefix: 'MSG#',
  contentSk: (contentSha256: string, identity: string) => `SHA#${contentSha256}#${identity}`,
  contentPrefix: (contentSha256: string) => `SHA#${contentSha256}#`,
  folderStateSk: (folder: string) => `STATE#imap#${folder}`,
  leaseSk: 'LEASE',
  statsSk: 'STATS',
  statusSk: 'STATUS',
  /** Audit ids start with their ISO time, so the trail sorts oldest first and a time works as a lower bound. */
  auditSk: (id: string) => `AUDIT#${id}`,
  auditPrefix: 'AUDIT#',
  /** An intent not yet completed; deleted with the audit record's completion. */
  pendingSk: (id: string) => `PENDING#${id}`,
  pendingPrefix: 'PENDING#',
  /** A message that failed on its own, with its attempts: set aside after a few. */
  failureSk: (identity: string) => `FAIL#${identity}`,
  failurePrefix: 'FAIL#',
  /**
   * The content registry (decision 0007): one item per exact sha256 of stored bytes, shared by every source, holding
   * the object key, the committed references to it and the merged inbox entry.
   */
  registryPk: (sha256: string) => `CONTENT#${sha256}`,
  registrySk: 'COPY',
  /** One place a registered message came through; source ids are slugs, so the first `#` ends the source. */
  via: (sourceId: string, identity: string) => `${sourceId}#${identity}`,
  inboxPk: 'INBOX',
  /** Newest first by date, then stable. */
  inboxSk: (sortDate: string, sourceId: string, identity: string) => `${sortDate}#${sourceId}#${identity}`,
  /**
   * The source registry (the `aws` store's sources): one partition holding every source's settings and schedule,
   * so listing them is one query, never a scan.
   */
  registryPartition: 'SOURCES',
  sourceEntrySk: (sourceId: string) => `SOURCE#${sourceId}`,
  sourceEntryPrefix: 'SOURCE#',
  /** GSI3 (due): every enabled source under one key, sorted by its next due time (ms, zero-padded) then id. */
  duePk: 'DUE',
  dueSk: (dueAt: number, sourceId: string) =>
    `${String(Math.max(0, Math.floor(dueAt))).padStart(15, '0')}#${sourceId}`,
  /**
   * The unread entries of the merged inbox (issue #15): a sparse partition of GSI2 (the source inbox index), which
   * only content registry items use under this key, with the merged inbox sort key. No source partition is
   * `UNREAD` (those are `SRC#<slug>`), so the two uses never meet.
   */
  unreadPk: 'UNREAD',
  /** A removal from the inbox (who, when), in the content's partition beside its registry item. */
  inboxRemovalSk: (at: string) => `REMOVED#${at}`,
  /** Sorts after every dueSk of a time at or before `now`. */
  dueUpTo: (now: number) => `${String(Math.max(0, Math.floor(now))).padStart(15, '0')}#~`,
} as const;
