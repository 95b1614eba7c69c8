/**
 * Runs the writes of one key (a source) one after another. DynamoDB cancels a transaction that touches an item
 * another transaction is writing (TransactionConflict), and every write of a source touches the same two items:
 * its lease (the fencing check) and its counters. Writes of different sources still run side by side.
 */
export class KeyedSerialQueue {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const result = (this.tails.get(key) ?? Promise.resolve()).then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}

/**
 * Group commit: entries that arrive while the key's previous write is in flight wait for it and then go
 * together, in groups of at most `groupMax`. Each entry's promise settles with its own outcome.
 */
export class GroupCommitter<E, R> {
  private readonly waiting = new Map<string, Array<Waiting<E, R>>>();

  constructor(
    private readonly queue: KeyedSerialQueue,
    private readonly groupMax: number,
    /**
     * Commits one group; returns one outcome per entry, in order (an Error rejects that entry's promise).
     * `upcoming` lists the entries that will commit after this group, in order (for reads to start early).
     */
    private readonly commitGroup: (entries: E[], upcoming: () => E[]) => Promise<Array<R | Error>>,
  ) {}

  add(key: string, entry: E): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let list = this.waiting.get(key);
      if (!list) {
        list = [];
        this.waiting.set(key, list);
        void this.queue.run(key, () => this.flush(key));
      }
      list.push({ entry, resolve, reject });
    });
  }

  private async flush(key: string): Promise<void> {
    const list = this.waiting.get(key) ?? [];
    this.waiting.delete(key);
    for (let i = 0; i < list.length; i += this.groupMax) {
      const group = list.slice(i, i + this.groupMax);
      let outcomes: Array<R | Error>;
      try {
        const upcoming = () =>
          [...list.slice(i + this.groupMax), ...(this.waiting.get(key) ?? [])].map((w) => w.entry);
        outcomes = await this.commitGroup(
          group.map((w) => w.entry),
          upcoming,
        );
      } catch (err) {
        outcomes = group.map(() => (err instanceof Error ? err : new Error(String(err))));
      }
      group.forEach((w, j) => {
        const outcome = outcomes[j];
        if (outcome instanceof Error) w.reject(outcome);
        else if (outcome === undefined) w.reject(new Error('GroupCommitter: no outcome for an entry'));
        else w.resolve(outcome);
      });
    }
  }
}

interface Waiting<E, R> {
  entry: E;
  resolve: (value: R) => void;
  reject: (error: Error) => void;
}
