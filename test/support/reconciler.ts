import type { MailLab, TestUser } from './mail-lab';
import type { TestTributary } from './tributary';
import { serverState, sha256 } from './upstream';

export interface Reconciliation {
  /** Copies that left the server without a stored copy. */
  lost: number;
  /** Stored copies beyond the copies that ever existed upstream. */
  duplicated: number;
  /** Copies deleted upstream without both a verified stored copy and a completed audit record. */
  wronglyDeleted: number;
  /** Stored objects whose bytes do not match their record. */
  corrupt: number;
  /** Copies still upstream and not stored (expected 0 once synced to quiescence, without a pause). */
  unfetched: number;
  /** Stored copies of bytes that were never upstream (a notice the server made up, say); counted in duplicated. */
  foreign: number;
  expected: number;
  upstream: number;
  stored: number;
}

/** What the server holds now, as the sha256 of each copy (two identical messages are two entries). */
export type UpstreamReader = () => Promise<string[]>;

/** The harness Dovecot's `folders` of `user`, read with serverState (EXAMINE, BODY.PEEK: changes nothing). */
export function dovecotUpstream(lab: MailLab, user: TestUser, folders: string[] = ['INBOX']): UpstreamReader {
  return async () => {
    const out: string[] = [];
    for (const folder of folders) {
      for (const m of (await serverState(lab, user, folder)).messages) out.push(m.sha256);
    }
    return out;
  };
}

function count(list: string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const x of list) out.set(x, (out.get(x) ?? 0) + 1);
  return out;
}

/**
 * Compares what was upstream at the start (plus what was appended during the run, minus what another client
 * deleted) with what the server and the store hold at the end. Messages are counted as a multiset of sha256, so
 * two identical messages are two copies. Upstream is the harness Dovecot's (`new Reconciler(lab, user,
 * folders?)`) or whatever an UpstreamReader reads (`new Reconciler(read)`: Courier's, say, see courierUpstream).
 */
export class Reconciler {
  private readonly readUpstream: UpstreamReader;
  private readonly expected: string[] = [];
  /** Removed upstream by someone else: a stored copy of one is legitimate (fetched before), not a duplicate. */
  private readonly removedByUser: string[] = [];

  constructor(lab: MailLab, user: TestUser, folders?: string[]);
  constructor(readUpstream: UpstreamReader);
  constructor(upstream: MailLab | UpstreamReader, user?: TestUser, folders?: string[]) {
    this.readUpstream = typeof upstream === 'function' ? upstream : dovecotUpstream(upstream, user!, folders);
  }

  async start(): Promise<this> {
    this.expected.push(...(await this.readUpstream()));
    return this;
  }

  /** A message delivered during the run. */
  appended(raw: Buffer | string): void {
    this.expected.push(sha256(raw));
  }

  /** A message another client deleted upstream during the run: it is not Tributary's to account for. */
  deletedByUser(sha: string): void {
    const i = this.expected.indexOf(sha);
    if (i >= 0) this.expected.splice(i, 1);
    this.removedByUser.push(sha);
  }

  async finish(t: TestTributary, sourceId: string): Promise<Reconciliation> {
    const upstreamList = await this.readUpstream();
    let corrupt = 0;
    const storedList: string[] = [];
    for (const m of await t.stored(sourceId)) {
      const sha = sha256(await t.bytes(m.object.key));
      if (sha !== m.object.sha256) corrupt++;
      storedList.push(sha);
    }
    const audited: string[] = [];
    for await (const r of t.index.auditTrail(sourceId)) {
      if (r.action === 'delete-upstream' && r.state === 'done') audited.push(r.object.sha256);
    }
    const expected = count(this.expected);
    const upstream = count(upstreamList);
    const stored = count(storedList);
    const done = count(audited);
    const removed = count(this.removedByUser);
    const result: Reconciliation = {
      lost: 0,
      duplicated: 0,
      wronglyDeleted: 0,
      corrupt,
      unfetched: 0,
      foreign: 0,
      expected: this.expected.length,
      upstream: upstreamList.length,
      stored: storedList.length,
    };
    for (const [sha, e] of expected) {
      const up = upstream.get(sha) ?? 0;
      const st = stored.get(sha) ?? 0;
      const gone = Math.max(0, e - up);
      result.lost += Math.max(0, gone - st);
      result.wronglyDeleted += Math.max(0, gone - Math.min(st, done.get(sha) ?? 0));
      result.unfetched += Math.max(0, e - st - gone);
    }
    for (const [sha, st] of stored) {
      result.duplicated += Math.max(0, st - (expected.get(sha) ?? 0) - (removed.get(sha) ?? 0));
      if (!expected.has(sha) && !removed.has(sha)) result.foreign += st;
    }
    return result;
  }
}
