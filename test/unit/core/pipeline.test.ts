import { collect, Pipeline, bytesOf } from '../../../functions/core/pipeline';

const tick = () => new Promise<void>((r) => setImmediate(r));

/** A job that ends when told to. */
function gate() {
  let open!: () => void;
  let fail!: (e: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  return { job: () => done, open, fail };
}

describe('Pipeline', () => {
  it('runs up to maxJobs at once and makes the next add wait for room', async () => {
    const p = new Pipeline(2, 1e9);
    const [a, b, c] = [gate(), gate(), gate()];
    await p.add(1, a.job);
    await p.add(1, b.job);
    expect(p.inFlight).toBe(2);
    let third = false;
    const adding = p.add(1, c.job).then(() => (third = true));
    await tick();
    expect(third).toBe(false);
    a.open();
    await adding;
    expect(third).toBe(true);
    b.open();
    c.open();
    expect(await p.settle()).toBeUndefined();
    expect(p.inFlight).toBe(0);
  });

  it('holds at most maxBytes in flight, but always lets one job run', async () => {
    const p = new Pipeline(10, 100);
    const [a, b] = [gate(), gate()];
    await p.add(250, a.job); // bigger than the budget alone: admitted when nothing else runs
    let second = false;
    const adding = p.add(10, b.job).then(() => (second = true));
    await tick();
    expect(second).toBe(false);
    a.open();
    await adding;
    b.open();
    await p.settle();
  });

  it('reports the first failure once all jobs ended, and refuses new work after it', async () => {
    const p = new Pipeline(4, 1e9);
    const [a, b] = [gate(), gate()];
    const order: string[] = [];
    await p.add(1, () => a.job().finally(() => order.push('a')));
    await p.add(1, () => b.job().finally(() => order.push('b')));
    a.fail(new Error('S3 is down'));
    await tick();
    await expect(p.add(1, async () => undefined)).rejects.toThrow('S3 is down');
    const settling = p.settle();
    b.open();
    const failure = await settling;
    expect((failure?.error as Error).message).toBe('S3 is down');
    expect(order).toEqual(['a', 'b']); // settle waited for b
  });

  it('collect joins a body; bytesOf yields it back unchanged', async () => {
    async function* parts() {
      yield Buffer.from('ab');
      yield new Uint8Array([0x63, 0x0d, 0x0a]);
    }
    const all = await collect(parts());
    expect(all.toString('latin1')).toBe('abc\r\n');
    expect((await collect(bytesOf(all))).equals(all)).toBe(true);
  });
});
