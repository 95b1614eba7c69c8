import { bigMessage, bulkCorpus, Random } from '../../test/support/corpus';

/**
 * The benchmark's mailbox, deterministic from a seed: about 70% text/HTML messages of 2-20 KB, 25% with one
 * attachment of 50-500 KB, 5% of 2-10 MB (a short text and a big base64 attachment). Built one message at a
 * time so that the ~800 MB never sit in memory at once.
 */
export interface BenchCorpusStats {
  messages: number;
  bytes: number;
  small: number;
  attachments: number;
  big: number;
}

export function* benchCorpus(count: number, seed: number): Generator<Buffer> {
  const rng = Random.for(seed, 'bench-mix');
  for (let i = 0; i < count; i++) {
    const draw = rng.float();
    if (draw < 0.05) {
      yield bigMessage(rng.int(2 * 1024 * 1024, 10 * 1024 * 1024), Random.for(seed, `big-${i}`).uint32());
      continue;
    }
    // One message per call, each from its own seed; `attachmentRatio` 0 or 1 decides the kind.
    const [message] = bulkCorpus(1, Random.for(seed, `msg-${i}`).uint32(), {
      attachmentRatio: draw < 0.3 ? 1 : 0,
    });
    yield message!.raw;
  }
}

export function describeCorpus(sizes: number[]): BenchCorpusStats {
  const stats: BenchCorpusStats = { messages: sizes.length, bytes: 0, small: 0, attachments: 0, big: 0 };
  for (const size of sizes) {
    stats.bytes += size;
    if (size >= 2 * 1024 * 1024) stats.big++;
    else if (size > 40 * 1024) stats.attachments++;
    else stats.small++;
  }
  return stats;
}

/**
 * The second mailbox (performance issue, target 2): only small text/HTML messages of 2-20 KB, no attachment, about
 * 11 KB each on average. Where the per-message costs show: one store request, one parse, one index write each.
 */
export function* smallCorpus(count: number, seed: number): Generator<Buffer> {
  for (let i = 0; i < count; i++) {
    const [message] = bulkCorpus(1, Random.for(seed, `small-${i}`).uint32(), { attachmentRatio: 0 });
    yield message!.raw;
  }
}
