import type { MessageError } from './errors';
import { identityKey, SET_ASIDE_AFTER } from './model';
import type { MessageFailure, UpstreamId } from './model';
import type { RunContext } from './sync-context';

/** Messages that failed on their own: counted per attempt, set aside after SET_ASIDE_AFTER, forgotten once done. */
export class FailureLedger {
  /** Messages that failed on their own before, by identity (set aside after SET_ASIDE_AFTER attempts). */
  private readonly failures = new Map<string, MessageFailure>();

  constructor(
    private readonly run: Pick<RunContext, 'deps' | 'source' | 'report' | 'lease' | 'checkLease'>,
  ) {}

  /** The failure records read at the start of the run. */
  load(failures: MessageFailure[]): void {
    for (const f of failures) this.failures.set(f.identity, f);
  }

  values(): IterableIterator<MessageFailure> {
    return this.failures.values();
  }

  /** Messages set aside and not asked to be retried: every run skips them. */
  setAsideCount(): number {
    return [...this.failures.values()].filter((f) => f.setAside && !f.retry).length;
  }

  isSetAside(identity: string): boolean {
    const f = this.failures.get(identity);
    return f !== undefined && f.setAside && !f.retry;
  }

  /**
   * Counts a failed attempt at one message; returns true when that set it aside. A message being retried on demand
   * stays marked for retry until it is set aside again, so a run below the IMAP checkpoint keeps reaching it.
   */
  async messageFailed(upstream: UpstreamId, err: MessageError): Promise<boolean> {
    const identity = identityKey(upstream);
    const previous = this.failures.get(identity);
    const at = new Date(this.run.deps.clock.now()).toISOString();
    const attempts = (previous?.attempts ?? 0) + 1;
    const setAside = attempts >= SET_ASIDE_AFTER;
    const failure: MessageFailure = {
      sourceId: this.run.source.id,
      identity,
      upstream,
      attempts,
      error: { code: err.code, message: err.message },
      firstAt: previous?.firstAt ?? at,
      lastAt: at,
      setAside,
      ...(!setAside && previous?.retry ? { retry: true } : {}),
    };
    this.run.checkLease();
    await this.run.deps.index.recordMessageFailure(this.run.lease, failure);
    this.failures.set(identity, failure);
    if (setAside) {
      this.run.report.outcome = 'more';
      this.run.report.notes.push(
        `${identity}: set aside after ${attempts} failed attempts (${err.message}); it stays upstream, untouched and never deleted by a policy, and the rest of the source goes on ("tributary sources retry ${this.run.source.id}" tries it again)`,
      );
    } else {
      this.run.report.notes.push(
        `${identity}: attempt ${attempts} of ${SET_ASIDE_AFTER} failed on this message`,
      );
    }
    return setAside;
  }

  /** Forgets the failures of messages now committed (or gone upstream). */
  async forgetFailures(identities: string[]): Promise<void> {
    const known = identities.filter((id) => this.failures.has(id));
    if (!known.length) return;
    this.run.checkLease();
    await this.run.deps.index.clearMessageFailures(this.run.lease, known);
    for (const id of known) this.failures.delete(id);
  }
}
