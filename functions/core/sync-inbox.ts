import { describeInboxQuota, inboxFits, type InboxUsage } from './policies';
import type { RunContext } from './sync-context';

/** The inbox quota during a run: what the source occupies, kept current while fetching, and `pause`'s cut. */
export class InboxTally {
  /** What the source occupies in the store, kept current while fetching, when it has an inbox quota. */
  usage?: InboxUsage;

  constructor(private readonly run: Pick<RunContext, 'source' | 'report'>) {}

  /** One more message committed: counted while the source has an inbox quota. */
  added(size: number): void {
    if (this.usage) this.usage = { messages: this.usage.messages + 1, bytes: this.usage.bytes + size };
  }

  /**
   * The inbox quota with `pause`: the longest prefix of `todo` (in fetch order) that fits; the rest stays upstream
   * untouched, and the run says so.
   */
  limitToInbox<T extends { size: number }>(todo: T[]): T[] {
    const cap = this.run.source.inboxQuota;
    if (cap?.onExceed !== 'pause' || !this.usage) return todo;
    let usage = { ...this.usage };
    const fits: T[] = [];
    for (const m of todo) {
      if (!inboxFits(cap, usage, m.size)) break;
      fits.push(m);
      usage = { messages: usage.messages + 1, bytes: usage.bytes + m.size };
    }
    if (fits.length < todo.length) {
      this.run.report.outcome = 'paused';
      this.run.report.notes.push(
        `paused by the inbox quota (${describeInboxQuota(cap, usage)}): ${todo.length - fits.length} message(s) stay upstream, untouched`,
      );
    }
    return fits;
  }
}
