import { MessageError } from './errors';
import { identityKey, imapFolderKeyPrefix, imapFolderPrefix } from './model';
import type { FolderState, UpstreamId } from './model';
import { effectiveValidity, folderGeneration, planImapFolder, UidCheckpoint } from './planners';
import {
  applyImapPolicies,
  attachStored,
  currentValidity,
  hasPolicyWork,
  PolicyRun,
  scanImap,
} from './policy-run';
import type { Bytes, ImapSession } from './ports';
import { BudgetSpent } from './sync-commit';
import type { RunContext } from './sync-context';
import { matchExisting } from './sync-rematch';

/** Returns false when the budget ran out (the caller stops; the report says there is more to do). */
export async function syncImapFolder(
  run: RunContext,
  session: ImapSession,
  folder: string,
): Promise<boolean> {
  const state = await run.deps.index.getFolderState(run.source.id, folder);
  if (await unchangedByStatus(run, session, folder, state)) return true;
  const status = await session.openFolder(folder);
  const plan = planImapFolder(state, status);
  run.deps.logger.debug('imap plan', { sourceId: run.source.id, folder, plan: plan.kind, why: plan.why });
  const generation = folderGeneration(state, plan);
  const validity = effectiveValidity(status.uidValidity, generation);
  // Set-aside messages asked to be retried may lie below the checkpoint: the listing starts low enough to reach them.
  const retryUids = [...run.failures.values()].flatMap((f) =>
    f.retry &&
    f.upstream.kind === 'imap' &&
    f.upstream.folder === folder &&
    f.upstream.uidValidity === validity
      ? [f.upstream.uid]
      : [],
  );
  if (plan.kind === 'unchanged' && !retryUids.length) return true;
  if (plan.kind === 'rematch') run.report.notes.push(`${folder}: ${plan.why}`);

  const fromUid = Math.min(
    plan.kind === 'rematch' ? 1 : plan.kind === 'unchanged' ? Number.MAX_SAFE_INTEGER : plan.fromUid,
    ...retryUids,
  );
  const prefix = imapFolderPrefix(folder, validity);
  const idOf = (uid: number): UpstreamId => ({ kind: 'imap', folder, uidValidity: validity, uid });
  const listed = await session.listUids(fromUid);
  const committed = await run.deps.index.committedIdentities(
    run.source.id,
    prefix,
    identityKey(idOf(fromUid)),
  );
  const checkpoint = new UidCheckpoint(
    plan.kind === 'rematch' ? 0 : (state?.committedThroughUid ?? 0),
    listed.map((m) => m.uid),
  );
  const unstored = listed.filter((m) => {
    const identity = identityKey(idOf(m.uid));
    // A set-aside message is settled for the checkpoint: it is on record, and a retry reaches below it.
    const done = committed.has(identity) || run.failures.isSetAside(identity);
    if (done) checkpoint.settle(m.uid);
    return !done;
  });
  // Failures of UIDs this complete listing no longer holds: the message is gone upstream, nothing is left to retry.
  const listedUids = new Set(listed.map((m) => m.uid));
  await run.failures.forgetFailures(
    [...run.failures.values()].flatMap((f) =>
      f.upstream.kind === 'imap' &&
      f.upstream.folder === folder &&
      f.upstream.uidValidity === validity &&
      f.upstream.uid >= fromUid &&
      !listedUids.has(f.upstream.uid)
        ? [f.identity]
        : [],
    ),
  );
  const todo = run.inbox.limitToInbox(unstored);
  const cut = todo.length < unstored.length;
  run.progress(todo.length);

  const every = run.options.checkpointEvery ?? 50;
  let sinceSave = 0;
  // During a rematch the old generation's state stays until the whole new listing is settled: a checkpoint of
  // the new UIDVALIDITY written halfway would make the next run treat unmatched old messages as new ones.
  const rematching = plan.kind === 'rematch';
  const save = async (uidNext: number, final = false) => {
    if (rematching && !final) return;
    run.checkLease();
    const next: FolderState = {
      folder,
      uidValidity: status.uidValidity,
      committedThroughUid: checkpoint.value,
      uidNext,
      highestModseq: status.highestModseq,
      ...(generation ? { generation } : {}),
    };
    await run.deps.index.saveFolderState(run.lease, next);
  };

  // The periodic checkpoint is written in the background, one write at a time, so the download does not wait for
  // the store (the write queues behind the commits in flight). Each write takes the checkpoint as it stands when
  // it starts, which only ever covers committed UIDs; the first failure stops the fetch at its next message.
  let periodic: Promise<void> = Promise.resolve();
  let periodicQueued = false;
  let periodicFailure: { error: unknown } | undefined;
  const saveInBackground = (uidNext: number) => {
    if (periodicQueued) return; // the write already waiting will take the newer checkpoint
    periodicQueued = true;
    periodic = periodic.then(async () => {
      periodicQueued = false;
      if (periodicFailure) return;
      try {
        await save(uidNext);
      } catch (error) {
        periodicFailure = { error };
      }
    });
  };

  // During a rematch each message is matched against the store before the next: two twins in flight at once
  // could both claim the same stored copy.
  const pipeline = run.commits.pipeline(rematching);
  const handle = async (uid: number, size: number, body: Bytes, inMemoryBytes?: number) => {
    const upstream = idOf(uid);
    const { record, contentSha256 } = await run.commits.store(upstream, body, size, inMemoryBytes);
    if (rematching && (await matchExisting(run, upstream, record, contentSha256))) {
      run.report.skipped++;
    } else {
      await run.commits.commit(record);
    }
    await run.failures.forgetFailures([record.identity]);
    checkpoint.settle(uid);
    run.progress(todo.length);
  };
  let finished = false;
  let failure: { error: unknown } | undefined;
  try {
    await session.fetchBodies(todo, async (uid, size, body) => {
      if (!run.budgetLeft()) throw new BudgetSpent();
      if (periodicFailure) throw periodicFailure.error;
      await run.commits.handOff(pipeline, size, body, (bytes, held) => handle(uid, size, bytes, held));
      if (++sinceSave >= every) {
        sinceSave = 0;
        saveInBackground(state?.uidNext ?? 1);
      }
    });
    finished = true;
  } catch (err) {
    failure = { error: err };
  }
  // What is in flight commits (or fails) before the checkpoint is saved over it.
  const jobFailure = await pipeline.settle();
  await periodic;
  if (periodicFailure && !failure) failure = periodicFailure;
  if (jobFailure && (!failure || failure.error instanceof BudgetSpent)) failure = jobFailure;
  if (failure && !(failure.error instanceof BudgetSpent)) {
    await save(state?.uidValidity === status.uidValidity ? state.uidNext : 1).catch(() => undefined);
    const err = failure.error;
    if (
      err instanceof MessageError &&
      err.at.uid !== undefined &&
      (await run.failures.messageFailed(idOf(err.at.uid), err))
    )
      return false;
    throw err;
  }
  if (failure) finished = false;
  if (finished && !cut) {
    // Every listed UID was delivered or has vanished meanwhile, and the listing (taken after EXAMINE) holds
    // every UID below that UIDNEXT still there: UIDs are never reused, so everything below it is settled.
    checkpoint.settleThrough(status.uidNext - 1);
    // A UIDNEXT derived from the highest UID goes down when the newest messages are expunged: keep the higher one.
    const sameGeneration = state?.uidValidity === status.uidValidity && !rematching;
    await save(
      status.uidNextDerived && sameGeneration ? Math.max(state.uidNext, status.uidNext) : status.uidNext,
      true,
    );
    return true;
  }
  await save(state?.uidValidity === status.uidValidity ? state.uidNext : 1);
  if (finished) return false; // paused by the inbox quota: the checkpoint stays below what was left upstream
  run.report.outcome = 'more';
  run.report.notes.push(
    `${folder}: time budget spent; the next run continues from UID ${checkpoint.value + 1}`,
  );
  return false;
}

/**
 * A poll's first question, by STATUS with the folder left closed: nothing new since the checkpoint? Then the
 * folder is done without EXAMINE (one round trip instead of two or more). Only an "unchanged" answer is taken
 * from STATUS; anything else, and a set-aside message of this folder waiting for a retry, opens the folder and
 * plans again from what EXAMINE says.
 */
async function unchangedByStatus(
  run: RunContext,
  session: ImapSession,
  folder: string,
  state: FolderState | undefined,
): Promise<boolean> {
  if (!state || !session.peekFolder) return false;
  const retrying = [...run.failures.values()].some(
    (f) => f.retry && f.upstream.kind === 'imap' && f.upstream.folder === folder,
  );
  if (retrying) return false;
  const status = await session.peekFolder(folder);
  if (!status) return false;
  const plan = planImapFolder(state, status);
  if (plan.kind !== 'unchanged') return false;
  run.deps.logger.debug('imap plan', {
    sourceId: run.source.id,
    folder,
    plan: plan.kind,
    why: `STATUS: ${plan.why}`,
  });
  return true;
}

/** After every folder is fetched: the policies, on committed messages only. A `keep` source does nothing here. */
export async function imapPolicies(sourceRun: RunContext, session: ImapSession): Promise<void> {
  const pending = await sourceRun.deps.index.pendingActions(sourceRun.source.id);
  if (!hasPolicyWork(sourceRun.source, pending)) return;
  const { messages, folders } = await scanImap(
    session,
    sourceRun.source,
    currentValidity(sourceRun.deps.index, sourceRun.source.id),
  );
  await attachStored(sourceRun.deps.index, sourceRun.source.id, messages);
  const ctx = sourceRun.policyContext();
  const run = new PolicyRun(ctx);
  await run.resolvePending(pending, messages, {
    readPrefixes: sourceRun.source.folders.map(imapFolderKeyPrefix),
    undo: async (still) => {
      for (const folder of new Set(still.map((m) => m.folder!))) {
        const uids = still.filter((m) => m.folder === folder).map((m) => m.uid!);
        await session.clearDeleted(folder, folders.get(folder)!.uidValidity, uids);
      }
    },
  });
  await applyImapPolicies(run, ctx, session, messages, folders);
}
