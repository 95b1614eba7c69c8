import type { Source } from '../../functions/core/model';
import type { SyncOptions } from '../../functions/core/sync';
import type { MailLab, TestUser } from './mail-lab';
import { Reconciler } from './reconciler';
import type { TestTributary } from './tributary';

/** One source of a fault test: its own user, its source, and the reconciler that accounts for its mail. */
export interface Lane {
  name: string;
  user: TestUser;
  source: Source;
  reconciler: Reconciler;
}

/**
 * A lane per protocol and retention (IMAP keep, IMAP delete-on-retrieve, POP3 keep, POP3 delete-on-retrieve): a
 * new user (`<prefix><protocol>…`) whose mail `fill` delivers, its reconciler started on that mail, and its
 * source (implicit TLS) made by `t`.
 */
export async function makeLanes(
  lab: MailLab,
  t: TestTributary,
  prefix: string,
  fill: (user: TestUser) => void,
): Promise<Lane[]> {
  const lanes: Lane[] = [];
  for (const protocol of ['imap', 'pop3'] as const) {
    for (const retention of [{ mode: 'keep' }, { mode: 'delete-on-retrieve' }] as const) {
      const user = lab.createUser(`${prefix}${protocol}`);
      fill(user);
      const reconciler = await new Reconciler(lab, user).start();
      const source = t.source(user, protocol, 'implicit', { retention });
      lanes.push({ name: `${protocol} ${retention.mode}`, user, source, reconciler });
    }
  }
  return lanes;
}

/**
 * Syncs `source` until a run fetches and deletes nothing (20 runs at most), every run `ok`; a `busy` one (a lease
 * a failed run left, not expired yet) is waited out.
 */
export async function syncToQuiescence(
  t: TestTributary,
  source: Source,
  options: Partial<SyncOptions> = {},
): Promise<void> {
  for (let round = 0; round < 20; round++) {
    const r = await t.sync(source, options);
    if (r.outcome === 'busy') {
      await new Promise((res) => setTimeout(res, 500));
      continue;
    }
    expect(r.outcome).toBe('ok');
    if (!r.fetched && !r.deletedUpstream) break;
  }
}

/** Counts the promise rejections nobody handled while the tests of the calling file run. */
export function countUnhandledRejections(): () => number {
  let unhandled = 0;
  const onUnhandled = () => unhandled++;
  beforeAll(() => process.on('unhandledRejection', onUnhandled));
  afterAll(() => process.off('unhandledRejection', onUnhandled));
  return () => unhandled;
}
