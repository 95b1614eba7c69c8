import { sha256Hex } from './body-tap';
import { MessageError } from './errors';
import { identityKey } from './model';
import type { UpstreamId } from './model';
import { planPop3Sync, type Pop3Candidate } from './planners';
import { applyPop3Policies, attachStored, hasPolicyWork, PolicyRun, scanPop3 } from './policy-run';
import type { Bytes, Pop3Listing, Pop3Session } from './ports';
import { BudgetSpent } from './sync-commit';
import type { RunContext } from './sync-context';
import { matchReset } from './sync-rematch';

/**
 * The identity of each POP3 message: its UIDL, or without UIDL a hash of its `TOP n 0` header block (identical
 * headers get an ordinal). Undefined when `budgetLeft` says stop while reading headers.
 */
export async function identifyPop3(
  session: Pop3Session,
  listing: Pop3Listing[],
  budgetLeft: () => boolean,
): Promise<Map<number, UpstreamId> | undefined> {
  const out = new Map<number, UpstreamId>();
  const seenTop = new Map<string, number>();
  for (const entry of listing) {
    if (entry.uidl !== undefined) {
      out.set(entry.number, { kind: 'pop3', uidl: entry.uidl });
      continue;
    }
    if (!budgetLeft()) return undefined;
    const headerHash = sha256Hex(await session.topHeaders(entry.number));
    const nth = (seenTop.get(headerHash) ?? 0) + 1;
    seenTop.set(headerHash, nth);
    out.set(entry.number, { kind: 'pop3-top', headerHash: nth === 1 ? headerHash : `${headerHash}#${nth}` });
  }
  return out;
}

/**
 * The checkpoint name of a POP3 source's listing fingerprint, stored as a folder checkpoint (its UIDVALIDITY is the
 * fingerprint). A POP3 source has no folders, so no IMAP folder's checkpoint can share the name.
 */
export const POP3_LISTING = '#pop3-listing';

/** sha256 of the listed identities, sorted: the same set of messages gives the same fingerprint, in any order. */
export function listingFingerprint(candidates: Array<{ identity: string }>): string {
  return sha256Hex(
    Buffer.from(
      candidates
        .map((c) => c.identity)
        .sort()
        .join('\n'),
      'utf8',
    ),
  );
}

/**
 * The POP3 sync of a run: the listing identified (UIDL or header hashes), new messages fetched and committed, then
 * the policies on what this session listed and fetched.
 */
export class Pop3Sync {
  /** Message numbers fetched in this session, with the sha256 of what was fetched: their proof before a DELE. */
  private readonly fetchedNow = new Map<number, string>();
  private readonly upstream = new Map<number, UpstreamId>();
  private readonly identities = new Map<number, string>();
  private listing: Pop3Listing[] = [];

  constructor(private readonly run: RunContext) {}

  /** Returns false when it stopped for time. */
  async sync(session: Pop3Session): Promise<boolean> {
    const listing = await session.list();
    this.listing = listing;
    const identified = await identifyPop3(session, listing, () => this.run.budgetLeft());
    if (!identified) {
      this.run.report.outcome = 'more';
      this.run.report.notes.push(
        'time budget spent reading headers (the server has no UIDL); the next run goes on',
      );
      return false;
    }
    const candidates: Pop3Candidate[] = listing.map((entry) => {
      const upstream = identified.get(entry.number)!;
      this.upstream.set(entry.number, upstream);
      this.identities.set(entry.number, identityKey(upstream));
      return { number: entry.number, identity: identityKey(upstream), size: entry.size };
    });
    const fingerprint = listingFingerprint(candidates);
    if (await this.unchangedListing(fingerprint)) return true;
    const committed = await this.run.deps.index.committedIdentities(this.run.source.id, 'pop3');
    const plan = planPop3Sync(committed, candidates);
    const fetch = this.run.inbox.limitToInbox(
      plan.fetch.filter((c) => !this.run.failures.isSetAside(c.identity)),
    );
    const listed = new Set(candidates.map((c) => c.identity));
    // Failures of messages the maildrop no longer lists: gone upstream, nothing is left to retry.
    await this.run.failures.forgetFailures(
      [...this.run.failures.values()].flatMap((f) =>
        f.upstream.kind !== 'imap' && !listed.has(f.identity) ? [f.identity] : [],
      ),
    );
    // Stored identities the server no longer lists: after a UIDL reset, new UIDLs may name those very messages.
    const vanished = [...committed].some((id) => !listed.has(id));
    const sizes = new Map(candidates.map((c) => [c.number, c.size]));
    this.run.progress(fetch.length);
    // After a UIDL reset each message is matched against the store before the next (see syncImapFolder).
    const pipeline = this.run.commits.pipeline(vanished);
    let settled = 0;
    const handle = async (number: number, body: Bytes, inMemoryBytes?: number) => {
      const upstream = this.upstream.get(number)!;
      const { record, contentSha256 } = await this.run.commits.store(
        upstream,
        body,
        sizes.get(number) ?? 0,
        inMemoryBytes,
      );
      if (vanished && (await matchReset(this.run, upstream, record, contentSha256, listed))) {
        this.run.report.skipped++;
      } else {
        await this.run.commits.commit(record);
      }
      await this.run.failures.forgetFailures([record.identity]);
      this.fetchedNow.set(number, record.object.sha256);
      settled++;
      this.run.progress(fetch.length);
    };
    let failure: { error: unknown } | undefined;
    try {
      await session.retrieve(
        fetch.map((c) => c.number),
        async (number, body) => {
          if (!this.run.budgetLeft()) throw new BudgetSpent();
          await this.run.commits.handOff(pipeline, sizes.get(number) ?? 0, body, (bytes, held) =>
            handle(number, bytes, held),
          );
        },
      );
    } catch (err) {
      failure = { error: err };
    }
    const jobFailure = await pipeline.settle();
    if (jobFailure && (!failure || failure.error instanceof BudgetSpent)) failure = jobFailure;
    if (!failure && fetch.length === plan.fetch.length && settled === fetch.length) {
      // Every message the maildrop listed is committed now: the next poll that lists the same ones reads nothing.
      this.run.checkLease();
      await this.run.deps.index.saveFolderState(this.run.lease, {
        folder: POP3_LISTING,
        uidValidity: fingerprint,
        committedThroughUid: 0,
        uidNext: 1,
      });
    }
    if (failure) {
      const err = failure.error;
      if (err instanceof MessageError && err.at.number !== undefined) {
        const upstream = this.upstream.get(err.at.number);
        if (upstream && (await this.run.failures.messageFailed(upstream, err))) return false;
      }
      if (!(err instanceof BudgetSpent)) throw err;
      this.run.report.outcome = 'more';
      this.run.report.notes.push('time budget spent; the next run continues');
      return false;
    }
    return true;
  }

  /**
   * The POP3 counterpart of IMAP's UIDNEXT check: the maildrop lists exactly the messages it listed when every one
   * of them was last seen committed (a fingerprint of the identities, kept as this source's one checkpoint). Then
   * nothing is new and no committed identity is read: a mailbox left on the server, or emptied by
   * delete-on-retrieve, costs one small read per poll instead of a read of everything ever fetched. A failure on
   * record (a message set aside, or asked to be retried) always takes the full path.
   */
  private async unchangedListing(fingerprint: string): Promise<boolean> {
    if ([...this.run.failures.values()].some((f) => f.upstream.kind !== 'imap')) return false;
    const saved = await this.run.deps.index.getFolderState(this.run.source.id, POP3_LISTING);
    return saved?.uidValidity === fingerprint;
  }

  /** Returns true when it ended the session with QUIT itself (after DELEs). */
  async policies(session: Pop3Session): Promise<boolean> {
    const pending = await this.run.deps.index.pendingActions(this.run.source.id);
    if (!hasPolicyWork(this.run.source, pending)) return false;
    const messages = scanPop3(this.listing, this.identities);
    await attachStored(this.run.deps.index, this.run.source.id, messages);
    const ctx = this.run.policyContext();
    const run = new PolicyRun(ctx);
    await run.resolvePending(pending, messages);
    return applyPop3Policies(run, ctx, session, messages, this.fetchedNow);
  }
}
