import { GroupCommitter, KeyedSerialQueue } from '../../../functions/adapters/dynamodb/write-queue';

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

describe('KeyedSerialQueue', () => {
  it('runs the tasks of one key one after another, in order, even after a failure', async () => {
    const queue = new KeyedSerialQueue();
    const log: string[] = [];
    const task =
      (name: string, fail = false) =>
      async () => {
        log.push(`start ${name}`);
        await tick();
        log.push(`end ${name}`);
        if (fail) throw new Error(name);
        return name;
      };

    const results = await Promise.allSettled([
      queue.run('a', task('a1')),
      queue.run('a', task('a2', true)),
      queue.run('a', task('a3')),
    ]);

    expect(log).toEqual(['start a1', 'end a1', 'start a2', 'end a2', 'start a3', 'end a3']);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  });

  it('runs tasks of different keys side by side', async () => {
    const queue = new KeyedSerialQueue();
    let running = 0;
    let most = 0;
    const task = async () => {
      most = Math.max(most, ++running);
      await tick();
      running--;
    };
    await Promise.all([queue.run('a', task), queue.run('b', task), queue.run('c', task)]);
    expect(most).toBe(3);
  });
});

describe('GroupCommitter', () => {
  it('groups what arrives during a commit, caps the group, and gives each entry its own outcome', async () => {
    const groups: number[][] = [];
    const committer = new GroupCommitter<number, string>(new KeyedSerialQueue(), 4, async (entries) => {
      groups.push(entries);
      await tick();
      return entries.map((n) => (n % 5 === 0 ? new Error(`refused ${n}`) : `ok ${n}`));
    });

    const first = committer.add('s', 1);
    await Promise.resolve();
    const rest = [2, 3, 4, 5, 6, 7].map((n) => committer.add('s', n));
    const outcomes = await Promise.allSettled([first, ...rest]);

    expect(groups).toEqual([[1], [2, 3, 4, 5], [6, 7]]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : (o.reason as Error).message))).toEqual([
      'ok 1',
      'ok 2',
      'ok 3',
      'ok 4',
      'refused 5',
      'ok 6',
      'ok 7',
    ]);
  });

  it('rejects every entry of a group whose commit throws, and goes on with the next group', async () => {
    let calls = 0;
    const committer = new GroupCommitter<number, string>(new KeyedSerialQueue(), 10, async (entries) => {
      if (calls++ === 0) throw new Error('network down');
      return entries.map((n) => `ok ${n}`);
    });

    const failed = await Promise.allSettled([committer.add('s', 1), committer.add('s', 2)]);
    expect(failed.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    await expect(committer.add('s', 3)).resolves.toBe('ok 3');
  });
});
